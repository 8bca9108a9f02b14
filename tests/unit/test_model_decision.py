"""The Model decision (domain/model_decision.py): one status per pass, stage changes in a safe order,
schedule and retention, and its fixed point: deciding again on the written state decides nothing."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from clm_contract.model_version import Stage
from clm_operator.domain import lifecycle as lc
from clm_operator.domain import model_decision as md
from clm_operator.domain.effects import EventReason, MetricOp
from clm_operator.domain.retention import ARTIFACT_FINALIZER
from hypothesis import given, settings
from hypothesis import strategies as st

CREATED = datetime(2026, 3, 2, 10, 17, 5, tzinfo=UTC)
NOW = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)


def model(
    policy: str = "AutoProduction",
    pin: str | None = None,
    schedule: str | None = "0 * * * *",
    suspend: bool = False,
    keep: int = 10,
    delete_data: bool = False,
    valid: bool = True,
    status: dict[str, Any] | None = None,
    concurrency: str = "Forbid",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {"algorithm": "xgboost", "dataset": {"uri": "builtin:synthetic", "symbol": "SYN"}},
        "suspend": suspend,
        "concurrencyPolicy": concurrency,
        "promotion": {"policy": policy},
        "retention": {"keepVersions": keep, "artifactDeletionPolicy": "Delete" if delete_data else "Retain"},
    }
    if schedule is not None:
        spec["schedule"] = schedule if valid else "not a cron"
    if pin is not None:
        spec["productionVersion"] = pin
    return {
        "apiVersion": "clm.dev/v1alpha1",
        "kind": "Model",
        "metadata": {
            "name": "btc",
            "namespace": "trading",
            "uid": "model-uid",
            "generation": 3,
            "creationTimestamp": "2026-03-02T10:17:05Z",
        },
        "spec": spec,
        **({"status": status} if status is not None else {}),
    }


def version(n: int, stage: str, score: float = 50.0, owned: bool = True) -> dict[str, Any]:
    """A ModelVersion as the run leaves it (Candidate or Failed), then moved to ``stage`` by the policy."""
    passed = stage != "Failed"
    status = lc.version_status(
        {},
        lc.VersionChange(
            why="trained",
            fields={"evaluation": {"passed": passed, "score": score, "failedCriteria": []}},
            conditions=(
                lc.ConditionChange("Trained", "True", "Trained", "ok"),
                lc.ConditionChange(
                    "Evaluated",
                    "True" if passed else "False",
                    "CriteriaMet" if passed else "CriteriaNotMet",
                    "x",
                ),
            ),
        ),
        generation=1,
        now=CREATED,
    )
    if stage in ("Production", "Retired", "Shadow"):
        status = {
            **status,
            **lc.version_status(status, lc.move_to(stage, "Test", "set up"), generation=1, now=CREATED),
        }
    meta: dict[str, Any] = {"name": f"btc-v{n}", "namespace": "trading", "generation": 1}
    if owned:
        meta["ownerReferences"] = [{"kind": "Model", "name": "btc", "uid": "model-uid"}]
    return {
        "apiVersion": "clm.dev/v1alpha1",
        "kind": "ModelVersion",
        "metadata": meta,
        "spec": {"modelName": "btc", "version": f"v{n}"},
        "status": status,
    }


def written(view: md.ModelView, decision: md.ModelDecision) -> md.ModelView:
    """The cluster after handlers/model.py applied ``decision``."""
    mdl = copy.deepcopy(dict(view.model))
    mdl["status"] = copy.deepcopy(decision.status)
    by_name = {mv["metadata"]["name"]: copy.deepcopy(dict(mv)) for mv in view.versions}
    for name, change in decision.version_changes:
        status = by_name[name]["status"]
        by_name[name]["status"] = {**status, **lc.version_status(status, change, generation=1, now=view.now)}
    for name in decision.adopt:
        by_name[name]["metadata"]["ownerReferences"] = [{"kind": "Model", "uid": "model-uid"}]
    for name, wanted in decision.finalizers:
        by_name[name]["metadata"]["finalizers"] = [ARTIFACT_FINALIZER] if wanted else []
    for name, _ in decision.delete_versions:
        del by_name[name]
    runs = [r for r in view.runs if r["metadata"]["name"] not in decision.delete_runs]
    runs += [copy.deepcopy(body) for body in decision.create_runs]
    return md.ModelView(
        model=mdl, versions=tuple(by_name.values()), runs=tuple(runs), now=view.now, scheduled=view.scheduled
    )


def fixed_point(view: md.ModelView) -> tuple[md.ModelDecision, md.ModelView]:
    first = md.decide(view)
    after = written(view, first)
    second = md.decide(after)
    assert not second.transitions, second
    assert second.status == after.model["status"]
    return first, after


def stages(view: md.ModelView) -> dict[str, str]:
    return {mv["metadata"]["name"]: mv["status"]["stage"] for mv in view.versions}


def test_auto_production_promotes_retiring_the_old_one_first() -> None:
    view = md.ModelView(
        model(status={"productionVersion": "v1", "history": [{"to": "v1"}]}),
        (version(1, "Production", 40.0), version(2, "Candidate", 70.0)),
        (),
        NOW,
    )
    first, after = fixed_point(view)
    assert [name for name, _ in first.version_changes] == ["btc-v1", "btc-v2"]  # retire before promote
    assert stages(after) == {"btc-v1": "Retired", "btc-v2": "Production"}
    assert after.model["status"]["productionVersion"] == "v2"
    assert [e.reason for e in first.events] == [EventReason.MODEL_PROMOTED]
    assert [c.metric for c in first.metrics if c.op == MetricOp.INC] == ["clm_promotions_total"]


def test_an_invalid_model_gets_one_condition_and_nothing_else() -> None:
    view = md.ModelView(model(valid=False), (version(1, "Candidate"),), (), NOW, scheduled=True)
    first, after = fixed_point(view)
    assert not first.accepted and not first.version_changes and not first.create_runs
    accepted = [c for c in after.model["status"]["conditions"] if c["type"] == "Accepted"][0]
    assert accepted["status"] == "False" and "schedule" in accepted["message"]


def test_the_schedule_creates_one_run_for_the_missed_hours() -> None:
    view = md.ModelView(model(), (), (), NOW, scheduled=True)
    first, after = fixed_point(view)
    assert [r["metadata"]["name"] for r in first.create_runs] == ["btc-202603021200"]
    assert first.create_runs[0]["metadata"]["ownerReferences"][0]["uid"] == "model-uid"
    assert after.model["status"]["lastScheduleTime"] == "2026-03-02T12:00:00Z"
    assert after.model["status"]["activeTrainingJobs"] == ["btc-202603021200"]
    scheduled = [c for c in after.model["status"]["conditions"] if c["type"] == "Scheduled"][0]
    assert scheduled["reason"] == "RunCreated"


def test_retention_prunes_beyond_keep_and_sets_finalizers() -> None:
    versions = (
        version(1, "Retired"),
        version(2, "Retired"),
        version(3, "Failed"),
        version(4, "Production"),
        version(5, "Candidate", owned=False),
    )
    view = md.ModelView(
        model(
            keep=1, delete_data=True, status={"productionVersion": "v4", "previousProductionVersion": "v2"}
        ),
        versions,
        (),
        NOW,
    )
    first, after = fixed_point(view)
    assert [name for name, _ in first.delete_versions] == ["btc-v1"]  # v2 is the rollback target, v3 kept
    assert {name for name, wanted in first.finalizers if wanted} == {
        "btc-v2",
        "btc-v3",
        "btc-v4",
        "btc-v5",
        "btc-v1",
    }
    assert first.adopt == ("btc-v5",)


STAGES = st.sampled_from([Stage.CANDIDATE, Stage.SHADOW, Stage.PRODUCTION, Stage.RETIRED, Stage.FAILED])


@settings(max_examples=150, deadline=None)
@given(
    policy=st.sampled_from(["Manual", "AutoCandidate", "AutoShadow", "AutoProduction"]),
    versions=st.lists(st.tuples(STAGES, st.floats(0, 100), st.booleans()), max_size=5),
    pin=st.one_of(st.none(), st.integers(0, 6)),
    production=st.one_of(st.none(), st.integers(0, 5)),
    keep=st.integers(0, 3),
    delete_data=st.booleans(),
    scheduled=st.booleans(),
    schedule=st.sampled_from([None, "0 * * * *", "*/5 * * * *"]),
    suspend=st.booleans(),
    concurrency=st.sampled_from(["Forbid", "Replace", "Allow"]),
    minutes=st.integers(0, 600),
    active_run=st.booleans(),
)
def test_deciding_again_on_the_written_state_decides_nothing(
    policy: str,
    versions: list[tuple[str, float, bool]],
    pin: int | None,
    production: int | None,
    keep: int,
    delete_data: bool,
    scheduled: bool,
    schedule: str | None,
    suspend: bool,
    concurrency: str,
    minutes: int,
    active_run: bool,
) -> None:
    mvs = tuple(version(i, stage, score, owned) for i, (stage, score, owned) in enumerate(versions))
    status = {"productionVersion": f"v{production}"} if production is not None else {}
    runs: tuple[dict[str, Any], ...] = ()
    if active_run:
        runs = (
            {
                "metadata": {"name": "btc-202603021100", "labels": {"clm.dev/trigger": "periodic"}},
                "spec": {"modelName": "btc"},
            },
        )
    view = md.ModelView(
        model(
            policy=policy,
            pin=f"v{pin}" if pin is not None else None,
            schedule=schedule,
            suspend=suspend,
            keep=keep,
            delete_data=delete_data,
            status=status,
            concurrency=concurrency,
        ),
        mvs,
        runs,
        CREATED + timedelta(minutes=minutes),
        scheduled=scheduled,
    )
    first, after = fixed_point(view)
    serving = [name for name, stage in stages(after).items() if stage == "Production"]
    assert len(serving) <= 1  # exactly one Production per Model at most, whatever came in
    assert len(first.create_runs) <= 1  # never more than one run per pass, however many were missed
