"""file:// storage (what ``clm-trainer run`` uses on a laptop) and the S3 settings from the environment."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from clm_contract.storage import (
    MANIFEST_NAME,
    ArtifactExistsError,
    LocalStorage,
    ObjectNotFoundError,
    S3Settings,
    S3Storage,
    artifact_prefix,
    open_storage,
    read_uri,
    version_key,
)


def test_put_get_exists_and_sha256(tmp_path: Path) -> None:
    storage = open_storage(f"file://{tmp_path}/models/")
    assert isinstance(storage, LocalStorage)
    assert not storage.exists("ns/m/v1/model.ubj")
    uri = storage.put_bytes("ns/m/v1/model.ubj", b"weights")
    assert uri == f"file://{tmp_path}/models/ns/m/v1/model.ubj"
    assert storage.exists("ns/m/v1/model.ubj")
    assert storage.get_bytes("ns/m/v1/model.ubj") == b"weights"
    assert storage.sha256_of("ns/m/v1/model.ubj") == hashlib.sha256(b"weights").hexdigest()
    assert read_uri(uri) == b"weights"


def test_put_if_absent_accepts_identical_bytes_and_refuses_different_ones(tmp_path: Path) -> None:
    storage = open_storage(f"file://{tmp_path}")
    storage.put_bytes("v1/model.ubj", b"original")
    assert storage.put_bytes("v1/model.ubj", b"original").endswith("v1/model.ubj")  # a retried upload
    with pytest.raises(ArtifactExistsError, match="never overwritten") as caught:
        storage.put_bytes("v1/model.ubj", b"different")
    assert caught.value.uri == f"file://{tmp_path}/v1/model.ubj"
    assert storage.get_bytes("v1/model.ubj") == b"original"
    assert storage.list_keys() == ["v1/model.ubj"]  # no temporary file left behind


def test_list_and_delete_prefix_treat_the_prefix_as_a_folder(tmp_path: Path) -> None:
    storage = open_storage(f"file://{tmp_path}")
    for key in ("ns/m/v1/a", "ns/m/v1/sub/b", "ns/m/v10/a", "ns/other/v1/a"):
        storage.put_bytes(key, key.encode())
    assert storage.list_keys("ns/m/v1") == ["ns/m/v1/a", "ns/m/v1/sub/b", "ns/m/v10/a"]
    assert storage.delete_prefix("ns/m/v1") == 2
    assert storage.list_keys() == ["ns/m/v10/a", "ns/other/v1/a"]
    assert not (tmp_path / "ns/m/v1").exists()
    assert storage.delete_prefix("ns/m/v1/") == 0
    with pytest.raises(ValueError, match="empty prefix"):
        storage.delete_prefix("")


def test_bad_keys_and_uris_are_refused(tmp_path: Path) -> None:
    storage = open_storage(f"file://{tmp_path}")
    for key in ("", "/abs", "a/../b", "a//b"):
        with pytest.raises(ValueError, match="invalid storage key"):
            storage.put_bytes(key, b"x")
    with pytest.raises(ValueError, match="unsupported storage URI"):
        open_storage("http://example.com/x")
    with pytest.raises(ValueError, match="absolute"):
        open_storage("file://relative/path")


def test_missing_objects_raise_object_not_found(tmp_path: Path) -> None:
    storage = open_storage(f"file://{tmp_path}")
    with pytest.raises(ObjectNotFoundError):
        storage.get_bytes("nope")
    with pytest.raises(ObjectNotFoundError):
        read_uri(f"file://{tmp_path}/nope.json")
    assert storage.list_keys() == []
    assert open_storage(f"file://{tmp_path}/not-created").list_keys() == []


def test_s3_settings_from_the_contract_environment() -> None:
    settings = S3Settings.from_env({"CLM_S3_ENDPOINT_URL": "http://minio:9000", "AWS_REGION": "eu-west-1",
                                    "CLM_S3_PATH_STYLE": "True", "AWS_SECRET_ACCESS_KEY": "s3cr3t"})
    assert settings == S3Settings(endpoint_url="http://minio:9000", region="eu-west-1", path_style=True)
    assert "s3cr3t" not in repr(settings)
    assert S3Settings.from_env({}) == S3Settings(endpoint_url=None, region=None, path_style=False)
    assert S3Settings.from_env({"AWS_DEFAULT_REGION": "us-west-2"}).region == "us-west-2"


def test_s3_storage_uris_are_built_without_contacting_a_server() -> None:
    storage = S3Storage("s3://bucket/models/", S3Settings("http://127.0.0.1:1", "us-east-1", True))
    assert storage.uri_for("ns/m/v1/manifest.json") == "s3://bucket/models/ns/m/v1/manifest.json"
    assert S3Storage("s3://bucket", S3Settings(None, None, False)).uri_for("k") == "s3://bucket/k"


def test_put_if_absent_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(src: str, dst: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("clm_contract.storage.os.link", no_links)
    storage = open_storage(f"file://{tmp_path}")
    storage.put_bytes("v1/a", b"one")
    storage.put_bytes("v1/a", b"one")
    with pytest.raises(ArtifactExistsError):
        storage.put_bytes("v1/a", b"two")
    assert storage.get_bytes("v1/a") == b"one"
    assert storage.list_keys() == ["v1/a"]


def test_layout_puts_a_versions_files_under_namespace_model_version(tmp_path: Path) -> None:
    assert version_key("team-a", "btc", "v1") == "team-a/btc/v1"
    assert artifact_prefix("s3://bucket/models/", "team-a", "btc", "v1") == "s3://bucket/models/team-a/btc/v1"
    # the manifest the operator reads is the one the trainer's storage writes, at the same key
    root = f"file://{tmp_path}"
    written = open_storage(root).put_bytes(f"{version_key('team-a', 'btc', 'v1')}/{MANIFEST_NAME}", b"{}")
    assert written == f"{artifact_prefix(root, 'team-a', 'btc', 'v1')}/{MANIFEST_NAME}"
    assert read_uri(written) == b"{}"
