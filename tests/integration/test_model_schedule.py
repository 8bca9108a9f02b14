"""A Model's cron schedule in the sandbox, driven by the operator's controllable clock (no sleeping
for the schedule: the test writes the clock file and polls)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from clm_operator.clock import set_fake_now
from clm_operator.domain.versioning import format_timestamp, parse_timestamp
from clm_sandbox.cluster import Sandbox

from tests.support.cluster import (
    MODEL_TESTS,
    Kubectl,
    cluster_fixture,
    model_status,
    namespace_fixture,
    wait_for,
    wait_status,
)
from tests.support.objects import PENDING_TEMPLATE, model_manifest

pytestmark = pytest.mark.timeout(240)

# PENDING_TEMPLATE: not in the sandbox's image registry, the run's pod waits in ImagePullBackOff, so the
# run stays active (what Forbid is about) without spending CPU on training.

env = cluster_fixture(**MODEL_TESTS)


kubectl = namespace_fixture("sched")


def periodic_runs(kubectl: Kubectl, model: str) -> list[dict[str, Any]]:
    selector = f"clm.dev/model={model},clm.dev/trigger=periodic"
    items = kubectl.get_json("trainingjobs", "-l", selector)["items"]
    return sorted(items, key=lambda tj: tj["metadata"]["name"])


def condition(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return {c["type"]: c for c in status.get("conditions", [])}.get(ctype, {})


def stays_true(predicate: Any, seconds: float) -> bool:
    """A bounded negative check: ``predicate`` holds for ``seconds`` of polling (several timer ticks)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(0.2)
    return True


def test_cron_runs_on_time_respects_forbid_and_suspend_and_never_bursts(
        env: Sandbox, kubectl: Kubectl) -> None:
    cluster, clock = env, env.clock_file
    spec = model_manifest("cron", suspend=False, schedule="0 * * * *", template=PENDING_TEMPLATE)
    kubectl.apply(spec, check=True)
    created = parse_timestamp(kubectl.get_json("model", "cron")["metadata"]["creationTimestamp"])
    set_fake_now(clock, created)
    h1 = created.replace(minute=0, second=0) + timedelta(hours=1)
    wait_status(kubectl, "cron", lambda s: s.get("nextScheduleTime") == format_timestamp(h1),
                what=f"nextScheduleTime {h1}")

    # One second early: nothing.
    set_fake_now(clock, h1 - timedelta(seconds=1))
    assert stays_true(lambda: not periodic_runs(kubectl, "cron"), 1.5)

    # On time: exactly the run for h1, named after it, owned by the Model, with the Model's criteria.
    set_fake_now(clock, h1)
    runs = wait_for(lambda: periodic_runs(kubectl, "cron"), timeout=20, message="the first scheduled run")
    assert [r["metadata"]["name"] for r in runs] == [f"cron-{h1:%Y%m%d%H%M}"]
    run = runs[0]
    assert run["spec"]["modelName"] == "cron"
    assert run["spec"]["trigger"]["reason"] == "periodic"
    model_criteria = kubectl.get_json("model", "cron")["spec"]["promotion"]["criteria"]
    assert run["spec"]["evaluation"]["criteria"] == model_criteria
    assert model_criteria["minSharpe"] == 0.0  # the test's permissive criteria, not the defaults
    assert run["metadata"]["ownerReferences"][0]["kind"] == "Model"
    status = wait_status(kubectl, "cron", lambda s: s.get("lastScheduleTime") == format_timestamp(h1))
    assert status["nextScheduleTime"] == format_timestamp(h1 + timedelta(hours=1))

    # Forbid: the h1 run is still active (its image cannot be pulled), so h2 is skipped.
    set_fake_now(clock, h1 + timedelta(hours=1, seconds=30))
    status = wait_status(kubectl, "cron",
                         lambda s: condition(s, "Scheduled").get("reason") == "SkippedConcurrent",
                         what="Forbid skip")
    assert f"cron-{h1:%Y%m%d%H%M}" in condition(status, "Scheduled")["message"]
    assert len(periodic_runs(kubectl, "cron")) == 1

    # Suspend: no run even with the active one gone, and no next time announced.
    kubectl("patch", "model", "cron", "--type=merge", "-p", '{"spec":{"suspend":true}}', check=True)
    kubectl("delete", "trainingjob", f"cron-{h1:%Y%m%d%H%M}", "--wait=false", check=True)
    wait_for(lambda: not periodic_runs(kubectl, "cron"), timeout=20, message="the run deleted")
    set_fake_now(clock, h1 + timedelta(hours=2, seconds=30))
    status = wait_status(kubectl, "cron", lambda s: condition(s, "Scheduled").get("reason") == "Suspended",
                         what="suspended")
    assert "nextScheduleTime" not in status
    assert stays_true(lambda: not periodic_runs(kubectl, "cron"), 1.5)

    # Downtime: operator stopped, resumed schedule, clock 50 hours on -> exactly one run, the latest time.
    cluster.stop_operator()
    kubectl("patch", "model", "cron", "--type=merge", "-p", '{"spec":{"suspend":false}}', check=True)
    later = h1 + timedelta(hours=52, minutes=10)
    set_fake_now(clock, later)
    cluster.start_operator()
    latest = later.replace(minute=0)
    runs = wait_for(lambda: periodic_runs(kubectl, "cron"), timeout=30, message="the catch-up run")
    wait_status(kubectl, "cron", lambda s: s.get("lastScheduleTime") == format_timestamp(latest),
                what="lastScheduleTime after downtime")
    assert stays_true(lambda: len(periodic_runs(kubectl, "cron")) == 1, 2.0)
    assert [r["metadata"]["name"] for r in periodic_runs(kubectl, "cron")] == [f"cron-{latest:%Y%m%d%H%M}"]
    assert model_status(kubectl, "cron")["nextScheduleTime"] == format_timestamp(latest + timedelta(hours=1))


def test_default_period_without_cron_counts_from_creation(env: Sandbox,
                                                          kubectl: Kubectl) -> None:
    manifest = model_manifest("weekly", suspend=False, template=PENDING_TEMPLATE)
    kubectl.apply(manifest, check=True)
    created = parse_timestamp(kubectl.get_json("model", "weekly")["metadata"]["creationTimestamp"])
    week = created + timedelta(hours=168)
    set_fake_now(env.clock_file, created)
    wait_status(kubectl, "weekly", lambda s: s.get("nextScheduleTime") == format_timestamp(week),
                what="a weekly next time for xgboost")
    set_fake_now(env.clock_file, week)
    runs = wait_for(lambda: periodic_runs(kubectl, "weekly"), timeout=20, message="the weekly run")
    assert [r["metadata"]["name"] for r in runs] == [f"weekly-{week:%Y%m%d%H%M}"]


# An invalid cron ("61 * * * *") no longer gets this far: the CRD's rule refuses it at apply
# (tests/integration/test_admission.py); a Model name of 51 characters only the operator checks.
@pytest.mark.parametrize(("name", "schedule", "field"), [
    ("m" * 51, "0 * * * *", "metadata.name"),
])
def test_invalid_model_is_refused_with_a_condition_naming_the_field(
        kubectl: Kubectl, name: str, schedule: str, field: str) -> None:
    manifest = model_manifest(name, suspend=False, schedule=schedule)
    kubectl.apply(manifest, check=True)
    status = wait_status(kubectl, name, lambda s: condition(s, "Accepted").get("status") == "False",
                         what="Accepted=False")
    accepted = condition(status, "Accepted")
    assert accepted["reason"] == "InvalidSpec" and field in accepted["message"]
    assert "productionVersion" not in status and "nextScheduleTime" not in status
