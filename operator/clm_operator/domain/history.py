"""status.history of a Model: the bounded audit trail of production changes (who, when, from, to, why)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from clm_contract.model import HISTORY_LIMIT, HistoryEntry

from clm_operator.domain.policy import Transition


def entry_for(transition: Transition, time: datetime) -> HistoryEntry:
    return HistoryEntry.model_validate({
        "from": transition.from_version, "to": transition.to_version, "time": time,
        "reason": transition.reason, "by": transition.by,
    })


def append(history: Sequence[dict[str, Any]], entry: HistoryEntry,
           limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    """The wire history with ``entry`` appended, oldest entries dropped beyond ``limit``.

    Idempotent for a repeated reconcile: an entry equal to the last one (same from/to/reason) is not
    appended twice, so a crash between writing the history and the stages cannot duplicate it.
    """
    items = [dict(h) for h in history]
    wire = entry.to_wire()
    if items:
        last = items[-1]
        if all(last.get(k) == wire.get(k) for k in ("from", "to", "reason")):
            return items[-limit:] if limit > 0 else []
    items.append(wire)
    return items[-limit:] if limit > 0 else []


def past_productions(history: Sequence[dict[str, Any]]) -> frozenset[str]:
    """Every version that has served production according to the history (the rollback targets)."""
    return frozenset(str(h["to"]) for h in history if h.get("to"))


def pin_author(managed_fields: Sequence[dict[str, Any]] | None) -> str | None:
    """Who last set spec.productionVersion, from metadata.managedFields (e.g. "kubectl-patch",
    "argocd-controller"), for the history's ``by``; None when the API server does not track it."""
    latest: tuple[str, str] | None = None
    for entry in managed_fields or ():
        spec = ((entry.get("fieldsV1") or {}).get("f:spec") or {})
        if "f:productionVersion" not in spec or not entry.get("manager"):
            continue
        stamp = str(entry.get("time") or "")
        if latest is None or stamp >= latest[0]:
            latest = (stamp, str(entry["manager"]))
    return latest[1] if latest else None
