"""kopf wiring: which event runs which reconcile. ``register(config)`` (runner.py) installs the table.

Three reconciles, each read -> decide (domain/) -> apply once, each run in handlers/reconciler.py's
wrapper (lock per object, metrics, the error policy, kopf's per-object logger):

| event                                               | reconcile                                   |
|-----------------------------------------------------|---------------------------------------------|
| TrainingJob created / resumed after a restart        | TrainingJob (handlers/training_job.py)      |
| TrainingJob timer, every resync_seconds, unfinished  | TrainingJob (startup timeout, missed events)|
| TrainingJob: DELETED event                           | its ModelVersion (a Training one fails with |
|                                                      | TrainingJobDeleted); its metrics forgotten  |
| batch Job / Pod of a run: any event                  | TrainingJob that owns it (a DELETED one's   |
|                                                      | last state is remembered: common.Tombstones)|
| ModelVersion: any event                              | ModelVersion (handlers/model_version.py),   |
|                                                      | then its Model unless it is being cleaned up|
| Model: any event                                     | Model (handlers/model.py)                   |
| Model timer, every schedule_interval_seconds         | Model with its schedule and cleanup retries |
| operator startup / cleanup                           | the Alertmanager webhook (handlers/webhook) |

Importing this package registers nothing; ``register`` does, once, with the parsed configuration (the
timer intervals come from it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kopf
from clm_contract import GROUP, VERSION
from clm_contract.training_job_status import Phase

from clm_operator.domain.config import OperatorConfig
from clm_operator.domain.jobspec import LABEL_TRAINING_JOB, version_of
from clm_operator.domain.retention import ARTIFACT_FINALIZER
from clm_operator.domain.versioning import model_version_name
from clm_operator.handlers import common, model, model_version, training_job, webhook
from clm_operator.handlers.common import MODEL_VERSIONS, MODELS, TRAINING_JOBS
from clm_operator.handlers.reconciler import run
from clm_operator.k8s import Kube
from clm_operator.observability import metrics as m

# ---- the entry points: from a kopf cause to the reconcile it runs -------------------------------------

async def training_job_changed(name: str, namespace: str | None, retry: int, logger: kopf.Logger,
                               **_: Any) -> None:
    await run(training_job.RECONCILE, namespace or "", name, logger=logger, retry=retry)


def training_job_unfinished(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in (Phase.SUCCEEDED, Phase.FAILED)


async def training_job_event(body: kopf.Body, name: str, namespace: str | None, type: str | None,
                             **_: Any) -> None:
    """A deleted run: its ModelVersion, if still Training, must not wait for it for ever.

    The DELETED watch event (not ``kopf.on.delete``, which without a finalizer is never called for an
    object that is simply gone) carries the run's last state, whence its ModelVersion's name.
    """
    if type != "DELETED":
        return
    ns = namespace or ""
    m.forget_training_job(ns, name)
    common.current().tombstones.forget(ns, name)
    model_name = str((body.get("spec") or {}).get("modelName") or "")
    if model_name:
        version = model_version_name(model_name, version_of(body))
        await run(model_version.RECONCILE, ns, version)


async def run_object_event(body: kopf.Body, namespace: str | None, type: str | None, **_: Any) -> None:
    """A Job's or pod's event reconciles the TrainingJob that owns it; a DELETED one first remembers the
    object's last state (its outcome may be nowhere else: ttlSecondsAfterFinished 0)."""
    owner = training_job.owning_training_job(body)
    if not owner:
        return
    if type == "DELETED":
        common.current().tombstones.remember(namespace or "", owner, dict(body))
    await run(training_job.RECONCILE, namespace or "", owner)


async def model_version_event(body: kopf.Body, name: str, namespace: str | None, type: str | None,
                              logger: kopf.Logger, **_: Any) -> None:
    ns = namespace or ""
    if type == "DELETED":
        m.forget_model_version(ns, name)
        return
    await run(model_version.RECONCILE, ns, name, logger=logger)
    owner = str((body.get("spec") or {}).get("modelName") or "")
    meta = body.get("metadata") or {}
    if owner and not (meta.get("deletionTimestamp") and ARTIFACT_FINALIZER in (meta.get("finalizers") or [])):
        # (A version being cleaned up reconciles its Model with the event that releases it.)
        await run(model.RECONCILE, ns, owner)


async def model_event(name: str, namespace: str | None, type: str | None, logger: kopf.Logger,
                      **_: Any) -> None:
    if type == "DELETED":
        m.forget_model(namespace or "", name)
        return
    await run(model.RECONCILE, namespace or "", name, logger=logger)


async def model_tick(name: str, namespace: str | None, retry: int, logger: kopf.Logger, **_: Any) -> None:
    await run(model.RECONCILE_SCHEDULED, namespace or "", name, logger=logger, retry=retry)


# ---- the table ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One row of the table above: on ``cause`` of ``plural`` (group/version), call ``handler``."""

    cause: str  # create | resume | timer | event | delete | startup | cleanup
    handler: Callable[..., Any]
    plural: str = ""
    group: str = GROUP
    version: str = VERSION
    labels: dict[str, Any] | None = None


RUN_LABEL = {LABEL_TRAINING_JOB: kopf.PRESENT}

ROUTES: tuple[Route, ...] = (
    Route("create", training_job_changed, TRAINING_JOBS),
    Route("resume", training_job_changed, TRAINING_JOBS),
    Route("timer", training_job_changed, TRAINING_JOBS),
    Route("event", training_job_event, TRAINING_JOBS),
    Route("event", run_object_event, "jobs", group="batch", version="v1", labels=RUN_LABEL),
    Route("event", run_object_event, "pods", group="", version="v1", labels=RUN_LABEL),
    Route("event", model_version_event, MODEL_VERSIONS),
    Route("event", model_event, MODELS),
    Route("timer", model_tick, MODELS),
    Route("startup", webhook.start_webhook),
    Route("cleanup", webhook.stop_webhook),
)


def register(config: OperatorConfig, *, kube: Kube | None = None, webhook_port_flag: int | None = None,
             registry: kopf.OperatorRegistry | None = None,
             kopf_settings: kopf.OperatorSettings | None = None) -> kopf.OperatorRegistry:
    """Install the runtime and register every route with kopf (its default registry unless given)."""
    common.install(config, kube=kube, webhook_port_flag=webhook_port_flag, kopf_settings=kopf_settings)
    target = registry or kopf.get_default_registry()
    for route in ROUTES:
        _register(route, config, target)
    return target


def _register(route: Route, config: OperatorConfig, registry: kopf.OperatorRegistry) -> None:
    handler_id = f"{route.plural or 'operator'}.{route.cause}.{route.handler.__name__}"
    on: dict[str, Any] = {"id": handler_id, "registry": registry}
    where: dict[str, Any] = {"group": route.group, "version": route.version, "plural": route.plural, **on}
    decorator: Callable[[Callable[..., Any]], Any]
    if route.cause == "create":
        decorator = kopf.on.create(**where)
    elif route.cause == "resume":
        decorator = kopf.on.resume(**where)
    elif route.cause == "delete":
        decorator = kopf.on.delete(**where, optional=True)
    elif route.cause == "event":
        decorator = kopf.on.event(**where, labels=route.labels)
    elif route.cause == "timer" and route.plural == TRAINING_JOBS:
        interval = config.resync_seconds
        decorator = kopf.timer(**where, interval=interval, initial_delay=interval / 2,
                               when=training_job_unfinished)
    elif route.cause == "timer":
        decorator = kopf.timer(**where, interval=config.schedule_interval_seconds, initial_delay=0.5)
    elif route.cause == "startup":
        decorator = kopf.on.startup(**on)
    elif route.cause == "cleanup":
        decorator = kopf.on.cleanup(**on)
    else:
        raise ValueError(f"unknown cause {route.cause!r} in handlers.ROUTES")
    decorator(route.handler)
