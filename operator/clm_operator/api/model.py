"""Model: a model family and its learning policy (docs/architecture.md section 3, "Model").

The spec says how to train (``template``), when (``schedule`` with CronJob semantics, ``triggers``),
what may serve (``promotion``, the ``productionVersion`` pin) and what to keep (``retention``). The
operator writes only the status: its automatic choice of production lives there, so GitOps tools that
own the spec and the operator never fight over it.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

from croniter import croniter
from pydantic import Field, field_validator

from clm_operator.api.common import CamelModel, Condition
from clm_operator.api.metrics import Criteria
from clm_operator.api.training_job import DNS_LABEL, TrainingJobTemplate

KIND = "Model"
PLURAL = "models"
SHORT_NAMES = ["mdl"]

# ModelVersion names are "<model>-<version>" and Job names derive from them: 50 leaves room for both
# inside the 63-character label limit.
MODEL_NAME_MAX_LENGTH = 50
ALLOW_FAILED_PROMOTION_ANNOTATION = "clm.dev/allow-failed-promotion"
HISTORY_LIMIT = 50

_DNS_LABEL_RE = re.compile(DNS_LABEL)


def validate_model_name(name: str) -> str:
    """A Model's metadata.name: a DNS label of at most 50 characters. Raises ValueError naming the fix."""
    if not name or len(name) > MODEL_NAME_MAX_LENGTH or not _DNS_LABEL_RE.match(name):
        raise ValueError(
            f"metadata.name {name!r} is not a valid Model name: use lower-case letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {MODEL_NAME_MAX_LENGTH} characters"
        )
    return name


class ConcurrencyPolicy(StrEnum):
    FORBID = "Forbid"
    REPLACE = "Replace"
    ALLOW = "Allow"


class PromotionPolicy(StrEnum):
    MANUAL = "Manual"
    AUTO_CANDIDATE = "AutoCandidate"
    AUTO_SHADOW = "AutoShadow"
    AUTO_PRODUCTION = "AutoProduction"


class ArtifactDeletionPolicy(StrEnum):
    RETAIN = "Retain"
    DELETE = "Delete"


class PromotionSpec(CamelModel):
    criteria: Criteria = Field(default_factory=Criteria)
    policy: PromotionPolicy = Field(
        default=PromotionPolicy.AUTO_CANDIDATE,
        description="Manual: nothing serves until spec.productionVersion is set; AutoCandidate: the best "
                    "passing version becomes Candidate; AutoShadow: it becomes Shadow; AutoProduction: it "
                    "replaces production when its promotion score beats the current one",
    )


class RetentionSpec(CamelModel):
    keep_versions: int = Field(default=10, ge=0, le=10000,
                               description="Retired/Failed versions kept (newest first); serving ones are "
                                           "never counted nor deleted")
    artifact_deletion_policy: ArtifactDeletionPolicy = Field(
        default=ArtifactDeletionPolicy.RETAIN,
        description="Delete: remove a pruned version's S3 prefix too; Retain: never delete data",
    )


class DriftTrigger(CamelModel):
    enabled: bool = True


class PerformanceTrigger(CamelModel):
    enabled: bool = True
    min_live_sharpe: float = Field(default=0.5, description="retrain when live Sharpe falls below this")


class RegimeTrigger(CamelModel):
    enabled: bool = True


class TriggersSpec(CamelModel):
    """Which Alertmanager alerts may start a run (a disabled trigger's alerts are ignored)."""

    drift: DriftTrigger = Field(default_factory=DriftTrigger)
    performance: PerformanceTrigger = Field(default_factory=PerformanceTrigger)
    regime: RegimeTrigger = Field(default_factory=RegimeTrigger)


class ModelSpec(CamelModel):
    template: TrainingJobTemplate
    schedule: str | None = Field(
        default=None, max_length=256,
        description="cron (5 fields, UTC, or @daily/@weekly...); absent: the algorithm's default period "
                    "(tree models 168 h, deep forecasters 336 h, RL 24 h)",
    )
    suspend: bool = False
    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID
    starting_deadline_seconds: int | None = Field(default=None, ge=0)
    promotion: PromotionSpec = Field(default_factory=PromotionSpec)
    production_version: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=DNS_LABEL,
        description="pin: the version serving production, as the version (v20260101-120000-ab12c) or the "
                    "ModelVersion's name (GitOps promotion / rollback)",
    )
    retention: RetentionSpec = Field(default_factory=RetentionSpec)
    triggers: TriggersSpec = Field(default_factory=TriggersSpec)

    @field_validator("schedule")
    @classmethod
    def _schedule_is_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        # CronJob takes 5 fields; croniter would also take a 6th (seconds), which the minute-resolution
        # run names cannot represent.
        if not croniter.is_valid(value) or (not value.startswith("@") and len(value.split()) != 5):
            raise ValueError(
                f"spec.schedule {value!r} is not a valid cron expression: use 5 fields "
                "'minute hour day-of-month month day-of-week' (e.g. '0 3 * * 1') or @daily/@weekly"
            )
        return value


class HistoryEntry(CamelModel):
    """One change of the production version: the audit trail."""

    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    time: datetime
    reason: str = Field(max_length=256)
    by: str = Field(default="operator", max_length=256)


class ModelStatus(CamelModel):
    production_version: str | None = None
    previous_production_version: str | None = None
    candidate_version: str | None = None
    shadow_version: str | None = None
    last_schedule_time: datetime | None = None
    next_schedule_time: datetime | None = None
    active_training_jobs: list[str] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list, max_length=HISTORY_LIMIT)
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = Field(default=None, ge=0)
