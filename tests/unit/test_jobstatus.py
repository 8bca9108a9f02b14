from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from clm_contract.trainer_contract import TrainerResult
from clm_operator.domain.jobstatus import RunState, interpret

CREATED = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def job(*conditions: tuple[str, str, str], active: int = 0) -> dict[str, Any]:
    return {"metadata": {"name": "run-train", "creationTimestamp": "2026-11-23T10:00:00Z"},
            "status": {"active": active, "conditions": [
                {"type": t, "status": "True", "reason": r, "message": msg} for t, r, msg in conditions]}}


def pod(name: str, phase: str, state: dict[str, Any], *, created: str = "2026-11-23T10:00:01Z",
        conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created},
            "status": {"phase": phase, "conditions": conditions or [],
                       "containerStatuses": [{"name": "trainer", "state": state}]}}


def run(job_: dict[str, Any], pods: list[dict[str, Any]], after: float = 1.0, timeout: int = 600) -> Any:
    return interpret(job_, pods, now=CREATED + timedelta(seconds=after), startup_timeout_seconds=timeout)


RESULT = TrainerResult(status="Failed", exit_code=2, reason="BadData", message="no rows in file",
                       field="spec.dataset.uri").to_termination_message()


def test_complete_job_gives_the_successful_pods_termination_message() -> None:
    ok = pod("p2", "Succeeded", {"terminated": {"exitCode": 0, "message": '{"status":"Succeeded"}'}},
             created="2026-11-23T10:05:00Z")
    failed = pod("p1", "Failed", {"terminated": {"exitCode": 1, "message": "boom"}})
    verdict = run(job(("Complete", "", "")), [failed, ok])
    assert verdict.state == RunState.SUCCEEDED
    assert verdict.termination_message == '{"status":"Succeeded"}' and verdict.pod_name == "p2"


def test_pod_failure_policy_failure_carries_the_trainer_reason_and_field() -> None:
    bad = pod("p1", "Failed", {"terminated": {"exitCode": 2, "message": RESULT}})
    verdict = run(job(("Failed", "PodFailurePolicy", "Container trainer exited with 2")), [bad])
    assert verdict.state == RunState.FAILED and verdict.reason == "PodFailurePolicy"
    assert "BadData: no rows in file" in verdict.message and "spec.dataset.uri" in verdict.message
    result = verdict.trainer_result()
    assert result is not None and result.exit_code == 2


def test_backoff_limit_with_plain_logs_as_message() -> None:
    bad = pod("p1", "Failed", {"terminated": {"exitCode": 1, "message": "Traceback...\nStorageUnavailable"}})
    failed = job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"))
    verdict = run(failed, [bad])
    assert verdict.reason == "BackoffLimitExceeded" and "StorageUnavailable" in verdict.message
    assert verdict.trainer_result() is None


def test_deadline_exceeded_without_pods() -> None:
    verdict = run(job(("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")), [])
    assert verdict.state == RunState.FAILED
    assert verdict.message == "DeadlineExceeded: Job was active longer than specified deadline"


def test_running_pod() -> None:
    running = pod("p1", "Running", {"running": {"startedAt": "2026-11-23T10:00:05Z"}})
    verdict = run(job(active=1), [running])
    assert verdict.state == RunState.RUNNING and verdict.started_at == "2026-11-23T10:00:05Z"


def test_image_pull_backoff_is_pending_then_stuck_after_the_startup_timeout() -> None:
    state = {"waiting": {"reason": "ImagePullBackOff", "message": "pull access denied"}}
    waiting = pod("p1", "Pending", state)
    early = run(job(active=1), [waiting], after=59, timeout=60)
    assert early.state == RunState.PENDING and early.reason == "ImagePullBackOff"
    late = run(job(active=1), [waiting], after=60, timeout=60)
    assert late.state == RunState.STUCK and late.reason == "ImagePullBackOff"
    assert "startupTimeoutSeconds=60" in late.message and "pull access denied" in late.message


def test_unschedulable_pod_is_stuck_after_the_timeout() -> None:
    unschedulable = pod("p1", "Pending", {}, conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes have nvidia.com/gpu"}])
    verdict = run(job(active=1), [unschedulable], after=700)
    assert verdict.state == RunState.STUCK and verdict.reason == "Unschedulable"


def test_container_creating_is_just_pending_forever() -> None:
    creating = pod("p1", "Pending", {"waiting": {"reason": "ContainerCreating"}})
    assert run(job(active=1), [creating], after=10_000).state == RunState.PENDING


def test_suspended_job_without_pods_is_pending() -> None:
    assert run(job(), [], after=10_000, timeout=1).state == RunState.PENDING
