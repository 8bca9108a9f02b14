"""Backtest metrics, promotion criteria and the evaluation verdict (shared by trainer and operator)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from clm_contract.common import CamelModel


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

    sharpe: float = Field(description="annualised Sharpe ratio of the net per-bar returns")
    sortino: float = Field(description="annualised Sortino ratio of the net per-bar returns")
    max_drawdown: float = Field(ge=0, description="largest fall of the equity curve, a positive fraction")
    win_rate: float = Field(ge=0, le=1, description="share of closed trades with a positive net return")
    profit_factor: float = Field(ge=0, description="gains / losses of the trades (Infinity: no losing "
                                                   "trade)")
    trades: int = Field(ge=0, description="closed trades")
    total_return: float = Field(description="compounded net return over the test bars")
    exposure: float = Field(ge=0, le=1, description="share of test bars with a position")
    psr: float = Field(ge=0, le=1, description="probabilistic Sharpe ratio (daily returns)")
    dsr: float = Field(ge=0, le=1, description="deflated Sharpe ratio: the PSR against the best of nTrials "
                                               "unskilled trials")
    bars: int = Field(ge=0, description="out-of-sample test bars")
    periods_per_year: float = Field(gt=0, description="bars per year, annualising the ratios")
    n_trials: int = Field(default=1, ge=1, description="trials the DSR deflates for")


class Criteria(CamelModel):
    """Promotion criteria. Defaults are those of the system this replaces (docs/architecture.md section 4),
    plus ``minDsr`` 0.95 (section 9): a backtest must beat selection by its statistics, not only by its
    costs."""

    min_sharpe: float = Field(default=1.0, description="minimum annualised Sharpe ratio")
    min_win_rate: float = Field(default=0.52, ge=0, le=1, description="minimum share of winning trades")
    min_profit_factor: float = Field(default=1.3, ge=0, description="minimum gains / losses of the trades")
    max_drawdown: float = Field(default=0.15, ge=0, le=1, description="maximum drawdown, a fraction")
    min_trades: int = Field(default=50, ge=0, description="minimum closed trades (fewer: not enough "
                                                          "evidence)")
    min_dsr: float = Field(default=0.95, ge=0, le=1,
                           description="minimum deflated Sharpe ratio (0-1): the probability that the true "
                                       "Sharpe ratio beats the best of nTrials unskilled trials; 0 disables")


class EvaluationResult(CamelModel):
    """The verdict of the criteria on one model's backtest metrics."""

    passed: bool = Field(description="every criterion met")
    score: float = Field(ge=0, le=100, description="promotion score, 0-100: ranks passing versions")
    failed_criteria: list[str] = Field(default_factory=list, description="each criterion not met, e.g. "
                                                                         "'sharpe: 0.8 (needs >= 1)'")
