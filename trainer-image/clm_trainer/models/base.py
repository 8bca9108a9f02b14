"""The interface every algorithm implements, so walk-forward, backtest and storage never branch on it.

A model sees the whole series (``SeriesData``) but may only *fit* on ``train_idx`` and must produce,
for each index ``t`` in ``predict``'s ``idx``, a score computed from information available at the
close of bar ``t``. Score semantics: > 0 means long, < 0 short; its magnitude is compared with
``evaluation.signalThreshold`` (classifiers: p(up) - 0.5; forecasters: forecast return scaled by the
model's own estimate of its typical size, see each implementation).

A trainer whose class sets ``outputs_positions = True`` (PPO) returns target *positions* in [-1, 1]
from ``predict`` instead of scores: the pipeline then skips the position layer and backtests them as
they are (clipped to [0, 1] when shorts are off), with the same costs and metrics as every other model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd
from clm_contract.common import CamelModel


@dataclass(frozen=True)
class TradingTerms:
    """The run's trading costs and short rule (spec.evaluation), for models that learn from net returns.

    Defaults are the spec's defaults; the pipeline sets the run's own values.
    """

    fee_bps: float = 10.0
    slippage_bps: float = 5.0
    allow_short: bool = True


@dataclass(frozen=True)
class SeriesData:
    """Cleaned bars plus past-only features and the forward-looking target, all row-aligned."""

    bars: pd.DataFrame  # DatetimeIndex (UTC, ascending, unique); columns open, high, low, close, volume
    features: np.ndarray  # (n, f) float32; row t uses bars <= t only; NaN where warm-up is incomplete
    feature_names: list[str]
    target: np.ndarray  # (n,) float64 forward return close[t+h]/close[t]-1; NaN for the last h rows
    horizon_bars: int
    bar_returns: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    # bar_returns[t] = close[t]/close[t-1]-1 (0 for t=0): what a position held over bar t earns
    target_kind: str = "sign"  # spec.target.kind: "sign" (classify up/down) or "return" (regress it)
    trading: TradingTerms = field(default_factory=TradingTerms)  # costs a position-output model learns under


@dataclass(frozen=True)
class DeviceChoice:
    """Where to train: the trainer decides once (spec asks for a GPU and one exists) and logs why."""

    kind: str  # "cpu" or "cuda"
    reason: str


class ModelTrainer(Protocol):
    """One algorithm. Instances are created per fit (fresh state), configured by the typed hyperparameters."""

    algorithm: str
    artifact_format: str  # e.g. "xgboost-ubj", "lightgbm-text", "torch-state-dict"
    # True: predict() returns positions in [-1, 1], used as they are (no position layer). Default False.
    outputs_positions: ClassVar[bool]
    # The training budget that applied ({"name": "cpu"|"full", "reason", "settings"}), None if the
    # algorithm has none (trees). Logged and recorded in the manifest and the artifact's config.
    budget: dict[str, Any] | None

    def fit(self, data: SeriesData, train_idx: np.ndarray) -> None: ...

    def predict(self, data: SeriesData, idx: np.ndarray) -> np.ndarray:
        """Scores for rows ``idx`` (same length), each from information up to that row only."""
        ...

    def save(self, directory: Path) -> Path:
        """Write the artifact in the library's portable format (never pickle); return the main file."""
        ...

    def feature_importance(self) -> dict[str, float] | None: ...


class ModelFactory(Protocol):
    def __call__(self, hyperparameters: CamelModel, seed: int, device: DeviceChoice) -> ModelTrainer: ...
