"""What a batch Job and its pods say about a training run. Pure: takes the objects, returns a verdict.

A pod stuck in ImagePullBackOff, ErrImagePull, CreateContainerConfigError or unschedulable never fails
on its own; once ``startupTimeoutSeconds`` has passed since the Job's creation the run is reported
``Stuck`` with the waiting reason, and the operator fails it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from clm_contract.trainer_contract import TrainerResult
from pydantic import ValidationError

from clm_operator.domain.jobspec import CONTAINER_NAME
from clm_operator.domain.versioning import parse_timestamp

POD_FAILURE_POLICY = "PodFailurePolicy"  # the Job condition reason of a podFailurePolicy FailJob rule
STUCK_REASONS = ("ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError", "CreateContainerError",
                 "InvalidImageName")


class RunState(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STUCK = "Stuck"


@dataclass(frozen=True)
class JobVerdict:
    state: RunState
    reason: str = ""
    message: str = ""
    termination_message: str | None = None
    pod_name: str | None = None
    started_at: str | None = None
    # What the run's status says: the trainer's own reason when it stated one (BadData, not the Job's
    # PodFailurePolicy) and the message without any reason prefix, so that neither repeats the other.
    cause: str = ""
    detail: str = ""

    @property
    def run_reason(self) -> str:
        return self.cause or self.reason

    @property
    def run_message(self) -> str:
        return self.detail or self.message

    def trainer_result(self) -> TrainerResult | None:
        return parse_trainer_result(self.termination_message)


def parse_trainer_result(text: str | None) -> TrainerResult | None:
    """The TrainerResult in a termination message, or None (logs fallback, truncation, garbage)."""
    if not text:
        return None
    try:
        return TrainerResult.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        return None


def _condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return dict(condition)
    return None


def _trainer_status(pod: dict[str, Any]) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER_NAME:
            return dict(status)
    return {}


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    status = _trainer_status(pod)
    for key in ("state", "lastState"):
        terminated = (status.get(key) or {}).get("terminated")
        if terminated:
            return dict(terminated)
    return None


def _newest_first(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(pods, key=lambda p: (p.get("metadata", {}).get("creationTimestamp") or "",
                                       p.get("metadata", {}).get("name") or ""), reverse=True)


def _termination(pods: list[dict[str, Any]], exit_zero: bool) -> tuple[str | None, str | None]:
    """(message, pod name) of the newest pod whose trainer exited with (or without) code 0."""
    for pod in _newest_first(pods):
        terminated = _terminated(pod)
        if terminated is None:
            continue
        if (terminated.get("exitCode") == 0) == exit_zero:
            return terminated.get("message"), pod.get("metadata", {}).get("name")
    return None, None


def _failure(reason: str, job_message: str, termination: str | None) -> tuple[str, str, str]:
    """(message with the Job's reason, the run's reason, the message alone) of a failed Job."""
    result = parse_trainer_result(termination)
    if result is not None:
        detail = result.message or ""
        if result.field:
            detail += f" (field {result.field})"
        stated = result.reason or "TrainerFailed"
        message = f"{stated}: {detail}".rstrip(": ")
        if reason == POD_FAILURE_POLICY:
            # A permanent failure (exit 2, section 5): the trainer's verdict is the run's reason.
            return f"{reason}: {message}", stated, detail.strip() or f"the trainer failed ({reason})"
        # Retries used up (BackoffLimitExceeded, DeadlineExceeded): the reason; the trainer's says why.
        return f"{reason}: {message}", reason, message
    if termination:
        text = termination.strip()[-1024:]
        return f"{reason}: {text}", reason, text
    return (f"{reason}: {job_message}" if job_message else reason), reason, job_message or reason


def interpret(job: dict[str, Any], pods: list[dict[str, Any]], *, now: datetime,
              startup_timeout_seconds: int) -> JobVerdict:
    """The run's state from its Job and the Job's pods."""
    complete = _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet")
    if complete is not None:
        done, done_pod = _termination(pods, exit_zero=True)
        return JobVerdict(RunState.SUCCEEDED, "Completed", "", done, done_pod)
    failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    if failed is not None:
        failure = str(failed.get("reason") or "JobFailed")
        last, last_pod = _termination(pods, exit_zero=False)
        text, cause, detail = _failure(failure, failed.get("message") or "", last)
        return JobVerdict(RunState.FAILED, failure, text, last, last_pod, cause=cause, detail=detail)

    for pod in _newest_first(pods):
        phase = (pod.get("status") or {}).get("phase")
        name = pod.get("metadata", {}).get("name")
        status = _trainer_status(pod)
        running = (status.get("state") or {}).get("running")
        if phase == "Running" and running:
            return JobVerdict(RunState.RUNNING, "Running", "", pod_name=name,
                              started_at=running.get("startedAt"))
        if phase not in ("Pending", None):
            continue
        waiting = (status.get("state") or {}).get("waiting") or {}
        reason: str | None = waiting.get("reason")
        message: str = waiting.get("message") or ""
        if reason not in STUCK_REASONS:
            reason, message = None, ""
            for condition in (pod.get("status") or {}).get("conditions") or []:
                if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                    reason = condition.get("reason") or "Unschedulable"
                    message = condition.get("message") or ""
        if reason is None:
            continue
        created = job.get("metadata", {}).get("creationTimestamp")
        waited = (now - parse_timestamp(created)).total_seconds() if created else 0.0
        if waited >= startup_timeout_seconds:
            detail = (f"the trainer pod {name} did not start within startupTimeoutSeconds="
                      f"{startup_timeout_seconds}" + (f" ({message})" if message else ""))
            return JobVerdict(RunState.STUCK, reason, f"{reason}: {detail}", pod_name=name, detail=detail)
        return JobVerdict(RunState.PENDING, reason, message, pod_name=name)
    active = int((job.get("status") or {}).get("active") or 0)
    return JobVerdict(RunState.PENDING, "Waiting" if active else "", "")
