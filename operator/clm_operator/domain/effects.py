"""What a decision asks the handler to do besides writing a status: Events to post, metrics to change.

Decisions (domain/run.py, domain/model_decision.py) derive these from the transition they decide, so
deciding again on the written state yields none: a repeated reconcile never counts or announces twice.
The handler applies them after its writes (observability.metrics.apply, handlers.common.emit).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Subject(StrEnum):
    """Which object of the reconcile an Event is about (a kind)."""

    TRAINING_JOB = "TrainingJob"
    MODEL_VERSION = "ModelVersion"
    MODEL = "Model"


# The two Event types Kubernetes knows.
EventType = Literal["Normal", "Warning"]
NORMAL: EventType = "Normal"
WARNING: EventType = "Warning"


class EventReason(StrEnum):
    """Reasons of the operator's Kubernetes Events (docs/architecture.md, "Lifecycle")."""

    TRAINING_JOB_CREATED = "TrainingJobCreated"
    MODEL_TRAINED = "ModelTrained"
    MODEL_EVALUATED = "ModelEvaluated"
    MODEL_PROMOTED = "ModelPromoted"
    MODEL_ROLLED_BACK = "ModelRolledBack"
    TRAINING_FAILED = "TrainingFailed"
    INVALID_SPEC = "InvalidSpec"
    NOT_ALLOWED = "NotAllowedByOperator"  # a field the operator's allow-lists refuse
    VERSION_PRUNED = "VersionPruned"
    ARTIFACTS_DELETED = "ArtifactsDeleted"
    FORBIDDEN = "Forbidden"


@dataclass(frozen=True)
class Event:
    subject: Subject
    type: EventType
    reason: str  # an EventReason, or a condition reason repeated as the Event's (PinnedVersionNotFound)
    message: str


class MetricOp(StrEnum):
    INC = "inc"
    SET = "set"
    OBSERVE = "observe"
    REMOVE = "remove"


# Changes that count something: a decision repeated on its own result must contain none of them.
COUNTING = frozenset({MetricOp.INC, MetricOp.OBSERVE})


@dataclass(frozen=True)
class MetricChange:
    """One change of a Prometheus series: ``metric`` is its exposed name (observability/metrics.py)."""

    metric: str
    labels: tuple[tuple[str, str], ...]
    op: MetricOp
    value: float = 1.0

    @classmethod
    def of(cls, metric: str, op: MetricOp, labels: Mapping[str, str], value: float = 1.0) -> MetricChange:
        return cls(metric, tuple(sorted((key, str(item)) for key, item in labels.items())), op, value)


def acts(*actions: object, metrics: tuple[MetricChange, ...] = ()) -> bool:
    """Does a decision do anything besides re-asserting state: any action, or a counting metric change?"""
    return any(bool(action) for action in actions) or any(change.op in COUNTING for change in metrics)
