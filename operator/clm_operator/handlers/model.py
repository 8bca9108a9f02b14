"""The Model reconcile: read the Model, its versions and runs, decide (domain/model_decision.py), apply.

It never writes a Model's spec, only its status, in one diffed write per pass, and its production-guard
finalizer (domain/model_decision.py ``_decide_deletion``: a Model under artifactDeletionPolicy Delete is not
deleted while a version serves Production). Every path goes through
``reconcile`` under one lock per Model (handlers/reconciler.py), so an event of a version, a change of
the Model and the schedule timer cannot interleave their writes. Apply order: the Model's status (with the
history entry) first, then the versions' stage changes in the decided order (through
handlers/model_version.py, their owner), owner references and finalizers, pruning, the scheduled run,
Events and metrics. A crash in between is repaired by the next pass without a second history entry.
"""

from __future__ import annotations

from typing import Any

from clm_operator.clock import now
from clm_operator.domain import model_decision
from clm_operator.domain.conditions import ConditionChange
from clm_operator.domain.jobspec import owner_reference
from clm_operator.domain.retention import PRODUCTION_GUARD_FINALIZER
from clm_operator.handlers import common, model_version
from clm_operator.handlers.common import MODEL_VERSIONS, MODELS, NO_EVENT, TRAINING_JOBS, with_type
from clm_operator.handlers.reconciler import Context, Target
from clm_operator.k8s import custom_path
from clm_operator.observability import metrics as m

KIND = "Model"


async def observe(ctx: Context, model: dict[str, Any], *, scheduled: bool) -> model_decision.ModelView:
    kube = ctx.kube
    mvs = [with_type(mv, "ModelVersion") for mv in await kube.list(custom_path(MODEL_VERSIONS, ctx.namespace))
           if (mv.get("spec") or {}).get("modelName") == ctx.name]
    tjs = [with_type(tj, "TrainingJob") for tj in await kube.list(custom_path(TRAINING_JOBS, ctx.namespace))
           if (tj.get("spec") or {}).get("modelName") == ctx.name]
    return model_decision.ModelView(model=model, versions=tuple(mvs), runs=tuple(tjs), now=now(),
                                    scheduled=scheduled)


async def apply(ctx: Context, model: dict[str, Any], view: model_decision.ModelView,
                decision: model_decision.ModelDecision) -> None:
    kube = ctx.kube
    await common.write_status(kube, MODELS, model, decision.status)
    for event in decision.events:
        await common.emit(model, event, ctx.logger)
    by_name = {mv["metadata"]["name"]: dict(mv) for mv in view.versions}
    if decision.deleting:  # the versions' finalizers first, then the Model's guard is released (or kept)
        for name, wanted in decision.finalizers:
            by_name[name] = await model_version.set_finalizer(kube, by_name[name], wanted)
        await set_guard(ctx, decision)
        return
    await set_guard(ctx, decision)
    if not decision.accepted:
        return
    for name, change in decision.version_changes:
        by_name[name] = await model_version.change(kube, by_name[name], change)
    owner = owner_reference(model, "Model")
    for name in decision.adopt:
        by_name[name] = await model_version.set_owner(kube, by_name[name], owner)
        ctx.logger.info(f"adopted ModelVersion {name}", extra=NO_EVENT)
    for name, wanted in decision.finalizers:
        by_name[name] = await model_version.set_finalizer(kube, by_name[name], wanted)
    for name, why in decision.delete_versions:
        await model_version.delete(kube, by_name[name], why, ctx.logger)
    for name in decision.retry_cleanups:
        await model_version.clean_up(ctx, by_name[name])  # a cleanup whose storage call failed earlier
    for doomed in decision.delete_runs:
        await kube.delete(custom_path(TRAINING_JOBS, ctx.namespace, doomed))
        ctx.logger.info(f"concurrencyPolicy Replace: deleted {doomed}", extra=NO_EVENT)
    for body in decision.create_runs:
        await kube.create_or_get(custom_path(TRAINING_JOBS, ctx.namespace), body)
    for metric in decision.metrics:
        m.apply(metric)
    m.set_production_version(ctx.namespace, ctx.name, decision.production)


async def set_guard(ctx: Context, decision: model_decision.ModelDecision) -> None:
    """Make the Model's production-guard finalizer what the decision says (other finalizers untouched).

    Written from a fresh read with its resourceVersion as precondition (the status write before it changed
    the one read); a 409 is the wrapper's retry."""
    if decision.model_finalizers is None:
        return
    wanted = PRODUCTION_GUARD_FINALIZER in decision.model_finalizers
    current = await ctx.kube.get(custom_path(MODELS, ctx.namespace, ctx.name))
    if current is None:
        return
    finalizers = list(current["metadata"].get("finalizers") or [])
    if (PRODUCTION_GUARD_FINALIZER in finalizers) == wanted:
        return
    kept = [f for f in finalizers if f != PRODUCTION_GUARD_FINALIZER]
    await ctx.kube.merge_patch(custom_path(MODELS, ctx.namespace, ctx.name), {"metadata": {
        "finalizers": [*kept, PRODUCTION_GUARD_FINALIZER] if wanted else kept,
        "resourceVersion": current["metadata"].get("resourceVersion")}})
    ctx.logger.info(f"production guard {'set' if wanted else 'released'}", extra=NO_EVENT)


async def reconcile(ctx: Context, *, scheduled: bool = False) -> None:
    model = await common.read(ctx.kube, MODELS, KIND, ctx.namespace, ctx.name)
    if model is None:
        m.forget_model(ctx.namespace, ctx.name)
        return
    view = await observe(ctx, model, scheduled=scheduled)
    await apply(ctx, model, view, model_decision.decide(view))


async def reconcile_scheduled(ctx: Context) -> None:
    await reconcile(ctx, scheduled=True)


async def report_forbidden(ctx: Context, condition: ConditionChange) -> None:
    await common.record_condition(ctx.kube, MODELS, ctx.namespace, ctx.name, condition)


RECONCILE = Target(KIND, reconcile, report_forbidden)
RECONCILE_SCHEDULED = Target(KIND, reconcile_scheduled, report_forbidden)
