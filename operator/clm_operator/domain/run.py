"""One training run decided purely: from what the cluster shows, what the TrainingJob reconcile writes.

The reconcile (handlers/training_job.py) reads the TrainingJob, its ModelVersion, its Job and pods (and,
only when ``manifest_to_read`` names it, the result's manifest.json) into a ``RunView``, calls ``decide``
and applies the ``RunDecision`` once: create what is missing, change the ModelVersion through its owner
module, post the Events, write the TrainingJob status (the difference only), delete a stuck Job, change
the metrics. Every Event and counter is derived from the phase transition decided here, so deciding
again on the written state decides nothing new (tests/unit/test_run_decision.py checks that property).

Order of the writes (handlers/training_job.py follows it): ModelVersion first, TrainingJob status last,
because a TrainingJob marked finished is never looked at again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from clm_contract import API_VERSION
from clm_contract.conditions import CommonCondition, Reason
from clm_contract.conditions import TrainingJobCondition as TJC
from clm_contract.metrics import BacktestMetrics
from clm_contract.promotion import evaluate
from clm_contract.storage import MANIFEST_NAME, artifact_prefix
from clm_contract.trainer_contract import TrainerResult
from clm_contract.training_job import TrainingJobSpec
from clm_contract.training_job_status import Phase

from clm_operator.domain import lifecycle as lc
from clm_operator.domain import outcome
from clm_operator.domain.conditions import apply_changes, get_condition, remove_condition
from clm_operator.domain.config import OperatorConfig
from clm_operator.domain.effects import (
    NORMAL,
    WARNING,
    Event,
    EventReason,
    MetricChange,
    MetricOp,
    Subject,
    acts,
)
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
from clm_operator.domain.validation import summarize, validate_training_job_spec
from clm_operator.domain.versioning import format_timestamp, job_name_for, model_version_name, parse_timestamp

# A run failed for a pod that never started: its Job must not linger.
ABANDONED_REASONS = frozenset({*STUCK_REASONS, Reason.UNSCHEDULABLE})


@dataclass(frozen=True)
class RunView:
    """What the reconcile read; never changed by ``decide``."""

    training_job: Mapping[str, Any]
    now: datetime
    model: Mapping[str, Any] | None = None  # the Model the run trains for, when it exists (owner of the MV)
    model_version: Mapping[str, Any] | None = None
    job: Mapping[str, Any] | None = None
    pods: tuple[Mapping[str, Any], ...] = ()  # live pods, then the last state of deleted ones
    manifest: TrainerResult | None = None  # read only when manifest_to_read() asked for it
    # The Job's last state, seen in its DELETED event, when it is gone (ttlSecondsAfterFinished: 0 can
    # delete it before any reconcile read its outcome).
    last_job: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class RunDecision:
    status: dict[str, Any]  # the whole TrainingJob status as it should be; the handler writes the difference
    phase: Phase
    create_model_version: dict[str, Any] | None = None
    model_version_changes: tuple[lc.VersionChange, ...] = ()
    create_job: dict[str, Any] | None = None
    delete_job: str | None = None  # name of a Job to delete (after the status is written)
    events: tuple[Event, ...] = ()
    metrics: tuple[MetricChange, ...] = ()
    log: tuple[str, dict[str, Any]] | None = field(default=None, compare=False)

    @property
    def transitions(self) -> bool:
        """Does this decision do anything besides re-asserting the status it read?"""
        return acts(self.create_model_version, self.model_version_changes, self.create_job, self.delete_job,
                    self.events, metrics=self.metrics)


def _meta(view: RunView) -> Mapping[str, Any]:
    meta: Mapping[str, Any] = view.training_job["metadata"]
    return meta


def _status(view: RunView) -> dict[str, Any]:
    return dict(view.training_job.get("status") or {})


def _recorded_job(view: RunView) -> Mapping[str, Any] | None:
    """The Job whose outcome counts: the live one, else its last state when it was deleted (if ours)."""
    if view.job is not None:
        return view.job
    last = view.last_job
    owners = ((last or {}).get("metadata") or {}).get("ownerReferences") or []
    if last is not None and any(owner.get("uid") == _meta(view)["uid"] for owner in owners):
        return last
    return None


def manifest_to_read(view: RunView, config: OperatorConfig) -> str | None:
    """The manifest.json URI to read before deciding: when the Job succeeded and its termination message
    holds no usable result (truncated, logs fallback), or when the Job is gone before its outcome was
    recorded (its TTL, a deletion by hand) and nothing seen of it says it failed."""
    if lc.is_finished(lc.training_job_phase(_status(view).get("conditions"))):
        return None
    spec, _ = validate_training_job_spec(view.training_job.get("spec"))
    if spec is None:
        return None
    job = _recorded_job(view)
    result: TrainerResult | None = None
    if job is None:
        if view.job is not None or not _status(view).get("jobName"):
            return None
    else:
        verdict = interpret(
            dict(job),
            [dict(p) for p in view.pods],
            now=view.now,
            startup_timeout_seconds=spec.startup_timeout_seconds,
        )
        if verdict.state != RunState.SUCCEEDED and not (view.job is None and verdict.state not in (
                RunState.FAILED, RunState.STUCK)):
            return None
        result = verdict.trainer_result()
        if result is not None and result.metrics is not None and result.artifact is not None:
            return None
        if result is not None and result.manifest_uri:
            return result.manifest_uri
    meta = _meta(view)
    prefix = artifact_prefix(
        config.output_uri, meta["namespace"], spec.model_name, version_of(view.training_job)
    )
    return f"{prefix}/{MANIFEST_NAME}"


def _model_gone(view: RunView) -> bool:
    """Is the Model that owns this run (scheduled, alerted, ``kubectl clm train``) gone or being deleted?
    A run applied by hand before its Model exists has no such owner and waits to be adopted."""
    owners = [o for o in _meta(view).get("ownerReferences") or () if o.get("kind") == "Model"]
    if not owners:
        return False
    model = view.model
    if model is None:
        return True
    meta = model.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) or all(o.get("uid") != meta.get("uid") for o in owners)


def refused_fields(spec: TrainingJobSpec, config: OperatorConfig) -> list[str]:
    """What the operator's allow-lists (OperatorConfig; chart values ``policy``) refuse in a run, each
    naming its field; empty when the run may go ahead."""
    refused: list[str] = []
    prefixes = config.allowed_image_prefixes
    image = spec.image or config.trainer_image  # the operator's own image is always allowed
    if prefixes and image != config.trainer_image and not any(image.startswith(p) for p in prefixes):
        refused.append(f"spec.image {spec.image!r} is not allowed by the operator: it must start with one of "
                       f"{', '.join(prefixes)} (chart value policy.allowedImagePrefixes)")
    if spec.tolerations and not config.allow_run_tolerations:
        refused.append("spec.tolerations may not be set per run on this operator (chart value "
                       "policy.allowRunTolerations is false)")
    if spec.priority_class_name and not config.allow_run_priority_class:
        refused.append(f"spec.priorityClassName {spec.priority_class_name!r} may not be set per run on this "
                       "operator (chart value policy.allowRunPriorityClass is false)")
    return refused


def model_version_body(view: RunView, spec: TrainingJobSpec, version: str) -> dict[str, Any]:
    """The ModelVersion of this run: owned by its Model when the Model exists (never by the run)."""
    meta = _meta(view)
    labels = {
        key: value
        for key, value in labels_for(meta["name"], spec.model_name, version).items()
        if key in (LABEL_TRAINING_JOB, LABEL_MODEL, LABEL_VERSION)
        or key.endswith("part-of")
        or key.endswith("managed-by")
    }
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "ModelVersion",
        "metadata": {
            "name": model_version_name(spec.model_name, version),
            "namespace": meta["namespace"],
            "labels": labels,
        },
        "spec": {
            "modelName": spec.model_name,
            "version": version,
            "algorithm": str(spec.algorithm),
            "trainingJobRef": {"name": meta["name"], "uid": meta["uid"]},
        },
    }
    if view.model is not None:
        body["metadata"]["ownerReferences"] = [owner_reference(view.model, "Model")]
    return body


def _whole(view: RunView, patch: Mapping[str, Any]) -> tuple[dict[str, Any], Phase]:
    """The status after ``patch`` (None values leave a field as it was), phase and generation derived."""
    merged = {**_status(view), **{key: value for key, value in patch.items() if value is not None}}
    # A reconcile that decides was permitted: a Permitted=False left by a refused call is dropped.
    merged["conditions"] = remove_condition(merged.get("conditions"), CommonCondition.PERMITTED)
    phase = lc.training_job_phase(merged.get("conditions"))
    merged["phase"] = str(phase)
    generation = _meta(view).get("generation")
    merged["conditions"] = _with_ready(merged, phase, view.now, generation)
    if generation is not None:
        merged["observedGeneration"] = generation
    return merged, phase


def _with_ready(status: Mapping[str, Any], phase: Phase, now: datetime,
                generation: int | None) -> list[dict[str, Any]]:
    ready = lc.training_job_ready(phase, str(status.get("reason") or ""), str(status.get("message") or ""))
    return apply_changes(status.get("conditions"), [ready], now=now, observed_generation=generation)


def _labels(view: RunView, spec: TrainingJobSpec) -> dict[str, str]:
    return {"namespace": str(_meta(view)["namespace"]), "model": spec.model_name}


def decide(view: RunView, config: OperatorConfig) -> RunDecision:
    meta = _meta(view)
    status = _status(view)
    generation = meta.get("generation")
    phase = lc.training_job_phase(status.get("conditions"))
    if lc.is_finished(phase):
        abandoned = phase == Phase.FAILED and status.get("reason") in ABANDONED_REASONS
        # The operator may have stopped between marking the run failed and deleting its Job.
        delete = job_name_for(meta["name"]) if abandoned and view.job is not None else None
        if get_condition(status.get("conditions"), TJC.READY) is None:  # finished before Ready existed
            status["conditions"] = _with_ready(status, phase, view.now, generation)
        return RunDecision(status=status, phase=phase, delete_job=delete)

    spec, problems = validate_training_job_spec(view.training_job.get("spec"))
    if spec is None:
        message = summarize(problems)
        whole, new_phase = _whole(
            view, outcome.rejected(status, message, generation=generation, now=view.now)
        )
        model = str((view.training_job.get("spec") or {}).get("modelName") or "")
        return RunDecision(
            status=whole,
            phase=new_phase,
            events=(Event(Subject.TRAINING_JOB, WARNING, EventReason.INVALID_SPEC, message),),
            metrics=(
                MetricChange.of(
                    "clm_training_job_failures_total",
                    MetricOp.INC,
                    {"namespace": str(meta["namespace"]), "model": model, "reason": Reason.INVALID_SPEC},
                ),
            ),
            log=("invalid TrainingJob spec", {"problem": message}),
        )

    # Checked before the run's Job exists: a run started under an earlier policy is left to finish.
    refused = refused_fields(spec, config) if view.job is None and not status.get("jobName") else []
    if refused:
        message = "; ".join(refused)
        whole, new_phase = _whole(view, outcome.rejected(status, message, generation=generation, now=view.now,
                                                         reason=Reason.NOT_ALLOWED))
        return RunDecision(
            status=whole,
            phase=new_phase,
            events=(Event(Subject.TRAINING_JOB, WARNING, EventReason.NOT_ALLOWED, message),),
            metrics=(MetricChange.of("clm_training_job_failures_total", MetricOp.INC,
                                     {**_labels(view, spec), "reason": Reason.NOT_ALLOWED}),),
            log=("TrainingJob refused by the operator's allow-lists", {"problem": message}),
        )

    version = version_of(view.training_job)
    mv_name = model_version_name(spec.model_name, version)
    identity = {"version": version, "modelVersion": mv_name}
    not_started = view.job is None and not status.get("jobName")
    if _model_gone(view) and (view.model_version is None or not_started):
        # A run of a Model that is gone (or going) starts nothing: its version would be ownerless, outside
        # any retention, and the garbage collector deletes the run itself next.
        message = (f"Model {spec.model_name} that owns this run is deleted; no ModelVersion or Job is "
                   "created")
        whole, new_phase = _whole(view, {**outcome.failed(status, Reason.MODEL_DELETED, message,
                                                          generation=generation, now=view.now), **identity})
        return RunDecision(status=whole, phase=new_phase, events=(
            Event(Subject.TRAINING_JOB, WARNING, EventReason.TRAINING_FAILED,
                  f"{Reason.MODEL_DELETED}: {message}"),))
    create_mv: dict[str, Any] | None = None
    mv_status: Mapping[str, Any] = (view.model_version or {}).get("status") or {}
    start: tuple[lc.VersionChange, ...] = ()
    if view.model_version is None:
        create_mv = model_version_body(view, spec, version)
    if not mv_status.get("stage"):
        start = (lc.training_started(meta["name"]),)
        mv_status = lc.version_status(mv_status, start[0], generation=None, now=view.now)
    base = RunDecision(
        status=status, phase=phase, create_model_version=create_mv, model_version_changes=start
    )

    job_name = job_name_for(meta["name"])
    if view.job is None and status.get("jobName"):
        # The run's Job existed and is gone (its TTL, a deletion by hand, while the operator was away or
        # not): its outcome comes from its last state and its pods', else from manifest.json, the
        # durable copy of a success. Starting a second Job would train twice under one version.
        gone = _gone_job_outcome(view, spec, base, identity, mv_status)
        if gone is not None:
            return gone
        return _failed(
            view,
            spec,
            base,
            identity,
            Reason.JOB_DELETED,
            f"Job {job_name} was deleted before its result was recorded (no manifest.json either); "
            "create a new TrainingJob",
        )
    if view.job is None:
        job = build_job(dict(view.training_job), config)
        patch = outcome.in_progress(
            status,
            JobVerdict(RunState.PENDING),
            suspended=bool(job["spec"].get("suspend")),
            generation=generation,
            now=view.now,
        )
        whole, new_phase = _whole(view, {**patch, "jobName": job_name, **identity})
        created = Event(
            Subject.TRAINING_JOB,
            NORMAL,
            EventReason.TRAINING_JOB_CREATED,
            f"created Job {job_name} training {spec.algorithm} for ModelVersion {mv_name}",
        )
        return RunDecision(
            status=whole,
            phase=new_phase,
            create_model_version=create_mv,
            model_version_changes=start,
            create_job=job,
            events=(created,),
        )
    owners = (view.job.get("metadata") or {}).get("ownerReferences") or []
    if not any(owner.get("uid") == meta["uid"] for owner in owners):
        return _failed(
            view,
            spec,
            base,
            identity,
            Reason.JOB_NAME_TAKEN,
            f"a Job named {job_name} exists and does not belong to this TrainingJob; delete it or "
            "rename the TrainingJob",
        )

    verdict = interpret(
        dict(view.job),
        [dict(p) for p in view.pods],
        now=view.now,
        startup_timeout_seconds=spec.startup_timeout_seconds,
    )
    if verdict.state == RunState.SUCCEEDED:
        return _succeeded(view, spec, base, identity, mv_status, verdict.trainer_result())
    if verdict.state in (RunState.FAILED, RunState.STUCK):
        failed = _failed(view, spec, base, identity, verdict.run_reason, verdict.run_message)
        if verdict.state == RunState.STUCK:
            return replace(failed, delete_job=job_name)
        return failed
    patch = outcome.in_progress(
        status,
        verdict,
        suspended=bool((view.job.get("spec") or {}).get("suspend")),
        generation=generation,
        now=view.now,
    )
    whole, new_phase = _whole(view, {**patch, "jobName": job_name, **identity})
    return replace(base, status=whole, phase=new_phase)


def _gone_job_outcome(view: RunView, spec: TrainingJobSpec, base: RunDecision, identity: Mapping[str, str],
                      mv_status: Mapping[str, Any]) -> RunDecision | None:
    """The outcome of a run whose Job is gone, when what was seen of it (or manifest.json) tells it."""
    job = _recorded_job(view)
    if job is not None:
        verdict = interpret(dict(job), [dict(p) for p in view.pods], now=view.now,
                            startup_timeout_seconds=spec.startup_timeout_seconds)
        if verdict.state == RunState.FAILED:
            return _failed(view, spec, base, identity, verdict.run_reason, verdict.run_message)
        if verdict.state == RunState.SUCCEEDED:
            return _succeeded(view, spec, base, identity, mv_status, verdict.trainer_result(), job=job)
    result = view.manifest
    if result is not None and result.metrics is not None and result.artifact is not None:
        return _succeeded(view, spec, base, identity, mv_status, result, job=job)
    return None


def _failed(view: RunView, spec: TrainingJobSpec, base: RunDecision, identity: Mapping[str, str],
            reason: str, message: str) -> RunDecision:
    status = _status(view)
    patch = outcome.failed(status, reason, message, generation=_meta(view).get("generation"), now=view.now)
    whole, phase = _whole(view, {**patch, **identity})
    return replace(
        base,
        status=whole,
        phase=phase,
        model_version_changes=(*base.model_version_changes, outcome.training_failed(reason, message)),
        events=(
            Event(
                Subject.TRAINING_JOB, WARNING, EventReason.TRAINING_FAILED, f"{reason}: {message}"
            ),
        ),
        metrics=(
            MetricChange.of(
                "clm_training_job_failures_total", MetricOp.INC, {**_labels(view, spec), "reason": reason}
            ),
        ),
        log=("training failed", {"reason": reason, "detail": message}),
    )


def _succeeded(
    view: RunView,
    spec: TrainingJobSpec,
    base: RunDecision,
    identity: Mapping[str, str],
    mv_status: Mapping[str, Any],
    result: TrainerResult | None,
    *,
    job: Mapping[str, Any] | None = None,
) -> RunDecision:
    job = job if job is not None else view.job
    if result is None or result.metrics is None or result.artifact is None:
        result = view.manifest
    if result is None or result.metrics is None or result.artifact is None:
        return _failed(
            view,
            spec,
            base,
            identity,
            Reason.RESULT_MISSING,
            "the trainer exited 0 but neither its termination message nor manifest.json holds a "
            "result with metrics and an artifact",
        )
    metrics: BacktestMetrics = result.metrics
    evaluation = evaluate(metrics, spec.evaluation.criteria)
    change = outcome.trained_version(result, evaluation)
    stage = lc.version_status(mv_status, change, generation=None, now=view.now)["stage"]
    mv_name = identity["modelVersion"]
    failures = "; ".join(evaluation.failed_criteria)
    message = f"ModelVersion {mv_name} is {stage} (score {evaluation.score:.2f})" + (
        "" if evaluation.passed else "; failed: " + failures
    )
    status = _status(view)
    job_status = (job or {}).get("status") or {}
    started = status.get("startTime") or job_status.get("startTime")
    completion = job_status.get("completionTime") or format_timestamp(view.now)
    patch = outcome.succeeded(status, message, generation=_meta(view).get("generation"), now=view.now)
    whole, phase = _whole(
        view,
        {
            **patch,
            "metrics": outcome.metrics_summary(metrics, evaluation),
            "jobName": job["metadata"]["name"] if job is not None else job_name_for(_meta(view)["name"]),
            **identity,
            "startTime": started,
            "completionTime": completion,
        },
    )
    rows = result.dataset.rows if result.dataset else "?"
    events = (
        Event(
            Subject.MODEL_VERSION,
            NORMAL,
            EventReason.MODEL_TRAINED,
            f"trained {spec.algorithm} on {rows} bars: artifact {result.artifact.uri}",
        ),
        Event(
            Subject.MODEL_VERSION,
            NORMAL if evaluation.passed else WARNING,
            EventReason.MODEL_EVALUATED,
            f"{stage}: score {evaluation.score:.2f}" + ("" if evaluation.passed else "; failed " + failures),
        ),
        Event(Subject.TRAINING_JOB, NORMAL, EventReason.MODEL_TRAINED, message),
    )
    duration = result.duration_seconds
    if duration is None and started:
        duration = (parse_timestamp(completion) - parse_timestamp(started)).total_seconds()
    labels = _labels(view, spec)
    changes = [
        MetricChange.of(
            "clm_last_successful_training_timestamp_seconds", MetricOp.SET, labels, view.now.timestamp()
        ),
        MetricChange.of(
            "clm_promotion_score", MetricOp.SET, {**labels, "version": identity["version"]}, evaluation.score
        ),
    ]
    if duration is not None:
        changes.append(
            MetricChange.of(
                "clm_training_duration_seconds",
                MetricOp.OBSERVE,
                {"algorithm": str(spec.algorithm)},
                max(duration, 0.0),
            )
        )
    return replace(
        base,
        status=whole,
        phase=phase,
        model_version_changes=(*base.model_version_changes, change),
        events=events,
        metrics=tuple(changes),
        log=("training succeeded", {"model_version": mv_name, "stage": stage, "score": evaluation.score}),
    )
