"""The shadow test of a challenger and the monitor of the Production version (issue 13 part 3;
docs/architecture.md sections 4 and 9). Pure: frozen views in, a frozen decision out.

The forward figures come from ``clm-trainer evaluate``: both versions' positions on the same forward bars,
with the same costs and backtest; the p-value is clm_trainer/forward_stats.py's one-sided paired block
bootstrap ("the first version earns more per bar than the second").

Shadow test (``decide_shadow``), first match wins:
1. a version that is not Shadow: nothing to decide (``NONE``);
2. ``PROMOTE`` when its forward result has at least ``minBars`` bars and ``minTrades`` trades and its
   p-value against Production is below ``alpha`` (strictly);
3. ``BACK_TO_CANDIDATE`` when ``maxDuration`` has passed since it became Shadow (``now - since >=
   maxDuration``) without that;
4. else ``KEEP_SHADOW``, the reason naming the first thing missing: no forward result yet, no p-value
   (nothing served on its forward bars), too few bars, too few trades, not significant.
Applying the decision moves the version out of Shadow or leaves it there, so deciding again on the state
it leaves changes nothing.
The test is one-sided at ``alpha`` for ONE look. Re-testing the same challenger on a growing window after
every evaluation and promoting at the first p < alpha makes a false promotion likelier with each look;
the caller decides how often it looks.

Monitor (``decide_monitor``), on Production's forward result over ``monitor.window``, as the status of
the Model's ``Degraded`` condition:
- Unknown without a result or with fewer than ``minBars`` bars;
- True when its forward Sharpe (annualised, as ``BacktestMetrics.sharpe``) is below ``minSharpe``
  (default 0.5), or its forward max drawdown (a positive fraction) exceeds its backtest max drawdown x
  ``drawdownFactor`` (default 1.5); the reason is the first of the two that holds, the message names both;
- else False.
Rollback: only while Degraded is True, only with ``autoRollback``, and only to the previous Production
version when it has at least ``minBars`` bars on the same window and p < ``alpha`` for "previous better
than Production". Under a pin (``spec.productionVersion``) the operator never writes the spec, so the
decision only reports the rollback it would make.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from clm_contract.model_version import Stage

from clm_operator.domain.conditions import FALSE, TRUE, UNKNOWN

DEFAULT_ALPHA = 0.05
DEFAULT_MIN_SHARPE = 0.5
DEFAULT_DRAWDOWN_FACTOR = 1.5


class ShadowAction(StrEnum):
    """What the shadow test does with a version."""

    NONE = "None"  # not a Shadow version
    PROMOTE = "Promote"
    KEEP_SHADOW = "KeepShadow"
    BACK_TO_CANDIDATE = "BackToCandidate"


class ShadowReason(StrEnum):
    """Why, for the stage history and the Event (Promote: PASSED, BackToCandidate: EXPIRED)."""

    NOT_SHADOW = "NotShadow"
    PASSED = "ShadowTestPassed"
    EXPIRED = "ShadowTestExpired"
    NOT_EVALUATED = "ShadowNotEvaluated"
    NO_CHAMPION = "ShadowNoChampion"
    TOO_FEW_BARS = "ShadowTooFewBars"
    TOO_FEW_TRADES = "ShadowTooFewTrades"
    NOT_SIGNIFICANT = "ShadowNotSignificant"


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be within (0, 1), got {alpha}")


def _check_p_value(p_value: float | None) -> None:
    if p_value is not None and not 0.0 <= p_value <= 1.0:
        raise ValueError(f"a p-value must be within [0, 1], got {p_value}")


@dataclass(frozen=True)
class ShadowPolicy:
    """The Model's ``spec.shadow``."""

    min_bars: int
    min_trades: int
    max_duration: timedelta
    alpha: float = DEFAULT_ALPHA

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)
        if self.min_bars < 0 or self.min_trades < 0:
            raise ValueError(f"minBars and minTrades must be >= 0, got {self.min_bars} and {self.min_trades}")
        if self.max_duration <= timedelta(0):
            raise ValueError(f"maxDuration must be positive, got {self.max_duration}")


@dataclass(frozen=True)
class ForwardResult:
    """A challenger's latest forward evaluation (``ModelVersion.status.forward``)."""

    bars: int  # forward bars the challenger and Production were both evaluated on
    trades: int  # the challenger's closed trades on those bars
    p_value: float | None  # "challenger better than Production"; None: nothing served on those bars

    def __post_init__(self) -> None:
        if self.bars < 0 or self.trades < 0:
            raise ValueError(f"bars and trades must be >= 0, got {self.bars} and {self.trades}")
        _check_p_value(self.p_value)


@dataclass(frozen=True)
class ShadowView:
    version: str
    stage: Stage | str
    since: datetime  # when it became Shadow (its stage history)
    forward: ForwardResult | None  # None: not evaluated since it became Shadow
    champion: str | None = None  # the Production version it was compared with, for the message


@dataclass(frozen=True)
class ShadowDecision:
    action: ShadowAction
    reason: ShadowReason  # CamelCase, for the stage history and the Event
    message: str

    @property
    def stage(self) -> Stage | None:
        """The stage the version moves to; None: it stays where it is."""
        if self.action == ShadowAction.PROMOTE:
            return Stage.PRODUCTION
        if self.action == ShadowAction.BACK_TO_CANDIDATE:
            return Stage.CANDIDATE
        return None


def decide_shadow(view: ShadowView, policy: ShadowPolicy, now: datetime) -> ShadowDecision:
    """The shadow test's rules (module docstring)."""
    if view.stage != Stage.SHADOW:
        return ShadowDecision(ShadowAction.NONE, ShadowReason.NOT_SHADOW,
                              f"version {view.version} is {view.stage}, not Shadow")
    forward = view.forward
    champion = view.champion or "production"
    missing = _shadow_shortfall(forward, policy)
    if missing is None:
        assert forward is not None and forward.p_value is not None
        return ShadowDecision(
            ShadowAction.PROMOTE, ShadowReason.PASSED,
            f"version {view.version} beat {champion} on {forward.bars} forward bars ({forward.trades} "
            f"trades): p = {forward.p_value:.4g} < alpha {policy.alpha:g}")
    reason, detail = missing
    if now - view.since >= policy.max_duration:
        return ShadowDecision(
            ShadowAction.BACK_TO_CANDIDATE, ShadowReason.EXPIRED,
            f"version {view.version} showed no significant edge over {champion} within maxDuration "
            f"{_duration(policy.max_duration)}: {detail}")
    return ShadowDecision(ShadowAction.KEEP_SHADOW, reason, f"version {view.version} stays Shadow: {detail}")


def _shadow_shortfall(forward: ForwardResult | None,
                      policy: ShadowPolicy) -> tuple[ShadowReason, str] | None:
    """What the forward result still lacks for a promotion; None when it has it all."""
    if forward is None:
        return ShadowReason.NOT_EVALUATED, "no forward evaluation yet"
    if forward.p_value is None:
        return ShadowReason.NO_CHAMPION, f"no paired test on its {forward.bars} forward bars (nothing served)"
    if forward.bars < policy.min_bars:
        return ShadowReason.TOO_FEW_BARS, f"{forward.bars} of minBars {policy.min_bars} forward bars"
    if forward.trades < policy.min_trades:
        return ShadowReason.TOO_FEW_TRADES, f"{forward.trades} of minTrades {policy.min_trades} trades"
    if forward.p_value >= policy.alpha:
        return ShadowReason.NOT_SIGNIFICANT, (f"p = {forward.p_value:.4g} >= alpha {policy.alpha:g} on "
                                              f"{forward.bars} forward bars")
    return None


@dataclass(frozen=True)
class MonitorPolicy:
    """The Model's ``spec.monitor``."""

    window: timedelta  # the forward window the evaluation used (for the messages)
    min_bars: int  # fewer bars in the window: no verdict
    min_sharpe: float = DEFAULT_MIN_SHARPE
    drawdown_factor: float = DEFAULT_DRAWDOWN_FACTOR
    auto_rollback: bool = False
    alpha: float = DEFAULT_ALPHA

    def __post_init__(self) -> None:
        _check_alpha(self.alpha)
        if self.min_bars < 0:
            raise ValueError(f"minBars must be >= 0, got {self.min_bars}")
        if not math.isfinite(self.min_sharpe):
            raise ValueError(f"minSharpe must be a finite number, got {self.min_sharpe}")
        if not (math.isfinite(self.drawdown_factor) and self.drawdown_factor > 0.0):
            raise ValueError(f"the drawdown factor must be a positive number, got {self.drawdown_factor}")


@dataclass(frozen=True)
class ProductionForward:
    """The Production version over the monitor's window, and its own backtest's drawdown."""

    version: str
    bars: int
    sharpe: float  # annualised, as BacktestMetrics.sharpe
    max_drawdown: float  # positive fraction of the equity curve
    backtest_max_drawdown: float  # its ModelVersion's BacktestMetrics.maxDrawdown

    def __post_init__(self) -> None:
        if self.bars < 0:
            raise ValueError(f"bars must be >= 0, got {self.bars}")
        if not math.isfinite(self.sharpe):
            raise ValueError(f"the forward Sharpe must be a finite number, got {self.sharpe}")
        for label, drawdown in (("forward", self.max_drawdown), ("backtest", self.backtest_max_drawdown)):
            if not (math.isfinite(drawdown) and drawdown >= 0.0):
                raise ValueError(f"the {label} max drawdown must be a fraction >= 0, got {drawdown}")


@dataclass(frozen=True)
class PreviousForward:
    """The previous Production version on the SAME window, tested against the current one."""

    version: str
    bars: int
    p_value: float  # "previous better than current Production"

    def __post_init__(self) -> None:
        if self.bars < 0:
            raise ValueError(f"bars must be >= 0, got {self.bars}")
        _check_p_value(self.p_value)


class MonitorReason(StrEnum):
    """Why, for the ``Degraded`` condition and the Warning Event."""

    NOT_EVALUATED = "ForwardNotEvaluated"
    TOO_FEW_BARS = "ForwardTooFewBars"
    SHARPE_LOW = "ForwardSharpeBelowMinimum"
    DRAWDOWN_HIGH = "ForwardDrawdownAboveLimit"
    HEALTHY = "ForwardPerformanceHealthy"


@dataclass(frozen=True)
class MonitorDecision:
    degraded: str  # the Degraded condition's status: TRUE, FALSE (healthy) or UNKNOWN (too little to judge)
    reason: MonitorReason  # CamelCase, for the Degraded condition and the Event
    message: str
    rollback_to: str | None = None  # the version to serve instead; never set under a pin


def decide_monitor(production: ProductionForward | None, policy: MonitorPolicy, *,
                   previous: PreviousForward | None = None, pinned: bool = False) -> MonitorDecision:
    """The monitor's rules (module docstring)."""
    if production is None:
        return MonitorDecision(UNKNOWN, MonitorReason.NOT_EVALUATED,
                               "production has no forward evaluation yet")
    window = _duration(policy.window)
    if production.bars < policy.min_bars:
        return MonitorDecision(
            UNKNOWN, MonitorReason.TOO_FEW_BARS,
            f"version {production.version}: {production.bars} of minBars {policy.min_bars} forward bars in "
            f"the last {window}")
    limit = production.backtest_max_drawdown * policy.drawdown_factor
    problems: list[tuple[MonitorReason, str]] = []
    if production.sharpe < policy.min_sharpe:
        problems.append((MonitorReason.SHARPE_LOW,
                         f"forward Sharpe {production.sharpe:.3g} < minSharpe {policy.min_sharpe:g}"))
    if production.max_drawdown > limit:
        problems.append((MonitorReason.DRAWDOWN_HIGH,
                         f"forward max drawdown {production.max_drawdown:.3g} > {limit:.3g} (backtest "
                         f"{production.backtest_max_drawdown:.3g} x {policy.drawdown_factor:g})"))
    summary = f"version {production.version} over the last {window} ({production.bars} bars)"
    if not problems:
        return MonitorDecision(
            FALSE, MonitorReason.HEALTHY,
            f"{summary}: forward Sharpe {production.sharpe:.3g} >= {policy.min_sharpe:g}, max drawdown "
            f"{production.max_drawdown:.3g} <= {limit:.3g}")
    message = f"{summary}: " + "; ".join(text for _, text in problems)
    rollback_to: str | None = None
    if policy.auto_rollback:
        verdict, target = _rollback(previous, policy)
        if target is not None and pinned:
            verdict = f"spec.productionVersion pins production, so only reported: {verdict}"
        else:
            rollback_to = target
        message = f"{message}. {verdict}"
    return MonitorDecision(TRUE, problems[0][0], message, rollback_to)


def _rollback(previous: PreviousForward | None, policy: MonitorPolicy) -> tuple[str, str | None]:
    """(the words for the message, the version to roll back to or None)."""
    if previous is None:
        return "no rollback: no previous version was evaluated on this window", None
    if previous.bars < policy.min_bars:
        return (f"no rollback: previous version {previous.version} has {previous.bars} of minBars "
                f"{policy.min_bars} bars on this window"), None
    if previous.p_value >= policy.alpha:
        return (f"no rollback: previous version {previous.version} did not do significantly better "
                f"(p = {previous.p_value:.4g} >= alpha {policy.alpha:g})"), None
    return (f"rolls back to {previous.version}, significantly better on the same window "
            f"(p = {previous.p_value:.4g} < alpha {policy.alpha:g})"), previous.version


def _duration(value: timedelta) -> str:
    """'14d', '36h', '90m' or '45s': the largest unit that divides it, for messages."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
