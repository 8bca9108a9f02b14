"""One owner per status (docs/architecture.md section 10): no module but handlers/model_version.py writes
a ModelVersion's status, and the generic status writers are never handed the ModelVersion plural.

Read from the source, as a reviewer's grep would, so that a new writer anywhere in the operator fails
here before it races the owner's 409 loop.
"""

from __future__ import annotations

import ast
from pathlib import Path

OPERATOR = Path(__file__).resolve().parents[2] / "operator" / "clm_operator"
OWNER = OPERATOR / "handlers" / "model_version.py"
STATUS_WRITERS = {"write_status", "record_condition", "merge_patch", "patch", "replace"}


def _names(node: ast.AST) -> set[str]:
    found = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    found |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    found |= {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return found


def _called(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def model_version_status_writes(path: Path) -> list[str]:
    """``file:line`` of every call that names the ModelVersion plural and either writes status (a
    status writer) or builds a subresource path (``subresource=``, the status subresource's only way)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    hits = []
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        names = _names(call)
        names_versions = "MODEL_VERSIONS" in names or "modelversions" in names
        subresource = any(kw.arg == "subresource" for kw in call.keywords)
        writes_status = _called(call) in STATUS_WRITERS or subresource
        if names_versions and writes_status:
            hits.append(f"{path.relative_to(OPERATOR)}:{call.lineno}")
    return hits


def test_only_the_owner_writes_model_version_status() -> None:
    modules = sorted(OPERATOR.rglob("*.py"))
    assert OWNER in modules
    others = [hit for path in modules if path != OWNER for hit in model_version_status_writes(path)]
    assert others == []


def test_the_check_sees_the_owner_s_writes() -> None:
    """The scan is not blind: the owner's own status writes are found."""
    assert model_version_status_writes(OWNER)
