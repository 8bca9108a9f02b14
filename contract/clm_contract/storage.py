"""Storage: where a version's files live, and access to ``file:///dir`` or ``s3://bucket/prefix``
behind one small interface.

Both sides use it: the trainer writes a version's files (``open_storage(...).put_bytes``), the operator
reads a result's manifest (``read_uri``) and deletes a pruned version's folder (``delete_prefix``,
retention). Imports only the standard library and boto3/botocore.

Layout (docs/architecture.md section 5): one version's files under
``<output>/<namespace>/<model>/<version>/`` (``artifact_prefix``; ``version_key`` is the part below the
output root), the model file(s), ``report.*`` and ``manifest.json`` (``MANIFEST_NAME``, written last).

Error taxonomy (the trainer maps these to exit codes, docs/architecture.md section 5):

* ``StorageError``: transient or configuration trouble (endpoint unreachable, timeouts, 5xx, access
  denied, missing bucket). Exit 1: the Job is retried up to ``backoffLimit``.
* ``ArtifactExistsError``: the key already holds *different* bytes. Exit 2: a version's files are
  never overwritten.
* ``ObjectNotFoundError``: a single object that was asked for does not exist (a dataset URI that
  points nowhere, a manifest not written yet). The caller decides whether that is permanent.

Credentials come only from the standard AWS chain (environment, config files, instance roles); they
are never logged and never part of any message or returned structure.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from clm_contract.trainer_contract import ENV_S3_ENDPOINT_URL, ENV_S3_PATH_STYLE, ENV_S3_REGION

MANIFEST_NAME = "manifest.json"


def version_key(namespace: str, model_name: str, version: str) -> str:
    """``<namespace>/<model>/<version>``: the folder of one version's files, below the output root."""
    return f"{namespace}/{model_name}/{version}"


def artifact_prefix(output_uri: str, namespace: str, model_name: str, version: str) -> str:
    """``<output>/<namespace>/<model>/<version>``: where one version's files live."""
    return f"{output_uri.rstrip('/')}/{version_key(namespace, model_name, version)}"


_CHUNK = 1024 * 1024
_PAGE = 1000  # S3's maximum for ListObjectsV2 pages and DeleteObjects batches
_TRUE = {"1", "true", "yes", "on"}


class StorageError(Exception):
    """Storage is unreachable, slow, failing (5xx) or misconfigured: transient, retry later (exit 1)."""


class ArtifactExistsError(Exception):
    """The key already holds different bytes: a version's files are never overwritten (exit 2)."""

    def __init__(self, uri: str) -> None:
        super().__init__(
            f"{uri} already exists with different content; artifacts are never overwritten. "
            "Fix: train under a new ModelVersion name, or delete the old version's files first"
        )
        self.uri = uri


class ObjectNotFoundError(Exception):
    """The requested object (or its bucket/directory) does not exist."""

    def __init__(self, uri: str, detail: str = "") -> None:
        super().__init__(f"{uri} does not exist{': ' + detail if detail else ''}")
        self.uri = uri


@dataclass(frozen=True)
class S3Settings:
    """How to reach an S3-compatible endpoint. Credentials are deliberately not part of it."""

    endpoint_url: str | None
    region: str | None
    path_style: bool
    max_attempts: int = 5
    connect_timeout: float = 5.0
    read_timeout: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> S3Settings:
        """Read the trainer contract's variables (``CLM_S3_ENDPOINT_URL``, ``AWS_REGION``, ...)."""
        endpoint = env.get(ENV_S3_ENDPOINT_URL, "").strip() or None
        region = env.get(ENV_S3_REGION, "").strip() or env.get("AWS_DEFAULT_REGION", "").strip() or None
        path_style = env.get(ENV_S3_PATH_STYLE, "").strip().lower() in _TRUE
        return cls(endpoint_url=endpoint, region=region, path_style=path_style)


class Storage(Protocol):
    """A flat key space under ``root_uri``; keys use ``/`` separators and never start with one."""

    root_uri: str

    def uri_for(self, key: str) -> str: ...

    def exists(self, key: str) -> bool: ...

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        """Store ``data`` unless the key exists. Identical existing bytes are accepted (a retried
        upload is idempotent); different bytes raise ArtifactExistsError. Returns the object's URI."""
        ...

    def get_bytes(self, key: str) -> bytes: ...

    def sha256_of(self, key: str) -> str:
        """Hex sha256 of the object as stored now (re-read from storage, for upload verification)."""
        ...

    def list_keys(self, prefix: str = "") -> list[str]:
        """Keys (relative to the root) starting with ``prefix``, sorted."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under the folder ``prefix`` (a trailing ``/`` is implied, so ``v1``
        never matches ``v10``); return how many were deleted. An empty prefix is refused."""
        ...


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid storage key {key!r}: use a relative path like 'ns/model/v1/model.ubj'")
    return key


def _folder_prefix(prefix: str) -> str:
    cleaned = prefix.strip("/")
    if not cleaned:
        raise ValueError("refusing to delete an empty prefix (that would delete the whole storage root)")
    _check_key(cleaned)
    return cleaned + "/"


# --------------------------------------------------------------------------------------------- local


class LocalStorage:
    """``file:///dir``: for ``clm-trainer run`` on a laptop and for tests."""

    def __init__(self, root_uri: str) -> None:
        self.root_uri = root_uri.rstrip("/")
        self._root = _file_path(self.root_uri)

    def _path(self, key: str) -> Path:
        return self._root / _check_key(key)

    def uri_for(self, key: str) -> str:
        return f"{self.root_uri}/{_check_key(key)}"

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Write a temporary file, then hard-link it into place: link() fails if the name exists,
            # so the put is atomic and never exposes a half-written artifact.
            fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    _link_exclusive(tmp_name, target, data)
                except FileExistsError:
                    if _sha256_file(target) != hashlib.sha256(data).hexdigest():
                        raise ArtifactExistsError(self.uri_for(key)) from None
            finally:
                os.unlink(tmp_name)
        except OSError as exc:
            raise StorageError(f"cannot write {self.uri_for(key)}: {exc.strerror or exc}") from exc
        return self.uri_for(key)

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFoundError(self.uri_for(key)) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {self.uri_for(key)}: {exc.strerror or exc}") from exc

    def sha256_of(self, key: str) -> str:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFoundError(self.uri_for(key))
        return _sha256_file(path)

    def list_keys(self, prefix: str = "") -> list[str]:
        if not self._root.is_dir():
            return []
        keys = (p.relative_to(self._root).as_posix() for p in self._root.rglob("*") if p.is_file())
        return sorted(k for k in keys
                      if k.startswith(prefix) and not k.rsplit("/", 1)[-1].startswith(".tmp-"))

    def delete_prefix(self, prefix: str) -> int:
        folder = _folder_prefix(prefix)
        keys = self.list_keys(folder)
        for key in keys:
            self._path(key).unlink(missing_ok=True)
        # Remove the emptied directories bottom-up so retention leaves no empty version folders.
        base = self._root / folder.rstrip("/")
        if base.is_dir():
            for directory in sorted((p for p in base.rglob("*") if p.is_dir()), reverse=True):
                _rmdir_if_empty(directory)
            _rmdir_if_empty(base)
        return len(keys)


def _link_exclusive(tmp_name: str, target: Path, data: bytes) -> None:
    """Atomically create ``target`` (FileExistsError if it exists)."""
    try:
        os.link(tmp_name, target)
    except FileExistsError:
        raise
    except OSError:
        # Filesystems without hard links: exclusive create is still put-if-absent, though a crash
        # mid-write could leave a partial file (the sha256 check after upload catches that).
        with open(target, "xb") as handle:
            handle.write(data)


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _file_path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        raise ValueError(f"{uri!r} is not a local file URI; use file:///absolute/path")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ValueError(f"{uri!r} is not absolute; use file:///absolute/path")
    return Path(path)


# ------------------------------------------------------------------------------------------------ S3


def make_s3_client(s3: S3Settings) -> Any:
    """A boto3 S3 client with explicit endpoint, addressing style, retries and timeouts."""
    config = Config(
        s3={"addressing_style": "path" if s3.path_style else "auto"},
        retries={"max_attempts": max(1, s3.max_attempts), "mode": "standard"},
        connect_timeout=s3.connect_timeout,
        read_timeout=s3.read_timeout,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=s3.endpoint_url, region_name=s3.region or "us-east-1", config=config
    )


def _split_s3(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"{uri!r} is not an S3 URI; use s3://bucket/prefix")
    return parts.netloc, parts.path.lstrip("/")


class S3Storage:
    """``s3://bucket/prefix`` on AWS S3 or any S3-compatible server (MinIO, moto, Ceph...)."""

    def __init__(self, root_uri: str, s3: S3Settings | None = None, client: Any | None = None) -> None:
        self.root_uri = root_uri.rstrip("/")
        self.bucket, prefix = _split_s3(self.root_uri)
        self._prefix = prefix.strip("/")
        self.settings = s3 or S3Settings.from_env()
        self._client = client or make_s3_client(self.settings)

    def _key(self, key: str) -> str:
        _check_key(key)
        return f"{self._prefix}/{key}" if self._prefix else key

    def uri_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _errors(self, action: str, uri: str) -> contextlib.AbstractContextManager[None]:
        return _s3_errors(action, uri, self.settings)

    def exists(self, key: str) -> bool:
        uri = self.uri_for(key)
        with self._errors("check", uri):
            try:
                self._client.head_object(Bucket=self.bucket, Key=self._key(key))
                return True
            except ClientError as exc:
                if _status(exc) == 404 and _code(exc) not in ("NoSuchBucket",):
                    return False
                raise

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> str:
        uri = self.uri_for(key)
        if self.exists(key):
            self._accept_existing(key, data)
            return uri
        extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
        digest = hashlib.sha256(data).hexdigest()
        with self._errors("write", uri):
            try:
                # If-None-Match closes the race between the head above and this put on servers that
                # support conditional writes (AWS since 2024, MinIO, moto).
                self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                        IfNoneMatch="*", Metadata={"sha256": digest}, **extra)
            except ClientError as exc:
                if _code(exc) in ("PreconditionFailed", "ConditionalRequestConflict") or _status(exc) == 412:
                    self._accept_existing(key, data)
                    return uri
                if _code(exc) != "NotImplemented" and _status(exc) != 501:
                    raise
                # The server does not do conditional writes: the head above is all the protection.
                self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                        Metadata={"sha256": digest}, **extra)
        return uri

    def _accept_existing(self, key: str, data: bytes) -> None:
        if self.sha256_of(key) != hashlib.sha256(data).hexdigest():
            raise ArtifactExistsError(self.uri_for(key))

    def get_bytes(self, key: str) -> bytes:
        return b"".join(self._stream(key))

    def _stream(self, key: str) -> Iterator[bytes]:
        """The object's bytes in chunks; errors while reading map like errors while asking."""
        uri = self.uri_for(key)
        with self._errors("read", uri):
            try:
                body = self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            except ClientError as exc:
                if _status(exc) == 404 or _code(exc) in ("NoSuchKey", "NoSuchBucket"):
                    raise ObjectNotFoundError(uri, _code(exc)) from exc
                raise
            try:
                yield from body.iter_chunks(_CHUNK)
            finally:
                body.close()

    def sha256_of(self, key: str) -> str:
        digest = hashlib.sha256()
        for chunk in self._stream(key):
            digest.update(chunk)
        return digest.hexdigest()

    def list_keys(self, prefix: str = "") -> list[str]:
        root = f"{self._prefix}/" if self._prefix else ""
        keys: list[str] = []
        with self._errors("list", f"s3://{self.bucket}/{root}{prefix}"):
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix,
                                           PaginationConfig={"PageSize": _PAGE}):
                keys.extend(item["Key"][len(root):] for item in page.get("Contents", []))
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        folder = _folder_prefix(prefix)
        keys = self.list_keys(folder)
        with self._errors("delete", self.uri_for(folder.rstrip("/"))):
            for start in range(0, len(keys), _PAGE):
                batch = [{"Key": self._key(k)} for k in keys[start:start + _PAGE]]
                response = self._client.delete_objects(Bucket=self.bucket,
                                                       Delete={"Objects": batch, "Quiet": True})
                errors = response.get("Errors", [])
                if errors:
                    first = errors[0]
                    raise StorageError(
                        f"could not delete {len(errors)} object(s) under {self.uri_for(folder.rstrip('/'))}, "
                        f"e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".strip()
                    )
        return len(keys)


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _s3_errors(action: str, uri: str, settings: S3Settings) -> Iterator[None]:
    """Turn botocore's exceptions into StorageError with a message that says what to check."""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError, ClientError, BotoCoreError) as exc:
        raise StorageError(_describe(exc, action, uri, settings)) from exc


def _describe(exc: Exception, action: str, uri: str, settings: S3Settings) -> str:
    endpoint = settings.endpoint_url or "the default AWS endpoint"
    bucket = _split_s3(uri)[0]
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return (f"cannot {action} {uri}: no S3 credentials found. Fix: provide AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (from a Secret) or an instance role")
    if isinstance(exc, ClientError):
        code, status = _code(exc), _status(exc)
        if code == "NoSuchBucket":
            return (f"cannot {action} {uri}: bucket {bucket!r} does not exist at {endpoint}. "
                    "Fix: create the bucket or correct the storage URI")
        if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return (f"cannot {action} {uri}: access denied ({code or status}) at {endpoint}. "
                    "Fix: check the S3 credentials Secret and the bucket policy")
        if status >= 500 or code in ("SlowDown", "RequestTimeout", "ServiceUnavailable"):
            return (f"cannot {action} {uri}: server error {code or status} at {endpoint} after retries; "
                    "try again later or check the storage service")
        return f"cannot {action} {uri}: {code or status} at {endpoint}"
    return (f"cannot {action} {uri}: S3 endpoint {endpoint} unreachable ({type(exc).__name__}). "
            "Fix: check CLM_S3_ENDPOINT_URL, the network path and that the storage service is up")


# ---------------------------------------------------------------------------------------- entry points


def open_storage(root_uri: str, s3: S3Settings | None = None) -> Storage:
    """Storage rooted at ``file:///dir`` or ``s3://bucket/prefix``."""
    scheme = urlsplit(root_uri).scheme
    if scheme == "file":
        return LocalStorage(root_uri)
    if scheme == "s3":
        return S3Storage(root_uri, s3)
    raise ValueError(f"unsupported storage URI {root_uri!r}; use file:///path or s3://bucket/prefix")


def read_uri(uri: str, s3: S3Settings | None = None) -> bytes:
    """The bytes of one object at ``file:///path`` or ``s3://bucket/key``.

    Raises ObjectNotFoundError when it does not exist, StorageError when storage cannot be reached.
    """
    parts = urlsplit(uri)
    if parts.scheme == "file":
        path = _file_path(uri)
        if not path.is_file():
            raise ObjectNotFoundError(uri)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc.strerror or exc}") from exc
    if parts.scheme == "s3":
        bucket, key = _split_s3(uri)
        if not key or key.endswith("/"):
            raise ValueError(f"{uri!r} names no object; use s3://bucket/path/to/object")
        parent, _, name = key.rpartition("/")
        root = f"s3://{bucket}/{parent}" if parent else f"s3://{bucket}"
        return S3Storage(root, s3).get_bytes(name)
    raise ValueError(f"unsupported URI {uri!r}; use file:///path or s3://bucket/key")
