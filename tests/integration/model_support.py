"""Shared set-up of the Model integration tests: a sandbox whose operator has a controllable clock, a
fast schedule timer, a webhook port and token, and S3 credentials; helpers to create Models and
ModelVersions with a filled status (for tests about policy rather than training)."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from clm_operator.clock import set_fake_now
from clm_operator.domain.promotion import promotion_score
from clm_operator.sandbox.cluster import Sandbox, wait_for

WEBHOOK_TOKEN = "test-webhook-token"
TRAINER_IMAGE = "clm-trainer:local"
SYNTHETIC = "builtin:synthetic?kind=planted&strength=1.5&regime=50&seed=7&bars=600"


@contextmanager
def model_sandbox(tmp: Path, start: datetime | None = None) -> Iterator[tuple[Sandbox, Path, int, int]]:
    """(sandbox, clock file, webhook port, metrics port); the clock starts at ``start`` (default: now).

    The clock lives in the sandbox's workdir: the operator's pod mounts an emptyDir over /tmp, where
    ``tmp`` (pytest's) is."""
    cluster = Sandbox(
        fake_clock=True,
        trainer_image=TRAINER_IMAGE,
        operator_env={"CLM_SCHEDULE_INTERVAL_SECONDS": "0.5", "CLM_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
                      "CLM_WEBHOOK_HOST": "127.0.0.1", "CLM_RESYNC_SECONDS": "1"},
    )
    assert cluster.clock_file is not None
    set_fake_now(cluster.clock_file, start or datetime.now(UTC))
    with cluster:
        wait_until_listening(cluster, cluster.metrics_port, cluster.webhook_port)
        yield cluster, cluster.clock_file, cluster.webhook_port, cluster.metrics_port


def wait_until_listening(cluster: Sandbox, *ports: int, timeout: float = 60.0) -> None:
    """The operator process is up once its metrics and webhook ports accept connections."""

    def listening() -> bool:
        for port in ports:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
        return True

    wait_for(listening, timeout=timeout, interval=0.2,
             message=lambda: f"the operator's ports {ports}; log tail:\n{cluster.operator_logs()[-3000:]}")


class NamespacedKubectl:
    """The real kubectl against the sandbox, in one namespace (``argv`` to launch several at once)."""

    def __init__(self, cluster: Sandbox, namespace: str) -> None:
        from clm_operator.sandbox.cluster import find_kubectl

        self.cluster, self.namespace = cluster, namespace
        self.argv = [find_kubectl(), "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace]

    def __call__(self, *args: str, input: str | None = None, check: bool = False,
                 timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, input=input, check=check, timeout=timeout,
                                    namespace=self.namespace)


_namespaces = iter(range(1, 1_000_000))


@contextmanager
def namespace_in(cluster: Sandbox, prefix: str) -> Iterator[NamespacedKubectl]:
    namespace = f"{prefix}-{next(_namespaces)}"
    cluster.create_namespace(namespace)
    try:
        yield NamespacedKubectl(cluster, namespace)
    finally:
        cluster.delete_namespace(namespace)


def plugin(cluster: Sandbox, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """kubectl-clm, the console script installed beside this Python."""
    import sys

    exe = Path(sys.executable).with_name("kubectl-clm")
    return subprocess.run([str(exe), "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, *args],
                          capture_output=True, text=True, timeout=60, check=False)


def model_manifest(name: str, *, policy: str = "AutoProduction", suspend: bool = True,
                   schedule: str | None = None, extra_spec: dict[str, Any] | None = None,
                   annotations: dict[str, str] | None = None, bars_uri: str = SYNTHETIC) -> str:
    spec: dict[str, Any] = {
        "template": {
            "algorithm": "xgboost",
            "dataset": {"uri": bars_uri, "symbol": "SYN", "timeframe": "1h"},
            "hyperparameters": {"nEstimators": 20, "maxDepth": 3},
            "evaluation": {"folds": 2},
            "image": TRAINER_IMAGE,
            "resources": {"cpu": "500m", "memory": "512Mi"},
        },
        "suspend": suspend,
        "promotion": {"policy": policy,
                      "criteria": {"minSharpe": 0.0, "minWinRate": 0.0, "minProfitFactor": 0.0,
                                   "maxDrawdown": 1.0, "minTrades": 0, "minDsr": 0.0}},
    }
    if schedule is not None:
        spec["schedule"] = schedule
    spec.update(extra_spec or {})
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return yaml.safe_dump({"apiVersion": "clm.dev/v1alpha1", "kind": "Model", "metadata": meta, "spec": spec})


def version_string(n: int) -> str:
    return f"v20260101-{n:06d}-abcde"


def create_version(kubectl: Any, model: str, n: int, *, sharpe: float, passed: bool = True,
                   trained: bool = True, artifact_uri: str | None = None) -> str:
    """A ModelVersion as the TrainingJob handler leaves it after evaluation (Candidate or Failed)."""
    version = version_string(n)
    name = f"{model}-{version}"
    mv = {"apiVersion": "clm.dev/v1alpha1", "kind": "ModelVersion",
          "metadata": {"name": name, "labels": {"clm.dev/model": model}},
          "spec": {"modelName": model, "version": version, "algorithm": "xgboost",
                   "trainingJobRef": {"name": f"{model}-run-{n}"}}}
    kubectl("apply", "-f", "-", input=yaml.safe_dump(mv), check=True)
    score = promotion_score(sharpe, 0.55, 1.5)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [{"type": "Trained", "status": "True" if trained else "False",
                   "reason": "TrainerSucceeded" if trained else "BackoffLimitExceeded", "message": "",
                   "lastTransitionTime": now}]
    status: dict[str, Any] = {"conditions": conditions}
    if trained:
        conditions.append({"type": "Evaluated", "status": "True" if passed else "False",
                           "reason": "CriteriaMet" if passed else "CriteriaNotMet", "message": "",
                           "lastTransitionTime": now})
        status["evaluation"] = {"passed": passed, "score": score,
                                "failedCriteria": [] if passed else ["sharpe: 0.1 (needs >= 1)"]}
        status["metrics"] = {"backtest": {
            "sharpe": sharpe, "sortino": sharpe, "maxDrawdown": 0.1, "winRate": 0.55, "profitFactor": 1.5,
            "trades": 80, "totalReturn": 0.2, "exposure": 0.5, "psr": 0.9, "dsr": 0.8, "bars": 600,
            "periodsPerYear": 8760.0}}
        if artifact_uri:
            status["artifact"] = {"uri": artifact_uri, "sha256": "0" * 64, "sizeBytes": 10, "format": "ubj"}
    status["stage"] = ("Candidate" if passed else "Failed") if trained else "Failed"
    kubectl("patch", "modelversion", name, "--subresource=status", "--type=merge",
            "-p", json.dumps({"status": status}), check=True)
    return version


def get_json(kubectl: Any, *args: str) -> dict[str, Any]:
    out = kubectl("get", *args, "-o", "json", check=True)
    return dict(json.loads(out.stdout))


def stages(kubectl: Any, model: str) -> dict[str, str]:
    items = get_json(kubectl, "modelversions")["items"]
    return {i["spec"]["version"]: (i.get("status") or {}).get("stage", "")
            for i in items if i["spec"]["modelName"] == model}


def model_status(kubectl: Any, model: str) -> dict[str, Any]:
    return dict(get_json(kubectl, "model", model).get("status") or {})


def wait_status(kubectl: Any, model: str, predicate: Any, timeout: float = 30.0,
                what: str = "the Model status") -> dict[str, Any]:
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        nonlocal last
        last = model_status(kubectl, model)
        return last if predicate(last) else None

    result = wait_for(check, timeout=timeout, interval=0.2, message=lambda: f"{what}; last status: {last}")
    return dict(result)


def events(kubectl: Any, reason: str) -> list[dict[str, Any]]:
    return [e for e in get_json(kubectl, "events")["items"] if e.get("reason") == reason]
