"""The operator <-> trainer contract (docs/architecture.md section 5): CLI, environment, exit codes, result.

The operator builds the Job's container from these names; the trainer reads them. Change both sides
only through this module.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

from pydantic import Field

from clm_operator.api.common import CamelModel
from clm_operator.api.metrics import BacktestMetrics, EvaluationResult


class ExitCode(IntEnum):
    OK = 0
    TRANSIENT = 1  # storage unreachable, out of memory, ...: retried up to backoffLimit
    PERMANENT = 2  # bad spec, bad or empty data, unknown algorithm: never retried (podFailurePolicy)


# Environment of the trainer container.
ENV_SPEC_JSON = "CLM_TRAINING_SPEC"  # the TrainingJob spec as JSON (camelCase)
ENV_OUTPUT_URI = "CLM_OUTPUT_URI"  # storage root, e.g. s3://bucket/models or file:///data/models
ENV_NAMESPACE = "CLM_NAMESPACE"
ENV_VERSION = "CLM_MODEL_VERSION"
ENV_TERMINATION_LOG = "CLM_TERMINATION_LOG"  # default /dev/termination-log
ENV_S3_ENDPOINT_URL = "CLM_S3_ENDPOINT_URL"
ENV_S3_REGION = "AWS_REGION"
ENV_S3_PATH_STYLE = "CLM_S3_PATH_STYLE"  # "true" for MinIO/moto-style path addressing
ENV_S3_ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID"  # only ever set through secretKeyRef
ENV_S3_SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY"  # only ever set through secretKeyRef

DEFAULT_TERMINATION_LOG = "/dev/termination-log"
TERMINATION_MESSAGE_LIMIT = 4096  # kubelet truncates longer termination messages

MANIFEST_NAME = "manifest.json"


def artifact_prefix(output_uri: str, namespace: str, model_name: str, version: str) -> str:
    """``<output>/<namespace>/<model>/<version>`` - where one version's files live."""
    return f"{output_uri.rstrip('/')}/{namespace}/{model_name}/{version}"


def trainer_args(*, spec_env: str = ENV_SPEC_JSON) -> list[str]:
    """Container args of the trainer (never a shell string); everything else comes from env."""
    return ["clm-trainer", "run", "--spec-env", spec_env]


class ArtifactRef(CamelModel):
    uri: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    format: str  # e.g. xgboost-ubj, lightgbm-text, torch-state-dict


class DatasetSummary(CamelModel):
    symbol: str
    timeframe: str
    first_bar: str  # ISO 8601 UTC
    last_bar: str
    rows: int = Field(ge=0)
    fingerprint: str  # sha256 of the cleaned bars, so two runs on the same data are recognisable


class TrainerResult(CamelModel):
    """The compact result in the termination message (< 4 KiB); manifest.json has the full story."""

    status: Literal["Succeeded", "Failed"]
    exit_code: int
    version: str | None = None
    reason: str | None = None  # CamelCase, e.g. InvalidSpec, BadData, StorageUnavailable
    message: str | None = None
    field: str | None = None  # the spec field at fault, for permanent errors
    artifact: ArtifactRef | None = None
    manifest_uri: str | None = None
    report_uri: str | None = None
    dataset: DatasetSummary | None = None
    metrics: BacktestMetrics | None = None
    evaluation: EvaluationResult | None = None
    duration_seconds: float | None = None

    def to_termination_message(self) -> str:
        """JSON under the kubelet's 4 KiB limit: the message is shortened before anything else."""
        payload = self.model_dump_json(by_alias=True, exclude_none=True)
        if len(payload.encode()) <= TERMINATION_MESSAGE_LIMIT:
            return payload
        overflow = len(payload.encode()) - TERMINATION_MESSAGE_LIMIT + 16
        shortened = self.model_copy(update={"message": (self.message or "")[: max(0, len(self.message or "")
                                                                                   - overflow)] + "..."})
        return shortened.model_dump_json(by_alias=True, exclude_none=True)
