"""The position layer: a model's scores become positions that trade only when the edge beats the costs.

Pure functions, no I/O (docs/architecture.md section 9). Conventions:

Scores
    ``scores[t]`` is the model's edge estimate at the close of bar t (> 0 long, < 0 short; classifiers
    p(up) - 0.5, regressors forecast / typical size). Non-finite scores count as 0 (no edge).
Rule (``PositionRule``)
    * flat -> open ``side = sign(score)`` when ``|score| > entry`` (shorts only with ``allow_short``);
    * a held position is kept for at least ``min_hold`` decisions (bars) after it was opened (the
      spec's ``minHoldingBars``, by default 5 x ``horizonBars``: long enough for a trade's drift to
      outweigh its noise, see ``clm_contract.training_job.HOLD_HORIZONS``);
    * after that, with ``edge = side * score``: ``edge < -entry`` flips to the other side (closes when
      shorts are off), else ``edge < exit`` closes (hysteresis: ``exit <= entry``; ``exit = 0`` closes
      when the score turns against the position, ``exit = -entry`` only ever flips);
    * ``entry = inf`` never trades (the layer's answer when no candidate beat zero on validation).
Sizing
    ``sizes[t]`` in (0, 1] multiplies the side at the bar a position is opened and is then held fixed
    for the whole trade, so a trade is one run of one position (``backtest.CONVENTIONS``) and sizing
    adds no turnover. ``volatility_sizes``: ``min(1, target / trailing annualised volatility)``.
Selection (``choose_rule``)
    Every candidate rule is backtested on the validation bars with the run's costs; the one with the
    highest net Sharpe wins (ties: the earlier, more selective candidate); when none nets a Sharpe
    above 0 the layer stays flat. Every candidate counts as a trial of the run (DSR).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PositionRule:
    """Entry and exit thresholds in score units and the minimum holding period in bars."""

    entry: float
    exit: float
    min_hold: int
    label: str = ""  # how the rule was derived, e.g. "entry q0.75, exit 0.0 x entry"

    def __post_init__(self) -> None:
        if math.isnan(self.entry) or self.entry < 0:
            raise ValueError(f"entry threshold must be >= 0 (or inf), got {self.entry}")
        if math.isfinite(self.entry) and not (-self.entry <= self.exit <= self.entry):
            raise ValueError(f"exit threshold {self.exit} must lie in [-entry, entry] = "
                             f"[{-self.entry}, {self.entry}]")
        if self.min_hold < 1:
            raise ValueError(f"min_hold must be >= 1 bar, got {self.min_hold}")

    @property
    def trades(self) -> bool:
        return math.isfinite(self.entry)

    def to_wire(self) -> dict[str, object]:
        return {"entryThreshold": self.entry if self.trades else None, "exitThreshold": self.exit,
                "minHoldingBars": self.min_hold, "label": self.label, "flat": not self.trades}


FLAT = PositionRule(entry=math.inf, exit=0.0, min_hold=1, label="flat: no candidate beat zero")


def hold_positions(scores: np.ndarray, rule: PositionRule, *, allow_short: bool,
                   sizes: np.ndarray | None = None) -> np.ndarray:
    """Positions (float64, same length as ``scores``) under ``rule``; starts flat.

    A sequential rule (hysteresis has state), so one Python loop over the bars: ~0.1 s per 100k bars.
    """
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    n = s.size
    out = np.zeros(n)
    if not rule.trades or n == 0:
        return out
    size = np.ones(n) if sizes is None else np.asarray(sizes, dtype=np.float64)
    if size.shape != s.shape:
        raise ValueError(f"sizes has shape {size.shape}, scores {s.shape}: they must be aligned")
    entry, exit_, min_hold = rule.entry, rule.exit, rule.min_hold
    side, held, amount = 0.0, 0, 0.0
    values, sizes_list = s.tolist(), size.tolist()
    positions = [0.0] * n
    for t in range(n):
        score = values[t]
        if side != 0.0:
            held += 1
            if held >= min_hold:
                edge = side * score
                if edge < -entry:
                    if allow_short or side < 0:
                        side, held, amount = -side, 0, sizes_list[t]
                    else:
                        side = 0.0
                elif edge < exit_:
                    side = 0.0
        if side == 0.0:
            if score > entry:
                side, held, amount = 1.0, 0, sizes_list[t]
            elif allow_short and score < -entry:
                side, held, amount = -1.0, 0, sizes_list[t]
        if side != 0.0:
            positions[t] = side * amount
    out[:] = positions
    return out


def volatility_sizes(bar_returns: np.ndarray, *, window: int, target: float,
                     periods_per_year: float) -> np.ndarray:
    """``min(1, target / (std of the last window bar returns × √periodsPerYear))``, past-only.

    ``sizes[t]`` uses ``bar_returns[t-window+1 .. t]`` (bars up to the decision's close); before a full
    window (and where the deviation is 0) the size is 1, i.e. unscaled.
    """
    if window < 2:
        raise ValueError(f"volatility window must be >= 2 bars, got {window}")
    if not (math.isfinite(target) and target > 0):
        raise ValueError(f"volatility target must be > 0, got {target}")
    r = pd.Series(np.asarray(bar_returns, dtype=np.float64))
    vol = r.rolling(window, min_periods=window).std(ddof=1).to_numpy() * math.sqrt(periods_per_year)
    with np.errstate(divide="ignore", invalid="ignore"):
        sizes = np.where(np.isfinite(vol) & (vol > 0), np.minimum(1.0, target / vol), 1.0)
    result: np.ndarray = sizes.astype(np.float64)
    return result


def candidate_rules(validation_scores: np.ndarray, *, entry: float | None, entry_quantiles: Sequence[float],
                    exit_threshold: float | None, exit_fractions: Sequence[float],
                    min_hold: int) -> list[PositionRule]:
    """The candidates: fixed parameters as given, the others from their grids.

    Entry candidates are quantiles of ``|score|`` on the validation bars (scale-free: the same grid
    serves classifiers and regressors); exit candidates are fractions of the entry threshold.
    """
    finite = np.abs(validation_scores[np.isfinite(validation_scores)])
    if entry is not None:
        entries = [(float(entry), f"entry {entry:g} (spec)")]
    else:
        if finite.size == 0:
            return []
        entries = [(float(np.quantile(finite, q)), f"entry q{q:g}") for q in entry_quantiles]
    rules: list[PositionRule] = []
    for value, entry_label in entries:
        if exit_threshold is not None:
            exits = [(min(max(float(exit_threshold), -value), value), f"exit {exit_threshold:g} (spec)")]
        else:
            exits = [(f * value, f"exit {f:g} x entry") for f in exit_fractions]
        for exit_value, exit_label in exits:
            rules.append(PositionRule(entry=value, exit=exit_value, min_hold=min_hold,
                                      label=f"{entry_label}, {exit_label}, hold >= {min_hold}"))
    return rules


@dataclass(frozen=True)
class Candidate:
    rule: PositionRule
    sharpe: float  # net annualised Sharpe on the validation bars
    trades: int
    turnover: float  # sum |Δposition| on the validation bars
    win_rate: float = 0.0
    profit_factor: float = 0.0
    meets_trade_criteria: bool = True  # win rate, profit factor, trade count meet the criteria on validation


@dataclass(frozen=True)
class RuleChoice:
    rule: PositionRule
    candidates: list[Candidate]
    validation_bars: int

    def to_wire(self) -> dict[str, object]:
        return {"chosen": self.rule.to_wire(), "validationBars": self.validation_bars,
                "candidates": [{**c.rule.to_wire(), "validationSharpe": c.sharpe,
                                "validationTrades": c.trades, "validationTurnover": c.turnover,
                                "validationWinRate": c.win_rate, "validationProfitFactor": c.profit_factor,
                                "meetsTradeCriteria": c.meets_trade_criteria} for c in self.candidates]}


def choose_rule(candidates: Sequence[PositionRule], validation_scores: np.ndarray,
                validation_returns: np.ndarray, *, sizes: np.ndarray | None, allow_short: bool,
                fee_bps: float, slippage_bps: float, periods_per_year: float,
                min_win_rate: float = 0.0, min_profit_factor: float = 0.0,
                min_trades: float = 0.0) -> RuleChoice:
    """The candidate with the best net Sharpe on the validation bars, or FLAT when none beats 0.

    Candidates whose validation trades meet ``min_win_rate``, ``min_profit_factor`` and ``min_trades``
    (the run's promotion criteria; the caller scales minTrades to the validation length) are
    preferred: the best of them wins when one nets a Sharpe above 0, else the best of all. The run
    is judged by those criteria, so its parameters are chosen for them too - on validation bars only.
    ``validation_returns[t]`` is what a position held over validation bar t earns (aligned with the
    scores, as ``backtest.run_backtest`` takes them). The last validation position is closed.
    """
    from clm_trainer.backtest import run_backtest  # noqa: PLC0415 - backtest imports nothing from here

    scored: list[Candidate] = []
    for rule in candidates:
        pos = hold_positions(validation_scores, rule, allow_short=allow_short, sizes=sizes)
        if pos.size:
            pos[-1] = 0.0
        result = run_backtest(pos, validation_returns, fee_bps=fee_bps, slippage_bps=slippage_bps,
                              periods_per_year=periods_per_year)
        turnover = float(np.abs(np.diff(np.concatenate(([0.0], pos)))).sum())
        m = result.metrics
        scored.append(Candidate(rule, float(m.sharpe), int(m.trades), turnover, float(m.win_rate),
                                float(m.profit_factor),
                                m.win_rate >= min_win_rate and m.profit_factor >= min_profit_factor
                                and m.trades >= min_trades))
    meeting = [c for c in scored if c.meets_trade_criteria and c.sharpe > 0]
    best = max(meeting or scored, key=lambda c: c.sharpe, default=None)  # max keeps the first of equals
    rule = best.rule if best is not None and best.sharpe > 0 else FLAT
    return RuleChoice(rule=rule, candidates=scored, validation_bars=int(np.asarray(validation_scores).size))
