"""What a run's end records: a deleted run fails its Training version (TrainingJobDeleted), a permanent
trainer failure carries the trainer's reason with its message said once, and re-promoting a newer
version after a rollback is a promotion."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from clm_contract.model_version import Stage
from clm_contract.trainer_contract import TrainerResult
from clm_operator.domain import lifecycle as lc
from clm_operator.domain import run
from clm_operator.domain.effects import EventReason
from clm_operator.domain.jobspec import version_of
from clm_operator.domain.policy import ModelState, VersionView, decide
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_run_decision import CONFIG, CREATED, fixed_point, job, pod, result, training_job

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RUN_UID = "run-uid"


def model_version(stage: str) -> dict[str, Any]:
    status = lc.version_status({}, lc.training_started("btc-run-1"), generation=1, now=NOW)
    if stage == "failed":
        status = {**status, **lc.version_status(status, lc.run_deleted("x"), generation=1, now=NOW)}
    return {"metadata": {"name": "btc-v1", "namespace": "trading", "uid": "mv-uid"},
            "spec": {"modelName": "btc", "version": "v1",
                     "trainingJobRef": {"name": "btc-run-1", "uid": RUN_UID}},
            "status": status}


def run_object(uid: str = RUN_UID, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "btc-run-1", "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-23T12:00:00Z"
    return {"metadata": meta}


def test_a_deleted_run_fails_its_training_version_with_training_job_deleted() -> None:
    mv = model_version("training")
    assert lc.needs_run(mv) == "btc-run-1"
    assert lc.run_is_gone(mv, None) and lc.run_is_gone(mv, run_object(deleting=True))
    assert lc.run_is_gone(mv, run_object(uid="a-new-run-under-the-same-name"))
    assert not lc.run_is_gone(mv, run_object())
    decision = lc.decide_version(mv, "f", run_gone=True)
    assert decision.repair is not None
    status = {**mv["status"], **lc.version_status(mv["status"], decision.repair, generation=1, now=NOW)}
    assert status["stage"] == "Failed"
    trained = {c["type"]: c for c in status["conditions"]}["Trained"]
    assert (trained["status"], trained["reason"]) == ("False", "TrainingJobDeleted")
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", EventReason.TRAINING_FAILED)]
    assert "TrainingJobDeleted" in decision.events[0].message
    # Fixed point: a Failed version no longer waits for its run; nothing more is decided.
    again = lc.decide_version({**mv, "status": status}, "f", run_gone=True)
    assert lc.needs_run({**mv, "status": status}) is None and again.repair is None and not again.events


@settings(max_examples=50, deadline=None)
@given(stage=st.sampled_from(["training", "failed"]), gone=st.booleans(), deleting=st.booleans())
def test_the_lost_run_decision_is_a_fixed_point(stage: str, gone: bool, deleting: bool) -> None:
    mv = model_version(stage)
    if deleting:
        mv["metadata"]["deletionTimestamp"] = "2026-11-23T12:00:00Z"
    first = lc.decide_version(mv, "f", run_gone=gone)
    # Only a live Training version whose run is gone is failed, and only then is an Event posted.
    assert (first.repair is not None) == (stage == "training" and gone and not deleting)
    assert bool(first.events) == (first.repair is not None)
    if first.repair is not None:
        mv = {**mv, "status": {**mv["status"], **lc.version_status(mv["status"], first.repair,
                                                                  generation=1, now=NOW)}}
    second = lc.decide_version(mv, "f", run_gone=gone)
    assert second.repair is None and not second.events


def failed_pod(message: str) -> dict[str, Any]:
    return {"metadata": {"name": "btc-run-1-train-x", "creationTimestamp": "2026-11-23T10:15:02Z"},
            "status": {"phase": "Failed", "containerStatuses": [
                {"name": "trainer", "state": {"terminated": {"exitCode": 2, "message": message}}}]}}


def test_a_permanent_trainer_failure_has_the_trainers_reason_and_says_its_message_once() -> None:
    tj = training_job()
    body = job(tj, "failed")
    body["status"]["conditions"] = [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
                                     "message": "Container trainer for pod x failed with exit code 2"}]
    text = TrainerResult(status="Failed", exit_code=2, reason="BadData",
                         message="s3://clm-models/nowhere/missing.csv does not exist",
                         field="spec.dataset.uri").to_termination_message()
    first, _, after = fixed_point(run.RunView(training_job=tj, now=CREATED, job=body,
                                              pods=(failed_pod(text),)))
    status = first.status
    assert status["reason"] == "BadData" and "PodFailurePolicy" not in status["message"]
    assert status["message"].count("missing.csv does not exist") == 1
    assert "spec.dataset.uri" in status["message"]
    failed = {c["type"]: c for c in status["conditions"]}["Failed"]
    assert (failed["reason"], failed["message"]) == ("BadData", status["message"])
    (event,) = first.events
    assert event.message == f"BadData: {status['message']}" and event.message.count("BadData") == 1
    assert [c.labels for c in first.metrics][0][-1] == ("reason", "BadData")
    assert after.model_version is not None
    trained = {c["type"]: c for c in after.model_version["status"]["conditions"]}["Trained"]
    assert trained["reason"] == "BadData"


def test_retries_used_up_keep_the_jobs_reason_and_the_trainers_in_the_message() -> None:
    tj = training_job()
    text = TrainerResult(status="Failed", exit_code=1, reason="StorageUnavailable",
                         message="endpoint refused").to_termination_message()
    decision = run.decide(run.RunView(training_job=tj, now=CREATED, job=job(tj, "failed"),
                                      pods=(failed_pod(text),)), CONFIG)
    assert decision.status["reason"] == "BackoffLimitExceeded"
    assert decision.status["message"] == "StorageUnavailable: endpoint refused"
    assert decision.events[0].message == "BackoffLimitExceeded: StorageUnavailable: endpoint refused"


def v(version: str, stage: str) -> VersionView:
    return VersionView(name=f"m-{version}", version=version, stage=stage, score=50.0, passed=True)


def test_re_promoting_the_newer_version_after_a_rollback_is_a_promotion() -> None:
    past = frozenset({"v1", "v2"})
    # v2 served, was rolled back to v1; now v2 is pinned again.
    versions = [v("v1", Stage.PRODUCTION), v("v2", Stage.RETIRED)]
    again = decide(ModelState(policy="Manual", pin="v2", allow_failed=None, production="v1",
                              previous_production="v2", past_productions=past), versions)
    assert again.transition is not None
    assert (again.transition.from_version, again.transition.to_version) == ("v1", "v2")
    assert again.transition.reason == "Promoted" and not again.transition.rollback
    # Going back to the older one is still a rollback.
    versions = [v("v1", Stage.RETIRED), v("v2", Stage.PRODUCTION)]
    back = decide(ModelState(policy="Manual", pin="v1", allow_failed=None, production="v2",
                             previous_production="v1", past_productions=past), versions)
    assert back.transition is not None and back.transition.reason == "RolledBack" and back.transition.rollback


def gone_view(tj: dict[str, Any], **fields: Any) -> run.RunView:
    return run.RunView(training_job=tj, now=CREATED, **fields)


def test_a_job_deleted_by_a_zero_ttl_keeps_its_outcome() -> None:
    recorded = run.decide(run.RunView(training_job=training_job(), now=CREATED), CONFIG).status
    tj = training_job(status=recorded)
    done = job(tj, "complete")
    message = result().to_termination_message()
    # Its last state and its pod's, from their DELETED events.
    first, _, _ = fixed_point(gone_view(tj, last_job=done, pods=(pod("done", message),)))
    assert first.phase == "Succeeded" and first.status["completionTime"] == "2026-11-23T10:20:00Z"
    assert first.status["jobName"] == "btc-run-1-train"
    # Only the Job's last state (its pods were gone first): the manifest is read and used.
    view = gone_view(tj, last_job=done)
    assert (run.manifest_to_read(view, CONFIG) or "").endswith(f"/{version_of(tj)}/manifest.json")
    assert run.decide(replace(view, manifest=result()), CONFIG).phase == "Succeeded"
    # Nothing seen of it (the operator restarted): manifest.json, the durable copy of a success.
    nothing = gone_view(tj)
    assert run.manifest_to_read(nothing, CONFIG) is not None
    assert fixed_point(replace(nothing, manifest=result()))[0].phase == "Succeeded"
    # A failure seen in its last state keeps its reason; no manifest is looked for.
    failed = gone_view(tj, last_job=job(tj, "failed"))
    assert run.manifest_to_read(failed, CONFIG) is None
    assert run.decide(failed, CONFIG).status["reason"] == "BackoffLimitExceeded"
    # No trace at all: JobDeleted, as before.
    assert run.decide(nothing, CONFIG).status["reason"] == "JobDeleted"
    # A foreign Job's last state under the same name does not count.
    foreign = gone_view(tj, last_job=job(tj, "complete", owned=False), pods=(pod("done", message),))
    assert run.decide(foreign, CONFIG).status["reason"] == "JobDeleted"
