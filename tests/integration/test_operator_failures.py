"""Failures end to end: permanent trainer errors, retries, bad specs, immutability, stuck pods."""

from __future__ import annotations

import time

import pytest
from clm_sandbox.cluster import Sandbox

from tests.support.cluster import (
    OPERATOR_TESTS,
    Kubectl,
    cluster_fixture,
    free_port,
    namespace_fixture,
    running,
    wait_finished,
    wait_for,
)
from tests.support.objects import condition, training_job_manifest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

env = cluster_fixture(**OPERATOR_TESTS)
kubectl = namespace_fixture("fail")


def pods_of(kubectl: Kubectl, name: str) -> list[dict[str, object]]:
    return kubectl.objects("pods", f"clm.dev/training-job={name}")


def test_permanent_trainer_error_fails_at_once_without_retries(env: Sandbox, kubectl: Kubectl) -> None:
    missing = {"uri": "s3://clm-models/nowhere/missing.csv", "symbol": "BTCUSDT"}
    document = training_job_manifest("missing-data", backoffLimit=3, dataset=missing)
    assert kubectl.apply(document).returncode == 0
    tj = wait_finished(kubectl, "missing-data", timeout=120)
    status = tj["status"]
    # The trainer's own reason, not the Job's PodFailurePolicy (issue 14); the message says it once.
    assert status["phase"] == "Failed" and status["reason"] == "BadData"
    assert "spec.dataset.uri" in status["message"] and "PodFailurePolicy: " not in status["message"]
    assert len(pods_of(kubectl, "missing-data")) == 1  # exit 2 is never retried despite backoffLimit 3
    mv = kubectl.get("modelversions", status["modelVersion"])
    assert mv is not None and mv["status"]["stage"] == "Failed"
    assert condition(mv, "Trained")["status"] == "False"
    assert [(h.get("from"), h["to"]) for h in mv["status"]["stageHistory"]] == [(None, "Training"),
                                                                                ("Training", "Failed")]
    warnings = [e for e in kubectl.events(involving="missing-data") if e["type"] == "Warning"]
    assert any(e["reason"] == "TrainingFailed" for e in warnings)
    (announced,) = [e["message"] for e in warnings if e["reason"] == "TrainingFailed"]
    assert announced == f"BadData: {status['message']}"  # the reason and the message, each once


@pytest.mark.parametrize(("change", "field"), [
    ({"modelName": None}, "spec.modelName"),
    ({"algorithm": "randomforest"}, "spec.algorithm"),
    ({"resources": {"gpu": -1}}, "spec.resources.gpu"),
    # CEL rules and the typed hyperparameters of the CRD (more in tests/integration/test_admission.py)
    ({"hyperparameters": {"maxDepht": 3}}, "spec.hyperparameters.maxDepht"),
    ({"target": {"horizonBars": 4}, "evaluation": {"embargoBars": 1}}, "spec.evaluation.embargoBars"),
])
def test_the_api_server_rejects_what_the_schema_can_express(env: Sandbox, kubectl: Kubectl,
                                                             change: dict[str, object], field: str) -> None:
    result = kubectl.apply(training_job_manifest("bad", **change))
    assert result.returncode != 0
    assert field in result.stderr, result.stderr
    assert kubectl.get("trainingjobs", "bad") is None
    assert kubectl.objects("jobs") == []


@pytest.mark.parametrize(("change", "field"), [
    # bounds that differ per algorithm, and relations between hyperparameters: pydantic's alone
    ({"hyperparameters": {"maxDepth": 17}}, "spec.hyperparameters.maxDepth"),
    ({"algorithm": "patchtst", "hyperparameters": {"dModel": 64, "nHeads": 5}},
     "spec.hyperparameters.nHeads"),
])
def test_the_operator_rejects_what_only_it_can_check(env: Sandbox, kubectl: Kubectl,
                                                     change: dict[str, object], field: str) -> None:
    assert kubectl.apply(training_job_manifest("invalid", **change)).returncode == 0
    tj = wait_finished(kubectl, "invalid", timeout=60)
    accepted = condition(tj, "Accepted")
    assert tj["status"]["phase"] == "Failed" and tj["status"]["reason"] == "InvalidSpec"
    assert accepted["status"] == "False" and accepted["reason"] == "InvalidSpec"
    assert field in accepted["message"]
    warnings = [e for e in kubectl.events(involving="invalid") if e["reason"] == "InvalidSpec"]
    assert warnings and warnings[0]["type"] == "Warning" and field in warnings[0]["message"]
    time.sleep(2)  # two resync periods: still no Job, no ModelVersion, no retry
    assert kubectl.objects("jobs") == [] and kubectl.objects("modelversions") == []
    assert len([e for e in kubectl.events(involving="invalid") if e["reason"] == "InvalidSpec"]) == 1


def test_spec_is_immutable(env: Sandbox, kubectl: Kubectl) -> None:
    document = training_job_manifest("fixed", image="never/pulled:v1", startupTimeoutSeconds=3600)
    assert kubectl.apply(document).returncode == 0
    wait_for(lambda: kubectl.get("jobs", "fixed-train"), timeout=30)
    patched = kubectl("patch", "tj", "fixed", "--type=merge", "-p", '{"spec":{"seed":7}}')
    assert patched.returncode != 0 and "spec is immutable" in patched.stderr


def test_image_pull_backoff_past_the_startup_timeout_fails_the_run(env: Sandbox, kubectl: Kubectl) -> None:
    document = training_job_manifest("no-image", image="registry.invalid/clm-trainer:missing",
                                     startupTimeoutSeconds=2)
    assert kubectl.apply(document).returncode == 0
    wait_for(lambda: kubectl.get("jobs", "no-image-train"), timeout=30)
    tj = wait_finished(kubectl, "no-image", timeout=60)
    assert tj["status"]["phase"] == "Failed" and tj["status"]["reason"] == "ImagePullBackOff"
    assert "startupTimeoutSeconds=2" in tj["status"]["message"]
    wait_for(lambda: kubectl.get("jobs", "no-image-train") is None, timeout=30, message="the Job deleted")
    mv = kubectl.get("modelversions", tj["status"]["modelVersion"])
    assert mv is not None and mv["status"]["stage"] == "Failed"


def test_transient_storage_errors_are_retried_up_to_the_backoff_limit() -> None:
    # A dedicated sandbox whose operator hands the trainer an S3 endpoint nobody listens on.
    dead = f"http://127.0.0.1:{free_port()}"
    with running(operator_env={**OPERATOR_TESTS["operator_env"], "CLM_S3_ENDPOINT_URL": dead}) as env:
        env.create_namespace("unreachable")
        kubectl = Kubectl(env, "unreachable")
        document = training_job_manifest("flaky", backoffLimit=1,
                                         dataset={"uri": "s3://clm-models/data/btc.csv", "symbol": "BTCUSDT"})
        assert kubectl.apply(document).returncode == 0
        tj = wait_finished(kubectl, "flaky", timeout=240)
        status = tj["status"]
        assert status["phase"] == "Failed" and status["reason"] == "BackoffLimitExceeded"
        assert "StorageUnavailable" in status["message"]
        attempts = pods_of(kubectl, "flaky")
        assert len(attempts) == 2  # the first try and one retry (backoffLimit 1)
