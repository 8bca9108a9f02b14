"""Ready conditions (kstatus) on all three kinds, computed in the decisions, and their fixed point: a
Ready condition once written is decided again unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from clm_contract.model_version import Stage
from clm_operator.domain import lifecycle as lc
from clm_operator.domain import model_decision, outcome, run
from clm_operator.domain.conditions import get_condition
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_run_decision import CONFIG, CREATED, fixed_point, job, pod, result, training_job

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def ready(status: dict[str, Any]) -> tuple[str, str]:
    condition = get_condition(status.get("conditions"), "Ready")
    assert condition is not None, status
    return condition["status"], condition["reason"]


def test_a_training_job_is_ready_only_once_complete() -> None:
    tj = training_job()
    created, _, _ = fixed_point(run.RunView(training_job=tj, now=CREATED))
    assert ready(created.status) == ("False", "Pending")
    running = run.decide(run.RunView(training_job=tj, now=CREATED, job=job(tj, "active"),
                                     pods=(pod("running"),)), CONFIG)
    assert ready(running.status) == ("False", "Running")
    done, _, _ = fixed_point(run.RunView(training_job=tj, now=CREATED + timedelta(minutes=6),
                                         job=job(tj, "complete"),
                                         pods=(pod("done", result().to_termination_message()),)))
    assert done.phase == "Succeeded" and ready(done.status) == ("True", "Trained")
    failed, _, _ = fixed_point(run.RunView(training_job=tj, now=CREATED, job=job(tj, "failed")))
    assert failed.phase == "Failed" and ready(failed.status) == ("False", "BackoffLimitExceeded")
    invalid, _, _ = fixed_point(run.RunView(training_job=training_job(valid=False), now=CREATED))
    assert ready(invalid.status) == ("False", "InvalidSpec")


def test_a_run_finished_before_ready_existed_gets_it_without_any_transition() -> None:
    tj = training_job()
    done = run.decide(run.RunView(training_job=tj, now=CREATED, job=job(tj, "complete"),
                                  pods=(pod("done", result().to_termination_message()),)), CONFIG)
    old = {**done.status, "conditions": [c for c in done.status["conditions"] if c["type"] != "Ready"]}
    again = run.decide(run.RunView(training_job=training_job(status=old), now=NOW), CONFIG)
    assert ready(again.status) == ("True", "Trained") and not again.transitions


def version(*changes: lc.VersionChange) -> dict[str, Any]:
    status: dict[str, Any] = {}
    for change in changes:
        status = {**status, **lc.version_status(status, change, generation=1, now=NOW)}
    return status


def test_a_model_version_is_ready_once_trained_and_passing() -> None:
    started = lc.training_started("run")
    assert ready(version(started)) == ("False", "Training")
    metrics = result()
    passing = outcome.trained_version(metrics, _evaluation(passed=True))
    assert ready(version(started, passing)) == ("True", "CriteriaMet")
    failing = outcome.trained_version(metrics, _evaluation(passed=False))
    assert ready(version(started, failing)) == ("False", "CriteriaNotMet")
    assert ready(version(started, outcome.training_failed("BadData", "no rows"))) == ("False", "BadData")
    # Promotion and retirement keep it Ready: the version still has its passing model.
    promoted = version(started, passing, lc.move_to(Stage.PRODUCTION, "Promoted", "serves"))
    assert promoted["stage"] == "Production" and ready(promoted) == ("True", "CriteriaMet")


def test_a_version_written_before_ready_existed_is_repaired_once() -> None:
    status = version(lc.training_started("run"), outcome.trained_version(result(), _evaluation(True)))
    old = {**status, "conditions": [c for c in status["conditions"] if c["type"] != "Ready"]}
    mv = {"metadata": {"name": "btc-v1", "namespace": "trading"}, "spec": {}, "status": old}
    repair = lc.decide_version(mv, "f").repair
    assert repair is not None
    repaired = {**old, **lc.version_status(old, repair, generation=1, now=NOW)}
    assert ready(repaired) == ("True", "CriteriaMet") and repaired["stage"] == status["stage"]
    assert lc.decide_version({**mv, "status": repaired}, "f").repair is None
    assert repaired.get("stageHistory") == status.get("stageHistory")  # the stage did not move


def _evaluation(passed: bool) -> Any:
    from clm_contract.metrics import Criteria
    from clm_contract.promotion import evaluate

    metrics = result().metrics
    assert metrics is not None
    criteria = Criteria() if passed else Criteria.model_validate({"minSharpe": 9.0})
    return evaluate(metrics, criteria)


def model(schedule: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"template": {"algorithm": "xgboost",
                                         "dataset": {"uri": "builtin:synthetic", "symbol": "BTCUSDT"}}}
    if schedule is not None:
        spec["schedule"] = schedule
    return {"apiVersion": "clm.dev/v1alpha1", "kind": "Model",
            "metadata": {"name": "btc", "namespace": "trading", "uid": "m-uid", "generation": 1,
                         "creationTimestamp": "2026-11-23T10:00:00Z"},
            "spec": spec}


@settings(max_examples=30, deadline=None)
@given(minute=st.integers(min_value=0, max_value=59), bad=st.sampled_from(["61 * * * *", "not a cron",
                                                                           "* * *"]))
def test_an_invalid_cron_is_not_accepted_nor_ready_and_says_so_once(minute: int, bad: str) -> None:
    view = model_decision.ModelView(model=model(bad), versions=(), runs=(), now=NOW.replace(minute=minute),
                                    scheduled=True)
    first = model_decision.decide(view)
    assert not first.accepted and not first.create_runs
    accepted = get_condition(first.status["conditions"], "Accepted")
    assert accepted is not None and accepted["status"] == "False" and "spec.schedule" in accepted["message"]
    assert ready(first.status) == ("False", "InvalidSpec")
    assert [e.reason for e in first.events] == ["InvalidSpec"]
    again = model_decision.decide(model_decision.ModelView(
        model={**model(bad), "status": first.status}, versions=(), runs=(), now=view.now, scheduled=True))
    assert again.status == first.status and not again.events
