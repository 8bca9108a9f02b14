"""TrainingJob handlers: validate, create the ModelVersion and the Job, follow the Job, record the result.

Everything goes through one idempotent ``reconcile`` (per TrainingJob, under a lock), triggered by the
TrainingJob's create/resume, by events of its Job and pods (handlers/jobs.py) and by a timer that
enforces ``startupTimeoutSeconds`` and catches missed events. Every object it creates has a
deterministic name and is created-if-absent (409 -> read it), so an operator killed at any point and
restarted converges without a second Job or ModelVersion. Writes go ModelVersion first, TrainingJob
status last: a TrainingJob marked finished is never looked at again.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from typing import Any

import kopf

from clm_operator import API_VERSION, GROUP, VERSION
from clm_operator.api.metrics import BacktestMetrics
from clm_operator.api.model_version import Stage
from clm_operator.api.trainer_contract import MANIFEST_NAME, TrainerResult, artifact_prefix
from clm_operator.api.training_job import TrainingJobSpec
from clm_operator.api.training_job_status import Phase
from clm_operator.clock import now
from clm_operator.domain import lifecycle as lc
from clm_operator.domain import outcome
from clm_operator.domain.conditions import FALSE, TRUE, UNKNOWN, set_condition
from clm_operator.domain.config import OperatorConfig
from clm_operator.domain.jobspec import (
    LABEL_MODEL,
    LABEL_TRAINING_JOB,
    LABEL_VERSION,
    build_job,
    labels_for,
    owner_reference,
    version_of,
)
from clm_operator.domain.jobstatus import STUCK_REASONS, JobVerdict, RunState, interpret
from clm_operator.domain.promotion import evaluate
from clm_operator.domain.validation import summarize, validate_training_job_spec
from clm_operator.domain.versioning import format_timestamp, job_name_for, label_value, model_version_name
from clm_operator.handlers.common import (
    MODEL_VERSIONS,
    MODELS,
    TRAINING_JOBS,
    emit,
    lock_for,
    runtime,
    with_type,
)
from clm_operator.k8s import Kube, KubeError, custom_path, path_for
from clm_operator.observability import events
from clm_operator.observability import metrics as m

KIND = "TrainingJob"
# The timer's interval is fixed when kopf registers it: runner.py exports --resync-seconds first.
RESYNC_SECONDS = float(os.environ.get("CLM_RESYNC_SECONDS", "10"))
log = logging.getLogger("clm_operator.training_job")


# ---- kopf wiring (thin) ------------------------------------------------------------------------------

@kopf.on.resume(GROUP, VERSION, TRAINING_JOBS)
@kopf.on.create(GROUP, VERSION, TRAINING_JOBS)
async def training_job_created(name: str, namespace: str | None, retry: int, **_: Any) -> None:
    await reconcile(namespace or "", name, first_attempt=retry == 0)


@kopf.on.update(GROUP, VERSION, TRAINING_JOBS, field="spec")
async def training_job_spec_changed(name: str, namespace: str | None, **_: Any) -> None:
    """The CRD's CEL rule normally refuses this; an API server without CEL lets it through."""
    kube, _config = runtime()
    namespace = namespace or ""
    async with lock_for(KIND, namespace, name):
        tj = await kube.get(custom_path(TRAINING_JOBS, namespace, name))
        if tj is None:
            return
        with_type(tj, KIND)
        status = tj.get("status") or {}
        message = ("spec is immutable: create a new TrainingJob; this run keeps the spec it was created "
                   "with (its Job is unchanged)")
        conditions = set_condition(status.get("conditions"), "SpecImmutable", TRUE, "SpecChanged", message,
                                   now=now(), observed_generation=tj["metadata"].get("generation"))
        await _patch_status(kube, tj, {"conditions": conditions})
        await emit(tj, events.WARNING, events.SPEC_IMMUTABLE, message)


def _unfinished(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in (Phase.SUCCEEDED, Phase.FAILED)


@kopf.timer(GROUP, VERSION, TRAINING_JOBS, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS / 2,
            when=_unfinished)
async def training_job_resync(name: str, namespace: str | None, **_: Any) -> None:
    await reconcile(namespace or "", name, first_attempt=True)


@kopf.on.delete(GROUP, VERSION, TRAINING_JOBS, optional=True)
async def training_job_deleted(name: str, namespace: str | None, **_: Any) -> None:
    m.forget_training_job(namespace or "", name)


# ---- the reconcile -------------------------------------------------------------------------------------

async def reconcile(namespace: str, name: str, *, first_attempt: bool = True) -> None:
    kube, config = runtime()
    async with lock_for(KIND, namespace, name):
        with m.reconcile(KIND, count_error=first_attempt):
            await _reconcile(kube, config, namespace, name)


async def _reconcile(kube: Kube, config: OperatorConfig, namespace: str, name: str) -> None:
    tj = await kube.get(custom_path(TRAINING_JOBS, namespace, name))
    if tj is None:
        m.forget_training_job(namespace, name)
        return
    with_type(tj, KIND)
    status = tj.get("status") or {}
    phase = lc.training_job_phase(status.get("conditions"))
    if lc.is_finished(phase):
        m.observe_training_job(namespace, name, phase)
        if phase == Phase.FAILED and status.get("reason") in (*STUCK_REASONS, "Unschedulable"):
            # Failed for a pod that never started: its Job must not linger (and may still be there if
            # the operator stopped between marking the run failed and deleting the Job).
            await kube.delete(path_for("batch/v1", "jobs", namespace, job_name_for(name)))
        return

    spec, problems = validate_training_job_spec(tj.get("spec"))
    if spec is None:
        await _reject(kube, tj, summarize(problems))
        return

    version = version_of(tj)
    mv = await _ensure_model_version(kube, tj, spec, version)
    job = await _ensure_job(kube, config, tj, spec, version)
    if job is None:
        return
    pods = await kube.list(path_for("v1", "pods", namespace),
                           label_selector=f"{LABEL_TRAINING_JOB}={label_value(name)}")
    verdict = interpret(job, pods, now=now(), startup_timeout_seconds=spec.startup_timeout_seconds)
    if verdict.state == RunState.SUCCEEDED:
        await _succeeded(kube, config, tj, spec, mv, job, verdict)
    elif verdict.state in (RunState.FAILED, RunState.STUCK):
        await _failed(kube, tj, spec, mv, verdict.reason, verdict.message)
        if verdict.state == RunState.STUCK:
            await kube.delete(path_for("batch/v1", "jobs", namespace, job["metadata"]["name"]))
    else:
        await _in_progress(kube, tj, job, verdict)


async def _reject(kube: Kube, tj: dict[str, Any], message: str) -> None:
    """Invalid spec: a condition naming the field, a Warning Event, no Job, no retry."""
    meta = tj["metadata"]
    # Events first, the terminal status last: a run marked finished is never looked at again, and a
    # repeated Event (same name) after a restart is deduplicated by the API server.
    await emit(tj, events.WARNING, events.INVALID_SPEC, message)
    await _patch_status(kube, tj, outcome.rejected(tj.get("status") or {}, message,
                                                   generation=meta.get("generation"), now=now()))
    model = str((tj.get("spec") or {}).get("modelName") or "")
    m.TRAINING_JOB_FAILURES.labels(namespace=meta["namespace"], model=model, reason="InvalidSpec").inc()
    m.observe_training_job(meta["namespace"], meta["name"], Phase.FAILED)
    log.warning("invalid TrainingJob spec",
                extra={"namespace": meta["namespace"], "training_job": meta["name"], "problem": message})


async def _ensure_model_version(kube: Kube, tj: dict[str, Any], spec: TrainingJobSpec,
                                version: str) -> dict[str, Any]:
    """Create-if-absent, stage Training; owned by its Model when the Model exists (never by the run)."""
    meta = tj["metadata"]
    namespace = meta["namespace"]
    name = model_version_name(spec.model_name, version)
    labels = {key: value for key, value in labels_for(meta["name"], spec.model_name, version).items()
              if key in (LABEL_TRAINING_JOB, LABEL_MODEL, LABEL_VERSION) or key.endswith("part-of")
              or key.endswith("managed-by")}
    body: dict[str, Any] = {
        "apiVersion": API_VERSION, "kind": "ModelVersion",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"modelName": spec.model_name, "version": version, "algorithm": str(spec.algorithm),
                 "trainingJobRef": {"name": meta["name"], "uid": meta["uid"]}},
    }
    model = await kube.get(custom_path(MODELS, namespace, spec.model_name))
    if model is not None:
        body["metadata"]["ownerReferences"] = [owner_reference(with_type(model, "Model"), "Model")]
    mv, _created = await kube.create_or_get(custom_path(MODEL_VERSIONS, namespace), body)
    with_type(mv, "ModelVersion")
    if not (mv.get("status") or {}).get("stage"):
        instant = now()
        conditions = set_condition(None, lc.TRAINED, UNKNOWN, "Training",
                                   f"TrainingJob {meta['name']} is training this version", now=instant)
        history = lc.append_stage_history(None, None, Stage.TRAINING,
                                          reason=f"TrainingJob {meta['name']} started", now=instant)
        mv = await _patch_status(kube, mv, {"stage": str(Stage.TRAINING), "conditions": conditions,
                                            "stageHistory": history}, plural=MODEL_VERSIONS)
        m.observe_model_version(namespace, name, spec.model_name, Stage.TRAINING)
    return mv


async def _ensure_job(kube: Kube, config: OperatorConfig, tj: dict[str, Any], spec: TrainingJobSpec,
                      version: str) -> dict[str, Any] | None:
    meta = tj["metadata"]
    namespace = meta["namespace"]
    status = tj.get("status") or {}
    job_name = job_name_for(meta["name"])
    job = await kube.get(path_for("batch/v1", "jobs", namespace, job_name))
    if job is None and status.get("jobName"):
        # The run's Job existed and is gone (deleted by hand, or by its TTL while the operator was
        # away): starting a second one would train twice under one version.
        await _failed(kube, tj, spec, None, "JobDeleted",
                      f"Job {job_name} was deleted before its result was recorded; create a new TrainingJob")
        return None
    if job is None:
        job, created = await kube.create_or_get(path_for("batch/v1", "jobs", namespace),
                                                build_job(tj, config))
        if created:
            mv_name = model_version_name(spec.model_name, version)
            await emit(tj, events.NORMAL, events.TRAINING_JOB_CREATED,
                       f"created Job {job_name} training {spec.algorithm} for ModelVersion {mv_name}")
    owners = job.get("metadata", {}).get("ownerReferences") or []
    if not any(owner.get("uid") == meta["uid"] for owner in owners):
        await _failed(kube, tj, spec, None, "JobNameTaken",
                      f"a Job named {job_name} exists and does not belong to this TrainingJob; delete it or "
                      "rename the TrainingJob")
        return None
    return job


async def _in_progress(kube: Kube, tj: dict[str, Any], job: dict[str, Any], verdict: JobVerdict) -> None:
    meta = tj["metadata"]
    version = version_of(tj)
    patch = outcome.in_progress(tj.get("status") or {}, verdict,
                                suspended=bool((job.get("spec") or {}).get("suspend")),
                                generation=meta.get("generation"), now=now())
    patch.update(jobName=job["metadata"]["name"], version=version,
                 modelVersion=model_version_name(tj["spec"]["modelName"], version))
    await _patch_status(kube, tj, patch)
    m.observe_training_job(meta["namespace"], meta["name"], lc.training_job_phase(patch["conditions"]))


async def _failed(kube: Kube, tj: dict[str, Any], spec: TrainingJobSpec, mv: dict[str, Any] | None,
                  reason: str, message: str) -> None:
    meta = tj["metadata"]
    namespace = meta["namespace"]
    instant = now()
    version = version_of(tj)
    mv_name = model_version_name(spec.model_name, version)
    if mv is None:
        mv = await kube.get(custom_path(MODEL_VERSIONS, namespace, mv_name))
    if mv is not None:
        with_type(mv, "ModelVersion")
        await _update_model_version(kube, mv, {"message": message}, [(lc.TRAINED, FALSE, reason, message)],
                                    f"training failed: {reason}")
    patch = outcome.failed(tj.get("status") or {}, reason, message, generation=meta.get("generation"),
                           now=instant)
    await emit(tj, events.WARNING, events.TRAINING_FAILED, f"{reason}: {message}")
    await _patch_status(kube, tj, {**patch, "version": version, "modelVersion": mv_name})
    m.TRAINING_JOB_FAILURES.labels(namespace=namespace, model=spec.model_name, reason=reason).inc()
    m.observe_training_job(namespace, meta["name"], Phase.FAILED)
    log.warning("training failed", extra={"namespace": namespace, "training_job": meta["name"],
                                          "reason": reason, "detail": message})


def _manifest_result(config: OperatorConfig, uri: str) -> TrainerResult | None:
    """The durable copy of the result: manifest.json beside the artifact (trainer's layout)."""
    try:
        from clm_trainer.storage import ObjectNotFoundError, S3Settings, StorageError, read_uri
    except ImportError:  # an operator image without the trainer package: no fallback possible
        log.warning("clm_trainer.storage is not importable: cannot read %s", uri)
        return None
    settings = S3Settings(endpoint_url=config.s3_endpoint_url, region=config.aws_region,
                          path_style=config.s3_path_style)
    try:
        manifest = json.loads(read_uri(uri, settings))
    except (StorageError, ObjectNotFoundError, ValueError, OSError) as error:
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


async def _succeeded(kube: Kube, config: OperatorConfig, tj: dict[str, Any], spec: TrainingJobSpec,
                     mv: dict[str, Any], job: dict[str, Any], verdict: JobVerdict) -> None:
    meta = tj["metadata"]
    namespace = meta["namespace"]
    version = version_of(tj)
    result = verdict.trainer_result()
    if result is None or result.metrics is None or result.artifact is None:
        manifest_uri = (result.manifest_uri if result and result.manifest_uri else
                        f"{artifact_prefix(config.output_uri, namespace, spec.model_name, version)}/"
                        f"{MANIFEST_NAME}")
        result = _manifest_result(config, manifest_uri)
    if result is None or result.metrics is None or result.artifact is None:
        await _failed(kube, tj, spec, mv, "ResultMissing",
                      "the trainer exited 0 but neither its termination message nor manifest.json holds a "
                      "result with metrics and an artifact")
        return
    metrics: BacktestMetrics = result.metrics
    evaluation = evaluate(metrics, spec.evaluation.criteria)
    instant = now()
    fields, changes, why = outcome.trained_version(result, evaluation)
    mv = await _update_model_version(kube, mv, fields, changes, why)
    stage = (mv.get("status") or {}).get("stage", "")

    status = tj.get("status") or {}
    message = (f"ModelVersion {mv['metadata']['name']} is {stage} (score {evaluation.score:.2f})"
               + ("" if evaluation.passed else "; failed: " + "; ".join(evaluation.failed_criteria)))
    completion = _job_completion(job) or format_timestamp(instant)
    patch = outcome.succeeded(status, message, generation=meta.get("generation"), now=instant)
    await emit(mv, events.NORMAL, events.MODEL_TRAINED,
               f"trained {spec.algorithm} on {result.dataset.rows if result.dataset else '?'} bars: "
               f"artifact {result.artifact.uri}")
    await emit(mv, events.NORMAL if evaluation.passed else events.WARNING, events.MODEL_EVALUATED,
               f"{stage}: score {evaluation.score:.2f}"
               + ("" if evaluation.passed else "; failed " + "; ".join(evaluation.failed_criteria)))
    await emit(tj, events.NORMAL, events.MODEL_TRAINED, message)
    await _patch_status(kube, tj, {
        **patch, "metrics": outcome.metrics_summary(metrics, evaluation),
        "jobName": job["metadata"]["name"], "version": version, "modelVersion": mv["metadata"]["name"],
        "startTime": status.get("startTime") or (job.get("status") or {}).get("startTime"),
        "completionTime": completion,
    })

    duration = result.duration_seconds
    if duration is None:
        duration = _seconds_between(status.get("startTime") or (job.get("status") or {}).get("startTime"),
                                    completion)
    if duration is not None:
        m.TRAINING_DURATION.labels(algorithm=str(spec.algorithm)).observe(max(duration, 0.0))
    m.LAST_SUCCESSFUL_TRAINING.labels(namespace=namespace, model=spec.model_name).set(instant.timestamp())
    m.PROMOTION_SCORE.labels(namespace=namespace, model=spec.model_name,
                             version=version).set(evaluation.score)
    m.observe_training_job(namespace, meta["name"], Phase.SUCCEEDED)
    log.info("training succeeded", extra={"namespace": namespace, "training_job": meta["name"],
                                          "model_version": mv["metadata"]["name"], "stage": stage,
                                          "score": evaluation.score})


def _job_completion(job: dict[str, Any]) -> str | None:
    value = (job.get("status") or {}).get("completionTime")
    return str(value) if value else None


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    begin = datetime.fromisoformat(start.replace("Z", "+00:00"))
    finish = datetime.fromisoformat(end.replace("Z", "+00:00"))
    return (finish - begin).total_seconds()


# ---- status writes -------------------------------------------------------------------------------------

async def _patch_status(kube: Kube, obj: dict[str, Any], changes: dict[str, Any], *,
                        plural: str = TRAINING_JOBS) -> dict[str, Any]:
    """Merge-patch the status subresource with ``changes`` (+ phase/stage and observedGeneration)."""
    meta = obj["metadata"]
    status = dict(obj.get("status") or {})
    merged = {**status, **{key: value for key, value in changes.items() if value is not None}}
    if plural == TRAINING_JOBS:
        merged["phase"] = str(lc.training_job_phase(merged.get("conditions")))
    if meta.get("generation") is not None:
        merged["observedGeneration"] = meta["generation"]
    patch = {key: value for key, value in merged.items() if status.get(key) != value}
    if not patch:
        return obj
    path = custom_path(plural, meta["namespace"], meta["name"], subresource="status")
    updated = await kube.merge_patch(path, {"status": patch})
    return with_type(updated, obj.get("kind", ""))


async def _update_model_version(kube: Kube, mv: dict[str, Any], fields: dict[str, Any],
                                changes: list[outcome.ConditionChange], why: str) -> dict[str, Any]:
    """Write the version's new status with optimistic concurrency: the Model's handler writes the same
    status (Production/Shadow/Retired), so a stale write (409) is retried on a fresh read."""
    for attempt in range(5):
        meta = mv["metadata"]
        patch = outcome.version_status(mv.get("status") or {}, fields, changes, why,
                                       generation=meta.get("generation"), now=now())
        path = custom_path(MODEL_VERSIONS, meta["namespace"], meta["name"], subresource="status")
        try:
            updated = await kube.merge_patch(path, {"metadata": {"resourceVersion": meta["resourceVersion"]},
                                                    "status": patch})
        except KubeError as error:
            if error.status != 409 or attempt == 4:
                raise
            fresh = await kube.get(custom_path(MODEL_VERSIONS, meta["namespace"], meta["name"]))
            if fresh is None:
                return mv
            mv = with_type(fresh, "ModelVersion")
            continue
        with_type(updated, "ModelVersion")
        m.observe_model_version(meta["namespace"], meta["name"], updated["spec"]["modelName"], patch["stage"])
        return updated
    return mv
