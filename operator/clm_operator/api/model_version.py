"""ModelVersion: one trained model (docs/architecture.md section 3).

Spec set once by the operator; status by it too.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from clm_operator.api.common import CamelModel, Condition
from clm_operator.api.metrics import BacktestMetrics, EvaluationResult
from clm_operator.api.trainer_contract import ArtifactRef, DatasetSummary
from clm_operator.api.training_job import DNS_LABEL, Algorithm

VERSION_PATTERN = r"^v[0-9]{8}-[0-9]{6}-[a-z0-9]{5}$"


class Stage(StrEnum):
    TRAINING = "Training"
    SHADOW = "Shadow"
    CANDIDATE = "Candidate"
    PRODUCTION = "Production"
    RETIRED = "Retired"
    FAILED = "Failed"


class TrainingJobRef(CamelModel):
    name: str = Field(min_length=1, max_length=253)
    uid: str | None = Field(default=None, max_length=64)


class ModelVersionSpec(CamelModel):
    model_name: str = Field(min_length=1, max_length=50, pattern=DNS_LABEL)
    version: str = Field(pattern=VERSION_PATTERN, description="sortable, derived from the TrainingJob")
    algorithm: Algorithm
    training_job_ref: TrainingJobRef


class VersionMetrics(CamelModel):
    """``backtest`` is the out-of-sample walk-forward result; train/validation are free-form numbers."""

    train: dict[str, float] | None = None
    validation: dict[str, float] | None = None
    backtest: BacktestMetrics | None = None


class StageChange(CamelModel):
    """One entry of ``status.stageHistory``: who moved the version where, when and why."""

    from_: Stage | None = Field(default=None, alias="from")
    to: Stage
    time: datetime
    reason: str = Field(max_length=1024)
    by: str = Field(default="clm-operator", max_length=256)


class ModelVersionStatus(CamelModel):
    stage: Stage | None = None
    artifact: ArtifactRef | None = None
    dataset: DatasetSummary | None = None
    metrics: VersionMetrics | None = None
    evaluation: EvaluationResult | None = None
    manifest_uri: str | None = None
    report_uri: str | None = None
    message: str | None = Field(default=None, max_length=32768)
    stage_history: list[StageChange] = Field(default_factory=list, max_length=100)
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = Field(default=None, ge=0)
