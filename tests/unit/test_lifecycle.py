from __future__ import annotations

from datetime import UTC, datetime

import pytest
from clm_contract.conditions import ModelVersionCondition as MVC
from clm_contract.conditions import TrainingJobCondition as TJC
from clm_contract.model_version import Stage, StageChange
from clm_contract.training_job_status import Phase
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
    ([(TJC.ACCEPTED, TRUE)], Phase.PENDING),
    ([(TJC.ACCEPTED, TRUE), (TJC.RUNNING, TRUE)], Phase.RUNNING),
    ([(TJC.ACCEPTED, TRUE), (TJC.RUNNING, FALSE), (TJC.COMPLETE, TRUE)], Phase.SUCCEEDED),
    ([(TJC.ACCEPTED, TRUE), (TJC.RUNNING, FALSE), (TJC.FAILED, TRUE)], Phase.FAILED),
    ([(TJC.ACCEPTED, FALSE)], Phase.FAILED),
])
def test_training_job_phase_from_conditions(conditions: list[tuple[str, str]], phase: Phase) -> None:
    assert lc.training_job_phase(conds(*conditions)) == phase


@pytest.mark.parametrize(("conditions", "stage"), [
    ([], Stage.TRAINING),
    ([(MVC.TRAINED, UNKNOWN)], Stage.TRAINING),
    ([(MVC.TRAINED, TRUE)], Stage.TRAINING),
    ([(MVC.TRAINED, FALSE)], Stage.FAILED),
    ([(MVC.TRAINED, TRUE), (MVC.EVALUATED, TRUE)], Stage.CANDIDATE),
    ([(MVC.TRAINED, TRUE), (MVC.EVALUATED, FALSE)], Stage.FAILED),
    ([(MVC.TRAINED, TRUE), (MVC.EVALUATED, TRUE), (MVC.SHADOW, TRUE)], Stage.SHADOW),
    ([(MVC.TRAINED, TRUE), (MVC.EVALUATED, TRUE), (MVC.PRODUCTION, TRUE)], Stage.PRODUCTION),
    ([(MVC.TRAINED, TRUE), (MVC.EVALUATED, TRUE), (MVC.PRODUCTION, FALSE), (MVC.RETIRED, TRUE)],
     Stage.RETIRED),
    # an explicitly overridden pin can serve a failed version: Production wins over Failed
    ([(MVC.TRAINED, TRUE), (MVC.EVALUATED, FALSE), (MVC.PRODUCTION, TRUE)], Stage.PRODUCTION),
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


def test_the_version_decision_repairs_a_hand_edited_stage_once_and_cleans_up_a_deleting_one() -> None:
    status = lc.version_status({}, lc.training_started("run"), generation=1, now=NOW)
    edited = {"metadata": {"name": "m-v1", "namespace": "ns"}, "spec": {"modelName": "m", "version": "v1"},
              "status": {**status, "stage": "Production", "evaluation": {"score": 12.5}}}
    decision = lc.decide_version(edited, "clm.dev/artifact-cleanup")
    assert decision.repair is not None and decision.stage == Stage.TRAINING and not decision.clean_up
    [score] = decision.metrics
    assert score.metric == "clm_promotion_score" and score.value == 12.5
    repaired = {**edited, "status": {**edited["status"], **lc.version_status(
        edited["status"], decision.repair, generation=1, now=NOW)}}
    assert repaired["status"]["stage"] == "Training"
    assert repaired["status"]["stageHistory"][-1]["reason"] == "stage recomputed from the conditions"
    assert lc.decide_version(repaired, "clm.dev/artifact-cleanup").repair is None  # a fixed point
    deleting = {**repaired, "metadata": {**repaired["metadata"], "deletionTimestamp": "2026-11-23T10:00:00Z",
                                         "finalizers": ["clm.dev/artifact-cleanup"]}}
    assert lc.decide_version(deleting, "clm.dev/artifact-cleanup").clean_up
    assert lc.decide_version({"metadata": {"name": "x"}}, "f").repair is None  # no status yet: the run's


def test_moving_to_a_stage_turns_only_existing_conditions_false() -> None:
    status = lc.version_status({}, lc.training_started("run"), generation=1, now=NOW)
    produced = {**status, **lc.version_status(status, lc.move_to(Stage.PRODUCTION, "Pinned", "x"),
                                              generation=1, now=NOW)}
    types = {c["type"] for c in produced["conditions"]}
    assert produced["stage"] == "Production" and types == {"Trained", "Production", "Ready"}
    retired = {**produced, **lc.version_status(produced, lc.move_to(Stage.RETIRED, "Replaced", "y"),
                                               generation=1, now=NOW)}
    assert retired["stage"] == "Retired"
    by_type = {c["type"]: c["status"] for c in retired["conditions"]}
    assert by_type == {"Trained": "Unknown", "Production": "False", "Retired": "True", "Ready": "False"}
