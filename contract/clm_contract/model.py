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

from clm_contract.common import CamelModel, CelRule, Condition, cel
from clm_contract.metrics import Criteria
from clm_contract.training_job import DNS_LABEL, TrainingJobTemplate

KIND = "Model"
PLURAL = "models"
SHORT_NAMES = ["mdl"]

# ModelVersion names are "<model>-<version>" and Job names derive from them: 50 leaves room for both
# inside the 63-character label limit.
MODEL_NAME_MAX_LENGTH = 50
ALLOW_FAILED_PROMOTION_ANNOTATION = "clm.dev/allow-failed-promotion"
HISTORY_LIMIT = 50

_DNS_LABEL_RE = re.compile(DNS_LABEL)


def _cron_field(number: str, names: str | None = None, question_mark: bool = False) -> str:
    """One cron field: ``*`` (or ``?``), a value or a range, each with an optional ``/step``, in a list."""
    value = f"(?:{number}|{names})" if names else f"(?:{number})"
    any_value = r"[*?]" if question_mark else r"\*"
    item = f"(?:{any_value}|{value}(?:-{value})?)(?:/0*[1-9][0-9]*)?"
    return f"{item}(?:,{item})*"


_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_WEEKDAYS = "sun|mon|tue|wed|thu|fri|sat"
# The CronJob dialect (5 fields, names, ranges, steps, lists, @-macros) in the syntax Python's re and RE2
# (CEL's matches()) share. It checks the shape and the range of each value; croniter stays the second
# line (a descending range, "5-1", passes here and is croniter's to judge).
CRON_PATTERN = (
    r"(?i)^[ \t]*(?:@(?:yearly|annually|monthly|weekly|daily|midnight|hourly)|"
    + r"[ \t]+".join((
        _cron_field("[0-5]?[0-9]"),
        _cron_field("[01]?[0-9]|2[0-3]"),
        _cron_field("0?[1-9]|[12][0-9]|3[01]", question_mark=True),
        _cron_field("0?[1-9]|1[0-2]", _MONTHS),
        _cron_field("0?[0-7]", _WEEKDAYS, question_mark=True),
    ))
    + r")[ \t]*$"
)
_CRON_RE = re.compile(CRON_PATTERN)
CRON_MESSAGE = ("must be a cron expression of 5 fields 'minute hour day-of-month month day-of-week' (UTC; "
                "*, values, ranges a-b, steps /n, lists a,b, month and weekday names), e.g. '0 3 * * 1', or "
                "@hourly, @daily, @weekly, @monthly, @yearly")
CRON_RULE = CelRule(rule=f"self.matches(r'{CRON_PATTERN}')", message=CRON_MESSAGE)


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
    """Which versions may serve, and how one gets there."""

    criteria: Criteria = Field(default_factory=Criteria,
                               description="what a version's backtest must meet to be promoted")
    policy: PromotionPolicy = Field(
        default=PromotionPolicy.AUTO_CANDIDATE,
        description="Manual: nothing serves until spec.productionVersion is set; AutoCandidate: the best "
                    "passing version becomes Candidate; AutoShadow: it becomes Shadow; AutoProduction: it "
                    "replaces production when its promotion score beats the current one",
    )


class RetentionSpec(CamelModel):
    """How many finished versions (and their artifacts) are kept."""

    keep_versions: int = Field(default=10, ge=0, le=10000,
                               description="Retired/Failed versions kept (newest first); serving ones are "
                                           "never counted nor deleted")
    artifact_deletion_policy: ArtifactDeletionPolicy = Field(
        default=ArtifactDeletionPolicy.RETAIN,
        description="Delete: remove a pruned version's S3 prefix too; Retain: never delete data",
    )


_ENABLED = "false: alerts of this kind start no run"


class DriftTrigger(CamelModel):
    """Drift alerts: label clm_trigger=drift, or an alertname containing "drift"."""

    enabled: bool = Field(default=True, description=_ENABLED)


class PerformanceTrigger(CamelModel):
    """Live performance alerts: label clm_trigger=performance, or an alertname containing "perf" or
    "sharpe"."""

    enabled: bool = Field(default=True, description=_ENABLED)
    min_live_sharpe: float = Field(default=0.5, description="retrain when live Sharpe falls below this")


class RegimeTrigger(CamelModel):
    """Market regime alerts: label clm_trigger=regime, or an alertname containing "regime"."""

    enabled: bool = Field(default=True, description=_ENABLED)


class TriggersSpec(CamelModel):
    """Which Alertmanager alerts may start a run (a disabled trigger's alerts are ignored)."""

    drift: DriftTrigger = Field(default_factory=DriftTrigger, description="drift alerts")
    performance: PerformanceTrigger = Field(default_factory=PerformanceTrigger,
                                            description="live performance alerts")
    regime: RegimeTrigger = Field(default_factory=RegimeTrigger, description="regime change alerts")


class ModelSpec(CamelModel):
    """How to train (template), when (schedule, triggers), what may serve (promotion, the
    productionVersion pin) and what to keep (retention)."""

    template: TrainingJobTemplate = Field(description="the spec of every TrainingJob this Model starts "
                                                      "(a TrainingJob spec without modelName)")
    schedule: str | None = Field(
        default=None, max_length=256, json_schema_extra=cel(CRON_RULE),
        description="cron (5 fields, UTC, or @daily/@weekly...); absent: the algorithm's default period "
                    "(tree models 168 h, deep forecasters 336 h, RL 24 h)",
    )
    suspend: bool = Field(default=False, description="true: the schedule starts no runs (as a CronJob's "
                                                     "suspend)")
    concurrency_policy: ConcurrencyPolicy = Field(
        default=ConcurrencyPolicy.FORBID,
        description="a run coming due while another runs, as on a CronJob: Forbid (skip it), Replace, Allow")
    starting_deadline_seconds: int | None = Field(
        default=None, ge=0, description="a scheduled run missed by more than this is skipped (CronJob "
                                        "semantics)")
    promotion: PromotionSpec = Field(default_factory=PromotionSpec,
                                     description="the promotion policy and its criteria")
    production_version: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=DNS_LABEL,
        description="pin: the version serving production, as the version (v20260101-120000-ab12c) or the "
                    "ModelVersion's name (GitOps promotion / rollback)",
    )
    retention: RetentionSpec = Field(default_factory=RetentionSpec,
                                     description="how many finished versions are kept")
    triggers: TriggersSpec = Field(default_factory=TriggersSpec,
                                   description="which Alertmanager alerts may start a run")

    @field_validator("schedule")
    @classmethod
    def _schedule_is_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        # The pattern is the CRD's rule (CRON_RULE); croniter, which also takes a 6th field (seconds) and
        # extensions CronJob has not (L, #, R), is the second line.
        if not _CRON_RE.match(value) or not croniter.is_valid(value):
            raise ValueError(f"spec.schedule {value!r} {CRON_MESSAGE}")
        return value


class HistoryEntry(CamelModel):
    """One change of the production version: the audit trail."""

    from_: str | None = Field(default=None, alias="from", description="the version that served before")
    to: str | None = Field(default=None, description="the version that serves since (absent: none)")
    time: datetime = Field(description="when production changed")
    reason: str = Field(max_length=256, description="Promoted, Pinned, RolledBack, ...")
    by: str = Field(default="operator", max_length=256, description="who changed it: the operator, or the "
                                                                    "field manager of a pin")


class ModelStatus(CamelModel):
    """Written by the operator: which versions serve, the schedule, and the history of production."""

    production_version: str | None = Field(default=None, description="the version serving production")
    previous_production_version: str | None = Field(default=None,
                                                    description="the version that served before it")
    candidate_version: str | None = Field(default=None, description="the best passing version waiting to "
                                                                    "be promoted")
    shadow_version: str | None = Field(default=None, description="the version running in shadow beside "
                                                                 "production")
    last_schedule_time: datetime | None = Field(default=None, description="when the schedule last started "
                                                                          "a run")
    next_schedule_time: datetime | None = Field(default=None, description="when the schedule starts the "
                                                                          "next run")
    active_training_jobs: list[str] = Field(default_factory=list,
                                            description="TrainingJobs of this Model still running")
    history: list[HistoryEntry] = Field(default_factory=list, max_length=HISTORY_LIMIT,
                                        description=f"changes of production, newest last (at most "
                                                    f"{HISTORY_LIMIT})")
    conditions: list[Condition] = Field(default_factory=list, description="Accepted, Ready, PinAccepted, "
                                                                          "Scheduled")
    observed_generation: int | None = Field(default=None, ge=0, description="the metadata.generation this "
                                                                            "status was computed from")
