"""``clm-trainer run`` end to end on synthetic data: honest on noise, finds a planted signal.

Real training (xgboost/lightgbm), real walk-forward and backtest, file:// storage. Most runs call
``clm_trainer.cli.main`` in-process (fast); one goes through the installed console script.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from clm_contract.trainer_contract import (
    ENV_OUTPUT_URI,
    ENV_TERMINATION_LOG,
    ENV_VERSION,
    TERMINATION_MESSAGE_LIMIT,
    TrainerResult,
)
from clm_trainer.cli import main

# The strong planted signal of the plumbing tests (the honesty defaults are far weaker, see
# clm_trainer.synthetic): these tests check that a clear signal flows through, not how modest an edge
# the evaluation can find.
STRONG = "&strength=1.5&regime=50"

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Shared CI cores: OpenMP spin-waiting on an oversubscribed machine is far slower than one thread.
    monkeypatch.setenv("CLM_NUM_THREADS", "1")


def spec(kind: str, seed: int, *, algorithm: str = "xgboost", bars: int = 4000, trees: int = 100,
         **extra: Any) -> dict[str, Any]:
    hyperparameters = {"nEstimators": trees} if algorithm in ("xgboost", "lightgbm") else {}
    return {
        "modelName": f"{kind.replace('_', '-')}-{algorithm}",
        "algorithm": algorithm,
        # the strong 50-bar regimes of these plumbing tests: a 1-bar target trades them often
        "target": {"horizonBars": 1},
        "dataset": {"uri": f"builtin:synthetic?kind={kind}{STRONG if kind == 'planted' else ''}"
                           f"&seed={seed}&bars={bars}", "symbol": "SYN"},
        "hyperparameters": hyperparameters,
        "seed": seed,
        **extra,
    }


def train(tmp_path: Path, body: dict[str, Any], *extra_args: str) -> tuple[int, TrainerResult]:
    term = tmp_path / f"term-{len(list(tmp_path.glob('term-*')))}.json"
    code = main(["run", "--spec-json", json.dumps(body), "--output", f"file://{tmp_path}/models",
                 "--termination-log", str(term), *extra_args])
    return code, TrainerResult.model_validate_json(term.read_text())


def local_path(uri: str) -> Path:
    assert uri.startswith("file://")
    return Path(uri[len("file://"):])


def test_random_walk_does_not_pass_the_default_criteria(tmp_path: Path) -> None:
    passes = []
    for seed in range(20):
        code, result = train(tmp_path, spec("random_walk", seed, trees=15))
        assert code == 0 and result.status == "Succeeded"
        assert result.evaluation is not None and result.metrics is not None
        if result.metrics.trades == 0:
            # The position layer stays flat only when no candidate beat the costs on any fold's
            # validation bars (test_trainer_honesty checks, without costs, that it trades and still fails).
            assert result.manifest_uri
            layer = json.loads(local_path(result.manifest_uri).read_text())["walkForward"]["positionLayer"]
            assert all(f["chosen"]["flat"] for f in layer["perFold"]), layer
            assert all(c["validationSharpe"] <= 0 for f in layer["perFold"] for c in f["candidates"])
        passes.append(result.evaluation.passed)
    assert sum(passes) <= 1, f"a random walk passed the criteria for {sum(passes)} of 20 seeds"


def test_planted_signal_passes_for_every_seed(tmp_path: Path) -> None:
    for seed in (1, 2, 3, 4, 5):
        code, result = train(tmp_path, spec("planted", seed))
        assert code == 0
        assert result.evaluation is not None and result.metrics is not None
        assert result.evaluation.passed, (seed, result.evaluation.failed_criteria)
        assert result.evaluation.score > 0


def test_lightgbm_return_regression_finds_the_planted_signal(tmp_path: Path) -> None:
    body = spec("planted", 8, algorithm="lightgbm", target={"kind": "return", "horizonBars": 1})
    code, result = train(tmp_path, body)
    assert code == 0 and result.artifact is not None
    assert result.artifact.format == "lightgbm-text"
    assert local_path(result.artifact.uri).read_text().startswith("tree")
    assert result.evaluation is not None and result.evaluation.passed, result.evaluation


def test_outputs_manifest_report_and_determinism(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = spec("planted", 3)
    code, first = train(tmp_path, body, "--namespace", "research")
    assert code == 0 and first.artifact is not None and first.manifest_uri and first.report_uri
    err = capsys.readouterr().err
    for step_name in ("load_data", "features", "walk_forward", "backtest", "refit", "upload", "manifest"):
        assert f"step={step_name} duration_s=" in err
    assert "AWS_SECRET" not in err and "testing" not in err

    # default version: derived from the spec, under <output>/<namespace>/<model>/<version>/
    version = first.version
    assert version is not None and version.startswith("v") and len(version) == 13
    artifact = local_path(first.artifact.uri)
    assert artifact.parent == tmp_path / "models" / "research" / body["modelName"] / version
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == first.artifact.sha256
    assert artifact.stat().st_size == first.artifact.size_bytes

    manifest = json.loads(local_path(first.manifest_uri).read_text())
    assert manifest["version"] == version and manifest["spec"]["modelName"] == body["modelName"]
    assert manifest["artifact"]["sha256"] == first.artifact.sha256
    assert manifest["libraries"]["xgboost"] and "torch" not in manifest["libraries"]
    assert manifest["data"]["rowsKept"] == 4000
    assert len(manifest["walkForward"]["folds"]) == 5
    for fold in manifest["walkForward"]["folds"]:
        assert fold["embargoGapBars"] >= manifest["walkForward"]["embargoBars"] >= 1
        assert fold["trainEnd"] < fold["testStart"]
    assert manifest["backtest"]["conventions"]["sharpe"]
    assert manifest["evaluation"]["passed"] == first.evaluation.passed if first.evaluation else False
    assert set(manifest["features"]) >= {"ret_lag_1", "vol_20", "rsi_50"}
    assert manifest["device"]["kind"] == "cpu"
    html = local_path(first.report_uri).read_text()
    assert html.count("data:image/png;base64,") == 3  # equity, drawdown, feature importance

    # the same spec into another root: byte-identical model (seeded, fixed threads)
    code, second = train(tmp_path / "again", body, "--namespace", "research")
    assert code == 0 and second.artifact is not None
    assert second.version == version and second.artifact.sha256 == first.artifact.sha256


def test_rerun_of_a_stored_version_is_refused_and_a_half_written_one_resumes(tmp_path: Path) -> None:
    body = spec("planted", 4, bars=3000)
    code, first = train(tmp_path, body, "--version", "v20240101-1")
    assert code == 0 and first.artifact is not None and first.manifest_uri
    artifact_bytes = local_path(first.artifact.uri).read_bytes()

    code, again = train(tmp_path, body, "--version", "v20240101-1")
    assert code == 2 and again.reason == "ArtifactExists"
    assert again.message is not None and "pass --version or delete them" in again.message
    assert local_path(first.artifact.uri).read_bytes() == artifact_bytes

    # a pod that died before writing its manifest: the retry completes the version
    local_path(first.manifest_uri).unlink()
    code, resumed = train(tmp_path, body, "--version", "v20240101-1")
    assert code == 0 and resumed.artifact is not None and resumed.artifact.sha256 == first.artifact.sha256
    assert local_path(first.manifest_uri).is_file()


def test_console_script_takes_everything_from_the_environment(tmp_path: Path) -> None:
    """The operator's exact invocation: trainer_args() with the spec and the rest in env."""
    script = Path(sys.executable).parent / "clm-trainer"
    body = spec("planted", 5, bars=3000)
    term = tmp_path / "termination-log"
    env = {**os.environ, "CLM_TRAINING_SPEC": json.dumps(body), ENV_OUTPUT_URI: f"file://{tmp_path}/models",
           ENV_TERMINATION_LOG: str(term), ENV_VERSION: "v1", "CLM_NAMESPACE": "prod"}
    proc = subprocess.run([str(script), "run", "--spec-env", "CLM_TRAINING_SPEC"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    raw = term.read_text()
    assert len(raw.encode()) <= TERMINATION_MESSAGE_LIMIT
    result = TrainerResult.model_validate_json(raw)
    assert result.version == "v1" and result.artifact is not None
    assert result.artifact.uri == f"file://{tmp_path}/models/prod/{body['modelName']}/v1/model.ubj"
    assert result.dataset is not None and result.dataset.rows == 3000
    assert len(result.dataset.fingerprint) == 64
    assert json.loads(proc.stdout.strip().splitlines()[-1])["version"] == "v1"


def test_example_manifest_runs(tmp_path: Path) -> None:
    code, result = train_file(tmp_path, REPO / "examples" / "trainingjob-xgboost.yaml")
    assert code == 0 and result.evaluation is not None


def train_file(tmp_path: Path, path: Path) -> tuple[int, TrainerResult]:
    term = tmp_path / "term.json"
    code = main(["run", "--spec", str(path), "--output", f"file://{tmp_path}/models",
                 "--termination-log", str(term)])
    return code, TrainerResult.model_validate_json(term.read_text())
