"""TrainingJob: one training run. Its spec is also the trainer's input (``clm-trainer run --spec``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, field_validator, model_validator

from clm_contract.common import CamelModel, CelRule, Line, Text, cel, quantity_check
from clm_contract.hyperparameters import (
    hyperparameter_rules,
    hyperparameters_schema,
    validate_hyperparameters,
)
from clm_contract.metrics import Criteria

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A bound on a run's resources: far beyond any node, so that a typo ("1e999", "64000Gi") fails at apply.
MAX_CPU, MAX_MEMORY = "4096", "64Ti"


class Algorithm(StrEnum):
    XGBOOST = "xgboost"
    LIGHTGBM = "lightgbm"
    NHITS = "nhits"
    PATCHTST = "patchtst"
    PPO = "ppo"


class TriggerReason(StrEnum):
    MANUAL = "manual"
    PERIODIC = "periodic"
    DRIFT = "drift"
    PERFORMANCE = "performance"
    REGIME = "regime"
    EVOLUTION = "evolution"


class DatasetSpec(CamelModel):
    """Where the OHLCV bars come from and which slice of them to use."""

    model_config = ConfigDict(json_schema_extra=cel(
        CelRule(rule="!has(self.start) || !has(self.lookbackDays)",
                message="set either start or lookbackDays, not both", field_path=".lookbackDays"),
        CelRule(rule="!has(self.start) || !has(self.end) || self.start < self.end",
                message="start must be before end", field_path=".start"),
    ))

    uri: str = Field(
        pattern=r"^(s3://[^/]+/.+|file://.+|builtin:[a-z][a-z0-9_-]*(\?.*)?)$",
        description="s3://bucket/key.csv|.parquet, file:///path, or builtin:synthetic?kind=planted&seed=7",
    )
    symbol: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._/-]+$",
                        description="instrument, e.g. BTCUSDT: names the data and the model's files")
    timeframe: str = Field(default="1h", pattern=r"^[1-9][0-9]*(m|h|d|w)$",
                           description="bar length (15m, 1h, 4h, 1d, 1w); bars are resampled to it")
    start: datetime | None = Field(default=None, description="first bar used (RFC 3339); absent: the "
                                                             "first bar of the data, or end - lookbackDays")
    end: datetime | None = Field(default=None, description="bars before this time only (RFC 3339); absent: "
                                                           "up to the last bar")
    lookback_days: int | None = Field(default=None, ge=1, le=36500,
                                      description="use only the last N days before end (not with start)")

    @model_validator(mode="after")
    def _window_is_consistent(self) -> DatasetSpec:
        if self.start is not None and self.lookback_days is not None:
            raise ValueError("set either start or lookbackDays, not both")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class FeaturesSpec(CamelModel):
    """Past-only features of the bars. Every window is in bars."""

    return_lags: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 10, 20], max_length=64,
                                   description="past returns over these many bars become features")
    windows: list[int] = Field(default_factory=lambda: [5, 10, 20, 50, 100, 200], max_length=32,
                               description="rolling windows for volatility, momentum, z-score, RSI "
                                           "(hourly bars: up to ~8 days)")
    volume: bool = Field(default=True, description="add volume features when the data has volume")
    calendar: bool = Field(default=False, description="hour-of-day and day-of-week features")

    @field_validator("return_lags", "windows")
    @classmethod
    def _positive_and_bounded(cls, values: list[int]) -> list[int]:
        for value in values:
            if not 1 <= value <= 10000:
                raise ValueError(f"every entry must be between 1 and 10000 bars (got {value})")
        return sorted(set(values))


class TargetSpec(CamelModel):
    horizon_bars: int = Field(default=24, ge=1, le=1000,
                              description="bars the target looks ahead (hourly: 24 = one day); positions "
                                          "are held at least this long unless "
                                          "evaluation.positions.minHoldingBars says otherwise")
    kind: str = Field(default="sign", pattern=r"^(sign|return)$",
                      description="sign: classify the sign of the forward return; return: regress it")


class CostsSpec(CamelModel):
    """Trading costs charged on every change of position, in basis points of the traded notional."""

    fee_bps: float = Field(default=10.0, ge=0, le=1000, description="exchange fee per trade side, bps")
    slippage_bps: float = Field(default=5.0, ge=0, le=1000, description="slippage per trade side, bps")


class Sizing(StrEnum):
    FIXED = "fixed"
    VOLATILITY = "volatility"


# The default minimum holding period in target horizons. Measured on the planted series (regimes of
# ~600 bars, horizon 24): holding 1 horizon, false flips made half the trades lose (the forward filter
# itself won 45-55 % of its trades); 5 horizons won 54-72 % at the same net Sharpe.
HOLD_HORIZONS = 5


class PositionsSpec(CamelModel):
    """The position layer (clm_trainer.positions): when a score becomes a position, and how large.

    A parameter left out is chosen per walk-forward fold on an inner validation split of that fold's
    training window (never its test bars), from the candidate grids below; every candidate counts as
    a trial for the deflated Sharpe ratio.
    """

    entry_quantiles: list[float] = Field(
        default_factory=lambda: [0.5, 0.75, 0.9], min_length=1, max_length=10,
        description="entry threshold candidates (when signalThreshold is absent), as quantiles of |score| "
                    "on the validation bars")
    exit_threshold: float | None = Field(
        default=None, ge=-0.5, le=0.5,
        description="close a position when its side x score falls below this (hysteresis, <= entry); "
                    "absent: chosen from exitFractions")
    exit_fractions: list[float] = Field(
        default_factory=lambda: [0.5, 0.0, -1.0], min_length=1, max_length=10,
        description="exit threshold candidates as fractions of the entry threshold, in [-1, 1]: 0.5 closes "
                    "when the edge fades to half the entry, 0 when the score turns against the position, -1 "
                    "only ever flips")
    min_holding_bars: int | None = Field(
        default=None, ge=1, le=100000,
        description="bars a position is held before it may close or flip; absent: 5 x target.horizonBars "
                    "(a trade must last long enough for its drift to outweigh its noise: see "
                    "clm_trainer.positions)")
    sizing: Sizing = Field(
        default=Sizing.VOLATILITY,
        description="fixed: every position is 1 (or -1); volatility: min(1, volatilityTarget / trailing "
                    "annualised volatility), set when the position opens and held for the trade")
    volatility_target: float = Field(default=0.06, gt=0, le=10,
                                     description="annualised volatility a full position is scaled to (the "
                                                 "default keeps a net Sharpe 1-2 strategy's drawdown "
                                                 "within maxDrawdown 0.15 over years of hourly bars)")
    volatility_window: int = Field(default=168, ge=2, le=100000,
                                   description="bars of the trailing volatility estimate (hourly: a week)")
    validation_fraction: float = Field(
        default=0.3, gt=0, lt=0.9,
        description="last share of each fold's training window used to choose the parameters (purged: "
                    "an embargo separates it from the rows the inner model is fitted on)")

    @field_validator("entry_quantiles")
    @classmethod
    def _quantiles(cls, values: list[float]) -> list[float]:
        for value in values:
            if not 0 <= value < 1:
                raise ValueError(f"every entry quantile must be in [0, 1) (got {value})")
        return values

    @field_validator("exit_fractions")
    @classmethod
    def _fractions(cls, values: list[float]) -> list[float]:
        for value in values:
            if not -1 <= value <= 1:
                raise ValueError(f"every exit fraction must be in [-1, 1] (got {value})")
        return values


class EvaluationSpec(CamelModel):
    folds: int = Field(default=5, ge=2, le=100, description="walk-forward folds: each tests on bars after "
                                                             "its training window")
    embargo_bars: int | None = Field(default=None, ge=0, le=100000,
                                     description="bars dropped between train and test; default horizonBars")
    costs: CostsSpec = Field(default_factory=CostsSpec, description="trading costs of the backtest")
    periods_per_year: float | None = Field(default=None, gt=0,
                                           description="inferred from bar spacing when absent")
    min_train_fraction: float = Field(default=0.3, gt=0, lt=1,
                                      description="share of bars in the first fold's training window")
    signal_threshold: float | None = Field(
        default=None, ge=0, lt=0.5,
        description="fixed entry threshold: trade only when |p-0.5| (or |forecast|) exceeds this; absent: "
                    "chosen per fold from positions.entryQuantiles")
    allow_short: bool = Field(default=True, description="false: the position layer never goes short")
    positions: PositionsSpec = Field(default_factory=PositionsSpec,
                                     description="how a score becomes a position, and how large")
    criteria: Criteria = Field(default_factory=Criteria,
                               description="the run's pass/fail criteria (the Model's promotion criteria "
                                           "decide its stage)")
    n_trials: int = Field(default=1, ge=1, description="trials of the search this run belongs to (DSR)")
    prior_trials: int = Field(
        default=0, ge=0,
        description="versions the Model trained before this run (set by the operator); the DSR counts "
                    "(nTrials + priorTrials) x the position layer's candidates as trials")


_check_cpu, _CPU_RULE = quantity_check("cpu", maximum=MAX_CPU, whole=False, unit="cores")
_check_memory, _MEMORY_RULE = quantity_check("memory", maximum=MAX_MEMORY, whole=True, unit="bytes")


class ResourcesSpec(CamelModel):
    """The trainer container's requests, also set as its limits."""

    cpu: Annotated[str, AfterValidator(_check_cpu)] = Field(
        default="1", max_length=64, json_schema_extra=cel(_CPU_RULE),
        description=f"CPU cores, a Kubernetes quantity above 0 and at most {MAX_CPU}: 1, 500m, 2.5")
    memory: Annotated[str, AfterValidator(_check_memory)] = Field(
        default="2Gi", max_length=64, json_schema_extra=cel(_MEMORY_RULE),
        description=f"memory, a Kubernetes quantity of whole bytes above 0 and at most {MAX_MEMORY}: 2Gi, "
                    "512Mi")
    gpu: int = Field(default=0, ge=0, le=16, description="nvidia.com/gpu devices (0: CPU only)")


class Toleration(CamelModel):
    """core/v1 Toleration of the trainer pod."""

    key: str | None = Field(default=None, description="the taint key tolerated; absent with Exists: every "
                                                      "taint")
    operator: str | None = Field(default=None, pattern=r"^(Exists|Equal)$", description="Exists or Equal "
                                                                                        "(default)")
    value: str | None = Field(default=None, description="the taint value tolerated (with Equal)")
    effect: str | None = Field(default=None, pattern=r"^(NoSchedule|PreferNoSchedule|NoExecute)$",
                               description="NoSchedule, PreferNoSchedule or NoExecute; absent: all")
    toleration_seconds: int | None = Field(default=None, description="NoExecute: seconds the pod stays "
                                                                     "after the taint appears")


class TriggerSpec(CamelModel):
    """Why this run exists: shown by ``kubectl clm status`` and counted in the metrics."""

    reason: TriggerReason = Field(default=TriggerReason.MANUAL,
                                  description="manual, periodic, drift, performance, regime or evolution")
    requested_by: Line | None = Field(default=None, max_length=256,
                                      description="who or what asked for the run (a user, an alert)")
    note: Text | None = Field(default=None, max_length=1024, description="free text for people")


def _hyperparameters_json_schema(schema: dict[str, Any]) -> None:
    schema.update(hyperparameters_schema())


def _embargo_rule() -> CelRule:
    """CEL twin of the embargo check of ``TrainingJobTemplate`` (an absent horizon is its default)."""
    default = TargetSpec.model_fields["horizon_bars"].default
    horizon = f"(has(self.target) && has(self.target.horizonBars) ? self.target.horizonBars : {default})"
    # A constant message: one built from the object (messageExpression) costs more than the budget.
    return CelRule(
        rule=f"!has(self.evaluation) || !has(self.evaluation.embargoBars) || "
             f"self.evaluation.embargoBars >= {horizon}",
        message=f"must be at least target.horizonBars ({default} when absent) so that test labels never "
                "overlap training: raise it, or leave it out (it defaults to horizonBars)",
        field_path=".evaluation.embargoBars",
    )


class TrainingJobTemplate(CamelModel):
    """Everything of a TrainingJob spec except ``modelName``: what a Model's ``template`` holds."""

    model_config = ConfigDict(json_schema_extra=cel(_embargo_rule(), *hyperparameter_rules()))

    algorithm: Algorithm = Field(description="xgboost, lightgbm (gradient-boosted trees), nhits, patchtst "
                                             "(deep forecasters) or ppo (reinforcement learning)")
    dataset: DatasetSpec = Field(description="the bars to train and backtest on")
    features: FeaturesSpec = Field(default_factory=FeaturesSpec, description="features computed from the "
                                                                             "bars (past-only)")
    target: TargetSpec = Field(default_factory=TargetSpec, description="what the model predicts")
    hyperparameters: dict[str, Any] = Field(default_factory=dict,
                                            json_schema_extra=_hyperparameters_json_schema)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec,
                                       description="walk-forward backtest: folds, embargo, costs, position "
                                                   "layer, criteria")
    seed: int = Field(default=42, ge=0, le=2**31 - 1, description="random seed: the same spec and data "
                                                                  "train the same model")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="the trainer pod's CPU, "
                                                                                "memory and GPUs")
    node_selector: dict[str, str] = Field(default_factory=dict, description="the trainer pod's nodeSelector")
    tolerations: list[Toleration] = Field(default_factory=list, description="the trainer pod's tolerations")
    priority_class_name: str | None = Field(default=None, description="the trainer pod's PriorityClass")
    image: str | None = Field(default=None, description="trainer image; absent: the operator's default")
    backoff_limit: int = Field(default=2, ge=0, le=20, description="retries of a failed trainer pod (a bad "
                                                                   "spec or bad data is never retried)")
    active_deadline_seconds: int | None = Field(default=None, ge=1,
                                                description="the Job fails after running this long")
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="the finished Job (not the run) is deleted after this long; absent: "
                                        "the operator's default")
    startup_timeout_seconds: int = Field(default=600, ge=1,
                                         description="the run fails when its pod has not started after this "
                                                     "long (unschedulable, image not pulled)")
    queue_name: str | None = Field(default=None, max_length=253,
                                   description="Kueue LocalQueue: the Job is created suspended and Kueue "
                                               "admits it")
    trigger: TriggerSpec = Field(default_factory=TriggerSpec, description="why the run was started")

    @model_validator(mode="after")
    def _hyperparameters_match_algorithm(self) -> TrainingJobTemplate:
        validate_hyperparameters(str(self.algorithm), self.hyperparameters)
        embargo_bars = self.evaluation.embargo_bars
        if embargo_bars is not None and embargo_bars < self.target.horizon_bars:
            raise ValueError(
                f"evaluation.embargoBars ({self.evaluation.embargo_bars}) must be at least "
                f"target.horizonBars ({self.target.horizon_bars}) so that test labels never overlap "
                "training: raise it, or leave it out (it defaults to horizonBars)"
            )
        return self

    @property
    def embargo(self) -> int:
        """The embargo in bars actually applied: at least the target horizon."""
        return max(self.evaluation.embargo_bars or 0, self.target.horizon_bars)

    @property
    def min_holding_bars(self) -> int:
        """The position layer's minimum holding period in bars: the spec's, else HOLD_HORIZONS horizons."""
        return self.evaluation.positions.min_holding_bars or HOLD_HORIZONS * self.target.horizon_bars

    def typed_hyperparameters(self) -> CamelModel:
        return validate_hyperparameters(str(self.algorithm), self.hyperparameters)


class TrainingJobSpec(TrainingJobTemplate):
    """The spec of a TrainingJob (immutable after creation)."""

    model_name: str = Field(min_length=1, max_length=50, pattern=DNS_LABEL,
                            description="the Model this run trains a version of; its ModelVersion is "
                                        "named <modelName>-<version>")
