"""manifest.json: the durable, complete record of one training run (docs/architecture.md section 5).

Written last, after the artifact's sha256 has been verified in storage, so a manifest's presence means
the version is complete. It holds no secret: the spec (which never carries credentials), versions of
the libraries, the data repairs, features, folds, metrics with their conventions, the verdict, the
artifact reference, durations and the device choice.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
from typing import Any

MANIFEST_SCHEMA_VERSION = 1

_COMMON_LIBRARIES = ("clm-operator", "numpy", "pandas", "pyarrow", "scipy", "matplotlib", "pydantic", "boto3")
# The model library of each algorithm: only the one that trained this model is claimed to have shaped it
# (deciding by what happens to be imported in the process would depend on what ran before).
_MODEL_LIBRARIES = {"xgboost": ("xgboost",), "lightgbm": ("lightgbm",), "nhits": ("torch",),
                    "patchtst": ("torch",)}


def library_versions(algorithm: str) -> dict[str, str]:
    """Installed versions of the libraries that shape a result of ``algorithm``."""
    versions = {"python": platform.python_version()}
    for name in (*_COMMON_LIBRARIES, *_MODEL_LIBRARIES.get(algorithm, ())):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats (profit factor may be inf) by strings JSON can carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return "Infinity" if value > 0 else ("-Infinity" if value < 0 else "NaN")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def to_json_bytes(manifest: dict[str, Any]) -> bytes:
    return json.dumps(_json_safe(manifest), indent=2, sort_keys=False, allow_nan=False).encode("utf-8")


def build_manifest(*, version: str, namespace: str, spec: dict[str, Any], data_report: dict[str, Any],
                   features: list[str], target: dict[str, Any], walk_forward: dict[str, Any],
                   backtest: dict[str, Any], conventions: dict[str, Any], evaluation: dict[str, Any],
                   artifact: dict[str, Any], files: dict[str, str], durations: dict[str, float],
                   device: dict[str, str], dataset_summary: dict[str, Any],
                   created_at: str, benchmark: dict[str, Any] | None = None,
                   budget: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest document; ``budget`` is the training budget that applied and why (None: the
    algorithm has none, e.g. trees)."""
    return {
        "schemaVersion": MANIFEST_SCHEMA_VERSION,
        "kind": "ModelManifest",
        "modelName": spec.get("modelName"),
        "namespace": namespace,
        "version": version,
        "algorithm": spec.get("algorithm"),
        "createdAt": created_at,
        "artifact": artifact,
        "files": files,
        "spec": spec,
        "libraries": library_versions(str(spec.get("algorithm"))),
        "dataset": dataset_summary,
        "data": data_report,
        "features": features,
        "target": target,
        "walkForward": walk_forward,
        "backtest": {"metrics": backtest, "conventions": conventions},
        "evaluation": evaluation,
        "benchmark": benchmark,
        "budget": budget,
        "device": device,
        "durationsSeconds": durations,
    }
