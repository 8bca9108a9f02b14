"""Build the batch/v1 Job that runs the trainer for one TrainingJob (docs/architecture.md, "Operator and
trainer"). Pure.

Same TrainingJob + same config -> byte-identical Job: the name is deterministic, so a create after a
restart answers 409 instead of starting a second run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from clm_contract import API_VERSION
from clm_contract import trainer_contract as tc
from clm_contract.training_job import TrainingJobSpec

from clm_operator.domain.config import OperatorConfig
from clm_operator.domain.versioning import job_name_for, label_value, version_for_training_job

CONTAINER_NAME = "trainer"
RUN_AS_USER = 10001
LABEL_TRAINING_JOB = "clm.dev/training-job"
LABEL_MODEL = "clm.dev/model"
LABEL_VERSION = "clm.dev/version"
LABEL_QUEUE = "kueue.x-k8s.io/queue-name"
GPU_RESOURCE = "nvidia.com/gpu"


def labels_for(training_job_name: str, model_name: str, version: str) -> dict[str, str]:
    return {
        LABEL_TRAINING_JOB: label_value(training_job_name),
        LABEL_MODEL: label_value(model_name),
        LABEL_VERSION: label_value(version),
        "app.kubernetes.io/name": "clm-trainer",
        "app.kubernetes.io/instance": label_value(training_job_name),
        "app.kubernetes.io/component": "training",
        "app.kubernetes.io/part-of": "clm-operator",
        "app.kubernetes.io/managed-by": "clm-operator",
    }


def owner_reference(obj: Mapping[str, Any], kind: str, *, controller: bool = True) -> dict[str, Any]:
    """The one ownerReference builder: Jobs (owned by their run), ModelVersions and scheduled or alerted
    runs (owned by their Model)."""
    meta = obj["metadata"]
    return {"apiVersion": API_VERSION, "kind": kind, "name": meta["name"], "uid": meta["uid"],
            "controller": controller, "blockOwnerDeletion": True}


def version_of(training_job: Mapping[str, Any]) -> str:
    meta = training_job["metadata"]
    return version_for_training_job(meta["creationTimestamp"], meta["uid"])


def _env(spec: TrainingJobSpec, namespace: str, version: str, config: OperatorConfig) -> list[dict[str, Any]]:
    spec_json = json.dumps(spec.to_wire(), sort_keys=True, separators=(",", ":"))
    env: list[dict[str, Any]] = [
        {"name": tc.ENV_SPEC_JSON, "value": spec_json},
        {"name": tc.ENV_OUTPUT_URI, "value": config.output_uri},
        {"name": tc.ENV_NAMESPACE, "value": namespace},
        {"name": tc.ENV_VERSION, "value": version},
        {"name": tc.ENV_S3_REGION, "value": config.aws_region},
        {"name": tc.ENV_S3_PATH_STYLE, "value": "true" if config.s3_path_style else "false"},
    ]
    if config.s3_endpoint_url:
        env.append({"name": tc.ENV_S3_ENDPOINT_URL, "value": config.s3_endpoint_url})
    if config.s3_secret_name:
        for name, key in ((tc.ENV_S3_ACCESS_KEY_ID, config.s3_access_key_id_key),
                          (tc.ENV_S3_SECRET_ACCESS_KEY, config.s3_secret_access_key_key)):
            ref = {"name": config.s3_secret_name, "key": key}
            env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    return env


def _resources(spec: TrainingJobSpec) -> dict[str, Any]:
    amounts = {"cpu": spec.resources.cpu, "memory": spec.resources.memory}
    limits: dict[str, str] = dict(amounts)
    if spec.resources.gpu > 0:
        limits[GPU_RESOURCE] = str(spec.resources.gpu)
    return {"requests": dict(amounts), "limits": limits}


def build_job(training_job: dict[str, Any], config: OperatorConfig) -> dict[str, Any]:
    """The Job manifest for ``training_job`` (a TrainingJob as the API server returns it).

    Raises pydantic.ValidationError when the spec is invalid: validate first (domain.validation).
    """
    meta = training_job["metadata"]
    spec = TrainingJobSpec.model_validate(training_job["spec"])
    namespace = meta["namespace"]
    version = version_of(training_job)
    labels = labels_for(meta["name"], spec.model_name, version)
    pod_labels = dict(labels)
    job_labels = dict(labels)
    if spec.queue_name:
        job_labels[LABEL_QUEUE] = spec.queue_name

    hardened = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER, "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"}}
    args = tc.trainer_args()
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image or config.trainer_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": args[:1],
        "args": args[1:],
        "env": _env(spec, namespace, version, config),
        "resources": _resources(spec),
        "securityContext": hardened,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        "terminationMessagePath": tc.DEFAULT_TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # The trainer never talks to the Kubernetes API (docs/architecture.md): no token in the pod.
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER, "runAsGroup": RUN_AS_USER,
                            "fsGroup": RUN_AS_USER, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    }
    if config.trainer_service_account:
        pod_spec["serviceAccountName"] = config.trainer_service_account
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [toleration.to_wire() for toleration in spec.tolerations]
    if spec.priority_class_name:
        pod_spec["priorityClassName"] = spec.priority_class_name

    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob",
             "onExitCodes": {"containerName": CONTAINER_NAME, "operator": "In",
                             "values": [int(tc.ExitCode.PERMANENT)]}},
            # An evicted or preempted pod is not the trainer's fault: do not count it against backoffLimit.
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]},
        "template": {"metadata": {"labels": pod_labels,
                                  "annotations": {"clm.dev/training-job": meta["name"]}},
                     "spec": pod_spec},
    }
    if spec.queue_name:
        # Kueue admits the Job by unsuspending it; the operator never touches suspend afterwards.
        job_spec["suspend"] = True
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    ttl = spec.ttl_seconds_after_finished
    if ttl is None:
        ttl = config.default_ttl_seconds_after_finished
    if ttl is not None:
        job_spec["ttlSecondsAfterFinished"] = ttl

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name_for(meta["name"]),
            "namespace": namespace,
            "labels": job_labels,
            "annotations": {"clm.dev/training-job": meta["name"], "clm.dev/version": version},
            "ownerReferences": [owner_reference(training_job, "TrainingJob")],
        },
        "spec": job_spec,
    }
