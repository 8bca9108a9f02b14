"""When a Model's next training run is due, with CronJob's semantics (docs/architecture.md sections 3 and 4).
Pure.

Rules, as batch/v1 CronJob has them:
- ``suspend`` stops new runs (nothing due, no next time);
- after downtime, at most ONE run is started for all the missed times: the latest one;
- ``startingDeadlineSeconds``: a run more than that late is skipped (and reported);
- ``concurrencyPolicy``: Forbid skips while a scheduled run is active (the time stays pending, as
  CronJob does, so it starts once the active run ends if still within the deadline), Replace deletes
  the active runs first, Allow runs alongside;
- no cron: the algorithm's default period (tree 168 h, deep forecasters 336 h, RL 24 h) measured from
  ``status.lastScheduleTime``, or from the Model's creation before the first run.
Run names derive from the scheduled time, so an operator restarted mid-way cannot create two.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from clm_contract import API_VERSION
from clm_contract.model import ConcurrencyPolicy
from croniter import croniter

from clm_operator.domain.jobspec import owner_reference

TREE_ALGORITHMS = frozenset({"xgboost", "lightgbm"})
DEEP_ALGORITHMS = frozenset({"nhits", "patchtst"})
RL_ALGORITHMS = frozenset({"ppo", "dqn", "sac", "a2c"})

TREE_PERIOD = timedelta(hours=168)
DEEP_PERIOD = timedelta(hours=336)
RL_PERIOD = timedelta(hours=24)

MODEL_LABEL = "clm.dev/model"
TRIGGER_LABEL = "clm.dev/trigger"
SCHEDULED_TIME_ANNOTATION = "clm.dev/scheduled-time"


def default_period(algorithm: str) -> timedelta:
    if algorithm in DEEP_ALGORITHMS:
        return DEEP_PERIOD
    if algorithm in RL_ALGORITHMS:
        return RL_PERIOD
    # Tree models and anything not yet classified: weekly, the cheapest safe choice.
    return TREE_PERIOD


class Action(StrEnum):
    NONE = "None"
    CREATE = "Create"
    SUSPENDED = "Suspended"
    FORBIDDEN = "SkippedConcurrent"  # Forbid and a scheduled run is active
    MISSED_DEADLINE = "MissedStartingDeadline"


@dataclass(frozen=True)
class ScheduleInput:
    schedule: str | None
    algorithm: str
    suspend: bool
    concurrency_policy: ConcurrencyPolicy | str
    starting_deadline_seconds: int | None
    last_schedule_time: datetime | None
    creation_time: datetime
    active_runs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScheduleDecision:
    action: Action
    scheduled_time: datetime | None  # the time the run is for (CREATE / skipped ones)
    next_time: datetime | None  # for status.nextScheduleTime; None when suspended
    delete_active: tuple[str, ...] = field(default=())  # Replace: runs to delete before creating
    message: str = ""


def _seconds(t: datetime) -> datetime:
    return t.replace(microsecond=0)


def latest_due(schedule: str | None, algorithm: str, baseline: datetime, now: datetime) -> datetime | None:
    """The latest scheduled time in (baseline, now], or None. Never iterates over missed times."""
    baseline, now = _seconds(baseline), _seconds(now)
    if schedule:
        # get_prev is strict: start one second later so a time equal to "now" counts as due.
        t: datetime = croniter(schedule, now + timedelta(seconds=1)).get_prev(datetime)
        return t if t > baseline else None
    period = default_period(algorithm)
    k = (now - baseline) // period
    return baseline + k * period if k >= 1 else None


def next_after(schedule: str | None, algorithm: str, baseline: datetime, now: datetime) -> datetime:
    """The first scheduled time strictly after ``now``."""
    baseline, now = _seconds(baseline), _seconds(now)
    if schedule:
        t: datetime = croniter(schedule, now).get_next(datetime)
        return t
    period = default_period(algorithm)
    k = max(0, (now - baseline) // period)
    return baseline + (k + 1) * period


def decide(inp: ScheduleInput, now: datetime) -> ScheduleDecision:
    baseline = inp.last_schedule_time or inp.creation_time
    if inp.suspend:
        return ScheduleDecision(Action.SUSPENDED, None, None, message="spec.suspend is true")
    due = latest_due(inp.schedule, inp.algorithm, baseline, now)
    if due is None:
        # max(): a clock behind the Model's creation must not announce a time that can never be due.
        return ScheduleDecision(Action.NONE, None,
                                next_after(inp.schedule, inp.algorithm, baseline, max(now, baseline)))
    # Once a run is created, lastScheduleTime becomes `due` and the next time counts from there.
    following = next_after(inp.schedule, inp.algorithm, due, now)
    if inp.starting_deadline_seconds is not None and (
            (_seconds(now) - due).total_seconds() > inp.starting_deadline_seconds):
        return ScheduleDecision(
            Action.MISSED_DEADLINE, due, following,
            message=f"run for {due.isoformat()} is more than startingDeadlineSeconds "
                    f"({inp.starting_deadline_seconds}) late and is skipped")
    if inp.active_runs and inp.concurrency_policy == ConcurrencyPolicy.FORBID:
        return ScheduleDecision(
            Action.FORBIDDEN, due, next_after(inp.schedule, inp.algorithm, baseline, now),
            message=f"concurrencyPolicy Forbid: {', '.join(inp.active_runs)} still running")
    delete = inp.active_runs if inp.concurrency_policy == ConcurrencyPolicy.REPLACE else ()
    return ScheduleDecision(Action.CREATE, due, following, delete_active=tuple(delete))


def scheduled_run_name(model_name: str, scheduled_time: datetime) -> str:
    """<model>-<YYYYmmddHHMM>: at most 50 + 13 = 63 characters, deterministic from the time."""
    return f"{model_name}-{scheduled_time:%Y%m%d%H%M}"


def triggered_run_name(model_name: str, trigger: str, key: str) -> str:
    """<model>-<trigger initial><10 hex>: one name per alert episode (same key -> same name)."""
    digest = hashlib.sha256(f"{trigger}\0{key}".encode()).hexdigest()[:10]
    return f"{model_name}-{trigger[:1]}{digest}"


def trained_versions(phases: list[str]) -> int:
    """Attempts that trained a version: the Model's TrainingJobs whose phase is Succeeded (a run that
    failed before evaluating produced no backtest, so it selected nothing)."""
    return sum(1 for phase in phases if phase == "Succeeded")


def training_job_for(model: dict[str, Any], name: str, trigger: str, requested_by: str,
                     note: str | None = None, scheduled_time: datetime | None = None,
                     prior_trials: int = 0) -> dict[str, Any]:
    """A TrainingJob from the Model's template: modelName set, the Model's promotion criteria copied into
    evaluation.criteria (one set of criteria decides both the run's verdict and promotion), owned by
    the Model (deleting the Model deletes its runs). ``prior_trials`` (the versions the Model already
    trained, ``trained_versions``) goes into evaluation.priorTrials, so the new version's DSR is
    deflated by every earlier attempt for the Model."""
    meta = model["metadata"]
    spec = model.get("spec", {})
    tj_spec: dict[str, Any] = {k: v for k, v in dict(spec.get("template", {})).items()}
    tj_spec["modelName"] = meta["name"]
    evaluation = dict(tj_spec.get("evaluation") or {})
    criteria = (spec.get("promotion") or {}).get("criteria")
    if criteria is not None:
        evaluation["criteria"] = criteria
    evaluation["priorTrials"] = max(int(prior_trials), int(evaluation.get("priorTrials") or 0))
    tj_spec["evaluation"] = evaluation
    trigger_spec: dict[str, Any] = {"reason": trigger, "requestedBy": requested_by}
    if note:
        trigger_spec["note"] = note[:1024]
    tj_spec["trigger"] = trigger_spec
    annotations = {SCHEDULED_TIME_ANNOTATION: scheduled_time.isoformat()} if scheduled_time else {}
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace"),
            "labels": {MODEL_LABEL: meta["name"], TRIGGER_LABEL: trigger},
            "ownerReferences": [owner_reference(model, "Model")],
        },
        "spec": tj_spec,
    }
    if annotations:
        body["metadata"]["annotations"] = annotations
    return body
