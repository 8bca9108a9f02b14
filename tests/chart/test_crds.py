"""The chart's CRDs are valid CustomResourceDefinitions, and the examples are valid against them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from tests.chart.helm import CHART_CRD_DIR, EXAMPLES, crd_json_schemas, load_yaml_docs

KINDS = {"TrainingJob", "ModelVersion", "Model"}


def _examples() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for index, doc in enumerate(load_yaml_docs(path)):
            if str(doc.get("apiVersion", "")).startswith("clm.dev/"):
                found.append((f"{path.name}#{index}", doc))
    return found


def _errors(doc: dict[str, Any]) -> list[str]:
    schema = crd_json_schemas()[(doc["apiVersion"], doc["kind"])]
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_chart_ships_a_crd_for_every_kind() -> None:
    kinds = {
        crd["spec"]["names"]["kind"] for path in CHART_CRD_DIR.glob("*.yaml") for crd in load_yaml_docs(path)
    }
    assert kinds == KINDS


@pytest.mark.parametrize("path", sorted(CHART_CRD_DIR.glob("*.yaml")), ids=lambda p: Path(p).name)
def test_chart_crds_are_valid_kubernetes(path: Path) -> None:
    for crd in load_yaml_docs(path):
        kubernetes_validate.validate(crd, latest_version(), strict=True)
        assert "clm" in crd["spec"]["names"]["categories"]
        assert "all" not in crd["spec"]["names"].get("categories", [])


def test_there_are_examples_of_our_kinds() -> None:
    assert _examples(), "examples/*.yaml holds no clm.dev objects"


@pytest.mark.parametrize(("name", "doc"), _examples(), ids=[name for name, _ in _examples()])
def test_example_is_valid_against_its_crd(name: str, doc: dict[str, Any]) -> None:
    assert doc["kind"] in KINDS, f"{name}: unknown kind {doc['kind']}"
    assert _errors(doc) == [], name


def test_the_crd_validation_catches_bad_objects() -> None:
    """Negative control: the converted schemas reject what the API server would reject."""
    name, example = next((n, d) for n, d in _examples() if d["kind"] == "TrainingJob")
    unknown_field = copy.deepcopy(example)
    unknown_field["spec"]["learningRatee"] = 0.1
    assert any("learningRatee" in e for e in _errors(unknown_field)), name
    negative_gpu = copy.deepcopy(example)
    negative_gpu["spec"].setdefault("resources", {})["gpu"] = -1
    assert any(e.startswith("spec.resources.gpu") for e in _errors(negative_gpu)), name
    bad_algorithm = copy.deepcopy(example)
    bad_algorithm["spec"]["algorithm"] = "prophet"
    assert any(e.startswith("spec.algorithm") for e in _errors(bad_algorithm)), name
    missing_model = copy.deepcopy(example)
    del missing_model["spec"]["modelName"]
    assert any("modelName" in e for e in _errors(missing_model)), name
