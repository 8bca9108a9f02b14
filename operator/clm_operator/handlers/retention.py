"""Retention: deleting pruned ModelVersions and, under artifactDeletionPolicy Delete, their S3 data.

Under ``Delete`` every ModelVersion of the Model carries the finalizer ``clm.dev/artifact-cleanup``
(added by the Model reconcile, removed again if the policy goes back to ``Retain``), so however the
version goes — pruned by retention, deleted by hand, or with its Model — its prefix
``<output>/<namespace>/<model>/<version>/`` is removed from storage before the object disappears.
``Retain`` (the default) never deletes data: only the ModelVersion object is pruned.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit

import kopf

from clm_operator import GROUP, VERSION
from clm_operator.api.trainer_contract import artifact_prefix
from clm_operator.handlers.common import MODEL_VERSIONS, emit, runtime
from clm_operator.k8s import KubeError, custom_path
from clm_operator.observability import events

log = logging.getLogger("clm_operator.handlers.retention")

ARTIFACT_FINALIZER = "clm.dev/artifact-cleanup"
VERSION_PRUNED = "VersionPruned"
ARTIFACTS_DELETED = "ArtifactsDeleted"


def version_folder(mv: dict[str, Any], output_uri: str) -> tuple[str, str]:
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


def _delete_prefix(root: str, leaf: str) -> int:
    from clm_trainer.storage import S3Settings, open_storage

    _, config = runtime()
    settings = S3Settings(endpoint_url=config.s3_endpoint_url, region=config.aws_region,
                          path_style=config.s3_path_style)
    return int(open_storage(root, settings).delete_prefix(leaf))


async def sync_finalizer(mv: dict[str, Any], delete_data: bool) -> None:
    """Make the finalizer's presence follow the Model's artifactDeletionPolicy."""
    meta = mv["metadata"]
    if meta.get("deletionTimestamp"):
        return
    finalizers = list(meta.get("finalizers") or [])
    has = ARTIFACT_FINALIZER in finalizers
    if has == delete_data:
        return
    finalizers = finalizers + [ARTIFACT_FINALIZER] if delete_data else \
        [f for f in finalizers if f != ARTIFACT_FINALIZER]
    kube, _ = runtime()
    # resourceVersion makes the list replacement safe against a concurrent writer of other finalizers.
    updated = await kube.merge_patch(
        custom_path(MODEL_VERSIONS, meta["namespace"], meta["name"]),
        {"metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}})
    meta["finalizers"] = finalizers
    meta["resourceVersion"] = (updated.get("metadata") or {}).get("resourceVersion",
                                                                 meta.get("resourceVersion"))


async def delete_version(mv: dict[str, Any], reason: str) -> None:
    kube, _ = runtime()
    meta = mv["metadata"]
    await emit(mv, events.NORMAL, VERSION_PRUNED, f"deleted: {reason}")
    await kube.delete(custom_path(MODEL_VERSIONS, meta["namespace"], meta["name"]))
    log.info("retention deleted ModelVersion %s/%s", meta["namespace"], meta["name"])


async def cleanup(mv: dict[str, Any]) -> None:
    """Delete the version's S3 prefix, then release the object by removing the finalizer."""
    kube, config = runtime()
    meta = mv["metadata"]
    root, leaf = version_folder(mv, config.output_uri)
    deleted = await asyncio.to_thread(_delete_prefix, root, leaf)
    await emit(mv, events.NORMAL, ARTIFACTS_DELETED, f"deleted {deleted} object(s) under {root}/{leaf}/")
    finalizers = [f for f in meta.get("finalizers") or [] if f != ARTIFACT_FINALIZER]
    await kube.merge_patch(custom_path(MODEL_VERSIONS, meta["namespace"], meta["name"]),
                           {"metadata": {"finalizers": finalizers,
                                         "resourceVersion": meta.get("resourceVersion")}})


@kopf.on.event(GROUP, VERSION, MODEL_VERSIONS)
async def artifact_cleanup(body: kopf.Body, event: kopf.RawEvent, **_: Any) -> None:
    meta = body["metadata"]
    if event.get("type") == "DELETED" or not meta.get("deletionTimestamp") \
            or ARTIFACT_FINALIZER not in (meta.get("finalizers") or []):
        return
    try:
        await cleanup(dict(body))
    except KubeError as error:
        # 409: the object changed under us; the next event (that change) runs the cleanup again.
        log.warning("artifact cleanup of %s/%s: %s", meta["namespace"], meta["name"], error)
    except Exception as error:  # storage errors keep the finalizer: data is never silently leaked
        # The Model's timer retries (handlers/model.py); a raise here would only be logged by kopf.
        log.error("artifact cleanup of %s/%s failed, finalizer kept: %s", meta["namespace"], meta["name"],
                  error)
