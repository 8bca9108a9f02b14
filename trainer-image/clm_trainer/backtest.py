"""Vectorised backtest of a position series and its metrics (docs/architecture.md section 6.4).

Conventions (also in ``CONVENTIONS``, which the report and the manifest copy, because libraries
disagree on every one of them):

Timing
    ``positions[t]`` is decided at the close of bar t and held over bar t+1:
    ``gross[t+1] = positions[t] * bar_returns[t+1]`` with ``bar_returns[t] = close[t]/close[t-1] - 1``.
    Nothing is held over bar 0, and ``positions[-1]`` is never held (there is no bar after the last).
Costs
    ``c = (feeBps + slippageBps) / 1e4`` per unit of position traded, on every change of position:
    ``c * |new - old|``, charged on the bar where the new position starts earning (the change decided
    at the close of bar t is charged on bar t+1). The cost of a change is split into the closing leg
    ``x = c·|Δ|·|old|/(|old|+|new|)`` and the opening leg ``y = c·|Δ|·|new|/(|old|+|new|)`` (for a flip
    +1 -> -1 that is ``c`` each, for an entry or an exit the whole ``c·|Δ|``). The closing leg is paid
    first, out of the equity at the close of bar t; the opening leg is paid out of what remains, so
    ``1 + net[t+1] = (1 - x) · (1 + new·bar_returns[t+1] - y)``. A position still open after the last
    bar is closed at the last close: its closing cost multiplies the last bar, ``(1 - c·|held|)``.
Trades
    Maximal runs of bars held at one non-zero position. A trade's return is the compounded net return
    of its bars with its opening leg on its first bar and its closing leg as a final factor
    ``(1 - x)``: the equity curve is exactly the product of the trades' growth factors (bars with
    no position and no cost are 1), so trade statistics and equity can never disagree.
Metrics
    Sharpe = mean / std(ddof=1) of per-bar arithmetic net returns × √periodsPerYear (vectorbt);
    Sortino = mean / √mean(min(r, 0)²) × √periodsPerYear (vectorbt's downside deviation, over all
    bars). Zero deviation -> 0, never NaN or inf. Max drawdown: largest fall of the compounded equity
    curve (starting at 1) from its running peak, a positive fraction. Win rate: share of trades with
    net return > 0 (every trade is closed). Profit factor: Σ positive / |Σ negative| trade returns
    (backtesting.py), inf when there is a profit and no loss, 0 when there is no profit. Total
    return = equity[-1] - 1. Exposure = share of bars held at a non-zero position.
PSR / DSR
    On daily-aggregated net returns (bars compounded per UTC day of ``timestamps``; without
    timestamps every bar counts as a day), raw kurtosis, benchmark Sharpe 0 for PSR; DSR deflates by
    ``nTrials`` (see ``clm_trainer.sharpe_stats``). Bailey & López de Prado, "The Sharpe Ratio
    Efficient Frontier", J. of Risk 15(2), 2012; "The Deflated Sharpe Ratio", J. of Portfolio
    Management 40(5), 2014.
Cross-checked
    tests/unit/test_backtest_crosscheck.py: against backtesting.py on identical trades (and where and
    why the two differ) and against a plain per-bar reference; benchmark in bench/backtest.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from clm_contract.metrics import BacktestMetrics

from clm_trainer import sharpe_stats

CONVENTIONS: dict[str, str] = {
    "timing": "positions[t] is decided at the close of bar t and held over bar t+1: "
              "gross[t+1] = positions[t] * bar_returns[t+1], bar_returns[t] = close[t]/close[t-1]-1",
    "costs": "(feeBps + slippageBps)/1e4 * |position change|, charged on the bar where the new "
             "position starts earning; the closing leg c*|d|*|old|/(|old|+|new|) is paid first, the "
             "opening leg c*|d|*|new|/(|old|+|new|) out of the remaining equity (a flip: c each)",
    "trades": "maximal runs of one non-zero held position; trade return = compounded net return of its "
              "bars incl. its opening cost and its closing cost; the product of trade growth factors "
              "equals the equity growth; a trade open after the last bar is closed at the last close",
    "sharpe": "mean/std(ddof=1) of per-bar arithmetic net returns * sqrt(periodsPerYear) (vectorbt); "
              "0 when the deviation is 0",
    "sortino": "mean/sqrt(mean(min(r,0)^2)) of per-bar net returns * sqrt(periodsPerYear) (vectorbt); "
               "0 when there is no downside",
    "maxDrawdown": "max over bars of 1 - equity/running peak, compounded equity starting at 1; positive",
    "winRate": "share of trades with net return > 0 (all trades are closed)",
    "profitFactor": "sum of positive / |sum of negative| trade returns (backtesting.py); inf with profit "
                    "and no loss; 0 with no profit or no trades",
    "totalReturn": "equity[-1] - 1",
    "exposure": "share of bars held at a non-zero position",
    "psr": "probabilistic Sharpe ratio (Bailey & Lopez de Prado 2012) on daily-aggregated net returns "
           "(UTC days), raw kurtosis, benchmark Sharpe 0",
    "dsr": "deflated Sharpe ratio (Bailey & Lopez de Prado 2014) with nTrials; trial Sharpe variance "
           "given in annualised units or, by default, 1/(days-1) (no trial has skill)",
    "periodsPerYear": "24/7 markets: 365 days / median bar spacing (hourly -> 8760); weekday markets: "
                      "252 * bars per trading day",
}

_NS_PER_DAY = 86_400_000_000_000


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Metrics plus the series behind them (all per bar unless named per trade / per day)."""

    metrics: BacktestMetrics
    net_returns: np.ndarray  # per bar, after costs
    equity: np.ndarray  # compounded, starts at 1 (before bar 0)
    drawdown: np.ndarray  # positive fractions
    trade_returns: np.ndarray  # compounded net return of each trade
    trade_entries: np.ndarray  # first bar held (bar index)
    trade_exits: np.ndarray  # last bar held (bar index)
    daily_returns: np.ndarray = field(default_factory=lambda: np.empty(0))  # what PSR/DSR used


def positions_from_scores(scores: np.ndarray, threshold: float = 0.0, allow_short: bool = True) -> np.ndarray:
    """+1 where score > threshold, -1 where score < -threshold (0 when shorts are off), else 0; NaN -> 0."""
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold} "
                         "(spec.evaluation.signalThreshold)")
    s = np.asarray(scores, dtype=np.float64)
    out = (s > threshold).astype(np.float64)
    if allow_short:
        out -= s < -threshold
    return out


def infer_periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per year from the median bar spacing and the calendar (as vectorbt annualises).

    24/7 markets (bars on weekends): ``365 days / spacing`` (hourly -> 8760 exactly). Weekday-only
    markets (no weekend bar although the data spans a week): ``252 × bars per trading day``.
    Spacings of a week or more: ``365 days / spacing``. Spans shorter than a week cannot show a
    calendar and are taken as 24/7.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(f"index must be a pandas DatetimeIndex, got {type(index).__name__}")
    if len(index) < 2:
        raise ValueError("index needs at least 2 timestamps to infer periodsPerYear; "
                         "set spec.evaluation.periodsPerYear instead")
    ns = index.as_unit("ns").asi8
    diffs = np.diff(ns)
    diffs = diffs[diffs > 0]
    if diffs.size == 0:
        raise ValueError("index has no two distinct timestamps; cannot infer periodsPerYear")
    spacing = float(np.median(diffs))
    year_365 = 365.0 * _NS_PER_DAY
    if spacing >= 7 * _NS_PER_DAY:
        return year_365 / spacing
    span_days = (float(ns.max()) - float(ns.min())) / _NS_PER_DAY
    weekend_share = float(np.mean(index.day_of_week >= 5))
    if weekend_share > 0.1 or span_days < 7:
        return year_365 / spacing
    if spacing >= _NS_PER_DAY:
        return 252.0 * _NS_PER_DAY / spacing
    dates = index.normalize()
    bars_per_day = float(np.median(pd.Series(1, index=dates).groupby(level=0).size().to_numpy()))
    return 252.0 * bars_per_day


def _vector(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def _check_inputs(pos: np.ndarray, ret: np.ndarray, fee_bps: float, slippage_bps: float,
                  periods_per_year: float, n_trials: int, timestamps: pd.DatetimeIndex | None,
                  trial_sharpe_variance: float | None) -> None:
    if pos.size == 0:
        raise ValueError("positions is empty: a backtest needs at least one bar")
    if ret.size != pos.size:
        raise ValueError(f"bar_returns has {ret.size} bars but positions has {pos.size}; "
                         "they must be aligned bar by bar")
    for name, value in (("fee_bps", fee_bps), ("slippage_bps", slippage_bps)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value} (spec.evaluation.costs)")
    if not (math.isfinite(periods_per_year) and periods_per_year > 0):
        raise ValueError(f"periods_per_year must be > 0, got {periods_per_year} "
                         "(spec.evaluation.periodsPerYear)")
    if int(n_trials) != n_trials or n_trials < 1:
        raise ValueError(f"n_trials must be an integer >= 1, got {n_trials} (spec.evaluation.nTrials)")
    if trial_sharpe_variance is not None and not (
            math.isfinite(trial_sharpe_variance) and trial_sharpe_variance >= 0):
        raise ValueError(f"trial_sharpe_variance must be a finite number >= 0, got {trial_sharpe_variance}")
    if timestamps is not None:
        if len(timestamps) != pos.size:
            raise ValueError(f"timestamps has {len(timestamps)} entries but positions has {pos.size}")
        if not timestamps.is_monotonic_increasing:
            raise ValueError("timestamps must be sorted ascending")
    if not math.isfinite(float(np.add.reduce(pos))):
        bad_at = np.flatnonzero(~np.isfinite(pos))
        if bad_at.size == 0:  # finite but huge: the sum overflowed
            return
        bad = int(bad_at[0])
        raise ValueError(f"positions[{bad}] is {pos[bad]}: positions must be finite (NaN scores -> 0 "
                         "is done by positions_from_scores)")


def _day_starts(timestamps: pd.DatetimeIndex) -> np.ndarray:
    """Index of the first bar of each UTC day that has bars (timestamps sorted).

    Works on the index's own integer epoch (UTC for tz-aware indexes) in its own unit, so a
    million bars cost one binary search per day instead of a conversion of every timestamp.
    """
    epoch = timestamps.asi8
    per_day = _NS_PER_DAY // int(pd.Timedelta(1, unit=timestamps.unit).value)
    first, last = int(epoch[0]) // per_day, int(epoch[-1]) // per_day
    edges = np.arange(first + 1, last + 1, dtype=np.int64) * per_day
    starts = np.empty(edges.size + 1, dtype=np.intp)
    starts[0] = 0
    starts[1:] = np.searchsorted(epoch, edges, side="left")
    # days without bars give repeated indices; keep one start per non-empty day
    keep = np.empty(starts.size, dtype=bool)
    keep[0] = True
    np.not_equal(starts[1:], starts[:-1], out=keep[1:])
    starts = starts[keep]
    kept: np.ndarray = starts[starts < epoch.size]
    return kept


def run_backtest(positions: np.ndarray, bar_returns: np.ndarray, *, fee_bps: float, slippage_bps: float,
                 periods_per_year: float, n_trials: int = 1, timestamps: pd.DatetimeIndex | None = None,
                 trial_sharpe_variance: float | None = None) -> BacktestResult:
    """Backtest ``positions`` against ``bar_returns`` under ``CONVENTIONS``; O(n) numpy, no per-bar loop.

    ``trial_sharpe_variance``: variance of the Sharpe ratios of all trials of the search, in the
    units of ``metrics.sharpe`` (annualised); None -> the null-hypothesis default (sharpe_stats).
    ``bar_returns`` may be NaN only where nothing is held (e.g. bar 0).
    """
    pos = _vector(positions, "positions")
    ret = _vector(bar_returns, "bar_returns")
    _check_inputs(pos, ret, fee_bps, slippage_bps, periods_per_year, n_trials, timestamps,
                  trial_sharpe_variance)
    n = pos.size
    cost = (fee_bps + slippage_bps) / 1e4
    held = pos[:-1]  # held[t-1] is the position over bar t, t >= 1; bar 0 holds nothing

    # growth[t] = 1 + held*r (then minus the opening cost, then times the closing factor)
    growth = np.empty(n)
    growth[0] = 1.0
    np.multiply(held, ret[1:], out=growth[1:])
    if not math.isfinite(float(np.add.reduce(growth[1:]))):
        _check_returns(held, ret)
        growth[1:][held == 0] = 0.0
    growth[1:] += 1.0

    # bars where the held position changes (bar 1 changes iff positions[0] != 0)
    changed = np.empty(n - 1, dtype=bool)
    if n > 1:
        changed[0] = held[0] != 0
        np.not_equal(held[1:], held[:-1], out=changed[1:])
    change_bars = np.flatnonzero(changed) + 1
    new = held[change_bars - 1]
    old = held[change_bars - 2]
    if change_bars.size and change_bars[0] == 1:
        old[0] = 0.0  # held[-1] was read for bar 0, which holds nothing
    abs_old, abs_new = np.abs(old), np.abs(new)
    share = cost * np.abs(new - old) / (abs_old + abs_new)  # |old|+|new| > 0 at every change
    closing_leg, opening_leg = share * abs_old, share * abs_new
    growth[change_bars] -= opening_leg

    # trades: first bars are changes to a non-zero position, last bars precede a change from one
    opens = new != 0
    entries = change_bars[opens]
    closes = old != 0
    exit_following = change_bars[closes]  # first bar after the trade, its closing leg
    final_open = n > 1 and held[-1] != 0
    exits = np.concatenate((exit_following - 1, [n - 1])) if final_open else exit_following - 1
    closing_factor = 1.0 - closing_leg[closes]
    final_factor = 1.0 - cost * abs(float(held[-1])) if final_open else 1.0
    if final_open:
        closing_factor = np.concatenate((closing_factor, [final_factor]))
    if entries.size:
        bounds = np.empty(2 * entries.size, dtype=np.intp)
        bounds[0::2] = entries
        bounds[1::2] = exits + 1
        # reduceat wants indices < n; the last trade may run to the end anyway
        seg = np.multiply.reduceat(growth, bounds[:-1] if bounds[-1] >= n else bounds)[0::2]
        trade_returns = seg * closing_factor - 1.0
    else:
        trade_returns = np.empty(0)

    growth[change_bars] *= 1.0 - closing_leg
    growth[-1] *= final_factor
    # Only three full-length arrays are allocated (growth→net, equity, drawdown): on a VM a fresh
    # 8 MB array costs more in page faults than the arithmetic done in it.
    equity = np.cumprod(growth)
    daily = None if timestamps is None else np.multiply.reduceat(growth, _day_starts(timestamps)) - 1.0
    net = growth
    net -= 1.0
    if daily is None:
        daily = net  # without timestamps every bar counts as a day

    drawdown = np.empty(n)
    sharpe, sortino = _sharpe_sortino(net, drawdown, periods_per_year)
    # the same array then holds the running peak, the ratio to it, and the drawdown
    np.maximum.accumulate(equity, out=drawdown)
    np.maximum(drawdown, 1.0, out=drawdown)
    np.divide(equity, drawdown, out=drawdown)
    np.subtract(1.0, drawdown, out=drawdown)

    metrics = _metrics(sharpe, sortino, equity, drawdown, trade_returns, held, daily, n, periods_per_year,
                       int(n_trials), trial_sharpe_variance)
    return BacktestResult(metrics=metrics, net_returns=net, equity=equity, drawdown=drawdown,
                          trade_returns=trade_returns, trade_entries=entries, trade_exits=exits,
                          daily_returns=daily)


def trade_statistics(trade_returns: np.ndarray) -> tuple[float, float]:
    """(win rate, profit factor) of trade returns under ``CONVENTIONS`` (backtesting.py's definitions,
    except that a profit with no loss gives inf where backtesting.py gives NaN, and no trades give 0)."""
    r = np.asarray(trade_returns, dtype=np.float64)
    if r.size == 0:
        return 0.0, 0.0
    wins = r[r > 0]
    gain, loss = float(wins.sum()), -float(r[r < 0].sum())
    if gain <= 0:
        profit_factor = 0.0
    else:
        profit_factor = gain / loss if loss > 0 else math.inf
    return wins.size / r.size, profit_factor


def _check_returns(held: np.ndarray, ret: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(ret[1:]) & (held != 0))
    if bad.size:
        t = int(bad[0]) + 1
        raise ValueError(f"bar_returns[{t}] is {ret[t]} while a position is held over that bar; "
                         "bar returns must be finite wherever a position is held")


def _sharpe_sortino(net: np.ndarray, scratch: np.ndarray, periods_per_year: float) -> tuple[float, float]:
    """vectorbt's Sharpe (ddof=1) and Sortino, annualised; 0 where the deviation is 0."""
    n = net.size
    if n < 2:
        return 0.0, 0.0
    root = math.sqrt(periods_per_year)
    mean = float(net.mean())
    # sums of squares without np.dot: BLAS may spread a dot product over threads, which costs far
    # more than it saves on a busy machine (and the trainer does not pin BLAS threads)
    np.subtract(net, mean, out=scratch)
    np.square(scratch, out=scratch)
    var = float(np.add.reduce(scratch)) / (n - 1)
    sharpe = sortino = 0.0
    # rounding leaves ~1e-33 of variance in a constant series: treat it as zero deviation
    if var > (abs(mean) * 1e-12) ** 2 and var > 0:
        sharpe = mean / math.sqrt(var) * root
    np.minimum(net, 0.0, out=scratch)
    np.square(scratch, out=scratch)
    down_sq = float(np.add.reduce(scratch)) / n
    if down_sq > 0:
        sortino = mean / math.sqrt(down_sq) * root
    return sharpe, sortino


def _metrics(sharpe: float, sortino: float, equity: np.ndarray, drawdown: np.ndarray,
             trade_returns: np.ndarray, held: np.ndarray, daily: np.ndarray, n: int,
             periods_per_year: float, n_trials: int, trial_sharpe_variance: float | None) -> BacktestMetrics:
    n_trades = int(trade_returns.size)
    win_rate, profit_factor = trade_statistics(trade_returns)

    moments = sharpe_stats.sharpe_moments(daily)
    psr = dsr = 0.0
    if moments.defined:
        psr = sharpe_stats.probabilistic_sharpe_ratio(moments.sharpe, moments.n_obs, moments.skewness,
                                                      moments.kurtosis)
        variance = None
        if trial_sharpe_variance is not None:
            # annualised Sharpe variance -> variance of the daily Sharpe ratio
            bars_per_day = n / daily.size
            variance = trial_sharpe_variance * bars_per_day / periods_per_year
        dsr = sharpe_stats.deflated_sharpe_ratio(moments.sharpe, moments.n_obs, moments.skewness,
                                                 moments.kurtosis, n_trials, variance)
    return BacktestMetrics(
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=max(0.0, float(drawdown.max())),
        win_rate=win_rate,
        profit_factor=profit_factor,
        trades=n_trades,
        total_return=float(equity[-1]) - 1.0,
        exposure=float(np.count_nonzero(held)) / n,
        psr=psr,
        dsr=dsr,
        bars=n,
        periods_per_year=periods_per_year,
        n_trials=n_trials,
    )
