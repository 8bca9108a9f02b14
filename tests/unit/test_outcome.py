from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clm_contract.metrics import BacktestMetrics, Criteria
from clm_contract.promotion import evaluate
from clm_contract.trainer_contract import ArtifactRef, DatasetSummary, TrainerResult
from clm_operator.domain import lifecycle as lc
from clm_operator.domain import outcome
from clm_operator.domain.jobstatus import JobVerdict, RunState

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=3)


def metrics(**changes: float) -> BacktestMetrics:
    values = {"sharpe": 1.6, "sortino": 2.1, "max_drawdown": 0.08, "win_rate": 0.58, "profit_factor": 1.7,
              "trades": 120, "total_return": 0.4, "exposure": 0.6, "psr": 0.97, "dsr": 0.97, "bars": 3000,
              "periods_per_year": 8760.0}
    values.update(changes)
    return BacktestMetrics.model_validate(values)


def result(m: BacktestMetrics) -> TrainerResult:
    return TrainerResult(
        status="Succeeded", exit_code=0, version="v1",
        artifact=ArtifactRef(uri="s3://b/m/v1/model.ubj", sha256="a" * 64, size_bytes=12,
                             format="xgboost-ubj"),
        dataset=DatasetSummary(symbol="BTCUSDT", timeframe="1h", first_bar="2020-01-01T00:00:00Z",
                               last_bar="2020-05-01T00:00:00Z", rows=3000, fingerprint="f" * 64),
        metrics=m, manifest_uri="s3://b/m/v1/manifest.json")


def test_pending_then_running_then_succeeded() -> None:
    pending = outcome.in_progress({}, JobVerdict(RunState.PENDING), suspended=True, generation=1, now=T0)
    assert pending["reason"] == "Suspended" and "queue" in pending["message"]
    assert lc.training_job_phase(pending["conditions"]) == "Pending"
    running = outcome.in_progress(pending, JobVerdict(RunState.RUNNING, pod_name="p", started_at="x"),
                                  suspended=False, generation=1, now=T1)
    assert lc.training_job_phase(running["conditions"]) == "Running" and running["startTime"] == "x"
    accepted = [c for c in running["conditions"] if c["type"] == "Accepted"][0]
    assert accepted["lastTransitionTime"] == "2026-11-23T10:00:00Z"  # unchanged status keeps its time
    done = outcome.succeeded(running, "v1 is Candidate", generation=1, now=T1)
    assert lc.training_job_phase(done["conditions"]) == "Succeeded" and done["reason"] == "Trained"


def test_failed_and_rejected_are_terminal() -> None:
    failed = outcome.failed({}, "BackoffLimitExceeded", "StorageUnavailable", generation=2, now=T0)
    assert lc.training_job_phase(failed["conditions"]) == "Failed"
    assert failed["completionTime"] == "2026-11-23T10:00:00Z"
    assert all(c["observedGeneration"] == 2 for c in failed["conditions"])
    rejected = outcome.rejected({}, "spec.resources.gpu: must be >= 0", generation=1, now=T0)
    assert lc.training_job_phase(rejected["conditions"]) == "Failed" and rejected["reason"] == "InvalidSpec"


def test_passing_version_becomes_candidate_with_history() -> None:
    m = metrics()
    evaluation = evaluate(m, Criteria())
    change = outcome.trained_version(result(m), evaluation)
    training = lc.version_status({}, lc.VersionChange(why="started"), generation=1, now=T0)
    assert training["stage"] == "Training"
    patch = lc.version_status(training, change, generation=1, now=T1)
    assert patch["stage"] == "Candidate" and patch["artifact"]["sha256"] == "a" * 64
    assert patch["metrics"]["backtest"]["sharpe"] == pytest.approx(1.6)
    assert [(h.get("from"), h["to"]) for h in patch["stageHistory"]] == [(None, "Training"),
                                                                         ("Training", "Candidate")]
    assert patch["manifestUri"].endswith("manifest.json")


def test_failing_version_lists_the_failed_criteria() -> None:
    m = metrics(sharpe=0.2, trades=10)
    evaluation = evaluate(m, Criteria())
    change = outcome.trained_version(result(m), evaluation)
    patch = lc.version_status({"stage": "Training"}, change, generation=1, now=T1)
    assert patch["stage"] == "Failed" and "sharpe" in change.why and "trades" in change.why
    evaluated = [c for c in patch["conditions"] if c["type"] == "Evaluated"][0]
    assert evaluated["status"] == "False" and evaluated["reason"] == "CriteriaNotMet"
    assert patch["evaluation"]["failedCriteria"] == evaluation.failed_criteria


def test_infinite_profit_factor_is_stored_as_a_finite_number() -> None:
    m = metrics(profit_factor=float("inf"))
    evaluation = evaluate(m, Criteria())
    assert evaluation.passed
    summary = outcome.metrics_summary(m, evaluation)
    assert summary["profitFactor"] == 1.7976931348623157e308
    change = outcome.trained_version(result(m), evaluation)
    assert change.fields["metrics"]["backtest"]["profitFactor"] == 1.7976931348623157e308
    assert outcome.finite([float("nan"), {"x": float("-inf")}]) == [0.0, {"x": -1.7976931348623157e308}]
