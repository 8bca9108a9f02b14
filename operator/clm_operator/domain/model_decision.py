"""One pass over a Model decided purely: its status, its versions' stages, its schedule, its retention.

The Model reconcile (handlers/model.py) reads the Model, its ModelVersions and its TrainingJobs into a
``ModelView``, calls ``decide`` and applies the ``ModelDecision`` once: the Model's status in one write
(with the history entry), then the versions' stage changes through their owner module (old production
retired before the new one is promoted: never two at any instant), finalizers, pruning, the scheduled run.
It composes the pure rules of domain/policy.py (production), domain/schedule.py (when to run) and
domain/retention.py (what to prune). Events and counters come from the transition decided here, so
deciding again on the written state decides nothing (tests/unit/test_model_decision.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from clm_contract.conditions import CommonCondition, ModelCondition, Reason
from clm_contract.model import ALLOW_FAILED_PROMOTION_ANNOTATION, HISTORY_LIMIT, ArtifactDeletionPolicy
from clm_contract.model_version import Stage

from clm_operator.domain import effects as fx
from clm_operator.domain import history as history_domain
from clm_operator.domain import lifecycle as lc
from clm_operator.domain import policy as policy_domain
from clm_operator.domain import schedule as schedule_domain
from clm_operator.domain.conditions import (
    FALSE,
    TRUE,
    ConditionChange,
    apply_changes,
    get_condition,
    remove_condition,
)
from clm_operator.domain.effects import Event, MetricChange, MetricOp
from clm_operator.domain.retention import (
    ALLOW_DELETE_PRODUCTION_ANNOTATION,
    ARTIFACT_FINALIZER,
    PRODUCTION_GUARD_FINALIZER,
    versions_to_delete,
)
from clm_operator.domain.validation import model_problems, summarize
from clm_operator.domain.versioning import format_timestamp, parse_timestamp


@dataclass(frozen=True)
class ModelView:
    """What the reconcile read; never changed by ``decide``."""

    model: Mapping[str, Any]
    versions: tuple[Mapping[str, Any], ...]  # every ModelVersion of the Model, deleting ones included
    runs: tuple[Mapping[str, Any], ...]  # every TrainingJob of the Model
    now: datetime
    scheduled: bool = False  # the schedule timer's pass: runs the schedule and retries failed cleanups


@dataclass(frozen=True)
class ModelDecision:
    status: dict[str, Any]  # the whole Model status as it should be; the handler writes the difference
    accepted: bool
    production: str | None = None
    version_changes: tuple[tuple[str, lc.VersionChange], ...] = ()  # in write order
    adopt: tuple[str, ...] = ()  # ModelVersions to own (created before their Model existed)
    finalizers: tuple[tuple[str, bool], ...] = ()  # (ModelVersion, finalizer wanted) where it must change
    delete_versions: tuple[tuple[str, str], ...] = ()  # (ModelVersion, why)
    retry_cleanups: tuple[str, ...] = ()  # deleting ModelVersions whose artifact cleanup is still due
    delete_runs: tuple[str, ...] = ()  # concurrencyPolicy Replace: runs to delete before creating
    create_runs: tuple[dict[str, Any], ...] = ()
    events: tuple[Event, ...] = ()
    metrics: tuple[MetricChange, ...] = ()
    # The Model's own finalizers as they should be (like ``status``: the handler writes the difference).
    model_finalizers: tuple[str, ...] | None = None
    deleting: bool = False  # the Model is being deleted: only finalizers (its versions', then its own)

    @property
    def transitions(self) -> bool:
        """Does this decision do anything besides re-asserting the status it read?"""
        return fx.acts(self.version_changes, self.adopt, self.finalizers, self.delete_versions,
                       self.retry_cleanups, self.delete_runs, self.create_runs, self.events,
                       metrics=self.metrics)


def version_view(mv: Mapping[str, Any]) -> policy_domain.VersionView:
    status = mv.get("status") or {}
    evaluation = status.get("evaluation") or {}
    score = evaluation.get("score")
    passed = evaluation.get("passed")
    return policy_domain.VersionView(
        name=mv["metadata"]["name"],
        version=str((mv.get("spec") or {}).get("version") or mv["metadata"]["name"]),
        stage=str(lc.model_version_stage(status.get("conditions"))),
        score=float(score) if isinstance(score, int | float) else None,
        passed=passed if isinstance(passed, bool) else None,
    )


def run_phase(run: Mapping[str, Any]) -> str:
    """A TrainingJob's phase from its conditions (its status.phase before it has any)."""
    status = run.get("status") or {}
    if status.get("conditions"):
        return str(lc.training_job_phase(status["conditions"]))
    return str(status.get("phase") or "Pending")


def _deleting(obj: Mapping[str, Any]) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


def _deletes_artifacts(spec: Mapping[str, Any]) -> bool:
    policy = (spec.get("retention") or {}).get("artifactDeletionPolicy", "Retain")
    return bool(policy == ArtifactDeletionPolicy.DELETE)


def _model_finalizers(meta: Mapping[str, Any], wanted: bool) -> tuple[str, ...]:
    kept = tuple(f for f in meta.get("finalizers") or () if f != PRODUCTION_GUARD_FINALIZER)
    return (*kept, PRODUCTION_GUARD_FINALIZER) if wanted else kept


def _decide_deletion(view: ModelView) -> ModelDecision:
    """A Model being deleted. Under artifactDeletionPolicy Delete, while a version serves Production, the
    deletion waits (its guard finalizer stays; DeletionBlocked=True and one Warning Event say how to
    proceed): the garbage collector would delete the versions and their artifacts, the serving one
    included. Otherwise the versions' artifact finalizers are made to follow the policy (Retain set while
    deleting keeps the artifacts) and the guard is released.

    The guard covers the default background deletion; ``kubectl delete --cascade=foreground`` deletes the
    versions before their Model and is not stopped by it.
    """
    model = view.model
    meta, spec = model["metadata"], model.get("spec") or {}
    status: dict[str, Any] = dict(model.get("status") or {})
    live = [mv for mv in view.versions if not _deleting(mv)]
    serving = sorted(v.version for v in map(version_view, live) if v.stage == Stage.PRODUCTION)
    override = (meta.get("annotations") or {}).get(ALLOW_DELETE_PRODUCTION_ANNOTATION) == "true"
    previous = get_condition(status.get("conditions"), ModelCondition.DELETION_BLOCKED)
    if _deletes_artifacts(spec) and serving and not override:
        message = (f"version {', '.join(serving)} serves production and "
                   "spec.retention.artifactDeletionPolicy is Delete: deleting this Model would delete its "
                   "artifact. Set artifactDeletionPolicy to "
                   f"Retain (keeps the artifacts) or annotate the Model {ALLOW_DELETE_PRODUCTION_ANNOTATION}="
                   "\"true\" to delete anyway")
        change = ConditionChange(ModelCondition.DELETION_BLOCKED, TRUE, Reason.PRODUCTION_ARTIFACT_PROTECTED,
                                 message)
        conditions = apply_changes(status.get("conditions"), [change], now=view.now,
                                   observed_generation=meta.get("generation"))
        fresh = previous is None or previous.get("status") != TRUE or previous.get("message") != message
        warning = Event(fx.Subject.MODEL, fx.WARNING, Reason.PRODUCTION_ARTIFACT_PROTECTED, message)
        events = (warning,) if fresh else ()
        return ModelDecision(status={**status, "conditions": conditions}, accepted=False, events=events,
                             model_finalizers=tuple(meta.get("finalizers") or ()), deleting=True)
    conditions = remove_condition(status.get("conditions"), ModelCondition.DELETION_BLOCKED)
    return ModelDecision(status={**status, "conditions": conditions}, accepted=False,
                         finalizers=_finalizers(spec, live), model_finalizers=_model_finalizers(meta, False),
                         deleting=True)


def decide(view: ModelView) -> ModelDecision:
    model = view.model
    meta, spec = model["metadata"], model.get("spec") or {}
    status: dict[str, Any] = dict(model.get("status") or {})
    generation = meta.get("generation")
    if _deleting(model):
        return _decide_deletion(view)
    problems = model_problems(dict(model))
    old_accepted = get_condition(status.get("conditions"), ModelCondition.ACCEPTED)
    if problems:
        # An invalid Model is left alone (no runs, no promotions) until it is fixed.
        message = summarize(problems)
        conditions = apply_changes(
            status.get("conditions"),
            [
                ConditionChange(ModelCondition.ACCEPTED, FALSE, Reason.INVALID_SPEC, message),
                # kstatus: an invalid Model is not Ready either, whatever it served before.
                ConditionChange(ModelCondition.READY, FALSE, Reason.INVALID_SPEC,
                                f"the spec is not accepted: {message}"),
            ],
            now=view.now,
            observed_generation=generation,
        )
        fresh = (
            old_accepted is None
            or old_accepted.get("message") != message
            or old_accepted.get("status") != FALSE
        )
        invalid = (
            (Event(fx.Subject.MODEL, fx.WARNING, fx.EventReason.INVALID_SPEC, message),) if fresh else ()
        )
        return ModelDecision(status={**status, "conditions": conditions}, accepted=False, events=invalid,
                             model_finalizers=_model_finalizers(meta, _deletes_artifacts(spec)))

    changes = [ConditionChange(ModelCondition.ACCEPTED, TRUE, Reason.VALID, "the spec is valid")]
    live = [mv for mv in view.versions if not _deleting(mv)]
    retry = tuple(
        mv["metadata"]["name"]
        for mv in view.versions
        if view.scheduled and _deleting(mv) and ARTIFACT_FINALIZER in (mv["metadata"].get("finalizers") or [])
    )
    adopt = tuple(mv["metadata"]["name"] for mv in live if not mv["metadata"].get("ownerReferences"))

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
    decision = policy_domain.decide(state, [version_view(mv) for mv in live])
    author = history_domain.pin_author(meta.get("managedFields"))
    if decision.transition is not None and author and decision.transition.by == "spec.productionVersion":
        decision.transition = replace(decision.transition, by=f"spec.productionVersion ({author})")

    new: dict[str, Any] = dict(status)
    events: list[Event] = []
    metrics: list[MetricChange] = []
    labels = {"namespace": str(meta["namespace"]), "model": str(meta["name"])}
    if decision.transition is not None:
        t = decision.transition
        entry = history_domain.entry_for(t, view.now.replace(microsecond=0))
        new["history"] = history_domain.append(history, entry, HISTORY_LIMIT)
        metrics.append(MetricChange.of("clm_promotions_total", MetricOp.INC, labels))
        if t.rollback:
            metrics.append(MetricChange.of("clm_rollbacks_total", MetricOp.INC, labels))
            events.append(
                Event(
                    fx.Subject.MODEL,
                    fx.NORMAL,
                    fx.EventReason.MODEL_ROLLED_BACK,
                    f"production rolled back from {t.from_version} to {t.to_version} (by {t.by})",
                )
            )
        else:
            events.append(
                Event(
                    fx.Subject.MODEL,
                    fx.NORMAL,
                    fx.EventReason.MODEL_PROMOTED,
                    f"{t.to_version} promoted to production, replacing {t.from_version or 'nothing'} "
                    f"({t.reason}, by {t.by})",
                )
            )
    for change in decision.conditions:
        if change.type == ModelCondition.PIN_ACCEPTED and change.status == FALSE:
            previous = get_condition(status.get("conditions"), change.type)
            if previous is None or previous.get("reason") != change.reason:
                events.append(Event(fx.Subject.MODEL, fx.WARNING, change.reason, change.message))
    changes += decision.conditions

    runs = [run for run in view.runs]
    create: tuple[dict[str, Any], ...] = ()
    delete_runs: tuple[str, ...] = ()
    if view.scheduled:
        scheduled = _schedule(view, runs, new, metrics, events)
        if scheduled is not None:
            condition, create, delete_runs = scheduled
            changes.append(condition)

    active = {run["metadata"]["name"] for run in runs if not lc.is_finished(run_phase(run))}
    active = (active - set(delete_runs)) | {run["metadata"]["name"] for run in create}
    new.update(
        {
            "productionVersion": decision.production,
            "previousProductionVersion": decision.previous_production,
            "candidateVersion": decision.candidate,
            "shadowVersion": decision.shadow,
            "activeTrainingJobs": sorted(active),
            "observedGeneration": generation,
        }
    )
    conditions = apply_changes(
        status.get("conditions"), changes, now=view.now, observed_generation=generation
    )
    if pin is None:
        conditions = remove_condition(conditions, ModelCondition.PIN_ACCEPTED)
    # A pass that decides was permitted: a Permitted=False left by a refused call is dropped.
    conditions = remove_condition(conditions, CommonCondition.PERMITTED)
    new["conditions"] = conditions

    return ModelDecision(
        status=new,
        accepted=True,
        production=decision.production,
        version_changes=_stage_changes(decision),
        adopt=adopt,
        finalizers=_finalizers(spec, live),
        delete_versions=_prune(spec, live, decision),
        retry_cleanups=retry,
        delete_runs=delete_runs,
        create_runs=create,
        events=tuple(events),
        metrics=tuple(metrics),
        model_finalizers=_model_finalizers(meta, _deletes_artifacts(spec)),
    )


def _stage_changes(decision: policy_domain.Decision) -> tuple[tuple[str, lc.VersionChange], ...]:
    transition = decision.transition
    by = transition.by if transition else "clm-operator"
    # Retire / demote first, promote last: never two Production versions at any instant.
    order = sorted(decision.stages.items(), key=lambda item: item[1] == Stage.PRODUCTION)
    result: list[tuple[str, lc.VersionChange]] = []
    for name, stage in order:
        if stage == Stage.PRODUCTION:
            reason = transition.reason if transition else Reason.PROMOTED
            message = f"serves production (model status.productionVersion {decision.production})"
        elif stage == Stage.RETIRED:
            reason, message = Reason.REPLACED, f"replaced in production by {decision.production or 'nothing'}"
        elif stage == Stage.SHADOW:
            reason, message = Reason.SHADOW_SELECTED, "best passing version: runs in shadow beside production"
        else:
            reason, message = Reason.DEMOTED, "no longer the shadow version"
        result.append((name, lc.move_to(stage, reason, message, by=by)))
    return tuple(result)


def _finalizers(spec: Mapping[str, Any], live: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, bool], ...]:
    """Under artifactDeletionPolicy Delete every version carries the cleanup finalizer; under Retain none."""
    wanted = _deletes_artifacts(spec)
    return tuple(
        (mv["metadata"]["name"], wanted)
        for mv in live
        if (ARTIFACT_FINALIZER in (mv["metadata"].get("finalizers") or [])) != wanted
    )


def _prune(
    spec: Mapping[str, Any], live: Sequence[Mapping[str, Any]], decision: policy_domain.Decision
) -> tuple[tuple[str, str], ...]:
    keep = int((spec.get("retention") or {}).get("keepVersions", 10))
    # Stages decided in this pass count: a version retired now is prunable now.
    views = [replace(v, stage=str(decision.stages.get(v.name, v.stage))) for v in map(version_view, live)]
    protected = [decision.production, decision.previous_production, spec.get("productionVersion")]
    return tuple(
        (v.name, f"retention keeps {keep} retired/failed versions")
        for v in versions_to_delete(views, keep, protected)
    )


def _schedule(
    view: ModelView,
    runs: Sequence[Mapping[str, Any]],
    new: dict[str, Any],
    metrics: list[MetricChange],
    events: list[Event],
) -> tuple[ConditionChange, tuple[dict[str, Any], ...], tuple[str, ...]] | None:
    """The schedule's part: fills lastScheduleTime / nextScheduleTime into ``new``; (Scheduled condition,
    runs to create, runs to delete first), or None when there is nothing to say."""
    model = view.model
    meta, spec, status = model["metadata"], model.get("spec") or {}, model.get("status") or {}
    labels = {"namespace": str(meta["namespace"]), "model": str(meta["name"])}
    active = tuple(
        sorted(
            run["metadata"]["name"]
            for run in runs
            if (run["metadata"].get("labels") or {}).get(schedule_domain.TRIGGER_LABEL) == "periodic"
            and not _deleting(run)
            and not lc.is_finished(run_phase(run))
        )
    )
    last = status.get("lastScheduleTime")
    decision = schedule_domain.decide(
        schedule_domain.ScheduleInput(
            schedule=spec.get("schedule"),
            algorithm=str((spec.get("template") or {}).get("algorithm", "")),
            suspend=bool(spec.get("suspend")),
            concurrency_policy=str(spec.get("concurrencyPolicy") or "Forbid"),
            starting_deadline_seconds=spec.get("startingDeadlineSeconds"),
            last_schedule_time=parse_timestamp(last) if last else None,
            creation_time=parse_timestamp(meta["creationTimestamp"]),
            active_runs=active,
        ),
        view.now,
    )
    if decision.next_time is not None:
        new["nextScheduleTime"] = format_timestamp(decision.next_time)
        metrics.append(
            MetricChange.of(
                "clm_model_next_schedule_timestamp_seconds",
                MetricOp.SET,
                labels,
                decision.next_time.timestamp(),
            )
        )
    else:
        new["nextScheduleTime"] = None
        metrics.append(MetricChange.of("clm_model_next_schedule_timestamp_seconds", MetricOp.REMOVE, labels))
    action = decision.action
    if action == schedule_domain.Action.CREATE and decision.scheduled_time is not None:
        name = schedule_domain.scheduled_run_name(str(meta["name"]), decision.scheduled_time)
        when = format_timestamp(decision.scheduled_time)
        prior = schedule_domain.trained_versions([run_phase(run) for run in runs])
        body = schedule_domain.training_job_for(
            dict(model),
            name,
            "periodic",
            "schedule",
            note=f"scheduled for {when}",
            scheduled_time=decision.scheduled_time,
            prior_trials=prior,
        )
        new["lastScheduleTime"] = when
        events.append(
            Event(
                fx.Subject.MODEL,
                fx.NORMAL,
                fx.EventReason.TRAINING_JOB_CREATED,
                f"scheduled run {name} for {when}",
            )
        )
        return (
            ConditionChange(ModelCondition.SCHEDULED, TRUE, Reason.RUN_CREATED, f"created {name}"),
            (body,),
            decision.delete_active,
        )
    if action == schedule_domain.Action.MISSED_DEADLINE:
        return (
            ConditionChange(
                ModelCondition.SCHEDULED, FALSE, Reason.MISSED_STARTING_DEADLINE, decision.message
            ),
            (),
            (),
        )
    if action == schedule_domain.Action.FORBIDDEN:
        return (
            ConditionChange(ModelCondition.SCHEDULED, FALSE, Reason.SKIPPED_CONCURRENT, decision.message),
            (),
            (),
        )
    if action == schedule_domain.Action.SUSPENDED:
        return ConditionChange(ModelCondition.SCHEDULED, FALSE, Reason.SUSPENDED, decision.message), (), ()
    if decision.next_time is None:
        return None
    current = get_condition(status.get("conditions"), ModelCondition.SCHEDULED)
    if (
        current is not None
        and current.get("reason") == Reason.RUN_CREATED
        and status.get("nextScheduleTime") == new["nextScheduleTime"]
    ):
        # The run of lastScheduleTime was created and nothing is due before the next time: the condition
        # keeps saying so (a fixed point: deciding again changes nothing).
        return None
    return (
        ConditionChange(
            ModelCondition.SCHEDULED,
            TRUE,
            Reason.WAITING,
            f"next run at {format_timestamp(decision.next_time)}",
        ),
        (),
        (),
    )
