"""The sandbox's kubelet and Job controller: runs each batch/v1 Job's container as a local process.

It reports back exactly where a real cluster would (Pod and Job status, Events), so the operator cannot
tell the difference: pods ``<job>-<5 chars>`` with the Job's labels and an ownerReference; Pending ->
Running -> Succeeded/Failed with ``state.terminated`` (exit code, reason, the termination message);
Job conditions Complete/SuccessCriteriaMet or Failed/FailureTarget with reasons BackoffLimitExceeded,
DeadlineExceeded or PodFailurePolicy; retries with a new pod per attempt; ``suspend``;
``ttlSecondsAfterFinished``. What a local process cannot do is stated where it matters: the image is only
checked against the sandbox's "local registry" (the command runs from this machine's PATH), only
``completions: 1`` Jobs are supported, and ``restartPolicy: OnFailure`` is run as ``Never``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clm_operator.api.trainer_contract import ENV_TERMINATION_LOG, TERMINATION_MESSAGE_LIMIT
from clm_operator.domain.config import DEFAULT_TRAINER_IMAGE
from clm_operator.sandbox.apimachinery import JSON, ApiError, parse_rfc3339, rfc3339
from clm_operator.sandbox.store import ResourceDef, Store, WatchEvent

log = logging.getLogger(__name__)

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of Kubernetes' generated name suffixes
_LOG_LIMIT = 1_000_000  # bytes of a pod's log kept in memory


@dataclass
class LocalRegistry:
    """The images that "exist" for the sandbox: any other image cannot be pulled (ImagePullBackOff)."""

    images: set[str] = field(default_factory=lambda: {DEFAULT_TRAINER_IMAGE})

    def has(self, image: str) -> bool:
        return image in self.images or image.endswith(":local")


class ContainerConfigError(Exception):
    """The container cannot be configured yet (missing Secret/ConfigMap or key): kubelet keeps retrying."""


class JobExecutor:
    def __init__(
        self,
        store: Store,
        *,
        registry: LocalRegistry | None = None,
        max_parallel: int = 2,
        backoff_seconds: float = 0.3,
        workdir: Path | None = None,
        extra_path: list[str] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry or LocalRegistry()
        self.slots = asyncio.Semaphore(max_parallel)
        self.backoff_seconds = backoff_seconds
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="clm-sandbox-pods-"))
        # The venv's bin first: that is where clm-trainer and python live when the sandbox runs from it.
        self.path = os.pathsep.join(
            [*(extra_path or []), str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")]
        )
        self.jobs = store.resource("batch", "v1", "jobs")
        self.pods = store.resource("", "v1", "pods")
        self.events = store.resource("", "v1", "events")
        self.runners: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.processes: set[asyncio.subprocess.Process] = set()
        self.readers: set[asyncio.Task[None]] = set()
        self.timers: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[WatchEvent] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._queue = self.store.subscribe()
        for job in self.store.objects_of("batch", "jobs"):
            self._consider(job)
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._queue is not None:
            self.store.unsubscribe(self._queue)
        tasks = [t for t in [self._task, *self.runners.values(), *self.timers] if t is not None]
        for task in tasks:
            task.cancel()
        for process in list(self.processes):  # no container outlives its kubelet
            _kill(process)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # Reap the killed processes and drain their pipes while the loop still runs, so that asyncio closes
        # their transports here rather than in a garbage collector running after the loop is gone.
        for process in list(self.processes):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), timeout=10)
        for reader in list(self.readers):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader, timeout=10)
        self.processes.clear()

    async def _loop(self) -> None:
        assert self._queue is not None
        while True:
            event = await self._queue.get()
            if event.group == "batch" and event.plural == "jobs" and event.type != "DELETED":
                self._consider(event.object)

    def _consider(self, job: JSON) -> None:
        key = (job["metadata"].get("namespace", ""), job["metadata"]["name"])
        runner = self.runners.get(key)
        if runner is not None and not runner.done():
            return
        if _finished(job):
            return
        if job.get("spec", {}).get("suspend"):
            if not any(
                c.get("type") == "Suspended" and c.get("status") == "True"
                for c in (job.get("status") or {}).get("conditions") or []
            ):
                self._status(
                    self.jobs,
                    key[0],
                    key[1],
                    {
                        "active": 0,
                        "ready": 0,
                        "conditions": _merge_condition(
                            job, "Suspended", "True", "JobSuspended", "Job suspended"
                        ),
                    },
                )
            return
        uid = job["metadata"]["uid"]
        self.runners[key] = asyncio.create_task(self._run_job(key[0], key[1], uid), name=f"job {key}")

    # -- store helpers -------------------------------------------------------------------------------------
    def _job(self, namespace: str, name: str, uid: str) -> JSON | None:
        try:
            job = self.store.get(self.jobs, namespace, name)
        except ApiError:
            return None
        return job if job["metadata"]["uid"] == uid else None

    def _status(self, rdef: ResourceDef, namespace: str, name: str, status: JSON) -> None:
        with contextlib.suppress(ApiError):  # the object may be gone (deleted meanwhile): nothing to report
            self.store.patch(
                rdef,
                namespace,
                name,
                "application/merge-patch+json",
                {"status": status},
                subresource="status",
            )

    def _event(self, obj: JSON, reason: str, message: str, kind: str = "Normal") -> None:
        meta = obj["metadata"]
        now = rfc3339()
        with contextlib.suppress(ApiError):
            self.store.create(
                self.events,
                meta["namespace"],
                {
                    "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                    "involvedObject": {
                        "apiVersion": obj["apiVersion"],
                        "kind": obj["kind"],
                        "name": meta["name"],
                        "namespace": meta["namespace"],
                        "uid": meta["uid"],
                        "resourceVersion": meta.get("resourceVersion"),
                    },
                    "reason": reason,
                    "message": message,
                    "type": kind,
                    "count": 1,
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "source": {"component": "job-controller" if obj["kind"] == "Job" else "kubelet"},
                    "reportingComponent": "clm-sandbox",
                    "reportingInstance": "sandbox",
                },
            )

    # -- the Job controller --------------------------------------------------------------------------------
    async def _run_job(self, namespace: str, name: str, uid: str) -> None:
        try:
            await self._job_loop(namespace, name, uid)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("sandbox executor: job %s/%s crashed", namespace, name)

    async def _job_loop(self, namespace: str, name: str, uid: str) -> None:
        job = self._job(namespace, name, uid)
        if job is None:
            return
        status = dict(job.get("status") or {})
        start = status.get("startTime") or rfc3339()
        if any(c.get("type") == "Suspended" for c in status.get("conditions") or []):
            self._status(
                self.jobs,
                namespace,
                name,
                {"conditions": _merge_condition(job, "Suspended", "False", "JobResumed", "Job resumed")},
            )
        self._status(
            self.jobs,
            namespace,
            name,
            {
                "startTime": start,
                "active": 0,
                "ready": 0,
                "succeeded": int(status.get("succeeded", 0)),
                "failed": int(status.get("failed", 0)),
                "terminating": 0,
                "uncountedTerminatedPods": {},
            },
        )
        failed = int(status.get("failed", 0))
        while True:
            job = self._job(namespace, name, uid)
            if job is None or _finished(job):
                return
            if job.get("spec", {}).get("suspend"):
                self._status(
                    self.jobs,
                    namespace,
                    name,
                    {
                        "active": 0,
                        "ready": 0,
                        "conditions": _merge_condition(
                            job, "Suspended", "True", "JobSuspended", "Job suspended"
                        ),
                    },
                )
                return  # resumed by a later MODIFIED event (_consider starts a fresh runner)
            spec = job.get("spec", {})
            backoff_limit = int(spec.get("backoffLimit", 6))
            outcome = await self._attempt(job, start)
            job = self._job(namespace, name, uid)
            if job is None:
                return
            if outcome.kind == "suspended":
                continue
            if outcome.kind == "deadline":
                self._fail(
                    job, "DeadlineExceeded", "Job was active longer than specified deadline", failed + 1
                )
                return
            if outcome.exit_code == 0:
                self._succeed(job)
                return
            rule = _matching_rule(spec.get("podFailurePolicy"), outcome)
            action = (rule or {}).get("action", "Count")
            if action == "FailJob":
                index = (spec.get("podFailurePolicy") or {}).get("rules", []).index(rule)
                self._fail(
                    job,
                    "PodFailurePolicy",
                    f"Container {outcome.container} for pod {namespace}/{outcome.pod} failed with exit code "
                    f"{outcome.exit_code} matching FailJob rule at index {index}",
                    failed + 1,
                )
                return
            if action != "Ignore":
                failed += 1
            self._status(self.jobs, namespace, name, {"active": 0, "ready": 0, "failed": failed})
            if failed > backoff_limit:
                self._fail(job, "BackoffLimitExceeded", "Job has reached the specified backoff limit", failed)
                return
            # The real controller backs off 10s, 20s, 40s...; the sandbox keeps the shape, not the minutes.
            await asyncio.sleep(self.backoff_seconds * (2 ** min(failed - 1, 4)))

    def _succeed(self, job: JSON) -> None:
        now = rfc3339()
        meta = job["metadata"]
        conditions = [
            {
                "type": "SuccessCriteriaMet",
                "status": "True",
                "reason": "CompletionsReached",
                "message": "Reached expected number of succeeded pods",
                "lastProbeTime": now,
                "lastTransitionTime": now,
            },
            {
                "type": "Complete",
                "status": "True",
                "reason": "CompletionsReached",
                "message": "Reached expected number of succeeded pods",
                "lastProbeTime": now,
                "lastTransitionTime": now,
            },
        ]
        self._status(
            self.jobs,
            meta["namespace"],
            meta["name"],
            {"active": 0, "ready": 0, "succeeded": 1, "completionTime": now, "conditions": conditions},
        )
        self._event(job, "Completed", "Job completed")
        self._schedule_ttl(job)

    def _fail(self, job: JSON, reason: str, message: str, failed: int) -> None:
        now = rfc3339()
        meta = job["metadata"]
        conditions = [
            {
                "type": "FailureTarget",
                "status": "True",
                "reason": reason,
                "message": message,
                "lastProbeTime": now,
                "lastTransitionTime": now,
            },
            {
                "type": "Failed",
                "status": "True",
                "reason": reason,
                "message": message,
                "lastProbeTime": now,
                "lastTransitionTime": now,
            },
        ]
        self._status(
            self.jobs,
            meta["namespace"],
            meta["name"],
            {"active": 0, "ready": 0, "failed": failed, "conditions": conditions},
        )
        self._event(job, reason, message, "Warning")
        self._schedule_ttl(job)

    def _schedule_ttl(self, job: JSON) -> None:
        ttl = job.get("spec", {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        meta = job["metadata"]

        async def expire() -> None:
            await asyncio.sleep(float(ttl))
            if self._job(meta["namespace"], meta["name"], meta["uid"]) is not None:
                with contextlib.suppress(ApiError):
                    self.store.delete(
                        self.jobs,
                        meta["namespace"],
                        meta["name"],
                        {"preconditions": {"uid": meta["uid"]}},
                        propagation="Background",
                    )

        timer = asyncio.get_running_loop().create_task(expire())
        self.timers.add(timer)
        timer.add_done_callback(self.timers.discard)

    # -- the kubelet -----------------------------------------------------------------------------------------
    async def _attempt(self, job: JSON, job_start: str) -> Outcome:
        meta = job["metadata"]
        namespace, job_name, uid = meta["namespace"], meta["name"], meta["uid"]
        template = job.get("spec", {}).get("template", {})
        pod_name = f"{job_name}-" + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        labels.update(
            {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": job_name,
                "controller-uid": uid,
                "job-name": job_name,
            }
        )
        pod_spec = dict(template.get("spec") or {})
        pod_spec["nodeName"] = "sandbox"
        pod = self.store.create(
            self.pods,
            namespace,
            {
                "metadata": {
                    "name": pod_name,
                    "namespace": namespace,
                    "labels": labels,
                    "annotations": dict((template.get("metadata") or {}).get("annotations") or {}),
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "Job",
                            "name": job_name,
                            "uid": uid,
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": pod_spec,
            },
        )
        self._event(job, "SuccessfulCreate", f"Created pod: {pod_name}")
        self._status(self.jobs, namespace, job_name, {"active": 1, "ready": 0})
        containers = pod_spec.get("containers") or []
        if len(containers) != 1:
            log.warning(
                "sandbox executor: pod %s has %d containers; only the first runs", pod_name, len(containers)
            )
        container = containers[0] if containers else {"name": "main"}
        cname = container.get("name", "main")
        deadline = job.get("spec", {}).get("activeDeadlineSeconds")
        deadline_at = (parse_rfc3339(job_start).timestamp() + float(deadline)) if deadline else None

        def waiting(reason: str, message: str) -> None:
            self._status(
                self.pods,
                namespace,
                pod_name,
                {
                    "phase": "Pending",
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": rfc3339()},
                        {
                            "type": "Ready",
                            "status": "False",
                            "reason": "ContainersNotReady",
                            "lastTransitionTime": rfc3339(),
                        },
                    ],
                    "containerStatuses": [
                        {
                            "name": cname,
                            "image": container.get("image", ""),
                            "imageID": "",
                            "ready": False,
                            "started": False,
                            "restartCount": 0,
                            "state": {"waiting": {"reason": reason, "message": message}},
                        }
                    ],
                },
            )

        # Wait (as a kubelet does, without failing the pod) for the image and the container's config.
        env: dict[str, str] | None = None
        while True:
            stop = self._interrupted(job, deadline_at)
            if stop is not None:
                self._finish_pod(pod, cname, container, None, stop)
                return Outcome(stop, None, pod_name, cname)
            image = str(container.get("image", ""))
            if not self.registry.has(image):
                waiting(
                    "ImagePullBackOff",
                    f'Back-off pulling image "{image}": not in the sandbox\'s local '
                    "registry (images ending in :local and the configured trainer image are)",
                )
            else:
                try:
                    env = self._resolve_env(namespace, pod, container)
                    break
                except ContainerConfigError as exc:
                    waiting("CreateContainerConfigError", str(exc))
            await asyncio.sleep(0.25)
        async with self.slots:
            return await self._run_container(job, pod, container, env, deadline_at)

    def _interrupted(self, job: JSON, deadline_at: float | None) -> str | None:
        meta = job["metadata"]
        current = self._job(meta["namespace"], meta["name"], meta["uid"])
        if current is None or current.get("spec", {}).get("suspend"):
            return "suspended"
        if deadline_at is not None and datetime.now(UTC).timestamp() >= deadline_at:
            return "deadline"
        return None

    def _resolve_env(self, namespace: str, pod: JSON, container: JSON) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef") or source.get("configMapRef")
            if ref is None:
                continue
            data = self._data(
                "secrets" if "secretRef" in source else "configmaps",
                namespace,
                ref["name"],
                bool(ref.get("optional")),
            )
            prefix = source.get("prefix", "")
            env.update({prefix + k: v for k, v in data.items()})
        for item in container.get("env") or []:
            name = item["name"]
            if "value" in item:
                env[name] = str(item["value"])
                continue
            value_from = item.get("valueFrom") or {}
            if "secretKeyRef" in value_from or "configMapKeyRef" in value_from:
                is_secret = "secretKeyRef" in value_from
                ref = value_from["secretKeyRef" if is_secret else "configMapKeyRef"]
                data = self._data(
                    "secrets" if is_secret else "configmaps",
                    namespace,
                    ref["name"],
                    bool(ref.get("optional")),
                )
                if ref["key"] in data:
                    env[name] = data[ref["key"]]
                elif not ref.get("optional"):
                    kind = "Secret" if is_secret else "ConfigMap"
                    raise ContainerConfigError(
                        f"couldn't find key {ref['key']} in {kind} {namespace}/{ref['name']}"
                    )
            elif "fieldRef" in value_from:
                env[name] = _field_ref(pod, value_from["fieldRef"].get("fieldPath", ""))
            else:
                env[name] = ""
        return env

    def _data(self, plural: str, namespace: str, name: str, optional: bool) -> dict[str, str]:
        rdef = self.store.resource("", "v1", plural)
        try:
            obj = self.store.get(rdef, namespace, name)
        except ApiError:
            if optional:
                return {}
            raise ContainerConfigError(f'{plural[:-1]} "{name}" not found') from None
        if plural == "secrets":
            return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        return {k: str(v) for k, v in (obj.get("data") or {}).items()}

    async def _run_container(
        self, job: JSON, pod: JSON, container: JSON, env: dict[str, str] | None, deadline_at: float | None
    ) -> Outcome:
        meta = pod["metadata"]
        namespace, pod_name = meta["namespace"], meta["name"]
        cname = container.get("name", "main")
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        pod_dir = Path(tempfile.mkdtemp(prefix=f"{pod_name}-", dir=self.workdir))
        termination_log = pod_dir / "termination-log"
        termination_log.touch()
        full_env = {
            "PATH": self.path,
            "HOME": str(pod_dir),
            "TMPDIR": str(pod_dir),
            "HOSTNAME": pod_name,
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
            ENV_TERMINATION_LOG: str(termination_log),
        }
        started = rfc3339()
        executable = shutil.which(argv[0], path=self.path) if argv else None
        if executable is None:
            message = (
                f'exec: "{argv[0]}": executable file not found in $PATH'
                if argv
                else "no command: the sandbox cannot run an image's default entrypoint"
            )
            self.store.pod_logs[(namespace, pod_name)] = message + "\n"
            self._finish_pod(pod, cname, container, 128, "StartError", started, message)
            return Outcome("exited", 128, pod_name, cname)
        process = await asyncio.create_subprocess_exec(
            executable,
            *argv[1:],
            env=full_env,
            cwd=container.get("workingDir")
            if container.get("workingDir") and Path(container["workingDir"]).is_dir()
            else str(pod_dir),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.add(process)
        self._status(
            self.pods,
            namespace,
            pod_name,
            {
                "phase": "Running",
                "startTime": started,
                "podIP": "127.0.0.1",
                "hostIP": "127.0.0.1",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
                    {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": started},
                    {"type": "Ready", "status": "True", "lastTransitionTime": started},
                ],
                "containerStatuses": [
                    {
                        "name": cname,
                        "image": container.get("image", ""),
                        "imageID": "",
                        "containerID": f"sandbox://{process.pid}",
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": started}},
                    }
                ],
            },
        )
        self._status(self.jobs, namespace, job["metadata"]["name"], {"active": 1, "ready": 1})
        self._event(pod, "Started", f"Started container {cname}")
        reader = asyncio.create_task(self._collect_logs(process, namespace, pod_name))
        self.readers.add(reader)
        reader.add_done_callback(self.readers.discard)
        stop: str | None = None
        while process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), timeout=0.25)
            except TimeoutError:
                stop = self._interrupted(job, deadline_at)
                if stop is not None:
                    _kill(process)
                    await process.wait()
                    break
        await reader
        self.processes.discard(process)
        code = process.returncode if process.returncode is not None else 137
        message = termination_log.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode("utf-8", "replace")
        shutil.rmtree(pod_dir, ignore_errors=True)
        if stop is not None:
            self._finish_pod(
                pod,
                cname,
                container,
                137,
                "DeadlineExceeded" if stop == "deadline" else "Killed",
                started,
                message,
            )
            return Outcome(stop, 137, pod_name, cname)
        self._finish_pod(pod, cname, container, code, "Completed" if code == 0 else "Error", started, message)
        return Outcome("exited", code, pod_name, cname)

    async def _collect_logs(self, process: asyncio.subprocess.Process, namespace: str, pod_name: str) -> None:
        assert process.stdout is not None
        key = (namespace, pod_name)
        while True:
            chunk = await process.stdout.read(65536)
            if not chunk:
                return
            text = self.store.pod_logs.get(key, "") + chunk.decode("utf-8", "replace")
            self.store.pod_logs[key] = text[-_LOG_LIMIT:]

    def _finish_pod(
        self,
        pod: JSON,
        cname: str,
        container: JSON,
        code: int | None,
        reason: str,
        started: str | None = None,
        message: str = "",
    ) -> None:
        meta = pod["metadata"]
        now = rfc3339()
        if code is None:  # never started (deleted, suspended or past its deadline while waiting)
            with contextlib.suppress(ApiError):
                self.store.delete(self.pods, meta["namespace"], meta["name"])
            return
        terminated: JSON = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started or now,
            "finishedAt": now,
        }
        if message:
            terminated["message"] = message
        elif code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            logs = self.store.pod_logs.get((meta["namespace"], meta["name"]), "")
            terminated["message"] = "\n".join(logs.splitlines()[-80:])[-2048:]
        self._status(
            self.pods,
            meta["namespace"],
            meta["name"],
            {
                "phase": "Succeeded" if code == 0 else "Failed",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": started or now},
                    {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
                ],
                "containerStatuses": [
                    {
                        "name": cname,
                        "image": container.get("image", ""),
                        "imageID": "",
                        "ready": False,
                        "started": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ],
            },
        )


@dataclass
class Outcome:
    kind: str  # exited | deadline | suspended
    exit_code: int | None
    pod: str
    container: str


def _finished(job: JSON) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


def _merge_condition(job: JSON, ctype: str, status: str, reason: str, message: str) -> list[JSON]:
    now = rfc3339()
    conditions = [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("type") != ctype]
    conditions.append(
        {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastProbeTime": now,
            "lastTransitionTime": now,
        }
    )
    return conditions


def _matching_rule(policy: Any, outcome: Outcome) -> JSON | None:
    """The first podFailurePolicy rule matching the container's exit code (onPodConditions never match:
    the sandbox has no disruptions)."""
    for rule in (policy or {}).get("rules") or []:
        on_codes = rule.get("onExitCodes")
        if not on_codes or outcome.exit_code is None:
            continue
        if on_codes.get("containerName") and on_codes["containerName"] != outcome.container:
            continue
        values = set(on_codes.get("values") or [])
        hit = outcome.exit_code in values
        if (on_codes.get("operator") == "In" and hit) or (
            on_codes.get("operator") == "NotIn" and not hit and outcome.exit_code != 0
        ):
            return dict(rule)
    return None


def _field_ref(pod: JSON, path: str) -> str:
    meta = pod["metadata"]
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": "sandbox",
        "spec.serviceAccountName": pod.get("spec", {}).get("serviceAccountName", "default"),
        "status.podIP": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    for prefix, source in (
        ("metadata.labels", meta.get("labels") or {}),
        ("metadata.annotations", meta.get("annotations") or {}),
    ):
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str(source.get(path[len(prefix) + 2 : -2], ""))
    return ""


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 9)  # the whole process group: a trainer's workers too
