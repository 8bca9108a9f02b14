"""The one wrapper every reconcile runs in: lock, metrics, error policy, a logger bound to the object.

Error policy (the only one in the operator):
- 409 Conflict: someone wrote in between; ``kopf.TemporaryError`` with a short delay (retry soon).
- 403 Forbidden: the operator's RBAC lacks a permission. Never a crash and never a silent retry loop:
  a ``Permitted=False`` condition on the object names the call that was refused, the error is counted in
  ``clm_reconcile_errors_total{reason="Forbidden"}``, and the next trigger tries again.
- A bad spec is not an error: the decision turns it into a condition (``Accepted=False``).
- Anything else: ``kopf.TemporaryError`` with a backoff that doubles per retry (1 s ... 60 s). kopf retries
  create/resume and timer handlers itself; an event handler's error is logged by kopf and the resync
  timer of the object (or its next event) runs the reconcile again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import kopf
from clm_contract.conditions import CommonCondition, Reason

from clm_operator.domain.conditions import FALSE, ConditionChange
from clm_operator.domain.config import OperatorConfig
from clm_operator.handlers.common import NO_EVENT, Logger, lock_for, object_logger, runtime
from clm_operator.k8s import Kube, KubeError
from clm_operator.observability import metrics as m

CONFLICT_DELAY_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0


@dataclass(frozen=True)
class Context:
    kind: str
    namespace: str
    name: str
    kube: Kube
    config: OperatorConfig
    logger: Logger


Reconcile = Callable[[Context], Awaitable[None]]
# Writes the Permitted=False condition on the object (each kind's status has one writer).
ReportForbidden = Callable[[Context, ConditionChange], Awaitable[None]]


@dataclass(frozen=True)
class Target:
    """One reconcile: its kind, the function, and how it records a refused call on its object."""

    kind: str
    reconcile: Reconcile
    report_forbidden: ReportForbidden | None = None


def backoff(retry: int) -> float:
    return min(MAX_BACKOFF_SECONDS, float(2 ** min(retry, 6)))


def forbidden_condition(error: KubeError) -> ConditionChange:
    """Permitted=False naming the refused call and where the permission is granted."""
    return ConditionChange(
        CommonCondition.PERMITTED,
        FALSE,
        Reason.FORBIDDEN,
        f"the operator may not {error.method or 'call'} {error.path or 'the API'}: {error.message}; "
        "grant it in the operator's Role/ClusterRole (charts/clm-operator/templates/rbac.yaml)",
    )


async def run(target: Target, namespace: str, name: str, *, logger: Logger | None = None,
              retry: int = 0) -> None:
    """Run ``target`` for one object under its lock, with the error policy above."""
    kind = target.kind
    kube, config = runtime()
    ctx = Context(kind, namespace, name, kube, config, logger or object_logger(kind, namespace, name))
    async with lock_for(kind, namespace, name):
        try:
            with m.reconcile(kind, count_error=retry == 0):
                await target.reconcile(ctx)
        except KubeError as error:
            if error.status == 403:
                ctx.logger.error(f"forbidden: {error}", extra=NO_EVENT)
                if target.report_forbidden is not None:
                    await _report(ctx, target.report_forbidden, forbidden_condition(error))
                return
            if error.status == 409:
                raise kopf.TemporaryError(f"conflict, retrying: {error}",
                                          delay=CONFLICT_DELAY_SECONDS) from None
            raise kopf.TemporaryError(f"API error, retrying: {error}", delay=backoff(retry)) from None
        except kopf.TemporaryError:
            raise
        except Exception as error:
            ctx.logger.exception(f"{kind} reconcile failed: {error}", extra=NO_EVENT)
            raise kopf.TemporaryError(f"{type(error).__name__}: {error}", delay=backoff(retry)) from error


async def _report(ctx: Context, report: ReportForbidden, condition: ConditionChange) -> None:
    try:
        await report(ctx, condition)
    except KubeError as error:  # writing the status may be what is forbidden: the log and metric remain
        ctx.logger.error(f"cannot record the Permitted condition: {error}", extra=NO_EVENT)
