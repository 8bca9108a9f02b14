"""The TrainingJob reconcile: read the run's objects, decide (domain/run.py), apply the decision once.

Triggered (handlers/__init__.py has the table) by the TrainingJob's create/resume, by events of its Job
and pods, and by a timer that enforces ``startupTimeoutSeconds`` and catches missed events. Every
object it creates has a deterministic name and is created-if-absent (409 -> read it), so an operator
killed at any point and restarted converges without a second Job or ModelVersion. Apply order: create
what is missing, ModelVersion changes (through handlers/model_version.py, the owner), Events, the
TrainingJob status in one diffed write, then a stuck Job's deletion and the metrics.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from clm_contract.storage import ObjectNotFoundError, S3Settings, read_uri
from clm_contract.trainer_contract import TrainerResult
from clm_contract.training_job_status import Phase

from clm_operator.clock import now
from clm_operator.domain import lifecycle as lc
from clm_operator.domain import run as run_domain
from clm_operator.domain.conditions import ConditionChange
from clm_operator.domain.config import OperatorConfig
from clm_operator.domain.effects import Subject
from clm_operator.domain.jobspec import LABEL_TRAINING_JOB, version_of
from clm_operator.domain.versioning import job_name_for, label_value, model_version_name
from clm_operator.handlers import model_version
from clm_operator.handlers.common import (
    MODEL_VERSIONS,
    MODELS,
    NO_EVENT,
    TRAINING_JOBS,
    current,
    emit,
    read,
    record_condition,
    write_status,
)
from clm_operator.handlers.reconciler import Context, Target
from clm_operator.k8s import path_for
from clm_operator.observability import metrics as m

KIND = "TrainingJob"
ANNOTATION_TRAINING_JOB = "clm.dev/training-job"
log = logging.getLogger("clm_operator.training_job")


def owning_training_job(body: Mapping[str, Any]) -> str | None:
    """The TrainingJob of a Job or pod: the annotation carries it in full (the label may be shortened)."""
    annotations = body.get("metadata", {}).get("annotations") or {}
    if annotations.get(ANNOTATION_TRAINING_JOB):
        return str(annotations[ANNOTATION_TRAINING_JOB])
    for owner in body.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("kind") == "TrainingJob":
            return str(owner.get("name"))
    labels = body.get("metadata", {}).get("labels") or {}
    value = labels.get(LABEL_TRAINING_JOB)
    return str(value) if value else None


def manifest_result(config: OperatorConfig, uri: str) -> TrainerResult | None:
    """The durable copy of the result: manifest.json beside the artifact (clm_contract.storage's layout).

    None when it is absent or unusable. A StorageError (storage slow or failing: transient) propagates,
    so the reconcile wrapper retries with backoff instead of deciding that the run left no result."""
    settings = S3Settings(endpoint_url=config.s3_endpoint_url, region=config.aws_region,
                          path_style=config.s3_path_style)
    try:
        manifest = json.loads(read_uri(uri, settings))
    except (ObjectNotFoundError, ValueError, OSError) as error:
        log.warning("cannot read manifest %s: %s", uri, error)
        return None
    backtest = manifest.get("backtest") or {}
    try:
        return TrainerResult.model_validate({
            "status": "Succeeded", "exitCode": 0, "version": manifest.get("version"),
            "artifact": manifest.get("artifact"), "dataset": manifest.get("dataset"),
            "metrics": backtest.get("metrics"), "manifestUri": uri,
            "reportUri": (manifest.get("files") or {}).get("report"),
        })
    except ValueError as error:
        log.warning("manifest %s does not hold a usable result: %s", uri, error)
        return None


async def observe(ctx: Context, tj: dict[str, Any]) -> run_domain.RunView:
    """Read everything the decision needs, into a frozen view (a finished run needs only its Job)."""
    kube, namespace, name = ctx.kube, ctx.namespace, ctx.name
    instant = now()
    job = await kube.get(path_for("batch/v1", "jobs", namespace, job_name_for(name)))
    finished = lc.is_finished(lc.training_job_phase((tj.get("status") or {}).get("conditions")))
    if finished:
        return run_domain.RunView(training_job=tj, now=instant, job=job)
    model_name = str((tj.get("spec") or {}).get("modelName") or "")
    model = mv = None
    if model_name:
        model = await read(kube, MODELS, "Model", namespace, model_name)
        mv = await read(kube, MODEL_VERSIONS, model_version.KIND, namespace,
                        model_version_name(model_name, version_of(tj)))
    pods: list[dict[str, Any]] = []
    tombstones = current().tombstones
    if job is not None or tombstones.job(namespace, name) is not None:
        pods = await kube.list(path_for("v1", "pods", namespace),
                               label_selector=f"{LABEL_TRAINING_JOB}={label_value(name)}")
    live = {p["metadata"]["name"] for p in pods}
    pods += [p for p in tombstones.pods(namespace, name) if p["metadata"].get("name") not in live]
    view = run_domain.RunView(training_job=tj, now=instant, job=job, pods=tuple(pods), model=model,
                              model_version=mv, last_job=None if job else tombstones.job(namespace, name))
    uri = run_domain.manifest_to_read(view, ctx.config)
    if uri is not None:
        view = replace(view, manifest=manifest_result(ctx.config, uri))
    return view


async def apply(ctx: Context, tj: dict[str, Any], decision: run_domain.RunDecision) -> None:
    kube = ctx.kube
    meta = tj["metadata"]
    mv: dict[str, Any] | None = None
    if decision.create_model_version is not None:
        mv = await model_version.ensure(kube, decision.create_model_version)
    elif decision.model_version_changes:
        name = model_version_name(str(tj["spec"]["modelName"]), version_of(tj))
        mv = await read(kube, MODEL_VERSIONS, model_version.KIND, ctx.namespace, name)
    for change in decision.model_version_changes:
        if mv is not None:
            mv = await model_version.change(kube, mv, change)
    if decision.create_job is not None:
        await kube.create_or_get(path_for("batch/v1", "jobs", ctx.namespace), decision.create_job)
    for event in decision.events:
        subject = mv if event.subject == Subject.MODEL_VERSION and mv is not None else tj
        await emit(subject, event, ctx.logger)
    await write_status(kube, TRAINING_JOBS, tj, decision.status)
    if decision.delete_job is not None:
        await kube.delete(path_for("batch/v1", "jobs", ctx.namespace, decision.delete_job))
    for metric in decision.metrics:
        m.apply(metric)
    m.observe_training_job(ctx.namespace, meta["name"], decision.phase)
    if lc.is_finished(decision.phase):
        current().tombstones.forget(ctx.namespace, meta["name"])
    if decision.log is not None:
        message, extra = decision.log
        level = logging.INFO if decision.phase == Phase.SUCCEEDED else logging.WARNING
        ctx.logger.log(level, message, extra={**NO_EVENT, **extra})


async def reconcile(ctx: Context) -> None:
    tj = await read(ctx.kube, TRAINING_JOBS, KIND, ctx.namespace, ctx.name)
    if tj is None:
        m.forget_training_job(ctx.namespace, ctx.name)
        return
    view = await observe(ctx, tj)
    await apply(ctx, tj, run_domain.decide(view, ctx.config))


async def report_forbidden(ctx: Context, condition: ConditionChange) -> None:
    await record_condition(ctx.kube, TRAINING_JOBS, ctx.namespace, ctx.name, condition)


RECONCILE = Target(KIND, reconcile, report_forbidden)
