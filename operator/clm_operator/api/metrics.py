"""Backtest metrics, promotion criteria and the evaluation verdict (shared by trainer and operator)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from clm_operator.api.common import CamelModel


class BacktestMetrics(CamelModel):
    """Out-of-sample walk-forward backtest metrics; conventions in docs/architecture.md section 6.4.

    Sharpe/Sortino: per-bar arithmetic net returns x sqrt(periodsPerYear). maxDrawdown: positive
    fraction of the compounded equity curve. winRate: share of closed trades with positive net return.
    profitFactor: sum of positive / |sum of negative| trade returns (inf when no losing trade).
    psr / dsr: probabilistic / deflated Sharpe ratio on daily-aggregated returns.
    """

    # profitFactor is inf when no trade lost: JSON has no inf, and pydantic's default (null) cannot be
    # read back as a float. "Infinity" as a string round-trips through model_validate_json.
    model_config = ConfigDict(**CamelModel.model_config, ser_json_inf_nan="strings")

    sharpe: float
    sortino: float
    max_drawdown: float = Field(ge=0)
    win_rate: float = Field(ge=0, le=1)
    profit_factor: float = Field(ge=0)
    trades: int = Field(ge=0)
    total_return: float
    exposure: float = Field(ge=0, le=1)
    psr: float = Field(ge=0, le=1)
    dsr: float = Field(ge=0, le=1)
    bars: int = Field(ge=0)
    periods_per_year: float = Field(gt=0)
    n_trials: int = Field(default=1, ge=1)


class Criteria(CamelModel):
    """Promotion criteria. Defaults are those of the system this replaces (docs/architecture.md section 4),
    plus ``minDsr`` 0.95 (section 9): a backtest must beat selection by its statistics, not only by its
    costs."""

    min_sharpe: float = 1.0
    min_win_rate: float = Field(default=0.52, ge=0, le=1)
    min_profit_factor: float = Field(default=1.3, ge=0)
    max_drawdown: float = Field(default=0.15, ge=0, le=1)
    min_trades: int = Field(default=50, ge=0)
    min_dsr: float = Field(default=0.95, ge=0, le=1,
                           description="minimum deflated Sharpe ratio (0-1): the probability that the true "
                                       "Sharpe ratio beats the best of nTrials unskilled trials; 0 disables")


class EvaluationResult(CamelModel):
    """The verdict of the criteria on one model's backtest metrics."""

    passed: bool
    score: float = Field(ge=0, le=100)
    failed_criteria: list[str] = Field(default_factory=list)
