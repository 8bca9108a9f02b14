from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clm_contract.common import Condition
from clm_operator.domain.conditions import (
    FALSE,
    TRUE,
    get_condition,
    is_false,
    is_true,
    remove_condition,
    set_condition,
)

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_new_condition_is_appended_in_the_kubernetes_shape() -> None:
    conditions = set_condition(None, "Ready", TRUE, "Serving", "v1 serves", now=T0, observed_generation=3)
    assert conditions == [{"type": "Ready", "status": "True", "reason": "Serving", "message": "v1 serves",
                           "lastTransitionTime": "2026-11-23T10:00:00Z", "observedGeneration": 3}]
    Condition.model_validate(conditions[0])  # the shared API model accepts it


def test_same_status_keeps_the_transition_time_but_updates_reason_and_message() -> None:
    first = set_condition(None, "Running", FALSE, "Pending", "waiting", now=T0)
    second = set_condition(first, "Running", FALSE, "ImagePullBackOff", "cannot pull", now=T1)
    assert second[0]["lastTransitionTime"] == "2026-11-23T10:00:00Z"
    assert second[0]["reason"] == "ImagePullBackOff"


def test_status_change_moves_the_transition_time_and_keeps_other_conditions() -> None:
    conditions = set_condition(None, "Accepted", TRUE, "Validated", "", now=T0)
    conditions = set_condition(conditions, "Running", FALSE, "Pending", "", now=T0)
    conditions = set_condition(conditions, "Running", TRUE, "TrainerRunning", "", now=T1)
    assert [c["type"] for c in conditions] == ["Accepted", "Running"]
    running = get_condition(conditions, "Running")
    assert running is not None and running["lastTransitionTime"] == "2026-11-23T10:05:00Z"
    assert is_true(conditions, "Running") and is_true(conditions, "Accepted")
    assert not is_false(conditions, "Missing") and get_condition(conditions, "Missing") is None


def test_input_is_not_mutated_and_removal_works() -> None:
    original = set_condition(None, "A", TRUE, "R", "", now=T0)
    set_condition(original, "A", FALSE, "R", "", now=T1)
    assert original[0]["status"] == "True"
    assert remove_condition(original, "A") == []


def test_bad_status_is_refused() -> None:
    with pytest.raises(ValueError, match="True, False or Unknown"):
        set_condition(None, "A", "yes", "R", "", now=T0)
