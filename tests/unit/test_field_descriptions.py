"""Every field of the three kinds explains itself in `kubectl explain` (descriptions from the models)."""

from __future__ import annotations

from typing import Any

import pytest
from clm_contract import crdgen

# The API server publishes ObjectMeta's own documentation for metadata and refuses a description there.
SERVER_DOCUMENTED = {".metadata"}


def undocumented(node: dict[str, Any], path: str = "") -> list[str]:
    missing: list[str] = []
    for name, child in (node.get("properties") or {}).items():
        where = f"{path}.{name}"
        if where not in SERVER_DOCUMENTED and not str(child.get("description") or "").strip():
            missing.append(where)
        missing += undocumented(child, where)
    if isinstance(node.get("items"), dict):
        missing += undocumented(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        missing += undocumented(node["additionalProperties"], f"{path}.*")
    return missing


@pytest.mark.parametrize("kind", crdgen._kinds(), ids=lambda kind: kind.kind)
def test_every_property_has_a_description(kind: crdgen.Kind) -> None:
    root = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert root["description"]
    assert undocumented(root) == []


def test_the_fields_the_issue_named_are_described() -> None:
    kind = next(kind for kind in crdgen._kinds() if kind.kind == "TrainingJob")
    spec = crdgen.crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    dataset = spec["properties"]["dataset"]["properties"]
    for field in ("symbol", "timeframe", "start", "end", "lookbackDays"):
        assert len(dataset[field]["description"]) > 10, field
    assert "walk-forward" in spec["properties"]["evaluation"]["properties"]["folds"]["description"]


def test_the_checker_finds_a_missing_description() -> None:
    node = {"properties": {"a": {"type": "object", "description": "x",
                                 "properties": {"b": {"type": "string"}}},
                           "c": {"type": "array", "description": "y",
                                 "items": {"type": "object", "properties": {"d": {"type": "string"}}}}}}
    assert undocumented(node) == [".a.b", ".c[].d"]
