"""Model promotion in the sandbox: policy, pins, rollback, refusals (ModelVersions created with a filled
status: these tests are about the policy, not about training; test_model_training.py trains for real)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from clm_sandbox.cluster import Sandbox

from tests.support.cluster import (
    MODEL_TESTS,
    Kubectl,
    cluster_fixture,
    create_version,
    model_status,
    namespace_fixture,
    scrape,
    stages,
    wait_for,
    wait_status,
)
from tests.support.objects import model_manifest

pytestmark = pytest.mark.timeout(180)


env = cluster_fixture(**MODEL_TESTS)


kubectl = namespace_fixture("promo")


def only_one_production(kubectl: Any, model: str) -> str:
    current = stages(kubectl, model)
    production = [v for v, s in current.items() if s == "Production"]
    assert len(production) == 1, current
    return production[0]


def test_auto_production_promotes_the_better_version_and_retires_the_replaced(
        kubectl: Kubectl) -> None:
    kubectl.apply(model_manifest("auto"), check=True)
    v1 = create_version(kubectl, "auto", 1, sharpe=1.0)
    wait_status(kubectl, "auto", lambda s: s.get("productionVersion") == v1, what=f"{v1} in production")
    v2 = create_version(kubectl, "auto", 2, sharpe=1.6)
    status = wait_status(kubectl, "auto", lambda s: s.get("productionVersion") == v2, what=f"{v2} promoted")
    assert status["previousProductionVersion"] == v1
    wait_for(lambda: stages(kubectl, "auto") == {v1: "Retired", v2: "Production"}, timeout=20,
             message=lambda: f"stages {stages(kubectl, 'auto')}")
    assert [(h.get("from"), h["to"], h["reason"]) for h in status["history"]] == \
        [(None, v1, "Promoted"), (v1, v2, "Promoted")]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "ProductionServing")
    # A worse newcomer stays a Candidate.
    v3 = create_version(kubectl, "auto", 3, sharpe=0.4)
    status = wait_status(kubectl, "auto", lambda s: s.get("candidateVersion") == v3, what=f"{v3} candidate")
    assert status["productionVersion"] == v2
    assert stages(kubectl, "auto")[v3] == "Candidate"
    assert wait_for(lambda: len(kubectl.events(reason="ModelPromoted")) >= 2, timeout=10)
    # The operator wrote only the status: the spec is what was applied.
    model = kubectl.get_json("model", "auto")
    assert "productionVersion" not in model["spec"] and model["metadata"]["generation"] == 1
    # Versions are adopted by their Model.
    mv = kubectl.get_json("modelversion", f"auto-{v1}")
    assert mv["metadata"]["ownerReferences"][0]["kind"] == "Model"


def test_manual_policy_serves_nothing_until_pinned_then_the_pin(kubectl: Kubectl) -> None:
    kubectl.apply(model_manifest("man", policy="Manual"), check=True)
    v1 = create_version(kubectl, "man", 1, sharpe=2.0)
    v2 = create_version(kubectl, "man", 2, sharpe=1.0)
    status = wait_status(kubectl, "man", lambda s: s.get("candidateVersion") == v1, what="candidate chosen")
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "False" and "spec.productionVersion" in ready["message"]
    assert "Production" not in stages(kubectl, "man").values()
    kubectl("patch", "model", "man", "--type=merge", "-p", json.dumps({"spec": {"productionVersion": v2}}),
            check=True)
    status = wait_status(kubectl, "man", lambda s: s.get("productionVersion") == v2, what="pin applied")
    assert status["history"][-1]["by"].startswith("spec.productionVersion")
    pin = {c["type"]: c for c in status["conditions"]}["PinAccepted"]
    assert (pin["status"], pin["reason"]) == ("True", "PinApplied")
    wait_for(lambda: only_one_production(kubectl, "man") == v2, timeout=20)


def test_rollback_with_the_plugin_restores_the_previous_version(env: Sandbox,
                                                                kubectl: Kubectl) -> None:
    kubectl.apply(model_manifest("rb"), check=True)
    v1 = create_version(kubectl, "rb", 1, sharpe=1.0)
    wait_status(kubectl, "rb", lambda s: s.get("productionVersion") == v1)
    v2 = create_version(kubectl, "rb", 2, sharpe=1.8)
    wait_status(kubectl, "rb", lambda s: s.get("productionVersion") == v2)

    result = kubectl.plugin("rollback", "rb")
    assert result.returncode == 0, result.stderr
    assert f"pinned to {v1}" in result.stdout
    assert kubectl.get_json("model", "rb")["spec"]["productionVersion"] == v1
    status = wait_status(kubectl, "rb", lambda s: s.get("productionVersion") == v1, what="rolled back")
    moves = [(h.get("from"), h["to"], h["reason"]) for h in status["history"]]
    assert moves == [(None, v1, "Promoted"), (v1, v2, "Promoted"), (v2, v1, "RolledBack")]
    assert status["previousProductionVersion"] == v2
    wait_for(lambda: stages(kubectl, "rb") == {v1: "Production", v2: "Retired"}, timeout=20,
             message=lambda: f"stages {stages(kubectl, 'rb')}")
    assert wait_for(lambda: kubectl.events(reason="ModelRolledBack"), timeout=10)
    # The status command shows both moves.
    shown = kubectl.plugin("status", "rb")
    assert shown.returncode == 0, shown.stderr
    history = shown.stdout.split("History:")[1]
    assert "RolledBack" in history and history.count("Promoted") == 2
    # Removing the pin keeps the rolled-back version serving: the replaced one is Retired, not eligible.
    kubectl("patch", "model", "rb", "--type=json", "-p", '[{"op":"remove","path":"/spec/productionVersion"}]',
            check=True)
    wait_for(lambda: "PinAccepted" not in {c["type"] for c in model_status(kubectl, "rb")["conditions"]},
             timeout=20)
    assert model_status(kubectl, "rb")["productionVersion"] == v1


def test_concurrent_pins_leave_exactly_one_production(kubectl: Kubectl) -> None:
    kubectl.apply(model_manifest("race", policy="Manual"), check=True)
    versions = [create_version(kubectl, "race", n, sharpe=1.0 + n / 10) for n in range(1, 5)]
    procs = [subprocess.Popen(
        [*kubectl.argv, "patch", "model", "race", "--type=merge",
         "-p", json.dumps({"spec": {"productionVersion": v}})],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for v in versions]
    for p in procs:
        assert p.wait(timeout=60) == 0
    final = kubectl.get_json("model", "race")["spec"]["productionVersion"]
    wait_status(kubectl, "race", lambda s: s.get("productionVersion") == final, what=f"{final} serving")
    wait_for(lambda: only_one_production(kubectl, "race") == final, timeout=20,
             message=lambda: f"stages {stages(kubectl, 'race')}")


def test_failed_pin_is_refused_with_a_condition_until_overridden(kubectl: Kubectl) -> None:
    kubectl.apply(model_manifest("strict"), check=True)
    good = create_version(kubectl, "strict", 1, sharpe=1.2)
    bad = create_version(kubectl, "strict", 2, sharpe=0.1, passed=False)
    wait_status(kubectl, "strict", lambda s: s.get("productionVersion") == good)
    kubectl("patch", "model", "strict", "--type=merge",
            "-p", json.dumps({"spec": {"productionVersion": bad}}), check=True)

    def refused(s: dict[str, Any]) -> bool:
        pin = {c["type"]: c for c in s.get("conditions", [])}.get("PinAccepted")
        return bool(pin and pin["reason"] == "PinnedVersionFailedCriteria")

    status = wait_status(kubectl, "strict", refused, what="pin refused")
    pin = {c["type"]: c for c in status["conditions"]}["PinAccepted"]
    assert pin["status"] == "False"
    assert bad in pin["message"] and "clm.dev/allow-failed-promotion" in pin["message"]
    assert status["productionVersion"] == good
    assert stages(kubectl, "strict") == {good: "Production", bad: "Failed"}
    assert wait_for(lambda: kubectl.events(reason="PinnedVersionFailedCriteria"), timeout=10)

    kubectl("annotate", "model", "strict", f"clm.dev/allow-failed-promotion={bad}", check=True)
    status = wait_status(kubectl, "strict", lambda s: s.get("productionVersion") == bad, what="override")
    pin = {c["type"]: c for c in status["conditions"]}["PinAccepted"]
    assert (pin["status"], pin["reason"]) == ("True", "PinnedFailedVersionOverride")
    wait_for(lambda: stages(kubectl, "strict") == {good: "Retired", bad: "Production"}, timeout=20)


def test_pin_of_a_missing_version_names_it(kubectl: Kubectl) -> None:
    kubectl.apply(model_manifest("ghost", policy="Manual", extra_spec={
        "productionVersion": "v20990101-000000-zzzzz"}), check=True)
    status = wait_status(kubectl, "ghost",
                         lambda s: any(c["type"] == "PinAccepted" for c in s.get("conditions", [])))
    pin = {c["type"]: c for c in status["conditions"]}["PinAccepted"]
    assert (pin["status"], pin["reason"]) == ("False", "PinnedVersionNotFound")
    assert "v20990101-000000-zzzzz" in pin["message"]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "False"


def test_metrics_report_the_serving_version(env: Sandbox,
                                            kubectl: Kubectl) -> None:
    kubectl.apply(model_manifest("metered"), check=True)
    v1 = create_version(kubectl, "metered", 1, sharpe=1.1)
    wait_status(kubectl, "metered", lambda s: s.get("productionVersion") == v1)
    ns = kubectl.namespace

    expected = [
        f'clm_model_production_version_info{{model="metered",namespace="{ns}",version="{v1}"}} 1.0',
        f'clm_model_has_production{{model="metered",namespace="{ns}"}} 1.0',
        f'clm_promotions_total{{model="metered",namespace="{ns}"}} 1.0',
    ]
    wait_for(lambda: all(line in scrape(env) for line in expected), timeout=10,
             message=lambda: "metrics " + "\n".join(x for x in scrape(env).splitlines() if "metered" in x))
