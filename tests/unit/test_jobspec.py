from __future__ import annotations

import json
from typing import Any

import pytest
from clm_contract.trainer_contract import ENV_SPEC_JSON, ExitCode, trainer_args
from clm_contract.training_job import TrainingJobSpec
from clm_operator.domain.config import ConfigError, OperatorConfig
from clm_operator.domain.jobspec import build_job
from pydantic import ValidationError

CONFIG = OperatorConfig(trainer_image="registry.example/clm-trainer:1.2.3", output_uri="s3://clm-models/models",
                        s3_endpoint_url="http://minio:9000", aws_region="eu-west-1", s3_path_style=True,
                        s3_secret_name="s3-creds")


def training_job(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"modelName": "btc-xgb", "algorithm": "xgboost",
                            "dataset": {"uri": "builtin:synthetic?kind=planted&seed=7", "symbol": "BTCUSDT"}}
    body.update(spec)
    return {"apiVersion": "clm.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "btc-xgb-run-1", "namespace": "trading", "uid": "5f0c-uid",
                         "creationTimestamp": "2026-11-23T10:15:00Z", "generation": 1},
            "spec": body}


def container(job: dict[str, Any]) -> dict[str, Any]:
    containers = job["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container(job)["env"]}


def test_identity_labels_and_owner() -> None:
    job = build_job(training_job(), CONFIG)
    meta = job["metadata"]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert meta["name"] == "btc-xgb-run-1-train" and meta["namespace"] == "trading"
    assert meta["labels"]["clm.dev/training-job"] == "btc-xgb-run-1"
    assert meta["labels"]["clm.dev/model"] == "btc-xgb"
    assert meta["labels"]["clm.dev/version"].startswith("v20261123-101500-")
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "clm-operator"
    assert meta["ownerReferences"] == [{"apiVersion": "clm.dev/v1alpha1", "kind": "TrainingJob",
                                        "name": "btc-xgb-run-1", "uid": "5f0c-uid", "controller": True,
                                        "blockOwnerDeletion": True}]
    # pods carry the same identity labels (the operator follows them by label)
    assert job["spec"]["template"]["metadata"]["labels"]["clm.dev/training-job"] == "btc-xgb-run-1"


def test_deterministic() -> None:
    assert json.dumps(build_job(training_job(), CONFIG), sort_keys=True) == json.dumps(
        build_job(training_job(), CONFIG), sort_keys=True)


def test_container_runs_the_trainer_without_a_shell_and_env_carries_the_contract() -> None:
    job = build_job(training_job(), CONFIG)
    c = container(job)
    assert c["command"] + c["args"] == trainer_args()
    assert not any(part in ("sh", "/bin/sh", "bash", "-c") for part in c["command"] + c["args"])
    assert c["image"] == "registry.example/clm-trainer:1.2.3"
    env = env_of(job)
    spec = TrainingJobSpec.model_validate(json.loads(env[ENV_SPEC_JSON]))
    assert spec.model_name == "btc-xgb" and spec.evaluation.folds == 5  # defaults filled in
    assert env["CLM_OUTPUT_URI"] == "s3://clm-models/models"
    assert env["CLM_NAMESPACE"] == "trading"
    assert env["CLM_MODEL_VERSION"] == job["metadata"]["labels"]["clm.dev/version"]
    assert env["CLM_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_REGION"] == "eu-west-1" and env["CLM_S3_PATH_STYLE"] == "true"
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}}
    assert env["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "s3-creds",
                                                             "key": "AWS_SECRET_ACCESS_KEY"}}
    # credentials never appear as literal values
    assert all("value" not in item for item in c["env"] if item["name"].startswith("AWS_") and
               item["name"] != "AWS_REGION")
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_no_secret_name_means_no_credentials_env() -> None:
    config = OperatorConfig(s3_secret_name=None)
    env = env_of(build_job(training_job(), config))
    assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert "CLM_S3_ENDPOINT_URL" not in env


def test_hardened_security_context_and_writable_tmp() -> None:
    job = build_job(training_job(), CONFIG)
    pod = job["spec"]["template"]["spec"]
    c = container(job)
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]


def test_cpu_only_job_has_no_gpu() -> None:
    job = build_job(training_job(resources={"cpu": "2", "memory": "3Gi"}), CONFIG)
    resources = container(job)["resources"]
    assert resources == {"requests": {"cpu": "2", "memory": "3Gi"}, "limits": {"cpu": "2", "memory": "3Gi"}}


def test_gpu_job_asks_for_nvidia_gpus_and_is_placed() -> None:
    spec = {"algorithm": "patchtst", "resources": {"gpu": 2}, "nodeSelector": {"gpu": "h100"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "training", "image": "custom/trainer:cuda"}
    job = build_job(training_job(**spec), CONFIG)
    pod = job["spec"]["template"]["spec"]
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert "nvidia.com/gpu" not in container(job)["resources"]["requests"]
    assert pod["nodeSelector"] == {"gpu": "h100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["priorityClassName"] == "training"
    assert container(job)["image"] == "custom/trainer:cuda"


def test_failure_policy_retries_and_deadlines() -> None:
    spec = {"backoffLimit": 4, "activeDeadlineSeconds": 3600, "ttlSecondsAfterFinished": 600}
    job = build_job(training_job(**spec), CONFIG)
    spec = job["spec"]
    assert spec["backoffLimit"] == 4 and spec["activeDeadlineSeconds"] == 3600
    assert spec["ttlSecondsAfterFinished"] == 600
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In",
                                                             "values": [int(ExitCode.PERMANENT)]}}
    assert rules[1]["action"] == "Ignore" and rules[1]["onPodConditions"][0]["type"] == "DisruptionTarget"
    assert "suspend" not in spec


def test_kueue_queue_label_and_suspended_creation() -> None:
    job = build_job(training_job(queueName="gpu-queue"), CONFIG)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert job["spec"]["suspend"] is True


def test_invalid_spec_is_refused() -> None:
    with pytest.raises(ValidationError):
        build_job(training_job(resources={"gpu": -1}), CONFIG)


def test_config_from_env() -> None:
    config = OperatorConfig.from_env({"CLM_TRAINER_IMAGE": "x/y:1", "CLM_OUTPUT_URI": "s3://b/p",
                                      "CLM_S3_PATH_STYLE": "true", "CLM_S3_SECRET_NAME": ""})
    assert config.trainer_image == "x/y:1" and config.s3_path_style and config.s3_secret_name is None
    assert OperatorConfig.from_env({}).s3_secret_name == "clm-s3-credentials"
    with pytest.raises(ConfigError, match="CLM_S3_PATH_STYLE"):
        OperatorConfig.from_env({"CLM_S3_PATH_STYLE": "maybe"})
    with pytest.raises(ConfigError, match="CLM_OUTPUT_URI"):
        OperatorConfig.from_env({"CLM_OUTPUT_URI": "/no/scheme"})
