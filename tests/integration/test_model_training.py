"""End to end in the sandbox: two real (small) trainings of one Model, and AutoProduction serves the
better one by promotion score."""

from __future__ import annotations

import json
from typing import Any

import pytest
from clm_sandbox.cluster import Sandbox

from tests.support.cluster import (
    MODEL_TESTS,
    Kubectl,
    cluster_fixture,
    namespace_fixture,
    wait_for,
    wait_status,
)
from tests.support.objects import model_manifest

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]


env = cluster_fixture(**MODEL_TESTS)


kubectl = namespace_fixture("train")


def training_job(name: str, model: dict[str, Any], seed: int) -> str:
    """A run applied by hand, as a user would: the Model's template and its promotion criteria."""
    spec = json.loads(json.dumps(model["spec"]["template"]))
    spec["modelName"] = "btc"
    spec["evaluation"]["criteria"] = model["spec"]["promotion"]["criteria"]
    spec["dataset"]["uri"] = f"builtin:synthetic?kind=planted&strength=1.5&regime=50&seed={seed}&bars=600"
    return json.dumps({"apiVersion": "clm.dev/v1alpha1", "kind": "TrainingJob",
                       "metadata": {"name": name}, "spec": spec})


def test_two_trainings_and_the_better_one_serves(env: Sandbox,
                                                 kubectl: Kubectl) -> None:
    model = model_manifest("btc")
    kubectl.apply(model, check=True)
    for name, seed in (("btc-a", 7), ("btc-b", 11)):
        kubectl("apply", "-f", "-", input=training_job(name, model, seed), check=True)

    def finished() -> list[dict[str, Any]] | None:
        items = kubectl.get_json("trainingjobs")["items"]
        phases = [(i.get("status") or {}).get("phase") for i in items]
        if any(p == "Failed" for p in phases):
            raise AssertionError(f"a training failed: {[i.get('status') for i in items]}\n"
                                 f"{env.operator_logs()[-4000:]}")
        return items if phases == ["Succeeded", "Succeeded"] else None

    wait_for(finished, timeout=240, interval=0.5, message="both trainings to succeed")

    def evaluated() -> list[dict[str, Any]] | None:
        items = [mv for mv in kubectl.get_json("modelversions")["items"]
                 if (mv.get("status") or {}).get("evaluation")]
        return items if len(items) == 2 else None

    versions = wait_for(evaluated, timeout=30, message="two evaluated versions")
    passing = [mv for mv in versions if mv["status"]["evaluation"]["passed"]]
    # Both pass the permissive criteria (deterministic under the seeds), so the choice is by score.
    assert len(passing) == 2, [mv["status"]["evaluation"] for mv in versions]
    assert passing[0]["status"]["evaluation"]["score"] != passing[1]["status"]["evaluation"]["score"]
    best = max(passing, key=lambda mv: (mv["status"]["evaluation"]["score"], mv["spec"]["version"]))
    best_version = best["spec"]["version"]
    status = wait_status(kubectl, "btc", lambda s: s.get("productionVersion") == best_version, timeout=30,
                         what=f"{best_version} (score {best['status']['evaluation']['score']}) serving")
    assert status["history"][-1]["to"] == best_version

    def stage_map() -> dict[str, str]:
        return {mv["spec"]["version"]: (mv.get("status") or {}).get("stage", "")
                for mv in kubectl.get_json("modelversions")["items"]}

    wait_for(lambda: list(stage_map().values()).count("Production") == 1
             and stage_map()[best_version] == "Production", timeout=20,
             message=lambda: f"stages {stage_map()}")
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "True"
