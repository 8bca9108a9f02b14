"""The node agent: registers a Node, keeps its Lease, binds pending pods and runs this node's pods.

Threads: the pod informer (list + watch of all pods, relisting after 410 Gone), the binder (the
mini-scheduler of ``scheduling.py``), the Lease and Node-status heartbeats, and one worker per pod. A worker
is the kubelet's pod worker in small: it sets up the volumes, starts the containers in order (init containers
first) through ``runtime.py``, restarts them as the restartPolicy says (with CrashLoopBackOff), runs their
probes, reports status on every change and tears the pod down on deletion: SIGTERM, SIGKILL after the grace
period, terminal phase, then the API object is deleted with gracePeriodSeconds=0 (uid precondition).
Everything a worker must remember survives a restart of the agent in ``<workdir>/pods/<ns>_<pod>/state.json``.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import os
import platform
import pwd
import shutil
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clm_sandbox.node import runtime
from clm_sandbox.node.env import (
    ContainerConfigError,
    NodeContext,
    container_env,
    expand,
    process_env,
    service_env,
)
from clm_sandbox.node.images import ImageMapFile, LocalImage, command_line
from clm_sandbox.node.kube import JSON, MERGE, Kube, status_code
from clm_sandbox.node.logs import LogServer
from clm_sandbox.node.scheduling import (
    DEFAULT_SCHEDULER,
    is_terminal,
    unschedulable_message,
    unschedulable_reasons,
)
from clm_sandbox.node.status import (
    ContainerView,
    PodView,
    Terminated,
    crash_backoff,
    exit_reason,
    micro_time,
    pod_status,
    restart_wanted,
    rfc3339,
    termination_message,
)
from clm_sandbox.node.volumes import (
    VolumeContent,
    VolumeError,
    check_host_path,
    plan_mounts,
    plan_volume,
    prepare_empty_dir,
    write_files,
)

log = logging.getLogger("clm_sandbox.nodeagent")

MIN_GRACE_SECONDS = 2.0  # the kubelet's minimum termination grace period
LOST_MESSAGE = "The container could not be located when the pod was terminated"
LEASE_NAMESPACE = "kube-node-lease"


@dataclass
class AgentConfig:
    kubeconfig: Path
    node_name: str
    workdir: Path
    image_map: Path
    api_server: str | None = None
    service_host: str = "127.0.0.1"
    service_port: int = 443
    cpu: str = str(os.cpu_count() or 1)
    memory: str = ""
    gpus: int = 0
    max_pods: int = 110
    ready_file: Path | None = None
    lease_seconds: int = 40
    renew_seconds: float = 10.0
    node_status_seconds: float = 60.0
    crash_backoff_seconds: float = 10.0
    crash_backoff_max_seconds: float = 300.0
    image_backoff_seconds: float = 10.0
    volume_resync_seconds: float = 10.0
    shutdown_grace_seconds: float = 10.0
    orphan_seconds: float = 120.0


def _memory_capacity() -> str:
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1])}Ki"
    return "1Gi"


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


class EventRecorder:
    """Core/v1 Events from the kubelet (or the scheduler), rate-limited per (object, reason, message)."""

    def __init__(self, kube: Kube, node: str) -> None:
        self.kube = kube
        self.node = node
        self._recent: dict[tuple[str, str, str], float] = {}
        self._lock = threading.Lock()

    def emit(
        self,
        pod: Mapping[str, Any],
        reason: str,
        message: str,
        kind: str = "Normal",
        component: str = "kubelet",
        field_path: str = "",
    ) -> None:
        meta = pod.get("metadata") or {}
        key = (str(meta.get("uid")), reason, message)
        now = time.time()
        with self._lock:
            if now - self._recent.get(key, 0.0) < 60.0:
                return
            self._recent[key] = now
        involved: JSON = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        if field_path:
            involved["fieldPath"] = field_path
        stamp = rfc3339(now)
        event = {
            "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": kind,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": component, **({"host": self.node} if component == "kubelet" else {})},
            "reportingComponent": component,
            "reportingInstance": self.node,
        }
        try:
            self.kube.create(f"/api/v1/namespaces/{meta.get('namespace')}/events", event)
        except Exception as exc:  # noqa: BLE001 - an event is best effort, never a reason to stop
            log.debug(
                "event %s for %s/%s not recorded: %s", reason, meta.get("namespace"), meta.get("name"), exc
            )


# -- probes -----------------------------------------------------------------------------------------


def _probe_port(port: Any, container: Mapping[str, Any]) -> int:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"port {port!r} is not a declared container port")


def run_probe(probe: Mapping[str, Any], container: Mapping[str, Any], exec_probe: Any) -> tuple[bool, str]:
    """One probe attempt: (success, detail). httpGet succeeds on 200-399, tcpSocket on connect, exec on 0;
    grpc is approximated by a TCP connect (the agent has no gRPC health client)."""
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "httpGet" in probe:
            spec = probe["httpGet"]
            port = _probe_port(spec.get("port"), container)
            host = spec.get("host") or "127.0.0.1"
            connection: http.client.HTTPConnection
            if str(spec.get("scheme", "HTTP")).upper() == "HTTPS":
                connection = http.client.HTTPSConnection(
                    host, port, timeout=timeout, context=ssl._create_unverified_context()
                )
            else:
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
            headers = {h["name"]: h["value"] for h in spec.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.35")
            try:
                connection.request("GET", spec.get("path") or "/", headers=headers)
                code = connection.getresponse().status
            finally:
                connection.close()
            return 200 <= code < 400, f"HTTP probe failed with statuscode: {code}"
        if "tcpSocket" in probe or "grpc" in probe:
            spec = probe.get("tcpSocket") or probe.get("grpc") or {}
            port = _probe_port(spec.get("port"), container)
            with socket.create_connection((spec.get("host") or "127.0.0.1", port), timeout=timeout):
                return True, ""
        if "exec" in probe:
            code, output = exec_probe(list((probe["exec"] or {}).get("command") or []), timeout)
            return code == 0, output.decode("utf-8", "replace")[-1024:]
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return False, str(exc)
    return True, ""


# -- per-container state ----------------------------------------------------------------------------


@dataclass
class Slot:
    """One container of the pod, across its runs."""

    spec: JSON
    init: bool
    restart_count: int = 0
    backoff_steps: int = 0
    run: runtime.ContainerRun | None = None
    run_name: str = ""
    log_offset: int = 0
    previous_offset: int = 0
    last: Terminated | None = None
    before_last: Terminated | None = None
    waiting: tuple[str, str] | None = None
    next_start: float = 0.0
    backoff_delay: float = 0.0
    image_failures: int = 0
    config_retry_at: float = 0.0
    next_pull: float = 0.0
    image: LocalImage | None = None
    ready: bool = False
    started: bool = False
    stop_requested: float | None = None  # when SIGTERM was sent (liveness failure or teardown)
    kill_after: float | None = None
    probe_stop: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return str(self.spec.get("name", ""))

    @property
    def running(self) -> bool:
        return self.run is not None


def _term_to_json(term: Terminated | None) -> JSON | None:
    if term is None:
        return None
    return {
        "exitCode": term.exit_code,
        "reason": term.reason,
        "startedAt": term.started_at,
        "finishedAt": term.finished_at,
        "containerID": term.container_id,
        "message": term.message,
    }


def _term_from_json(data: Mapping[str, Any] | None) -> Terminated | None:
    if not data:
        return None
    return Terminated(
        int(data["exitCode"]),
        str(data["reason"]),
        str(data["startedAt"]),
        str(data["finishedAt"]),
        str(data.get("containerID") or ""),
        str(data.get("message") or ""),
    )


class PodWorker(threading.Thread):
    def __init__(self, agent: NodeAgent, pod: JSON, predecessor: PodWorker | None = None) -> None:
        meta = pod["metadata"]
        self.predecessor = predecessor
        super().__init__(name=f"pod {meta['namespace']}/{meta['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.uid = str(meta["uid"])
        self.namespace = str(meta["namespace"])
        self.pod_name = str(meta["name"])
        self.directory = agent.config.workdir / "pods" / f"{self.namespace}_{self.pod_name}"
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.gone = False
        self.force_killed = False
        self.shutting_down = False
        self.finished = threading.Event()
        spec = pod.get("spec") or {}
        self.slots = [Slot(dict(c), True) for c in spec.get("initContainers") or []] + [
            Slot(dict(c), False) for c in spec.get("containers") or []
        ]
        self.start_time = str((pod.get("status") or {}).get("startTime") or rfc3339())
        self.volumes: dict[str, VolumeContent] = {}
        self.volume_dirs: dict[str, str] = {}
        self.volumes_ready = False
        self.volume_error = ""
        self.next_volume_sync = 0.0
        self.teardown_reason = ""  # deleted | deadline | gone | shutdown
        self.teardown_deadline: float | None = None
        self.torn_down = False
        self.deleted_from_api = False
        self.last_status: JSON | None = None
        self.cleaned = False

    # -- inputs from the informer -------------------------------------------------------------------
    def update(self, pod: JSON) -> None:
        with self.lock:
            self.pod = pod
        self.wake.set()

    def vanish(self) -> None:
        self.gone = True
        self.wake.set()

    def stop_for_shutdown(self) -> None:
        self.shutting_down = True
        self.wake.set()

    # -- properties ---------------------------------------------------------------------------------
    @property
    def spec(self) -> JSON:
        return dict(self.pod.get("spec") or {})

    @property
    def restart_policy(self) -> str:
        return str(self.spec.get("restartPolicy") or "Always")

    def log_path(self, slot: Slot) -> Path:
        return self.directory / f"{slot.name}.log"

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            if self.predecessor is not None:  # an older pod of the same name still tears down in this dir
                self.predecessor.finished.wait(120.0)
            self._restore()
            while True:
                try:
                    self.sync()
                except Exception:  # noqa: BLE001 - a worker must survive one bad sync (API down, ...)
                    log.exception("pod %s/%s: sync failed", self.namespace, self.pod_name)
                    time.sleep(1.0)
                if self.torn_down and (self.gone or self.shutting_down):
                    break
                self.wake.wait(self._idle_seconds())
                self.wake.clear()
        finally:
            for slot in self.slots:
                slot.probe_stop.set()
            self.finished.set()

    def _idle_seconds(self) -> float:
        """How long the worker may sleep without news: a shim's exit file is polled while anything runs;
        a finished pod only waits for its deletion, which the informer announces (the wake event)."""
        if any(slot.run is not None for slot in self.slots) or self.teardown_reason and not self.torn_down:
            return 0.2
        if self.torn_down or self._phase_is_terminal():
            return 5.0
        return 0.5

    def sync(self) -> None:
        now = time.time()
        for slot in self.slots:
            if slot.run is not None:
                record = slot.run.exited()
                if record is not None:
                    self._on_exit(slot, record)
        if self.torn_down:
            if self.teardown_reason != "deleted" and (self.pod.get("metadata") or {}).get(
                "deletionTimestamp"
            ):
                self.teardown_reason = "deleted"  # a pod past its deadline (or found torn down) deleted later
            self._after_teardown()
            return
        reason = self._teardown_wanted(now)
        if reason:
            self._teardown(reason, now)
            return
        if self._phase_is_terminal():
            self._cleanup_volumes()
            self._report()
            return
        if not self.volumes_ready or now >= self.next_volume_sync:
            self._sync_volumes(now)
        if not self.volumes_ready:
            self._report()
            return
        init_done = self._sync_init_containers(now)
        if init_done:
            for slot in self.slots:
                if not slot.init:
                    self._sync_container(slot, now)
        for slot in self.slots:
            self._enforce_stop(slot, now)
        self._report()

    # -- restore after an agent restart -------------------------------------------------------------
    def _state_path(self) -> Path:
        return self.directory / "state.json"

    def _restore(self) -> None:
        path = self._state_path()
        state: JSON = {}
        if path.exists():
            with contextlib.suppress(OSError, ValueError):
                state = json.loads(path.read_text())
        if state.get("uid") != self.uid:
            if self.directory.exists():
                self.agent.clean_pod_dir(self.directory, keep_logs=False)
            self.directory.mkdir(parents=True, exist_ok=True)
            for slot in self.slots:  # containers that ran before this agent knew of them (its state was lost)
                self._adopt_from_api(slot)
            self._save()
            return
        self.start_time = str(state.get("startTime") or self.start_time)
        self.torn_down = bool(state.get("tornDown"))
        saved = state.get("containers") or {}
        for slot in self.slots:
            entry = saved.get(slot.name) or {}
            slot.restart_count = int(entry.get("restartCount", 0))
            slot.backoff_steps = int(entry.get("backoffSteps", 0))
            slot.last = _term_from_json(entry.get("last"))
            slot.before_last = _term_from_json(entry.get("beforeLast"))
            slot.log_offset = int(entry.get("logOffset", 0))
            slot.previous_offset = int(entry.get("previousOffset", 0))
            slot.run_name = str(entry.get("run") or "")
            if slot.run_name:
                slot.run = runtime.adopt(self.directory / "runs" / slot.run_name)
                if slot.run is not None:
                    slot.image = self.agent.images.current().lookup(str(slot.spec.get("image", "")))
                    if slot.run.exited() is None:
                        log.info(
                            "pod %s/%s: adopted running container %s",
                            self.namespace,
                            self.pod_name,
                            slot.name,
                        )
                        self._start_probes(slot)

    def _adopt_from_api(self, slot: Slot) -> None:
        """No local record: take the restart count from the API; a container it says runs is lost."""
        key = "initContainerStatuses" if slot.init else "containerStatuses"
        for status in (self.pod.get("status") or {}).get(key) or []:
            if status.get("name") != slot.name:
                continue
            slot.restart_count = int(status.get("restartCount") or 0)
            state = status.get("state") or {}
            if "terminated" in state:
                slot.last = _term_from_json(
                    {**state["terminated"], "reason": state["terminated"].get("reason", "Error")}
                )
            elif "running" in state:
                now = rfc3339()
                slot.last = Terminated(
                    137,
                    "ContainerStatusUnknown",
                    str(state["running"].get("startedAt") or now),
                    now,
                    str(status.get("containerID") or ""),
                    LOST_MESSAGE,
                )

    def _save(self) -> None:
        state = {
            "uid": self.uid,
            "startTime": self.start_time,
            # Stopped for the agent's own shutdown is not torn down: the next agent starts them again.
            "tornDown": self.torn_down and self.teardown_reason != "shutdown",
            "containers": {
                slot.name: {
                    "restartCount": slot.restart_count,
                    "backoffSteps": slot.backoff_steps,
                    "last": _term_to_json(slot.last),
                    "beforeLast": _term_to_json(slot.before_last),
                    "logOffset": slot.log_offset,
                    "previousOffset": slot.previous_offset,
                    "run": slot.run_name if slot.run is not None else "",
                }
                for slot in self.slots
            },
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self._state_path().with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self._state_path())

    # -- volumes ------------------------------------------------------------------------------------
    def _security(self, container: Mapping[str, Any]) -> JSON:
        pod_sc = self.spec.get("securityContext") or {}
        return {**pod_sc, **(container.get("securityContext") or {})}

    def _sync_volumes(self, now: float) -> None:
        fs_group = (self.spec.get("securityContext") or {}).get("fsGroup")
        base = self.directory / "volumes"
        try:
            for volume in self.spec.get("volumes") or []:
                name = str(volume.get("name", ""))
                content = self.volumes.get(name)
                if content is not None and content.kind in ("emptyDir", "hostPath"):
                    continue
                if content is not None and content.refresh_at is not None and now < content.refresh_at:
                    # A token is still fresh: only the other sources need a look, which a full plan would
                    # renew the token for. Re-plan with the cached token.
                    fresh = self._plan(volume, now, cached=content)
                else:
                    fresh = self._plan(volume, now)
                directory = base / name
                if fresh.kind == "emptyDir":
                    prepare_empty_dir(directory, fs_group)
                elif fresh.kind == "hostPath":
                    check_host_path(fresh.host_path, fresh.host_path_type)
                    directory = Path(fresh.host_path)
                else:
                    write_files(directory, fresh.files, fs_group=None if fs_group is None else int(fs_group))
                self.volumes[name] = fresh
                self.volume_dirs[name] = str(directory)
        except (VolumeError, OSError) as exc:
            message = f"MountVolume.SetUp failed: {exc}"
            if message != self.volume_error:
                self.agent.events.emit(self.pod, "FailedMount", message, "Warning")
            self.volume_error = message
            self.next_volume_sync = now + 2.0
            return
        self.volume_error = ""
        self.volumes_ready = True
        self.next_volume_sync = now + self.agent.config.volume_resync_seconds

    def _plan(
        self, volume: Mapping[str, Any], now: float, cached: VolumeContent | None = None
    ) -> VolumeContent:
        def tokens(audience: str | None, seconds: int) -> tuple[str, float]:
            if cached is not None:
                for entry in cached.files:
                    if entry.path == _token_path(volume, audience):
                        return entry.data.decode(), cached.refresh_at or now
            return self.agent.request_token(self.pod, audience, seconds)

        content = plan_volume(
            self.pod, volume, lookup=self.agent.lookup, tokens=tokens, context=self.agent.context, now=now
        )
        if cached is not None and cached.refresh_at is not None:
            content = VolumeContent(content.name, content.kind, content.files, refresh_at=cached.refresh_at)
        return content

    def _cleanup_volumes(self) -> None:
        """Once nothing runs any more, a finished pod's volumes go (its Secrets with them); logs stay."""
        if self.cleaned or any(slot.run is not None for slot in self.slots):
            return
        shutil.rmtree(self.directory / "volumes", ignore_errors=True)
        shutil.rmtree(self.directory / "runs", ignore_errors=True)
        self.cleaned = True

    # -- containers ---------------------------------------------------------------------------------
    def _sync_init_containers(self, now: float) -> bool:
        for slot in self.slots:
            if not slot.init:
                continue
            if slot.last is not None and slot.last.exit_code == 0 and slot.run is None:
                continue
            if slot.run is not None:
                return False
            if slot.last is not None and self.restart_policy == "Never":
                return False  # failed for good: the pod fails
            self._sync_container(slot, now, init=True)
            return False
        return True

    def _sync_container(self, slot: Slot, now: float, init: bool = False) -> None:
        if slot.run is not None:
            return
        if slot.last is not None:
            wanted = restart_wanted(
                "OnFailure" if init and self.restart_policy == "Always" else self.restart_policy,
                slot.last.exit_code,
            )
            if not wanted:
                slot.waiting = None
                return
            if now < slot.next_start:
                slot.waiting = (
                    "CrashLoopBackOff",
                    f"back-off {slot.backoff_delay:g}s restarting failed container="
                    f"{slot.name} pod={self.pod_name}_{self.namespace}({self.uid})",
                )
                return
        self._start(slot, now)

    def _pull(self, slot: Slot, now: float) -> LocalImage | None:
        image_name = str(slot.spec.get("image", ""))
        if now < slot.next_pull:
            slot.waiting = ("ImagePullBackOff", f'Back-off pulling image "{image_name}"')
            return None
        image = self.agent.images.current().lookup(image_name)
        if image is None:
            slot.image_failures += 1
            delay = min(self.agent.config.image_backoff_seconds * 2 ** (slot.image_failures - 1), 300.0)
            slot.next_pull = now + delay
            known = ", ".join(sorted(self.agent.images.current().images)) or "(none)"
            message = (
                f'failed to pull and unpack image "{image_name}": not found in the node agent\'s image '
                f"map {self.agent.config.image_map} (images: {known})"
            )
            slot.waiting = ("ErrImagePull", message)
            self.agent.events.emit(
                self.pod,
                "Failed",
                f'Failed to pull image "{image_name}": {message}',
                "Warning",
                field_path=self._field_path(slot),
            )
            return None
        if slot.image is None or slot.image.digest != image.digest:
            self.agent.events.emit(
                self.pod,
                "Pulled",
                f'Container image "{image_name}" already present on machine',
                field_path=self._field_path(slot),
            )
        slot.image = image
        slot.image_failures = 0
        return image

    def _field_path(self, slot: Slot) -> str:
        kind = "initContainers" if slot.init else "containers"
        return f"spec.{kind}{{{slot.name}}}"

    def _identity(self, container: Mapping[str, Any], image: LocalImage) -> tuple[int, int, list[int]]:
        security = self._security(container)
        pod_sc = self.spec.get("securityContext") or {}
        uid = security.get("runAsUser")
        uid = int(uid) if uid is not None else (image.user if image.user is not None else 0)
        if security.get("runAsNonRoot") and uid == 0:
            raise ContainerConfigError(
                "container has runAsNonRoot and image will run as root "
                f'(pod: "{self.pod_name}_{self.namespace}'
                f'({self.uid})", container: {container.get("name")})'
            )
        gid = security.get("runAsGroup")
        if gid is None:
            try:
                gid = pwd.getpwuid(uid).pw_gid
            except KeyError:
                gid = 0
        groups = [int(gid)]
        if pod_sc.get("fsGroup") is not None:
            groups.append(int(pod_sc["fsGroup"]))
        groups += [int(g) for g in pod_sc.get("supplementalGroups") or []]
        return uid, int(gid), sorted(set(groups))

    def _start(self, slot: Slot, now: float) -> None:
        if now < slot.config_retry_at:
            return  # CreateContainerConfigError: the kubelet retries at its own pace, not every sync
        image = self._pull(slot, now)
        if image is None:
            return
        container = slot.spec
        try:
            env, skipped = container_env(
                self.pod,
                container,
                lookup=self.agent.lookup,
                services=self.agent.services,
                context=self.agent.context,
            )
            uid, gid, groups = self._identity(container, image)
            run_name = f"{slot.name}-{slot.restart_count + (1 if slot.last is not None else 0)}"
            run_dir = self.directory / "runs" / run_name
            shutil.rmtree(run_dir, ignore_errors=True)
            run_dir.mkdir(parents=True)
            termination_log = run_dir / "termination-log"
            termination_log.touch()
            os.chmod(termination_log, 0o666)
            read_only = {n for n, c in self.volumes.items() if c.read_only}
            mounts = plan_mounts(container, self.volume_dirs, read_only, env, str(termination_log))
        except (ContainerConfigError, VolumeError) as exc:
            message = str(exc)
            if slot.waiting != ("CreateContainerConfigError", message):
                self.agent.events.emit(
                    self.pod, "Failed", f"Error: {message}", "Warning", field_path=self._field_path(slot)
                )
            slot.waiting = ("CreateContainerConfigError", message)
            slot.config_retry_at = now + 2.0
            return
        if skipped:
            self.agent.events.emit(
                self.pod,
                "InvalidEnvironmentVariableNames",
                f"Keys [{', '.join(skipped)}] from the EnvFrom were skipped since they are "
                "invalid environment variable names.",
                "Warning",
            )
        argv = [expand(a, env) for a in command_line(image, container.get("command"), container.get("args"))]
        home = "/"
        with contextlib.suppress(KeyError):
            home = pwd.getpwuid(uid).pw_dir
        security = self._security(container)
        plan = {
            "argv": argv,
            "env": process_env(image.env, env, hostname=self.pod_name[:63], home=home),
            "cwd": container.get("workingDir") or image.working_dir or "/",
            "uid": uid,
            "gid": gid,
            "groups": groups,
            "noNewPrivs": security.get("allowPrivilegeEscalation") is False,
            "hostname": self.pod_name[:63],
            "readOnlyRoot": bool(security.get("readOnlyRootFilesystem")),
            "podDir": str(self.directory),
            "imagePaths": list(image.paths),
            "heartbeatFile": str(self.agent.heartbeat_file),
            "orphanSeconds": self.agent.config.orphan_seconds,
            "mounts": [
                {
                    "source": m.source,
                    "target": m.target,
                    "readOnly": m.read_only,
                    "createSource": m.create_source,
                }
                for m in mounts
            ],
        }
        os.chown(run_dir / "termination-log", uid, gid)
        if slot.last is not None:
            slot.restart_count += 1
            slot.backoff_steps += 1
        log_path = self.log_path(slot)
        slot.previous_offset = slot.log_offset
        slot.log_offset = log_path.stat().st_size if log_path.exists() else 0
        slot.ready = False
        slot.started = False
        slot.stop_requested = None
        slot.kill_after = None
        slot.run = runtime.start(run_dir, plan, log_path)
        slot.run_name = run_name
        slot.waiting = None
        self._save()
        record = slot.run.exited()
        if record is not None and record.start_error:
            self.agent.events.emit(
                self.pod,
                "Failed",
                f"Error: {record.start_error}",
                "Warning",
                field_path=self._field_path(slot),
            )
            return
        self.agent.events.emit(
            self.pod, "Created", f"Created container: {slot.name}", field_path=self._field_path(slot)
        )
        self.agent.events.emit(
            self.pod, "Started", f"Started container {slot.name}", field_path=self._field_path(slot)
        )
        self._start_probes(slot)

    def _on_exit(self, slot: Slot, record: runtime.ExitRecord) -> None:
        assert slot.run is not None
        run = slot.run
        container_id = f"clm://{run.container_id}"
        if record.start_error:
            reason, message = "StartError", record.start_error
        elif record.lost:
            reason, message = "ContainerStatusUnknown", LOST_MESSAGE
        else:
            reason = exit_reason(record.exit_code)
            written = b""
            with contextlib.suppress(OSError):
                with open(run.termination_log, "rb") as handle:
                    written = handle.read(4096)
            tail = b""
            with contextlib.suppress(OSError):
                with open(self.log_path(slot), "rb") as handle:
                    handle.seek(slot.log_offset)
                    tail = handle.read()[-65536:]
            message = termination_message(
                written, str(slot.spec.get("terminationMessagePolicy") or "File"), record.exit_code, tail
            )
        slot.before_last = slot.last
        slot.last = Terminated(
            record.exit_code,
            reason,
            rfc3339(record.started_at),
            rfc3339(record.finished_at),
            container_id,
            message,
        )
        slot.probe_stop.set()
        slot.probe_stop = threading.Event()
        slot.run = None
        slot.ready = slot.started = False
        if record.finished_at - record.started_at >= 2 * self.agent.config.crash_backoff_max_seconds:
            slot.backoff_steps = 0  # ran long enough: the back-off starts over, as the kubelet's does
        slot.backoff_delay = crash_backoff(
            slot.backoff_steps,
            self.agent.config.crash_backoff_seconds,
            self.agent.config.crash_backoff_max_seconds,
        )
        slot.next_start = time.time() + slot.backoff_delay
        run.remove()
        self._save()
        if (
            slot.stop_requested is None
            and not self.teardown_reason
            and restart_wanted(self.restart_policy, record.exit_code)
            and slot.next_start > time.time()
        ):
            self.agent.events.emit(
                self.pod,
                "BackOff",
                "Back-off restarting failed container "
                f"{slot.name} in pod {self.pod_name}_{self.namespace}({self.uid})",
                "Warning",
                field_path=self._field_path(slot),
            )

    # -- probes -------------------------------------------------------------------------------------
    def _start_probes(self, slot: Slot) -> None:
        container = slot.spec
        startup, readiness, liveness = (
            container.get("startupProbe"),
            container.get("readinessProbe"),
            container.get("livenessProbe"),
        )
        slot.started = startup is None
        slot.ready = readiness is None and startup is None
        if startup is None and readiness is None and liveness is None:
            return
        stop = slot.probe_stop
        thread = threading.Thread(
            target=self._probe_loop,
            args=(slot, stop, startup, readiness, liveness),
            name=f"probes {self.pod_name}/{slot.name}",
            daemon=True,
        )
        thread.start()

    def _exec_probe(self, slot: Slot) -> Any:
        def run(command: list[str], timeout: float) -> tuple[int, bytes]:
            run_ = slot.run
            pid = run_.pid() if run_ is not None else None
            if pid is None or slot.image is None:
                return 1, b"container is not running"
            uid, gid, groups = self._identity(slot.spec, slot.image)
            env, _ = container_env(
                self.pod,
                slot.spec,
                lookup=self.agent.lookup,
                services=self.agent.services,
                context=self.agent.context,
            )
            plan = {
                "argv": command,
                "env": process_env(slot.image.env, env, hostname=self.pod_name[:63], home="/"),
                "cwd": slot.spec.get("workingDir") or slot.image.working_dir or "/",
                "uid": uid,
                "gid": gid,
                "groups": groups,
                "noNewPrivs": True,
            }
            return runtime.exec_in(pid, plan, timeout)

        return run

    def _probe_loop(
        self,
        slot: Slot,
        stop: threading.Event,
        startup: JSON | None,
        readiness: JSON | None,
        liveness: JSON | None,
    ) -> None:
        started_at = time.monotonic()
        state: dict[str, dict[str, Any]] = {}
        probes = [
            (kind, probe)
            for kind, probe in (("startup", startup), ("readiness", readiness), ("liveness", liveness))
            if probe
        ]
        for kind, probe in probes:
            state[kind] = {
                "next": started_at + float(probe.get("initialDelaySeconds") or 0),
                "ok": 0,
                "bad": 0,
            }
        exec_probe = self._exec_probe(slot)
        while not stop.is_set():
            now = time.monotonic()
            for kind, probe in probes:
                if stop.is_set():
                    return
                if kind != "startup" and not slot.started:
                    continue
                if kind == "startup" and slot.started:
                    continue
                entry = state[kind]
                if now < entry["next"]:
                    continue
                entry["next"] = now + float(probe.get("periodSeconds") or 10)
                ok, detail = run_probe(probe, slot.spec, exec_probe)
                if ok:
                    entry["ok"] += 1
                    entry["bad"] = 0
                else:
                    entry["bad"] += 1
                    entry["ok"] = 0
                    self.agent.events.emit(
                        self.pod,
                        "Unhealthy",
                        f"{kind.capitalize()} probe failed: {detail}",
                        "Warning",
                        field_path=self._field_path(slot),
                    )
                success_needed = int(probe.get("successThreshold") or 1)
                failures_allowed = int(probe.get("failureThreshold") or 3)
                if kind == "startup":
                    if entry["ok"] >= 1:
                        slot.started = True
                        slot.ready = readiness is None
                    elif entry["bad"] >= failures_allowed:
                        self._request_restart(slot, probe, "startup")
                        return
                elif kind == "readiness":
                    if entry["ok"] >= success_needed:
                        slot.ready = True
                    elif entry["bad"] >= failures_allowed:
                        slot.ready = False
                elif entry["bad"] >= failures_allowed:
                    self._request_restart(slot, probe, "liveness")
                    return
                self.wake.set()
            stop.wait(0.2)

    def _request_restart(self, slot: Slot, probe: Mapping[str, Any], kind: str) -> None:
        grace = probe.get("terminationGracePeriodSeconds")
        if grace is None:
            grace = self.spec.get("terminationGracePeriodSeconds", 30)
        self.agent.events.emit(
            self.pod,
            "Killing",
            f"Container {slot.name} failed {kind} probe, will be restarted",
            field_path=self._field_path(slot),
        )
        self._stop_container(slot, float(grace))
        self.wake.set()

    def _stop_container(self, slot: Slot, grace: float) -> None:
        if slot.run is None or slot.stop_requested is not None:
            return
        slot.stop_requested = time.time()
        slot.kill_after = slot.stop_requested + max(grace, MIN_GRACE_SECONDS)
        if grace <= 0:
            slot.run.signal(signal.SIGKILL)
        else:
            slot.run.signal(signal.SIGTERM)

    def _enforce_stop(self, slot: Slot, now: float) -> None:
        if slot.run is not None and slot.kill_after is not None and now >= slot.kill_after:
            slot.run.signal(signal.SIGKILL)

    # -- teardown -----------------------------------------------------------------------------------
    def _teardown_wanted(self, now: float) -> str:
        if self.shutting_down:
            return "shutdown"
        if self.gone:
            return "gone"
        if (self.pod.get("metadata") or {}).get("deletionTimestamp"):
            return "deleted"
        deadline = self.spec.get("activeDeadlineSeconds")
        if deadline is not None and not self._phase_is_terminal():
            started = _parse_time(self.start_time)
            if started is not None and now - started >= float(deadline):
                return "deadline"
        return ""

    def _phase_is_terminal(self) -> bool:
        if (self.pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return True
        return bool(self.last_status and self.last_status.get("phase") in ("Succeeded", "Failed"))

    def _teardown(self, reason: str, now: float) -> None:
        if not self.teardown_reason:
            self.teardown_reason = reason
            meta = self.pod.get("metadata") or {}
            if reason == "deleted":
                requested = meta.get("deletionGracePeriodSeconds")
                if requested is None:
                    requested = self.spec.get("terminationGracePeriodSeconds", 30)
                grace = float(requested)
            elif reason == "gone":
                grace = 0.0  # force-deleted: nothing waits for a graceful stop any more
            elif reason == "shutdown":
                grace = min(
                    float(self.spec.get("terminationGracePeriodSeconds", 30)),
                    self.agent.config.shutdown_grace_seconds,
                )
            else:
                grace = float(self.spec.get("terminationGracePeriodSeconds", 30))
            for slot in self.slots:
                if slot.run is not None:
                    if reason in ("deleted", "deadline"):
                        self.agent.events.emit(
                            self.pod,
                            "Killing",
                            f"Stopping container {slot.name}",
                            field_path=self._field_path(slot),
                        )
                    slot.stop_requested = None
                    self._stop_container(slot, grace)
        for slot in self.slots:
            self._enforce_stop(slot, now)
        if any(slot.run is not None for slot in self.slots):
            self._report()
            return
        self.torn_down = True
        self._save()
        self._after_teardown()

    def _after_teardown(self) -> None:
        reason = self.teardown_reason
        if reason == "shutdown":
            self._report()  # the truth (the containers ended); volumes stay for the next agent (emptyDirs)
            return
        if reason == "gone" or self.gone:
            self._cleanup_volumes()
            return
        self._report(terminal=reason in ("deleted", "deadline"))
        self._cleanup_volumes()
        if reason == "deleted" and not self.deleted_from_api:
            meta = self.pod.get("metadata") or {}
            try:
                self.agent.kube.delete(
                    f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}",
                    {
                        "apiVersion": "v1",
                        "kind": "DeleteOptions",
                        "gracePeriodSeconds": 0,
                        "preconditions": {"uid": meta.get("uid")},
                    },
                )
            except Exception as exc:  # noqa: BLE001
                if status_code(exc) not in (404, 409):
                    raise
            self.deleted_from_api = True

    # -- status -------------------------------------------------------------------------------------
    def _view(self, slot: Slot) -> ContainerView:
        view = ContainerView(
            name=slot.name, image=str(slot.spec.get("image", "")), restart_count=slot.restart_count
        )
        if slot.image is not None:
            view.image_id = f"{slot.image.key}@{slot.image.digest}"
        if slot.run is not None:
            started = slot.run.started_at
            if started is None:  # the shim is still setting up
                view.waiting = ("ContainerCreating", "")
            else:
                view.running_since = rfc3339(started)
                view.container_id = f"clm://{slot.run.container_id}"
                view.ready = slot.ready
                view.started = slot.started
            view.last_terminated = slot.last
            return view
        restarting = (
            slot.last is not None
            and not self.teardown_reason
            and restart_wanted(
                "OnFailure" if slot.init and self.restart_policy == "Always" else self.restart_policy,
                slot.last.exit_code,
            )
        )
        if slot.last is not None and not restarting:
            view.terminated = slot.last
            view.last_terminated = slot.before_last
            view.container_id = slot.last.container_id
            return view
        if slot.last is not None:
            view.last_terminated = slot.last
        if slot.waiting is not None:
            view.waiting = slot.waiting
        elif slot.init or all(s.init is False for s in self.slots) or self._init_done():
            view.waiting = ("ContainerCreating", "")
        else:
            view.waiting = ("PodInitializing", "")
        if view.image_id and slot.waiting and slot.waiting[0] in ("ErrImagePull", "ImagePullBackOff"):
            view.image_id = ""
        return view

    def _init_done(self) -> bool:
        return all(s.last is not None and s.last.exit_code == 0 for s in self.slots if s.init)

    def _report(self, terminal: bool = False) -> None:
        if self.gone:
            return
        meta = self.pod.get("metadata") or {}
        reason = message = ""
        if self.teardown_reason == "deadline":
            reason, message = (
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline",
            )
        view = PodView(
            restart_policy=self.restart_policy,
            init=[self._view(s) for s in self.slots if s.init],
            regular=[self._view(s) for s in self.slots if not s.init],
            start_time=self.start_time,
            sandbox_ready=self.volumes_ready and not self.teardown_reason,
            terminal=terminal,
            reason=reason,
            message=message,
            readiness_gates=[str(g.get("conditionType")) for g in self.spec.get("readinessGates") or []],
            observed_generation=meta.get("generation"),
        )
        with self.lock:
            existing = dict(self.pod.get("status") or {})
        status = pod_status(view, existing, now=rfc3339())
        if self.volume_error and not self.volumes_ready:
            for entry in status["containerStatuses"]:
                entry["state"] = {"waiting": {"reason": "ContainerCreating"}}
        if status == self.last_status:
            return
        try:
            answer = self.agent.kube.patch(
                f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}/status", {"status": status}
            )
        except Exception as exc:  # noqa: BLE001
            if status_code(exc) == 404:
                self.gone = True
                return
            raise
        self.last_status = status
        with self.lock:
            if int((answer.get("metadata") or {}).get("resourceVersion") or 0) >= int(
                (self.pod.get("metadata") or {}).get("resourceVersion") or 0
            ):
                self.pod = answer


def _token_path(volume: Mapping[str, Any], audience: str | None) -> str:
    for projection in (volume.get("projected") or {}).get("sources") or []:
        ref = projection.get("serviceAccountToken")
        if ref is not None and (ref.get("audience") or None) == audience:
            return str(ref.get("path", ""))
    return ""


def _parse_time(text: str) -> float | None:
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class NodeAgent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.kube = Kube(config.kubeconfig, config.api_server)
        config.workdir.mkdir(parents=True, exist_ok=True)
        self.images = ImageMapFile(config.image_map)
        self.events = EventRecorder(self.kube, config.node_name)
        self.services = service_env(config.service_host, config.service_port)
        self.capacity = {
            "cpu": config.cpu,
            "memory": config.memory or _memory_capacity(),
            "pods": str(config.max_pods),
            "ephemeral-storage": f"{shutil.disk_usage(config.workdir).total // 1024}Ki",
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
            "nvidia.com/gpu": str(config.gpus),
        }
        self.context = NodeContext(config.node_name, allocatable=dict(self.capacity))
        self.stop = threading.Event()
        self.pods: dict[str, JSON] = {}  # uid -> pod, every pod of the cluster
        self.pods_lock = threading.Lock()
        self.workers: dict[str, PodWorker] = {}
        self.binder_wake = threading.Event()
        self.synced = threading.Event()
        self.node: JSON = {}
        self.unschedulable_reported: dict[str, str] = {}
        self.assumed: dict[str, float] = {}
        self.server_version = "v0.0.0"
        self.heartbeat_file = config.workdir / "agent.heartbeat"
        self.logs: LogServer | None = None

    @staticmethod
    def services_for(host: str, port: int) -> dict[str, str]:
        return service_env(host, port)

    # -- API helpers for the workers ----------------------------------------------------------------
    def lookup(self, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
        plural = "secrets" if kind == "Secret" else "configmaps"
        try:
            obj = self.kube.get(f"/api/v1/namespaces/{namespace}/{plural}/{name}")
        except Exception as exc:  # noqa: BLE001
            if status_code(exc) == 404:
                return None
            raise
        if kind == "Secret":
            return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
        data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def request_token(self, pod: Mapping[str, Any], audience: str | None, seconds: int) -> tuple[str, float]:
        meta = pod.get("metadata") or {}
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else None,
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta.get("name"),
                    "uid": meta.get("uid"),
                },
            },
        }
        try:
            answer = self.kube.create(
                f"/api/v1/namespaces/{meta.get('namespace')}/serviceaccounts/{account}/token", body
            )
        except Exception as exc:  # noqa: BLE001
            raise VolumeError(f'failed to fetch token for service account "{account}": {exc}') from None
        expires = _parse_time(str((answer.get("status") or {}).get("expirationTimestamp") or ""))
        return str(answer["status"]["token"]), expires or time.time() + seconds

    def clean_pod_dir(self, directory: Path, keep_logs: bool) -> None:
        """Kill what still runs from an old pod directory and remove it (logs kept on request)."""
        for run_dir in sorted((directory / "runs").glob("*")) if (directory / "runs").exists() else []:
            run = runtime.adopt(run_dir)
            if run is not None:
                run.signal(signal.SIGKILL)
                run.wait(5.0)
        for entry in directory.iterdir() if directory.exists() else []:
            if keep_logs and entry.suffix == ".log":
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)

    # -- the Node and its Lease ---------------------------------------------------------------------
    def _node_conditions(self, ready: bool, now: str) -> list[JSON]:
        def condition(ctype: str, status: str, reason: str, message: str) -> JSON:
            return {
                "type": ctype,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": self._transition(ctype, status, now),
            }

        return [
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition(
                "PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"
            ),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status")
            if ready
            else condition("Ready", "False", "KubeletNotReady", "the node agent stopped"),
        ]

    def _transition(self, ctype: str, status: str, now: str) -> str:
        for existing in (self.node.get("status") or {}).get("conditions") or []:
            if existing.get("type") == ctype and existing.get("status") == status:
                return str(existing.get("lastTransitionTime") or now)
        return now

    def _node_status(self, ready: bool) -> JSON:
        now = rfc3339()
        uname = platform.uname()
        return {
            "capacity": dict(self.capacity),
            "allocatable": dict(self.capacity),
            "conditions": self._node_conditions(ready, now),
            # No Hostname address: the API server dials the first of Hostname, InternalDNS, InternalIP, ...
            # for `kubectl logs`, and the node's name resolves nowhere.
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.logs.port if self.logs else 0}},
            "nodeInfo": {
                "machineID": _read_first("/etc/machine-id"),
                "systemUUID": _read_first("/etc/machine-id"),
                "bootID": _read_first("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": uname.release,
                "osImage": _os_image(),
                "containerRuntimeVersion": "clm-node://0.1.0",
                "kubeletVersion": self.server_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": _arch(),
            },
            "images": [{"names": [key], "sizeBytes": 0} for key in sorted(self.images.current().images)],
        }

    def register(self) -> None:
        with contextlib.suppress(Exception):
            self.server_version = str(self.kube.get("/version").get("gitVersion") or self.server_version)
        name = self.config.node_name
        labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _arch(),
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": _arch(),
        }
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            },
        }
        try:
            self.node = self.kube.create("/api/v1/nodes", body)
            log.info("registered node %s", name)
        except Exception as exc:  # noqa: BLE001
            if status_code(exc) != 409:
                raise
            self.node = self.kube.patch(f"/api/v1/nodes/{name}", {"metadata": {"labels": labels}})
            log.info("node %s already registered: updated", name)
        self.update_node_status(ready=True)
        self._lift_not_ready_taints()
        self.renew_lease()

    def _lift_not_ready_taints(self) -> None:
        """The API server's TaintNodesByCondition admission taints a new Node not-ready; the node
        lifecycle controller lifts that once the Node is Ready. The sandbox runs no such controller, so the
        agent does it for its own Node (and only for these two taints)."""
        taints = (self.node.get("spec") or {}).get("taints") or []
        keep = [
            t
            for t in taints
            if t.get("key") not in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
        ]
        if len(keep) != len(taints):
            self.node = self.kube.patch(
                f"/api/v1/nodes/{self.config.node_name}", {"spec": {"taints": keep}}, content_type=MERGE
            )

    def update_node_status(self, ready: bool) -> None:
        self.node = self.kube.patch(
            f"/api/v1/nodes/{self.config.node_name}/status", {"status": self._node_status(ready)}
        )

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.config.node_name}"
        spec = {
            "holderIdentity": self.config.node_name,
            "leaseDurationSeconds": self.config.lease_seconds,
            "renewTime": micro_time(),
        }
        try:
            lease = self.kube.get(path)
        except Exception as exc:  # noqa: BLE001
            if status_code(exc) != 404:
                raise
            meta = self.node.get("metadata") or {}
            self.kube.create(
                f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {
                        "name": self.config.node_name,
                        "namespace": LEASE_NAMESPACE,
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Node",
                                "name": meta.get("name"),
                                "uid": meta.get("uid"),
                            }
                        ],
                    },
                    "spec": spec,
                },
            )
            return
        lease["spec"] = {**(lease.get("spec") or {}), **spec}
        self.kube.replace(path, lease)

    def touch_heartbeat(self) -> None:
        """The file every container shim watches: stale for orphan_seconds, they kill their container."""
        self.heartbeat_file.touch()

    def _heartbeat_loop(self) -> None:
        next_status = time.monotonic() + self.config.node_status_seconds
        next_lease = time.monotonic() + self.config.renew_seconds
        while not self.stop.wait(min(self.config.renew_seconds, 5.0)):
            self.touch_heartbeat()
            try:
                if time.monotonic() >= next_lease:
                    self.renew_lease()
                    next_lease = time.monotonic() + self.config.renew_seconds
                if time.monotonic() >= next_status:
                    self.update_node_status(ready=True)
                    next_status = time.monotonic() + self.config.node_status_seconds
            except Exception as exc:  # noqa: BLE001
                log.warning("lease/node status renewal failed: %s", exc)

    # -- the pod informer ---------------------------------------------------------------------------
    def _informer_loop(self) -> None:
        while not self.stop.is_set():
            try:
                listing = self.kube.get("/api/v1/pods")
                version = str(listing["metadata"]["resourceVersion"])
                fresh = {str(p["metadata"]["uid"]): p for p in listing.get("items") or []}
                with self.pods_lock:
                    removed = [p for uid, p in self.pods.items() if uid not in fresh]
                    self.pods = fresh
                for pod in removed:
                    self._observe(pod, deleted=True)
                for pod in fresh.values():
                    self._observe(pod, deleted=False)
                if not self.synced.is_set():
                    self._clean_orphan_dirs()
                    self.synced.set()
                while not self.stop.is_set():
                    relist = False
                    for event in self.kube.watch("/api/v1/pods", version, timeout_seconds=30):
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            log.info("pod watch: %s; relisting", obj.get("message"))
                            relist = True
                            break
                        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                        if kind == "BOOKMARK":
                            continue
                        uid = str(obj["metadata"]["uid"])
                        with self.pods_lock:
                            if kind == "DELETED":
                                self.pods.pop(uid, None)
                            else:
                                self.pods[uid] = obj
                        self._observe(obj, deleted=kind == "DELETED")
                        if self.stop.is_set():
                            break
                    if relist:
                        break
            except Exception as exc:  # noqa: BLE001
                if self.stop.is_set():
                    return
                log.warning("pod informer: %s; relisting in 1 s", exc)
                self.stop.wait(1.0)

    def _observe(self, pod: JSON, deleted: bool) -> None:
        uid = str(pod["metadata"]["uid"])
        node = (pod.get("spec") or {}).get("nodeName")
        if node != self.config.node_name:
            if not node and not deleted:
                self.binder_wake.set()
            return
        self.assumed.pop(uid, None)
        worker = self.workers.get(uid)
        if deleted:
            if worker is not None:
                worker.vanish()
            self.binder_wake.set()
            return
        if worker is None:
            if self.stop.is_set():
                return
            for old_uid, old in list(self.workers.items()):
                if old.finished.is_set():
                    del self.workers[old_uid]
            predecessor = next(
                (
                    w
                    for w in self.workers.values()
                    if w.namespace == pod["metadata"]["namespace"] and w.pod_name == pod["metadata"]["name"]
                ),
                None,
            )
            worker = PodWorker(self, pod, predecessor)
            self.workers[uid] = worker
            worker.start()
        else:
            worker.update(pod)
        if is_terminal(pod) or (pod.get("metadata") or {}).get("deletionTimestamp"):
            self.binder_wake.set()

    def _clean_orphan_dirs(self) -> None:
        """Pod directories of pods that no longer exist (deleted while the agent was down): kill, remove."""
        base = self.config.workdir / "pods"
        if not base.exists():
            return
        with self.pods_lock:
            known = {
                f"{p['metadata']['namespace']}_{p['metadata']['name']}": str(p["metadata"]["uid"])
                for p in self.pods.values()
                if (p.get("spec") or {}).get("nodeName") == self.config.node_name
            }
        for directory in base.iterdir():
            if not directory.is_dir():
                continue
            if directory.name in known:
                continue  # its pod's worker adopts the directory, or cleans it if it was an older pod's
            if (directory / "runs").exists() or (directory / "volumes").exists():
                log.info("cleaning up %s (its pod is gone)", directory.name)
                self.clean_pod_dir(directory, keep_logs=True)

    # -- the binder ---------------------------------------------------------------------------------
    def _binder_loop(self) -> None:
        while not self.stop.is_set():
            self.binder_wake.wait(2.0)
            self.binder_wake.clear()
            if self.stop.is_set():
                return
            try:
                self._bind_pending()
            except Exception as exc:  # noqa: BLE001
                log.warning("binder: %s", exc)

    def _bind_pending(self) -> None:
        with self.pods_lock:
            pods = list(self.pods.values())
        now = time.time()
        bound = [
            p
            for p in pods
            if (p.get("spec") or {}).get("nodeName") == self.config.node_name and not is_terminal(p)
        ]
        bound += [
            p
            for p in pods
            if str(p["metadata"]["uid"]) in self.assumed
            and now - self.assumed[str(p["metadata"]["uid"])] < 30
        ]
        pending = sorted(
            (
                p
                for p in pods
                if not (p.get("spec") or {}).get("nodeName")
                and not (p.get("metadata") or {}).get("deletionTimestamp")
                and not is_terminal(p)
                and ((p.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER) == DEFAULT_SCHEDULER
                and str(p["metadata"]["uid"]) not in self.assumed
            ),
            key=lambda p: (
                -int((p.get("spec") or {}).get("priority") or 0),
                str(p["metadata"].get("creationTimestamp")),
            ),
        )
        for pod in pending:
            meta = pod["metadata"]
            reasons = unschedulable_reasons(pod, self.node, bound)
            if reasons:
                message = unschedulable_message(reasons)
                if self.unschedulable_reported.get(str(meta["uid"])) != message:
                    self.kube.patch(
                        f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
                        {
                            "status": {
                                "conditions": [
                                    {
                                        "type": "PodScheduled",
                                        "status": "False",
                                        "reason": "Unschedulable",
                                        "message": message,
                                        "lastProbeTime": None,
                                        "lastTransitionTime": rfc3339(),
                                    }
                                ]
                            }
                        },
                    )
                    self.events.emit(
                        pod, "FailedScheduling", message, "Warning", component="default-scheduler"
                    )
                    self.unschedulable_reported[str(meta["uid"])] = message
                continue
            try:
                self.kube.create(
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding",
                    {
                        "apiVersion": "v1",
                        "kind": "Binding",
                        "metadata": {
                            "name": meta["name"],
                            "namespace": meta["namespace"],
                            "uid": meta["uid"],
                        },
                        "target": {"apiVersion": "v1", "kind": "Node", "name": self.config.node_name},
                    },
                )
            except Exception as exc:  # noqa: BLE001
                if status_code(exc) in (404, 409):
                    continue  # deleted or bound meanwhile
                raise
            self.assumed[str(meta["uid"])] = now
            bound.append(pod)
            self.unschedulable_reported.pop(str(meta["uid"]), None)
            self.events.emit(
                pod,
                "Scheduled",
                f"Successfully assigned {meta['namespace']}/{meta['name']} to {self.config.node_name}",
                component="default-scheduler",
            )

    # -- lifecycle ----------------------------------------------------------------------------------
    def run(self) -> None:
        self.config.workdir.mkdir(parents=True, exist_ok=True)
        self.touch_heartbeat()
        client_ca = Path(self.kube.ca_file).read_bytes() if self.kube.ca_file else None
        self.logs = LogServer(self.locate_log, client_ca)
        self.logs.start()
        self.register()
        threads = [
            threading.Thread(target=self._informer_loop, name="informer", daemon=True),
            threading.Thread(target=self._binder_loop, name="binder", daemon=True),
            threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True),
        ]
        for thread in threads:
            thread.start()
        self.synced.wait(60.0)
        if self.config.ready_file is not None:
            temporary = self.config.ready_file.with_suffix(".tmp")
            temporary.write_text(json.dumps({"node": self.config.node_name, "pid": os.getpid()}))
            os.replace(temporary, self.config.ready_file)
        log.info(
            "node agent ready: node %s, %d pod(s) of this node", self.config.node_name, len(self.workers)
        )
        self.stop.wait()
        self.shutdown()

    def locate_log(
        self, namespace: str, pod: str, container: str, previous: bool
    ) -> tuple[Path, int, int | None, Callable[[], bool]] | None:
        """Where ``kubectl logs`` finds a container's current (or previous) run in its log file."""
        workers = [w for w in list(self.workers.values()) if w.namespace == namespace and w.pod_name == pod]
        if not workers:
            return None
        worker = workers[-1]
        slot = next((s for s in worker.slots if s.name == container), None)
        if slot is None:
            return None
        if previous:
            if slot.restart_count == 0:
                return None
            return worker.log_path(slot), slot.previous_offset, slot.log_offset, lambda: False
        return worker.log_path(slot), slot.log_offset, None, lambda: slot.run is not None

    def request_stop(self) -> None:
        self.stop.set()
        self.binder_wake.set()

    def shutdown(self) -> None:
        log.info("node agent stopping: %d pod worker(s)", len(self.workers))
        workers = list(self.workers.values())
        for worker in workers:
            worker.stop_for_shutdown()
        deadline = time.monotonic() + self.config.shutdown_grace_seconds + 15
        for worker in workers:
            worker.finished.wait(max(0.0, deadline - time.monotonic()))
        try:
            self.update_node_status(ready=False)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not mark the node NotReady: %s", exc)
        if self.logs is not None:
            self.logs.stop()
        log.info("node agent stopped")


def _read_first(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _os_image() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return "Linux"
