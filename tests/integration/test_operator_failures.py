"""Failures end to end: permanent trainer errors, retries, bad specs, immutability, stuck pods."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest
from clm_operator.sandbox.cluster import wait_for
from clm_operator.sandbox.s3server import free_port

from tests.integration.operator_harness import OperatorSandbox, condition, operator_sandbox, training_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
_names = itertools.count(1)


@pytest.fixture(scope="module")
def env() -> Iterator[OperatorSandbox]:
    with operator_sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def ns(env: OperatorSandbox) -> Iterator[str]:
    name = f"fail-{next(_names)}"
    env.sb.create_namespace(name)
    yield name
    env.sb.delete_namespace(name)


def pods_of(env: OperatorSandbox, ns: str, name: str) -> list[dict[str, object]]:
    return env.objects("pods", ns, f"clm.dev/training-job={name}")


def test_permanent_trainer_error_fails_at_once_without_retries(env: OperatorSandbox, ns: str) -> None:
    document = training_job("missing-data", backoffLimit=3,
                            dataset={"uri": "s3://clm-models/nowhere/missing.csv", "symbol": "BTCUSDT"})
    assert env.apply(ns, document).returncode == 0
    tj = env.wait_finished(ns, "missing-data", timeout=120)
    status = tj["status"]
    assert status["phase"] == "Failed" and status["reason"] == "PodFailurePolicy"
    assert "BadData" in status["message"] and "spec.dataset.uri" in status["message"]
    assert len(pods_of(env, ns, "missing-data")) == 1  # exit 2 is never retried despite backoffLimit 3
    mv = env.get("modelversions", ns, status["modelVersion"])
    assert mv is not None and mv["status"]["stage"] == "Failed"
    assert condition(mv, "Trained")["status"] == "False"
    assert [(h.get("from"), h["to"]) for h in mv["status"]["stageHistory"]] == [(None, "Training"),
                                                                                ("Training", "Failed")]
    warnings = [e for e in env.events(ns, "missing-data") if e["type"] == "Warning"]
    assert any(e["reason"] == "TrainingFailed" for e in warnings)


@pytest.mark.parametrize(("change", "field"), [
    ({"modelName": None}, "spec.modelName"),
    ({"algorithm": "randomforest"}, "spec.algorithm"),
    ({"resources": {"gpu": -1}}, "spec.resources.gpu"),
])
def test_the_api_server_rejects_what_the_schema_can_express(env: OperatorSandbox, ns: str,
                                                             change: dict[str, object], field: str) -> None:
    result = env.apply(ns, training_job("bad", **change))
    assert result.returncode != 0
    assert field in result.stderr, result.stderr
    assert env.get("trainingjobs", ns, "bad") is None
    assert env.objects("jobs", ns) == []


@pytest.mark.parametrize(("change", "field"), [
    ({"hyperparameters": {"maxDepht": 3}}, "spec.hyperparameters.maxDepht"),
    ({"target": {"horizonBars": 4}, "evaluation": {"embargoBars": 1}}, "spec.evaluation.embargoBars"),
])
def test_the_operator_rejects_what_only_it_can_check(env: OperatorSandbox, ns: str,
                                                     change: dict[str, object], field: str) -> None:
    assert env.apply(ns, training_job("invalid", **change)).returncode == 0
    tj = env.wait_finished(ns, "invalid", timeout=60)
    accepted = condition(tj, "Accepted")
    assert tj["status"]["phase"] == "Failed" and tj["status"]["reason"] == "InvalidSpec"
    assert accepted["status"] == "False" and accepted["reason"] == "InvalidSpec"
    assert field in accepted["message"]
    warnings = [e for e in env.events(ns, "invalid") if e["reason"] == "InvalidSpec"]
    assert warnings and warnings[0]["type"] == "Warning" and field in warnings[0]["message"]
    time.sleep(2)  # two resync periods: still no Job, no ModelVersion, no retry
    assert env.objects("jobs", ns) == [] and env.objects("modelversions", ns) == []
    assert len([e for e in env.events(ns, "invalid") if e["reason"] == "InvalidSpec"]) == 1


def test_spec_is_immutable(env: OperatorSandbox, ns: str) -> None:
    document = training_job("fixed", image="never/pulled:v1", startupTimeoutSeconds=3600)
    assert env.apply(ns, document).returncode == 0
    wait_for(lambda: env.get("jobs", ns, "fixed-train"), timeout=30)
    patched = env.kubectl(ns, "patch", "tj", "fixed", "--type=merge", "-p", '{"spec":{"seed":7}}')
    assert patched.returncode != 0 and "spec is immutable" in patched.stderr


def test_image_pull_backoff_past_the_startup_timeout_fails_the_run(env: OperatorSandbox, ns: str) -> None:
    document = training_job("no-image", image="registry.invalid/clm-trainer:missing", startupTimeoutSeconds=2)
    assert env.apply(ns, document).returncode == 0
    wait_for(lambda: env.get("jobs", ns, "no-image-train"), timeout=30)
    tj = env.wait_finished(ns, "no-image", timeout=60)
    assert tj["status"]["phase"] == "Failed" and tj["status"]["reason"] == "ImagePullBackOff"
    assert "startupTimeoutSeconds=2" in tj["status"]["message"]
    wait_for(lambda: env.get("jobs", ns, "no-image-train") is None, timeout=30, message="the Job deleted")
    mv = env.get("modelversions", ns, tj["status"]["modelVersion"])
    assert mv is not None and mv["status"]["stage"] == "Failed"


def test_transient_storage_errors_are_retried_up_to_the_backoff_limit() -> None:
    # A dedicated sandbox whose operator hands the trainer an S3 endpoint nobody listens on.
    dead = f"http://127.0.0.1:{free_port()}"
    with operator_sandbox(operator_env={"CLM_S3_ENDPOINT_URL": dead}) as env:
        env.sb.create_namespace("unreachable")
        document = training_job("flaky", backoffLimit=1,
                                dataset={"uri": "s3://clm-models/data/btc.csv", "symbol": "BTCUSDT"})
        assert env.apply("unreachable", document).returncode == 0
        tj = env.wait_finished("unreachable", "flaky", timeout=240)
        status = tj["status"]
        assert status["phase"] == "Failed" and status["reason"] == "BackoffLimitExceeded"
        assert "StorageUnavailable" in status["message"]
        attempts = pods_of(env, "unreachable", "flaky")
        assert len(attempts) == 2  # the first try and one retry (backoffLimit 1)
