"""Pod status as a kubelet reports it (pkg/kubelet/kubelet_pods.go getPhase, pkg/kubelet/status/generate.go).

Pure: from what the node knows about each container (:class:`ContainerView`) to the API's ``status`` object.
Conventions: timestamps are RFC 3339 strings in UTC with second precision (the API's ``metav1.Time``);
conditions keep their ``lastTransitionTime`` while their status does not change; a terminal phase
(Succeeded/Failed) is final.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"
TERMINAL_PHASES = (SUCCEEDED, FAILED)
# The condition types the kubelet owns; any other (PodScheduled, DisruptionTarget, ...) is left alone.
KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


def rfc3339(moment: float | None = None) -> str:
    """``moment`` (epoch seconds, default now) as the API's second-precision UTC timestamp."""
    when = datetime.now(UTC) if moment is None else datetime.fromtimestamp(moment, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time(moment: float | None = None) -> str:
    """``moment`` as a ``metav1.MicroTime`` (a Lease's renewTime)."""
    when = datetime.now(UTC) if moment is None else datetime.fromtimestamp(moment, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Terminated:
    """A container run that ended. ``exit_code`` follows the runtime: 128+N for a death by signal N."""

    exit_code: int
    reason: str
    started_at: str
    finished_at: str
    container_id: str = ""
    message: str = ""
    signal: int | None = None

    def to_api(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }
        if self.signal:
            state["signal"] = self.signal
        if self.message:
            state["message"] = self.message
        if self.container_id:
            state["containerID"] = self.container_id
        return state


def exit_reason(exit_code: int) -> str:
    """The runtime's reason for an exited container: Completed for 0, Error otherwise."""
    return "Completed" if exit_code == 0 else "Error"


@dataclass
class ContainerView:
    """What the node knows about one container now: exactly one of running/waiting/terminated is set."""

    name: str
    image: str
    image_id: str = ""
    container_id: str = ""
    restart_count: int = 0
    running_since: str | None = None
    waiting: tuple[str, str] | None = None  # (reason, message)
    terminated: Terminated | None = None
    last_terminated: Terminated | None = None
    ready: bool = False
    started: bool = False

    def to_api(self) -> dict[str, Any]:
        if self.running_since is not None:
            state: dict[str, Any] = {"running": {"startedAt": self.running_since}}
        elif self.terminated is not None:
            state = {"terminated": self.terminated.to_api()}
        else:
            reason, message = self.waiting or ("ContainerCreating", "")
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        running = self.running_since is not None
        status: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": running and self.ready,
            "started": running and self.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": self.last_terminated.to_api()} if self.last_terminated else {},
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def _has_terminated_before(view: ContainerView) -> bool:
    return view.last_terminated is not None


def pod_phase(
    restart_policy: str,
    init: Sequence[ContainerView],
    regular: Sequence[ContainerView],
    *,
    terminal: bool = False,
) -> str:
    """The kubelet's getPhase. ``terminal``: the pod is being torn down (deleted, past its deadline), so the
    phase must end Succeeded (every container exited 0) or Failed."""
    pending_init = failed_init = 0
    for view in init:
        if view.running_since is not None:
            pending_init += 1
        elif view.terminated is not None:
            failed_init += view.terminated.exit_code != 0
        elif view.last_terminated is not None:
            failed_init += view.last_terminated.exit_code != 0
        else:
            pending_init += 1
    running = waiting = stopped = succeeded = 0
    for view in regular:
        if view.running_since is not None:
            running += 1
        elif view.terminated is not None:
            stopped += 1
            succeeded += view.terminated.exit_code == 0
        elif _has_terminated_before(view):
            stopped += 1
        else:
            waiting += 1
    if terminal:
        all_ok = bool(regular) and all(
            v.terminated is not None and v.terminated.exit_code == 0 for v in regular
        )
        return SUCCEEDED if all_ok and failed_init == 0 else FAILED
    if failed_init > 0 and restart_policy == "Never":
        return FAILED
    if pending_init > 0 or (failed_init > 0 and running + stopped == 0):
        return PENDING
    if waiting > 0:
        return PENDING
    if running > 0:
        return RUNNING
    if stopped > 0:
        if restart_policy == "Always":
            return RUNNING
        if stopped == succeeded:
            return SUCCEEDED
        if restart_policy == "Never":
            return FAILED
        return RUNNING
    return PENDING


def _names(views: Sequence[ContainerView]) -> str:
    return "[" + " ".join(v.name for v in views) + "]"  # Go's %v of a []string


def _condition(ctype: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    condition: dict[str, Any] = {"type": ctype, "status": "True" if ok else "False"}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def pod_conditions(
    phase: str,
    init: Sequence[ContainerView],
    regular: Sequence[ContainerView],
    *,
    sandbox_ready: bool,
    readiness_gates: Sequence[str] = (),
    existing: Sequence[Mapping[str, Any]] = (),
    now: str,
) -> list[dict[str, Any]]:
    """The four kubelet conditions, keeping ``lastTransitionTime`` of those whose status is unchanged.

    ``readiness_gates``: the pod's readinessGates condition types; Ready needs each True in ``existing``.
    """
    completed = phase == SUCCEEDED
    incomplete = [v for v in init if v.terminated is None or v.terminated.exit_code != 0]
    if not init or completed or not incomplete:
        initialized = _condition("Initialized", True, "PodCompleted" if completed and init else "")
    else:
        initialized = _condition(
            "Initialized",
            False,
            "ContainersNotInitialized",
            f"containers with incomplete status: {_names(incomplete)}",
        )
    unready = [v for v in regular if not (v.running_since is not None and v.ready)]
    if completed:
        containers_ready = _condition("ContainersReady", False, "PodCompleted")
    elif unready or not regular:
        containers_ready = _condition(
            "ContainersReady",
            False,
            "ContainersNotReady",
            f"containers with unready status: {_names(unready)}",
        )
    else:
        containers_ready = _condition("ContainersReady", True)
    existing_by_type = {str(c.get("type")): c for c in existing}
    missing_gates = [g for g in readiness_gates if (existing_by_type.get(g) or {}).get("status") != "True"]
    if containers_ready["status"] != "True":
        ready = dict(containers_ready, type="Ready")
    elif missing_gates:
        ready = _condition(
            "Ready",
            False,
            "ReadinessGatesNotReady",
            "corresponding condition of pod readiness gate "
            + ", ".join(f'"{g}" does not exist.' for g in missing_gates),
        )
    else:
        ready = _condition("Ready", True)
    to_start = _condition("PodReadyToStartContainers", sandbox_ready)
    conditions = [to_start, initialized, containers_ready, ready]
    for condition in conditions:
        previous = existing_by_type.get(condition["type"])
        same = previous is not None and previous.get("status") == condition["status"]
        condition["lastTransitionTime"] = (previous or {}).get("lastTransitionTime") if same else now
        condition["lastProbeTime"] = None
        if condition["lastTransitionTime"] is None:
            condition["lastTransitionTime"] = now
    return conditions


@dataclass
class PodView:
    """Everything the status of one pod is made of."""

    restart_policy: str
    init: list[ContainerView]
    regular: list[ContainerView]
    start_time: str
    sandbox_ready: bool
    pod_ip: str = "127.0.0.1"
    host_ip: str = "127.0.0.1"
    terminal: bool = False
    reason: str = ""
    message: str = ""
    readiness_gates: list[str] = field(default_factory=list)
    observed_generation: int | None = None


def pod_status(view: PodView, existing: Mapping[str, Any], *, now: str) -> dict[str, Any]:
    """The pod's ``status`` (a strategic-merge patch body: conditions merge by type, lists of container
    statuses replace). A phase already terminal in ``existing`` stays as it is."""
    previous_phase = existing.get("phase")
    if previous_phase in TERMINAL_PHASES:
        phase = str(previous_phase)
    else:
        phase = pod_phase(view.restart_policy, view.init, view.regular, terminal=view.terminal)
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": pod_conditions(
            phase,
            view.init,
            view.regular,
            sandbox_ready=view.sandbox_ready and phase not in TERMINAL_PHASES,
            readiness_gates=view.readiness_gates,
            existing=existing.get("conditions") or [],
            now=now,
        ),
        "hostIP": view.host_ip,
        "hostIPs": [{"ip": view.host_ip}],
        "podIP": view.pod_ip,
        "podIPs": [{"ip": view.pod_ip}],
        "startTime": view.start_time,
        "containerStatuses": [c.to_api() for c in view.regular],
    }
    if view.init:
        status["initContainerStatuses"] = [c.to_api() for c in view.init]
    if view.reason:
        status["reason"] = view.reason
    if view.message:
        status["message"] = view.message
    if view.observed_generation is not None:
        status["observedGeneration"] = view.observed_generation
    return status


def restart_wanted(restart_policy: str, exit_code: int) -> bool:
    """Whether the kubelet restarts a container that exited with ``exit_code`` under ``restart_policy``."""
    if restart_policy == "Always":
        return True
    if restart_policy == "OnFailure":
        return exit_code != 0
    return False


def crash_backoff(restarts_so_far: int, initial: float, ceiling: float) -> float:
    """The kubelet's CrashLoopBackOff delay before the next start: none for the first restart, then
    ``initial`` doubling per restart up to ``ceiling`` (10 s .. 300 s in a real kubelet)."""
    if restarts_so_far <= 0:
        return 0.0
    return float(min(initial * (2 ** (restarts_so_far - 1)), ceiling))


def termination_message(
    written: bytes, policy: str, exit_code: int, log_tail: bytes, *, limit: int = 4096
) -> str:
    """The ``message`` of a terminated state: the file at terminationMessagePath (at most ``limit`` bytes);
    with ``FallbackToLogsOnError`` and a failure that wrote nothing, the log's last 80 lines (at most
    2 KiB)."""
    if written:
        return written[:limit].decode("utf-8", "replace")
    if policy == "FallbackToLogsOnError" and exit_code != 0 and log_tail:
        lines = log_tail.splitlines(keepends=True)[-80:]
        return b"".join(lines)[-2048:].decode("utf-8", "replace")
    return ""
