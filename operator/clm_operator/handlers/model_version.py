"""The owner of ModelVersion writes: creation, status, finalizers, owner references, deletion.

No other module patches a ModelVersion. A run's result (handlers/training_job.py) and the Model's policy
(handlers/model.py) both change a version's status; they hand a ``lifecycle.VersionChange`` to
``change`` here, which computes the patch from the object as it is (stage recomputed in
domain.lifecycle.version_status) and writes it with the resourceVersion as precondition: a 409 means
the other writer was first, and the change is recomputed on a fresh read and written again.

The ModelVersion reconcile (``reconcile``) keeps a stored stage and Ready condition consistent with the
other conditions (an edit by hand), fails a Training version whose TrainingJob was deleted (reason
TrainingJobDeleted; the TrainingJob's DELETED event runs this reconcile), keeps the stage gauge, and
runs the artifact cleanup of a version being deleted under ``artifactDeletionPolicy: Delete`` (its
storage prefix ``<output>/<namespace>/<model>/<version>/`` is removed before the finalizer releases the
object; a storage error keeps the finalizer and the Model's timer retries).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from clm_contract.storage import S3Settings, artifact_prefix, open_storage

from clm_operator.clock import now
from clm_operator.domain import lifecycle as lc
from clm_operator.domain.conditions import ConditionChange
from clm_operator.domain.effects import NORMAL, Event, EventReason, Subject
from clm_operator.domain.retention import ARTIFACT_FINALIZER
from clm_operator.handlers.common import (
    MODEL_VERSIONS,
    NO_EVENT,
    TRAINING_JOBS,
    Logger,
    emit,
    read,
    with_type,
)
from clm_operator.handlers.reconciler import Context, Target
from clm_operator.k8s import Kube, KubeError, custom_path
from clm_operator.observability import metrics as m

KIND = "ModelVersion"
ATTEMPTS = 5

# A patch from the object as it is now; None: nothing to write.
PatchFor = Callable[[dict[str, Any]], dict[str, Any] | None]


def _path(mv: Mapping[str, Any], subresource: str | None = None) -> str:
    meta = mv["metadata"]
    return custom_path(MODEL_VERSIONS, meta["namespace"], meta["name"], subresource=subresource)


async def _write(kube: Kube, mv: dict[str, Any], patch_for: PatchFor, *, subresource: str | None = None
                 ) -> dict[str, Any]:
    """Merge-patch with the resourceVersion as precondition; on 409 re-read, recompute and retry."""
    for attempt in range(ATTEMPTS):
        patch = patch_for(mv)
        if patch is None:
            return mv
        patch.setdefault("metadata", {})["resourceVersion"] = mv["metadata"].get("resourceVersion")
        try:
            return with_type(await kube.merge_patch(_path(mv, subresource), patch), KIND)
        except KubeError as error:
            if error.status != 409 or attempt == ATTEMPTS - 1:
                raise
        fresh = await kube.get(_path(mv))
        if fresh is None:
            return mv
        mv = with_type(fresh, KIND)
    return mv


def _observe(mv: Mapping[str, Any]) -> None:
    status = mv.get("status") or {}
    meta = mv["metadata"]
    model = str((mv.get("spec") or {}).get("modelName") or "")
    m.observe_model_version(meta["namespace"], meta["name"], model,
                            str(lc.model_version_stage(status.get("conditions"))))


async def ensure(kube: Kube, body: dict[str, Any]) -> dict[str, Any]:
    """Create-if-absent (409: read the existing one)."""
    mv, _created = await kube.create_or_get(custom_path(MODEL_VERSIONS, body["metadata"]["namespace"]), body)
    return with_type(mv, KIND)


async def change(kube: Kube, mv: dict[str, Any], version_change: lc.VersionChange) -> dict[str, Any]:
    """Apply ``version_change`` to the version's status (the only status writer of ModelVersions)."""

    def patch_for(current: dict[str, Any]) -> dict[str, Any] | None:
        status = current.get("status") or {}
        patch = lc.version_status(status, version_change, generation=current["metadata"].get("generation"),
                                  now=now())
        changed = {key: value for key, value in patch.items() if status.get(key) != value}
        return {"status": changed} if changed else None

    updated = await _write(kube, mv, patch_for, subresource="status")
    _observe(updated)
    return updated


async def record_condition(kube: Kube, mv: dict[str, Any], condition: ConditionChange) -> dict[str, Any]:
    return await change(kube, mv, lc.VersionChange(why=condition.reason, conditions=(condition,)))


async def set_owner(kube: Kube, mv: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    """Adopt a version created before its Model existed."""

    def patch_for(current: dict[str, Any]) -> dict[str, Any] | None:
        if current["metadata"].get("ownerReferences"):
            return None
        return {"metadata": {"ownerReferences": [owner]}}

    return await _write(kube, mv, patch_for)


async def set_finalizer(kube: Kube, mv: dict[str, Any], wanted: bool) -> dict[str, Any]:
    """Make the artifact finalizer's presence follow the Model's artifactDeletionPolicy."""

    def patch_for(current: dict[str, Any]) -> dict[str, Any] | None:
        meta = current["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if meta.get("deletionTimestamp") or (ARTIFACT_FINALIZER in finalizers) == wanted:
            return None
        kept = [f for f in finalizers if f != ARTIFACT_FINALIZER]
        return {"metadata": {"finalizers": [*kept, ARTIFACT_FINALIZER] if wanted else kept}}

    return await _write(kube, mv, patch_for)


async def delete(kube: Kube, mv: dict[str, Any], reason: str, logger: Logger) -> None:
    await emit(mv, Event(Subject.MODEL_VERSION, NORMAL, EventReason.VERSION_PRUNED,
                         f"deleted: {reason}"), logger)
    await kube.delete(_path(mv))
    logger.info(f"retention deleted ModelVersion {mv['metadata']['name']}", extra=NO_EVENT)


def version_folder(mv: Mapping[str, Any], output_uri: str) -> tuple[str, str]:
    """(storage root, relative folder) of one version's files.

    The artifact's own URI wins (the operator's output URI may have changed since it was trained);
    otherwise the contract's layout under the current output URI.
    """
    status = mv.get("status") or {}
    spec = mv.get("spec") or {}
    uri = (status.get("artifact") or {}).get("uri") or status.get("manifestUri")
    if uri and "/" in urlsplit(uri).path.strip("/"):
        folder = uri.rsplit("/", 1)[0]
    else:
        folder = artifact_prefix(output_uri, mv["metadata"]["namespace"], str(spec.get("modelName")),
                                 str(spec.get("version")))
    root, leaf = folder.rsplit("/", 1)
    return root, leaf


def _delete_prefix(ctx: Context, root: str, leaf: str) -> int:
    config = ctx.config
    settings = S3Settings(endpoint_url=config.s3_endpoint_url, region=config.aws_region,
                          path_style=config.s3_path_style)
    return int(open_storage(root, settings).delete_prefix(leaf))


async def clean_up(ctx: Context, mv: dict[str, Any]) -> None:
    """Delete the version's storage prefix, then release the object by removing the finalizer.

    A storage error is raised (the finalizer stays: data is never silently leaked); the wrapper turns it
    into a retry and the Model's timer retries the cleanup too.
    """
    root, leaf = version_folder(mv, ctx.config.output_uri)
    deleted = await asyncio.to_thread(_delete_prefix, ctx, root, leaf)
    await emit(mv, Event(Subject.MODEL_VERSION, NORMAL, EventReason.ARTIFACTS_DELETED,
                         f"deleted {deleted} object(s) under {root}/{leaf}/"), ctx.logger)

    def patch_for(current: dict[str, Any]) -> dict[str, Any] | None:
        finalizers = list(current["metadata"].get("finalizers") or [])
        if ARTIFACT_FINALIZER not in finalizers:
            return None
        return {"metadata": {"finalizers": [f for f in finalizers if f != ARTIFACT_FINALIZER]}}

    await _write(ctx.kube, mv, patch_for)


async def reconcile(ctx: Context) -> None:
    """The ModelVersion reconcile: read, decide (domain.lifecycle.decide_version), apply."""
    mv = await read(ctx.kube, MODEL_VERSIONS, KIND, ctx.namespace, ctx.name)
    if mv is None:
        m.forget_model_version(ctx.namespace, ctx.name)
        return
    run_gone = False
    waited_for = lc.needs_run(mv)
    if waited_for is not None:  # a Training version: is its run still there to finish it?
        run = await ctx.kube.get(custom_path(TRAINING_JOBS, ctx.namespace, waited_for))
        run_gone = lc.run_is_gone(mv, run)
    decision = lc.decide_version(mv, ARTIFACT_FINALIZER, run_gone=run_gone)
    if decision.clean_up:
        await clean_up(ctx, mv)
        return
    if decision.repair is not None:
        mv = await change(ctx.kube, mv, decision.repair)
    for event in decision.events:
        await emit(mv, event, ctx.logger)
    _observe(mv)
    for metric in decision.metrics:
        m.apply(metric)


async def report_forbidden(ctx: Context, condition: ConditionChange) -> None:
    mv = await read(ctx.kube, MODEL_VERSIONS, KIND, ctx.namespace, ctx.name)
    if mv is not None:
        await record_condition(ctx.kube, mv, condition)


RECONCILE = Target(KIND, reconcile, report_forbidden)
