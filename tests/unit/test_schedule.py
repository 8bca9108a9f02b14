"""Schedule decisions with CronJob semantics, on a controllable "now" (no sleeps)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from clm_contract.model import ConcurrencyPolicy, ModelSpec
from clm_operator.domain.schedule import (
    Action,
    ScheduleInput,
    decide,
    default_period,
    latest_due,
    scheduled_run_name,
    training_job_for,
    triggered_run_name,
)
from pydantic import ValidationError

CREATED = datetime(2026, 3, 2, 10, 17, 5, tzinfo=UTC)  # a Monday


def inp(schedule: str | None = "0 * * * *", last: datetime | None = None, suspend: bool = False,
        policy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID, deadline: int | None = None,
        active: tuple[str, ...] = (), algorithm: str = "xgboost") -> ScheduleInput:
    return ScheduleInput(schedule=schedule, algorithm=algorithm, suspend=suspend, concurrency_policy=policy,
                         starting_deadline_seconds=deadline, last_schedule_time=last, creation_time=CREATED,
                         active_runs=active)


def test_hourly_cron_is_due_on_the_hour_and_not_before() -> None:
    before = decide(inp(), CREATED.replace(minute=59, second=59))
    assert before.action == Action.NONE
    assert before.next_time == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    on_time = decide(inp(), datetime(2026, 3, 2, 11, 0, tzinfo=UTC))
    assert on_time.action == Action.CREATE
    assert on_time.scheduled_time == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    assert on_time.next_time == datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_after_a_run_the_same_time_is_not_due_again() -> None:
    last = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    assert decide(inp(last=last), last + timedelta(minutes=30)).action == Action.NONE


def test_downtime_yields_one_run_for_the_latest_missed_time() -> None:
    last = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    now = last + timedelta(hours=50, minutes=20)
    d = decide(inp(last=last), now)
    assert d.action == Action.CREATE
    assert d.scheduled_time == datetime(2026, 3, 4, 13, 0, tzinfo=UTC)
    # Written back as lastScheduleTime, nothing else is due until the next hour.
    assert decide(inp(last=d.scheduled_time), now).action == Action.NONE


def test_starting_deadline_skips_a_late_run() -> None:
    last = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    late = decide(inp(last=last, deadline=300), datetime(2026, 3, 2, 12, 6, tzinfo=UTC))
    assert late.action == Action.MISSED_DEADLINE and "startingDeadlineSeconds" in late.message
    in_time = decide(inp(last=last, deadline=300), datetime(2026, 3, 2, 12, 4, tzinfo=UTC))
    assert in_time.action == Action.CREATE


def test_suspend_creates_nothing_and_has_no_next_time() -> None:
    d = decide(inp(suspend=True), datetime(2026, 3, 9, tzinfo=UTC))
    assert d.action == Action.SUSPENDED and d.next_time is None


def test_concurrency_policies() -> None:
    now = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    forbid = decide(inp(active=("m-202603021000",)), now)
    assert forbid.action == Action.FORBIDDEN and "m-202603021000" in forbid.message
    replace = decide(inp(active=("m-202603021000",), policy=ConcurrencyPolicy.REPLACE), now)
    assert replace.action == Action.CREATE and replace.delete_active == ("m-202603021000",)
    allow = decide(inp(active=("m-202603021000",), policy=ConcurrencyPolicy.ALLOW), now)
    assert allow.action == Action.CREATE and allow.delete_active == ()


@pytest.mark.parametrize(("algorithm", "hours"), [("xgboost", 168), ("lightgbm", 168), ("nhits", 336),
                                                  ("patchtst", 336), ("ppo", 24)])
def test_default_periods_from_creation_then_from_last_run(algorithm: str, hours: int) -> None:
    period = timedelta(hours=hours)
    assert default_period(algorithm) == period
    assert decide(inp(schedule=None, algorithm=algorithm), CREATED + period - timedelta(seconds=1)).action \
        == Action.NONE
    first = decide(inp(schedule=None, algorithm=algorithm), CREATED + period)
    assert first.action == Action.CREATE and first.scheduled_time == CREATED + period
    assert first.next_time == CREATED + 2 * period
    # Down for 3.5 periods after that: one run, for the latest missed time.
    assert latest_due(None, algorithm, CREATED + period, CREATED + period * 4.5) == CREATED + 4 * period


def test_run_names_are_deterministic_and_fit_a_label() -> None:
    model = "m" * 50
    t = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    assert scheduled_run_name(model, t) == scheduled_run_name(model, t)
    assert len(scheduled_run_name(model, t)) == 63
    assert scheduled_run_name("btc", t) == "btc-202603021100"
    name = triggered_run_name(model, "drift", "fp1@2026-03-02T11:00:00Z")
    assert len(name) <= 63 and name == triggered_run_name(model, "drift", "fp1@2026-03-02T11:00:00Z")
    assert name != triggered_run_name(model, "drift", "fp2@2026-03-02T11:00:00Z")


def test_training_job_copies_template_and_criteria_and_is_owned() -> None:
    model = {
        "metadata": {"name": "btc", "namespace": "ns", "uid": "u-1"},
        "spec": {"template": {"algorithm": "xgboost", "dataset": {"uri": "builtin:synthetic", "symbol": "X"},
                              "evaluation": {"folds": 3, "criteria": {"minSharpe": 9.0}}},
                 "promotion": {"criteria": {"minSharpe": 0.5}, "policy": "AutoProduction"}},
    }
    t = datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    tj = training_job_for(model, "btc-202603021100", "periodic", "schedule", scheduled_time=t)
    assert tj["spec"]["modelName"] == "btc"
    assert tj["spec"]["evaluation"] == {"folds": 3, "criteria": {"minSharpe": 0.5}, "priorTrials": 0}
    assert tj["spec"]["trigger"] == {"reason": "periodic", "requestedBy": "schedule"}
    assert tj["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert tj["metadata"]["labels"] == {"clm.dev/model": "btc", "clm.dev/trigger": "periodic"}
    assert model["spec"]["template"]["evaluation"]["criteria"] == {"minSharpe": 9.0}  # not mutated


@pytest.mark.parametrize("bad", ["bad", "61 * * * *", "0 0 * * * *", "* * *"])
def test_invalid_cron_is_rejected_naming_the_field(bad: str) -> None:
    with pytest.raises(ValidationError, match="spec.schedule"):
        ModelSpec.model_validate({"template": {"algorithm": "xgboost",
                                               "dataset": {"uri": "builtin:synthetic", "symbol": "X"}},
                                  "schedule": bad})


def test_next_time_never_precedes_the_baseline() -> None:
    """A clock behind the creation time (skew) announces the first time after creation."""
    created = datetime(2026, 3, 2, 12, 0, 1, tzinfo=UTC)
    d = decide(ScheduleInput(schedule="0 * * * *", algorithm="xgboost", suspend=False,
                             concurrency_policy=ConcurrencyPolicy.FORBID, starting_deadline_seconds=None,
                             last_schedule_time=None, creation_time=created),
               datetime(2026, 3, 2, 11, 59, 58, tzinfo=UTC))
    assert d.action == Action.NONE and d.next_time == datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
