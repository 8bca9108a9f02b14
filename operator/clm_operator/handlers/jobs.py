"""Follow the trainer's batch Jobs and pods: any change of either reconciles the owning TrainingJob."""

from __future__ import annotations

from typing import Any

import kopf

from clm_operator.domain.jobspec import LABEL_TRAINING_JOB
from clm_operator.handlers import training_job

ANNOTATION_TRAINING_JOB = "clm.dev/training-job"


def owning_training_job(body: kopf.Body) -> str | None:
    """The TrainingJob's name: the annotation carries it in full (the label may be shortened)."""
    annotations = body.get("metadata", {}).get("annotations") or {}
    if annotations.get(ANNOTATION_TRAINING_JOB):
        return str(annotations[ANNOTATION_TRAINING_JOB])
    for owner in body.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("kind") == "TrainingJob":
            return str(owner.get("name"))
    labels = body.get("metadata", {}).get("labels") or {}
    value = labels.get(LABEL_TRAINING_JOB)
    return str(value) if value else None


@kopf.on.event(group="batch", version="v1", plural="jobs", labels={LABEL_TRAINING_JOB: kopf.PRESENT})
async def job_event(body: kopf.Body, name: str, namespace: str | None, type: str | None,
                    **_: Any) -> None:
    owner = owning_training_job(body)
    if owner and type != "DELETED":
        await training_job.reconcile(namespace or "", owner)


@kopf.on.event(group="", version="v1", plural="pods", labels={LABEL_TRAINING_JOB: kopf.PRESENT})
async def pod_event(body: kopf.Body, name: str, namespace: str | None, type: str | None,
                    **_: Any) -> None:
    owner = owning_training_job(body)
    if owner and type != "DELETED":
        await training_job.reconcile(namespace or "", owner)
