"""TrainingJob -> Job -> ModelVersion through the sandbox, with kubectl as the client and real training."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
import urllib.request

import boto3
import pytest
from clm_sandbox.cluster import S3_ACCESS_KEY, S3_SECRET_KEY, Sandbox
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import (
    OPERATOR_TESTS,
    Kubectl,
    cluster_fixture,
    namespace_fixture,
    scrape,
    wait_finished,
    wait_for,
)
from tests.support.objects import condition, training_job_manifest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


env = cluster_fixture(**OPERATOR_TESTS)


kubectl = namespace_fixture("train")


def test_planted_signal_becomes_a_candidate_with_its_artifact_in_s3(env: Sandbox, kubectl: Kubectl) -> None:
    template = {key: value for key, value in training_job_manifest("x")["spec"].items() if key != "modelName"}
    model = {"apiVersion": "clm.dev/v1alpha1", "kind": "Model", "metadata": {"name": "btc-xgb"},
             "spec": {"template": template, "suspend": True, "promotion": {"policy": "Manual"}}}
    applied = kubectl.apply(model)
    assert applied.returncode == 0, applied.stderr
    applied = kubectl.apply(training_job_manifest("planted"))
    assert applied.returncode == 0, applied.stderr
    tj = wait_finished(kubectl, "planted")
    status = tj["status"]
    assert status["phase"] == "Succeeded", status
    assert status["observedGeneration"] == tj["metadata"]["generation"]
    assert status["metrics"]["passed"] is True and status["metrics"]["sharpe"] > 1.0
    assert condition(tj, "Complete")["status"] == "True"

    mv = kubectl.get("modelversions", status["modelVersion"])
    assert mv is not None
    assert mv["metadata"]["name"] == f"btc-xgb-{status['version']}"
    assert mv["spec"] == {"modelName": "btc-xgb", "version": status["version"], "algorithm": "xgboost",
                          "trainingJobRef": {"name": "planted", "uid": tj["metadata"]["uid"]}}
    # owned by its Model, never by the run: deleting the run keeps the model
    owners = mv["metadata"].get("ownerReferences") or []
    assert [(o["kind"], o["name"]) for o in owners] == [("Model", "btc-xgb")]
    mv_status = mv["status"]
    assert mv_status["stage"] == "Candidate"
    assert mv_status["evaluation"]["passed"] is True and mv_status["evaluation"]["failedCriteria"] == []
    assert mv_status["metrics"]["backtest"]["trades"] >= 50
    assert [(h.get("from"), h["to"]) for h in mv_status["stageHistory"]] == [(None, "Training"),
                                                                              ("Training", "Candidate")]
    assert mv_status["dataset"]["symbol"] == "BTCUSDT" and mv_status["dataset"]["rows"] > 0

    artifact = mv_status["artifact"]
    assert artifact["uri"].startswith(f"s3://clm-models/models/{kubectl.namespace}/btc-xgb/{status['version']}/")
    bucket, key = artifact["uri"].removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3", endpoint_url=env.s3.endpoint_url, region_name="us-east-1",
                      aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == artifact["sha256"] and len(body) == artifact["sizeBytes"]

    job = kubectl.get("jobs", status["jobName"])
    assert job is not None
    assert job["metadata"]["ownerReferences"][0]["uid"] == tj["metadata"]["uid"]
    events = kubectl.events(involving="planted") + kubectl.events(involving=mv["metadata"]["name"])
    reasons = {e["reason"] for e in events}
    assert {"TrainingJobCreated", "ModelTrained", "ModelEvaluated"} <= reasons

    printed = kubectl("get", "tj", "planted", "--no-headers")
    assert printed.returncode == 0 and "Succeeded" in printed.stdout and status["version"] in printed.stdout
    printed = kubectl("get", "mv", "--no-headers")
    assert "Candidate" in printed.stdout
    # no secret ever reaches a status or an event
    everything = str(tj) + str(mv) + str(kubectl.objects("events"))
    assert S3_SECRET_KEY not in everything and S3_ACCESS_KEY not in everything

    # deleting the run's record takes its Job along (ownerReference) and keeps the model
    deleted = kubectl("delete", "tj", "planted", "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    wait_for(lambda: kubectl.get("jobs", status["jobName"]) is None, timeout=30, message="the Job collected")
    assert kubectl.get("modelversions", status["modelVersion"]) is not None


def test_kueue_owns_suspend(env: Sandbox, kubectl: Kubectl) -> None:
    queued = training_job_manifest("queued", queueName="gpu", startupTimeoutSeconds=1)
    assert kubectl.apply(queued).returncode == 0
    job = wait_for(lambda: kubectl.get("jobs", "queued-train"), timeout=30, message="the Job")
    assert job is not None
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu"

    def waiting_for_admission() -> bool:
        tj = kubectl.get("trainingjobs", "queued") or {}
        return (tj.get("status") or {}).get("reason") == "Suspended"

    wait_for(waiting_for_admission, timeout=30, message="the TrainingJob to wait for its queue")
    time.sleep(2)  # past startupTimeoutSeconds: a queued Job is waiting, not stuck
    tj = kubectl.get("trainingjobs", "queued")
    assert tj is not None and tj["status"]["phase"] == "Pending"
    # Kueue admits the Job by unsuspending it; the operator must not suspend it again
    admitted = kubectl("patch", "job", "queued-train", "--type=merge",
                           "-p", '{"spec":{"suspend":false}}')
    assert admitted.returncode == 0, admitted.stderr
    tj = wait_finished(kubectl, "queued")
    assert tj["status"]["phase"] == "Succeeded"
    job = kubectl.get("jobs", "queued-train")
    assert job is not None and job["spec"]["suspend"] is False


def test_random_walk_fails_its_criteria(env: Sandbox, kubectl: Kubectl) -> None:
    random_walk = "builtin:synthetic?kind=random_walk&seed=11&bars=3000"
    document = training_job_manifest("noise", dataset={"uri": random_walk, "symbol": "BTCUSDT"})
    assert kubectl.apply(document).returncode == 0
    tj = wait_finished(kubectl, "noise")
    assert tj["status"]["phase"] == "Succeeded"  # the run worked; the model is not good enough
    assert tj["status"]["metrics"]["passed"] is False
    mv = kubectl.get("modelversions", tj["status"]["modelVersion"])
    assert mv is not None
    assert mv["status"]["stage"] == "Failed"
    failed = mv["status"]["evaluation"]["failedCriteria"]
    assert failed and any(item.startswith("sharpe:") for item in failed)
    evaluated = condition(mv, "Evaluated")
    assert evaluated["status"] == "False" and evaluated["reason"] == "CriteriaNotMet"
    assert "sharpe" in evaluated["message"]
    assert any(e["reason"] == "ModelEvaluated" and e["type"] == "Warning"
               for e in kubectl.events(involving=mv["metadata"]["name"]))


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in a Prometheus text exposition (AssertionError when absent)."""
    for family in text_string_to_metric_families(text):
        for item in family.samples:
            if item.name == name and all(item.labels.get(k) == v for k, v in labels.items()):
                return float(item.value)
    raise AssertionError(f"no sample {name}{labels} in /metrics")


def test_metrics_pass_promtool_and_count_the_runs(env: Sandbox, kubectl: Kubectl) -> None:
    ns = kubectl.namespace
    assert kubectl.apply(training_job_manifest("counted")).returncode == 0
    tj = wait_finished(kubectl, "counted")
    assert tj["status"]["phase"] == "Succeeded"
    version = tj["status"]["version"]

    def scraped() -> str | None:
        text = scrape(env)
        families = {f.name for f in text_string_to_metric_families(text)}
        return text if "clm_last_successful_training_timestamp_seconds" in families else None

    text = wait_for(scraped, timeout=30)
    assert text is not None
    promtool = shutil.which("promtool")
    assert promtool, "promtool is required (Debian package prometheus; scripts/setup.sh installs it)"
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    for family in ("clm_reconciles_total", "clm_reconcile_errors_total", "clm_reconcile_duration_seconds",
                   "clm_training_jobs", "clm_training_job_failures_total", "clm_training_duration_seconds",
                   "clm_model_versions", "clm_promotions_total", "clm_rollbacks_total", "clm_promotion_score",
                   "clm_last_successful_training_timestamp_seconds", "clm_model_production_version_info",
                   "clm_model_has_production", "clm_model_next_schedule_timestamp_seconds",
                   "clm_webhook_requests_total"):
        assert f"# TYPE {family}" in text or f"# TYPE {family.removesuffix('_total')}" in text, family
    assert sample(text, "clm_reconciles_total", kind="TrainingJob", result="success") >= 1
    assert sample(text, "clm_training_jobs", namespace=ns, phase="Succeeded") == 1
    assert sample(text, "clm_training_jobs", namespace=ns, phase="Running") == 0
    assert sample(text, "clm_model_versions", namespace=ns, model="btc-xgb", stage="Candidate") == 1
    assert sample(text, "clm_training_duration_seconds_count", algorithm="xgboost") >= 1
    assert sample(text, "clm_promotion_score", namespace=ns, model="btc-xgb", version=version) > 0
    assert sample(text, "clm_last_successful_training_timestamp_seconds", namespace=ns, model="btc-xgb") > 0

    # kopf's liveness endpoint answers on --health-port
    with urllib.request.urlopen(f"http://127.0.0.1:{env.health_port}/healthz", timeout=10) as response:
        assert response.status == 200
