"""The node's container runtime: starts the shim (``launch.py``) per container run, signals it, reads how it
ended, and finds runs again after the agent restarts (the shim outlives the agent, like containerd-shim).

One run = one directory ``<pod dir>/runs/<container>-<n>``: ``plan.json`` (deleted once started: it holds
the environment), ``pid.json`` (written by the shim after exec), ``status.json`` (written when it ended),
``termination-log`` (bound at the container's terminationMessagePath) and ``scratch/`` (its root's layers).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAUNCHER = Path(__file__).with_name("launch.py")
START_TIMEOUT = 60.0  # seconds for the shim to build the root and exec


@dataclass(frozen=True)
class ExitRecord:
    """How a run ended, as the shim recorded it (or as the agent inferred it for a lost run)."""

    exit_code: int
    started_at: float
    finished_at: float
    start_error: str = ""
    lost: bool = False  # the shim vanished without a record (killed with the agent): status unknown


def new_container_id() -> str:
    return secrets.token_hex(32)


def _proc_start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":  # a zombie has ended: the shim is about to record it
        return None
    return fields[19]


class ContainerRun:
    """One run of a container: started here or found again in its directory."""

    def __init__(
        self, directory: Path, container_id: str, shim: subprocess.Popen[bytes] | None = None
    ) -> None:
        self.directory = directory
        self.container_id = container_id
        self.shim = shim
        self._pid: tuple[int, str, float] | None = None
        self._exit: ExitRecord | None = None

    @property
    def pid_file(self) -> Path:
        return self.directory / "pid.json"

    @property
    def status_file(self) -> Path:
        return self.directory / "status.json"

    @property
    def termination_log(self) -> Path:
        return self.directory / "termination-log"

    def _read_pid(self) -> tuple[int, str, float] | None:
        if self._pid is None and self.pid_file.exists():
            with contextlib.suppress(OSError, ValueError, KeyError):
                data = json.loads(self.pid_file.read_text())
                self._pid = (int(data["pid"]), str(data["startTime"]), float(data["startedAt"]))
        return self._pid

    @property
    def started_at(self) -> float | None:
        found = self._read_pid()
        return found[2] if found else None

    def pid(self) -> int | None:
        """The container's main pid while it runs (checked against its start time: no pid reuse)."""
        found = self._read_pid()
        if found is None or self.exited() is not None:
            return None
        pid, start, _ = found
        return pid if _proc_start_time(pid) == start else None

    def exited(self) -> ExitRecord | None:
        """The run's end once it has ended; None while it starts or runs."""
        if self._exit is not None:
            return self._exit
        if self.shim is not None:
            self.shim.poll()  # reap our child shim, so it does not linger as a zombie
        if self.status_file.exists():
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(self.status_file.read_text())
                started = float(data.get("startedAt") or data.get("finishedAt") or time.time())
                if data.get("startError"):
                    self._exit = ExitRecord(128, started, float(data["finishedAt"]), str(data["startError"]))
                else:
                    self._exit = ExitRecord(int(data["exitCode"]), started, float(data["finishedAt"]))
                return self._exit
        gone = (self.shim.returncode is not None) if self.shim is not None else not self._shim_alive()
        if gone and not self.status_file.exists():  # checked again: the shim may have just written it
            now = time.time()
            self._exit = ExitRecord(137, self.started_at or now, now, lost=True)
        return self._exit if self._exit is not None or not gone else self.exited()

    def _shim_alive(self) -> bool:
        """For an adopted run: is its container (or its shim, still setting up) alive?"""
        found = self._read_pid()
        if found is not None:
            return _proc_start_time(found[0]) == found[1] or self._shim_pid_alive()
        return self._shim_pid_alive()

    def _shim_pid_alive(self) -> bool:
        path = self.directory / "shim.json"
        with contextlib.suppress(OSError, ValueError, KeyError):
            data = json.loads(path.read_text())
            return _proc_start_time(int(data["pid"])) == str(data["startTime"])
        return False

    def signal(self, number: int) -> None:
        """SIGTERM goes to the main process (what a runtime's stop does); SIGKILL to its whole group."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if number == signal.SIGKILL:
                os.killpg(pid, signal.SIGKILL)
            os.kill(pid, number)

    def wait(self, timeout: float) -> ExitRecord | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.exited()
            if record is not None:
                return record
            time.sleep(0.02)
        return self.exited()

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def start(directory: Path, plan: dict[str, Any], log_path: Path) -> ContainerRun:
    """Start a run: write the plan, spawn the shim in its own session (it survives the agent), wait until the
    container has exec'd or failed to start."""
    directory.mkdir(parents=True, exist_ok=True)
    container_id = new_container_id()
    plan_path = directory / "plan.json"
    descriptor = os.open(plan_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(
            {
                **plan,
                "statusFile": str(directory / "status.json"),
                "pidFile": str(directory / "pid.json"),
                "scratch": str(directory / "scratch"),
            },
            handle,
        )
    (directory / "container-id").write_text(container_id)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        shim = subprocess.Popen(
            [sys.executable, "-I", "-S", str(LAUNCHER), "run", str(plan_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
    start_time = _proc_start_time(shim.pid)
    (directory / "shim.json").write_text(json.dumps({"pid": shim.pid, "startTime": start_time}))
    run = ContainerRun(directory, container_id, shim)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and run.started_at is None and run.exited() is None:
        time.sleep(0.01)
    with contextlib.suppress(FileNotFoundError):
        plan_path.unlink()
    return run


def adopt(directory: Path) -> ContainerRun | None:
    """A run found in ``directory`` after a restart of the agent (None: not a run directory)."""
    id_file = directory / "container-id"
    if not id_file.exists():
        return None
    return ContainerRun(directory, id_file.read_text().strip())


def exec_in(pid: int, plan: dict[str, Any], timeout: float) -> tuple[int, bytes]:
    """Run a command inside a running container (exec probes): (exit code, output); 124 on timeout."""
    with subprocess.Popen(
        [sys.executable, "-I", "-S", str(LAUNCHER), "exec", "/dev/stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    ) as process:
        try:
            output, _ = process.communicate(json.dumps({**plan, "pid": pid}).encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return 124, b"probe timed out"
        return process.returncode, output
