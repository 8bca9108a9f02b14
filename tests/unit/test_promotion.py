"""The promotion score and criteria of docs/architecture.md section 4 (clm_contract.promotion)."""

from __future__ import annotations

import math

import pytest
from clm_contract.metrics import BacktestMetrics, Criteria
from clm_contract.promotion import evaluate, promotion_score


def metrics(**overrides: float) -> BacktestMetrics:
    values: dict[str, float] = {"sharpe": 1.23, "sortino": 1.8, "max_drawdown": 0.1, "win_rate": 0.57,
                                "profit_factor": 1.52, "trades": 120, "total_return": 0.4, "exposure": 0.6,
                                "psr": 0.97, "dsr": 0.97, "bars": 8760, "periods_per_year": 8760}
    values.update(overrides)
    return BacktestMetrics.model_validate(values)


def test_design_example_scores_40_15() -> None:
    # 0.5*61.5 + 0.3*14 + 0.2*26
    assert promotion_score(1.23, 0.57, 1.52) == pytest.approx(40.15, abs=1e-9)


@pytest.mark.parametrize(("sharpe", "win_rate", "pf", "expected"), [
    (2.0, 1.0, 3.0, 100.0),  # every term exactly at its cap
    (9.0, 1.0, 50.0, 100.0),  # beyond the caps: clamped at 100
    (-3.0, 0.2, 0.4, 0.0),  # below the floors: clamped at 0, never negative
    (1.0, 0.5, 1.0, 25.0),  # only the Sharpe term contributes
    (0.0, 0.75, 1.0, 15.0),  # only the win-rate term
    (0.0, 0.5, 2.0, 10.0),  # only the profit-factor term
    (0.0, 0.0, math.inf, 20.0),  # no losing trade: the PF term is full
    (math.nan, 0.6, 1.5, 0.3 * 20 + 0.2 * 25),  # NaN counts as the floor
])
def test_each_term_is_clamped(sharpe: float, win_rate: float, pf: float, expected: float) -> None:
    assert promotion_score(sharpe, win_rate, pf) == pytest.approx(expected, abs=1e-9)


def test_default_criteria_are_those_of_the_design() -> None:
    c = Criteria()
    assert (c.min_sharpe, c.min_win_rate, c.min_profit_factor, c.max_drawdown, c.min_trades, c.min_dsr) == (
        1.0, 0.52, 1.3, 0.15, 50, 0.95)


def test_passing_metrics_pass_with_the_score() -> None:
    result = evaluate(metrics(), Criteria())
    assert result.passed and result.failed_criteria == []
    assert result.score == pytest.approx(40.15, abs=1e-9)


@pytest.mark.parametrize(("override", "name"), [
    ({"sharpe": 0.99}, "sharpe"),
    ({"win_rate": 0.51}, "winRate"),
    ({"profit_factor": 1.29}, "profitFactor"),
    ({"max_drawdown": 0.151}, "maxDrawdown"),
    ({"trades": 49}, "trades"),
])
def test_each_failed_criterion_is_listed_alone(override: dict[str, float], name: str) -> None:
    result = evaluate(metrics(**override), Criteria())
    assert not result.passed
    assert len(result.failed_criteria) == 1 and result.failed_criteria[0].startswith(f"{name}: ")


def test_all_failures_are_listed_with_value_and_threshold() -> None:
    result = evaluate(metrics(sharpe=0.2, win_rate=0.4, profit_factor=0.8, max_drawdown=0.5, trades=3),
                      Criteria())
    assert [f.split(":")[0] for f in result.failed_criteria] == [
        "sharpe", "winRate", "profitFactor", "maxDrawdown", "trades"]
    assert result.failed_criteria[0] == "sharpe: 0.2 (needs >= 1)"
    assert result.failed_criteria[3] == "maxDrawdown: 0.5 (needs <= 0.15)"
    assert result.score == pytest.approx(0.5 * 10, abs=1e-9)


def test_thresholds_are_inclusive() -> None:
    edge = metrics(sharpe=1.0, win_rate=0.52, profit_factor=1.3, max_drawdown=0.15, trades=50)
    assert evaluate(edge, Criteria()).passed


def test_dsr_criterion_is_on_by_default_and_a_model_may_change_or_disable_it() -> None:
    result = evaluate(metrics(dsr=0.2), Criteria())
    assert not result.passed and result.failed_criteria == ["dsr: 0.2 (needs >= 0.95)"]
    assert evaluate(metrics(dsr=0.95), Criteria()).passed  # the threshold itself passes
    assert not evaluate(metrics(dsr=0.9499), Criteria()).passed
    assert evaluate(metrics(dsr=0.2), Criteria(min_dsr=0.1)).passed
    assert evaluate(metrics(dsr=0.0), Criteria(min_dsr=0)).passed  # 0 switches it off
    relaxed = Criteria.model_validate({"minDsr": 0.5})  # as a Model's promotion.criteria says it
    assert relaxed.min_dsr == 0.5 and relaxed.min_sharpe == 1.0
    assert not evaluate(metrics(dsr=0.4), relaxed).passed and evaluate(metrics(dsr=0.6), relaxed).passed


def test_nan_sharpe_fails() -> None:
    result = evaluate(metrics(sharpe=math.nan), Criteria())
    assert not result.passed and result.failed_criteria[0].startswith("sharpe: nan")
