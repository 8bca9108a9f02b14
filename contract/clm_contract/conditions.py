"""Condition types and reasons of the three kinds: one definition, used by the operator and the tests.

A condition *type* names a fact about one kind (``ModelVersionCondition.PRODUCTION``: this version
serves); a *stage* (``clm_contract.model_version.Stage``) is the one-word summary computed from those facts
for people and printer columns. They share some words on the wire ("Production", "Failed") and are kept in
separate enums so that code can never compare one with the other by accident.

Reasons are CamelCase (metav1.Condition). ``Reason`` holds the operator's own; a condition may also
carry a reason the cluster gave (a Job's ``BackoffLimitExceeded``, a pod's ``ImagePullBackOff``), which
is passed through as a plain string.
"""

from __future__ import annotations

from enum import StrEnum


class TrainingJobCondition(StrEnum):
    """TrainingJob condition types; ``phase`` is derived from them (domain.lifecycle)."""

    ACCEPTED = "Accepted"  # True: the spec passed validation; False (InvalidSpec) fails the run
    RUNNING = "Running"  # True while the trainer pod runs
    COMPLETE = "Complete"  # True: the trainer succeeded and its result is recorded
    FAILED = "Failed"  # True: the run failed; the reason says why
    READY = "Ready"  # kstatus summary: True once Complete; False (with the reason) while pending or failed


class ModelVersionCondition(StrEnum):
    """ModelVersion condition types; ``stage`` is derived from them (domain.lifecycle)."""

    TRAINED = "Trained"
    EVALUATED = "Evaluated"
    SHADOW = "Shadow"
    PRODUCTION = "Production"
    RETIRED = "Retired"
    READY = "Ready"  # kstatus summary: True once trained and passing its criteria; else False


class ModelCondition(StrEnum):
    """Model condition types."""

    ACCEPTED = "Accepted"  # the spec is valid (an invalid Model is left alone until fixed)
    READY = "Ready"  # a version serves production
    PIN_ACCEPTED = "PinAccepted"  # spec.productionVersion is honoured (present only while a pin is set)
    SCHEDULED = "Scheduled"  # what the schedule did last
    DELETION_BLOCKED = "DeletionBlocked"  # True: deleting it would delete the serving Production artifact


class CommonCondition(StrEnum):
    """Condition types every kind may carry."""

    PERMITTED = "Permitted"  # False: the operator's RBAC refused a call this object's reconcile needs


class Reason(StrEnum):
    """The operator's own condition reasons (and the stage-history reasons of a ModelVersion)."""

    # TrainingJob
    VALIDATED = "Validated"
    INVALID_SPEC = "InvalidSpec"
    TRAINER_RUNNING = "TrainerRunning"
    PENDING = "Pending"
    SUSPENDED = "Suspended"
    RUNNING = "Running"
    COMPLETED = "Completed"
    TRAINED = "Trained"
    JOB_DELETED = "JobDeleted"
    JOB_NAME_TAKEN = "JobNameTaken"
    RESULT_MISSING = "ResultMissing"
    UNSCHEDULABLE = "Unschedulable"
    TRAINING_JOB_DELETED = "TrainingJobDeleted"  # the run was deleted before it recorded a result
    NOT_ALLOWED = "NotAllowedByOperator"  # a field the operator's allow-lists refuse (chart values.policy)
    # ModelVersion
    TRAINING = "Training"
    CRITERIA_MET = "CriteriaMet"
    CRITERIA_NOT_MET = "CriteriaNotMet"
    REPLACED = "Replaced"
    SHADOW_SELECTED = "ShadowSelected"
    DEMOTED = "Demoted"
    STAGE_REPAIRED = "StageRecomputed"
    EVALUATION_PENDING = "EvaluationPending"
    # Model: production changes (also status.history reasons)
    PROMOTED = "Promoted"
    PINNED = "Pinned"
    ROLLED_BACK = "RolledBack"
    # Model: Accepted / Ready / PinAccepted
    VALID = "Valid"
    PRODUCTION_SERVING = "ProductionServing"
    NO_PRODUCTION_VERSION = "NoProductionVersion"
    PIN_APPLIED = "PinApplied"
    PINNED_FAILED_VERSION_OVERRIDE = "PinnedFailedVersionOverride"
    PINNED_VERSION_NOT_FOUND = "PinnedVersionNotFound"
    PINNED_VERSION_NOT_READY = "PinnedVersionNotReady"
    PINNED_VERSION_NOT_TRAINED = "PinnedVersionNotTrained"
    PINNED_VERSION_FAILED_CRITERIA = "PinnedVersionFailedCriteria"
    # Model: DeletionBlocked
    PRODUCTION_ARTIFACT_PROTECTED = "ProductionArtifactProtected"
    # TrainingJob: its Model is gone (a late run creates no ownerless version)
    MODEL_DELETED = "ModelDeleted"
    # Model: Scheduled
    RUN_CREATED = "RunCreated"
    WAITING = "Waiting"
    MISSED_STARTING_DEADLINE = "MissedStartingDeadline"
    SKIPPED_CONCURRENT = "SkippedConcurrent"
    # any kind: Permitted
    FORBIDDEN = "Forbidden"
