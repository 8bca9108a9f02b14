"""kubectl-clm against the sandbox, with its kubeconfig: as a console script and as a kubectl plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from clm_operator.sandbox.cluster import Sandbox, find_kubectl

from tests.integration.model_support import (
    NamespacedKubectl,
    create_version,
    get_json,
    model_manifest,
    model_sandbox,
    namespace_in,
    plugin,
    wait_status,
)

pytestmark = pytest.mark.timeout(120)
PENDING_TEMPLATE = {"image": "registry.invalid/clm-trainer:absent", "startupTimeoutSeconds": 100_000_000}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Path, int, int]]:
    with model_sandbox(tmp_path_factory.mktemp("plugin")) as running:
        yield running


@pytest.fixture
def kubectl(env: tuple[Sandbox, Path, int, int]) -> Iterator[NamespacedKubectl]:
    with namespace_in(env[0], "plug") as k:
        manifest = yaml.safe_load(model_manifest("eth", policy="Manual"))
        manifest["spec"]["template"].update(PENDING_TEMPLATE)
        k("apply", "-f", "-", input=json.dumps(manifest), check=True)
        yield k


def test_versions_promote_status_and_rollback(env: tuple[Sandbox, Path, int, int],
                                              kubectl: NamespacedKubectl) -> None:
    cluster, ns = env[0], kubectl.namespace
    v1 = create_version(kubectl, "eth", 1, sharpe=1.25)
    v2 = create_version(kubectl, "eth", 2, sharpe=0.3, passed=False)

    table = plugin(cluster, ns, "versions", "eth")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0] == ["VERSION", "STAGE", "SHARPE", "SCORE", "AGE"]
    assert [r[:3] for r in rows[1:]] == [[v2, "Failed", "0.30"], [v1, "Candidate", "1.25"]]

    promoted = plugin(cluster, ns, "promote", "eth", v1)
    assert promoted.returncode == 0, promoted.stderr
    assert get_json(kubectl, "model", "eth")["spec"]["productionVersion"] == v1
    status = wait_status(kubectl, "eth", lambda s: s.get("productionVersion") == v1)
    # The history names the real promoter: the plugin's field manager in managedFields.
    assert status["history"][-1]["by"] == "spec.productionVersion (kubectl-clm)", status["history"]

    # Promoting a Failed version: the pin is written (it is the user's spec) with a warning, and the
    # operator refuses it with a condition.
    warned = plugin(cluster, ns, "promote", "eth", f"eth-{v2}")
    assert warned.returncode == 0 and "allow-failed-promotion" in warned.stdout
    wait_status(kubectl, "eth", lambda s: any(c.get("reason") == "PinnedVersionFailedCriteria"
                                              for c in s.get("conditions", [])))
    status = plugin(cluster, ns, "status", "eth")
    assert status.returncode == 0, status.stderr
    assert f"Production:  {v1}" in status.stdout and "PinnedVersionFailedCriteria" in status.stdout
    assert f"Pinned:      {v2}" in status.stdout

    no_previous = plugin(cluster, ns, "rollback", "eth")
    assert no_previous.returncode == 1
    assert "previousProductionVersion" in no_previous.stderr
    assert "kubectl clm promote eth" in no_previous.stderr


def test_train_creates_a_manual_run_from_the_template(env: tuple[Sandbox, Path, int, int],
                                                      kubectl: NamespacedKubectl) -> None:
    result = plugin(env[0], kubectl.namespace, "train", "eth", "--note", "new listing data")
    assert result.returncode == 0, result.stderr
    (run,) = get_json(kubectl, "trainingjobs")["items"]
    assert run["metadata"]["name"] in result.stdout
    assert run["spec"]["modelName"] == "eth"
    assert run["spec"]["trigger"]["reason"] == "manual"
    assert run["spec"]["trigger"]["note"] == "new listing data"
    assert run["spec"]["trigger"]["requestedBy"].startswith("kubectl-clm")


def test_errors_name_the_object_and_the_fix(env: tuple[Sandbox, Path, int, int],
                                            kubectl: NamespacedKubectl) -> None:
    cluster, ns = env[0], kubectl.namespace
    missing = plugin(cluster, ns, "status", "nope")
    assert missing.returncode == 1 and missing.stdout == ""
    assert "Model 'nope' not found" in missing.stderr and f"kubectl get mdl -n {ns}" in missing.stderr
    bad_version = plugin(cluster, ns, "promote", "eth", "v1")
    assert bad_version.returncode == 1
    assert "has no version 'v1'" in bad_version.stderr and "kubectl clm versions eth" in bad_version.stderr
    no_config = subprocess.run([str(Path(sys.executable).with_name("kubectl-clm")), "--kubeconfig",
                                str(cluster.workdir / "missing-kubeconfig"), "status", "eth"],
                               capture_output=True, text=True, timeout=60, check=False)
    assert no_config.returncode == 1 and "--kubeconfig" in no_config.stderr
    empty = plugin(cluster, ns, "versions", "eth")
    assert empty.returncode == 0 and "kubectl clm train eth" in empty.stdout


def test_runs_as_a_kubectl_plugin(env: tuple[Sandbox, Path, int, int], kubectl: NamespacedKubectl) -> None:
    v1 = create_version(kubectl, "eth", 1, sharpe=1.0)
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = subprocess.run(
        [find_kubectl(), "clm", "versions", "eth", "--kubeconfig", str(env[0].kubeconfig),
         "-n", kubectl.namespace], capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PATH": path})
    assert result.returncode == 0, result.stderr
    assert v1 in result.stdout
