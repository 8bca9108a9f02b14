"""Lifecycle state machines: TrainingJob phase and ModelVersion stage, both computed from conditions.

Conditions are the source of truth; ``phase`` and ``stage`` are derived for people and printer columns.

TrainingJob condition types:
  ``Accepted``  True once the spec passed validation; False (InvalidSpec, SpecImmutable) fails the run.
  ``Running``   True while the trainer pod runs.
  ``Complete``  True when the trainer succeeded and its result was recorded.
  ``Failed``    True when the run failed (the reason says why: BackoffLimitExceeded, PodFailurePolicy,
                DeadlineExceeded, ImagePullBackOff, ...).
  phase: Failed if Failed=True or Accepted=False; Succeeded if Complete=True; Running if Running=True;
  otherwise Pending.

ModelVersion condition types:
  ``Trained``     True: the trainer produced an artifact; False: the run failed (stage Failed).
  ``Evaluated``   True: the criteria passed; False (CriteriaNotMet): they did not (stage Failed).
  ``Shadow``      True: runs beside production without serving.
  ``Production``  True: this version serves (at most one per Model; the Model handler decides).
  ``Retired``     True: replaced or withdrawn.
  stage, first match wins: Retired, Production, Shadow, Failed (Trained=False or Evaluated=False),
  Candidate (Evaluated=True), Training.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from clm_operator.api.model_version import Stage
from clm_operator.api.training_job_status import Phase
from clm_operator.domain.conditions import is_false, is_true
from clm_operator.domain.versioning import format_timestamp

# TrainingJob condition types
ACCEPTED = "Accepted"
RUNNING = "Running"
COMPLETE = "Complete"
FAILED = "Failed"

# ModelVersion condition types
TRAINED = "Trained"
EVALUATED = "Evaluated"
SHADOW = "Shadow"
PRODUCTION = "Production"
RETIRED = "Retired"

STAGE_HISTORY_LIMIT = 100

Conditions = Iterable[Mapping[str, Any]] | None


def training_job_phase(conditions: Conditions) -> Phase:
    conditions = list(conditions or ())
    if is_true(conditions, FAILED) or is_false(conditions, ACCEPTED):
        return Phase.FAILED
    if is_true(conditions, COMPLETE):
        return Phase.SUCCEEDED
    if is_true(conditions, RUNNING):
        return Phase.RUNNING
    return Phase.PENDING


def is_finished(phase: Phase | str) -> bool:
    return str(phase) in (Phase.SUCCEEDED, Phase.FAILED)


def model_version_stage(conditions: Conditions) -> Stage:
    conditions = list(conditions or ())
    if is_true(conditions, RETIRED):
        return Stage.RETIRED
    if is_true(conditions, PRODUCTION):
        return Stage.PRODUCTION
    if is_true(conditions, SHADOW):
        return Stage.SHADOW
    if is_false(conditions, TRAINED) or is_false(conditions, EVALUATED):
        return Stage.FAILED
    if is_true(conditions, EVALUATED):
        return Stage.CANDIDATE
    return Stage.TRAINING


# Allowed stage changes (DESIGN.md section 4). Failed -> Production only with an explicit override.
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
