"""An operator killed (SIGKILL) at any point and restarted converges: one Job, one ModelVersion, one run."""

from __future__ import annotations

import pytest
from clm_operator.sandbox.cluster import wait_for

from tests.integration.operator_harness import operator_sandbox, training_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_kill_and_restart_mid_run_leaves_exactly_one_job_and_one_version() -> None:
    with operator_sandbox() as env:
        ns = "restart"
        env.sb.create_namespace(ns)
        assert env.apply(ns, training_job("survivor")).returncode == 0
        # 1. killed before or while it handles the creation
        env.sb.kill_operator()
        env.sb.start_operator()
        # 2. killed while the trainer runs
        wait_for(lambda: env.objects("pods", ns, "clm.dev/training-job=survivor"), timeout=60,
                 message="the trainer pod")
        env.sb.kill_operator()
        env.sb.start_operator()
        tj = env.wait_finished(ns, "survivor")
        assert tj["status"]["phase"] == "Succeeded", tj["status"]
        # 3. restarted after the end: nothing new happens
        env.sb.kill_operator()
        env.sb.start_operator()
        wait_for(lambda: "training_job_created" in env.sb.operator_logs().rsplit("starting", 1)[-1]
                 or "resume" in env.sb.operator_logs().rsplit("starting", 1)[-1].lower(), timeout=30,
                 message="the restarted operator to resume the TrainingJob")

        jobs = env.objects("jobs", ns)
        versions = env.objects("modelversions", ns)
        pods = env.objects("pods", ns, "clm.dev/training-job=survivor")
        assert [j["metadata"]["name"] for j in jobs] == ["survivor-train"]
        assert [v["metadata"]["name"] for v in versions] == [tj["status"]["modelVersion"]]
        assert len(pods) == 1
        assert versions[0]["status"]["stage"] == "Candidate"
        history = [(h.get("from"), h["to"]) for h in versions[0]["status"]["stageHistory"]]
        assert history == [(None, "Training"), ("Training", "Candidate")]
        created = [e for e in env.events(ns, "survivor") if e["reason"] == "TrainingJobCreated"]
        assert len(created) == 1
