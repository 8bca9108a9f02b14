"""The operator's fallback to manifest.json when the termination message holds no usable result."""

from __future__ import annotations

import json
from pathlib import Path

from clm_operator.domain.config import OperatorConfig
from clm_operator.handlers.training_job import manifest_result


def test_manifest_is_read_and_infinite_profit_factor_survives(tmp_path: Path) -> None:
    artifact = {"uri": "s3://b/models/ns/m/v1/model.ubj", "sha256": "a" * 64, "sizeBytes": 10,
                "format": "xgboost-ubj"}
    metrics = {"sharpe": 1.5, "sortino": 2.0, "maxDrawdown": 0.1, "winRate": 0.6, "profitFactor": "Infinity",
               "trades": 60, "totalReturn": 0.3, "exposure": 0.5, "psr": 0.9, "dsr": 0.8, "bars": 1000,
               "periodsPerYear": 8760.0, "nTrials": 1}
    dataset = {"symbol": "BTCUSDT", "timeframe": "1h", "firstBar": "2020-01-01T00:00:00Z",
               "lastBar": "2020-02-01T00:00:00Z", "rows": 1000, "fingerprint": "f" * 64}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"version": "v1", "artifact": artifact, "dataset": dataset,
                                "backtest": {"metrics": metrics, "conventions": {}},
                                "files": {"report": "s3://b/models/ns/m/v1/report.html"}}))
    result = manifest_result(OperatorConfig(), path.as_uri())
    assert result is not None and result.metrics is not None and result.artifact is not None
    assert result.metrics.profit_factor == float("inf") and result.artifact.sha256 == "a" * 64
    assert result.manifest_uri == path.as_uri() and result.report_uri == "s3://b/models/ns/m/v1/report.html"


def test_missing_or_broken_manifest_gives_none(tmp_path: Path) -> None:
    assert manifest_result(OperatorConfig(), (tmp_path / "absent.json").as_uri()) is None
    broken = tmp_path / "broken.json"
    broken.write_text('{"artifact": {"uri": "x"}}')
    assert manifest_result(OperatorConfig(), broken.as_uri()) is None
