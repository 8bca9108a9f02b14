from __future__ import annotations

from datetime import UTC, datetime

import pytest
from clm_operator.api.model_version import Stage, StageChange
from clm_operator.api.training_job_status import Phase
from clm_operator.domain import lifecycle as lc
from clm_operator.domain.conditions import FALSE, TRUE, UNKNOWN, set_condition

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def conds(*items: tuple[str, str]) -> list[dict[str, object]]:
    result: list[dict[str, object]] = []
    for type_, status in items:
        result = set_condition(result, type_, status, "Because", "", now=NOW)
    return result


@pytest.mark.parametrize(("conditions", "phase"), [
    ([], Phase.PENDING),
    ([(lc.ACCEPTED, TRUE)], Phase.PENDING),
    ([(lc.ACCEPTED, TRUE), (lc.RUNNING, TRUE)], Phase.RUNNING),
    ([(lc.ACCEPTED, TRUE), (lc.RUNNING, FALSE), (lc.COMPLETE, TRUE)], Phase.SUCCEEDED),
    ([(lc.ACCEPTED, TRUE), (lc.RUNNING, FALSE), (lc.FAILED, TRUE)], Phase.FAILED),
    ([(lc.ACCEPTED, FALSE)], Phase.FAILED),
])
def test_training_job_phase_from_conditions(conditions: list[tuple[str, str]], phase: Phase) -> None:
    assert lc.training_job_phase(conds(*conditions)) == phase


@pytest.mark.parametrize(("conditions", "stage"), [
    ([], Stage.TRAINING),
    ([(lc.TRAINED, UNKNOWN)], Stage.TRAINING),
    ([(lc.TRAINED, TRUE)], Stage.TRAINING),
    ([(lc.TRAINED, FALSE)], Stage.FAILED),
    ([(lc.TRAINED, TRUE), (lc.EVALUATED, TRUE)], Stage.CANDIDATE),
    ([(lc.TRAINED, TRUE), (lc.EVALUATED, FALSE)], Stage.FAILED),
    ([(lc.TRAINED, TRUE), (lc.EVALUATED, TRUE), (lc.SHADOW, TRUE)], Stage.SHADOW),
    ([(lc.TRAINED, TRUE), (lc.EVALUATED, TRUE), (lc.PRODUCTION, TRUE)], Stage.PRODUCTION),
    ([(lc.TRAINED, TRUE), (lc.EVALUATED, TRUE), (lc.PRODUCTION, FALSE), (lc.RETIRED, TRUE)], Stage.RETIRED),
    # an explicitly overridden pin can serve a failed version: Production wins over Failed
    ([(lc.TRAINED, TRUE), (lc.EVALUATED, FALSE), (lc.PRODUCTION, TRUE)], Stage.PRODUCTION),
])
def test_model_version_stage_from_conditions(conditions: list[tuple[str, str]], stage: Stage) -> None:
    assert lc.model_version_stage(conds(*conditions)) == stage


@pytest.mark.parametrize(("source", "target"), [
    (Stage.TRAINING, Stage.CANDIDATE), (Stage.TRAINING, Stage.FAILED), (Stage.CANDIDATE, Stage.PRODUCTION),
    (Stage.CANDIDATE, Stage.SHADOW), (Stage.SHADOW, Stage.PRODUCTION), (Stage.PRODUCTION, Stage.RETIRED),
    (Stage.RETIRED, Stage.PRODUCTION), (Stage.CANDIDATE, Stage.CANDIDATE),
])
def test_allowed_transitions(source: Stage, target: Stage) -> None:
    lc.check_transition(source, target)


@pytest.mark.parametrize(("source", "target"), [
    (Stage.TRAINING, Stage.PRODUCTION), (Stage.FAILED, Stage.CANDIDATE), (Stage.RETIRED, Stage.CANDIDATE),
    (Stage.PRODUCTION, Stage.TRAINING),
])
def test_forbidden_transitions_name_what_is_allowed(source: Stage, target: Stage) -> None:
    with pytest.raises(lc.TransitionError, match=f"from {source} to {target}"):
        lc.check_transition(source, target)


def test_failed_version_reaches_production_only_with_the_override() -> None:
    with pytest.raises(lc.TransitionError, match="allow-failed-promotion"):
        lc.check_transition(Stage.FAILED, Stage.PRODUCTION)
    lc.check_transition(Stage.FAILED, Stage.PRODUCTION, allow_failed=True)


def test_stage_history_appends_changes_only_and_is_bounded() -> None:
    history = lc.append_stage_history(None, None, Stage.TRAINING, reason="started", now=NOW)
    assert history == [{"to": "Training", "time": "2026-11-23T10:00:00Z", "reason": "started",
                        "by": "clm-operator"}]
    history = lc.append_stage_history(history, Stage.TRAINING, Stage.CANDIDATE, reason="met", now=NOW)
    assert history[-1]["from"] == "Training" and history[-1]["to"] == "Candidate"
    same = lc.append_stage_history(history, Stage.CANDIDATE, Stage.CANDIDATE, reason="again", now=NOW)
    assert same == history
    for entry in history:
        StageChange.model_validate(entry)
    for _ in range(lc.STAGE_HISTORY_LIMIT + 5):
        history = lc.append_stage_history(history, Stage.CANDIDATE, Stage.SHADOW, reason="flip", now=NOW)
    assert len(history) == lc.STAGE_HISTORY_LIMIT
