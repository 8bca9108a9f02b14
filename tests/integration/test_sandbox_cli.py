"""``clm-operator sandbox`` as a user runs it, and the full sandbox's wiring (S3 Secret, operator process)."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
from pathlib import Path

from clm_operator.sandbox.cluster import (
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    S3_SECRET_NAME,
    Sandbox,
    find_kubectl,
    wait_for,
)

from tests.fixtures.sandbox import Kubectl


def test_sandbox_command_serves_until_interrupted(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clm_operator.cli",
            "sandbox",
            "--no-operator",
            "--no-s3",
            "--ready-file",
            str(ready),
            "--workdir",
            str(tmp_path / "work"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(ready.exists, timeout=60, message="the ready file")
        summary = json.loads(ready.read_text())
        assert summary["server"].startswith("http://127.0.0.1:")
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
    assert f"export KUBECONFIG={tmp_path / 'work' / 'kubeconfig'}" in output
    assert not ready.exists()


def test_full_sandbox_has_s3_secret_and_a_restartable_operator(
    sandbox: Sandbox, sandbox_namespace: str, kubectl: Kubectl
) -> None:
    secret = json.loads(kubectl("get", "secret", S3_SECRET_NAME, "-o", "json", check=True).stdout)
    assert set(secret["data"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert base64.b64decode(secret["data"]["AWS_ACCESS_KEY_ID"]).decode() == "sandbox-access-key"
    assert sandbox.s3 is not None and sandbox.s3.running
    env = sandbox.operator_environment()
    assert (
        env["KUBECONFIG"] == str(sandbox.kubeconfig) and env["CLM_S3_ENDPOINT_URL"] == sandbox.s3.endpoint_url
    )
    # The operator reads S3 itself: the sandbox's keys, not the host's.
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (S3_ACCESS_KEY, S3_SECRET_KEY)
    before = sandbox.operator_process
    logins = sandbox.operator_logs().count("Initial authentication has finished")
    assert before is not None and before.poll() is None, sandbox.operator_logs()[-2000:]
    sandbox.restart_operator()
    after = sandbox.operator_process
    assert after is not None and after.pid != before.pid and before.poll() is not None
    wait_for(
        lambda: (
            after.poll() is None
            and sandbox.operator_logs().count("Initial authentication has finished") > logins
        ),
        timeout=60,
        message=lambda: "the restarted operator to log in: " + sandbox.operator_logs()[-1000:],
    )
