"""``Sandbox``: the whole local cluster in one object - the strict API server, the Job executor, an S3
server with a bucket and a credentials Secret, the CRDs from ``crds/``, and the real operator as a
subprocess (``clm-operator run`` with KUBECONFIG pointing here). Used by ``clm-operator sandbox``, the
demo and the test fixtures.

The API server and the executor share one asyncio loop in a background thread; ``call()`` runs a function
on it (the store is not thread-safe, by design: the loop is its transaction boundary).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import kmock
import yaml

from clm_operator.domain.config import DEFAULT_OUTPUT_URI, DEFAULT_TRAINER_IMAGE
from clm_operator.sandbox.apimachinery import JSON, ApiError
from clm_operator.sandbox.emulator import StrictKubernetesEmulator, serve
from clm_operator.sandbox.executor import JobExecutor, LocalRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CRDS_DIR = REPO_ROOT / "crds"
S3_SECRET_NAME = "clm-s3-credentials"
S3_ACCESS_KEY = "sandbox-access-key"
S3_SECRET_KEY = "sandbox-secret-key"  # moto accepts any credentials; these only prove the plumbing


def find_kubectl() -> str:
    """kubectl from PATH, else the one scripts/install-k8s-tools.sh put into .tools/bin."""
    found = shutil.which("kubectl") or shutil.which("kubectl", path=str(REPO_ROOT / ".tools" / "bin"))
    if found is None:
        raise FileNotFoundError(
            "kubectl not found: run scripts/install-k8s-tools.sh (installs .tools/bin/kubectl)"
        )
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Poll until ``predicate()`` is truthy and return it; TimeoutError naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {text}")
        time.sleep(interval)


class Sandbox:
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        operator: bool = True,
        s3: bool = True,
        crds_dir: Path | None = DEFAULT_CRDS_DIR,
        extra_crds: Sequence[JSON] = (),
        images: Sequence[str] = (),
        max_parallel: int = 2,
        namespace: str = "default",
        clock_file: Path | None = None,
        operator_env: dict[str, str] | None = None,
        operator_args: Sequence[str] = (),
        trainer_image: str = DEFAULT_TRAINER_IMAGE,
        output_uri: str = DEFAULT_OUTPUT_URI,
        workdir: Path | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.with_operator, self.with_s3 = operator, s3
        self.crds_dir, self.extra_crds = crds_dir, list(extra_crds)
        self.registry = LocalRegistry({trainer_image, *images})
        self.max_parallel = max_parallel
        self.namespace = namespace
        self.clock_file = clock_file
        self.operator_env = dict(operator_env or {})
        self.operator_args = list(operator_args)
        self.trainer_image = trainer_image
        self.output_uri = output_uri
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="clm-sandbox-"))
        self.kubeconfig = self.workdir / "kubeconfig"
        self.kubectl_cache = self.workdir / "kubectl-cache"
        self.operator_log = self.workdir / "operator.log"
        self.emulator: StrictKubernetesEmulator | None = None
        self.executor: JobExecutor | None = None
        self.s3: Any = None  # clm_operator.sandbox.s3server.S3Server when s3=True
        self.operator_process: subprocess.Popen[bytes] | None = None
        # The operator's own ports, free ones: several sandboxes (and other test sessions) share a machine.
        self.metrics_port, self.health_port, self.webhook_port = free_port(), free_port(), free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: kmock.Server | None = None
        self._stopping: asyncio.Event | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "the sandbox is not started"
        return str(self._server.url).rstrip("/")

    def start(self) -> Sandbox:
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name="clm-sandbox", daemon=True
        )
        self._thread.start()
        ready.result(timeout=30)
        try:
            self._write_kubeconfig()
            if self.with_s3:
                self._start_s3()
            self.install_crds()
            self.create_namespace(self.namespace, exist_ok=True)
            if self.with_operator:
                self.start_operator()
        except BaseException:
            self.stop()
            raise
        return self

    def _thread_main(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            self._stopping = asyncio.Event()
            self.emulator = StrictKubernetesEmulator()
            self._server = await serve(self.emulator, self.host, self.port)
            self.executor = JobExecutor(
                self.emulator.store,
                registry=self.registry,
                max_parallel=self.max_parallel,
                workdir=self.workdir / "pods",
            )
            (self.workdir / "pods").mkdir(parents=True, exist_ok=True)
            self.executor.start()
        except BaseException as exc:
            ready.set_exception(exc)
            raise
        ready.set_result(None)
        await self._stopping.wait()
        await self.executor.stop()
        await self._server.__aexit__(None, None, None)
        await self.emulator.__aexit__(None, None, None)

    def stop(self) -> None:
        self.stop_operator()
        if self.s3 is not None:
            self.s3.stop()
            self.s3 = None
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=15)
        self._thread = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- calling into the loop -----------------------------------------------------------------------------
    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the sandbox's loop (where the store lives) and return its result."""
        assert self._loop is not None

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def store_call(
        self, method: str, group: str, version: str, plural: str, *args: Any, **kwargs: Any
    ) -> Any:
        assert self.emulator is not None
        store = self.emulator.store

        def run() -> Any:
            return getattr(store, method)(store.resource(group, version, plural), *args, **kwargs)

        return self.call(run)

    def get(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> JSON | None:
        try:
            result: JSON = self.store_call("get", group, version, plural, namespace, name)
        except ApiError as exc:
            if exc.code == 404:
                return None
            raise
        return result

    def list_objects(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[JSON]:
        from clm_operator.sandbox.apimachinery import parse_label_selector

        match = parse_label_selector(label_selector)
        items, _ = self.store_call(
            "list_objects",
            group,
            version,
            plural,
            namespace,
            lambda o: match(o.get("metadata", {}).get("labels") or {}),
        )
        return list(items)

    def apply_object(self, obj: JSON) -> JSON:
        """Create or replace (no conflict check) one object, like a forceful ``kubectl apply``."""
        assert self.emulator is not None
        store = self.emulator.store
        api_version, kind = obj["apiVersion"], obj["kind"]

        def run() -> JSON:
            rdef = store.find_kind(api_version, kind)
            if rdef is None:
                raise ApiError(404, "NotFound", f"no resource for {api_version} {kind}")
            meta = obj.get("metadata", {})
            namespace = meta.get("namespace") if rdef.namespaced else None
            try:
                current = store.get(rdef, namespace, meta["name"])
            except ApiError as exc:
                if exc.code != 404:
                    raise
                return store.create(rdef, namespace, obj)
            body = {**obj, "metadata": {**meta, "resourceVersion": current["metadata"]["resourceVersion"]}}
            return store.replace(rdef, namespace, meta["name"], body)

        return self.call(run)

    # -- set-up ----------------------------------------------------------------------------------------------
    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{"name": "clm-sandbox", "cluster": {"server": self.url}}],
            "users": [{"name": "clm-sandbox", "user": {"token": "clm-sandbox"}}],
            "contexts": [
                {
                    "name": "clm-sandbox",
                    "context": {"cluster": "clm-sandbox", "user": "clm-sandbox", "namespace": self.namespace},
                }
            ],
            "current-context": "clm-sandbox",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))

    def _start_s3(self) -> None:
        from clm_operator.sandbox.s3server import start_s3_server

        self.s3 = start_s3_server(self.host)
        bucket = (
            self.output_uri.removeprefix("s3://").split("/", 1)[0]
            if self.output_uri.startswith("s3://")
            else None
        )
        if bucket:
            import boto3

            client = boto3.client(
                "s3",
                endpoint_url=self.s3.endpoint_url,
                region_name="us-east-1",
                aws_access_key_id=S3_ACCESS_KEY,
                aws_secret_access_key=S3_SECRET_KEY,
            )
            client.create_bucket(Bucket=bucket)

    def install_crds(self) -> None:
        documents: list[JSON] = list(self.extra_crds)
        if self.crds_dir is not None and self.crds_dir.is_dir():
            for path in sorted(self.crds_dir.glob("*.yaml")):
                documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
        for crd in documents:
            self.apply_object(crd)

    def create_namespace(self, name: str, exist_ok: bool = False) -> None:
        """A namespace with the S3 credentials Secret the operator's Jobs reference (secretKeyRef)."""
        try:
            self.store_call("create", "", "v1", "namespaces", None, {"metadata": {"name": name}})
        except ApiError as exc:
            if not (exist_ok and exc.code == 409):
                raise
        if self.with_s3:
            secret = {
                "metadata": {"name": S3_SECRET_NAME, "namespace": name, "labels": {"app": "clm-sandbox"}},
                "type": "Opaque",
                "data": {
                    "AWS_ACCESS_KEY_ID": base64.b64encode(S3_ACCESS_KEY.encode()).decode(),
                    "AWS_SECRET_ACCESS_KEY": base64.b64encode(S3_SECRET_KEY.encode()).decode(),
                },
            }
            with contextlib.suppress(ApiError):
                self.store_call("create", "", "v1", "secrets", name, secret)

    def delete_namespace(self, name: str) -> None:
        with contextlib.suppress(ApiError):
            self.store_call("delete", "", "v1", "namespaces", None, name)

    # -- the operator ---------------------------------------------------------------------------------------
    def operator_environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CLM_", "KUBECONFIG"))}
        env.update(
            {
                "KUBECONFIG": str(self.kubeconfig),
                "CLM_TRAINER_IMAGE": self.trainer_image,
                "CLM_OUTPUT_URI": self.output_uri,
                "CLM_S3_SECRET_NAME": S3_SECRET_NAME if self.with_s3 else "",
                "CLM_S3_PATH_STYLE": "true",
                "AWS_REGION": "us-east-1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.s3 is not None:
            env["CLM_S3_ENDPOINT_URL"] = self.s3.endpoint_url
            # The operator reads S3 itself (manifest.json fallback, artifact deletion under retention
            # policy Delete), as the chart's Deployment does through secretKeyRef: same keys as the Secret.
            env["AWS_ACCESS_KEY_ID"] = S3_ACCESS_KEY
            env["AWS_SECRET_ACCESS_KEY"] = S3_SECRET_KEY
        if self.clock_file is not None:
            env["CLM_CLOCK_FILE"] = str(self.clock_file)
        env.update(self.operator_env)
        return env

    def start_operator(self) -> None:
        if self.operator_process is not None and self.operator_process.poll() is None:
            return
        clm_operator = shutil.which("clm-operator", path=str(Path(sys.executable).parent))
        argv = [clm_operator, "run"] if clm_operator else [sys.executable, "-m", "clm_operator.cli", "run"]
        with self.operator_log.open("ab") as log_file:
            self.operator_process = subprocess.Popen(
                [
                    *argv,
                    "--metrics-port",
                    str(self.metrics_port),
                    "--health-port",
                    str(self.health_port),
                    "--webhook-port",
                    str(self.webhook_port),
                    *self.operator_args,
                ],
                env=self.operator_environment(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=str(self.workdir),
                start_new_session=True,
            )

    def stop_operator(self, timeout: float = 10.0) -> None:
        process, self.operator_process = self.operator_process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)

    def kill_operator(self) -> None:
        """SIGKILL, no graceful shutdown: for "killed at any point" idempotency tests."""
        process, self.operator_process = self.operator_process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)

    def restart_operator(self) -> None:
        self.stop_operator()
        self.start_operator()

    def operator_logs(self) -> str:
        return self.operator_log.read_text(errors="replace") if self.operator_log.exists() else ""

    # -- kubectl -------------------------------------------------------------------------------------------
    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = False,
        timeout: float = 60.0,
        namespace: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [find_kubectl(), "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.kubectl_cache)]
        if namespace is not None:
            argv += ["--namespace", namespace]
        result = subprocess.run(
            [*argv, *args], input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result
