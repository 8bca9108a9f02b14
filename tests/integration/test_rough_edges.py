"""What a new user hits, in the sandbox (issue 14): ``kubectl wait --for=condition=Ready`` on all three
kinds, a zero ttlSecondsAfterFinished that keeps the run's outcome, a deleted run failing its version, an
invalid cron refused, re-promotion after a rollback recorded as a promotion, and the webhook taking a
1,000-alert body while refusing hostile label values."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest
from clm_sandbox.cluster import Sandbox

from tests.support.cluster import (
    MODEL_TESTS,
    WEBHOOK_TOKEN,
    Kubectl,
    cluster_fixture,
    create_version,
    model_status,
    namespace_fixture,
    scrape,
    stages,
    wait_finished,
    wait_for,
    wait_status,
)
from tests.support.objects import PENDING_TEMPLATE, condition, model_manifest

pytestmark = [pytest.mark.timeout(420), pytest.mark.slow]

env = cluster_fixture(**MODEL_TESTS)
kubectl = namespace_fixture("edge")


def run_of(model: dict[str, Any], name: str, **spec: Any) -> dict[str, Any]:
    """A TrainingJob applied by hand: the Model's template and criteria."""
    body = json.loads(json.dumps(model["spec"]["template"]))
    body.update(modelName=model["metadata"]["name"], **spec)
    body.setdefault("evaluation", {})["criteria"] = model["spec"]["promotion"]["criteria"]
    return {"apiVersion": "clm.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": name}, "spec": body}


def wait_ready(kubectl: Kubectl, what: str, timeout: int) -> None:
    result = kubectl("wait", "--for=condition=Ready", what, f"--timeout={timeout}s", timeout=timeout + 30)
    assert result.returncode == 0, f"{what}: {result.stderr}\n{kubectl.cluster.operator_logs()[-3000:]}"


def test_ready_on_all_three_kinds_and_a_zero_ttl_keeps_the_outcome(env: Sandbox, kubectl: Kubectl) -> None:
    model = model_manifest("btc")
    kubectl.apply(model, check=True)
    kubectl.apply(run_of(model, "btc-ttl0", ttlSecondsAfterFinished=0), check=True)
    status = wait_finished(kubectl, "btc-ttl0", timeout=300)["status"]
    assert status["phase"] == "Succeeded" and status["reason"] != "JobDeleted", status
    wait_ready(kubectl, "trainingjob/btc-ttl0", 10)
    assert condition({"status": status}, "Ready")["status"] == "True"
    # The TTL of 0 did remove the Job: the outcome was recorded without it.
    wait_for(lambda: kubectl.get("jobs", "btc-ttl0-train") is None, timeout=30, message="the Job's TTL")
    wait_ready(kubectl, f"modelversion/{status['modelVersion']}", 60)
    wait_ready(kubectl, "model/btc", 60)
    assert model_status(kubectl, "btc")["productionVersion"] == status["version"]


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the host's TCP sockets listening on ``port`` (from /proc/net/tcp{,6})."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in list(rows)[1:]:
                local, state = row.split()[1], row.split()[3]
                address, hex_port = local.rsplit(":", 1)
                if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


def test_the_operator_listens_on_loopback_only(env: Sandbox) -> None:
    assert "clm_reconciles_total" in scrape(env)
    for port in (env.metrics_port, env.health_port, env.webhook_port):
        # 0100007F is 127.0.0.1 in /proc's byte order; 00000000 would be every interface.
        assert listening_addresses(port) == {"0100007F"}, (port, listening_addresses(port))


def test_deleting_a_running_training_job_fails_its_version(kubectl: Kubectl) -> None:
    model = model_manifest("pend", template=PENDING_TEMPLATE)
    kubectl.apply(model, check=True)
    started = kubectl.plugin("train", "pend")
    assert started.returncode == 0, started.stderr
    name = re.search(r"trainingjob\.clm\.dev/(\S+) created", started.stdout)
    assert name is not None, started.stdout
    run = name.group(1)
    wait_for(lambda: "Training" in stages(kubectl, "pend").values(), timeout=30, message="a Training version")
    ready = kubectl("wait", "--for=condition=Ready=False", f"trainingjob/{run}", "--timeout=30s")
    assert ready.returncode == 0, ready.stderr
    kubectl("delete", "trainingjob", run, check=True)

    def failed() -> dict[str, Any] | None:
        versions = [mv for mv in kubectl.get_json("modelversions")["items"]
                    if mv["spec"]["trainingJobRef"]["name"] == run]
        return versions[0] if versions and versions[0].get("status", {}).get("stage") == "Failed" else None

    mv = wait_for(failed, timeout=30, message=lambda: f"the version Failed; {stages(kubectl, 'pend')}")
    trained = condition(mv, "Trained")
    assert (trained["status"], trained["reason"]) == ("False", "TrainingJobDeleted")
    assert condition(mv, "Ready")["status"] == "False"
    assert [h["to"] for h in mv["status"]["stageHistory"]] == ["Training", "Failed"]
    warnings = kubectl.events(involving=mv["metadata"]["name"], reason="TrainingFailed")
    assert warnings and warnings[0]["type"] == "Warning" and "TrainingJobDeleted" in warnings[0]["message"]


def test_an_invalid_cron_is_not_accepted_and_the_plugin_refuses_to_train(kubectl: Kubectl) -> None:
    applied = kubectl.apply(model_manifest("badcron", schedule="61 * * * *"))
    if applied.returncode != 0:  # the CRD's own rule refuses it at admission, naming the field
        assert "schedule" in applied.stderr, applied.stderr
        return
    status = wait_status(kubectl, "badcron",
                         lambda s: any(c["type"] == "Accepted" for c in s.get("conditions", [])))
    accepted = condition({"status": status}, "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "InvalidSpec")
    assert "spec.schedule" in accepted["message"]
    assert condition({"status": status}, "Ready")["status"] == "False"
    refused = kubectl.plugin("train", "badcron")
    assert refused.returncode != 0 and "spec.schedule" in refused.stderr and refused.stdout == ""
    assert kubectl.objects("trainingjobs") == []


def test_re_promoting_the_newer_version_after_a_rollback_is_a_promotion(kubectl: Kubectl) -> None:
    kubectl.apply(model_manifest("rb"), check=True)
    v1 = create_version(kubectl, "rb", 1, sharpe=1.0)
    wait_status(kubectl, "rb", lambda s: s.get("productionVersion") == v1)
    v2 = create_version(kubectl, "rb", 2, sharpe=1.8)
    wait_status(kubectl, "rb", lambda s: s.get("productionVersion") == v2)
    assert kubectl.plugin("rollback", "rb").returncode == 0
    wait_status(kubectl, "rb", lambda s: s.get("productionVersion") == v1, what="rolled back")
    promoted = kubectl.plugin("promote", "rb", v2)
    assert promoted.returncode == 0, promoted.stderr
    status = wait_status(kubectl, "rb", lambda s: s.get("productionVersion") == v2, what="re-promoted")
    moves = [(h.get("from"), h["to"], h["reason"]) for h in status["history"]]
    assert moves == [(None, v1, "Promoted"), (v1, v2, "Promoted"), (v2, v1, "RolledBack"),
                     (v1, v2, "Promoted")]
    wait_for(lambda: stages(kubectl, "rb") == {v1: "Retired", v2: "Production"}, timeout=20)
    rollbacks = kubectl.events(involving="rb", reason="ModelRolledBack")
    assert sum(int(e.get("count") or 1) for e in rollbacks) == 1


def post(port: int, payload: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/alertmanager",
                                     data=json.dumps(payload).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(json.loads(response.read()))
    except urllib.error.HTTPError as error:
        return error.code, dict(json.loads(error.read() or b"{}"))


def counted(env: Sandbox, result: str) -> float:
    match = re.search(rf'^clm_webhook_requests_total{{result="{result}"}} (\S+)$', scrape(env), re.M)
    return float(match.group(1)) if match else 0.0


def test_the_webhook_takes_a_thousand_alerts_and_refuses_hostile_labels(env: Sandbox,
                                                                        kubectl: Kubectl) -> None:
    ns = kubectl.namespace
    kubectl.apply(model_manifest("hook", template=PENDING_TEMPLATE), check=True)
    alerts = [{"status": "firing", "fingerprint": f"{i:016x}", "startsAt": "2026-03-02T11:00:00Z",
               "labels": {"alertname": "FeatureDrift", "clm_model": "hook", "namespace": ns,
                          "feature": f"f{i}"},
               "annotations": {"summary": "population stability index above 0.25 " * 2}} for i in range(1000)]
    payload = {"version": "4", "status": "firing", "alerts": alerts}
    assert len(json.dumps(payload)) > 150_000
    status, answer = post(env.webhook_port, payload)
    assert status == 200 and answer["result"] == "accepted", answer
    assert len(answer["accepted"]) == 1 and len(answer["deduplicated"]) == 999
    runs = kubectl.objects("trainingjobs")
    assert [r["metadata"]["labels"]["clm.dev/trigger"] for r in runs] == ["drift"]

    before = counted(env, "malformed")
    for labels, named in (({"namespace": f"other/../{ns}"}, "labels.namespace"),
                          ({"clm_model": "hook/../hook"}, "labels.clm_model")):
        hostile = [{**alerts[0], "labels": {**alerts[0]["labels"], **labels}}]
        status, answer = post(env.webhook_port, {"status": "firing", "alerts": hostile})
        assert status == 400 and named in answer["error"], answer
    assert counted(env, "malformed") == before + 2
    assert len(kubectl.objects("trainingjobs")) == 1
    oversized = {"status": "firing", "alerts": alerts * 6}
    assert post(env.webhook_port, oversized)[0] == 413


def test_deleting_a_model_that_would_delete_its_production_artifact_is_refused(kubectl: Kubectl) -> None:
    kubectl.apply(model_manifest("keep", extra_spec={"retention": {"artifactDeletionPolicy": "Delete"}}),
                  check=True)
    v1 = create_version(kubectl, "keep", 1, sharpe=1.2)
    wait_status(kubectl, "keep", lambda s: s.get("productionVersion") == v1)
    wait_for(lambda: "clm.dev/production-guard" in (kubectl.get("models", "keep") or {}).get(
        "metadata", {}).get("finalizers", []), timeout=20, message="the Model's guard finalizer")
    kubectl("delete", "model", "keep", "--wait=false", check=True)
    status = wait_status(kubectl, "keep", lambda s: any(c["type"] == "DeletionBlocked"
                                                        for c in s.get("conditions", [])), what="blocked")
    blocked = condition({"status": status}, "DeletionBlocked")
    assert (blocked["status"], blocked["reason"]) == ("True", "ProductionArtifactProtected")
    assert v1 in blocked["message"] and "Retain" in blocked["message"]
    warnings = kubectl.events(involving="keep", reason="ProductionArtifactProtected")
    assert warnings and warnings[0]["type"] == "Warning"
    assert stages(kubectl, "keep") == {v1: "Production"}  # nothing was deleted
    # Retain: the artifacts stay, the deletion proceeds, the versions go with their Model.
    kubectl("patch", "model", "keep", "--type=merge", "-p",
            json.dumps({"spec": {"retention": {"artifactDeletionPolicy": "Retain"}}}), check=True)
    wait_for(lambda: kubectl.get("models", "keep") is None, timeout=30, message="the Model deleted")
    wait_for(lambda: kubectl.get("modelversions", f"keep-{v1}") is None, timeout=30,
             message="its versions collected")
    assert kubectl.events(reason="ArtifactsDeleted") == []
