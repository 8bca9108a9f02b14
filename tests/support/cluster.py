"""One way for a test to start a sandbox and talk to it: through the real kubectl (``Kubectl``) or the
operator's HTTP endpoints, never by reaching into a process.

- ``running(**options)``: a started ``clm_sandbox.cluster.Sandbox``; with ``fake_clock=True`` the clock
  starts now (a test moves it with ``clm_operator.clock.set_fake_now``), and when the operator serves the
  webhook it returns once the metrics and webhook ports accept connections.
- ``cluster_fixture(scope, **options)`` and ``namespace_fixture(prefix, cluster)``: the fixture factory
  every integration module uses (tests/support/fixtures.py builds the session-wide ones from it).
- ``Kubectl``: the one kubectl wrapper, bound to one namespace.
- ``wait_for`` (poll, never sleep a fixed time) and ``free_port`` are the sandbox's own.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any, Literal

import pytest
from clm_contract import GROUP, VERSION
from clm_operator.clock import set_fake_now
from clm_sandbox.cluster import Sandbox, find_kubectl, wait_for
from clm_sandbox.controlplane import free_port

from tests.support.objects import TRAINER_IMAGE, evaluated_status, model_version_manifest

__all__ = [
    "MODEL_TESTS",
    "OPERATOR_TESTS",
    "WEBHOOK_TOKEN",
    "Kubectl",
    "cluster_fixture",
    "create_version",
    "free_port",
    "model_status",
    "namespace_fixture",
    "running",
    "scrape",
    "stages",
    "wait_finished",
    "wait_for",
    "wait_status",
    "wait_until_listening",
]

JSON = dict[str, Any]
Scope = Literal["session", "package", "module", "class", "function"]

WEBHOOK_TOKEN = "test-webhook-token"
# The operator re-checks unfinished runs every second.
OPERATOR_TESTS: Mapping[str, Any] = {"operator_env": {"CLM_RESYNC_SECONDS": "1"}}
# A controllable clock, a fast schedule timer, the webhook with a token (the Model tests).
MODEL_TESTS: Mapping[str, Any] = {
    "fake_clock": True,
    "trainer_image": TRAINER_IMAGE,
    "operator_env": {"CLM_SCHEDULE_INTERVAL_SECONDS": "0.5", "CLM_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
                     "CLM_WEBHOOK_HOST": "127.0.0.1", "CLM_RESYNC_SECONDS": "1"},
}
FINISHED = ("Succeeded", "Failed")
# plural -> (group, version) for kubectl's fully qualified names; anything else is core/v1.
_GROUPS = {"trainingjobs": (GROUP, VERSION), "modelversions": (GROUP, VERSION), "models": (GROUP, VERSION),
           "jobs": ("batch", "v1"), "deployments": ("apps", "v1")}
_namespaces = count(1)


@contextmanager
def running(start: datetime | None = None, **options: Any) -> Iterator[Sandbox]:
    """A started sandbox (``Sandbox(**options)``), stopped afterwards.

    A fake clock starts at ``start`` (default: now); it lives in the sandbox's workdir, because the
    operator's pod mounts an emptyDir over /tmp."""
    cluster = Sandbox(**options)
    if options.get("fake_clock"):
        assert cluster.clock_file is not None
        set_fake_now(cluster.clock_file, start or datetime.now(UTC))
    with cluster:
        if cluster.with_operator and "CLM_WEBHOOK_TOKEN" in cluster.operator_env:
            wait_until_listening(cluster, cluster.metrics_port, cluster.webhook_port)
        yield cluster


def wait_until_listening(cluster: Sandbox, *ports: int, timeout: float = 60.0) -> None:
    """The operator process is up once its ports accept connections."""

    def listening() -> bool:
        for port in ports:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
        return True

    wait_for(listening, timeout=timeout, interval=0.2,
             message=lambda: f"the operator's ports {ports}; log tail:\n{cluster.operator_logs()[-3000:]}")


def cluster_fixture(scope: Scope = "module", **options: Any) -> Any:
    """A fixture yielding ``running(**options)``: ``env = cluster_fixture(**MODEL_TESTS)`` in a module."""

    @pytest.fixture(scope=scope)
    def cluster() -> Iterator[Sandbox]:
        with running(**options) as started:
            yield started

    return cluster


def namespace_fixture(prefix: str, cluster: str = "env") -> Any:
    """A fixture yielding a ``Kubectl`` in a fresh namespace of the fixture named ``cluster`` (Pod
    Security ``restricted``, the S3 Secret when the sandbox has S3), deleted after the test."""

    @pytest.fixture
    def namespace(request: pytest.FixtureRequest) -> Iterator[Kubectl]:
        sandbox: Sandbox = request.getfixturevalue(cluster)
        name = f"{prefix}-{next(_namespaces)}"
        sandbox.create_namespace(name)
        try:
            yield Kubectl(sandbox, name)
        finally:
            sandbox.delete_namespace(name)

    return namespace


class Kubectl:
    """The real kubectl against one sandbox (admin kubeconfig), in one namespace."""

    def __init__(self, cluster: Sandbox, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace

    @property
    def argv(self) -> list[str]:
        """The command line up to the verb, to launch several kubectl processes at once."""
        return [find_kubectl(), "--kubeconfig", str(self.cluster.kubeconfig), "--namespace", self.namespace]

    def __call__(self, *args: str, input: str | None = None, check: bool = False,
                 timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``check=True`` raises with kubectl's stderr."""
        return self.cluster.kubectl(*args, input=input, check=check, timeout=timeout,
                                    namespace=self.namespace)

    def apply(self, document: Mapping[str, Any], check: bool = False) -> subprocess.CompletedProcess[str]:
        return self("apply", "-f", "-", input=json.dumps(document), check=check)

    def get_json(self, *args: str) -> JSON:
        """``kubectl get ARGS -o json`` (raises when kubectl fails)."""
        return dict(json.loads(self("get", *args, "-o", "json", check=True).stdout))

    def get(self, plural: str, name: str) -> JSON | None:
        """One object by plural and name, None when it does not exist."""
        group, version = _GROUPS.get(plural, ("", "v1"))
        return self.cluster.get(group, version, plural, self.namespace, name)

    def objects(self, plural: str, selector: str | None = None) -> list[JSON]:
        group, version = _GROUPS.get(plural, ("", "v1"))
        return self.cluster.list_objects(group, version, plural, self.namespace, selector)

    def events(self, *, involving: str | None = None, reason: str | None = None) -> list[JSON]:
        """Events of this namespace, of the object named ``involving`` and with ``reason`` when given."""
        return [event for event in self.objects("events")
                if involving in (None, event.get("involvedObject", {}).get("name"))
                and reason in (None, event.get("reason"))]

    def plugin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``kubectl-clm ARGS`` in this namespace: the console script installed beside this Python."""
        exe = Path(sys.executable).with_name("kubectl-clm")
        return subprocess.run([str(exe), "--kubeconfig", str(self.cluster.kubeconfig), "-n", self.namespace,
                               *args], capture_output=True, text=True, timeout=60, check=False)


def wait_finished(kubectl: Kubectl, name: str, timeout: float = 180.0) -> JSON:
    """The TrainingJob once its phase is Succeeded or Failed (the operator's log tail when it is not)."""

    def finished() -> JSON | None:
        tj = kubectl.get("trainingjobs", name)
        return tj if tj and (tj.get("status") or {}).get("phase") in FINISHED else None

    def explain() -> str:
        status = (kubectl.get("trainingjobs", name) or {}).get("status")
        tail = kubectl.cluster.operator_logs()[-3000:]
        return f"TrainingJob {name} to finish; status {status}\noperator log:\n{tail}"

    found: JSON | None = wait_for(finished, timeout=timeout, interval=0.25, message=explain)
    assert found is not None
    return found


def scrape(cluster: Sandbox) -> str:
    """The operator's /metrics text."""
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.metrics_port}/metrics", timeout=10) as response:
        return str(response.read().decode())


def stages(kubectl: Kubectl, model: str) -> dict[str, str]:
    """version -> stage of the Model's ModelVersions."""
    return {i["spec"]["version"]: (i.get("status") or {}).get("stage", "")
            for i in kubectl.get_json("modelversions")["items"] if i["spec"]["modelName"] == model}


def model_status(kubectl: Kubectl, model: str) -> JSON:
    return dict(kubectl.get_json("model", model).get("status") or {})


def wait_status(kubectl: Kubectl, model: str, predicate: Callable[[JSON], Any], timeout: float = 30.0,
                what: str = "the Model status") -> JSON:
    """The Model's status once ``predicate`` holds for it."""
    last: JSON = {}

    def check() -> JSON | None:
        nonlocal last
        last = model_status(kubectl, model)
        return last if predicate(last) else None

    result: JSON = wait_for(check, timeout=timeout, interval=0.2,
                            message=lambda: f"{what}; last status: {last}")
    return result


def create_version(kubectl: Kubectl, model: str, n: int, *, sharpe: float, passed: bool = True,
                   trained: bool = True, artifact_uri: str | None = None) -> str:
    """The n-th ModelVersion of ``model`` with the status its run leaves after evaluation (Candidate or
    Failed); returns its version."""
    version = model_version_manifest(model, n)
    kubectl.apply(version, check=True)
    status = evaluated_status(sharpe=sharpe, passed=passed, trained=trained, artifact_uri=artifact_uri)
    kubectl("patch", "modelversion", version["metadata"]["name"], "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}), check=True)
    return str(version["spec"]["version"])
