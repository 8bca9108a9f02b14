"""Kubernetes-style conditions on wire dicts (camelCase), keyed by ``type``.

``lastTransitionTime`` changes only when the status changes, as metav1.Condition requires: a reconcile
that re-asserts the same status must not make the condition look new.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clm_contract.common import ConditionStatus

from clm_operator.domain.versioning import format_timestamp

TRUE = ConditionStatus.TRUE
FALSE = ConditionStatus.FALSE
UNKNOWN = ConditionStatus.UNKNOWN


@dataclass(frozen=True)
class ConditionChange:
    """One condition to set: what every decision in domain/ returns and ``apply_changes`` writes.

    ``type`` is a member of one of api.conditions' enums; ``reason`` an api.conditions.Reason or a reason
    the cluster gave (a Job's BackoffLimitExceeded); both are plain strings on the wire.
    """

    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str


def get_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    for condition in conditions or ():
        if condition.get("type") == type_:
            return dict(condition)
    return None


def condition_status(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> str | None:
    condition = get_condition(conditions, type_)
    return None if condition is None else str(condition.get("status"))


def is_true(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    return condition_status(conditions, type_) == TRUE


def is_false(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> bool:
    return condition_status(conditions, type_) == FALSE


def set_condition(
    conditions: Iterable[Mapping[str, Any]] | None,
    type_: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: datetime,
    observed_generation: int | None = None,
) -> list[dict[str, Any]]:
    """A new list with the condition of ``type_`` set (replaced in place, or appended)."""
    if status not in tuple(ConditionStatus):
        raise ValueError(f"condition status must be True, False or Unknown (got {status!r})")
    result: list[dict[str, Any]] = []
    found = False
    for existing in conditions or ():
        if existing.get("type") != type_:
            result.append(dict(existing))
            continue
        found = True
        unchanged = existing.get("status") == status and existing.get("lastTransitionTime")
        transition = existing["lastTransitionTime"] if unchanged else format_timestamp(now)
        result.append(_condition(type_, status, reason, message, transition, observed_generation))
    if not found:
        result.append(_condition(type_, status, reason, message, format_timestamp(now), observed_generation))
    return result


def apply_changes(conditions: Iterable[Mapping[str, Any]] | None, changes: Iterable[ConditionChange], *,
                  now: datetime, observed_generation: int | None = None) -> list[dict[str, Any]]:
    """``set_condition`` for every change, in order (a later change of one type wins)."""
    result = [dict(c) for c in conditions or ()]
    for change in changes:
        result = set_condition(result, change.type, change.status, change.reason, change.message, now=now,
                               observed_generation=observed_generation)
    return result


def remove_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> list[dict[str, Any]]:
    return [dict(c) for c in conditions or () if c.get("type") != type_]


def _condition(type_: str, status: str, reason: str, message: str, transition: str,
               observed_generation: int | None) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": str(type_), "status": str(status), "reason": str(reason),
                                 "message": message,
                                 "lastTransitionTime": transition}
    if observed_generation is not None:
        condition["observedGeneration"] = observed_generation
    return condition
