"""ModelVersion: one trained model (docs/architecture.md section 3).

Spec set once by the operator; status by it too.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from clm_contract.common import CamelModel, Condition
from clm_contract.metrics import BacktestMetrics, EvaluationResult
from clm_contract.trainer_contract import ArtifactRef, DatasetSummary
from clm_contract.training_job import DNS_LABEL, Algorithm

VERSION_PATTERN = r"^v[0-9]{8}-[0-9]{6}-[a-z0-9]{5}$"


class Stage(StrEnum):
    TRAINING = "Training"
    SHADOW = "Shadow"
    CANDIDATE = "Candidate"
    PRODUCTION = "Production"
    RETIRED = "Retired"
    FAILED = "Failed"


class TrainingJobRef(CamelModel):
    """The run that trained this version."""

    name: str = Field(min_length=1, max_length=253, description="the TrainingJob's name")
    uid: str | None = Field(default=None, max_length=64, description="the TrainingJob's uid")


class ModelVersionSpec(CamelModel):
    """Set once by the operator when the run starts."""

    model_name: str = Field(min_length=1, max_length=50, pattern=DNS_LABEL,
                            description="the Model this version belongs to")
    version: str = Field(pattern=VERSION_PATTERN, description="sortable, derived from the TrainingJob")
    algorithm: Algorithm = Field(description="the algorithm trained")
    training_job_ref: TrainingJobRef = Field(description="the run that trained this version")


_ONLY = " (the built-in trainer reports the backtest only)"


class VersionMetrics(CamelModel):
    """``backtest`` is the out-of-sample walk-forward result; train/validation are free-form numbers."""

    train: dict[str, float] | None = Field(default=None, description=f"free-form in-sample numbers{_ONLY}")
    validation: dict[str, float] | None = Field(default=None,
                                                description=f"free-form validation numbers{_ONLY}")
    backtest: BacktestMetrics | None = Field(default=None, description="the out-of-sample walk-forward "
                                                                       "backtest")


class StageChange(CamelModel):
    """One entry of ``status.stageHistory``: who moved the version where, when and why."""

    from_: Stage | None = Field(default=None, alias="from", description="the stage before (absent: new)")
    to: Stage = Field(description="the stage after")
    time: datetime = Field(description="when the stage changed")
    reason: str = Field(max_length=1024, description="why, a CamelCase reason (Promoted, Replaced, ...)")
    by: str = Field(default="clm-operator", max_length=256, description="who moved it")


class ModelVersionStatus(CamelModel):
    """Written by the operator: the result of the run and the version's stage."""

    stage: Stage | None = Field(default=None, description="Training, Shadow, Candidate, Production, "
                                                          "Retired or Failed (computed from the conditions)")
    artifact: ArtifactRef | None = Field(default=None, description="the trained model file")
    dataset: DatasetSummary | None = Field(default=None, description="the data the version was trained on")
    metrics: VersionMetrics | None = Field(default=None, description="train, validation and backtest "
                                                                     "metrics")
    evaluation: EvaluationResult | None = Field(default=None, description="the verdict of the criteria")
    manifest_uri: str | None = Field(default=None, description="the run's manifest.json (the full record)")
    report_uri: str | None = Field(default=None, description="the run's human-readable report")
    message: str | None = Field(default=None, max_length=32768, description="why the version is where it "
                                                                            "is, for people")
    stage_history: list[StageChange] = Field(default_factory=list, max_length=100,
                                             description="every change of stage, oldest first")
    conditions: list[Condition] = Field(default_factory=list, description="Trained, Evaluated, Shadow, "
                                                                          "Production, Retired, Ready")
    observed_generation: int | None = Field(default=None, ge=0, description="the metadata.generation this "
                                                                            "status was computed from")
