"""The generated CRDs: valid CustomResourceDefinitions, structural schemas, the bounds of the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from clm_contract import crdgen

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("$ref", "anyOf", "oneOf", "allOf", "not", "definitions", "$defs", "default", "title", "const")


def load(plural: str) -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "crds" / f"clm.dev_{plural}.yaml").read_text()))


def schema(plural: str) -> dict[str, Any]:
    return dict(load(plural)["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in (node.get("properties") or {}).items():
        found += walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{path}.*")
    return found


PLURALS = ("trainingjobs", "modelversions", "models")


def bare(node: dict[str, Any]) -> dict[str, Any]:
    """A schema node without its description (test_field_descriptions.py checks those)."""
    return {key: value for key, value in node.items() if key != "description"}


@pytest.mark.parametrize("plural", PLURALS)
def test_is_a_valid_crd_for_kubernetes(plural: str) -> None:
    try:
        kubernetes_validate.validate(load(plural), "1.30.0", strict=True)
    except kubernetes_validate.ValidationError as error:  # the full error is pages long
        pytest.fail(f"{plural}: {str(error).splitlines()[0]}")


@pytest.mark.parametrize("plural", PLURALS)
def test_schema_is_structural(plural: str) -> None:
    for path, node in walk(schema(plural)):
        assert not set(FORBIDDEN) & set(node), f"{plural}{path}: {set(FORBIDDEN) & set(node)}"
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{plural}{path}: no type"
        if "properties" in node:
            assert "additionalProperties" not in node, f"{plural}{path}"
            assert set(node.get("required", [])) <= set(node["properties"]), f"{plural}{path}"
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            if bound in node:
                assert node[bound] is True, f"{plural}{path}: {bound} must be the OpenAPI 3.0 boolean form"
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            assert set(keys) <= set(node["items"].get("required", [])), f"{plural}{path}: map keys required"


@pytest.mark.parametrize(("plural", "kind", "short", "columns"), [
    ("trainingjobs", "TrainingJob", "tj",
     ["Phase", "Model", "Algorithm", "Version", "Sharpe", "Ready", "Reason", "Age"]),
    ("modelversions", "ModelVersion", "mv", ["Model", "Version", "Stage", "Sharpe", "Score", "Ready", "Age"]),
    ("models", "Model", "mdl", ["Production", "Candidate", "Policy", "Accepted", "Ready", "Age"]),
])
def test_names_columns_and_subresources(plural: str, kind: str, short: str, columns: list[str]) -> None:
    crd = load(plural)
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{plural}.clm.dev" and crd["spec"]["group"] == "clm.dev"
    assert names["kind"] == kind and names["shortNames"] == [short] and names["categories"] == ["clm"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    printed = version["additionalPrinterColumns"]
    assert [c["name"] for c in printed] == columns
    for column in printed:
        assert "[0]" not in column["jsonPath"], "select conditions by type, never by position"
    ready = next(c for c in printed if c["name"] == "Ready")
    assert ready["jsonPath"] == ".status.conditions[?(@.type=='Ready')].status"
    if kind == "Model":
        accepted = next(c for c in printed if c["name"] == "Accepted")
        assert accepted["jsonPath"] == ".status.conditions[?(@.type=='Accepted')].status"


def test_training_job_spec_bounds_enums_required_and_immutability() -> None:
    spec = schema("trainingjobs")["properties"]["spec"]
    props = spec["properties"]
    assert set(spec["required"]) == {"modelName", "algorithm", "dataset"}
    assert spec["x-kubernetes-validations"][-1] == {
        "rule": "self == oldSelf", "message": "spec is immutable: create a new TrainingJob"}
    assert props["algorithm"]["enum"] == ["xgboost", "lightgbm", "nhits", "patchtst", "ppo"]
    assert bare(props["resources"]["properties"]["gpu"]) == {"type": "integer", "minimum": 0, "maximum": 16}
    assert props["modelName"]["pattern"] == "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
    assert props["modelName"]["maxLength"] == 50
    # Typed: every algorithm's keys (a misspelt key is an unknown field); CEL rules refuse another
    # algorithm's keys (test_cel_rules_sit_where_their_fields_are).
    hyperparameters = props["hyperparameters"]
    assert "x-kubernetes-preserve-unknown-fields" not in hyperparameters
    assert {"maxDepth", "numLeaves", "inputSize", "netArch", "budget"} <= set(hyperparameters["properties"])
    assert hyperparameters["properties"]["netArch"]["items"] == {"type": "integer"}
    assert hyperparameters["properties"]["budget"]["enum"] == ["auto", "cpu", "full"]
    assert props["nodeSelector"]["additionalProperties"] == {"type": "string"}
    assert props["dataset"]["required"] == ["uri", "symbol"]
    assert props["dataset"]["properties"]["start"]["format"] == "date-time"
    fraction = props["evaluation"]["properties"]["minTrainFraction"]
    assert fraction["minimum"] == 0 and fraction["exclusiveMinimum"] is True and fraction["exclusiveMaximum"]
    assert props["trigger"]["properties"]["reason"]["enum"][0] == "manual"
    status = schema("trainingjobs")["properties"]["status"]["properties"]
    assert status["phase"]["enum"] == ["Pending", "Running", "Succeeded", "Failed"]
    assert status["conditions"]["x-kubernetes-list-type"] == "map"


def test_model_version_status_shape() -> None:
    status = schema("modelversions")["properties"]["status"]["properties"]
    assert status["stage"]["enum"] == ["Training", "Shadow", "Candidate", "Production", "Retired", "Failed"]
    assert set(status["artifact"]["required"]) == {"uri", "sha256", "sizeBytes", "format"}
    assert status["stageHistory"]["items"]["properties"]["from"]["type"] == "string"
    score = bare(status["evaluation"]["properties"]["score"])
    assert score == {"type": "number", "minimum": 0, "maximum": 100}


VALID: dict[str, Any] = {"apiVersion": "clm.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "run"},
         "spec": {"modelName": "btc-xgb", "algorithm": "xgboost",
                  "dataset": {"uri": "builtin:synthetic?kind=planted&seed=7", "symbol": "BTCUSDT"},
                  "hyperparameters": {"maxDepth": 3, "nEstimators": 50},
                  "resources": {"cpu": "500m", "memory": "1Gi", "gpu": 1},
                  "evaluation": {"minTrainFraction": 0.4, "criteria": {"minSharpe": 1.2}}}}


def errors_of(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft4Validator(schema("trainingjobs"))  # OpenAPI 3.0 bounds are draft-4 style
    return [".".join(str(p) for p in error.absolute_path) for error in validator.iter_errors(document)]


def test_schema_accepts_a_valid_training_job() -> None:
    assert errors_of(VALID) == []


@pytest.mark.parametrize(("change", "field"), [
    ({"modelName": None}, "spec"),
    ({"algorithm": "randomforest"}, "spec.algorithm"),
    ({"resources": {"gpu": -1}}, "spec.resources.gpu"),
    ({"modelName": "Not_A_Label"}, "spec.modelName"),
    ({"evaluation": {"minTrainFraction": 1.0}}, "spec.evaluation.minTrainFraction"),
])
def test_schema_rejects_bad_specs_at_the_field(change: dict[str, Any], field: str) -> None:
    bad = {**VALID, "spec": {k: v for k, v in {**VALID["spec"], **change}.items() if v is not None}}
    assert field in errors_of(bad)


def test_every_kind_is_generated() -> None:
    assert sorted(crdgen.rendered_files()) == sorted(f"clm.dev_{p}.yaml" for p in PLURALS)


def rules_at(node: dict[str, Any]) -> list[str]:
    return [rule["rule"] for rule in node.get("x-kubernetes-validations", [])]


@pytest.mark.parametrize(("plural", "path"), [("trainingjobs", ("spec",)),
                                              ("models", ("spec", "template"))])
def test_cel_rules_sit_where_their_fields_are(plural: str, path: tuple[str, ...]) -> None:
    node = schema(plural)
    for name in path:
        node = node["properties"][name]
    template_rules = rules_at(node)
    assert any("self.evaluation.embargoBars >=" in rule for rule in template_rules)
    per_key = [rule for rule in template_rules if "self.algorithm in [" in rule]
    assert any("has(self.hyperparameters.numLeaves)" in rule and "['lightgbm']" in rule for rule in per_key)
    assert not any("has(self.hyperparameters.learningRate)" in rule for rule in per_key), "every algorithm's"
    properties = node["properties"]
    resources = properties["resources"]["properties"]
    for amount in ("cpu", "memory"):
        assert any("isQuantity(self)" in rule for rule in rules_at(resources[amount]))
    for text in ("note", "requestedBy"):
        assert any("matches" in rule for rule in rules_at(properties["trigger"]["properties"][text]))
    assert len(rules_at(properties["dataset"])) == 2


def test_model_schedule_and_version_spec_rules() -> None:
    assert any(rule.startswith("self.matches(") for rule in
               rules_at(schema("models")["properties"]["spec"]["properties"]["schedule"]))
    assert rules_at(schema("modelversions")["properties"]["spec"]) == ["self == oldSelf"]
