"""The real-cluster suite: the chart on kind, one TrainingJob trained to Succeeded.

Runs against the kubeconfig context $CLM_E2E_CONTEXT (default kind-clm, the cluster of
kind-config.yaml) and only that one, so it never touches whatever other cluster is current. Skipped,
with the reason, when that context does not exist or its API server does not answer. Prepare with:
    make kind-up images kind-load && make e2e
(The images must be in the cluster: the chart uses clm-operator:<appVersion>, clm-trainer:<appVersion>
and the development S3 clm-s3:<appVersion>, all IfNotPresent.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = os.environ.get("CLM_E2E_CONTEXT", "kind-clm")
RELEASE = "clm-operator"
SYSTEM_NAMESPACE = "clm-system"
TRAINING_TIMEOUT_S = float(os.environ.get("CLM_E2E_TIMEOUT", "900"))


def _binary(name: str) -> str | None:
    local = ROOT / ".tools" / "bin" / name
    return str(local) if local.is_file() else shutil.which(name)


def _cluster_state() -> str | None:
    """None when the e2e cluster answers, else why not."""
    kubectl = _binary("kubectl")
    if kubectl is None:
        return "kubectl not found (scripts/install-k8s-tools.sh)"
    contexts = subprocess.run(
        [kubectl, "config", "get-contexts", "-o", "name"], capture_output=True, text=True, timeout=30
    )
    if CONTEXT not in contexts.stdout.split():
        return f"no kubeconfig context {CONTEXT} (make kind-up, or set CLM_E2E_CONTEXT)"
    info = subprocess.run(
        [kubectl, "--context", CONTEXT, "cluster-info", "--request-timeout=5s"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if info.returncode != 0:
        return f"cluster {CONTEXT} not reachable: {info.stderr.strip()[:200]}"
    return None


_UNREACHABLE = _cluster_state()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(_UNREACHABLE is not None, reason=f"no e2e cluster: {_UNREACHABLE}"),
]


def run(
    *args: str, stdin: str | None = None, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = _binary("kubectl")
    assert binary is not None
    return run(binary, "--context", CONTEXT, *args, stdin=stdin, check=check)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = _binary("helm")
    assert binary is not None, "helm not found (scripts/install-k8s-tools.sh)"
    return run(binary, "--kube-context", CONTEXT, *args, check=check, timeout=600)


def get(kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    proc = kubectl("-n", namespace, "get", kind, name, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    """The chart (installed unless `make deploy` already did), the development S3, and a fresh
    namespace holding the S3 credentials the training pods reference."""
    kubectl("apply", "-f", str(ROOT / "deploy" / "kind" / "s3.yaml"))
    kubectl("-n", SYSTEM_NAMESPACE, "rollout", "status", "deployment/clm-s3", "--timeout=180s")
    preinstalled = helm("status", RELEASE, "-n", SYSTEM_NAMESPACE, check=False).returncode == 0
    helm(
        "upgrade",
        "--install",
        RELEASE,
        str(ROOT / "charts" / "clm-operator"),
        "-n",
        SYSTEM_NAMESPACE,
        "-f",
        str(ROOT / "deploy" / "kind" / "values-kind.yaml"),
        "--wait",
        "--timeout",
        "5m",
    )
    name = f"clm-e2e-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", name)
    (secret,) = [
        d
        for d in yaml.safe_load_all((ROOT / "deploy" / "kind" / "s3.yaml").read_text())
        if d and d["kind"] == "Secret"
    ]
    secret["metadata"] = {"name": secret["metadata"]["name"], "namespace": name}
    kubectl("apply", "-f", "-", stdin=json.dumps(secret))
    try:
        yield name
    finally:
        kubectl("delete", "namespace", name, "--wait=false", check=False)
        if not preinstalled:
            helm("uninstall", RELEASE, "-n", SYSTEM_NAMESPACE, check=False)


def test_operator_is_running_hardened(namespace: str) -> None:
    pods = json.loads(
        kubectl(
            "-n", SYSTEM_NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/name=clm-operator", "-o", "json"
        ).stdout
    )["items"]
    assert pods, "no operator pod"
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        (container,) = pod["spec"]["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    metrics = kubectl(
        "get", "--raw", f"/api/v1/namespaces/{SYSTEM_NAMESPACE}/services/{RELEASE}:metrics/proxy/metrics"
    ).stdout
    assert "clm_reconciles_total" in metrics or "clm_training_jobs" in metrics


def test_training_job_succeeds_and_records_a_model_version(namespace: str) -> None:
    manifest = {
        "apiVersion": "clm.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "e2e-planted-xgb", "namespace": namespace},
        "spec": {
            "modelName": "e2e-planted",
            "algorithm": "xgboost",
            "dataset": {
                "uri": "builtin:synthetic?kind=planted&strength=1.5&regime=50&seed=7&bars=4500",
                "symbol": "SYNTH",
                "timeframe": "1h",
            },
            "hyperparameters": {"nEstimators": 60, "maxDepth": 3},
            "evaluation": {"folds": 3},
            "resources": {"cpu": "500m", "memory": "1Gi"},
            "trigger": {"reason": "manual", "requestedBy": "e2e"},
        },
    }
    kubectl("apply", "-f", "-", stdin=json.dumps(manifest))
    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = get("trainingjob", "e2e-planted-xgb", namespace) or {}
        status = obj.get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(5)
    assert status.get("phase") == "Succeeded", (
        f"TrainingJob ended as {status.get('phase')}: {status.get('reason')} {status.get('message')}\n"
        + kubectl("-n", namespace, "describe", "trainingjob", "e2e-planted-xgb", check=False).stdout
    )

    version_name = status["modelVersion"]
    version = get("modelversion", version_name, namespace)
    assert version is not None, f"ModelVersion {version_name} missing"
    artifact = version["status"]["artifact"]
    assert artifact["uri"].startswith(f"s3://clm-models/models/{namespace}/e2e-planted/")
    assert len(artifact["sha256"]) == 64 and artifact["sizeBytes"] > 0
    assert version["status"]["stage"] in ("Candidate", "Failed", "Production", "Shadow")
    assert "evaluation" in version["status"]

    # The Job really ran in the cluster, as non-root, read-only, owned by the TrainingJob.
    job = get("job", status["jobName"], namespace)
    assert job is not None
    assert job["metadata"]["ownerReferences"][0]["kind"] == "TrainingJob"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
