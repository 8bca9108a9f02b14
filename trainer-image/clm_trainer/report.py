"""The human report: one self-contained HTML page with embedded PNG charts (matplotlib, Agg backend).

Equity curve and drawdown of the out-of-sample walk-forward backtest, feature importance of the
deployed model, the metrics beside the criteria, the folds, the data repairs and the backtest's
conventions (the libraries disagree, so the page states which ones these numbers follow).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class ReportInput:
    title: str
    subtitle: str
    metrics: Mapping[str, Any]  # camelCase BacktestMetrics
    evaluation: Mapping[str, Any]  # camelCase EvaluationResult
    criteria: Mapping[str, Any]
    folds: Sequence[Mapping[str, Any]]
    data_report: Mapping[str, Any]
    conventions: Mapping[str, Any]
    timestamps: pd.DatetimeIndex  # of the out-of-sample span
    equity: np.ndarray
    drawdown: np.ndarray
    importance: Mapping[str, float] | None
    device: str
    costs: Mapping[str, float] | None = None  # pipeline.cost_analysis: gross/net Sharpe, turnover, drag
    trials: Mapping[str, int] | None = None  # pipeline.trial_counts
    benchmark: Mapping[str, Any] | None = None  # forward filter on planted data


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    # Fixed margins instead of bbox_inches="tight": that renders every figure twice, and the report
    # is drawn once per training run.
    fig.savefig(buffer, format="png", dpi=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _charts(data: ReportInput) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts: list[tuple[str, str]] = []
    fig, ax = plt.subplots(figsize=(9, 3))
    fig.subplots_adjust(left=0.08, right=0.98, top=0.88, bottom=0.12)
    ax.plot(data.timestamps, data.equity, lw=1, color="#1f77b4")
    ax.set_title("Out-of-sample equity (net of costs, compounded)")
    positive = data.equity[data.equity > 0]
    if positive.size and positive.max() / positive.min() > 20:
        ax.set_yscale("log")  # a compounding curve spanning decades is unreadable on a linear axis
    ax.grid(alpha=0.3)
    charts.append(("Equity curve", _png(fig)))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 2.2))
    fig.subplots_adjust(left=0.08, right=0.98, top=0.85, bottom=0.15)
    ax.fill_between(data.timestamps, -data.drawdown, 0, color="#d62728", alpha=0.5, lw=0)
    ax.set_title("Drawdown (fraction of the running peak)")
    ax.grid(alpha=0.3)
    charts.append(("Drawdown", _png(fig)))
    plt.close(fig)

    if data.importance:
        top = sorted(data.importance.items(), key=lambda kv: kv[1], reverse=True)[:20]
        fig, ax = plt.subplots(figsize=(7, 0.25 * len(top) + 1))
        fig.subplots_adjust(left=0.25, right=0.97, top=1 - 0.5 / (0.25 * len(top) + 1), bottom=0.08)
        ax.barh([k for k, _ in reversed(top)], [v for _, v in reversed(top)], color="#2ca02c")
        ax.set_title("Feature importance (gain, deployed model)")
        charts.append(("Feature importance", _png(fig)))
        plt.close(fig)
    return charts


def _table(rows: Sequence[Sequence[object]], header: Sequence[str] | None = None) -> str:
    out = ["<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def verdict_reasons(metrics: Mapping[str, Any], evaluation: Mapping[str, Any],
                    costs: Mapping[str, float] | None, trials: Mapping[str, int] | None) -> list[str]:
    """Plain sentences that say why the verdict is what it is (whatever it is)."""
    reasons: list[str] = []
    sharpe, dsr = float(metrics.get("sharpe", 0.0)), float(metrics.get("dsr", 0.0))
    n_trials = int(metrics.get("nTrials", 1))
    if costs:
        gross, drag = float(costs.get("grossSharpe", 0.0)), float(costs.get("costDragPerYear", 0.0))
        turnover = float(costs.get("turnoverPerYear", 0.0))
        reasons.append(f"Gross Sharpe {gross:.2f}, net Sharpe {sharpe:.2f} after costs: trading "
                       f"{turnover:.1f}x the capital a year cost {drag:.2%} a year.")
        if gross > 0 and sharpe < gross / 2:
            reasons.append("Costs ate more than half of the gross edge: the model trades too often for "
                           "what it knows.")
    source = ""
    if trials:
        source = (f" ({trials.get('search', 1)} search trial(s) + {trials.get('prior', 0)} earlier "
                  f"version(s), x {trials.get('inRun', 1)} configuration(s) tried in this run)")
    reasons.append(f"Deflated Sharpe ratio {dsr:.3f}: the probability that the true Sharpe beats the best "
                   f"of {n_trials} unskilled trial(s){source}.")
    failed = list(evaluation.get("failedCriteria") or [])
    if evaluation.get("passed"):
        reasons.append("Every criterion passed, the DSR included: the edge is unlikely to be luck or "
                       "selection.")
    else:
        reasons.append("Failed: " + "; ".join(str(f) for f in failed) + ".")
        if any(str(f).startswith("dsr") for f in failed) and sharpe > 0:
            reasons.append("The net Sharpe is within what selection among the trials reaches by chance on "
                           "this many test days: more test bars or fewer trials would be needed.")
    return reasons


def _rule_of(fold: Mapping[str, Any]) -> str:
    layer = fold.get("positionLayer") or {}
    chosen = layer.get("chosen")
    if isinstance(chosen, Mapping):
        return str(chosen.get("label"))
    return str(chosen or "")


def render_html(data: ReportInput) -> bytes:
    verdict = "PASSED" if data.evaluation.get("passed") else "FAILED"
    failed = data.evaluation.get("failedCriteria") or []
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(data.title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse;"
        "margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:90%}"
        ".pass{color:#080}.fail{color:#b00}</style></head><body>",
        f"<h1>{html.escape(data.title)}</h1><p>{html.escape(data.subtitle)}</p>",
        f"<h2>Verdict: <span class='{'pass' if verdict == 'PASSED' else 'fail'}'>{verdict}</span> "
        f"(score {float(data.evaluation.get('score', 0.0)):.2f} / 100)</h2>",
    ]
    if failed:
        parts.append("<ul>" + "".join(f"<li>{html.escape(str(f))}</li>" for f in failed) + "</ul>")
    parts.append("<h3>Why</h3><ul>" + "".join(
        f"<li>{html.escape(r)}</li>" for r in verdict_reasons(data.metrics, data.evaluation, data.costs,
                                                             data.trials)) + "</ul>")
    if data.costs:
        parts.append("<h2>Costs</h2>")
        parts.append(_table([("gross Sharpe", data.costs.get("grossSharpe")),
                             ("net Sharpe", data.costs.get("netSharpe")),
                             ("turnover per year (x capital)", data.costs.get("turnoverPerYear")),
                             ("cost drag per year", data.costs.get("costDragPerYear")),
                             ("gross return per year (arithmetic)", data.costs.get("grossReturnPerYear"))],
                            ("item", "value")))
    if data.benchmark:
        bench = data.benchmark.get("metrics") or {}
        parts.append("<h2>Benchmark</h2>")
        name = html.escape(str(data.benchmark.get("name")))
        parts.append(f"<p>{name}, same position layer, costs and test bars:</p>")
        parts.append(_table([(k, bench.get(k)) for k in ("sharpe", "trades", "winRate", "profitFactor",
                                                         "maxDrawdown", "dsr")], ("metric", "value")))
    parts.append("<h2>Out-of-sample backtest</h2>")
    parts.append(_table([(k, v) for k, v in data.metrics.items()], ("metric", "value")))
    parts.append("<h3>Criteria</h3>")
    parts.append(_table([(k, v) for k, v in data.criteria.items()], ("criterion", "threshold")))
    for name, png in _charts(data):
        parts.append(f"<h3>{html.escape(name)}</h3>"
                     f"<img alt='{html.escape(name)}' src='data:image/png;base64,{png}'>")
    parts.append("<h2>Walk-forward folds</h2>")
    fold_rows = [(f["fold"], f["trainStart"], f["trainEnd"], f["trainRows"], f["testStart"], f["testEnd"],
                  f["testRows"], f["metrics"].get("sharpe"), f["metrics"].get("trades"), _rule_of(f))
                 for f in data.folds]
    parts.append(_table(fold_rows, ("fold", "train from", "train to", "train rows", "test from", "test to",
                                    "test rows", "Sharpe", "trades", "position rule (chosen on validation)")))
    parts.append("<h3>Position-layer candidates per fold (validation bars of the training window)</h3>")
    cand_rows = [(f["fold"], c.get("label"), c.get("validationSharpe"), c.get("validationTrades"),
                  c.get("validationWinRate"), c.get("meetsTradeCriteria"))
                 for f in data.folds for c in (f.get("positionLayer") or {}).get("candidates", [])]
    if cand_rows:
        parts.append(_table(cand_rows, ("fold", "candidate", "Sharpe", "trades", "win rate",
                                        "meets trade criteria")))
    parts.append("<h2>Data</h2>")
    parts.append(_table([(k, v) for k, v in data.data_report.items() if k != "gaps"], ("item", "value")))
    gaps = data.data_report.get("gaps") or []
    if gaps:
        parts.append("<h3>Gaps</h3>")
        parts.append(_table([(g.get("after"), g.get("before"), g.get("missingBars")) for g in gaps[:50]],
                            ("after", "before", "missing bars")))
    parts.append("<h2>Conventions</h2>")
    parts.append(_table([(k, v) for k, v in data.conventions.items()], ("convention", "value")))
    parts.append(f"<p>Device: {html.escape(data.device)}</p></body></html>")
    return "".join(parts).encode("utf-8")
