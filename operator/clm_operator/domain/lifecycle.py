"""Lifecycle state machines: TrainingJob phase and ModelVersion stage, both computed from conditions.

Conditions are the source of truth; ``phase`` and ``stage`` are derived for people and printer columns.
The condition types are api.conditions' ``TrainingJobCondition`` and ``ModelVersionCondition``.

TrainingJob phase: Failed if Failed=True or Accepted=False; Succeeded if Complete=True; Running if
Running=True; otherwise Pending.

ModelVersion stage, first match wins: Retired, Production, Shadow, Failed (Trained=False or
Evaluated=False), Candidate (Evaluated=True), Training.

``VersionChange`` is every change of a ModelVersion's status, whoever asks for it (a finished run, the
Model's policy, a stage repair): ``version_status`` turns it into the status patch, recomputing the
stage, the ``Ready`` condition and appending the history entry, so both are computed in exactly one place.

``Ready`` (kstatus, so ``kubectl wait --for=condition=Ready`` works): a TrainingJob is Ready once
Complete (False with the run's reason while pending, running or failed: ``training_job_ready``); a
ModelVersion is Ready once Trained and Evaluated as passing (``version_ready``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clm_contract.conditions import ModelVersionCondition as MVC
from clm_contract.conditions import Reason
from clm_contract.conditions import TrainingJobCondition as TJC
from clm_contract.model_version import Stage
from clm_contract.training_job_status import Phase

from clm_operator.domain.conditions import (
    FALSE,
    TRUE,
    UNKNOWN,
    ConditionChange,
    apply_changes,
    get_condition,
    is_false,
    is_true,
)
from clm_operator.domain.effects import WARNING, Event, EventReason, MetricChange, MetricOp, Subject
from clm_operator.domain.versioning import format_timestamp

STAGE_HISTORY_LIMIT = 100

Conditions = Iterable[Mapping[str, Any]] | None


def training_job_phase(conditions: Conditions) -> Phase:
    conditions = list(conditions or ())
    if is_true(conditions, TJC.FAILED) or is_false(conditions, TJC.ACCEPTED):
        return Phase.FAILED
    if is_true(conditions, TJC.COMPLETE):
        return Phase.SUCCEEDED
    if is_true(conditions, TJC.RUNNING):
        return Phase.RUNNING
    return Phase.PENDING


def is_finished(phase: Phase | str) -> bool:
    return str(phase) in (Phase.SUCCEEDED, Phase.FAILED)


def training_job_ready(phase: Phase | str, reason: str, message: str) -> ConditionChange:
    """The TrainingJob's Ready condition for its phase (``reason``/``message``: the run's own, if any)."""
    if str(phase) == Phase.SUCCEEDED:
        return ConditionChange(TJC.READY, TRUE, Reason.TRAINED, message or "the run is complete")
    fallback = {Phase.FAILED: "the run failed", Phase.RUNNING: "the trainer is running"}.get(
        Phase(phase), "waiting for the trainer to start")
    return ConditionChange(TJC.READY, FALSE, reason or str(phase), message or fallback)


def version_ready(conditions: Conditions) -> ConditionChange:
    """A ModelVersion is Ready once it has a model that passed its evaluation (any stage after that)."""
    conditions = list(conditions or ())
    for type_ in (MVC.TRAINED, MVC.EVALUATED):
        if is_false(conditions, type_):
            failed = get_condition(conditions, type_) or {}
            return ConditionChange(MVC.READY, FALSE, str(failed.get("reason") or type_),
                                   str(failed.get("message") or f"{type_} is False"))
    if not is_true(conditions, MVC.TRAINED):
        return ConditionChange(MVC.READY, FALSE, Reason.TRAINING, "the version is still training")
    if not is_true(conditions, MVC.EVALUATED):
        return ConditionChange(MVC.READY, FALSE, Reason.EVALUATION_PENDING, "trained; not evaluated yet")
    return ConditionChange(MVC.READY, TRUE, Reason.CRITERIA_MET, "trained and passed its criteria")


def _ready_differs(conditions: Conditions, wanted: ConditionChange) -> bool:
    current = get_condition(conditions, wanted.type)
    return current is None or (current.get("status"), current.get("reason"), current.get("message")) != (
        wanted.status, wanted.reason, wanted.message)


def model_version_stage(conditions: Conditions) -> Stage:
    conditions = list(conditions or ())
    if is_true(conditions, MVC.RETIRED):
        return Stage.RETIRED
    if is_true(conditions, MVC.PRODUCTION):
        return Stage.PRODUCTION
    if is_true(conditions, MVC.SHADOW):
        return Stage.SHADOW
    if is_false(conditions, MVC.TRAINED) or is_false(conditions, MVC.EVALUATED):
        return Stage.FAILED
    if is_true(conditions, MVC.EVALUATED):
        return Stage.CANDIDATE
    return Stage.TRAINING


# Allowed stage changes (docs/architecture.md, "Lifecycle").
# Failed -> Production only with an explicit override.
ALLOWED_TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.TRAINING: frozenset({Stage.CANDIDATE, Stage.FAILED}),
    Stage.CANDIDATE: frozenset({Stage.SHADOW, Stage.PRODUCTION, Stage.RETIRED}),
    Stage.SHADOW: frozenset({Stage.CANDIDATE, Stage.PRODUCTION, Stage.RETIRED}),
    Stage.PRODUCTION: frozenset({Stage.RETIRED, Stage.CANDIDATE, Stage.SHADOW}),
    Stage.RETIRED: frozenset({Stage.PRODUCTION}),
    Stage.FAILED: frozenset({Stage.RETIRED}),
}


class TransitionError(ValueError):
    def __init__(self, from_stage: Stage, to_stage: Stage, hint: str) -> None:
        super().__init__(f"a ModelVersion cannot go from {from_stage} to {to_stage}: {hint}")
        self.from_stage = from_stage
        self.to_stage = to_stage


def check_transition(from_stage: Stage | str, to_stage: Stage | str, *, allow_failed: bool = False) -> None:
    """Raise TransitionError unless ``from_stage -> to_stage`` is allowed (same stage: always allowed)."""
    source, target = Stage(from_stage), Stage(to_stage)
    if source == target or target in ALLOWED_TRANSITIONS[source]:
        return
    if source == Stage.FAILED and target == Stage.PRODUCTION:
        if allow_failed:
            return
        raise TransitionError(source, target,
                              "it failed its criteria; pin it with the explicit override annotation "
                              "clm.dev/allow-failed-promotion if you really mean it")
    allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[source])) or "nothing"
    raise TransitionError(source, target, f"from {source} it may go to: {allowed}")


def stage_change(from_stage: Stage | str | None, to_stage: Stage | str, *, reason: str, now: datetime,
                 by: str = "clm-operator") -> dict[str, Any]:
    """One ``status.stageHistory`` entry (wire form)."""
    entry: dict[str, Any] = {"to": str(Stage(to_stage)), "time": format_timestamp(now), "reason": reason,
                             "by": by}
    if from_stage is not None:
        entry = {"from": str(Stage(from_stage)), **entry}
    return entry


def append_stage_history(history: Iterable[Mapping[str, Any]] | None, from_stage: Stage | str | None,
                         to_stage: Stage | str, *, reason: str, now: datetime,
                         by: str = "clm-operator") -> list[dict[str, Any]]:
    """History with a new entry when the stage changed (unchanged stage: history as it was), bounded."""
    entries = [dict(entry) for entry in history or ()]
    if from_stage is not None and Stage(from_stage) == Stage(to_stage):
        return entries
    entries.append(stage_change(from_stage, to_stage, reason=reason, now=now, by=by))
    return entries[-STAGE_HISTORY_LIMIT:]


@dataclass(frozen=True)
class VersionChange:
    """A change of one ModelVersion's status: fields to set, conditions to set, why (for the history).

    ``if_present`` conditions are set only where the version already has that type (a demotion turns
    an existing Production=True to False, it does not add Production=False to a version never promoted).
    """

    why: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    conditions: tuple[ConditionChange, ...] = ()
    if_present: tuple[ConditionChange, ...] = ()
    by: str = "clm-operator"


def version_status(status: Mapping[str, Any], change: VersionChange, *, generation: int | None,
                   now: datetime) -> dict[str, Any]:
    """The ModelVersion status after ``change``: conditions set, stage recomputed, a history entry when the
    stage moved (or when the stored stage disagrees with the conditions: a repair is recorded too)."""
    present = {c.get("type") for c in status.get("conditions") or ()}
    changes = [*change.conditions, *(c for c in change.if_present if c.type in present)]
    conditions = apply_changes(status.get("conditions"), changes, now=now, observed_generation=generation)
    conditions = apply_changes(conditions, [version_ready(conditions)], now=now,
                               observed_generation=generation)
    before = status.get("stage") or None
    stage = model_version_stage(conditions)
    patch: dict[str, Any] = {**change.fields, "conditions": conditions, "stage": str(stage)}
    if before != stage:
        patch["stageHistory"] = append_stage_history(status.get("stageHistory"), before, stage,
                                                     reason=change.why, now=now, by=change.by)
    if generation is not None:
        patch["observedGeneration"] = generation
    return patch


# What a policy stage means in conditions: (type set True, types turned False where present).
_STAGE_CONDITIONS: dict[Stage, tuple[MVC | None, tuple[MVC, ...]]] = {
    Stage.PRODUCTION: (MVC.PRODUCTION, (MVC.RETIRED, MVC.SHADOW)),
    Stage.RETIRED: (MVC.RETIRED, (MVC.PRODUCTION, MVC.SHADOW)),
    Stage.SHADOW: (MVC.SHADOW, (MVC.PRODUCTION, MVC.RETIRED)),
    Stage.CANDIDATE: (None, (MVC.PRODUCTION, MVC.RETIRED, MVC.SHADOW)),
}


def move_to(stage: Stage | str, reason: str, message: str, *, by: str = "clm-operator") -> VersionChange:
    """The change that moves a trained version to ``stage`` (Production, Retired, Shadow, Candidate)."""
    true_type, false_types = _STAGE_CONDITIONS[Stage(stage)]
    conditions = () if true_type is None else (ConditionChange(true_type, TRUE, reason, message),)
    return VersionChange(why=reason, conditions=conditions,
                         if_present=tuple(ConditionChange(t, FALSE, reason, message) for t in false_types),
                         by=by)


def training_started(training_job: str) -> VersionChange:
    """A new version's first status: Trained=Unknown, stage Training."""
    return VersionChange(
        why=f"TrainingJob {training_job} started",
        conditions=(ConditionChange(MVC.TRAINED, UNKNOWN, Reason.TRAINING,
                                    f"TrainingJob {training_job} is training this version"),))


def stage_repair(status: Mapping[str, Any]) -> VersionChange | None:
    """A stored stage or Ready condition that disagrees with the other conditions (an edit by hand, a
    version written before Ready existed) is recomputed; None if they agree.

    A version without any status yet is left to the run that creates it.
    """
    if not status or not status.get("conditions"):
        return None
    conditions = status.get("conditions")
    if status.get("stage") == model_version_stage(conditions) and not _ready_differs(
            conditions, version_ready(conditions)):
        return None
    return VersionChange(why="stage recomputed from the conditions")


def run_deleted(training_job: str) -> VersionChange:
    """A version whose run was deleted before it recorded a result: Trained=False, stage Failed."""
    message = (f"TrainingJob {training_job} was deleted before it recorded a result; this version has no "
               "model (start a new run)")
    trained = ConditionChange(MVC.TRAINED, FALSE, Reason.TRAINING_JOB_DELETED, message)
    return VersionChange(why=f"training failed: {Reason.TRAINING_JOB_DELETED}", fields={"message": message},
                         conditions=(trained,))


def needs_run(mv: Mapping[str, Any]) -> str | None:
    """The TrainingJob a version still waits for (its name), or None: only a Training version depends on its
    run, so the reconcile reads the run only then."""
    status = mv.get("status") or {}
    if (mv.get("metadata") or {}).get("deletionTimestamp") or not status.get("conditions"):
        return None
    if model_version_stage(status.get("conditions")) != Stage.TRAINING:
        return None
    ref = (mv.get("spec") or {}).get("trainingJobRef") or {}
    return str(ref["name"]) if ref.get("name") else None


def run_is_gone(mv: Mapping[str, Any], training_job: Mapping[str, Any] | None) -> bool:
    """Is the version's run gone: absent, being deleted, or a different object under the same name?"""
    if training_job is None:
        return True
    meta = training_job.get("metadata") or {}
    uid = ((mv.get("spec") or {}).get("trainingJobRef") or {}).get("uid")
    return bool(meta.get("deletionTimestamp")) or bool(uid and meta.get("uid") and uid != meta["uid"])


@dataclass(frozen=True)
class VersionDecision:
    """The ModelVersion reconcile's decision (handlers/model_version.py)."""

    stage: Stage  # what the conditions say (for the stage gauge)
    repair: VersionChange | None  # a stored stage that disagrees with the conditions, or a lost run
    clean_up: bool  # deleting with the artifact finalizer: delete its storage prefix, then release it
    metrics: tuple[MetricChange, ...] = ()
    events: tuple[Event, ...] = ()


def decide_version(mv: Mapping[str, Any], finalizer: str, *, run_gone: bool = False) -> VersionDecision:
    """``run_gone``: the reconcile read the run ``needs_run`` named and found it gone (``run_is_gone``)."""
    meta = mv.get("metadata") or {}
    status = mv.get("status") or {}
    spec = mv.get("spec") or {}
    deleting = bool(meta.get("deletionTimestamp"))
    score = (status.get("evaluation") or {}).get("score")
    metrics: tuple[MetricChange, ...] = ()
    if isinstance(score, int | float) and spec.get("version"):
        labels = {"namespace": str(meta.get("namespace")), "model": str(spec.get("modelName") or ""),
                  "version": str(spec["version"])}
        metrics = (MetricChange.of("clm_promotion_score", MetricOp.SET, labels, float(score)),)
    repair = None if deleting else stage_repair(status)
    events: tuple[Event, ...] = ()
    waited_for = needs_run(mv)
    if run_gone and waited_for is not None:
        repair = run_deleted(waited_for)
        events = (Event(Subject.MODEL_VERSION, WARNING, EventReason.TRAINING_FAILED,
                        f"{Reason.TRAINING_JOB_DELETED}: {repair.fields['message']}"),)
    return VersionDecision(stage=model_version_stage(status.get("conditions")), repair=repair,
                           clean_up=deleting and finalizer in (meta.get("finalizers") or []), metrics=metrics,
                           events=events)
