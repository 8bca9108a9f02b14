"""``kubectl clm train`` counts the Model's earlier trainings as trials, like the operator's schedule."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from clm_operator.plugin import run


class RecordingCluster:
    """The plugin's cluster calls, answered from memory; created TrainingJobs are recorded."""

    namespace = "ml"

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.runs = runs
        self.created: list[dict[str, Any]] = []

    def model(self, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "uid": "0b6f3c1e-model-uid"}, "spec": {"template": {
            "algorithm": "xgboost", "dataset": {"uri": "builtin:synthetic?kind=planted", "symbol": "SYN"},
            "evaluation": {"priorTrials": 1}}}}

    def training_jobs(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["spec"]["modelName"] == model]

    def create_training_job(self, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append(body)
        return body


def finished(model: str, phase: str) -> dict[str, Any]:
    return {"spec": {"modelName": model}, "status": {"phase": phase}}


def train(cluster: RecordingCluster) -> dict[str, Any]:
    args = argparse.Namespace(command="train", model="btc", note=None)
    run(args, cluster, datetime(2026, 12, 2, tzinfo=UTC))  # type: ignore[arg-type]
    return cluster.created[-1]


def test_a_manual_run_is_deflated_by_every_version_the_model_trained() -> None:
    runs = [finished("btc", "Succeeded"), finished("btc", "Succeeded"), finished("btc", "Failed"),
            finished("btc", "Running"), finished("eth", "Succeeded")]
    body = train(RecordingCluster(runs))
    # two trained versions of btc; a failed or running run selected nothing; eth is another Model
    assert body["spec"]["evaluation"]["priorTrials"] == 2
    assert body["spec"]["trigger"]["reason"] == "manual"


def test_the_template_s_own_prior_trials_are_a_floor() -> None:
    body = train(RecordingCluster([]))
    assert body["spec"]["evaluation"]["priorTrials"] == 1
