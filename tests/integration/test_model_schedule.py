"""A Model's cron schedule in the sandbox, driven by the operator's controllable clock (no sleeping
for the schedule: the test writes the clock file and polls)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from clm_operator.clock import set_fake_now
from clm_operator.domain.versioning import format_timestamp, parse_timestamp
from clm_operator.sandbox.cluster import Sandbox, wait_for

from tests.integration.model_support import (
    NamespacedKubectl,
    get_json,
    model_manifest,
    model_sandbox,
    model_status,
    namespace_in,
    wait_status,
)

pytestmark = pytest.mark.timeout(240)

# Not in the sandbox's image registry: the run's pod waits in ImagePullBackOff, so the run stays active
# (what Forbid is about) without spending CPU on training. The huge startup timeout keeps the operator
# from failing it while the test moves the clock by days.
PENDING_TEMPLATE = {"image": "registry.invalid/clm-trainer:absent", "startupTimeoutSeconds": 100_000_000}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Path, int, int]]:
    with model_sandbox(tmp_path_factory.mktemp("schedule")) as running:
        yield running


@pytest.fixture
def kubectl(env: tuple[Sandbox, Path, int, int]) -> Iterator[NamespacedKubectl]:
    with namespace_in(env[0], "sched") as k:
        yield k


def periodic_runs(kubectl: NamespacedKubectl, model: str) -> list[dict[str, Any]]:
    selector = f"clm.dev/model={model},clm.dev/trigger=periodic"
    items = get_json(kubectl, "trainingjobs", "-l", selector)["items"]
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
        env: tuple[Sandbox, Path, int, int], kubectl: NamespacedKubectl) -> None:
    cluster, clock = env[0], env[1]
    manifest = model_manifest("cron", suspend=False, schedule="0 * * * *")
    spec = yaml.safe_load(manifest)
    spec["spec"]["template"].update(PENDING_TEMPLATE)
    kubectl("apply", "-f", "-", input=json.dumps(spec), check=True)
    created = parse_timestamp(get_json(kubectl, "model", "cron")["metadata"]["creationTimestamp"])
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
    model_criteria = get_json(kubectl, "model", "cron")["spec"]["promotion"]["criteria"]
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


def test_default_period_without_cron_counts_from_creation(env: tuple[Sandbox, Path, int, int],
                                                          kubectl: NamespacedKubectl) -> None:
    manifest = yaml.safe_load(model_manifest("weekly", suspend=False))
    manifest["spec"]["template"].update(PENDING_TEMPLATE)
    kubectl("apply", "-f", "-", input=json.dumps(manifest), check=True)
    created = parse_timestamp(get_json(kubectl, "model", "weekly")["metadata"]["creationTimestamp"])
    week = created + timedelta(hours=168)
    set_fake_now(env[1], created)
    wait_status(kubectl, "weekly", lambda s: s.get("nextScheduleTime") == format_timestamp(week),
                what="a weekly next time for xgboost")
    set_fake_now(env[1], week)
    runs = wait_for(lambda: periodic_runs(kubectl, "weekly"), timeout=20, message="the weekly run")
    assert [r["metadata"]["name"] for r in runs] == [f"weekly-{week:%Y%m%d%H%M}"]


@pytest.mark.parametrize(("name", "schedule", "field"), [
    ("badcron", "61 * * * *", "spec.schedule"),
    ("m" * 51, "0 * * * *", "metadata.name"),
])
def test_invalid_model_is_refused_with_a_condition_naming_the_field(
        kubectl: NamespacedKubectl, name: str, schedule: str, field: str) -> None:
    manifest = yaml.safe_load(model_manifest(name, suspend=False, schedule=schedule))
    kubectl("apply", "-f", "-", input=json.dumps(manifest), check=True)
    status = wait_status(kubectl, name, lambda s: condition(s, "Accepted").get("status") == "False",
                         what="Accepted=False")
    accepted = condition(status, "Accepted")
    assert accepted["reason"] == "InvalidSpec" and field in accepted["message"]
    assert "productionVersion" not in status and "nextScheduleTime" not in status
