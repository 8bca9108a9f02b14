"""The real BTCUSDT hourly file end to end through ``clm-trainer run`` with XGBoost (file:// storage)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from clm_contract.trainer_contract import TrainerResult
from clm_trainer.cli import main

DATA = Path(__file__).resolve().parents[2] / "../shared/data/binance-btcusdt-1h.csv"
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Shared CI cores: OpenMP spin-waiting on an oversubscribed machine is far slower than one thread.
    monkeypatch.setenv("CLM_NUM_THREADS", "1")


def test_btcusdt_xgboost_end_to_end(tmp_path: Path) -> None:
    csv = tmp_path / "binance-btcusdt-1h.csv"
    shutil.copy(DATA, csv)
    body = {
        "modelName": "btcusdt-xgb",
        "algorithm": "xgboost",
        "dataset": {"uri": f"file://{csv}", "symbol": "BTCUSDT", "timeframe": "1h"},
        "target": {"horizonBars": 24},
        "evaluation": {"embargoBars": 24},
        "hyperparameters": {"nEstimators": 40, "maxDepth": 3},
    }
    term = tmp_path / "termination-log"
    code = main(["run", "--spec-json", json.dumps(body), "--output", f"file://{tmp_path}/models",
                 "--namespace", "trading", "--version", "v1", "--termination-log", str(term)])
    assert code == 0
    result = TrainerResult.model_validate_json(term.read_text())
    assert result.status == "Succeeded" and result.artifact is not None and result.manifest_uri
    assert result.dataset is not None
    assert result.dataset.rows == 36062 - 2649
    assert result.dataset.first_bar.startswith("2017-08-17")
    assert result.dataset.last_bar.startswith("2021-06-10")

    manifest = json.loads(Path(result.manifest_uri.removeprefix("file://")).read_text())
    data = manifest["data"]
    assert data["rowsRead"] == 36062
    assert data["duplicatesDropped"] == 2649
    assert data["gapCount"] == 8 and len(data["gaps"]) == 8
    assert data["rowsKept"] == 36062 - 2649
    assert data["duplicateRule"]  # the stated de-duplication rule travels with the model

    artifact = Path(result.artifact.uri.removeprefix("file://"))
    assert artifact.name == "model.ubj"
    assert hashlib.sha256(artifact.read_bytes()).hexdigest() == manifest["artifact"]["sha256"]
    assert manifest["backtest"]["metrics"]["periodsPerYear"] == 8760
    assert manifest["backtest"]["metrics"]["bars"] > 20000
    folds = manifest["walkForward"]["folds"]
    assert len(folds) == 5 and all(f["embargoGapBars"] >= 24 for f in folds)
    # verdict and metrics agree with the shared promotion rules
    assert manifest["evaluation"]["passed"] == (not manifest["evaluation"]["failedCriteria"])
    # gross and net Sharpe, turnover and cost drag, the trials and the position layer's choices
    costs = manifest["backtest"]["metrics"]["costAnalysis"]
    assert costs["netSharpe"] == manifest["backtest"]["metrics"]["sharpe"]
    assert costs["grossSharpe"] >= costs["netSharpe"] and costs["costDragPerYear"] >= 0
    assert costs["turnoverPerYear"] > 0 or manifest["backtest"]["metrics"]["trades"] == 0
    trials = manifest["walkForward"]["trials"]
    assert trials["total"] == (trials["search"] + trials["prior"]) * trials["inRun"] == 9
    assert manifest["backtest"]["metrics"]["nTrials"] == 9
    per_fold = manifest["walkForward"]["positionLayer"]["perFold"]
    assert len(per_fold) == 5 and all(len(f["candidates"]) == 9 for f in per_fold)
    assert data["trailingBarRule"] and "trailingBarDropped" in data
    report = (Path(result.manifest_uri.removeprefix("file://")).parent / "report.html").read_text()
    for needle in ("gross Sharpe", "net Sharpe", "turnover per year", "cost drag per year", "<h3>Why</h3>",
                   "Deflated Sharpe ratio", "position rule (chosen on validation)"):
        assert needle in report, needle
    verdict_line = "Every criterion passed" if manifest["evaluation"]["passed"] else "Failed: "
    assert verdict_line in report
