"""The session-wide fixtures (registered by tests/conftest.py), built with tests/support/cluster.py.

- ``s3_server`` (session): a real moto S3 server process over HTTP; each test uses its own bucket.
- ``s3_env``: what a trainer (or any boto3 client) needs to reach it - endpoint, region us-east-1,
  path-style addressing, dummy credentials -, also set in ``os.environ`` for the test, so in-process
  boto3 clients find the credentials through the standard chain. ``s3_bucket``: a fresh, created bucket.
- ``sandbox`` (session): etcd, kube-apiserver (RBAC, PodSecurity), kube-controller-manager, the node agent,
  an S3 server with the bucket, CRDs from crds/, and the operator installed by
  ``helm install charts/clm-operator``. ``kubectl``: a ``Kubectl`` in a fresh namespace of it (Pod Security
  ``restricted``, with the S3 Secret), deleted afterwards; ``sandbox_namespace``: that namespace's name.
- ``bare_sandbox`` (session): the control plane and node agent only (no operator, no S3), for tests of the
  sandbox itself and of anything that must not race with the operator; ``bare_kubectl`` and
  ``bare_namespace`` likewise.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from clm_contract.trainer_contract import (
    ENV_S3_ACCESS_KEY_ID,
    ENV_S3_ENDPOINT_URL,
    ENV_S3_PATH_STYLE,
    ENV_S3_REGION,
    ENV_S3_SECRET_ACCESS_KEY,
)
from clm_sandbox.s3server import S3Server, start_s3_server

from tests.support.cluster import Kubectl, cluster_fixture, namespace_fixture

sandbox = cluster_fixture(scope="session", operator=True, s3=True)
bare_sandbox = cluster_fixture(scope="session", operator=False, s3=False)
kubectl = namespace_fixture("t", cluster="sandbox")
bare_kubectl = namespace_fixture("b", cluster="bare_sandbox")


@pytest.fixture
def sandbox_namespace(kubectl: Kubectl) -> str:
    return kubectl.namespace


@pytest.fixture
def bare_namespace(bare_kubectl: Kubectl) -> str:
    return bare_kubectl.namespace


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_s3_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        ENV_S3_ENDPOINT_URL: s3_server.endpoint_url,
        ENV_S3_REGION: "us-east-1",
        ENV_S3_PATH_STYLE: "true",
        ENV_S3_ACCESS_KEY_ID: "testing",
        ENV_S3_SECRET_ACCESS_KEY: "testing",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # A developer's own AWS profile must never leak into tests (or be sent to the fake server).
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return env


@pytest.fixture
def s3_bucket(s3_env: dict[str, str]) -> str:
    name = f"test-{uuid.uuid4().hex[:16]}"
    client = boto3.session.Session().client(
        "s3", endpoint_url=s3_env[ENV_S3_ENDPOINT_URL], region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )
    client.create_bucket(Bucket=name)
    return name
