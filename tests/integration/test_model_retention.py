"""Retention in the sandbox: the newest keepVersions retired/failed versions stay, serving ones and the
rollback target are never pruned, and only under artifactDeletionPolicy Delete do the pruned versions'
S3 objects go (through the clm.dev/artifact-cleanup finalizer)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from clm_sandbox.cluster import S3_ACCESS_KEY, S3_SECRET_KEY, Sandbox

from tests.support.cluster import (
    MODEL_TESTS,
    Kubectl,
    cluster_fixture,
    create_version,
    namespace_fixture,
    stages,
    wait_for,
    wait_status,
)
from tests.support.objects import model_manifest, version_string

pytestmark = pytest.mark.timeout(180)


env = cluster_fixture(**MODEL_TESTS)


kubectl = namespace_fixture("keep")


def s3(cluster: Sandbox) -> Any:
    return boto3.client("s3", endpoint_url=cluster.s3.endpoint_url, region_name="us-east-1",
                        aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY)


def bucket_and_root(cluster: Sandbox) -> tuple[str, str]:
    bucket, root = cluster.output_uri.removeprefix("s3://").split("/", 1)
    return bucket, root


def upload_version(cluster: Sandbox, namespace: str, model: str, n: int) -> str:
    """The files a trainer leaves for version n (plus one that only the prefix deletion would find)."""
    bucket, root = bucket_and_root(cluster)
    folder = f"{root}/{namespace}/{model}/{version_string(n)}"
    for name in ("model.ubj", "manifest.json", "report/equity.png"):
        s3(cluster).put_object(Bucket=bucket, Key=f"{folder}/{name}", Body=b"x" * 10)
    return f"s3://{bucket}/{folder}/model.ubj"


def stored_versions(cluster: Sandbox, namespace: str, model: str) -> dict[str, int]:
    bucket, root = bucket_and_root(cluster)
    listed = s3(cluster).list_objects_v2(Bucket=bucket, Prefix=f"{root}/{namespace}/{model}/")
    counts: dict[str, int] = {}
    for obj in listed.get("Contents", []):
        version = obj["Key"].split("/")[3]
        counts[version] = counts.get(version, 0) + 1
    return counts


def add(cluster: Sandbox, kubectl: Kubectl, model: str, n: int, sharpe: float,
        passed: bool = True) -> str:
    uri = upload_version(cluster, kubectl.namespace, model, n)
    return create_version(kubectl, model, n, sharpe=sharpe, passed=passed, artifact_uri=uri)


def version_names(kubectl: Kubectl, model: str) -> set[str]:
    return set(stages(kubectl, model))


def test_delete_policy_prunes_old_versions_and_their_objects(env: Sandbox,
                                                             kubectl: Kubectl) -> None:
    cluster = env
    kubectl.apply(model_manifest("pruned", extra_spec={
        "retention": {"keepVersions": 1, "artifactDeletionPolicy": "Delete"}}), check=True)
    v1 = add(cluster, kubectl, "pruned", 1, 0.1, passed=False)
    v2 = add(cluster, kubectl, "pruned", 2, 0.2, passed=False)
    v3 = add(cluster, kubectl, "pruned", 3, 1.0)
    wait_status(kubectl, "pruned", lambda s: s.get("productionVersion") == v3)
    v4 = add(cluster, kubectl, "pruned", 4, 1.5)
    wait_status(kubectl, "pruned", lambda s: s.get("productionVersion") == v4)
    # v1 pruned (older of the two Failed); v3 is Retired but the rollback target; v4 serves.
    wait_for(lambda: version_names(kubectl, "pruned") == {v2, v3, v4}, timeout=20,
             message=lambda: f"versions {stages(kubectl, 'pruned')}")
    wait_for(lambda: v1 not in stored_versions(cluster, kubectl.namespace, "pruned"), timeout=20,
             message="v1's objects deleted")
    assert stored_versions(cluster, kubectl.namespace, "pruned") == {v2: 3, v3: 3, v4: 3}
    mv = kubectl.get_json("modelversion", f"pruned-{v4}")
    assert "clm.dev/artifact-cleanup" in mv["metadata"]["finalizers"]

    # v5 replaces v4: v4 becomes the rollback target, v3 is now prunable and newer than v2.
    v5 = add(cluster, kubectl, "pruned", 5, 2.0)
    wait_status(kubectl, "pruned", lambda s: s.get("productionVersion") == v5)
    wait_for(lambda: version_names(kubectl, "pruned") == {v3, v4, v5}, timeout=20,
             message=lambda: f"versions {stages(kubectl, 'pruned')}")
    wait_for(lambda: set(stored_versions(cluster, kubectl.namespace, "pruned")) == {v3, v4, v5}, timeout=20,
             message=lambda: f"objects {stored_versions(cluster, kubectl.namespace, 'pruned')}")
    assert stages(kubectl, "pruned") == {v3: "Retired", v4: "Retired", v5: "Production"}


def test_retain_policy_prunes_objects_in_the_api_but_never_data(env: Sandbox,
                                                                kubectl: Kubectl) -> None:
    cluster = env
    kubectl.apply(model_manifest("kept", extra_spec={"retention": {"keepVersions": 0}}),
            check=True)
    v1 = add(cluster, kubectl, "kept", 1, 0.1, passed=False)
    v2 = add(cluster, kubectl, "kept", 2, 1.0)
    wait_status(kubectl, "kept", lambda s: s.get("productionVersion") == v2)
    wait_for(lambda: version_names(kubectl, "kept") == {v2}, timeout=20,
             message=lambda: f"versions {stages(kubectl, 'kept')}")
    assert stored_versions(cluster, kubectl.namespace, "kept") == {v1: 3, v2: 3}
    mv = kubectl.get_json("modelversion", f"kept-{v2}")
    assert "clm.dev/artifact-cleanup" not in (mv["metadata"].get("finalizers") or [])
