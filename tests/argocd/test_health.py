"""Argo CD: the Lua health checks on sample objects (Lua 5.1, as Argo CD's gopher-lua), the argocd-cm
patch that carries them, and the Application examples."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path
from typing import Any

import jsonschema
import lupa.lua51 as lua51
import pytest
import yaml

from tests.chart.helm import ROOT, crd_json_schemas, load_yaml_docs

ARGOCD = ROOT / "deploy" / "argocd"
HEALTH = ARGOCD / "health"
T0 = "2026-11-23T10:00:00Z"


def _render_module() -> Any:
    spec = importlib.util.spec_from_file_location("render_health_patch", ARGOCD / "render_health_patch.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RENDER = _render_module()


def health(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """Runs the health script the way Argo CD does: a global `obj`, the script returns `hs`."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(RENDER.script(kind))
    assert result is not None, f"{kind} health returned nothing"
    return str(result["status"]), str(result["message"])


def cond(ctype: str, status: str, reason: str = "Because", message: str = "") -> dict[str, Any]:
    return {"type": ctype, "status": status, "reason": reason, "message": message, "lastTransitionTime": T0}


def obj(
    kind: str,
    *,
    status: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    generation: int = 1,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "apiVersion": "clm.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "trading", "generation": generation},
        "spec": spec or {},
    }
    if status is not None:
        result["status"] = status
    return result


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        (None, 1, ("Progressing", "Waiting for the operator to accept the run")),
        (
            {"observedGeneration": 1, "phase": "Running", "conditions": [cond("Accepted", "True")]},
            2,
            ("Progressing", "Waiting for the operator to observe generation 2"),
        ),
        (
            {
                "observedGeneration": 1,
                "phase": "Failed",
                "conditions": [
                    cond("Accepted", "False", "InvalidSpec", "spec.hyperparameters.maxDepthh: unknown")
                ],
            },
            1,
            ("Degraded", "InvalidSpec: spec.hyperparameters.maxDepthh: unknown"),
        ),
        (
            {
                "phase": "Failed",
                "conditions": [
                    cond("Accepted", "True"),
                    cond("Running", "False"),
                    cond("Failed", "True", "BackoffLimitExceeded", "3 attempts"),
                ],
            },
            1,
            ("Degraded", "BackoffLimitExceeded: 3 attempts"),
        ),
        (
            {
                "phase": "Succeeded",
                "modelVersion": "m-v20261123-100000-abcde",
                "conditions": [cond("Accepted", "True"), cond("Complete", "True", "Trained")],
            },
            1,
            ("Healthy", "Trained m-v20261123-100000-abcde"),
        ),
        (
            {"phase": "Succeeded", "conditions": [cond("Complete", "True", "Trained", "ok")]},
            1,
            ("Healthy", "Trained: ok"),
        ),
        (
            {
                "phase": "Running",
                "conditions": [cond("Accepted", "True"), cond("Running", "True", "PodRunning")],
            },
            1,
            ("Progressing", "PodRunning"),
        ),
        ({"phase": "Pending", "conditions": [cond("Accepted", "True")]}, 1, ("Progressing", "Pending")),
        # Without conditions the phase decides.
        ({"phase": "Succeeded"}, 1, ("Healthy", "Succeeded")),
        ({"phase": "Failed", "message": "image not found"}, 1, ("Degraded", "image not found")),
        ({}, 1, ("Progressing", "Pending")),
    ],
    ids=[
        "no-status",
        "generation-behind",
        "invalid-spec",
        "failed",
        "succeeded",
        "succeeded-no-version",
        "running",
        "pending",
        "phase-succeeded",
        "phase-failed",
        "empty-status",
    ],
)
def test_training_job_health(
    status: dict[str, Any] | None, generation: int, expected: tuple[str, str]
) -> None:
    assert health("TrainingJob", obj("TrainingJob", status=status, generation=generation)) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, ("Progressing", "Training")),
        ({"stage": "Training", "conditions": []}, ("Progressing", "Training")),
        ({"conditions": [cond("Trained", "True")]}, ("Progressing", "Training")),
        ({"conditions": [cond("Trained", "True"), cond("Evaluated", "True")]}, ("Healthy", "Candidate")),
        (
            {"conditions": [cond("Trained", "True"), cond("Evaluated", "True"), cond("Shadow", "True")]},
            ("Healthy", "Shadow"),
        ),
        ({"conditions": [cond("Evaluated", "True"), cond("Production", "True")]}, ("Healthy", "Production")),
        ({"conditions": [cond("Production", "False"), cond("Retired", "True")]}, ("Healthy", "Retired")),
        (
            {"conditions": [cond("Trained", "False", "TrainingFailed", "BadData")]},
            ("Degraded", "TrainingFailed: BadData"),
        ),
        (
            {
                "conditions": [
                    cond("Trained", "True"),
                    cond("Evaluated", "False", "CriteriaNotMet", "sharpe < 1.0"),
                ]
            },
            ("Degraded", "CriteriaNotMet: sharpe < 1.0"),
        ),
        # Without conditions the stage decides.
        ({"stage": "Production"}, ("Healthy", "Production")),
        ({"stage": "Failed", "message": "no artifact"}, ("Degraded", "no artifact")),
    ],
    ids=[
        "no-status",
        "training-stage",
        "trained-not-evaluated",
        "candidate",
        "shadow",
        "production",
        "retired",
        "training-failed",
        "criteria-not-met",
        "stage-production",
        "stage-failed",
    ],
)
def test_model_version_health(status: dict[str, Any] | None, expected: tuple[str, str]) -> None:
    assert health("ModelVersion", obj("ModelVersion", status=status)) == expected


@pytest.mark.parametrize(
    ("status", "spec", "generation", "expected"),
    [
        (None, {}, 1, ("Progressing", "Waiting for the operator")),
        (
            {"observedGeneration": 1, "productionVersion": "v1", "conditions": [cond("Ready", "True")]},
            {},
            2,
            ("Progressing", "Waiting for the operator to observe generation 2"),
        ),
        (
            {"productionVersion": "v1", "conditions": [cond("Ready", "True")]},
            {},
            1,
            ("Progressing", "Waiting for the operator to observe generation 1"),
        ),
        (
            {
                "observedGeneration": 3,
                "productionVersion": "v1",
                "conditions": [
                    cond("Ready", "True"),
                    cond("PinAccepted", "False", "PinnedVersionFailedCriteria", "v2 failed its criteria"),
                ],
            },
            {"productionVersion": "v2"},
            3,
            ("Degraded", "PinnedVersionFailedCriteria: v2 failed its criteria"),
        ),
        (
            {"observedGeneration": 1, "productionVersion": "v1", "conditions": [cond("Ready", "True")]},
            {"suspend": True},
            1,
            ("Suspended", "Schedule suspended; production: v1"),
        ),
        (
            {"observedGeneration": 1, "conditions": [cond("Ready", "False", "NoProductionVersion")]},
            {"suspend": True},
            1,
            ("Suspended", "Schedule suspended"),
        ),
        (
            {"observedGeneration": 1, "productionVersion": "v1", "conditions": [cond("Ready", "True")]},
            {},
            1,
            ("Healthy", "Production: v1"),
        ),
        (
            {"observedGeneration": 1, "conditions": [cond("Ready", "True", "Serving")]},
            {},
            1,
            ("Healthy", "Serving"),
        ),
        (
            {
                "observedGeneration": 1,
                "conditions": [cond("Ready", "False", "NoProductionVersion", "policy Manual")],
            },
            {},
            1,
            ("Progressing", "NoProductionVersion: policy Manual"),
        ),
        ({"observedGeneration": 1}, {}, 1, ("Progressing", "No production version yet")),
    ],
    ids=[
        "no-status",
        "generation-behind",
        "never-observed",
        "pin-refused",
        "suspended-serving",
        "suspended-idle",
        "ready",
        "ready-no-version",
        "not-ready",
        "no-conditions",
    ],
)
def test_model_health(
    status: dict[str, Any] | None, spec: dict[str, Any], generation: int, expected: tuple[str, str]
) -> None:
    assert health("Model", obj("Model", status=status, spec=spec, generation=generation)) == expected


def test_argocd_cm_patch_embeds_the_lua_files() -> None:
    patch_file = ARGOCD / "argocd-cm-health.yaml"
    assert patch_file.read_text() == RENDER.render(), "stale: run `make argocd-health`"
    patch = yaml.safe_load(patch_file.read_text())
    assert patch["kind"] == "ConfigMap" and patch["metadata"]["name"] == "argocd-cm"
    for kind in ("TrainingJob", "ModelVersion", "Model"):
        assert (
            patch["data"][f"resource.customizations.health.clm.dev_{kind}"]
            == (HEALTH / "lib.lua").read_text() + "\n" + (HEALTH / f"{kind.lower()}.lua").read_text()
        )


def _application(name: str) -> dict[str, Any]:
    (app,) = load_yaml_docs(ARGOCD / name)
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    return app


def test_operator_application_syncs_the_chart() -> None:
    app = _application("application.yaml")
    source = app["spec"]["source"]
    assert source["path"] == "charts/clm-operator" and (ROOT / source["path"] / "Chart.yaml").is_file()
    policy = app["spec"]["syncPolicy"]
    assert policy["automated"]["selfHeal"] is True
    assert {"CreateNamespace=true", "ServerSideApply=true"} <= set(policy["syncOptions"])
    # The values it sets are valid for the chart's schema.
    schema = yaml.safe_load((ROOT / "charts" / "clm-operator" / "values.schema.json").read_text())
    defaults = yaml.safe_load((ROOT / "charts" / "clm-operator" / "values.yaml").read_text())

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for key, value in over.items():
            out[key] = (
                merge(base[key], value)
                if isinstance(value, dict) and isinstance(base.get(key), dict)
                else value
            )
        return out

    jsonschema.validate(merge(defaults, source["helm"]["valuesObject"]), schema)


def test_models_application_syncs_valid_models() -> None:
    app = _application("models-application.yaml")
    path = ROOT / app["spec"]["source"]["path"]
    assert app["spec"]["syncPolicy"]["automated"]["selfHeal"] is True
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    models = [doc for file in sorted(path.glob("*.yaml")) for doc in load_yaml_docs(file)]
    assert models and all(m["kind"] == "Model" for m in models)
    schema = crd_json_schemas()[("clm.dev/v1alpha1", "Model")]
    for model in models:
        errors = [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft202012Validator(schema).iter_errors(model)
        ]
        assert errors == [], model["metadata"]["name"]


def test_models_validate_with_the_operators_own_model() -> None:
    """Beyond the CRD schema: the pydantic model (cron, hyperparameters per algorithm) accepts them."""
    from clm_contract.model import ModelSpec

    for file in sorted((ROOT / "deploy" / "models").glob("*.yaml")):
        for doc in load_yaml_docs(file):
            ModelSpec.model_validate(doc["spec"])


def test_health_scripts_exist_for_every_kind() -> None:
    assert sorted(p.name for p in HEALTH.glob("*.lua")) == [
        "lib.lua",
        "model.lua",
        "modelversion.lua",
        "trainingjob.lua",
    ]
    assert Path(ARGOCD / "argocd-cm-health.yaml").is_file()


# --- Agreement with the operator's own lifecycle: every combination of condition states -------------

_STATES = (None, "True", "False", "Unknown")


def _conditions(types: tuple[str, ...], states: tuple[str | None, ...]) -> list[dict[str, Any]]:
    return [cond(t, s) for t, s in zip(types, states, strict=True) if s is not None]


def test_training_job_health_agrees_with_the_operators_phase() -> None:
    from clm_contract.conditions import TrainingJobCondition as TJC
    from clm_operator.domain.lifecycle import training_job_phase

    types = (TJC.ACCEPTED, TJC.RUNNING, TJC.COMPLETE, TJC.FAILED)
    expected = {
        "Succeeded": "Healthy",
        "Failed": "Degraded",
        "Running": "Progressing",
        "Pending": "Progressing",
    }
    for states in itertools.product(_STATES, repeat=len(types)):
        conditions = _conditions(types, states)
        phase = str(training_job_phase(conditions))
        status = {"observedGeneration": 1, "phase": phase, "conditions": conditions}
        got, _ = health("TrainingJob", obj("TrainingJob", status=status))
        assert got == expected[phase], f"{states}: phase {phase} but health {got}"


def test_model_version_health_agrees_with_the_operators_stage() -> None:
    from clm_contract.conditions import ModelVersionCondition as MVC
    from clm_operator.domain.lifecycle import model_version_stage

    types = (MVC.TRAINED, MVC.EVALUATED, MVC.SHADOW, MVC.PRODUCTION, MVC.RETIRED)
    expected = {
        "Training": "Progressing",
        "Failed": "Degraded",
        "Candidate": "Healthy",
        "Shadow": "Healthy",
        "Production": "Healthy",
        "Retired": "Healthy",
    }
    for states in itertools.product(_STATES, repeat=len(types)):
        conditions = _conditions(types, states)
        stage = str(model_version_stage(conditions))
        got, message = health(
            "ModelVersion", obj("ModelVersion", status={"stage": stage, "conditions": conditions})
        )
        assert got == expected[stage], f"{states}: stage {stage} but health {got}"
        if got == "Healthy":
            assert message == stage
