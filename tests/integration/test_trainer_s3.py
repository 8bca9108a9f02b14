"""``clm-trainer run`` against a real S3 server (moto over HTTP): upload, verify, refuse, fail transiently."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pandas as pd
import pytest
from botocore.config import Config
from clm_contract.trainer_contract import ENV_S3_ENDPOINT_URL, ENV_S3_SECRET_ACCESS_KEY, TrainerResult
from clm_trainer.cli import main

from tests.support.cluster import free_port

pytestmark = pytest.mark.slow


SECRET = "S3cr3t-never-in-any-output"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Shared CI cores: OpenMP spin-waiting on an oversubscribed machine is far slower than one thread.
    monkeypatch.setenv("CLM_NUM_THREADS", "1")


@pytest.fixture
def secret_env(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A recognisable secret key (moto accepts any) so the tests can prove it leaks nowhere."""
    monkeypatch.setenv(ENV_S3_SECRET_ACCESS_KEY, SECRET)
    return s3_env


def client(env: dict[str, str]) -> Any:
    return boto3.session.Session().client(
        "s3", endpoint_url=env[ENV_S3_ENDPOINT_URL], region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}))


def upload_bars(s3: Any, bucket: str, n: int = 2500) -> str:
    """A small random-walk CSV in the bucket: the dataset comes from S3 too."""
    rng = np.random.default_rng(5)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    frame = pd.DataFrame({
        "timestamp": pd.date_range("2023-01-01", periods=n, freq="h", tz="UTC").strftime("%Y-%m-%d %H:%M:%S"),
        "open": open_, "high": np.maximum(open_, close) * 1.002, "low": np.minimum(open_, close) * 0.998,
        "close": close, "volume": rng.uniform(10, 20, n)})
    s3.put_object(Bucket=bucket, Key="data/syn-1h.csv", Body=frame.to_csv(index=False).encode())
    return f"s3://{bucket}/data/syn-1h.csv"


def spec(dataset_uri: str) -> dict[str, Any]:
    return {"modelName": "s3-xgb", "algorithm": "xgboost",
            "dataset": {"uri": dataset_uri, "symbol": "SYN", "timeframe": "1h"},
            "evaluation": {"folds": 3}, "hyperparameters": {"nEstimators": 40}}


def run(tmp_path: Path, body: dict[str, Any], output: str) -> tuple[int, TrainerResult]:
    term = tmp_path / "termination-log"
    term.unlink(missing_ok=True)
    code = main(["run", "--spec-json", json.dumps(body), "--output", output, "--namespace", "ns",
                 "--version", "v1", "--termination-log", str(term)])
    return code, TrainerResult.model_validate_json(term.read_text())


def test_upload_verify_and_refuse_a_second_write(tmp_path: Path, secret_env: dict[str, str], s3_bucket: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    s3 = client(secret_env)
    body = spec(upload_bars(s3, s3_bucket))
    code, result = run(tmp_path, body, f"s3://{s3_bucket}/models")
    assert code == 0, result
    prefix = "models/ns/s3-xgb/v1/"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix=prefix)["Contents"]}
    assert keys == {prefix + "model.ubj", prefix + "report.html", prefix + "manifest.json"}

    assert result.artifact is not None
    assert result.artifact.uri == f"s3://{s3_bucket}/{prefix}model.ubj"
    stored = s3.get_object(Bucket=s3_bucket, Key=prefix + "model.ubj")["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == result.artifact.sha256
    assert len(stored) == result.artifact.size_bytes
    manifest = json.loads(s3.get_object(Bucket=s3_bucket, Key=prefix + "manifest.json")["Body"].read())
    assert manifest["artifact"]["sha256"] == result.artifact.sha256
    report = s3.get_object(Bucket=s3_bucket, Key=prefix + "report.html")["Body"].read()
    assert manifest["files"]["report.html"] == hashlib.sha256(report).hexdigest()
    assert SECRET not in json.dumps(manifest) and SECRET not in report.decode()
    assert SECRET not in capsys.readouterr().err
    etag = s3.head_object(Bucket=s3_bucket, Key=prefix + "model.ubj")["ETag"]

    # the same spec and version again: permanent refusal, the stored artifact untouched
    code, again = run(tmp_path, body, f"s3://{s3_bucket}/models")
    assert code == 2 and again.reason == "ArtifactExists" and again.status == "Failed"
    assert again.message is not None and f"s3://{s3_bucket}/models/ns/s3-xgb/v1" in again.message
    assert s3.get_object(Bucket=s3_bucket, Key=prefix + "model.ubj")["Body"].read() == stored
    assert s3.head_object(Bucket=s3_bucket, Key=prefix + "model.ubj")["ETag"] == etag


def test_storage_down_is_transient_and_writes_no_manifest(tmp_path: Path, secret_env: dict[str, str],
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # nothing listens on this port: the storage service is down
    monkeypatch.setenv(ENV_S3_ENDPOINT_URL, f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    code, result = run(tmp_path, spec("builtin:synthetic?kind=random_walk&seed=1&bars=1500"),
                       "s3://models-bucket/root")
    assert code == 1
    assert result.status == "Failed" and result.reason == "StorageUnavailable"
    assert result.message is not None and "unreachable" in result.message
    assert result.manifest_uri is None and result.artifact is None
    err = capsys.readouterr().err
    assert "error: StorageUnavailable" in err and SECRET not in err and SECRET not in result.message
    assert time.monotonic() - started < 120
