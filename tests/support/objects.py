"""Builders of the project's resources as plain dicts (what ``kubectl apply -f -`` takes as JSON or YAML),
and ``condition`` to read one back. Every builder takes overrides; a ``None`` value drops the field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from clm_contract import API_VERSION
from clm_contract.promotion import promotion_score

JSON = dict[str, Any]

TRAINER_IMAGE = "clm-trainer:local"  # the Model tests' sandbox maps it to this venv (support.cluster)
PLANTED = "builtin:synthetic?kind=planted&strength=1.5&regime=50&seed=7&bars={bars}"
# Criteria every trained model meets: for tests about the policy, not about the model's quality.
ANY_MODEL_PASSES = {"minSharpe": 0.0, "minWinRate": 0.0, "minProfitFactor": 0.0, "maxDrawdown": 1.0,
                    "minTrades": 0, "minDsr": 0.0}
# A run whose pod waits for an image that does not exist: it stays active without using the CPU, and
# the huge startup timeout keeps the operator from failing it while a test moves the clock by days.
PENDING_TEMPLATE = {"image": "registry.invalid/clm-trainer:absent", "startupTimeoutSeconds": 100_000_000}


def _drop_none(fields: JSON) -> JSON:
    return {key: value for key, value in fields.items() if value is not None}


def training_job_manifest(name: str, **spec: Any) -> JSON:
    """A TrainingJob of xgboost on 4500 bars with a planted signal, which it finds (Sharpe > 1)."""
    body: JSON = {
        "modelName": "btc-xgb",
        "algorithm": "xgboost",
        "dataset": {"uri": PLANTED.format(bars=4500), "symbol": "BTCUSDT"},
        "hyperparameters": {"nEstimators": 40, "maxDepth": 3},
        "target": {"horizonBars": 1},  # the strong 50-bar regimes: a 1-bar target trades them often
        # a 1-bar hold, not the default 5 horizons: these runs check plumbing, not the position layer
        "evaluation": {"folds": 3, "positions": {"minHoldingBars": 1}},
        **spec,
    }
    return {"apiVersion": API_VERSION, "kind": "TrainingJob", "metadata": {"name": name},
            "spec": _drop_none(body)}


def model_manifest(name: str, *, policy: str = "AutoProduction", suspend: bool = True,
                   schedule: str | None = None, template: JSON | None = None, extra_spec: JSON | None = None,
                   annotations: dict[str, str] | None = None,
                   bars_uri: str = PLANTED.format(bars=600)) -> JSON:
    """A Model training small xgboost runs in the sandbox's trainer image, suspended by default, with
    criteria every model passes; ``template`` overrides fields of its run template."""
    spec: JSON = {
        "template": {
            "algorithm": "xgboost",
            "dataset": {"uri": bars_uri, "symbol": "SYN", "timeframe": "1h"},
            "hyperparameters": {"nEstimators": 20, "maxDepth": 3},
            # 24-bar holds, not the default 5 horizons (120 bars), which outlast the 50-bar regimes
            "evaluation": {"folds": 2, "positions": {"minHoldingBars": 24}},
            "image": TRAINER_IMAGE,
            "resources": {"cpu": "500m", "memory": "512Mi"},
            **(template or {}),
        },
        "suspend": suspend,
        "schedule": schedule,
        "promotion": {"policy": policy, "criteria": dict(ANY_MODEL_PASSES)},
        **(extra_spec or {}),
    }
    metadata: JSON = _drop_none({"name": name, "annotations": annotations or None})
    return {"apiVersion": API_VERSION, "kind": "Model", "metadata": metadata, "spec": _drop_none(spec)}


def version_string(n: int) -> str:
    return f"v20260101-{n:06d}-abcde"


def model_version_manifest(model_name: str, n: int) -> JSON:
    """The n-th ModelVersion of a Model, as its run creates it (no status)."""
    version = version_string(n)
    return {"apiVersion": API_VERSION, "kind": "ModelVersion",
            "metadata": {"name": f"{model_name}-{version}", "labels": {"clm.dev/model": model_name}},
            "spec": {"modelName": model_name, "version": version, "algorithm": "xgboost",
                     "trainingJobRef": {"name": f"{model_name}-run-{n}"}}}


def evaluated_status(*, sharpe: float, passed: bool = True, trained: bool = True,
                     artifact_uri: str | None = None) -> JSON:
    """A ModelVersion's status as its run leaves it after evaluation (Candidate or Failed)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    conditions = [{"type": "Trained", "status": "True" if trained else "False",
                   "reason": "TrainerSucceeded" if trained else "BackoffLimitExceeded", "message": "",
                   "lastTransitionTime": now}]
    status: JSON = {"conditions": conditions}
    if trained:
        conditions.append({"type": "Evaluated", "status": "True" if passed else "False",
                           "reason": "CriteriaMet" if passed else "CriteriaNotMet", "message": "",
                           "lastTransitionTime": now})
        status["evaluation"] = {"passed": passed, "score": promotion_score(sharpe, 0.55, 1.5),
                                "failedCriteria": [] if passed else ["sharpe: 0.1 (needs >= 1)"]}
        status["metrics"] = {"backtest": {
            "sharpe": sharpe, "sortino": sharpe, "maxDrawdown": 0.1, "winRate": 0.55, "profitFactor": 1.5,
            "trades": 80, "totalReturn": 0.2, "exposure": 0.5, "psr": 0.9, "dsr": 0.8, "bars": 600,
            "periodsPerYear": 8760.0}}
        if artifact_uri:
            status["artifact"] = {"uri": artifact_uri, "sha256": "0" * 64, "sizeBytes": 10, "format": "ubj"}
    status["stage"] = ("Candidate" if passed else "Failed") if trained else "Failed"
    return status


def condition(obj: JSON, type_: str) -> JSON:
    """The object's condition of that type (AssertionError when it has none)."""
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item["type"] == type_:
            return dict(item)
    raise AssertionError(f"no {type_} condition in {obj.get('status')}")
