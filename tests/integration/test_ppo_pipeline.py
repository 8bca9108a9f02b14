"""PPO through ``clm-trainer run``: the same walk-forward, backtest, costs and criteria as every model.

A strong planted signal and a few thousand timesteps keep this within CPU test budgets (the honesty
defaults and the default budget are measured by ``bench/deep.py ppo-seeds``, figures in
bench/README.md). Positions come from the agent itself: no position layer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from clm_trainer.cli import main
from clm_trainer.models.deep import CONFIG_FILE
from clm_trainer.models.ppo import load_policy
from clm_trainer.synthetic import generate, parse_synthetic_uri

pytestmark = pytest.mark.slow

BARS = 3000
SMALL = {"totalTimesteps": 6144, "nEnvs": 4, "nSteps": 128, "batchSize": 256, "nEpochs": 5}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLM_TORCH_THREADS", "1")
    monkeypatch.setenv("CLM_NUM_THREADS", "1")


def uri(kind: str, seed: int) -> str:
    strong = "&strength=1.5&regime=50" if kind == "planted" else ""
    return f"builtin:synthetic?kind={kind}{strong}&seed={seed}&bars={BARS}"


def run_cli(tmp_path: Path, kind: str, seed: int) -> tuple[dict[str, Any], dict[str, Any], Path]:
    spec = {"modelName": f"ppo-{kind.replace('_', '-')}", "algorithm": "ppo",
            "dataset": {"uri": uri(kind, seed), "symbol": "SYN"},
            "features": {"returnLags": [1, 2, 5], "windows": [5, 20, 50]},
            "target": {"horizonBars": 4}, "hyperparameters": SMALL, "evaluation": {"folds": 3}, "seed": seed}
    out, termination = tmp_path / "out", tmp_path / "termination-log"
    code = main(["run", "--spec-json", json.dumps(spec), "--output", out.as_uri(), "--version", "v1",
                 "--termination-log", str(termination)])
    assert code == 0, termination.read_text()
    result = json.loads(termination.read_text())
    manifest_path = out / "default" / spec["modelName"] / "v1" / "manifest.json"
    return result, json.loads(manifest_path.read_text()), manifest_path.parent


@pytest.mark.parametrize("seed", [7, 11])
def test_ppo_trades_a_planted_signal_at_a_profit_after_costs(tmp_path: Path, seed: int) -> None:
    result, manifest, version_dir = run_cli(tmp_path, "planted", seed)
    metrics = result["metrics"]
    assert metrics["sharpe"] > 1.0 and metrics["trades"] >= 10, metrics
    assert result["artifact"]["format"] == "torch-state-dict"
    assert result["artifact"]["uri"].endswith("/policy.pt")
    layer = manifest["walkForward"]["positionLayer"]["perFold"]
    assert all(fold == {"chosen": "trainer outputs positions"} for fold in layer)
    config = json.loads((version_dir / CONFIG_FILE).read_text())
    assert config["budget"]["name"] == "cpu" and config["budget"]["settings"] == {}  # totalTimesteps given
    assert manifest["budget"] == config["budget"]  # the manifest says which budget applied, and why
    # The shipped policy, rebuilt without the trainer, holds the side of the planted regime far more
    # often than chance on the bars it saw last.
    planted = generate(parse_synthetic_uri(uri("planted", seed)))
    assert planted.regime is not None
    from clm_contract.training_job import FeaturesSpec, TargetSpec
    from clm_trainer.features import build_series

    data = build_series(planted.bars, FeaturesSpec(return_lags=[1, 2, 5], windows=[5, 20, 50]),
                        TargetSpec(horizon_bars=4))
    rows = np.arange(BARS - 1000, BARS - 4)
    positions = load_policy(version_dir).positions(data.features, rows)
    held = positions != 0
    agreement = float(np.mean(np.sign(positions[held]) == planted.regime[rows + 1][held]))
    assert held.mean() > 0.5 and agreement > 0.7, (held.mean(), agreement)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ppo_on_a_random_walk_does_not_pass(tmp_path: Path, seed: int) -> None:
    result, _, _ = run_cli(tmp_path, "random_walk", seed)
    assert result["evaluation"]["passed"] is False, result["metrics"]
