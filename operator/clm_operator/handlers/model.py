"""Model reconcile: production choice, stages of its versions, schedule, retention (DESIGN.md 3 and 4).

Thin: it reads the Model and its ModelVersions, asks domain/ (policy, schedule, retention) what should
be, and writes only the difference. It never writes a Model's spec, only its status. Every path goes
through ``reconcile`` under one lock per Model, so an Event of a version, a change of the Model and the
schedule timer cannot interleave their writes. Order of writes: the Model's status (with the history
entry) first, then the versions' stages (old production retired before the new one is promoted): a
crash in between is repaired by the next reconcile without a second history entry.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from datetime import datetime
from typing import Any

import kopf
from pydantic import ValidationError

from clm_operator import API_VERSION, GROUP, VERSION
from clm_operator.api.hyperparameters import HyperparameterError
from clm_operator.api.model import (
    ALLOW_FAILED_PROMOTION_ANNOTATION,
    HISTORY_LIMIT,
    ArtifactDeletionPolicy,
    ModelSpec,
    validate_model_name,
)
from clm_operator.clock import now as clock_now
from clm_operator.domain import history as history_domain
from clm_operator.domain import lifecycle
from clm_operator.domain import policy as policy_domain
from clm_operator.domain import schedule as schedule_domain
from clm_operator.domain.conditions import remove_condition, set_condition
from clm_operator.domain.lifecycle import is_finished, model_version_stage, training_job_phase
from clm_operator.domain.retention import versions_to_delete
from clm_operator.domain.validation import SpecProblem, problems_from, summarize
from clm_operator.domain.versioning import format_timestamp, parse_timestamp
from clm_operator.handlers.common import MODEL_VERSIONS, MODELS, TRAINING_JOBS, emit, lock_for, runtime
from clm_operator.handlers.retention import ARTIFACT_FINALIZER, cleanup, delete_version, sync_finalizer
from clm_operator.k8s import KubeError, custom_path
from clm_operator.observability import events
from clm_operator.observability import metrics as m

log = logging.getLogger("clm_operator.handlers.model")

SCHEDULE_INTERVAL_ENV = "CLM_SCHEDULE_INTERVAL_SECONDS"


def schedule_interval() -> float:
    raw = os.environ.get(SCHEDULE_INTERVAL_ENV, "30")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{SCHEDULE_INTERVAL_ENV}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{SCHEDULE_INTERVAL_ENV}={raw!r} must be > 0")
    return value


# ---------------------------------------------------------------------------------------------------
# Reading the cluster into the domain's views


def version_view(mv: dict[str, Any]) -> policy_domain.VersionView:
    status = mv.get("status") or {}
    evaluation = status.get("evaluation") or {}
    score = evaluation.get("score")
    passed = evaluation.get("passed")
    return policy_domain.VersionView(
        name=mv["metadata"]["name"],
        version=str((mv.get("spec") or {}).get("version") or mv["metadata"]["name"]),
        stage=str(model_version_stage(status.get("conditions"))),
        score=float(score) if isinstance(score, int | float) else None,
        passed=passed if isinstance(passed, bool) else None,
    )


def _tj_phase(tj: dict[str, Any]) -> str:
    status = tj.get("status") or {}
    if status.get("conditions"):
        return str(training_job_phase(status["conditions"]))
    return str(status.get("phase") or "Pending")


async def _owned(namespace: str, model: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    kube, _ = runtime()
    mvs = [mv for mv in await kube.list(custom_path(MODEL_VERSIONS, namespace))
           if (mv.get("spec") or {}).get("modelName") == model]
    tjs = [tj for tj in await kube.list(custom_path(TRAINING_JOBS, namespace))
           if (tj.get("spec") or {}).get("modelName") == model]
    return mvs, tjs


def owner_reference(model: dict[str, Any]) -> dict[str, Any]:
    meta = model["metadata"]
    return {"apiVersion": API_VERSION, "kind": "Model", "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


async def _adopt(model: dict[str, Any], mvs: list[dict[str, Any]]) -> None:
    """A ModelVersion of this Model without an owner (created before the Model existed) is adopted."""
    kube, _ = runtime()
    for mv in mvs:
        meta = mv["metadata"]
        if meta.get("ownerReferences") or meta.get("deletionTimestamp"):
            continue
        ref = owner_reference(model)
        updated = await kube.merge_patch(custom_path(MODEL_VERSIONS, meta["namespace"], meta["name"]),
                                         {"metadata": {"ownerReferences": [ref],
                                                       "resourceVersion": meta.get("resourceVersion")}})
        meta["ownerReferences"] = [ref]
        # Later writes in this reconcile carry the resourceVersion as their precondition.
        meta["resourceVersion"] = (updated.get("metadata") or {}).get("resourceVersion")
        log.info("adopted ModelVersion %s/%s", meta["namespace"], meta["name"])


# ---------------------------------------------------------------------------------------------------
# Writing stages


_STAGE_CONDITIONS = {
    policy_domain.PRODUCTION: (lifecycle.PRODUCTION, (lifecycle.RETIRED, lifecycle.SHADOW)),
    policy_domain.RETIRED: (lifecycle.RETIRED, (lifecycle.PRODUCTION, lifecycle.SHADOW)),
    policy_domain.SHADOW: (lifecycle.SHADOW, (lifecycle.PRODUCTION, lifecycle.RETIRED)),
    policy_domain.CANDIDATE: (None, (lifecycle.PRODUCTION, lifecycle.RETIRED, lifecycle.SHADOW)),
}


def stage_patch(mv: dict[str, Any], stage: str, reason: str, message: str, by: str,
                now: datetime) -> dict[str, Any]:
    """The status patch moving ``mv`` to ``stage`` through its conditions (the source of truth)."""
    status = mv.get("status") or {}
    conditions: list[dict[str, Any]] = [dict(c) for c in status.get("conditions") or []]
    present = {c.get("type") for c in conditions}
    generation = mv["metadata"].get("generation")
    true_type, false_types = _STAGE_CONDITIONS[stage]
    if true_type is not None:
        conditions = set_condition(conditions, true_type, "True", reason, message, now=now,
                                   observed_generation=generation)
    for ctype in false_types:
        if ctype in present:
            conditions = set_condition(conditions, ctype, "False", reason, message, now=now,
                                       observed_generation=generation)
    old_stage = model_version_stage(status.get("conditions"))
    new_stage = model_version_stage(conditions)
    stage_history = lifecycle.append_stage_history(status.get("stageHistory"), old_stage, new_stage,
                                                   reason=reason, now=now, by=by)
    return {"metadata": {"resourceVersion": mv["metadata"].get("resourceVersion")},
            "status": {"conditions": conditions, "stage": str(new_stage), "stageHistory": stage_history}}


async def _write_stages(mvs: list[dict[str, Any]], decision: policy_domain.Decision, now: datetime) -> None:
    kube, _ = runtime()
    by_name = {mv["metadata"]["name"]: mv for mv in mvs}
    transition = decision.transition
    # Retire / demote first, promote last: never two Production versions at any instant.
    order = sorted(decision.stages.items(), key=lambda item: item[1] == policy_domain.PRODUCTION)
    for name, stage in order:
        mv = by_name[name]
        if stage == policy_domain.PRODUCTION:
            reason = transition.reason if transition else "Promoted"
            message = f"serves production (model status.productionVersion {decision.production})"
        elif stage == policy_domain.RETIRED:
            reason, message = "Replaced", f"replaced in production by {decision.production or 'nothing'}"
        elif stage == policy_domain.SHADOW:
            reason, message = "ShadowSelected", "best passing version: runs in shadow beside production"
        else:
            reason, message = "Demoted", "no longer the shadow version"
        by = transition.by if transition else "clm-operator"
        patch = stage_patch(mv, stage, reason, message, by, now)
        path = custom_path(MODEL_VERSIONS, mv["metadata"]["namespace"], name, subresource="status")
        await kube.merge_patch(path, patch)
        m.observe_model_version(mv["metadata"]["namespace"], name, mv["spec"].get("modelName", ""),
                                patch["status"]["stage"])


# ---------------------------------------------------------------------------------------------------
# Status of the Model


def _model_conditions(status: dict[str, Any], decision: policy_domain.Decision, pin: str | None,
                      generation: int | None, now: datetime,
                      schedule_condition: tuple[str, str, str] | None) -> list[dict[str, Any]]:
    conditions: list[dict[str, Any]] = [dict(c) for c in status.get("conditions") or []]
    for change in decision.conditions:
        conditions = set_condition(conditions, change.type, change.status, change.reason, change.message,
                                   now=now, observed_generation=generation)
    if pin is None:
        conditions = remove_condition(conditions, policy_domain.PIN_ACCEPTED)
    if schedule_condition is not None:
        status_, reason, message = schedule_condition
        conditions = set_condition(conditions, "Scheduled", status_, reason, message, now=now,
                                   observed_generation=generation)
    return conditions


def _set_production_metrics(namespace: str, name: str, production: str | None) -> None:
    for metric in list(m.PRODUCTION_VERSION_INFO.collect()):
        for sample in metric.samples:
            labels = sample.labels
            if labels.get("namespace") == namespace and labels.get("model") == name \
                    and labels.get("version") != production:
                m.PRODUCTION_VERSION_INFO.remove(namespace, name, labels["version"])
    if production:
        m.PRODUCTION_VERSION_INFO.labels(namespace=namespace, model=name, version=production).set(1)
    m.MODEL_HAS_PRODUCTION.labels(namespace=namespace, model=name).set(1 if production else 0)


def forget_model_metrics(namespace: str, name: str) -> None:
    _set_production_metrics(namespace, name, None)
    for gauge in (m.MODEL_HAS_PRODUCTION, m.NEXT_SCHEDULE):
        try:
            gauge.remove(namespace, name)
        except KeyError:
            pass


# ---------------------------------------------------------------------------------------------------
# Schedule


async def _run_schedule(model: dict[str, Any], tjs: list[dict[str, Any]], now: datetime,
                        status_patch: dict[str, Any]) -> tuple[str, str, str] | None:
    """Create the due run (if any); fill lastScheduleTime / nextScheduleTime into ``status_patch``."""
    kube, _ = runtime()
    meta, spec, status = model["metadata"], model.get("spec") or {}, model.get("status") or {}
    namespace, name = meta["namespace"], meta["name"]
    active = tuple(sorted(
        tj["metadata"]["name"] for tj in tjs
        if (tj["metadata"].get("labels") or {}).get(schedule_domain.TRIGGER_LABEL) == "periodic"
        and not tj["metadata"].get("deletionTimestamp") and not is_finished(_tj_phase(tj))))
    last = status.get("lastScheduleTime")
    decision = schedule_domain.decide(schedule_domain.ScheduleInput(
        schedule=spec.get("schedule"),
        algorithm=str((spec.get("template") or {}).get("algorithm", "")),
        suspend=bool(spec.get("suspend")),
        concurrency_policy=str(spec.get("concurrencyPolicy") or "Forbid"),
        starting_deadline_seconds=spec.get("startingDeadlineSeconds"),
        last_schedule_time=parse_timestamp(last) if last else None,
        creation_time=parse_timestamp(meta["creationTimestamp"]),
        active_runs=active,
    ), now)
    result: tuple[str, str, str] | None = None
    if decision.action == schedule_domain.Action.CREATE and decision.scheduled_time is not None:
        for doomed in decision.delete_active:
            await kube.delete(custom_path(TRAINING_JOBS, namespace, doomed))
            log.info("concurrencyPolicy Replace: deleted %s/%s", namespace, doomed)
        run_name = schedule_domain.scheduled_run_name(name, decision.scheduled_time)
        when = format_timestamp(decision.scheduled_time)
        body = schedule_domain.training_job_for(model, run_name, "periodic", "schedule",
                                                note=f"scheduled for {when}",
                                                scheduled_time=decision.scheduled_time)
        _, created = await kube.create_or_get(custom_path(TRAINING_JOBS, namespace), body)
        status_patch["lastScheduleTime"] = format_timestamp(decision.scheduled_time)
        if created:
            await emit(model, events.NORMAL, events.TRAINING_JOB_CREATED,
                       f"scheduled run {run_name} for {format_timestamp(decision.scheduled_time)}")
        result = ("True", "RunCreated", f"created {run_name}")
    elif decision.action == schedule_domain.Action.MISSED_DEADLINE:
        result = ("False", "MissedStartingDeadline", decision.message)
    elif decision.action == schedule_domain.Action.FORBIDDEN:
        result = ("False", "SkippedConcurrent", decision.message)
    elif decision.action == schedule_domain.Action.SUSPENDED:
        result = ("False", "Suspended", decision.message)
    elif decision.next_time is not None:
        result = ("True", "Waiting", f"next run at {format_timestamp(decision.next_time)}")
    if decision.next_time is not None:
        status_patch["nextScheduleTime"] = format_timestamp(decision.next_time)
        m.NEXT_SCHEDULE.labels(namespace=namespace, model=name).set(decision.next_time.timestamp())
    else:
        status_patch["nextScheduleTime"] = None
        try:
            m.NEXT_SCHEDULE.remove(namespace, name)
        except KeyError:
            pass
    return result


# ---------------------------------------------------------------------------------------------------
# The reconcile


async def reconcile(namespace: str, name: str, *, scheduled: bool = False) -> None:
    async with lock_for("Model", namespace, name):
        with m.reconcile("Model"):
            await _reconcile(namespace, name, scheduled=scheduled)


async def _reconcile(namespace: str, name: str, *, scheduled: bool) -> None:
    kube, _ = runtime()
    model = await kube.get(custom_path(MODELS, namespace, name))
    if model is None or model["metadata"].get("deletionTimestamp"):
        forget_model_metrics(namespace, name)
        return
    model.setdefault("apiVersion", API_VERSION)
    model.setdefault("kind", "Model")
    now = clock_now()
    meta, spec = model["metadata"], model.get("spec") or {}
    status: dict[str, Any] = dict(model.get("status") or {})
    if not await _accepted(model, status, now):
        return
    mvs, tjs = await _owned(namespace, name)
    live_mvs = [mv for mv in mvs if not mv["metadata"].get("deletionTimestamp")]
    if scheduled:
        for mv in mvs:
            if mv["metadata"].get("deletionTimestamp") and \
                    ARTIFACT_FINALIZER in (mv["metadata"].get("finalizers") or []):
                await cleanup(mv)  # a retry of a cleanup whose storage call failed earlier
    await _adopt(model, live_mvs)

    history: list[dict[str, Any]] = list(status.get("history") or [])
    pin = spec.get("productionVersion")
    state = policy_domain.ModelState(
        policy=str((spec.get("promotion") or {}).get("policy") or "AutoCandidate"),
        pin=pin,
        allow_failed=(meta.get("annotations") or {}).get(ALLOW_FAILED_PROMOTION_ANNOTATION),
        production=status.get("productionVersion"),
        previous_production=status.get("previousProductionVersion"),
        past_productions=history_domain.past_productions(history),
    )
    decision = policy_domain.decide(state, [version_view(mv) for mv in live_mvs])
    author = history_domain.pin_author(meta.get("managedFields"))
    if decision.transition is not None and author and decision.transition.by == "spec.productionVersion":
        decision.transition = replace(decision.transition, by=f"spec.productionVersion ({author})")

    patch: dict[str, Any] = {}
    if decision.transition is not None:
        entry = history_domain.entry_for(decision.transition, now.replace(microsecond=0))
        history = history_domain.append(history, entry, HISTORY_LIMIT)
        patch["history"] = history
    schedule_condition: tuple[str, str, str] | None = None
    if scheduled:
        schedule_condition = await _run_schedule(model, tjs, now, patch)
        if "lastScheduleTime" in patch:
            mvs, tjs = await _owned(namespace, name)
    active = sorted(tj["metadata"]["name"] for tj in tjs if not is_finished(_tj_phase(tj)))
    patch.update({
        "productionVersion": decision.production,
        "previousProductionVersion": decision.previous_production,
        "candidateVersion": decision.candidate,
        "shadowVersion": decision.shadow,
        "activeTrainingJobs": active,
        "observedGeneration": meta.get("generation"),
    })
    patch["conditions"] = _model_conditions(status, decision, pin, meta.get("generation"), now,
                                            schedule_condition)
    changed = {k: v for k, v in patch.items() if status.get(k) != v}
    if changed:
        await kube.merge_patch(custom_path(MODELS, namespace, name, subresource="status"),
                               {"status": changed})

    if decision.transition is not None:
        t = decision.transition
        m.PROMOTIONS.labels(namespace=namespace, model=name).inc()
        if t.rollback:
            m.ROLLBACKS.labels(namespace=namespace, model=name).inc()
            await emit(model, events.NORMAL, events.MODEL_ROLLED_BACK,
                       f"production rolled back from {t.from_version} to {t.to_version} (by {t.by})")
        else:
            await emit(model, events.NORMAL, events.MODEL_PROMOTED,
                       f"{t.to_version} promoted to production, replacing {t.from_version or 'nothing'} "
                       f"({t.reason}, by {t.by})")
    for change in decision.conditions:
        if change.type == policy_domain.PIN_ACCEPTED and change.status == "False":
            previous = next((c for c in status.get("conditions") or [] if c.get("type") == change.type), None)
            if previous is None or previous.get("reason") != change.reason:
                await emit(model, events.WARNING, change.reason, change.message)
    await _write_stages(live_mvs, decision, now)
    _set_production_metrics(namespace, name, decision.production)
    await _retention(model, live_mvs, decision)


def spec_problems(model: dict[str, Any]) -> list[SpecProblem]:
    """What the CRD schema cannot check: the name's length, the cron syntax, per-algorithm settings."""
    problems: list[SpecProblem] = []
    try:
        validate_model_name(model["metadata"]["name"])
    except ValueError as error:
        problems.append(SpecProblem("metadata.name", str(error)))
    try:
        ModelSpec.model_validate(model.get("spec") or {})
    except ValidationError as error:
        problems += problems_from(error)
    except HyperparameterError as error:
        problems.append(SpecProblem(error.field, error.detail))
    return problems


async def _accepted(model: dict[str, Any], status: dict[str, Any], now: datetime) -> bool:
    """Accepted condition; an invalid Model is left alone (no runs, no promotions) until fixed."""
    kube, _ = runtime()
    meta = model["metadata"]
    problems = spec_problems(model)
    generation = meta.get("generation")
    old = next((c for c in status.get("conditions") or [] if c.get("type") == "Accepted"), None)
    if problems:
        message = summarize(problems)
        conditions = set_condition(status.get("conditions"), "Accepted", "False", "InvalidSpec", message,
                                   now=now, observed_generation=generation)
        if old is None or old.get("message") != message or old.get("status") != "False":
            await emit(model, events.WARNING, events.INVALID_SPEC, message)
    else:
        conditions = set_condition(status.get("conditions"), "Accepted", "True", "Valid",
                                   "the spec is valid", now=now, observed_generation=generation)
    if conditions != status.get("conditions"):
        await kube.merge_patch(custom_path(MODELS, meta["namespace"], meta["name"], subresource="status"),
                               {"status": {"conditions": conditions}})
        status["conditions"] = conditions
    return not problems


async def _retention(model: dict[str, Any], mvs: list[dict[str, Any]],
                     decision: policy_domain.Decision) -> None:
    spec = model.get("spec") or {}
    retention = spec.get("retention") or {}
    keep = int(retention.get("keepVersions", 10))
    delete_data = retention.get("artifactDeletionPolicy", "Retain") == ArtifactDeletionPolicy.DELETE
    for mv in mvs:
        await sync_finalizer(mv, delete_data)
    views = [version_view(mv) for mv in mvs]
    # Stages just written count: a version retired in this reconcile is prunable now.
    views = [policy_domain.VersionView(v.name, v.version, decision.stages.get(v.name, v.stage), v.score,
                                       v.passed) for v in views]
    protected = [decision.production, decision.previous_production, spec.get("productionVersion")]
    by_name = {mv["metadata"]["name"]: mv for mv in mvs}
    for doomed in versions_to_delete(views, keep, protected):
        mv = by_name[doomed.name]
        await delete_version(mv, reason=f"retention keeps {keep} retired/failed versions")


# ---------------------------------------------------------------------------------------------------
# kopf wiring


def _safe_name(body: kopf.Body) -> tuple[str, str]:
    return str(body["metadata"]["namespace"]), str(body["metadata"]["name"])


@kopf.on.event(GROUP, VERSION, MODELS)
async def model_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    namespace, name = _safe_name(body)
    if event.get("type") == "DELETED":
        forget_model_metrics(namespace, name)
        return
    try:
        await reconcile(namespace, name)
    except KubeError as error:
        # The timer retries; a conflict only means someone wrote in between.
        log.warning("Model %s/%s reconcile failed (will retry): %s", namespace, name, error)


@kopf.on.event(GROUP, VERSION, MODEL_VERSIONS)
async def reconcile_model_on_version_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    model = (body.get("spec") or {}).get("modelName")
    namespace = body["metadata"]["namespace"]
    if not model or event.get("type") == "DELETED":
        return
    meta = body["metadata"]
    if meta.get("deletionTimestamp") and ARTIFACT_FINALIZER in (meta.get("finalizers") or []):
        return  # handlers/retention.py cleans up; the Model reconcile comes with the next event
    try:
        await reconcile(str(namespace), str(model))
    except KubeError as error:
        log.warning("Model %s/%s reconcile after a version change failed (will retry): %s",
                    namespace, model, error)


@kopf.timer(GROUP, VERSION, MODELS, interval=schedule_interval(), initial_delay=0.5)
async def model_timer(body: kopf.Body, **_: Any) -> None:
    namespace, name = _safe_name(body)
    try:
        await reconcile(namespace, name, scheduled=True)
    except KubeError as error:
        # Not raised to kopf: its backoff would delay the next tick; the next interval retries.
        log.warning("Model %s/%s scheduled reconcile failed (will retry): %s", namespace, name, error)
