"""The chart's aggregated user roles: clm-viewer (into view) and clm-editor (into edit and admin).

What a user bound to the built-in roles can then do in a real API server is in
tests/integration/test_admission.py (test_namespace_view_and_edit_roles_reach_the_kinds).
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from tests.chart.helm import CHART, find, helm, render

KINDS = ("trainingjobs", "modelversions", "models")
STATUS = tuple(f"{kind}/status" for kind in KINDS)
READ = {"get", "list", "watch"}
WRITE = {"create", "update", "patch", "delete", "deletecollection"}
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def grants(role: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["clm.dev"], rule
        for resource in rule["resources"]:
            found.setdefault(resource, set()).update(rule["verbs"])
    return found


def aggregated_into(role: dict[str, Any]) -> set[str]:
    labels = role["metadata"]["labels"]
    return {key.removeprefix(AGGREGATE) for key, value in labels.items()
            if key.startswith(AGGREGATE) and value == "true"}


def user_roles(*values: str) -> dict[str, dict[str, Any]]:
    return {role["metadata"]["name"]: role for role in find(render(*values), "ClusterRole")
            if role["metadata"]["name"] in ("clm-viewer", "clm-editor")}


def test_viewer_reads_every_kind_and_its_status_and_nothing_more() -> None:
    viewer = user_roles()["clm-viewer"]
    assert aggregated_into(viewer) == {"view"}
    assert grants(viewer) == {resource: READ for resource in (*KINDS, *STATUS)}


def test_editor_writes_runs_and_models_never_status_and_never_mints_versions() -> None:
    editor = user_roles()["clm-editor"]
    assert aggregated_into(editor) == {"edit", "admin"}
    found = grants(editor)
    assert found["trainingjobs"] == found["models"] == READ | WRITE
    assert found["modelversions"] == READ | (WRITE - {"create"})  # the operator's records of trained models
    for status in STATUS:
        assert found[status] == READ, f"{status}: users must not write status"
    assert not [resource for resource in found if resource.endswith("/finalizers")]


@pytest.mark.parametrize("values", [(), ("rbac.namespaced=true",)], ids=["cluster", "namespaced"])
def test_the_roles_are_valid_kubernetes_in_both_rbac_modes(values: tuple[str, ...]) -> None:
    roles = user_roles(*values)
    assert sorted(roles) == ["clm-editor", "clm-viewer"]
    for role in roles.values():
        kubernetes_validate.validate(role, latest_version(), strict=True)


def test_a_second_release_can_leave_them_out() -> None:
    assert user_roles("rbac.userRoles=false") == {}
    result = helm("lint", "--strict", str(CHART), "--set", "rbac.userRoles=false")
    assert "0 chart(s) failed" in result.stdout
    refused = helm("template", "clm", str(CHART), "--set", "rbac.userRoles=maybe", check=False)
    assert refused.returncode != 0 and "userRoles" in refused.stderr
