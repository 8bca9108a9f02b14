"""TrainingJob: one training run. Its spec is also the trainer's input (``clm-trainer run --spec``)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field, field_validator, model_validator

from clm_operator.api.common import CamelModel
from clm_operator.api.hyperparameters import validate_hyperparameters
from clm_operator.api.metrics import Criteria

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"


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

    uri: str = Field(
        pattern=r"^(s3://[^/]+/.+|file://.+|builtin:[a-z][a-z0-9_-]*(\?.*)?)$",
        description="s3://bucket/key.csv|.parquet, file:///path, or builtin:synthetic?kind=planted&seed=7",
    )
    symbol: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._/-]+$")
    timeframe: str = Field(default="1h", pattern=r"^[1-9][0-9]*(m|h|d|w)$")
    start: datetime | None = None
    end: datetime | None = None
    lookback_days: int | None = Field(default=None, ge=1, le=36500)

    @model_validator(mode="after")
    def _window_is_consistent(self) -> DatasetSpec:
        if self.start is not None and self.lookback_days is not None:
            raise ValueError("set either start or lookbackDays, not both")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class FeaturesSpec(CamelModel):
    """Past-only features of the bars. Every window is in bars."""

    return_lags: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 10, 20], max_length=64)
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
    fee_bps: float = Field(default=10.0, ge=0, le=1000)
    slippage_bps: float = Field(default=5.0, ge=0, le=1000)


class Sizing(StrEnum):
    FIXED = "fixed"
    VOLATILITY = "volatility"


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
        description="bars a position is held before it may close or flip; absent: target.horizonBars")
    sizing: Sizing = Field(
        default=Sizing.VOLATILITY,
        description="fixed: every position is 1 (or -1); volatility: min(1, volatilityTarget / trailing "
                    "annualised volatility), set when the position opens and held for the trade")
    volatility_target: float = Field(default=0.1, gt=0, le=10,
                                     description="annualised volatility a full position is scaled to")
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
    folds: int = Field(default=5, ge=2, le=100)
    embargo_bars: int | None = Field(default=None, ge=0, le=100000,
                                     description="bars dropped between train and test; default horizonBars")
    costs: CostsSpec = Field(default_factory=CostsSpec)
    periods_per_year: float | None = Field(default=None, gt=0,
                                           description="inferred from bar spacing when absent")
    min_train_fraction: float = Field(default=0.3, gt=0, lt=1,
                                      description="share of bars in the first fold's training window")
    signal_threshold: float | None = Field(
        default=None, ge=0, lt=0.5,
        description="fixed entry threshold: trade only when |p-0.5| (or |forecast|) exceeds this; absent: "
                    "chosen per fold from positions.entryQuantiles")
    allow_short: bool = True
    positions: PositionsSpec = Field(default_factory=PositionsSpec)
    criteria: Criteria = Field(default_factory=Criteria)
    n_trials: int = Field(default=1, ge=1, description="trials of the search this run belongs to (DSR)")
    prior_trials: int = Field(
        default=0, ge=0,
        description="versions the Model trained before this run (set by the operator); the DSR counts "
                    "(nTrials + priorTrials) x the position layer's candidates as trials")


class ResourcesSpec(CamelModel):
    cpu: str = Field(default="1", pattern=QUANTITY)
    memory: str = Field(default="2Gi", pattern=QUANTITY)
    gpu: int = Field(default=0, ge=0, le=16)


class Toleration(CamelModel):
    key: str | None = None
    operator: str | None = Field(default=None, pattern=r"^(Exists|Equal)$")
    value: str | None = None
    effect: str | None = Field(default=None, pattern=r"^(NoSchedule|PreferNoSchedule|NoExecute)$")
    toleration_seconds: int | None = None


class TriggerSpec(CamelModel):
    reason: TriggerReason = TriggerReason.MANUAL
    requested_by: str | None = Field(default=None, max_length=256)
    note: str | None = Field(default=None, max_length=1024)


class TrainingJobTemplate(CamelModel):
    """Everything of a TrainingJob spec except ``modelName``: what a Model's ``template`` holds."""

    algorithm: Algorithm
    dataset: DatasetSpec
    features: FeaturesSpec = Field(default_factory=FeaturesSpec)
    target: TargetSpec = Field(default_factory=TargetSpec)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    seed: int = Field(default=42, ge=0, le=2**31 - 1)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    priority_class_name: str | None = None
    image: str | None = None
    backoff_limit: int = Field(default=2, ge=0, le=20)
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    ttl_seconds_after_finished: int | None = Field(default=None, ge=0)
    startup_timeout_seconds: int = Field(default=600, ge=1)
    queue_name: str | None = Field(default=None, max_length=253)
    trigger: TriggerSpec = Field(default_factory=TriggerSpec)

    @model_validator(mode="after")
    def _hyperparameters_match_algorithm(self) -> TrainingJobTemplate:
        validate_hyperparameters(str(self.algorithm), self.hyperparameters)
        embargo_bars = self.evaluation.embargo_bars
        if embargo_bars is not None and embargo_bars < self.target.horizon_bars:
            raise ValueError(
                f"evaluation.embargoBars ({self.evaluation.embargo_bars}) must be at least "
                f"target.horizonBars ({self.target.horizon_bars}) so test labels never overlap training"
            )
        return self

    @property
    def embargo(self) -> int:
        """The embargo in bars actually applied: at least the target horizon."""
        return max(self.evaluation.embargo_bars or 0, self.target.horizon_bars)

    def typed_hyperparameters(self) -> CamelModel:
        return validate_hyperparameters(str(self.algorithm), self.hyperparameters)


class TrainingJobSpec(TrainingJobTemplate):
    """The spec of a TrainingJob (immutable after creation)."""

    model_name: str = Field(min_length=1, max_length=50, pattern=DNS_LABEL)
