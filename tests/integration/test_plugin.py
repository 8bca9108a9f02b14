"""kubectl-clm against the sandbox, with its kubeconfig: as a console script and as a kubectl plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from clm_sandbox.cluster import Sandbox, find_kubectl

from tests.support.cluster import (
    MODEL_TESTS,
    Kubectl,
    cluster_fixture,
    create_version,
    namespace_fixture,
    wait_status,
)
from tests.support.objects import PENDING_TEMPLATE, model_manifest

pytestmark = pytest.mark.timeout(120)

env = cluster_fixture(**MODEL_TESTS)
namespace = namespace_fixture("plug")


@pytest.fixture
def kubectl(namespace: Kubectl) -> Kubectl:
    """A namespace with the Model eth (Manual policy; its runs stay pending)."""
    namespace.apply(model_manifest("eth", policy="Manual", template=PENDING_TEMPLATE), check=True)
    return namespace


def test_versions_promote_status_and_rollback(kubectl: Kubectl) -> None:
    v1 = create_version(kubectl, "eth", 1, sharpe=1.25)
    v2 = create_version(kubectl, "eth", 2, sharpe=0.3, passed=False)

    table = kubectl.plugin("versions", "eth")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0] == ["VERSION", "STAGE", "SHARPE", "SCORE", "AGE"]
    assert [r[:3] for r in rows[1:]] == [[v2, "Failed", "0.30"], [v1, "Candidate", "1.25"]]

    promoted = kubectl.plugin("promote", "eth", v1)
    assert promoted.returncode == 0, promoted.stderr
    assert kubectl.get_json("model", "eth")["spec"]["productionVersion"] == v1
    status = wait_status(kubectl, "eth", lambda s: s.get("productionVersion") == v1)
    # The history names the real promoter: the plugin's field manager in managedFields.
    assert status["history"][-1]["by"] == "spec.productionVersion (kubectl-clm)", status["history"]

    # Promoting a Failed version: the pin is written (it is the user's spec) with a warning, and the
    # operator refuses it with a condition.
    warned = kubectl.plugin("promote", "eth", f"eth-{v2}")
    assert warned.returncode == 0 and "allow-failed-promotion" in warned.stdout
    wait_status(kubectl, "eth", lambda s: any(c.get("reason") == "PinnedVersionFailedCriteria"
                                              for c in s.get("conditions", [])))
    status = kubectl.plugin("status", "eth")
    assert status.returncode == 0, status.stderr
    assert f"Production:  {v1}" in status.stdout and "PinnedVersionFailedCriteria" in status.stdout
    assert f"Pinned:      {v2}" in status.stdout

    no_previous = kubectl.plugin("rollback", "eth")
    assert no_previous.returncode == 1
    assert "previousProductionVersion" in no_previous.stderr
    assert "kubectl clm promote eth" in no_previous.stderr


def test_train_creates_a_manual_run_from_the_template(env: Sandbox,
                                                      kubectl: Kubectl) -> None:
    result = kubectl.plugin("train", "eth", "--note", "new listing data")
    assert result.returncode == 0, result.stderr
    (run,) = kubectl.get_json("trainingjobs")["items"]
    assert run["metadata"]["name"] in result.stdout
    assert run["spec"]["modelName"] == "eth"
    assert run["spec"]["trigger"]["reason"] == "manual"
    assert run["spec"]["trigger"]["note"] == "new listing data"
    assert run["spec"]["trigger"]["requestedBy"].startswith("kubectl-clm")


def test_errors_name_the_object_and_the_fix(env: Sandbox,
                                            kubectl: Kubectl) -> None:
    cluster, ns = env, kubectl.namespace
    missing = kubectl.plugin("status", "nope")
    assert missing.returncode == 1 and missing.stdout == ""
    assert "Model 'nope' not found" in missing.stderr and f"kubectl get mdl -n {ns}" in missing.stderr
    bad_version = kubectl.plugin("promote", "eth", "v1")
    assert bad_version.returncode == 1
    assert "has no version 'v1'" in bad_version.stderr and "kubectl clm versions eth" in bad_version.stderr
    no_config = subprocess.run([str(Path(sys.executable).with_name("kubectl-clm")), "--kubeconfig",
                                str(cluster.workdir / "missing-kubeconfig"), "status", "eth"],
                               capture_output=True, text=True, timeout=60, check=False)
    assert no_config.returncode == 1 and "--kubeconfig" in no_config.stderr
    empty = kubectl.plugin("versions", "eth")
    assert empty.returncode == 0 and "kubectl clm train eth" in empty.stdout


def test_runs_as_a_kubectl_plugin(env: Sandbox, kubectl: Kubectl) -> None:
    v1 = create_version(kubectl, "eth", 1, sharpe=1.0)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = subprocess.run(
        [find_kubectl(), "clm", "versions", "eth", "--kubeconfig", str(env.kubeconfig),
         "-n", kubectl.namespace], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PATH": path})
    assert result.returncode == 0, result.stderr
    assert v1 in result.stdout
