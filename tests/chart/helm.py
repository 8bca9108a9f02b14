"""Helpers of the chart tests: the real helm binary, rendered manifests, CRD schemas as JSON Schema."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "clm-operator"
CRD_DIR = ROOT / "crds"
CHART_CRD_DIR = CHART / "crds"
EXAMPLES = ROOT / "examples"

# The metric names the operator exports (the contract shared with observability/metrics.py).
METRICS = {
    "clm_reconciles_total": "counter",
    "clm_reconcile_errors_total": "counter",
    "clm_reconcile_duration_seconds": "histogram",
    "clm_training_jobs": "gauge",
    "clm_training_job_failures_total": "counter",
    "clm_training_duration_seconds": "histogram",
    "clm_model_versions": "gauge",
    "clm_promotions_total": "counter",
    "clm_rollbacks_total": "counter",
    "clm_promotion_score": "gauge",
    "clm_last_successful_training_timestamp_seconds": "gauge",
    "clm_model_production_version_info": "gauge",
    "clm_model_has_production": "gauge",
    "clm_model_next_schedule_timestamp_seconds": "gauge",
    "clm_webhook_requests_total": "counter",
}


def tool(name: str) -> str:
    """A binary from .tools/bin (scripts/install-k8s-tools.sh) or PATH; a clear failure when absent."""
    local = ROOT / ".tools" / "bin" / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} not found: run scripts/install-k8s-tools.sh (or scripts/setup.sh)")
    return found


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def render(*set_args: str, namespace: str = "clm-system") -> list[dict[str, Any]]:
    """`helm template` with ``--set`` arguments, as a list of objects (empty documents dropped)."""
    flags: list[str] = []
    for arg in set_args:
        flags += ["--set", arg]
    out = helm("template", "clm", str(CHART), "--namespace", namespace, *flags).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def crd_json_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> JSON Schema of every served version of every CRD in crds/."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for crd in load_yaml_docs(path):
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schema = openapi_to_json_schema(version["schema"]["openAPIV3Schema"])
                    schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def openapi_to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A CRD's structural OpenAPI v3 schema as JSON Schema, as strict as `kubectl apply` (field
    validation Strict): unknown fields are errors unless x-kubernetes-preserve-unknown-fields."""
    node = copy.deepcopy(node)

    def convert(n: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        preserve = bool(n.get("x-kubernetes-preserve-unknown-fields"))
        for key, value in n.items():
            if key.startswith("x-kubernetes-") or key in ("nullable", "format", "example"):
                continue
            if key == "properties":
                out[key] = {name: convert(child) for name, child in value.items()}
            elif key == "items" and isinstance(value, dict):
                out[key] = convert(value)
            elif key == "additionalProperties" and isinstance(value, dict):
                out[key] = convert(value)
            elif key in ("allOf", "anyOf", "oneOf"):
                out[key] = [convert(child) for child in value]
            elif key == "not":
                out[key] = convert(value)
            else:
                out[key] = value
        if n.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["type"] = ["integer", "string"]
        if n.get("nullable") and "type" in out and isinstance(out["type"], str):
            out["type"] = [out["type"], "null"]
        # OpenAPI v3.0 (what CRDs use) writes exclusiveMinimum/Maximum as booleans beside minimum/maximum;
        # JSON Schema 2020-12 wants the bound itself there.
        for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(out.get(flag), bool):
                if out.pop(flag) and bound in out:
                    out[flag] = out.pop(bound)
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not preserve
        ):
            out["additionalProperties"] = False
        return out

    schema = convert(node)
    # metadata is validated by the API server itself, not by the CRD schema.
    schema.setdefault("properties", {})["metadata"] = {"type": "object"}
    return schema
