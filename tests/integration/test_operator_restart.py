"""The operator as the chart's Deployment survives what a real cluster does to it: its pod killed
(SIGKILL) at any point and replaced by the Deployment, kube-apiserver restarted after an etcd compaction
(every watch resumes from a compacted resourceVersion: 410 Gone, relist), and an RBAC rule taken away
(403 surfaces as a condition and a metric, not a crash)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from clm_sandbox.cluster import OPERATOR_NAMESPACE, OPERATOR_RELEASE, Sandbox

from tests.support.cluster import (
    OPERATOR_TESTS,
    Kubectl,
    cluster_fixture,
    scrape,
    wait_finished,
    wait_for,
)
from tests.support.objects import condition, training_job_manifest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


env = cluster_fixture(**OPERATOR_TESTS)


def fast_failing_job(name: str) -> dict[str, Any]:
    """A run that needs no training: its image cannot be pulled, so it fails after 2 s of start-up."""
    return training_job_manifest(name, image="never/pulled:v1", startupTimeoutSeconds=2)


def operator_pod(env: Sandbox) -> dict[str, Any]:
    ready = env.operator_ready()
    assert ready is not None, env.operator_pods()
    return ready


def test_pod_killed_mid_run_is_replaced_and_the_run_converges_once(env: Sandbox) -> None:
    env.create_namespace("restart")
    kubectl = Kubectl(env, "restart")
    first = operator_pod(env)["metadata"]["name"]
    assert kubectl.apply(training_job_manifest("survivor")).returncode == 0
    # 1. killed before or while it handles the creation; the Deployment starts a new pod
    env.kill_operator()
    second = env.wait_operator_ready()["metadata"]["name"]
    assert second != first
    # 2. killed while the trainer runs
    wait_for(lambda: kubectl.objects("pods", "clm.dev/training-job=survivor"), timeout=120,
             message="the trainer pod")
    env.kill_operator()
    env.wait_operator_ready()
    tj = wait_finished(kubectl, "survivor", timeout=300)
    assert tj["status"]["phase"] == "Succeeded", tj["status"]
    # 3. killed after the end: the new pod resumes it and nothing new happens
    env.kill_operator()
    env.wait_operator_ready()
    wait_for(lambda: "resum" in env.operator_logs().rsplit("starting", 1)[-1].lower()
             or "training_job_created" in env.operator_logs().rsplit("starting", 1)[-1], timeout=60,
             message="the new operator pod to resume the TrainingJob")

    jobs = kubectl.objects("jobs")
    versions = kubectl.objects("modelversions")
    pods = kubectl.objects("pods", "clm.dev/training-job=survivor")
    assert [j["metadata"]["name"] for j in jobs] == ["survivor-train"]
    assert [v["metadata"]["name"] for v in versions] == [tj["status"]["modelVersion"]]
    assert len(pods) == 1  # one attempt, one pod
    # One evaluation, recorded once: the trained version's verdict (its criteria are the evaluation's
    # business, not this test's), reached in one transition from Training.
    status = versions[0]["status"]
    evaluated = condition(versions[0], "Evaluated")
    stage = "Candidate" if evaluated["status"] == "True" else "Failed"
    assert condition(versions[0], "Trained")["status"] == "True" and status["stage"] == stage
    history = [(h.get("from"), h["to"]) for h in status["stageHistory"]]
    assert history == [(None, "Training"), ("Training", stage)]
    created = [e for e in kubectl.events(involving="survivor") if e["reason"] == "TrainingJobCreated"]
    assert len(created) == 1
    # Replaced by its Deployment each time, never restarted in place.
    deployment = env.get("apps", "v1", "deployments", OPERATOR_NAMESPACE, OPERATOR_RELEASE)
    assert deployment is not None and deployment["status"].get("readyReplicas") == 1


def test_no_event_is_missed_across_an_etcd_compaction_and_an_api_server_restart(env: Sandbox) -> None:
    env.create_namespace("compaction")
    kubectl = Kubectl(env, "compaction")
    assert kubectl.apply(fast_failing_job("before")).returncode == 0
    before = wait_finished(kubectl, "before", timeout=120)
    seen = int(before["metadata"]["resourceVersion"])
    pod = operator_pod(env)["metadata"]["name"]
    # Everything the operator's watches have seen is compacted away; the restart breaks every watch,
    # and each resumes from a revision etcd no longer has.
    compacted = env.compact_etcd()
    assert compacted >= seen
    env.controlplane.restart_apiserver()
    assert kubectl.apply(fast_failing_job("after")).returncode == 0
    after = wait_finished(kubectl, "after", timeout=120)
    assert after["status"]["phase"] == "Failed" and after["status"]["reason"] == "ImagePullBackOff"
    # The same pod handled it (a relist, not a restart), and the earlier run was not redone.
    assert operator_pod(env)["metadata"]["name"] == pod
    assert sorted(j["metadata"]["name"] for j in kubectl.objects("modelversions")) == sorted(
        [before["status"]["modelVersion"], after["status"]["modelVersion"]])
    assert len([e for e in kubectl.events(involving="before") if e["reason"] == "TrainingJobCreated"]) == 1


def test_a_missing_rbac_rule_is_a_condition_and_a_metric_not_a_crash(env: Sandbox) -> None:
    env.create_namespace("forbidden")
    kubectl = Kubectl(env, "forbidden")
    pod = operator_pod(env)
    role = env.get("rbac.authorization.k8s.io", "v1", "clusterroles", None, OPERATOR_RELEASE)
    assert role is not None
    original = json.loads(json.dumps(role))
    for rule in role["rules"]:
        if rule.get("apiGroups") == ["batch"] and "jobs" in rule.get("resources", []):
            rule["verbs"] = [verb for verb in rule["verbs"] if verb != "create"]
    for key in ("resourceVersion", "managedFields", "uid", "creationTimestamp"):
        role["metadata"].pop(key, None)
    env.kubectl("replace", "-f", "-", input=json.dumps(role), check=True)
    try:
        assert kubectl.apply(fast_failing_job("denied")).returncode == 0

        def forbidden() -> dict[str, Any] | None:
            tj = kubectl.get("trainingjobs", "denied") or {}
            found = [c for c in (tj.get("status") or {}).get("conditions") or []
                     if c["type"] == "Permitted" and c["status"] == "False"]
            return found[0] if found else None

        permitted = wait_for(forbidden, timeout=60, message=lambda: f"Permitted=False; log tail:\n"
                             f"{env.operator_logs()[-3000:]}")
        assert permitted["reason"] == "Forbidden" and "jobs" in permitted["message"], permitted
        assert kubectl.get("jobs", "denied-train") is None
        wait_for(lambda: 'reason="Forbidden"' in scrape(env), timeout=30,
                 message="clm_reconcile_errors_total{reason=\"Forbidden\"}")
        # Not a crash: the same container, never restarted.
        now = Kubectl(env, OPERATOR_NAMESPACE).get("pods", pod["metadata"]["name"])
        assert now is not None and now["status"]["containerStatuses"][0]["restartCount"] == 0
    finally:
        for key in ("resourceVersion", "managedFields", "uid", "creationTimestamp"):
            original["metadata"].pop(key, None)
        env.kubectl("replace", "-f", "-", input=json.dumps(original), check=True)
    # The rule back, the next resync creates the Job and the run goes on.
    wait_for(lambda: kubectl.get("jobs", "denied-train"), timeout=60, message="the Job once permitted")
    tj = wait_finished(kubectl, "denied", timeout=120)
    assert (tj["status"]["phase"], tj["status"]["reason"]) == ("Failed", "ImagePullBackOff")
