"""The shadow test and the production monitor of operator/clm_operator/domain/shadow.py: the rules on tables
of cases, their properties, and no false promotions when the p-values come from the real paired test on
forward bars where neither version has an edge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from clm_contract.model_version import Stage
from clm_operator.domain.conditions import FALSE, TRUE, UNKNOWN
from clm_operator.domain.shadow import (
    ForwardResult,
    MonitorDecision,
    MonitorPolicy,
    MonitorReason,
    PreviousForward,
    ProductionForward,
    ShadowAction,
    ShadowDecision,
    ShadowPolicy,
    ShadowReason,
    ShadowView,
    decide_monitor,
    decide_shadow,
)
from clm_trainer.forward_stats import paired_block_bootstrap_pvalue
from hypothesis import given, settings
from hypothesis import strategies as st

SINCE = datetime(2026, 3, 1, tzinfo=UTC)
POLICY = ShadowPolicy(min_bars=500, min_trades=20, max_duration=timedelta(days=14))


def shadow(
    forward: ForwardResult | None, *, stage: str = Stage.SHADOW, champion: str | None = "v1"
) -> ShadowView:
    return ShadowView(version="v2", stage=stage, since=SINCE, forward=forward, champion=champion)


def result(bars: int = 500, trades: int = 20, p_value: float | None = 0.01) -> ForwardResult:
    return ForwardResult(bars=bars, trades=trades, p_value=p_value)


KEEP, PROMOTE, BACK = ShadowAction.KEEP_SHADOW, ShadowAction.PROMOTE, ShadowAction.BACK_TO_CANDIDATE
R = ShadowReason
DAY = 24

# (view, hours since it became Shadow, action, reason, words the message holds); maxDuration is 14 days
SHADOW_CASES = {
    "not-shadow": (shadow(result(), stage=Stage.CANDIDATE), DAY, ShadowAction.NONE, R.NOT_SHADOW,
                   "v2 is Candidate, not Shadow"),
    "not-evaluated": (shadow(None), DAY, KEEP, R.NOT_EVALUATED, "stays Shadow: no forward evaluation yet"),
    "no-champion": (shadow(result(p_value=None)), DAY, KEEP, R.NO_CHAMPION, "no paired test on its 500"),
    "few-bars": (shadow(result(bars=499, p_value=0.001)), DAY, KEEP, R.TOO_FEW_BARS, "499 of minBars 500"),
    "few-trades": (shadow(result(trades=19, p_value=0.001)), DAY, KEEP, R.TOO_FEW_TRADES,
                   "19 of minTrades 20"),
    "p-equals-alpha": (shadow(result(p_value=0.05)), DAY, KEEP, R.NOT_SIGNIFICANT,
                       "p = 0.05 >= alpha 0.05 on 500 forward bars"),
    "promote": (shadow(result(p_value=0.0499)), DAY, PROMOTE, R.PASSED,
                "v2 beat v1 on 500 forward bars (20 trades): p = 0.0499 < alpha 0.05"),
    "promote-unnamed": (shadow(result(p_value=0.0499), champion=None), DAY, PROMOTE, R.PASSED,
                        "beat production"),
    "before-expiry": (shadow(result(p_value=0.2)), 14 * DAY - 1, KEEP, R.NOT_SIGNIFICANT, "p = 0.2 >= alpha"),
    "expired": (shadow(result(p_value=0.2)), 14 * DAY, BACK, R.EXPIRED,
                "no significant edge over v1 within maxDuration 14d: p = 0.2 >= alpha 0.05 on 500 forward"),
    "expired-unevaluated": (shadow(None), 30 * DAY, BACK, R.EXPIRED, "14d: no forward evaluation yet"),
    "significant-after-expiry": (shadow(result(p_value=0.001)), 30 * DAY, PROMOTE, R.PASSED,
                                 "p = 0.001 < alpha"),
}


@pytest.mark.parametrize(
    ("view", "hours", "action", "reason", "words"), SHADOW_CASES.values(), ids=SHADOW_CASES
)
def test_shadow_rules(
    view: ShadowView, hours: int, action: ShadowAction, reason: ShadowReason, words: str
) -> None:
    decision = decide_shadow(view, POLICY, SINCE + timedelta(hours=hours))
    assert (decision.action, decision.reason) == (action, reason)
    assert words in decision.message
    expected_stage = {ShadowAction.PROMOTE: Stage.PRODUCTION, ShadowAction.BACK_TO_CANDIDATE: Stage.CANDIDATE}
    assert decision.stage == expected_stage.get(action)


def test_a_custom_alpha_is_honoured() -> None:
    strict = ShadowPolicy(min_bars=0, min_trades=0, max_duration=timedelta(hours=36), alpha=0.01)
    assert decide_shadow(shadow(result(p_value=0.02)), strict, SINCE).action == ShadowAction.KEEP_SHADOW
    assert decide_shadow(shadow(result(p_value=0.009)), strict, SINCE).action == ShadowAction.PROMOTE
    expired = decide_shadow(shadow(result(p_value=0.02)), strict, SINCE + timedelta(hours=36))
    assert "within maxDuration 36h" in expired.message


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ShadowPolicy(min_bars=1, min_trades=1, max_duration=timedelta(days=1), alpha=0.0), "alpha"),
        (lambda: ShadowPolicy(min_bars=1, min_trades=1, max_duration=timedelta(days=1), alpha=1.0), "alpha"),
        (lambda: ShadowPolicy(min_bars=-1, min_trades=1, max_duration=timedelta(days=1)), "minBars"),
        (lambda: ShadowPolicy(min_bars=1, min_trades=1, max_duration=timedelta(0)), "maxDuration"),
        (lambda: ForwardResult(bars=10, trades=1, p_value=1.5), "p-value"),
        (lambda: ForwardResult(bars=10, trades=1, p_value=float("nan")), "p-value"),
        (lambda: ForwardResult(bars=-1, trades=1, p_value=0.5), "bars and trades"),
        (lambda: MonitorPolicy(window=timedelta(days=7), min_bars=1, drawdown_factor=0.0), "drawdown factor"),
        (lambda: MonitorPolicy(window=timedelta(days=7), min_bars=1, min_sharpe=float("inf")), "minSharpe"),
        (lambda: ProductionForward("v1", 10, float("nan"), 0.1, 0.1), "forward Sharpe"),
        (lambda: ProductionForward("v1", 10, 1.0, -0.1, 0.1), "forward max drawdown"),
        (lambda: PreviousForward("v0", 10, -0.1), "p-value"),
    ],
    ids=[
        "alpha-0",
        "alpha-1",
        "min-bars",
        "max-duration",
        "p-above-1",
        "p-nan",
        "bars",
        "factor",
        "sharpe",
        "forward-sharpe",
        "drawdown",
        "previous-p",
    ],
)
def test_invalid_views_are_refused(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]


def apply(view: ShadowView, decision: ShadowDecision) -> ShadowView:
    """The state the decision leaves: the version in its new stage (or where it was)."""
    if decision.stage is None:
        return view
    return ShadowView(view.version, decision.stage, view.since, view.forward, view.champion)


forward_results = st.one_of(
    st.none(),
    st.builds(
        ForwardResult,
        bars=st.integers(0, 2000),
        trades=st.integers(0, 100),
        p_value=st.one_of(st.none(), st.floats(0.0, 1.0)),
    ),
)
policies = st.builds(
    ShadowPolicy,
    min_bars=st.integers(0, 1500),
    min_trades=st.integers(0, 60),
    max_duration=st.integers(1, 60 * 24 * 30).map(lambda m: timedelta(minutes=m)),
    alpha=st.floats(0.001, 0.2),
)


@settings(max_examples=300, deadline=None)
@given(
    forward=forward_results,
    policy=policies,
    stage=st.sampled_from(list(Stage)),
    elapsed=st.integers(0, 60 * 24 * 60).map(lambda m: timedelta(minutes=m)),
)
def test_shadow_properties(
    forward: ForwardResult | None, policy: ShadowPolicy, stage: Stage, elapsed: timedelta
) -> None:
    view = ShadowView("v2", stage, SINCE, forward, "v1")
    now = SINCE + elapsed
    decision = decide_shadow(view, policy, now)
    # A fixed point: the state the decision leaves asks for no further stage change.
    assert decide_shadow(apply(view, decision), policy, now).stage is None
    qualifies = (
        forward is not None
        and forward.p_value is not None
        and forward.p_value < policy.alpha
        and forward.bars >= policy.min_bars
        and forward.trades >= policy.min_trades
    )
    if stage != Stage.SHADOW:
        assert decision.action == ShadowAction.NONE
    elif qualifies:
        assert decision.action == ShadowAction.PROMOTE
    elif elapsed >= policy.max_duration:
        assert decision.action == ShadowAction.BACK_TO_CANDIDATE
    else:
        assert decision.action == ShadowAction.KEEP_SHADOW
    # Never a promotion without significance, enough bars and enough trades.
    if decision.action == ShadowAction.PROMOTE:
        assert qualifies


# --- no false promotions, and a true challenger, through the real paired test ------------------------------


def strategy_returns(rng: np.random.Generator, moves: np.ndarray, skill: float) -> tuple[np.ndarray, int]:
    """Net per-bar returns and trades of a long/short/flat position re-chosen at random about once a day
    (24 bars); ``skill``: the share of bars on which it takes the sign of the next bar's move instead."""
    bars = moves.size
    change = rng.random(bars) < 1 / 24
    change[0] = True
    held = rng.choice([-1.0, 0.0, 1.0], size=bars)
    for t in range(1, bars):
        if not change[t]:
            held[t] = held[t - 1]
    knows = rng.random(bars) < skill
    position = np.where(knows, np.sign(np.roll(moves, -1)), held)
    traded = np.abs(np.diff(position, prepend=0.0))
    # The position decided at bar t earns bar t+1's move; costs 5 bp per unit traded.
    gross = np.concatenate([[0.0], position[:-1] * moves[1:]])
    return gross - 0.0005 * traded, int(np.count_nonzero(traded))


def promoted_seeds(skill: float) -> list[int]:
    policy = ShadowPolicy(min_bars=500, min_trades=10, max_duration=timedelta(days=60))
    promoted = []
    for seed in range(20):
        rng = np.random.default_rng(30_000 + seed)
        moves = rng.normal(0.0, 0.01, 1000)  # the forward bars' log-returns: a random walk
        challenger, trades = strategy_returns(rng, moves, skill)
        champion, _ = strategy_returns(rng, moves, 0.0)
        test = paired_block_bootstrap_pvalue(challenger, champion, block=None, draws=199, seed=seed)
        view = shadow(result(bars=test.bars, trades=trades, p_value=test.p_value))
        if decide_shadow(view, policy, SINCE + timedelta(days=1)).action == ShadowAction.PROMOTE:
            promoted.append(seed)
    return promoted


def test_no_false_promotions_on_random_walks() -> None:
    promoted = promoted_seeds(skill=0.0)
    assert len(promoted) <= 2, f"{len(promoted)} of 20 seeds promoted with no real difference: {promoted}"


def test_a_true_challenger_is_promoted_in_most_seeds() -> None:
    promoted = promoted_seeds(skill=0.15)
    assert len(promoted) >= 15, f"only {len(promoted)} of 20 seeds promoted a challenger with a real edge"


# --- the monitor -------------------------------------------------------------------------------------------

MONITOR = MonitorPolicy(window=timedelta(days=7), min_bars=100, drawdown_factor=2.0)
ROLLBACK = MonitorPolicy(window=timedelta(days=7), min_bars=100, drawdown_factor=2.0, auto_rollback=True)


def production(bars: int = 168, sharpe: float = 1.2, drawdown: float = 0.05) -> ProductionForward:
    return ProductionForward(
        version="v2", bars=bars, sharpe=sharpe, max_drawdown=drawdown, backtest_max_drawdown=0.1
    )


BETTER_BEFORE = PreviousForward(version="v1", bars=168, p_value=0.01)


M = MonitorReason
DEGRADED, HEALTHY = TRUE, FALSE  # the Degraded condition's status
LOW = production(sharpe=0.1)

# (Production's forward result, policy, previous version's test, pinned, Degraded, reason, rollback target,
# words the message holds); the drawdown limit is 0.1 x 2 = 0.2
MONITOR_CASES = {
    "unevaluated": (None, MONITOR, None, False, UNKNOWN, M.NOT_EVALUATED, None, "no forward evaluation"),
    "few-bars": (production(bars=99), MONITOR, None, False, UNKNOWN, M.TOO_FEW_BARS, None,
                 "99 of minBars 100 forward bars in the last 7d"),
    "sharpe-at-minimum": (production(sharpe=0.5), MONITOR, None, False, HEALTHY, M.HEALTHY, None,
                          "forward Sharpe 0.5 >= 0.5"),
    "sharpe-low": (production(sharpe=0.49), MONITOR, None, False, DEGRADED, M.SHARPE_LOW, None,
                   "v2 over the last 7d (168 bars): forward Sharpe 0.49 < minSharpe 0.5"),
    "drawdown-at-limit": (production(drawdown=0.2), MONITOR, None, False, HEALTHY, M.HEALTHY, None,
                          "max drawdown 0.2 <= 0.2"),
    "drawdown-high": (production(drawdown=0.21), MONITOR, None, False, DEGRADED, M.DRAWDOWN_HIGH, None,
                      "forward max drawdown 0.21 > 0.2 (backtest 0.1 x 2)"),
    "both": (production(sharpe=-1.0, drawdown=0.3), MONITOR, None, False, DEGRADED, M.SHARPE_LOW, None,
             "minSharpe 0.5; forward max drawdown 0.3 > 0.2"),
    "no-auto-rollback": (LOW, MONITOR, BETTER_BEFORE, False, DEGRADED, M.SHARPE_LOW, None, "minSharpe 0.5"),
    "rollback": (LOW, ROLLBACK, BETTER_BEFORE, False, DEGRADED, M.SHARPE_LOW, "v1",
                 "rolls back to v1, significantly better on the same window (p = 0.01"),
    "pinned": (LOW, ROLLBACK, BETTER_BEFORE, True, DEGRADED, M.SHARPE_LOW, None,
               "pins production, so only reported: rolls back to v1"),
    "previous-not-significant": (LOW, ROLLBACK, PreviousForward("v1", 168, 0.05), False, DEGRADED,
                                 M.SHARPE_LOW, None, "v1 did not do significantly better (p = 0.05 >= alpha"),
    "previous-few-bars": (LOW, ROLLBACK, PreviousForward("v1", 99, 0.001), False, DEGRADED, M.SHARPE_LOW,
                          None, "v1 has 99 of minBars 100 bars"),
    "no-previous": (LOW, ROLLBACK, None, False, DEGRADED, M.SHARPE_LOW, None, "no previous version was"),
    "healthy-never-rolls-back": (production(), ROLLBACK, BETTER_BEFORE, False, HEALTHY, M.HEALTHY, None,
                                 "forward Sharpe 1.2"),
}


@pytest.mark.parametrize(
    ("forward", "policy", "previous", "pinned", "degraded", "reason", "rollback", "words"),
    MONITOR_CASES.values(),
    ids=MONITOR_CASES,
)
def test_monitor_rules(
    forward: ProductionForward | None,
    policy: MonitorPolicy,
    previous: PreviousForward | None,
    pinned: bool,
    degraded: str,
    reason: MonitorReason,
    rollback: str | None,
    words: str,
) -> None:
    decision = decide_monitor(forward, policy, previous=previous, pinned=pinned)
    assert (decision.degraded, decision.reason, decision.rollback_to) == (degraded, reason, rollback)
    assert words in decision.message


def test_monitor_defaults_are_the_issues() -> None:
    policy = MonitorPolicy(window=timedelta(days=30), min_bars=0)
    assert (policy.min_sharpe, policy.alpha, policy.auto_rollback) == (0.5, 0.05, False)
    assert POLICY.alpha == 0.05


@settings(max_examples=300, deadline=None)
@given(
    bars=st.integers(0, 400),
    sharpe=st.floats(-5.0, 5.0),
    drawdown=st.floats(0.0, 0.5),
    backtest_drawdown=st.floats(0.0, 0.3),
    min_bars=st.integers(0, 300),
    factor=st.floats(0.5, 3.0),
    auto_rollback=st.booleans(),
    pinned=st.booleans(),
    previous=st.one_of(
        st.none(),
        st.builds(
            PreviousForward, version=st.just("v1"), bars=st.integers(0, 400), p_value=st.floats(0.0, 1.0)
        ),
    ),
)
def test_monitor_properties(
    bars: int,
    sharpe: float,
    drawdown: float,
    backtest_drawdown: float,
    min_bars: int,
    factor: float,
    auto_rollback: bool,
    pinned: bool,
    previous: PreviousForward | None,
) -> None:
    policy = MonitorPolicy(
        window=timedelta(days=7), min_bars=min_bars, drawdown_factor=factor, auto_rollback=auto_rollback
    )
    forward = ProductionForward("v2", bars, sharpe, drawdown, backtest_drawdown)
    decision: MonitorDecision = decide_monitor(forward, policy, previous=previous, pinned=pinned)
    degraded = bars >= min_bars and (sharpe < policy.min_sharpe or drawdown > backtest_drawdown * factor)
    assert (decision.degraded == TRUE) == degraded
    assert (decision.degraded == UNKNOWN) == (bars < min_bars)
    if decision.rollback_to is not None:
        assert degraded and auto_rollback and not pinned and previous is not None
        assert previous.p_value < policy.alpha and previous.bars >= min_bars
        assert decision.rollback_to == previous.version
    elif degraded and auto_rollback and not pinned and previous is not None:
        assert previous.p_value >= policy.alpha or previous.bars < min_bars
