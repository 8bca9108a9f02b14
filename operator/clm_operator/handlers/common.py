"""What every handler shares: the API client, the configuration, per-object locks, Events.

runner.py fills ``RUNTIME`` before kopf starts; handlers read it through ``runtime()``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from clm_operator import API_VERSION
from clm_operator.domain.config import OperatorConfig
from clm_operator.k8s import Kube, KubeError
from clm_operator.observability.events import event_body

TRAINING_JOBS = "trainingjobs"
MODEL_VERSIONS = "modelversions"
MODELS = "models"

log = logging.getLogger("clm_operator.handlers")


@dataclass
class Runtime:
    kube: Kube | None = None
    config: OperatorConfig = field(default_factory=OperatorConfig)
    resync_seconds: float = 10.0
    webhook_port: int = 8443  # handlers/webhook.py serves the Alertmanager webhook here (0: off)
    locks: dict[tuple[str, str, str], asyncio.Lock] = field(default_factory=dict)


RUNTIME = Runtime()


def runtime() -> tuple[Kube, OperatorConfig]:
    if RUNTIME.kube is None:
        RUNTIME.kube = Kube()
    return RUNTIME.kube, RUNTIME.config


def lock_for(kind: str, namespace: str, name: str) -> asyncio.Lock:
    """One reconcile at a time per object: kopf runs handlers of different resources concurrently."""
    key = (kind, namespace, name)
    lock = RUNTIME.locks.get(key)
    if lock is None:
        lock = RUNTIME.locks[key] = asyncio.Lock()
    return lock


def with_type(obj: dict[str, Any], kind: str, api_version: str = API_VERSION) -> dict[str, Any]:
    obj.setdefault("apiVersion", api_version)
    obj.setdefault("kind", kind)
    return obj


async def emit(obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """Post an Event; a failure to post is logged, never fatal for the reconcile."""
    kube, _ = runtime()
    meta = obj.get("metadata", {})
    log.info("event %s on %s %s", reason, obj.get("kind"), meta.get("name"),
             extra={"event_reason": reason, "event_type": type_, "object": meta.get("name"),
                    "namespace": meta.get("namespace"), "kind": obj.get("kind"), "event_message": message})
    try:
        await kube.post_event(event_body(obj, type_, reason, message))
    except KubeError as error:
        log.warning("could not post event %s on %s: %s", reason, meta.get("name"), error)
