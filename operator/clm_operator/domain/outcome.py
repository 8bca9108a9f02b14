"""What a run's outcome writes into the TrainingJob and ModelVersion status. Pure: dicts in, dicts out.

The handler (handlers/training_job.py) reads the cluster, asks these functions for the new status and
writes it; everything here is decided from the current status, the verdict on the Job and the clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from clm_operator.api.metrics import BacktestMetrics, EvaluationResult
from clm_operator.api.trainer_contract import TrainerResult
from clm_operator.domain import lifecycle as lc
from clm_operator.domain.conditions import FALSE, TRUE, set_condition
from clm_operator.domain.jobstatus import JobVerdict, RunState
from clm_operator.domain.versioning import format_timestamp

# (type, status, reason, message) of one condition to set
ConditionChange = tuple[str, str, str, str]
_LARGEST = 1.7976931348623157e308
STATUS_DECIMALS = 4


def finite(value: Any) -> Any:
    """JSON-safe copy for a status: Kubernetes cannot store inf/NaN (profit factor is inf with no loss).

    +-inf becomes the largest double, NaN 0.0; the evaluation is computed before, from the true values.
    Finite floats are rounded to STATUS_DECIMALS: status and printer columns are read by people (a Sharpe of
    1.2345678901234 says nothing more than 1.2346); manifest.json keeps full precision.
    """
    if isinstance(value, float):
        if not math.isfinite(value):
            return 0.0 if math.isnan(value) else math.copysign(_LARGEST, value)
        return round(value, STATUS_DECIMALS)
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


def _set(conditions: Any, changes: list[ConditionChange], *, generation: int | None,
         now: datetime) -> list[dict[str, Any]]:
    current = list(conditions or [])
    for type_, status, reason, message in changes:
        current = set_condition(current, type_, status, reason, message, now=now,
                                observed_generation=generation)
    return current


def rejected(status: Mapping[str, Any], message: str, *, generation: int | None,
             now: datetime) -> dict[str, Any]:
    """Invalid spec: Accepted=False (phase Failed), never retried."""
    conditions = _set(status.get("conditions"), [(lc.ACCEPTED, FALSE, "InvalidSpec", message)],
                      generation=generation, now=now)
    return {"conditions": conditions, "reason": "InvalidSpec", "message": message,
            "completionTime": format_timestamp(now)}


def in_progress(status: Mapping[str, Any], verdict: JobVerdict, *, suspended: bool, generation: int | None,
                now: datetime) -> dict[str, Any]:
    """Pending or Running: Accepted=True, Running=True/False with the waiting reason."""
    changes: list[ConditionChange] = [(lc.ACCEPTED, TRUE, "Validated", "the spec is valid")]
    patch: dict[str, Any] = {}
    if verdict.state == RunState.RUNNING:
        text = f"pod {verdict.pod_name} is running the trainer"
        changes.append((lc.RUNNING, TRUE, "TrainerRunning", text))
        patch.update(reason="Running", message=text,
                     startTime=status.get("startTime") or verdict.started_at or format_timestamp(now))
    else:
        waiting = verdict.reason or ("Suspended" if suspended else "Pending")
        text = verdict.message or ("waiting for the Job's queue to admit it" if waiting == "Suspended"
                                   else "waiting for the trainer pod to start")
        changes.append((lc.RUNNING, FALSE, waiting, text))
        patch.update(reason=waiting, message=text)
    patch["conditions"] = _set(status.get("conditions"), changes, generation=generation, now=now)
    return patch


def failed(status: Mapping[str, Any], reason: str, message: str, *, generation: int | None,
           now: datetime) -> dict[str, Any]:
    conditions = _set(status.get("conditions"), [(lc.RUNNING, FALSE, reason, message),
                                                 (lc.FAILED, TRUE, reason, message)],
                      generation=generation, now=now)
    return {"conditions": conditions, "reason": reason, "message": message,
            "completionTime": format_timestamp(now)}


def succeeded(status: Mapping[str, Any], message: str, *, generation: int | None,
              now: datetime) -> dict[str, Any]:
    conditions = _set(status.get("conditions"), [(lc.ACCEPTED, TRUE, "Validated", "the spec is valid"),
                                                 (lc.RUNNING, FALSE, "Completed", "the trainer finished"),
                                                 (lc.COMPLETE, TRUE, "Trained", message)],
                      generation=generation, now=now)
    return {"conditions": conditions, "reason": "Trained", "message": message}


def metrics_summary(metrics: BacktestMetrics, evaluation: EvaluationResult) -> dict[str, Any]:
    """TrainingJob ``status.metrics``: the numbers a person looks at first."""
    return dict(finite({"sharpe": metrics.sharpe, "winRate": metrics.win_rate,
                        "profitFactor": metrics.profit_factor, "maxDrawdown": metrics.max_drawdown,
                        "trades": metrics.trades, "dsr": metrics.dsr, "score": evaluation.score,
                        "passed": evaluation.passed}))


def trained_version(result: TrainerResult, evaluation: EvaluationResult) -> tuple[
        dict[str, Any], list[ConditionChange], str]:
    """(ModelVersion status fields, conditions to set, why the stage changes) for a finished training."""
    if result.artifact is None or result.metrics is None:
        raise ValueError("a trained version needs the result's artifact and metrics")
    fields: dict[str, Any] = {
        "artifact": result.artifact.to_wire(),
        "metrics": finite({"backtest": result.metrics.model_dump(by_alias=True, exclude_none=True)}),
        "evaluation": finite(evaluation.model_dump(by_alias=True, exclude_none=True)),
    }
    if result.dataset is not None:
        fields["dataset"] = result.dataset.to_wire()
    if result.manifest_uri:
        fields["manifestUri"] = result.manifest_uri
    if result.report_uri:
        fields["reportUri"] = result.report_uri
    failures = "; ".join(evaluation.failed_criteria)
    changes: list[ConditionChange] = [
        (lc.TRAINED, TRUE, "Trained", f"artifact {result.artifact.uri} sha256 {result.artifact.sha256}"),
        (lc.EVALUATED, TRUE, "CriteriaMet", f"passed every criterion; score {evaluation.score:.2f}")
        if evaluation.passed else (lc.EVALUATED, FALSE, "CriteriaNotMet", failures),
    ]
    return fields, changes, "criteria met" if evaluation.passed else f"criteria not met: {failures}"


def version_status(status: Mapping[str, Any], fields: Mapping[str, Any], changes: list[ConditionChange],
                   why: str, *, generation: int | None, now: datetime) -> dict[str, Any]:
    """The ModelVersion status patch: conditions set, stage recomputed, a history entry when it moved."""
    conditions = _set(status.get("conditions"), changes, generation=generation, now=now)
    before = status.get("stage") or None
    stage = lc.model_version_stage(conditions)
    patch: dict[str, Any] = {**fields, "conditions": conditions, "stage": str(stage)}
    if before != stage:
        patch["stageHistory"] = lc.append_stage_history(status.get("stageHistory"), before, stage,
                                                        reason=why, now=now)
    if generation is not None:
        patch["observedGeneration"] = generation
    return patch
