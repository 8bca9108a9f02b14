"""Promotion criteria and the promotion score (docs/architecture.md section 4).

Used by the trainer (to report its verdict) and by the operator (to decide stages): one implementation.
"""

from __future__ import annotations

import math

from clm_contract.metrics import BacktestMetrics, Criteria, EvaluationResult


def _clamp(value: float, low: float = 0.0, high: float = 100.0) -> float:
    if math.isnan(value):
        return low
    return max(low, min(high, value))


def promotion_score(sharpe: float, win_rate: float, profit_factor: float) -> float:
    """0-100: 0.5*min(Sharpe/2*100,100) + 0.3*clamp((winRate-0.5)/0.5*100) + 0.2*min((PF-1)/2*100,100).

    Each term is clamped to [0, 100]. Sharpe 1.23, win rate 0.57, PF 1.52 -> 40.15.
    """
    sharpe_term = _clamp(sharpe / 2.0 * 100.0)
    win_term = _clamp((win_rate - 0.5) / 0.5 * 100.0)
    pf_term = _clamp((profit_factor - 1.0) / 2.0 * 100.0) if math.isfinite(profit_factor) else (
        100.0 if profit_factor > 0 else 0.0)
    return round(0.5 * sharpe_term + 0.3 * win_term + 0.2 * pf_term, 10)


def evaluate(metrics: BacktestMetrics, criteria: Criteria) -> EvaluationResult:
    """Check every criterion; each failure is listed as ``name: value vs threshold``."""
    failed: list[str] = []
    checks: list[tuple[str, float, float, bool]] = [
        ("sharpe", metrics.sharpe, criteria.min_sharpe, metrics.sharpe >= criteria.min_sharpe),
        ("winRate", metrics.win_rate, criteria.min_win_rate, metrics.win_rate >= criteria.min_win_rate),
        ("profitFactor", metrics.profit_factor, criteria.min_profit_factor,
         metrics.profit_factor >= criteria.min_profit_factor),
        ("maxDrawdown", metrics.max_drawdown, criteria.max_drawdown,
         metrics.max_drawdown <= criteria.max_drawdown),
        ("trades", float(metrics.trades), float(criteria.min_trades), metrics.trades >= criteria.min_trades),
    ]
    if criteria.min_dsr > 0:  # 0 switches the criterion off
        checks.append(("dsr", metrics.dsr, criteria.min_dsr, metrics.dsr >= criteria.min_dsr))
    for name, value, threshold, ok in checks:
        if not ok or math.isnan(value):
            relation = "<=" if name == "maxDrawdown" else ">="
            failed.append(f"{name}: {value:.4g} (needs {relation} {threshold:.4g})")
    score = promotion_score(metrics.sharpe, metrics.win_rate, metrics.profit_factor)
    return EvaluationResult(passed=not failed, score=score, failed_criteria=failed)
