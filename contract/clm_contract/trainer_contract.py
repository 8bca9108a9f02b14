"""The operator <-> trainer contract (docs/architecture.md section 5): CLI, environment, exit codes, result.

The operator builds the Job's container from these names; the trainer reads them. Change both sides
only through this module. Where the trainer puts a version's files: clm_contract.storage.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Literal

from pydantic import Field

from clm_contract.common import CamelModel
from clm_contract.metrics import BacktestMetrics, EvaluationResult


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

def trainer_args(*, spec_env: str = ENV_SPEC_JSON) -> list[str]:
    """Container args of the trainer (never a shell string); everything else comes from env."""
    return ["clm-trainer", "run", "--spec-env", spec_env]


class ArtifactRef(CamelModel):
    uri: str = Field(description="where the model file is (s3://... or file://...)")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the file, hex")
    size_bytes: int = Field(ge=0, description="size of the file in bytes")
    format: str = Field(description="xgboost-ubj, lightgbm-text, torch-state-dict, ...")


class DatasetSummary(CamelModel):
    symbol: str = Field(description="the instrument trained on")
    timeframe: str = Field(description="bar length after resampling")
    first_bar: str = Field(description="time of the first bar used, ISO 8601 UTC")
    last_bar: str = Field(description="time of the last bar used, ISO 8601 UTC")
    rows: int = Field(ge=0, description="bars used")
    fingerprint: str = Field(description="SHA-256 of the cleaned bars: two runs on the same data show the "
                                         "same value")


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
