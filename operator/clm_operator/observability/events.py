"""Kubernetes Events on our resources (the reasons are domain.effects.EventReason).

Event names are derived from the object, the reason and the message, so an operator that repeats a
reconcile after a restart re-posts the same Event name and the API server's 409 deduplicates it.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from clm_operator.clock import now
from clm_operator.domain.versioning import format_timestamp

COMPONENT = "clm-operator"
_MESSAGE_LIMIT = 1024

log = logging.getLogger(__name__)


def event_body(obj: dict[str, Any], type_: str, reason: str, message: str) -> dict[str, Any]:
    """A core/v1 Event about ``obj`` (a resource dict with apiVersion, kind and metadata)."""
    meta = obj["metadata"]
    message = message if len(message) <= _MESSAGE_LIMIT else message[: _MESSAGE_LIMIT - 3] + "..."
    digest = hashlib.sha256(f"{meta.get('uid', '')}/{reason}/{message}".encode()).hexdigest()[:16]
    stamp = format_timestamp(now())
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name'][:200]}.{digest}", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta.get("uid"),
                           "resourceVersion": meta.get("resourceVersion")},
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
