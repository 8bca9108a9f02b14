"""N-HiTS and PatchTST through the trainer's own pipeline: the same walk-forward, backtest and criteria
as the tree models, on data with a planted signal (must pass) and on random walks (must not).

Small models and few epochs (hyperparameters passed explicitly) keep this within CPU test budgets;
the defaults are the paper-sized ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clm_contract.training_job import TrainingJobSpec
from clm_trainer.models.deep import scores_from_artifact
from clm_trainer.pipeline import RunOptions, run_pipeline
from clm_trainer.synthetic import generate, parse_synthetic_uri

# The strong planted signal of the plumbing tests (the honesty defaults are far weaker, see
# clm_trainer.synthetic): these tests check that a clear signal flows through, not how modest an edge
# the evaluation can find.
STRONG = "&strength=1.5&regime=50"

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small models on a shared 2-core runner: a second thread mostly spins waiting (5x slower here).
    monkeypatch.setenv("CLM_TORCH_THREADS", "1")

BARS = 3000
SMALL: dict[str, dict[str, Any]] = {
    "nhits": {"inputSize": 24, "mlpUnits": 64, "maxEpochs": 8, "patience": 3, "batchSize": 128,
              "learningRate": 0.001},
    "patchtst": {"inputSize": 32, "patchLen": 8, "stride": 4, "dModel": 16, "nHeads": 4, "nLayers": 1,
                 "dFf": 32, "maxEpochs": 8, "patience": 3, "batchSize": 128, "learningRate": 0.001},
}


def spec_for(algorithm: str, kind: str, seed: int) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({
        "modelName": f"{algorithm}-{kind.replace('_', '-')}",
        "algorithm": algorithm,
        "dataset": {"uri": f"builtin:synthetic?kind={kind}{STRONG if kind == 'planted' else ''}"
                           f"&seed={seed}&bars={BARS}", "symbol": "SYN"},
        "target": {"horizonBars": 1, "kind": "return"},
        "hyperparameters": SMALL[algorithm],
        "evaluation": {"folds": 4},
        "seed": seed,
    })


def run(tmp_path: Path, algorithm: str, kind: str, seed: int) -> Any:
    out = tmp_path / f"{algorithm}-{kind}-{seed}"
    return run_pipeline(spec_for(algorithm, kind, seed),
                        RunOptions(output_uri=out.as_uri(), namespace="test", version="v1")), out


@pytest.mark.parametrize("algorithm", ["nhits", "patchtst"])
@pytest.mark.parametrize("seed", [7, 11])
def test_finds_a_planted_signal(tmp_path: Path, algorithm: str, seed: int) -> None:
    outcome, _ = run(tmp_path, algorithm, "planted", seed)
    result = outcome.result
    assert result.evaluation.passed, (result.metrics, result.evaluation.failed_criteria)
    assert result.metrics.trades >= 50 and result.metrics.sharpe >= 1.0
    assert result.artifact.format == "torch-state-dict"
    version_dir = Path(result.artifact.uri.removeprefix("file://")).parent
    config = json.loads((version_dir / "config.json").read_text())
    assert config["algorithm"] == algorithm
    assert outcome.manifest["artifact"]["sha256"] == result.artifact.sha256
    # The shipped artifact scores without any trainer object (the serving path), and its forecasts
    # point the way of the planted regime of the next bar far more often than chance.
    planted = generate(parse_synthetic_uri(spec_for(algorithm, "planted", seed).dataset.uri))
    assert planted.regime is not None
    close = planted.bars["close"].to_numpy()
    rows = np.arange(100, len(close) - 1)
    scores = scores_from_artifact(version_dir, close, rows)
    agreement = float(np.mean(np.sign(scores) == planted.regime[rows + 1]))
    assert agreement > 0.85, agreement


@pytest.mark.parametrize("algorithm", ["nhits", "patchtst"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_random_walk_does_not_pass(tmp_path: Path, algorithm: str, seed: int) -> None:
    outcome, _ = run(tmp_path, algorithm, "random_walk", seed)
    assert not outcome.result.evaluation.passed, outcome.result.metrics


def test_a_window_too_long_for_the_data_is_a_permanent_error(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from clm_trainer.cli import main

    spec = spec_for("patchtst", "planted", 1).model_dump(by_alias=True, mode="json")
    spec["dataset"]["uri"] = f"builtin:synthetic?kind=planted{STRONG}&seed=1&bars=400"
    spec["hyperparameters"] = {**SMALL["patchtst"], "inputSize": 400}  # as long as the whole series
    termination = tmp_path / "termination-log"
    code = main(["run", "--spec-json", json.dumps(spec), "--output", (tmp_path / "out").as_uri(),
                 "--termination-log", str(termination)])
    assert code == 2
    message = json.loads(termination.read_text())
    assert message["field"] == "spec.hyperparameters"
    assert "inputSize" in message["message"] and "training window" in message["message"]
    assert "spec.hyperparameters" in capsys.readouterr().err
