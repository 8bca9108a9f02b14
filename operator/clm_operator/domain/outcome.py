"""What a run's outcome writes into the TrainingJob and ModelVersion status. Pure: dicts in, dicts out.

The handler (handlers/training_job.py) reads the cluster, asks these functions for the new status and
writes it; everything here is decided from the current status, the verdict on the Job and the clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from clm_contract.conditions import ModelVersionCondition as MVC
from clm_contract.conditions import Reason
from clm_contract.conditions import TrainingJobCondition as TJC
from clm_contract.metrics import BacktestMetrics, EvaluationResult
from clm_contract.trainer_contract import TrainerResult

from clm_operator.domain.conditions import FALSE, TRUE, ConditionChange, apply_changes
from clm_operator.domain.jobstatus import JobVerdict, RunState
from clm_operator.domain.lifecycle import VersionChange
from clm_operator.domain.versioning import format_timestamp

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


ACCEPTED_VALID = ConditionChange(TJC.ACCEPTED, TRUE, Reason.VALIDATED, "the spec is valid")


def rejected(status: Mapping[str, Any], message: str, *, generation: int | None,
             now: datetime, reason: str = Reason.INVALID_SPEC) -> dict[str, Any]:
    """Invalid spec, or one the operator's allow-lists refuse: Accepted=False (phase Failed), never
    retried."""
    conditions = apply_changes(status.get("conditions"),
                               [ConditionChange(TJC.ACCEPTED, FALSE, reason, message)],
                               now=now, observed_generation=generation)
    return {"conditions": conditions, "reason": str(reason), "message": message,
            "completionTime": format_timestamp(now)}


def in_progress(status: Mapping[str, Any], verdict: JobVerdict, *, suspended: bool, generation: int | None,
                now: datetime) -> dict[str, Any]:
    """Pending or Running: Accepted=True, Running=True/False with the waiting reason."""
    changes: list[ConditionChange] = [ACCEPTED_VALID]
    patch: dict[str, Any] = {}
    if verdict.state == RunState.RUNNING:
        text = f"pod {verdict.pod_name} is running the trainer"
        changes.append(ConditionChange(TJC.RUNNING, TRUE, Reason.TRAINER_RUNNING, text))
        patch.update(reason=str(Reason.RUNNING), message=text,
                     startTime=status.get("startTime") or verdict.started_at or format_timestamp(now))
    else:
        waiting = verdict.reason or (Reason.SUSPENDED if suspended else Reason.PENDING)
        text = verdict.message or ("waiting for the Job's queue to admit it" if waiting == Reason.SUSPENDED
                                   else "waiting for the trainer pod to start")
        changes.append(ConditionChange(TJC.RUNNING, FALSE, waiting, text))
        patch.update(reason=str(waiting), message=text)
    patch["conditions"] = apply_changes(status.get("conditions"), changes, now=now,
                                        observed_generation=generation)
    return patch


def failed(status: Mapping[str, Any], reason: str, message: str, *, generation: int | None,
           now: datetime) -> dict[str, Any]:
    changes = [ConditionChange(TJC.RUNNING, FALSE, reason, message),
               ConditionChange(TJC.FAILED, TRUE, reason, message)]
    conditions = apply_changes(status.get("conditions"), changes, now=now, observed_generation=generation)
    return {"conditions": conditions, "reason": reason, "message": message,
            "completionTime": format_timestamp(now)}


def succeeded(status: Mapping[str, Any], message: str, *, generation: int | None,
              now: datetime) -> dict[str, Any]:
    changes = [ACCEPTED_VALID, ConditionChange(TJC.RUNNING, FALSE, Reason.COMPLETED, "the trainer finished"),
               ConditionChange(TJC.COMPLETE, TRUE, Reason.TRAINED, message)]
    conditions = apply_changes(status.get("conditions"), changes, now=now, observed_generation=generation)
    return {"conditions": conditions, "reason": str(Reason.TRAINED), "message": message}


def metrics_summary(metrics: BacktestMetrics, evaluation: EvaluationResult) -> dict[str, Any]:
    """TrainingJob ``status.metrics``: the numbers a person looks at first."""
    return dict(finite({"sharpe": metrics.sharpe, "winRate": metrics.win_rate,
                        "profitFactor": metrics.profit_factor, "maxDrawdown": metrics.max_drawdown,
                        "trades": metrics.trades, "dsr": metrics.dsr, "score": evaluation.score,
                        "passed": evaluation.passed}))


def trained_version(result: TrainerResult, evaluation: EvaluationResult) -> VersionChange:
    """The ModelVersion change for a finished training: artifact, metrics, verdict (Trained, Evaluated)."""
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
    trained = ConditionChange(MVC.TRAINED, TRUE, Reason.TRAINED,
                              f"artifact {result.artifact.uri} sha256 {result.artifact.sha256}")
    evaluated = (ConditionChange(MVC.EVALUATED, TRUE, Reason.CRITERIA_MET,
                                 f"passed every criterion; score {evaluation.score:.2f}")
                 if evaluation.passed
                 else ConditionChange(MVC.EVALUATED, FALSE, Reason.CRITERIA_NOT_MET, failures))
    return VersionChange(why="criteria met" if evaluation.passed else f"criteria not met: {failures}",
                         fields=fields, conditions=(trained, evaluated))


def training_failed(reason: str, message: str) -> VersionChange:
    """The ModelVersion change for a run that produced no model: Trained=False (stage Failed)."""
    return VersionChange(why=f"training failed: {reason}", fields={"message": message},
                         conditions=(ConditionChange(MVC.TRAINED, FALSE, reason, message),))
