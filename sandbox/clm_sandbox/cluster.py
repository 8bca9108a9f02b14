"""``Sandbox``: a whole Kubernetes cluster on this machine in one object - the real control plane
(``controlplane.py``: etcd, kube-apiserver with RBAC and PodSecurity, kube-controller-manager), the
project's node agent (``nodeagent.py``: a Ready Node running each container as a local process), an S3
server (moto) with a bucket and a credentials Secret, the CRDs from ``crds/``, and the operator installed
by ``helm install charts/clm-operator`` as the chart's Deployment, under the chart's ServiceAccount and
RBAC. Used by ``clm-sandbox up``, the demo and the test fixtures.

Everything is talked to the way a user would: kubectl and helm with the admin kubeconfig
(``system:masters`` client certificate). Namespaces made here enforce Pod Security ``restricted``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import yaml
from clm_operator.domain.config import DEFAULT_OUTPUT_URI, DEFAULT_TRAINER_IMAGE

from clm_sandbox.controlplane import REPO_ROOT, ControlPlane, free_port, start_process, stop_process

log = logging.getLogger(__name__)
T = TypeVar("T")
JSON = dict[str, Any]

__all__ = ["REPO_ROOT", "Sandbox", "find_kubectl", "free_port", "wait_for"]

DEFAULT_CRDS_DIR = REPO_ROOT / "crds"
CHART_DIR = REPO_ROOT / "charts" / "clm-operator"
S3_SECRET_NAME = "clm-s3-credentials"
S3_ACCESS_KEY = "sandbox-access-key"
S3_SECRET_KEY = "sandbox-secret-key"  # moto accepts any credentials; these only prove the plumbing
OPERATOR_NAMESPACE = "clm-system"
OPERATOR_RELEASE = "clm-operator"
OPERATOR_IMAGE = "clm-operator:sandbox"  # the node agent maps it to this venv's clm-operator
WEBHOOK_SECRET = "clm-webhook-token"
NODE_NAME = "clm-sandbox"
# Where sandboxes keep their files by default: not under /tmp, which every pod of the chart and of the
# trainer mounts an emptyDir over (a CLM_CLOCK_FILE there would be invisible to the operator's pod).
DEFAULT_WORK_ROOT = Path(os.environ.get("CLM_SANDBOX_ROOT", "/var/tmp"))
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}


def _tool(name: str, installer: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(REPO_ROOT / ".tools" / "bin"))
    if found is None:
        raise FileNotFoundError(f"{name} not found: run {installer} (installs .tools/bin/{name})")
    return found


def find_kubectl() -> str:
    """kubectl from PATH, else the one scripts/install-k8s-tools.sh put into .tools/bin."""
    return _tool("kubectl", "scripts/install-k8s-tools.sh")


def find_helm() -> str:
    return _tool("helm", "scripts/install-k8s-tools.sh")


def wait_for(
    predicate: Callable[[], T | None],
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


class KubectlError(RuntimeError):
    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        self.result = result


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
        fake_clock: bool = False,
        operator_env: dict[str, str] | None = None,
        trainer_image: str = DEFAULT_TRAINER_IMAGE,
        output_uri: str = DEFAULT_OUTPUT_URI,
        workdir: Path | None = None,
        log_format: str = "text",
    ) -> None:
        self.host, self.port = host, port
        self.with_operator, self.with_s3 = operator, s3
        self.crds_dir, self.extra_crds = crds_dir, list(extra_crds)
        self.images = [trainer_image, *images]
        self.max_parallel = max_parallel
        self.namespace = namespace
        self.operator_env = dict(operator_env or {})
        self.trainer_image = trainer_image
        self.output_uri = output_uri
        self.log_format = log_format
        self._own_workdir = workdir is None
        if workdir is None:
            DEFAULT_WORK_ROOT.mkdir(parents=True, exist_ok=True)
            workdir = Path(tempfile.mkdtemp(prefix="clm-sandbox-", dir=DEFAULT_WORK_ROOT))
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The operator's pod runs as uid 10001: it must reach the clock file (and nothing private).
        self.workdir.chmod(0o755)
        if fake_clock and clock_file is None:
            clock_file = self.workdir / "clock"  # the caller sets it (clock.set_fake_now) before start()
        self.clock_file = clock_file
        if clock_file is not None and _under(clock_file, Path("/tmp")):
            raise ValueError(
                f"clock_file {clock_file} is under /tmp, which the operator's pod mounts an emptyDir "
                "over: put it in the sandbox's workdir (Sandbox.workdir) or under /var/tmp"
            )
        self.controlplane = ControlPlane(self.workdir, host=host, port=port, namespace=namespace)
        self.kubeconfig = self.controlplane.admin_kubeconfig
        self.kubectl_cache = self.workdir / "kubectl-cache"
        self.pods_dir = self.workdir / "node"
        self.image_map_file = self.workdir / "image-map.json"
        self.node_ready_file = self.workdir / "node-ready.json"
        self.s3: Any = None  # clm_sandbox.s3server.S3Server when s3=True
        self.node_process: subprocess.Popen[bytes] | None = None
        self.operator_installed = False
        # The operator's ports, free ones: the pod shares the host's network (several sandboxes and other
        # test sessions share a machine).
        self.metrics_port, self.health_port, self.webhook_port = free_port(), free_port(), free_port()

    # -- lifecycle -----------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.controlplane.server

    @property
    def operator_log(self) -> Path:
        """The newest operator pod's log (the node agent's file; a new pod per restart)."""
        logs = self._operator_log_files()
        return logs[-1] if logs else self.pods_dir / "pods" / f"{OPERATOR_NAMESPACE}_none" / "operator.log"

    def start(self) -> Sandbox:
        started = time.monotonic()
        try:
            self.controlplane.start()
            log.info("sandbox: control plane ready in %.1f s", time.monotonic() - started)
            self._start_node()
            if self.with_s3:
                self._start_s3()
            self.install_crds()
            self.create_namespace(self.namespace, exist_ok=True)
            self._wait_node_ready()
            if self.with_operator:
                self.start_operator()
            log.info("sandbox: ready in %.1f s", time.monotonic() - started)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        # The node agent stops every container it runs (the operator's among them) before it exits.
        stop_process(self.node_process, timeout=20)
        self.node_process = None
        if self.s3 is not None:
            self.s3.stop()
            self.s3 = None
        self.controlplane.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def exited_component(self) -> str | None:
        """The name of a control plane process (or the node agent) that has exited, else None."""
        processes = dict(self.controlplane.processes)
        if self.node_process is not None:
            processes["nodeagent"] = self.node_process
        for name, process in processes.items():
            if process.poll() is not None:
                return f"{name} (exit status {process.returncode})"
        return None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- the node agent ------------------------------------------------------------------------------------
    def _image_map(self) -> JSON:
        """Images -> local commands, as the node agent reads them: the chart's operator image runs this
        venv's ``clm-operator`` (its args come from the chart); trainer images run the container's command
        (``clm-trainer ...``) found on this venv's PATH."""
        bin_dir = Path(sys.executable).parent
        path = os.pathsep.join([str(bin_dir), "/usr/local/bin", "/usr/bin", "/bin"])
        # The images' user 10001 is "clm" in their /etc/passwd; this machine's has no such entry, so the
        # name reaches getpass.getuser() (kopf's identity) the other way it looks: $USER.
        # HOME=/tmp as their passwd entry says (useradd --home-dir /tmp).
        env = {"PATH": path, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "USER": "clm", "LOGNAME": "clm",
               "HOME": "/tmp"}
        # The venv's interpreter belongs to the "image": it may live where the pods' user (10001) cannot
        # search (pyenv under root's 0700 home); the node agent mounts it where it is, reachable.
        paths = [os.path.realpath(sys.base_prefix)]
        image_map: JSON = {
            OPERATOR_IMAGE: {"argv": [str(bin_dir / "clm-operator")], "env": env, "paths": paths},
        }
        for image in self.images:
            image_map[image] = {"argv": [str(bin_dir / "clm-trainer")], "env": env, "paths": paths}
        return image_map

    def _start_node(self) -> None:
        self.image_map_file.write_text(json.dumps(self._image_map(), indent=2))
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        cp = self.controlplane
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CLM_", "KUBECONFIG"))}
        self.node_process = start_process(
            [sys.executable, "-m", "clm_sandbox.nodeagent",
             "--kubeconfig", str(self.kubeconfig), "--node-name", NODE_NAME,
             "--workdir", str(self.pods_dir), "--image-map", str(self.image_map_file),
             "--api-server", cp.server, "--service-host", cp.host, "--service-port", str(cp.api_port),
             # Room for every example (4 CPUs, a GPU the trainer falls back from); --max-pods bounds how
             # many trainings run at once (plus the operator's own pod).
             "--cpu", "16", "--memory", "64Gi", "--gpus", "1", "--max-pods", str(self.max_parallel + 1),
             "--ready-file", str(self.node_ready_file)],
            cp.logs / "nodeagent.log", env=env, cwd=self.workdir,
        )

    def restart_node_agent(self) -> None:
        """Stops the node agent (a dead one too) and starts a new one, which adopts the containers
        still running and reports the Node Ready again."""
        stop_process(self.node_process, timeout=20)
        self.node_ready_file.unlink(missing_ok=True)
        self._start_node()
        self._wait_node_ready()

    def _wait_node_ready(self) -> None:
        def ready() -> bool:
            if self.node_process is not None and self.node_process.poll() is not None:
                raise RuntimeError(f"the node agent exited with {self.node_process.returncode}:\n"
                                   f"{self.controlplane.log_tail('nodeagent')}")
            return self.node_ready_file.exists()

        wait_for(ready, timeout=60, message=lambda: "the node agent's Ready Node; log tail:\n"
                 + self.controlplane.log_tail("nodeagent"))

    # -- S3 ------------------------------------------------------------------------------------------------
    def _start_s3(self) -> None:
        from clm_sandbox.s3server import start_s3_server

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

    # -- objects -------------------------------------------------------------------------------------------
    def apply(self, documents: Sequence[JSON], *, namespace: str | None = None) -> None:
        """``kubectl apply --server-side`` as the sandbox (field manager clm-sandbox)."""
        if not documents:
            return
        body = {"apiVersion": "v1", "kind": "List", "items": list(documents)}
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager=clm-sandbox", "-f", "-"]
        self.kubectl(*args, input=json.dumps(body), check=True, namespace=namespace)

    def apply_object(self, obj: JSON) -> JSON:
        """Create or update one object (server-side apply, conflicts forced), returning it as stored."""
        args = ["apply", "--server-side", "--force-conflicts", "--field-manager=clm-sandbox",
                "-o", "json", "-f", "-"]
        result = self.kubectl(*args, input=json.dumps(obj), check=True)
        stored: JSON = json.loads(result.stdout)
        return stored

    def get(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> JSON | None:
        result = self.kubectl("get", _resource(group, version, plural), name, "-o", "json",
                              namespace=namespace)
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise KubectlError(["get", plural, name], result)
        found: JSON = json.loads(result.stdout)
        return found

    def list_objects(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[JSON]:
        args = ["get", _resource(group, version, plural), "-o", "json"]
        if label_selector:
            args += ["-l", label_selector]
        if namespace is None:
            args.append("--all-namespaces")
        result = self.kubectl(*args, namespace=namespace, check=True)
        return list(json.loads(result.stdout).get("items") or [])

    # -- set-up ----------------------------------------------------------------------------------------------
    def install_crds(self) -> None:
        documents: list[JSON] = list(self.extra_crds)
        if self.crds_dir is not None and self.crds_dir.is_dir():
            for path in sorted(self.crds_dir.glob("*.yaml")):
                documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
        if not documents:
            return
        self.apply(documents)
        names = [f"crd/{d['metadata']['name']}" for d in documents]
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names, check=True)

    def create_namespace(self, name: str, exist_ok: bool = False) -> None:
        """A namespace enforcing Pod Security ``restricted``, with the S3 credentials Secret the
        operator's Jobs reference (secretKeyRef); returns once its default ServiceAccount exists (the Job
        controller's pods are refused until then)."""
        if not exist_ok and self.get("", "v1", "namespaces", None, name) is not None:
            raise RuntimeError(f"namespace {name} already exists")
        documents: list[JSON] = [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}}
        ]
        if self.with_s3:
            documents.append(self._s3_secret(name))
        self.apply(documents)
        wait_for(lambda: self.kubectl("get", "serviceaccount", "default", namespace=name).returncode == 0,
                 timeout=30, interval=0.1, message=f"the default ServiceAccount of namespace {name}")

    def _s3_secret(self, namespace: str) -> JSON:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": S3_SECRET_NAME, "namespace": namespace, "labels": {"app": "clm-sandbox"}},
            "type": "Opaque",
            "data": {
                "AWS_ACCESS_KEY_ID": base64.b64encode(S3_ACCESS_KEY.encode()).decode(),
                "AWS_SECRET_ACCESS_KEY": base64.b64encode(S3_SECRET_KEY.encode()).decode(),
            },
        }

    def delete_namespace(self, name: str) -> None:
        self.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")

    # -- the operator ---------------------------------------------------------------------------------------
    def helm_values(self) -> JSON:
        """The chart's values for the sandbox: the chart's own defaults but for where things are."""
        extra_env = dict(self.operator_env)
        extra_env.setdefault("PYTHONUNBUFFERED", "1")
        if self.clock_file is not None:
            extra_env["CLM_CLOCK_FILE"] = str(self.clock_file)
        extra_env.pop("CLM_WEBHOOK_TOKEN", None)  # a Secret, mounted as the chart mounts it
        schedule = extra_env.pop("CLM_SCHEDULE_INTERVAL_SECONDS", None)
        endpoint = extra_env.pop("CLM_S3_ENDPOINT_URL", None) or (self.s3.endpoint_url if self.s3 else "")
        values: JSON = {
            "image": {"repository": OPERATOR_IMAGE.split(":")[0], "tag": OPERATOR_IMAGE.split(":")[1],
                      "pullPolicy": "IfNotPresent"},
            "trainer": {"image": self.trainer_image},
            "storage": {
                "outputUri": self.output_uri,
                "s3": {
                    "endpointUrl": endpoint,
                    "pathStyle": True,
                    "secretName": S3_SECRET_NAME if self.with_s3 else "",
                },
            },
            "webhook": {"enabled": True, "port": self.webhook_port},
            "metrics": {"port": self.metrics_port},
            "health": {"port": self.health_port},
            # The operator runs as a host process here: its ports must not be open beyond loopback.
            "listen": {"address": "127.0.0.1"},
            "logFormat": self.log_format,
            "extraEnv": [{"name": key, "value": value} for key, value in sorted(extra_env.items())],
        }
        if schedule is not None:
            values["scheduleIntervalSeconds"] = float(schedule) if "." in schedule else int(schedule)
        return values

    def _operator_namespace(self) -> None:
        documents: list[JSON] = [{"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": OPERATOR_NAMESPACE, "labels": RESTRICTED}}]
        if self.with_s3:
            documents.append(self._s3_secret(OPERATOR_NAMESPACE))
        token = self.operator_env.get("CLM_WEBHOOK_TOKEN")
        if token:
            documents.append({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": WEBHOOK_SECRET, "namespace": OPERATOR_NAMESPACE},
                "type": "Opaque", "data": {"token": base64.b64encode(token.encode()).decode()},
            })
        self.apply(documents)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 180.0
    ) -> subprocess.CompletedProcess[str]:
        home = str(self.workdir / "helm")
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HELM_CACHE_HOME": home,
               "HELM_CONFIG_HOME": home, "HELM_DATA_HOME": home}
        result = subprocess.run([find_helm(), *args], capture_output=True, text=True, timeout=timeout,
                                env=env, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def install_operator(self) -> None:
        """``helm install`` of the chart (CRDs excepted: they are the sandbox's ``crds_dir``)."""
        self._operator_namespace()
        values = self.workdir / "operator-values.yaml"
        values.write_text(yaml.safe_dump(self.helm_values(), sort_keys=False))
        self.helm("upgrade", "--install", OPERATOR_RELEASE, str(CHART_DIR), "--namespace", OPERATOR_NAMESPACE,
                  "--skip-crds", "--values", str(values))
        self.operator_installed = True

    def operator_pods(self) -> list[JSON]:
        pods = self.list_objects("", "v1", "pods", OPERATOR_NAMESPACE,
                                 f"app.kubernetes.io/instance={OPERATOR_RELEASE}")
        return sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"])

    def operator_ready(self) -> JSON | None:
        """The operator's pod once it is Ready and listening on its metrics port, else None."""
        for pod in self.operator_pods():
            if pod["metadata"].get("deletionTimestamp"):
                continue
            conditions = (pod.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) and _listening(
                self.metrics_port
            ):
                return pod
        return None

    def wait_operator_ready(self, timeout: float = 120.0) -> JSON:
        found: JSON = wait_for(self.operator_ready, timeout=timeout, interval=0.2,
                               message=lambda: f"the operator's pod to be Ready; pods: {self._pod_summary()}"
                               f"\noperator log tail:\n{self.operator_logs()[-3000:]}")
        return found

    def _pod_summary(self) -> list[tuple[str, Any]]:
        return [(p["metadata"]["name"], (p.get("status") or {}).get("phase")) for p in self.operator_pods()]

    def start_operator(self) -> None:
        """Installs the chart (the first time) or scales its Deployment back to 1; returns once the
        operator's pod is Ready."""
        if not self.operator_installed:
            self.install_operator()
        else:
            self.kubectl("scale", "deployment", OPERATOR_RELEASE, "--replicas=1",
                         namespace=OPERATOR_NAMESPACE, check=True)
        self.wait_operator_ready()

    def stop_operator(self, timeout: float = 60.0) -> None:
        """Scales the Deployment to 0 and waits until its pod is gone (SIGTERM: a graceful stop)."""
        if not self.operator_installed:
            return
        self.kubectl("scale", "deployment", OPERATOR_RELEASE, "--replicas=0",
                     namespace=OPERATOR_NAMESPACE, check=True)
        wait_for(lambda: not self.operator_pods(), timeout=timeout, interval=0.2,
                 message=lambda: f"the operator's pod to go; pods: {self._pod_summary()}")

    def kill_operator(self) -> None:
        """Force-deletes the operator's pod (grace period 0: SIGKILL, no graceful shutdown); the
        Deployment starts a new one, which ``start_operator()`` (or ``wait_operator_ready()``) awaits."""
        names = [p["metadata"]["name"] for p in self.operator_pods()]
        if names:
            self.kubectl("delete", "pod", *names, "--grace-period=0", "--force", "--wait=false",
                         namespace=OPERATOR_NAMESPACE)
            gone = set(names)
            wait_for(lambda: not any(p["metadata"]["name"] in gone for p in self.operator_pods()),
                     timeout=30, interval=0.1, message="the killed operator pod to go")

    def restart_operator(self) -> None:
        self.stop_operator()
        self.start_operator()

    def _operator_log_files(self) -> list[Path]:
        base = self.pods_dir / "pods"
        pattern = f"{OPERATOR_NAMESPACE}_{OPERATOR_RELEASE}-*/operator.log"
        files = list(base.glob(pattern)) if base.is_dir() else []
        return sorted(files, key=lambda p: p.stat().st_mtime_ns)

    def operator_logs(self) -> str:
        """Every operator pod's log, oldest pod first (what ``kubectl logs`` would show per pod)."""
        return "".join(path.read_text(errors="replace") for path in self._operator_log_files())

    # -- the control plane ----------------------------------------------------------------------------------
    def compact_etcd(self) -> int:
        """Compacts etcd to its current revision (every older watch resourceVersion becomes 410 Gone)."""
        return self.controlplane.compact_etcd()

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
            raise KubectlError(args, result)
        return result


def _resource(group: str, version: str, plural: str) -> str:
    """kubectl's fully qualified resource name (``jobs.v1.batch``), unambiguous whatever else exists."""
    return f"{plural}.{version}.{group}" if group else plural


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True
