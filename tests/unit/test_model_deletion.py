"""Deleting a Model under artifactDeletionPolicy Delete while a version serves Production is refused
(its guard finalizer stays, DeletionBlocked=True, one Warning Event) until the policy is Retain or the
override annotation is set; a late run of a deleted Model creates no ownerless version."""

from __future__ import annotations

import copy
from typing import Any

from clm_operator.domain import model_decision as md
from clm_operator.domain import run
from clm_operator.domain.conditions import get_condition
from clm_operator.domain.retention import (
    ALLOW_DELETE_PRODUCTION_ANNOTATION,
    ARTIFACT_FINALIZER,
    PRODUCTION_GUARD_FINALIZER,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_model_decision import NOW, model, version
from tests.unit.test_run_decision import CONFIG, CREATED, training_job


def deleting(mdl: dict[str, Any], *, override: bool = False) -> dict[str, Any]:
    mdl = copy.deepcopy(mdl)
    mdl["metadata"]["deletionTimestamp"] = "2026-03-02T12:00:00Z"
    mdl["metadata"]["finalizers"] = ["someone.else/keep", PRODUCTION_GUARD_FINALIZER]
    if override:
        mdl["metadata"]["annotations"] = {ALLOW_DELETE_PRODUCTION_ANNOTATION: "true"}
    return mdl


def with_finalizer(mv: dict[str, Any]) -> dict[str, Any]:
    mv["metadata"]["finalizers"] = [ARTIFACT_FINALIZER]
    return mv


def test_a_live_model_under_delete_carries_the_guard_and_under_retain_not() -> None:
    view = md.ModelView(model(delete_data=True), (), (), NOW)
    assert md.decide(view).model_finalizers == (PRODUCTION_GUARD_FINALIZER,)
    assert md.decide(md.ModelView(model(), (), (), NOW)).model_finalizers == ()
    assert md.decide(md.ModelView(model(delete_data=True, valid=False), (), (), NOW)).model_finalizers == (
        PRODUCTION_GUARD_FINALIZER,)


def test_deleting_while_production_serves_is_refused_once_with_the_way_out() -> None:
    versions = (with_finalizer(version(1, "Production")), with_finalizer(version(2, "Retired")))
    mdl = deleting(model(delete_data=True, status={"productionVersion": "v1"}))
    first = md.decide(md.ModelView(mdl, versions, (), NOW))
    assert first.deleting and first.model_finalizers == tuple(mdl["metadata"]["finalizers"])
    blocked = get_condition(first.status["conditions"], "DeletionBlocked")
    assert blocked is not None and (blocked["status"], blocked["reason"]) == ("True",
                                                                               "ProductionArtifactProtected")
    assert "v1" in blocked["message"] and "Retain" in blocked["message"]
    assert ALLOW_DELETE_PRODUCTION_ANNOTATION in blocked["message"]
    assert [(e.type, e.reason) for e in first.events] == [("Warning", "ProductionArtifactProtected")]
    assert not first.version_changes and not first.delete_versions and not first.finalizers
    again = md.decide(md.ModelView({**mdl, "status": first.status}, versions, (), NOW))
    assert again.status == first.status and not again.events and not again.transitions


def test_retain_or_the_annotation_releases_the_guard_and_retain_keeps_the_artifacts() -> None:
    versions = (with_finalizer(version(1, "Production")),)
    retain = md.decide(md.ModelView(deleting(model(delete_data=False)), versions, (), NOW))
    assert retain.model_finalizers == ("someone.else/keep",)
    assert retain.finalizers == (("btc-v1", False),)  # the artifact finalizer goes before the versions do
    override = md.decide(md.ModelView(deleting(model(delete_data=True), override=True), versions, (), NOW))
    assert override.model_finalizers == ("someone.else/keep",) and override.finalizers == ()
    assert get_condition(override.status.get("conditions"), "DeletionBlocked") is None
    nothing_serves = md.decide(md.ModelView(deleting(model(delete_data=True)),
                                            (with_finalizer(version(2, "Retired")),), (), NOW))
    assert nothing_serves.model_finalizers == ("someone.else/keep",) and not nothing_serves.events


@settings(max_examples=60, deadline=None)
@given(delete_data=st.booleans(), override=st.booleans(),
       stages=st.lists(st.sampled_from(["Production", "Retired", "Candidate", "Failed"]), max_size=4))
def test_the_deletion_decision_is_a_fixed_point(delete_data: bool, override: bool, stages: list[str]) -> None:
    versions = tuple(with_finalizer(version(n, stage)) for n, stage in enumerate(stages, 1))
    mdl = deleting(model(delete_data=delete_data), override=override)
    first = md.decide(md.ModelView(mdl, versions, (), NOW))
    blocked = delete_data and "Production" in stages and not override
    assert (PRODUCTION_GUARD_FINALIZER in (first.model_finalizers or ())) == blocked
    assert bool(first.events) == blocked
    written = {**mdl, "status": first.status,
               "metadata": {**mdl["metadata"], "finalizers": list(first.model_finalizers or ())}}
    wanted = dict(first.finalizers)
    after = tuple({**mv, "metadata": {**mv["metadata"],
                                      "finalizers": [ARTIFACT_FINALIZER] if wanted[name] else []}}
                  if (name := mv["metadata"]["name"]) in wanted else mv for mv in versions)
    second = md.decide(md.ModelView(written, after, (), NOW))
    assert second.status == first.status and not second.events and not second.finalizers


def owned_run() -> dict[str, Any]:
    tj = training_job()
    tj["metadata"]["ownerReferences"] = [{"kind": "Model", "name": "btc", "uid": "model-uid"}]
    return tj


def test_a_late_run_of_a_deleted_model_creates_no_version_and_no_job() -> None:
    going = {"name": "btc", "uid": "model-uid", "deletionTimestamp": "2026-11-23T10:00:00Z"}
    for present in (None, {"metadata": {"name": "btc", "uid": "a-new-model-uid"}}, {"metadata": going}):
        decision = run.decide(run.RunView(training_job=owned_run(), now=CREATED, model=present), CONFIG)
        assert decision.create_model_version is None and decision.create_job is None
        assert decision.phase == "Failed" and decision.status["reason"] == "ModelDeleted"
        assert not decision.metrics  # the user deleted it: not a training failure to alert on
    alive = {"metadata": {"name": "btc", "uid": "model-uid"}}
    decision = run.decide(run.RunView(training_job=owned_run(), now=CREATED, model=alive), CONFIG)
    assert decision.create_model_version is not None and decision.create_job is not None
    # A run applied by hand before its Model exists is not owned by one: it starts and waits for adoption.
    alone = run.decide(run.RunView(training_job=training_job(), now=CREATED), CONFIG)
    assert alone.create_model_version is not None
    assert "ownerReferences" not in alone.create_model_version["metadata"]
