"""The node agent's pod status: kubelet phase rules, conditions, container states, back-off, messages."""

from __future__ import annotations

import pytest
from clm_sandbox.node.status import (
    ContainerView,
    PodView,
    Terminated,
    crash_backoff,
    pod_conditions,
    pod_phase,
    pod_status,
    restart_wanted,
    termination_message,
)
from hypothesis import given
from hypothesis import strategies as st

T0, T1 = "2026-12-01T10:00:00Z", "2026-12-01T10:05:00Z"


def running(name: str = "main", ready: bool = True) -> ContainerView:
    return ContainerView(name, "img", running_since=T0, ready=ready, started=True, container_id="clm://1")


def exited(code: int, name: str = "main") -> ContainerView:
    reason = "Completed" if code == 0 else "Error"
    return ContainerView(name, "img", terminated=Terminated(code, reason, T0, T1, "clm://1"))


def backing_off(code: int, name: str = "main") -> ContainerView:
    return ContainerView(
        name,
        "img",
        waiting=("CrashLoopBackOff", "back-off 10s"),
        restart_count=1,
        last_terminated=Terminated(code, "Error", T0, T1),
    )


def waiting(reason: str = "ContainerCreating", name: str = "main") -> ContainerView:
    return ContainerView(name, "img", waiting=(reason, ""))


@pytest.mark.parametrize(
    ("policy", "init", "regular", "phase"),
    [
        ("Never", [], [waiting()], "Pending"),
        ("Never", [], [waiting("ImagePullBackOff")], "Pending"),
        ("Never", [], [running()], "Running"),
        ("Never", [], [exited(0)], "Succeeded"),
        ("Never", [], [exited(1)], "Failed"),
        ("Never", [], [exited(0), exited(2, "b")], "Failed"),
        ("Never", [], [running(), exited(1, "b")], "Running"),
        ("OnFailure", [], [exited(0)], "Succeeded"),
        ("OnFailure", [], [backing_off(1)], "Running"),
        ("Always", [], [exited(0)], "Running"),
        ("Always", [], [backing_off(1)], "Running"),
        ("Never", [running("init")], [waiting("PodInitializing")], "Pending"),
        ("Never", [exited(1, "init")], [waiting("PodInitializing")], "Failed"),
        ("OnFailure", [backing_off(1, "init")], [waiting("PodInitializing")], "Pending"),
        ("Never", [exited(0, "init")], [running()], "Running"),
    ],
)
def test_phase_follows_the_kubelet(
    policy: str, init: list[ContainerView], regular: list[ContainerView], phase: str
) -> None:
    assert pod_phase(policy, init, regular) == phase


def test_a_torn_down_pod_ends_terminal() -> None:
    assert pod_phase("Always", [], [exited(0)], terminal=True) == "Succeeded"
    assert pod_phase("Always", [], [exited(143)], terminal=True) == "Failed"
    assert pod_phase("Never", [], [waiting()], terminal=True) == "Failed"


def test_container_states_as_the_api_shows_them() -> None:
    assert running().to_api()["state"] == {"running": {"startedAt": T0}}
    assert running().to_api()["ready"] is True and running().to_api()["started"] is True
    status = exited(2).to_api()
    assert status["state"]["terminated"] == {
        "exitCode": 2,
        "reason": "Error",
        "startedAt": T0,
        "finishedAt": T1,
        "containerID": "clm://1",
    }
    assert status["ready"] is False and status["lastState"] == {}
    crashing = backing_off(1).to_api()
    assert crashing["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}
    assert crashing["lastState"]["terminated"]["exitCode"] == 1 and crashing["restartCount"] == 1
    not_ready = running(ready=False).to_api()
    assert not_ready["ready"] is False and not_ready["started"] is True


def test_conditions_name_the_unready_containers_and_keep_transition_times() -> None:
    conditions = {
        c["type"]: c
        for c in pod_conditions(
            "Running", [], [running(), running("side", ready=False)], sandbox_ready=True, now=T1
        )
    }
    assert conditions["ContainersReady"]["status"] == "False"
    assert conditions["ContainersReady"]["message"] == "containers with unready status: [side]"
    assert conditions["Ready"]["reason"] == "ContainersNotReady"
    assert conditions["Initialized"]["status"] == "True"
    assert conditions["PodReadyToStartContainers"]["status"] == "True"
    kept = pod_conditions(
        "Running",
        [],
        [running()],
        sandbox_ready=True,
        now=T1,
        existing=[
            {"type": "Initialized", "status": "True", "lastTransitionTime": T0},
            {"type": "Ready", "status": "False", "lastTransitionTime": T0},
        ],
    )
    by_type = {c["type"]: c for c in kept}
    assert by_type["Initialized"]["lastTransitionTime"] == T0  # unchanged status: time kept
    assert by_type["Ready"]["status"] == "True" and by_type["Ready"]["lastTransitionTime"] == T1


def test_completed_pods_report_pod_completed() -> None:
    by_type = {
        c["type"]: c
        for c in pod_conditions("Succeeded", [exited(0, "init")], [exited(0)], sandbox_ready=False, now=T1)
    }
    assert by_type["Ready"] == {**by_type["Ready"], "status": "False", "reason": "PodCompleted"}
    assert by_type["Initialized"]["reason"] == "PodCompleted"


def test_init_containers_gate_initialized() -> None:
    by_type = {
        c["type"]: c
        for c in pod_conditions(
            "Pending", [running("init")], [waiting("PodInitializing")], sandbox_ready=True, now=T1
        )
    }
    assert by_type["Initialized"]["status"] == "False"
    assert by_type["Initialized"]["message"] == "containers with incomplete status: [init]"


def test_readiness_gates_hold_ready_back() -> None:
    by_type = {
        c["type"]: c
        for c in pod_conditions(
            "Running", [], [running()], sandbox_ready=True, now=T1, readiness_gates=["example.com/lb"]
        )
    }
    assert by_type["ContainersReady"]["status"] == "True" and by_type["Ready"]["status"] == "False"


def test_pod_status_keeps_a_terminal_phase_and_reports_ips() -> None:
    view = PodView("Always", [], [running()], start_time=T0, sandbox_ready=True)
    status = pod_status(view, {"phase": "Failed"}, now=T1)
    assert status["phase"] == "Failed"
    assert status["podIP"] == "127.0.0.1" and status["hostIPs"] == [{"ip": "127.0.0.1"}]
    assert status["startTime"] == T0 and "initContainerStatuses" not in status
    deadline = pod_status(
        PodView(
            "Never",
            [],
            [exited(137)],
            T0,
            False,
            terminal=True,
            reason="DeadlineExceeded",
            message="Pod was active too long",
        ),
        {},
        now=T1,
    )
    assert deadline["phase"] == "Failed" and deadline["reason"] == "DeadlineExceeded"


def test_restart_policies() -> None:
    assert restart_wanted("Always", 0) and restart_wanted("Always", 1)
    assert not restart_wanted("OnFailure", 0) and restart_wanted("OnFailure", 1)
    assert not restart_wanted("Never", 1)


@given(st.integers(min_value=0, max_value=60))
def test_crash_backoff_doubles_from_zero_to_the_ceiling(restarts: int) -> None:
    delay = crash_backoff(restarts, 10.0, 300.0)
    assert 0.0 <= delay <= 300.0
    assert (delay == 0.0) == (restarts == 0)
    if 1 <= restarts < 5:
        assert delay == 10.0 * 2 ** (restarts - 1)
    assert crash_backoff(restarts + 1, 10.0, 300.0) >= delay


def test_termination_message_file_first_then_logs_on_error() -> None:
    assert termination_message(b"result", "FallbackToLogsOnError", 1, b"log") == "result"
    assert termination_message(b"", "File", 1, b"log") == ""
    assert termination_message(b"", "FallbackToLogsOnError", 0, b"log") == ""
    lines = b"".join(b"line %d\n" % i for i in range(200))
    tail = termination_message(b"", "FallbackToLogsOnError", 1, lines)
    assert tail.endswith("line 199\n") and "line 119\n" not in tail and len(tail.encode()) <= 2048
    assert len(termination_message(b"x" * 10_000, "File", 0, b"")) == 4096
