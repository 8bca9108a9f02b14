"""What every handler shares: the API client, the configuration, per-object locks, Events, loggers.

runner.py parses the configuration once and calls ``handlers.register(config)``, which fills ``RUNTIME``
before kopf starts; handlers read it through ``runtime()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from clm_contract import API_VERSION

from clm_operator.clock import now
from clm_operator.domain.conditions import ConditionChange, apply_changes
from clm_operator.domain.config import OperatorConfig
from clm_operator.domain.effects import Event
from clm_operator.k8s import Kube, KubeError, custom_path
from clm_operator.observability.events import event_body

TRAINING_JOBS = "trainingjobs"
MODEL_VERSIONS = "modelversions"
MODELS = "models"

Logger = logging.Logger | logging.LoggerAdapter[Any]
# Our logs are not Kubernetes Events: the reconciles post their own (domain.effects), kopf must not.
NO_EVENT = {"k8s_skip": True}

log = logging.getLogger("clm_operator.handlers")


@dataclass
class Runtime:
    config: OperatorConfig
    kube: Kube | None = None
    webhook_port_flag: int | None = None  # ``clm-operator run --webhook-port``
    kopf_settings: kopf.OperatorSettings = field(default_factory=kopf.OperatorSettings)
    locks: dict[tuple[str, str, str], asyncio.Lock] = field(default_factory=dict)
    tombstones: Tombstones = field(default_factory=lambda: Tombstones())


TOMBSTONE_LIMIT = 1000  # runs whose deleted Job/pods are remembered at once (oldest forgotten first)


@dataclass
class Tombstones:
    """The last state of a run's deleted Job and pods, from their DELETED watch events.

    A Job removed by ``ttlSecondsAfterFinished: 0`` can be gone before any reconcile read its outcome; its
    last state (and its pods', with the trainer's termination message) is what the TrainingJob reconcile
    decides from then (domain.run.RunView.last_job). Kept in memory only, until the run is finished; after
    a restart manifest.json is the fallback.
    """

    runs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def remember(self, namespace: str, run: str, body: Mapping[str, Any]) -> None:
        entry = self.runs.pop((namespace, run), None) or {"job": None, "pods": {}}
        if body.get("kind") == "Job":
            entry["job"] = dict(body)
        else:
            entry["pods"][str((body.get("metadata") or {}).get("name"))] = dict(body)
        self.runs[(namespace, run)] = entry
        while len(self.runs) > TOMBSTONE_LIMIT:
            self.runs.pop(next(iter(self.runs)))

    def job(self, namespace: str, run: str) -> dict[str, Any] | None:
        entry = self.runs.get((namespace, run))
        return entry["job"] if entry else None

    def pods(self, namespace: str, run: str) -> list[dict[str, Any]]:
        entry = self.runs.get((namespace, run))
        return list(entry["pods"].values()) if entry else []

    def forget(self, namespace: str, run: str) -> None:
        self.runs.pop((namespace, run), None)


RUNTIME: Runtime | None = None


def install(config: OperatorConfig, *, kube: Kube | None = None, webhook_port_flag: int | None = None,
            kopf_settings: kopf.OperatorSettings | None = None) -> Runtime:
    global RUNTIME
    RUNTIME = Runtime(config=config, kube=kube, webhook_port_flag=webhook_port_flag,
                      kopf_settings=kopf_settings or kopf.OperatorSettings())
    return RUNTIME


def current() -> Runtime:
    if RUNTIME is None:
        raise RuntimeError("the handlers run only after handlers.register(config) (runner.py calls it)")
    return RUNTIME


def runtime() -> tuple[Kube, OperatorConfig]:
    state = current()
    if state.kube is None:
        state.kube = Kube()
    return state.kube, state.config


def lock_for(kind: str, namespace: str, name: str) -> asyncio.Lock:
    """One reconcile at a time per object: kopf runs handlers of different resources concurrently."""
    locks = current().locks
    key = (kind, namespace, name)
    lock = locks.get(key)
    if lock is None:
        lock = locks[key] = asyncio.Lock()
    return lock


def object_logger(kind: str, namespace: str, name: str) -> Logger:
    """kopf's per-object logger for an object we reconcile because of another one's event (a Job's)."""
    body: kopf.RawBody = {"apiVersion": API_VERSION, "kind": kind,
                          "metadata": {"namespace": namespace, "name": name}}
    return kopf.ObjectLogger(body=kopf.Body(body), settings=current().kopf_settings)


def with_type(obj: dict[str, Any], kind: str, api_version: str = API_VERSION) -> dict[str, Any]:
    obj.setdefault("apiVersion", api_version)
    obj.setdefault("kind", kind)
    return obj


async def read(kube: Kube, plural: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The object as the API server has it now (apiVersion and kind filled in), or None when it is gone."""
    found = await kube.get(custom_path(plural, namespace, name))
    return with_type(found, kind) if found is not None else None


async def write_status(kube: Kube, plural: str, obj: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    """Merge-patch a TrainingJob's or Model's status with the fields that differ from what was read.

    Each reconcile calls this once per pass with the status its decision computed (ModelVersions are
    written only by handlers/model_version.py)."""
    old = obj.get("status") or {}
    patch = {key: value for key, value in status.items() if old.get(key) != value}
    if patch:
        meta = obj["metadata"]
        await kube.merge_patch(custom_path(plural, meta["namespace"], meta["name"], subresource="status"),
                               {"status": patch})


async def record_condition(kube: Kube, plural: str, namespace: str, name: str,
                           condition: ConditionChange) -> None:
    """Set one condition on a TrainingJob or Model (the Permitted=False of a refused call)."""
    found = await kube.get(custom_path(plural, namespace, name))
    if found is None:
        return
    status = found.get("status") or {}
    conditions = apply_changes(status.get("conditions"), [condition], now=now(),
                               observed_generation=found["metadata"].get("generation"))
    await write_status(kube, plural, found, {**status, "conditions": conditions})


async def emit(obj: Mapping[str, Any], event: Event, logger: Logger | None = None) -> None:
    """Post an Event; a failure to post is logged, never fatal for the reconcile."""
    kube, _ = runtime()
    meta = obj.get("metadata", {})
    (logger or log).info(f"event {event.reason}: {event.message}",
                         extra={**NO_EVENT, "event_reason": event.reason, "event_type": event.type,
                                "kind": obj.get("kind")})
    try:
        await kube.post_event(event_body(dict(obj), event.type, event.reason, event.message))
    except KubeError as error:
        (logger or log).warning(f"could not post event {event.reason} on {meta.get('name')}: {error}",
                                extra=NO_EVENT)
