"""TrainingJob status (docs/architecture.md section 3).

Conditions are the truth; ``phase`` is computed from them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from clm_contract.common import CamelModel, Condition


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class MetricsSummary(CamelModel):
    """The few numbers a person looks at first; the full set is on the ModelVersion."""

    sharpe: float | None = Field(default=None, description="annualised out-of-sample Sharpe ratio")
    win_rate: float | None = Field(default=None, description="share of winning trades")
    profit_factor: float | None = Field(default=None, description="gains / losses of the trades")
    max_drawdown: float | None = Field(default=None, description="largest fall of the equity curve")
    trades: int | None = Field(default=None, description="closed trades")
    dsr: float | None = Field(default=None, description="deflated Sharpe ratio")
    score: float | None = Field(default=None, description="promotion score, 0-100")
    passed: bool | None = Field(default=None, description="the run's criteria were met")


class TrainingJobStatus(CamelModel):
    """Written by the operator: where the run is and what it produced."""

    phase: Phase | None = Field(default=None, description="Pending, Running, Succeeded or Failed (computed "
                                                          "from the conditions)")
    reason: str | None = Field(default=None, max_length=1024, description="why, in one CamelCase word "
                                                                          "(InvalidSpec, BadData, ...)")
    message: str | None = Field(default=None, max_length=32768, description="why, for people")
    job_name: str | None = Field(default=None, description="the batch/v1 Job running the trainer")
    model_version: str | None = Field(default=None, description="name of the ModelVersion of this run")
    version: str | None = Field(default=None, description="the version this run trains")
    start_time: datetime | None = Field(default=None, description="when the trainer started")
    completion_time: datetime | None = Field(default=None, description="when the run finished")
    metrics: MetricsSummary | None = Field(default=None, description="the main backtest numbers")
    conditions: list[Condition] = Field(default_factory=list, description="Accepted, Running, Complete, "
                                                                          "Failed, Ready")
    observed_generation: int | None = Field(default=None, ge=0, description="the metadata.generation this "
                                                                            "status was computed from")
