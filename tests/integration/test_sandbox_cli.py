"""``clm-sandbox up`` as a user runs it, and the full sandbox's wiring (S3 Secret, the operator's
Helm release: Deployment, ServiceAccount, values)."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from clm_sandbox.cluster import (
    OPERATOR_NAMESPACE,
    OPERATOR_RELEASE,
    S3_ACCESS_KEY,
    S3_SECRET_NAME,
    Sandbox,
    find_kubectl,
)

from tests.support.cluster import Kubectl, wait_for


def test_sandbox_command_serves_until_interrupted(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    work = Path("/var/tmp") / f"clm-sandbox-cli-{tmp_path.name}"  # the CLI keeps a given workdir
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clm_sandbox.cli",
            "up",
            "--no-operator",
            "--no-s3",
            "--ready-file",
            str(ready),
            "--workdir",
            str(work),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(ready.exists, timeout=60, message="the ready file")
        summary = json.loads(ready.read_text())
        assert summary["server"].startswith("https://127.0.0.1:")
        result = subprocess.run(
            [find_kubectl(), "--kubeconfig", summary["kubeconfig"], "get", "namespaces", "-o", "name"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "namespace/default" in result.stdout.split()
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"export KUBECONFIG={work / 'kubeconfig'}" in output
    assert not ready.exists()
    logs = sorted(path.name for path in (work / "logs").glob("*.log"))
    shutil.rmtree(work, ignore_errors=True)
    assert logs == ["etcd.log", "kube-apiserver.log", "kube-controller-manager.log", "nodeagent.log"]


def test_full_sandbox_has_s3_secret_and_the_operator_as_the_charts_deployment(
    sandbox: Sandbox, sandbox_namespace: str, kubectl: Kubectl
) -> None:
    secret = json.loads(kubectl("get", "secret", S3_SECRET_NAME, "-o", "json", check=True).stdout)
    assert set(secret["data"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert base64.b64decode(secret["data"]["AWS_ACCESS_KEY_ID"]).decode() == S3_ACCESS_KEY
    assert sandbox.s3 is not None and sandbox.s3.running
    releases = json.loads(sandbox.helm("list", "--namespace", OPERATOR_NAMESPACE, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [(OPERATOR_RELEASE, "deployed")]
    pod = sandbox.operator_ready()
    assert pod is not None
    # The chart's ServiceAccount, its token projected by the API server, no host credentials.
    assert pod["spec"]["serviceAccountName"] == OPERATOR_RELEASE
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["CLM_S3_ENDPOINT_URL"]["value"] == sandbox.s3.endpoint_url
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == S3_SECRET_NAME
    assert "KUBECONFIG" not in env
    # What the operator may do is what the chart grants its ServiceAccount, nothing more.
    as_operator = f"--as=system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_RELEASE}"
    assert kubectl("auth", "can-i", "create", "jobs.batch", as_operator).stdout.strip() == "yes"
    assert kubectl("auth", "can-i", "get", "secrets", as_operator).stdout.strip() == "no"
    assert kubectl("auth", "can-i", "update", "models.clm.dev", as_operator).stdout.strip() == "no"
    logins = sandbox.operator_logs().count("Initial authentication has finished")
    before = pod["metadata"]["name"]
    sandbox.restart_operator()
    after = sandbox.operator_ready()
    assert after is not None and after["metadata"]["name"] != before
    wait_for(
        lambda: sandbox.operator_logs().count("Initial authentication has finished") > logins,
        timeout=60,
        message=lambda: "the restarted operator to log in: " + sandbox.operator_logs()[-1000:],
    )
