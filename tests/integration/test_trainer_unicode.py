"""Free text the API server admits (emoji, accents, newlines) reaches the trainer intact.

The operator hands the spec to the trainer as ASCII JSON in CLM_TRAINING_SPEC, where an emoji is a
UTF-16 surrogate pair; the trainer used to parse it with PyYAML, which splits the pair, and exited 2
("unable to parse raw data as a unicode string"). The spec here comes from the operator's own Job
builder, and the trainer runs exactly as in the pod.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from clm_contract.trainer_contract import ENV_SPEC_JSON, TrainerResult
from clm_operator.domain.config import OperatorConfig
from clm_operator.domain.jobspec import build_job
from clm_trainer.cli import main

pytestmark = pytest.mark.slow

NOTE = "retrain 🚀 after the halving 👨\u200d👩\u200d👧\nsecond line\t✓ é"
REQUESTED_BY = "jané 😀"


def spec_env_of_the_operator() -> str:
    training_job: dict[str, Any] = {
        "apiVersion": "clm.dev/v1alpha1", "kind": "TrainingJob",
        "metadata": {"name": "emoji", "namespace": "default", "uid": "0d1c-uid",
                     "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 1},
        "spec": {"modelName": "emoji", "algorithm": "xgboost", "target": {"horizonBars": 1},
                 "dataset": {"uri": "builtin:synthetic?kind=planted&seed=3&bars=1500", "symbol": "SYN"},
                 "hyperparameters": {"nEstimators": 10}, "evaluation": {"folds": 2},
                 "trigger": {"reason": "manual", "requestedBy": REQUESTED_BY, "note": NOTE}}}
    job = build_job(training_job, OperatorConfig(s3_secret_name=None))
    (container,) = job["spec"]["template"]["spec"]["containers"]
    (value,) = [item["value"] for item in container["env"] if item["name"] == ENV_SPEC_JSON]
    return str(value)


def test_the_trainer_carries_emoji_from_the_operators_spec(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    value = spec_env_of_the_operator()
    assert value.isascii() and "\\ud83d" in value  # the surrogate pairs that broke the YAML parser
    monkeypatch.setenv(ENV_SPEC_JSON, value)
    monkeypatch.setenv("CLM_NUM_THREADS", "1")
    term = tmp_path / "termination-log"
    code = main(["run", "--spec-env", ENV_SPEC_JSON, "--output", f"file://{tmp_path}/models",
                 "--version", "v1", "--termination-log", str(term)])
    result = TrainerResult.model_validate_json(term.read_text())
    assert code == 0, result
    assert result.manifest_uri is not None and result.manifest_uri.startswith("file://")
    manifest = json.loads(Path(result.manifest_uri.removeprefix("file://")).read_text(encoding="utf-8"))
    assert manifest["spec"]["trigger"] == {"reason": "manual", "requestedBy": REQUESTED_BY, "note": NOTE}
