"""ModelVersion bookkeeping: keep ``stage`` consistent with the conditions, and the metrics by stage.

The TrainingJob handler sets Trained/Evaluated; the Model handler sets Production/Shadow/Retired (both
through domain.lifecycle, recomputing the stage). This handler is the safety net: a stage that does
not match its conditions (an edit by hand, a writer that forgot) is recomputed and the change recorded.
"""

from __future__ import annotations

from typing import Any

import kopf

from clm_operator import GROUP, VERSION
from clm_operator.clock import now
from clm_operator.domain import lifecycle as lc
from clm_operator.handlers.common import MODEL_VERSIONS, lock_for, runtime
from clm_operator.k8s import custom_path
from clm_operator.observability import metrics as m

KIND = "ModelVersion"


@kopf.on.event(GROUP, VERSION, MODEL_VERSIONS)
async def model_version_event(body: kopf.Body, name: str, namespace: str | None, type: str | None,
                              **_: Any) -> None:
    namespace = namespace or ""
    model = str((body.get("spec") or {}).get("modelName") or "")
    if type == "DELETED":
        m.forget_model_version(namespace, name)
        return
    status = body.get("status") or {}
    if not status:
        return  # just created: the TrainingJob handler sets its first status
    stage = lc.model_version_stage(status.get("conditions"))
    m.observe_model_version(namespace, name, model, str(stage))
    evaluation = status.get("evaluation") or {}
    version = str((body.get("spec") or {}).get("version") or "")
    if "score" in evaluation and version:
        score = float(evaluation["score"])
        m.PROMOTION_SCORE.labels(namespace=namespace, model=model, version=version).set(score)
    if status.get("stage") == stage:
        return
    kube, _config = runtime()
    async with lock_for(KIND, namespace, name):
        with m.reconcile(KIND):
            history = lc.append_stage_history(status.get("stageHistory"), status.get("stage") or None, stage,
                                              reason="stage recomputed from the conditions", now=now())
            patch = {"metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                     "status": {"stage": str(stage), "stageHistory": history}}
            await kube.merge_patch(custom_path(MODEL_VERSIONS, namespace, name, subresource="status"), patch)
