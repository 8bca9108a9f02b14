"""The sandbox is a real Kubernetes control plane: what the project relies on, checked through the real
kubectl (server version, server-side apply, diff, watch tables, list-map conditions, CEL, Pod Security,
RBAC for the admin) and the clean stop of every process."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from clm_sandbox.cluster import Sandbox, find_kubectl

from tests.support.cluster import Kubectl, wait_for
from tests.support.objects import PLANTED, training_job_manifest

REPO = Path(__file__).resolve().parents[2]
BUILT_VERSION = "v1.35.4"  # controlplane/kubernetes/go.mod


# A small run (600 bars, 20 trees, 2 folds): these tests are about the API server, or train once.
SMALL_RUN = {"dataset": {"uri": PLANTED.format(bars=600), "symbol": "BTCUSDT"},
             "hyperparameters": {"nEstimators": 20, "maxDepth": 3},
             "evaluation": {"folds": 2}, "target": None}


def small_run(name: str = "tj-a", **spec: Any) -> dict[str, Any]:
    return training_job_manifest(name, **{**SMALL_RUN, **spec})


def condition(type_: str, status: str = "True", reason: str = "Validated") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


def test_kubectl_version_reports_the_built_server(bare_sandbox: Sandbox) -> None:
    version = json.loads(bare_sandbox.kubectl("version", "-o", "json", check=True).stdout)
    assert version["serverVersion"]["gitVersion"] == BUILT_VERSION
    assert (version["serverVersion"]["major"], version["serverVersion"]["minor"]) == ("1", "35")


def test_server_side_apply_records_the_manager_and_diff_shows_changes(bare_kubectl: Kubectl) -> None:
    manifest = json.dumps(small_run())
    bare_kubectl("apply", "--server-side", "-f", "-", input=manifest, check=True)
    stored = bare_kubectl.get_json("tj", "tj-a", "--show-managed-fields")
    managers = {entry["manager"] for entry in stored["metadata"]["managedFields"]}
    assert "kubectl" in managers and stored["metadata"]["generation"] == 1
    unchanged = bare_kubectl("diff", "--server-side", "-f", "-", input=manifest)
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    changed = small_run()
    changed["metadata"]["labels"] = {"team": "quant"}
    diff = bare_kubectl("diff", "--server-side", "-f", "-", input=json.dumps(changed))
    assert diff.returncode == 1, diff.stderr  # 1: differences found (>1 would be an error)
    assert "+    team: quant" in diff.stdout


def test_a_status_with_two_conditions_of_one_type_is_rejected(bare_kubectl: Kubectl) -> None:
    bare_kubectl("apply", "-f", "-", input=json.dumps(small_run("dup")), check=True)
    twice = [condition("Accepted"), condition("Accepted", "False", "InvalidSpec")]
    status = json.dumps({"status": {"conditions": twice}})
    result = bare_kubectl("patch", "tj", "dup", "--subresource=status", "--type=merge", "-p", status)
    assert result.returncode != 0
    assert "Duplicate value" in result.stderr and "status.conditions" in result.stderr, result.stderr
    one = {"status": {"conditions": [condition("Accepted")]}}
    bare_kubectl("patch", "tj", "dup", "--subresource=status", "--type=merge", "-p", json.dumps(one),
                 check=True)


def test_the_crd_validates_names_the_field_and_cel_keeps_the_spec_immutable(bare_kubectl: Kubectl) -> None:
    broken = small_run("broken", resources={"gpu": -1})
    result = bare_kubectl("apply", "-f", "-", input=json.dumps(broken))
    assert result.returncode != 0 and "spec.resources.gpu" in result.stderr, result.stderr
    bare_kubectl("apply", "-f", "-", input=json.dumps(small_run("fixed")), check=True)
    result = bare_kubectl("patch", "tj", "fixed", "--type=merge", "-p", '{"spec":{"algorithm":"lightgbm"}}')
    assert result.returncode != 0 and "spec is immutable" in result.stderr, result.stderr
    assert bare_kubectl.get_json("tj", "fixed")["spec"]["algorithm"] == "xgboost"
    resources = bare_kubectl("api-resources", "--api-group", "clm.dev", check=True).stdout
    for short in ("tj", "mv", "mdl"):
        assert f" {short} " in resources
    assert bare_kubectl("get", "clm").returncode == 0  # the category


def test_get_tj_watch_shows_the_phase_on_every_update(
    bare_sandbox: Sandbox, bare_namespace: str, bare_kubectl: Kubectl
) -> None:
    bare_kubectl("apply", "-f", "-", input=json.dumps(small_run("watched")), check=True)
    lines: list[str] = []
    process = subprocess.Popen(  # noqa: S603 - the real kubectl, our own arguments
        [find_kubectl(), "--kubeconfig", str(bare_sandbox.kubeconfig), "--namespace", bare_namespace,
         "get", "tj", "watched", "--watch"], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: len(lines) >= 2, timeout=30, message=lambda: f"the first row: {lines}")
        for phase in ("Pending", "Running", "Succeeded"):
            patch = {"status": {"phase": phase}}
            bare_kubectl("patch", "tj", "watched", "--subresource=status", "--type=merge", "-p",
                         json.dumps(patch), check=True)
            wait_for(_row_with(lines, phase), timeout=30, message=f"a row with PHASE {phase}: {lines}")
    finally:
        process.terminate()
        process.wait(timeout=10)
    header, rows = lines[0].split(), [row.split() for row in lines[1:] if row.strip()]
    assert header[:4] == ["NAME", "PHASE", "MODEL", "ALGORITHM"], lines
    assert rows[0][:3] == ["watched", "btc-xgb", "xgboost"], lines  # no status yet: an empty PHASE
    # Every update is a full row (the server sends the table each time), the phase column included.
    updates = rows[1:]
    assert all(row[0] == "watched" and row[2:4] == ["btc-xgb", "xgboost"] for row in updates), lines
    phases = [row[1] for row in updates]
    assert [p for i, p in enumerate(phases) if i == 0 or p != phases[i - 1]] == [
        "Pending", "Running", "Succeeded"], lines


def _row_with(lines: list[str], phase: str) -> Callable[[], bool]:
    return lambda: any(row.split()[1:2] == [phase] for row in lines[1:])


def test_namespaces_enforce_pod_security_restricted(bare_namespace: str, bare_kubectl: Kubectl) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root-pod"},
           "spec": {"containers": [{"name": "c", "image": "clm-trainer:0.1.0", "command": ["true"]}]}}
    result = bare_kubectl("apply", "-f", "-", input=json.dumps(pod))
    assert result.returncode != 0, result.stdout
    assert 'violates PodSecurity "restricted:latest"' in result.stderr, result.stderr
    labels = bare_kubectl.get_json("namespace", bare_namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_admin_is_a_cluster_admin_and_anonymous_requests_are_refused(bare_sandbox: Sandbox) -> None:
    assert bare_sandbox.kubectl("auth", "can-i", "*", "*", "--all-namespaces").stdout.strip() == "yes"
    anonymous = ssl.create_default_context(cafile=str(bare_sandbox.controlplane.ca_file))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{bare_sandbox.url}/api/v1/namespaces", timeout=10, context=anonymous)
    assert refused.value.code == 401


@pytest.mark.timeout(300)
def test_stopping_the_sandbox_stops_every_process() -> None:
    marker = "4711.0815"  # a `sleep` argument no other process on this machine uses
    sandbox = Sandbox(operator=False, s3=False)
    with sandbox:
        namespace = "stop"
        sandbox.create_namespace(namespace)
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "sleeper"},
               "spec": {"backoffLimit": 0, "template": {"spec": {
                   "restartPolicy": "Never",
                   "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                       "seccompProfile": {"type": "RuntimeDefault"}},
                   "containers": [{"name": "sleep", "image": sandbox.trainer_image,
                                   "command": ["sleep", marker],
                                   "securityContext": {"allowPrivilegeEscalation": False,
                                                       "capabilities": {"drop": ["ALL"]}}}]}}}}
        sandbox.kubectl("apply", "-f", "-", input=yaml.safe_dump(job), namespace=namespace, check=True)
        wait_for(lambda: _processes_with(marker), timeout=60, message="the Job's container process")
        pids = [p.pid for p in sandbox.controlplane.processes.values()]
        assert sandbox.node_process is not None
        pids.append(sandbox.node_process.pid)
    assert not _processes_with(marker)
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert not sandbox.workdir.exists()


def _processes_with(argument: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argument.encode() in argv:
            found.append(int(entry.name))
    return found


@pytest.mark.timeout(600)
def test_kubectl_wait_for_complete_on_a_run_trained_under_pod_security_restricted(
    sandbox: Sandbox, sandbox_namespace: str, kubectl: Kubectl
) -> None:
    run = small_run("waited")  # trained for real: 600 bars with a planted signal
    kubectl("apply", "--server-side", "-f", "-", input=json.dumps(run), check=True)
    waited = kubectl("wait", "--for=condition=Complete", "tj/waited", "--timeout=300s", timeout=330)
    assert waited.returncode == 0, waited.stderr + sandbox.operator_logs()[-3000:]
    assert waited.stdout.strip() == "trainingjob.clm.dev/waited condition met"
    # The trainer's pod ran in a namespace that enforces restricted, so the API server admitted it as such.
    labels = kubectl.get_json("namespace", sandbox_namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    (pod,) = kubectl.get_json("pods", "-l", "clm.dev/training-job=waited")["items"]
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
