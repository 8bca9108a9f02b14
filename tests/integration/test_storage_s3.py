"""S3 storage against a real moto server process over HTTP (boto3, path-style, dummy credentials)."""

from __future__ import annotations

import hashlib
import io
import time

import boto3
import numpy as np
import pandas as pd
import pytest
from botocore.config import Config
from clm_contract import storage as storage_module
from clm_contract.storage import (
    ArtifactExistsError,
    ObjectNotFoundError,
    S3Settings,
    S3Storage,
    StorageError,
    open_storage,
    read_uri,
)
from clm_contract.training_job import DatasetSpec
from clm_sandbox.s3server import S3Server, start_s3_server
from clm_trainer.data import DataError, load_dataset

from tests.support.cluster import free_port


def settings(endpoint: str, **overrides: float) -> S3Settings:
    return S3Settings(endpoint_url=endpoint, region="us-east-1", path_style=True,
                      max_attempts=int(overrides.get("max_attempts", 3)),
                      connect_timeout=overrides.get("connect_timeout", 2.0),
                      read_timeout=overrides.get("read_timeout", 5.0))


def raw_client(endpoint: str) -> object:
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                          config=Config(s3={"addressing_style": "path"}))


def test_settings_from_the_fixture_environment(s3_env: dict[str, str], s3_server: S3Server) -> None:
    assert S3Settings.from_env() == S3Settings(endpoint_url=s3_server.endpoint_url, region="us-east-1",
                                               path_style=True)


def test_upload_get_exists_and_verify(s3_env: dict[str, str], s3_bucket: str) -> None:
    storage = open_storage(f"s3://{s3_bucket}/models")
    assert isinstance(storage, S3Storage)
    assert not storage.exists("ns/m/v1/model.ubj")
    payload = bytes(range(256)) * 4096  # 1 MiB: more than one read chunk
    uri = storage.put_bytes("ns/m/v1/model.ubj", payload, content_type="application/octet-stream")
    assert uri == f"s3://{s3_bucket}/models/ns/m/v1/model.ubj"
    assert storage.exists("ns/m/v1/model.ubj")
    assert storage.get_bytes("ns/m/v1/model.ubj") == payload
    assert storage.sha256_of("ns/m/v1/model.ubj") == hashlib.sha256(payload).hexdigest()
    assert read_uri(uri) == payload
    head = raw_client(s3_env["CLM_S3_ENDPOINT_URL"]).head_object(  # type: ignore[attr-defined]
        Bucket=s3_bucket, Key="models/ns/m/v1/model.ubj")
    assert head["ContentType"] == "application/octet-stream"
    assert head["Metadata"]["sha256"] == hashlib.sha256(payload).hexdigest()


def test_put_if_absent_refuses_a_second_different_write(s3_env: dict[str, str], s3_bucket: str) -> None:
    storage = open_storage(f"s3://{s3_bucket}")
    storage.put_bytes("v1/manifest.json", b'{"a": 1}')
    assert storage.put_bytes("v1/manifest.json", b'{"a": 1}') == f"s3://{s3_bucket}/v1/manifest.json"
    with pytest.raises(ArtifactExistsError) as caught:
        storage.put_bytes("v1/manifest.json", b'{"a": 2}')
    assert caught.value.uri == f"s3://{s3_bucket}/v1/manifest.json"
    assert "new ModelVersion" in str(caught.value)
    assert storage.get_bytes("v1/manifest.json") == b'{"a": 1}'


def test_a_write_racing_past_the_existence_check_is_caught_by_if_none_match(
        s3_env: dict[str, str], s3_bucket: str) -> None:
    storage = S3Storage(f"s3://{s3_bucket}", settings(s3_env["CLM_S3_ENDPOINT_URL"]))
    storage.put_bytes("k", b"first")
    # Pretend the head saw nothing (another writer got in between): the conditional put must refuse.
    storage.exists = lambda key: False  # type: ignore[method-assign]
    with pytest.raises(ArtifactExistsError):
        storage.put_bytes("k", b"second")
    assert storage.get_bytes("k") == b"first"


def test_list_and_delete_prefix(s3_env: dict[str, str], s3_bucket: str) -> None:
    storage = open_storage(f"s3://{s3_bucket}/root")
    keys = ["ns/m/v1/a", "ns/m/v1/b/c", "ns/m/v10/a", "ns/n/v1/a"]
    for key in keys:
        storage.put_bytes(key, key.encode())
    assert storage.list_keys() == sorted(keys)
    assert storage.list_keys("ns/m/") == ["ns/m/v1/a", "ns/m/v1/b/c", "ns/m/v10/a"]
    assert storage.delete_prefix("ns/m/v1") == 2
    assert storage.list_keys() == ["ns/m/v10/a", "ns/n/v1/a"]
    assert open_storage(f"s3://{s3_bucket}").list_keys() == ["root/ns/m/v10/a", "root/ns/n/v1/a"]


def test_list_and_delete_page_through_many_keys(s3_env: dict[str, str], s3_bucket: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # S3 pages at 1000 keys; a page size of 3 exercises the same paging with a handful of objects.
    monkeypatch.setattr(storage_module, "_PAGE", 3)
    storage = open_storage(f"s3://{s3_bucket}")
    keys = [f"old/v1/part-{i:02d}" for i in range(10)]
    for key in keys:
        storage.put_bytes(key, b"x")
    assert storage.list_keys("old/") == keys
    assert storage.delete_prefix("old/v1") == 10
    assert storage.list_keys() == []


def test_missing_objects_and_buckets(s3_env: dict[str, str], s3_bucket: str) -> None:
    with pytest.raises(ObjectNotFoundError, match="NoSuchKey"):
        read_uri(f"s3://{s3_bucket}/nope/manifest.json")
    with pytest.raises(ObjectNotFoundError, match="NoSuchBucket"):
        read_uri("s3://no-such-bucket-here/x.csv")
    with pytest.raises(StorageError, match="bucket 'no-such-bucket-here' does not exist") as caught:
        open_storage("s3://no-such-bucket-here/models").put_bytes("k", b"x")
    assert "Fix: create the bucket" in str(caught.value)


def test_storage_down_is_a_quick_storage_error_without_secrets(
        s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    storage = open_storage("s3://bucket/models", settings(closed, max_attempts=2, connect_timeout=0.5))
    started = time.perf_counter()
    with pytest.raises(StorageError) as caught:
        storage.put_bytes("k", b"x")
    assert time.perf_counter() - started < 5
    message = str(caught.value)
    assert closed in message and "unreachable" in message and "CLM_S3_ENDPOINT_URL" in message
    assert "very-secret-value" not in message


def test_a_stopped_server_is_a_storage_error(s3_env: dict[str, str]) -> None:
    with start_s3_server() as server:
        endpoint = server.endpoint_url
        raw_client(endpoint).create_bucket(Bucket="short-lived")  # type: ignore[attr-defined]
        storage = open_storage("s3://short-lived", settings(endpoint, max_attempts=1, connect_timeout=0.5))
        storage.put_bytes("k", b"x")
    assert not server.running
    started = time.perf_counter()
    with pytest.raises(StorageError, match="unreachable"):
        storage.get_bytes("k")
    with pytest.raises(StorageError):
        read_uri("s3://short-lived/k", settings(endpoint, max_attempts=1, connect_timeout=0.5))
    assert time.perf_counter() - started < 5


def test_missing_credentials_are_reported(
        s3_env: dict[str, str], s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError, match="no S3 credentials"):
        open_storage(f"s3://{s3_bucket}").get_bytes("k")


def _bars(n: int = 30) -> pd.DataFrame:
    close = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, n)))
    return pd.DataFrame({"timestamp": 1_700_000_000 + 3600 * np.arange(n), "open": close,
                         "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1.0})


def test_load_csv_and_parquet_datasets_from_s3(s3_env: dict[str, str], s3_bucket: str) -> None:
    storage = open_storage(f"s3://{s3_bucket}/data")
    frame = _bars()
    storage.put_bytes("btc.csv", frame.to_csv(index=False).encode())
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    storage.put_bytes("btc.parquet", buffer.getvalue())
    from_csv = load_dataset(DatasetSpec(uri=f"s3://{s3_bucket}/data/btc.csv", symbol="BTCUSDT"))
    from_parquet = load_dataset(DatasetSpec(uri=f"s3://{s3_bucket}/data/btc.parquet", symbol="BTCUSDT"))
    assert from_csv.report.rows_kept == from_parquet.report.rows_kept == 30
    assert from_csv.report.fingerprint == from_parquet.report.fingerprint
    assert from_csv.report.source == f"s3://{s3_bucket}/data/btc.csv"
    with pytest.raises(DataError, match="does not exist") as caught:
        load_dataset(DatasetSpec(uri=f"s3://{s3_bucket}/data/missing.csv", symbol="BTCUSDT"))
    assert caught.value.field == "spec.dataset.uri"


def test_dataset_storage_outage_is_transient_not_a_data_error(s3_env: dict[str, str]) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StorageError):
        load_dataset(DatasetSpec(uri="s3://bucket/btc.csv", symbol="BTCUSDT"),
                     settings(closed, max_attempts=1, connect_timeout=0.5))
