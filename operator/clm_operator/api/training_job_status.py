"""TrainingJob status (docs/architecture.md section 3).

Conditions are the truth; ``phase`` is computed from them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from clm_operator.api.common import CamelModel, Condition


class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class MetricsSummary(CamelModel):
    """The few numbers a person looks at first; the full set is on the ModelVersion."""

    sharpe: float | None = None
    win_rate: float | None = None
    profit_factor: float | None = None
    max_drawdown: float | None = None
    trades: int | None = None
    dsr: float | None = None
    score: float | None = None
    passed: bool | None = None


class TrainingJobStatus(CamelModel):
    phase: Phase | None = None
    reason: str | None = Field(default=None, max_length=1024)
    message: str | None = Field(default=None, max_length=32768)
    job_name: str | None = None
    model_version: str | None = Field(default=None, description="name of the ModelVersion of this run")
    version: str | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    metrics: MetricsSummary | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = Field(default=None, ge=0)
