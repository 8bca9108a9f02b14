"""Bad input -> exit 2, one stderr line and a termination message, both naming the field and the fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from clm_trainer.cli import main

BASE: dict[str, Any] = {
    "modelName": "demo",
    "algorithm": "xgboost",
    "dataset": {"uri": "builtin:synthetic?kind=random_walk&seed=1&bars=800", "symbol": "SYN"},
}


def with_(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        node = spec
        *parents, leaf = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return spec


CASES = [
    pytest.param(with_(modelName=None), "spec.modelName", "add spec.modelName", id="missing-modelName"),
    pytest.param(with_(algorithm="random-forest"), "spec.algorithm", "xgboost", id="unknown-algorithm"),
    pytest.param(with_(resources__gpu=-1), "spec.resources.gpu", "greater than or equal to 0",
                 id="negative-gpu"),
    pytest.param(with_(hyperparameters__maxDepht=3), "spec.hyperparameters.maxDepht", "maxDepth",
                 id="unknown-hyperparameter"),
    pytest.param(with_(target__horizonBars=4, evaluation__embargoBars=2), "spec.evaluation.embargoBars",
                 "at least", id="embargo-below-horizon"),
    pytest.param(with_(hyperparameters__maxDepth=99), "spec.hyperparameters.maxDepth", "16",
                 id="hyperparameter-out-of-range"),
    pytest.param(with_(features__windows=[0]), "spec.features.windows", "between 1 and 10000",
                 id="bad-window"),
]


def run_cli(tmp_path: Path, argv: list[str]) -> tuple[int, dict[str, Any]]:
    term = tmp_path / "termination-log"
    code = main(["run", *argv, "--output", f"file://{tmp_path}/out", "--termination-log", str(term)])
    return code, json.loads(term.read_text())


@pytest.mark.parametrize(("spec", "field", "hint"), CASES)
def test_invalid_spec_exits_2_naming_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               spec: dict[str, Any], field: str, hint: str) -> None:
    code, result = run_cli(tmp_path, ["--spec-json", json.dumps(spec)])
    assert code == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1
    assert field in err_lines[0] and hint in err_lines[0] and "fix:" in err_lines[0]
    assert result["status"] == "Failed" and result["exitCode"] == 2
    assert result["reason"] == "InvalidSpec" and result["field"] == field
    assert not (tmp_path / "out").exists()  # nothing was written for a rejected spec


def test_spec_file_may_be_a_full_manifest_or_a_bare_spec(tmp_path: Path) -> None:
    manifest = tmp_path / "tj.yaml"
    manifest.write_text("apiVersion: clm.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: x}\n"
                        "spec:\n  modelName: demo\n  algorithm: xgboost\n  resources: {gpu: -2}\n"
                        "  dataset: {uri: 'builtin:synthetic', symbol: SYN}\n")
    code, result = run_cli(tmp_path, ["--spec", str(manifest)])
    assert (code, result["field"]) == (2, "spec.resources.gpu")

    other = tmp_path / "model.yaml"
    other.write_text("apiVersion: clm.dev/v1alpha1\nkind: Model\nspec: {}\n")
    code, result = run_cli(tmp_path, ["--spec", str(other)])
    assert (code, result["field"]) == (2, "kind")


def test_spec_from_env_var_and_missing_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SPEC", json.dumps(with_(modelName="Not_A_Dns_Label")))
    code, result = run_cli(tmp_path, ["--spec-env", "MY_SPEC"])
    assert (code, result["field"]) == (2, "spec.modelName")

    monkeypatch.delenv("CLM_TRAINING_SPEC", raising=False)
    code, result = run_cli(tmp_path, [])
    assert code == 2 and result["field"] == "--spec-env" and "CLM_TRAINING_SPEC" in result["message"]


def test_unparsable_spec_and_bad_version(tmp_path: Path) -> None:
    code, result = run_cli(tmp_path, ["--spec-json", "{not: [valid"])
    assert (code, result["reason"], result["field"]) == (2, "InvalidSpec", "spec")
    code, result = run_cli(tmp_path, ["--spec-json", json.dumps(BASE), "--version", "Bad Version!"])
    assert (code, result["field"]) == (2, "--version")


def test_empty_data_is_a_permanent_bad_data_error(tmp_path: Path) -> None:
    csv = tmp_path / "empty.csv"
    csv.write_text("timestamp,open,high,low,close,volume\n")
    spec = with_(dataset__uri=f"file://{csv}")
    code, result = run_cli(tmp_path, ["--spec-json", json.dumps(spec)])
    assert (code, result["reason"]) == (2, "BadData")
    assert result["field"].startswith("spec.dataset")
    assert not list((tmp_path / "out").rglob("manifest.json"))


def test_unwritable_termination_log_is_a_warning_not_a_crash(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--spec-json", json.dumps(with_(modelName=None)),
                 "--termination-log", "/nonexistent-dir/termination-log"])
    assert code == 2
    err = capsys.readouterr().err
    assert "termination_log_unwritable" in err and "spec.modelName" in err


def test_termination_message_round_trips_an_infinite_profit_factor() -> None:
    """No losing trade -> profitFactor inf; the operator must still be able to parse the result."""
    from clm_contract.metrics import BacktestMetrics
    from clm_contract.trainer_contract import TrainerResult

    metrics = BacktestMetrics(sharpe=2.0, sortino=3.0, max_drawdown=0.01, win_rate=1.0,
                              profit_factor=float("inf"), trades=60, total_return=0.5, exposure=0.4,
                              psr=0.99, dsr=0.98, bars=1000, periods_per_year=8760)
    message = TrainerResult(status="Succeeded", exit_code=0, metrics=metrics).to_termination_message()
    parsed = TrainerResult.model_validate_json(message)
    assert parsed.metrics is not None and parsed.metrics.profit_factor == float("inf")


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("trainingjob-*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_a_valid_trainingjob(path: Path) -> None:
    import yaml
    from clm_trainer.cli import _unwrap_manifest, parse_spec

    document = yaml.safe_load(path.read_text())
    assert document["apiVersion"] == "clm.dev/v1alpha1" and document["metadata"]["name"]
    raw, metadata = _unwrap_manifest(document, str(path))
    spec = parse_spec(raw)
    assert spec.model_name and metadata["name"] == document["metadata"]["name"]


@pytest.mark.parametrize(("bars", "evaluation", "reason", "field"), [
    (55, {}, "BadData", "spec.dataset"),  # fewer bars than the longest window (50) + horizon need
    (400, {"folds": 30}, "InsufficientData", "spec.evaluation.folds"),
])
def test_too_little_data_is_permanent(tmp_path: Path, bars: int, evaluation: dict[str, Any], reason: str,
                                      field: str) -> None:
    spec = with_(dataset__uri=f"builtin:synthetic?kind=random_walk&seed=1&bars={bars}")
    spec["evaluation"] = evaluation
    code, result = run_cli(tmp_path, ["--spec-json", json.dumps(spec)])
    assert (code, result["reason"], result["field"]) == (2, reason, field)
    assert "; fix: " in result["message"]
    assert not list((tmp_path / "out").rglob("manifest.json"))
