"""What the PyTorch forecasters (N-HiTS, PatchTST) share: windowing, normalisation, the training loop
with early stopping, device/AMP handling, batch inference, the artifact format and its loader.

How a forecaster trades (the score contract of ``models/base.py``)
------------------------------------------------------------------
The series a forecaster sees is the log return of the close, ``r[t] = log(close[t] / close[t-1])``
(``r[0]`` does not exist and is never used). For each bar ``t`` the model reads the past window
``r[t-L+1 .. t]`` (information available at the close of ``t``) and forecasts the next ``H`` log
returns ``r[t+1 .. t+H]`` (``H`` = ``spec.target.horizonBars``). Inputs and targets are normalised
with the mean and standard deviation of ``r`` over the TRAINING rows only.

The score at ``t`` is the forecast cumulative log return over the horizon divided by the standard
deviation of the realised horizon log returns of the training windows: a forecast in "typical
horizon moves", so ``evaluation.signalThreshold`` means the same for every asset and bar size
(0.1 = a forecast of a tenth of a typical move). Rows without a full input window score 0 (flat).

Training windows are the rows ``t`` of ``train_idx`` whose whole target ``t+1 .. t+H`` also lies in
``train_idx``: a window never learns from a label that reaches into the test block. With
``maxTrainWindows`` (the CPU budget sets it, ``clm_trainer.models.budget``) only that many of them
are used, evenly spaced over the training rows with the latest kept. Early stopping watches the last
``validationFraction`` of the windows in time order, with ``H`` windows dropped between the two parts
so no training label overlaps a validation label.

Artifact: ``model.pt`` holds ``torch.save(state_dict)`` (tensors only, loadable with
``weights_only=True``) and ``config.json`` the architecture, the normalisation and the score scale.
``load_artifact`` rebuilds the module from ``config.json`` alone, without touching the trainer.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from clm_contract.common import CamelModel
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from clm_trainer.data import DataError
from clm_trainer.models.base import DeviceChoice, SeriesData
from clm_trainer.models.budget import Budget, apply_budget

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = "torch-state-dict"
CONFIG_FORMAT = "clm-torch-forecaster/v1"
WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "config.json"

# Which module class rebuilds an artifact: import paths, so the loader needs no trainer code.
ARCHITECTURES: dict[str, str] = {
    "nhits": "clm_trainer.models.nhits:NHiTS",
    "patchtst": "clm_trainer.models.patchtst:PatchTST",
}

_MIN_TRAIN_WINDOWS = 32

_H = TypeVar("_H", bound=CamelModel)


def as_hyperparameters(model: type[_H], given: CamelModel | None) -> _H:
    """The typed hyperparameters of this algorithm, from its own model, another CamelModel or None.

    Only the keys ``given`` sets are carried over, so the training budget still sees which are unset.
    """
    if isinstance(given, model):
        return given
    values = given.model_dump(by_alias=True, exclude_unset=True) if given is not None else {}
    parsed: _H = model.model_validate(values)
    return parsed


class DeepTrainingError(DataError):
    """Too little data for the chosen window/horizon, or a similar problem the spec must fix.

    A DataError, so the CLI reports it as permanent (exit 2) with the field and the fix.
    """


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class TrainingConfig:
    max_epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3
    patience: int = 5
    validation_fraction: float = 0.2
    weight_decay: float = 0.0
    mixed_precision: bool = True
    loss: str = "mse"
    gradient_clip_norm: float = 1.0
    max_train_windows: int | None = None

    @classmethod
    def from_hyperparameters(cls, hp: CamelModel) -> TrainingConfig:
        names = cls.__dataclass_fields__.keys()
        return cls(**{name: getattr(hp, name) for name in names})


@dataclass
class TrainingLog:
    """What happened in one fit: reported in the manifest and used by the benchmark."""

    device: str
    amp_dtype: str | None
    train_windows: int
    validation_windows: int
    epochs: int = 0
    best_epoch: int = 0
    best_validation_loss: float = math.inf
    train_losses: list[float] = field(default_factory=list)
    validation_losses: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    epoch_cpu_seconds: list[float] = field(default_factory=list)  # process CPU time: steadier on busy hosts

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """What is reproducible about the fit (no wall-clock figures)."""
        return {"trainWindows": self.train_windows, "validationWindows": self.validation_windows,
                "epochs": self.epochs, "bestEpoch": self.best_epoch,
                "bestValidationLoss": self.best_validation_loss, "validationLosses": self.validation_losses}


def torch_threads() -> int:
    """A fixed thread count: results on CPU depend on it, so it never floats with the machine's load.

    ``CLM_TORCH_THREADS`` wins; else 1. One thread, not the pod's CPU count: intra-op parallelism on
    these small batches gains little on a quiet node and costs a lot on a shared one (threads spin at
    OpenMP barriers): on the shared 2-core machine two threads trained PatchTST 11x slower than one
    (bench/README.md). Set ``CLM_TORCH_THREADS`` for a large CPU node with the cores to itself.
    """
    configured = os.environ.get("CLM_TORCH_THREADS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return 1


@contextlib.contextmanager
def fixed_threads(threads: int | None = None) -> Iterator[None]:
    """Inference with the same thread count as training (CPU kernels may block work by thread count)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or torch_threads())
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def deterministic_torch(seed: int, threads: int | None = None) -> Iterator[None]:
    """Seed every generator and ask for deterministic kernels; restore the process settings after.

    ``warn_only`` because a few CUDA kernels have no deterministic variant: on CPU every op we use is
    deterministic, which is what the reproducibility guarantee covers.
    """
    previous_threads = torch.get_num_threads()
    previous_det = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads or torch_threads())
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_det, warn_only=previous_warn)
        torch.set_num_threads(previous_threads)


def resolve_device(choice: DeviceChoice) -> torch.device:
    if choice.kind == "cuda":
        if torch.cuda.is_available():
            # cuBLAS is only deterministic with a fixed workspace; it must be set before its first use.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            return torch.device("cuda")
        log.warning("device=cuda requested (%s) but torch sees no CUDA device; training on CPU",
                    choice.reason)
    return torch.device("cpu")


def amp_dtype_for(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 where the GPU has it (no loss scaling needed), else fp16 with a GradScaler; never on CPU."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# ----------------------------------------------------------------------------- windows


def log_returns(close: np.ndarray) -> np.ndarray:
    """``r[t] = log(close[t]/close[t-1])``; ``r[0] = 0`` as a placeholder no window ever reads."""
    close = np.asarray(close, dtype=np.float64)
    out = np.zeros(len(close), dtype=np.float64)
    out[1:] = np.diff(np.log(close))
    return out


def window_inputs(series: np.ndarray, ends: np.ndarray, input_size: int) -> np.ndarray:
    """Rows ``series[t-L+1 .. t]`` for each ``t`` in ``ends`` (every ``t >= L-1``), shape (m, L)."""
    views = sliding_window_view(series, input_size)  # views[i] = series[i .. i+L-1]
    rows: np.ndarray = np.ascontiguousarray(views[np.asarray(ends, dtype=np.int64) - input_size + 1])
    return rows


def window_targets(series: np.ndarray, ends: np.ndarray, horizon: int) -> np.ndarray:
    """Rows ``series[t+1 .. t+H]`` for each ``t`` in ``ends`` (every ``t + H < len``), shape (m, H)."""
    views = sliding_window_view(series, horizon)
    return np.ascontiguousarray(views[np.asarray(ends, dtype=np.int64) + 1])


def training_window_ends(n: int, train_idx: np.ndarray, input_size: int, horizon: int,
                         first_valid: int = 0) -> np.ndarray:
    """Rows of ``train_idx`` with a full input window and their whole target inside ``train_idx``."""
    in_train = np.zeros(n + 1, dtype=np.int64)
    in_train[np.asarray(train_idx, dtype=np.int64)] = 1
    in_train[n] = 0
    count = np.concatenate([[0], np.cumsum(in_train)])  # count[k] = train rows in [0, k)
    t = np.unique(np.asarray(train_idx, dtype=np.int64))
    t = t[(t - input_size + 1 >= first_valid) & (t + horizon < n)]
    targets_in_train = (count[t + horizon + 1] - count[t + 1]) == horizon
    ends: np.ndarray = t[targets_in_train]
    return ends


def spread_windows(ends: np.ndarray, limit: int | None) -> np.ndarray:
    """At most ``limit`` of ``ends``, evenly spaced (every k-th counted back from the latest), in order."""
    if limit is None or len(ends) <= limit:
        return ends
    stride = -(-len(ends) // limit)  # ceil: never more than `limit`
    kept: np.ndarray = ends[::-1][::stride][::-1]
    return kept


def prediction_window_ends(idx: np.ndarray, input_size: int, first_valid: int = 0) -> np.ndarray:
    """Boolean mask over ``idx``: rows with a full past window (the others cannot be forecast)."""
    return np.asarray(idx, dtype=np.int64) - input_size + 1 >= first_valid


# ----------------------------------------------------------------------------- module plumbing


class NormalisedForecaster(nn.Module):
    """Wraps a forecasting core with the training normalisation, so raw windows map to raw forecasts.

    The statistics are buffers: they travel inside the state_dict and the artifact is self-contained.
    """

    def __init__(self, core: nn.Module, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.core = core
        self.register_buffer("mean", torch.tensor(float(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(float(std), dtype=torch.float32))

    mean: torch.Tensor
    std: torch.Tensor

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def denormalise(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.std + self.mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        core_out: torch.Tensor = self.core(self.normalise(x))
        return self.denormalise(core_out.float())

    def statistics(self) -> tuple[float, float]:
        mean, std = self.mean, self.std
        assert isinstance(mean, torch.Tensor) and isinstance(std, torch.Tensor)
        return float(mean), float(std)


def build_core(architecture: str, config: dict[str, Any]) -> nn.Module:
    try:
        module_name, class_name = ARCHITECTURES[architecture].split(":")
    except KeyError as exc:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {architecture!r} in {CONFIG_FILE}; known: {known}") from exc
    cls = getattr(importlib.import_module(module_name), class_name)
    return cast(nn.Module, cls(**config))


def _loss_fn(name: str) -> nn.Module:
    if name == "mae":
        return nn.L1Loss()
    if name == "huber":
        return nn.HuberLoss(delta=1.0)
    return nn.MSELoss()


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def batch_predict(module: nn.Module, inputs: np.ndarray | torch.Tensor, device: torch.device,
                  batch_size: int = 4096, amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """Forecasts for many windows at once, in eval mode, float32 on the way out."""
    module.eval()
    x_all = torch.as_tensor(inputs, dtype=torch.float32)
    outputs: list[torch.Tensor] = []
    with torch.inference_mode():
        for part in _batches(len(x_all), batch_size):
            xb = x_all[part].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                outputs.append(module(xb).float().cpu())
    if not outputs:
        return np.empty((0,), dtype=np.float32)
    result: np.ndarray = torch.cat(outputs).numpy()
    return result


def _validation_loss(module: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module,
                     batch_size: int, device: torch.device, amp_dtype: torch.dtype | None) -> float:
    module.eval()
    parts: list[torch.Tensor] = []
    with torch.inference_mode():
        for part in _batches(len(x), batch_size):
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                parts.append(module(x[part]).float())
        return float(loss_fn(torch.cat(parts), y))  # float() synchronises: the epoch's time is complete


def train_module(module: nn.Module, x: np.ndarray, y: np.ndarray, config: TrainingConfig, seed: int,
                 device: torch.device, gap: int = 0) -> TrainingLog:
    """Fit ``module`` (already normalised space) with early stopping on the time-ordered tail of ``x``.

    Restores the weights of the best validation epoch. Windows are shuffled each epoch by a generator
    seeded from ``seed``, so a CPU run is repeatable bit for bit.
    """
    m = len(x)
    n_val = max(1, int(round(config.validation_fraction * m)))
    n_train = m - n_val - gap
    if n_train < _MIN_TRAIN_WINDOWS:
        raise DeepTrainingError(
            "spec.hyperparameters", f"only {n_train} training windows after the validation split ({m} "
            f"windows in all, at least {_MIN_TRAIN_WINDOWS} needed)",
            "use more data (spec.dataset), a smaller input window (spec.hyperparameters.inputSize), a "
            "smaller validationFraction, or a larger spec.evaluation.minTrainFraction")
    amp_dtype = amp_dtype_for(device, config.mixed_precision)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    record = TrainingLog(device=str(device), amp_dtype=str(amp_dtype) if amp_dtype else None,
                         train_windows=n_train, validation_windows=n_val)

    module.to(device)
    x_t = torch.as_tensor(x, dtype=torch.float32).to(device)
    y_t = torch.as_tensor(y, dtype=torch.float32).to(device)
    x_train, y_train = x_t[:n_train], y_t[:n_train]
    x_val, y_val = x_t[m - n_val:], y_t[m - n_val:]
    optimiser = torch.optim.AdamW(module.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    loss_fn = _loss_fn(config.loss)
    shuffler = torch.Generator().manual_seed(seed)
    best_state: dict[str, torch.Tensor] | None = None
    since_best = 0
    for epoch in range(1, config.max_epochs + 1):
        started, cpu_started = time.perf_counter(), time.process_time()
        module.train()
        order = torch.randperm(n_train, generator=shuffler).to(device)
        # Summed on the device: a float() per step would synchronise the GPU every batch.
        total = torch.zeros((), device=device)
        for part in _batches(n_train, config.batch_size):
            rows = order[part]
            xb, yb = x_train[rows], y_train[rows]
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                pred = module(xb)
            loss = loss_fn(pred.float(), yb)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.gradient_clip_norm > 0:
                scaler.unscale_(optimiser)
                nn.utils.clip_grad_norm_(module.parameters(), config.gradient_clip_norm)
            scaler.step(optimiser)
            scaler.update()
            total += loss.detach() * len(rows)
        val_loss = _validation_loss(module, x_val, y_val, loss_fn, config.batch_size * 4, device, amp_dtype)
        record.epoch_seconds.append(time.perf_counter() - started)
        record.epoch_cpu_seconds.append(time.process_time() - cpu_started)
        record.train_losses.append(float(total) / n_train)
        record.validation_losses.append(val_loss)
        record.epochs = epoch
        if val_loss < record.best_validation_loss:
            record.best_validation_loss, record.best_epoch = val_loss, epoch
            best_state = copy.deepcopy(module.state_dict())
            since_best = 0
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return record


# ----------------------------------------------------------------------------- the trainer


class DeepForecastTrainer:
    """A ``ModelTrainer`` around a window -> horizon forecasting module (see the module docstring).

    Subclasses set ``algorithm`` and say how to build the core module from their hyperparameters.
    """

    algorithm: ClassVar[str] = ""
    artifact_format: str = ARTIFACT_FORMAT
    first_valid = 1  # r[0] is a placeholder

    outputs_positions: ClassVar[bool] = False  # scores, turned into positions by the position layer

    def __init__(self, hyperparameters: CamelModel, seed: int, device: DeviceChoice,
                 budget: Budget | None = None) -> None:
        """``hyperparameters`` are the budgeted ones (``models.budget.apply_budget``); ``budget`` says so."""
        self.hyperparameters = hyperparameters
        self.budget_record = budget
        self.budget: dict[str, Any] | None = budget.to_wire() if budget is not None else None
        self.seed = int(seed)
        self.device_choice = device
        self.device = resolve_device(device)
        self.training = TrainingConfig.from_hyperparameters(hyperparameters)
        self.module: NormalisedForecaster | None = None
        self.core_config: dict[str, Any] = {}
        self.input_size = 0
        self.horizon = 0
        self.score_scale = 1.0
        self.training_log: TrainingLog | None = None

    # -- what a subclass provides
    def input_size_for(self, horizon: int) -> int:
        raise NotImplementedError

    def core_config_for(self, input_size: int, horizon: int) -> dict[str, Any]:
        raise NotImplementedError

    # -- generic univariate forecasting, used by the trading interface below and by the MASE tests
    def fit_series(self, series: np.ndarray, train_idx: np.ndarray, horizon: int,
                   first_valid: int = 0) -> TrainingLog:
        """Learn to forecast ``series[t+1..t+H]`` from ``series[t-L+1..t]`` on the rows of ``train_idx``."""
        series = np.asarray(series, dtype=np.float64)
        self.horizon = int(horizon)
        self.input_size = self.input_size_for(self.horizon)
        ends = self._training_ends(len(series), train_idx, first_valid)
        if len(ends) == 0:
            raise DeepTrainingError(
                "spec.hyperparameters",
                f"no training window: an input of {self.input_size} bars plus a horizon of {self.horizon} "
                f"does not fit in the {len(train_idx)} training rows",
                "use more data (spec.dataset) or a smaller input window (spec.hyperparameters.inputSize)")
        stats_rows = np.asarray(train_idx, dtype=np.int64)
        stats_rows = stats_rows[stats_rows >= first_valid]
        mean = float(np.mean(series[stats_rows]))
        std = float(np.std(series[stats_rows]))
        if not math.isfinite(std) or std <= 0:
            raise DeepTrainingError("spec.dataset", "the close prices of the training rows are constant or "
                                    "not finite", "check the dataset and its window (start/end/lookbackDays)")
        x = window_inputs(series, ends, self.input_size)
        y = window_targets(series, ends, self.horizon)
        self.core_config = self.core_config_for(self.input_size, self.horizon)
        with deterministic_torch(self.seed):
            module = NormalisedForecaster(build_core(self.algorithm, self.core_config), mean, std)
            # The loop works in normalised space; the wrapper maps raw windows for inference.
            self.training_log = train_module(
                module.core, (x - mean) / std, (y - mean) / std, self.training, self.seed, self.device,
                gap=self.horizon)
        module.to(self.device).eval()
        self.module = module
        budget = self.budget_record
        log.info("%s trained: device=%s epochs=%d best_epoch=%d windows=%d budget=%s (%s) %s", self.algorithm,
                 self.device, self.training_log.epochs, self.training_log.best_epoch, len(ends),
                 budget.name if budget else "-", budget.reason if budget else "",
                 budget.settings if budget else "")
        return self.training_log

    def _training_ends(self, n: int, train_idx: np.ndarray, first_valid: int) -> np.ndarray:
        ends = training_window_ends(n, train_idx, self.input_size, self.horizon, first_valid)
        return spread_windows(ends, self.training.max_train_windows)

    def forecast_series(self, series: np.ndarray, idx: np.ndarray, first_valid: int = 0) -> np.ndarray:
        """Forecasts (len(idx), H) in the series' units; NaN rows where no full window exists."""
        if self.module is None:
            raise RuntimeError(f"{self.algorithm}: predict called before fit")
        idx = np.asarray(idx, dtype=np.int64)
        out = np.full((len(idx), self.horizon), np.nan, dtype=np.float64)
        ok = prediction_window_ends(idx, self.input_size, first_valid)
        if ok.any():
            x = window_inputs(np.asarray(series, dtype=np.float64), idx[ok], self.input_size)
            amp = amp_dtype_for(self.device, self.training.mixed_precision)
            with fixed_threads():
                out[ok] = batch_predict(self.module, x, self.device, amp_dtype=amp).reshape(-1, self.horizon)
        return out

    # -- the trading interface (ModelTrainer)
    def fit(self, data: SeriesData, train_idx: np.ndarray) -> None:
        series = log_returns(data.bars["close"].to_numpy())
        self.fit_series(series, train_idx, data.horizon_bars, first_valid=self.first_valid)
        ends = self._training_ends(len(series), train_idx, self.first_valid)
        horizon_moves = window_targets(series, ends, self.horizon).sum(axis=1)
        scale = float(np.std(horizon_moves))
        self.score_scale = scale if scale > 0 else 1.0

    def predict(self, data: SeriesData, idx: np.ndarray) -> np.ndarray:
        series = log_returns(data.bars["close"].to_numpy())
        forecasts = self.forecast_series(series, idx, first_valid=self.first_valid)
        scores: np.ndarray = np.nan_to_num(forecasts.sum(axis=1) / self.score_scale, nan=0.0)
        return scores

    def feature_importance(self) -> dict[str, float] | None:
        return None  # a forecaster reads raw returns, not the feature matrix

    def save(self, directory: Path) -> Path:
        if self.module is None:
            raise RuntimeError(f"{self.algorithm}: save called before fit")
        config = {
            "format": CONFIG_FORMAT,
            "algorithm": self.algorithm,
            "architecture": self.core_config,
            "inputSize": self.input_size,
            "horizon": self.horizon,
            "inputTransform": "log-return of close: r[t] = log(close[t]/close[t-1])",
            "normalisation": dict(zip(("mean", "std"), self.module.statistics(), strict=True)),
            "score": {"definition": "sum(forecast[t+1..t+H]) / scale", "scale": self.score_scale},
            "hyperparameters": self.hyperparameters.to_wire(),
            "seed": self.seed,
            "budget": self.budget,
            "torchVersion": torch.__version__,
            # No timings or device here: the same run must write the same bytes (retries compare them).
            "training": self.training_log.summary() if self.training_log else None,
        }
        return write_torch_artifact(Path(directory), self.module, WEIGHTS_FILE, config)



ForecasterHyperparameters = TypeVar("ForecasterHyperparameters", bound=CamelModel)


class BudgetedForecastTrainer(DeepForecastTrainer, Generic[ForecasterHyperparameters]):
    """A forecaster whose typed hyperparameters (``hyperparameter_type``) pass through the training
    budget (``models.budget.apply_budget``) before training: N-HiTS and PatchTST."""

    hyperparameter_type: ClassVar[type[CamelModel]]
    hp: ForecasterHyperparameters

    def __init__(self, hyperparameters: CamelModel | None, seed: int, device: DeviceChoice) -> None:
        given = cast(ForecasterHyperparameters, as_hyperparameters(self.hyperparameter_type, hyperparameters))
        self.hp, budget = apply_budget(self.algorithm, given, device)
        super().__init__(self.hp, seed, device, budget)

# ----------------------------------------------------------------------------- loading and scoring


def write_torch_artifact(directory: Path, module: nn.Module, weights_name: str,
                         config: dict[str, Any]) -> Path:
    """A torch artifact, shared by every torch model: ``weights_name`` holds the module's weights as a
    plain CPU ``state_dict`` of tensors (never pickled objects, so ``torch.load(..., weights_only=True)``
    reads it back) and ``config.json`` the JSON ``config`` (sorted keys: the same run writes the same
    bytes). Returns the weights' path."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / weights_name
    torch.save({k: v.detach().to("cpu").clone() for k, v in module.state_dict().items()}, weights)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return weights


def read_config(directory: Path, expected_format: str = CONFIG_FORMAT) -> dict[str, Any]:
    """``config.json`` of an artifact directory, refused unless its ``format`` is ``expected_format``."""
    config = json.loads((Path(directory) / CONFIG_FILE).read_text())
    if config.get("format") != expected_format:
        raise ValueError(f"{directory}/{CONFIG_FILE}: format {config.get('format')!r}, "
                         f"expected {expected_format}")
    return cast(dict[str, Any], config)


def load_artifact(directory: Path, map_location: str = "cpu") -> NormalisedForecaster:
    """Rebuild the forecaster from ``config.json`` and load ``model.pt`` with ``weights_only=True``.

    The result maps raw input windows (B, inputSize) of log returns to raw forecasts (B, horizon).
    """
    config = read_config(directory)
    module = NormalisedForecaster(build_core(config["algorithm"], config["architecture"]))
    state = torch.load(Path(directory) / WEIGHTS_FILE, map_location=map_location, weights_only=True)
    module.load_state_dict(state)
    return module.eval()


def scores_from_artifact(directory: Path, close: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Scores as the trainer defines them, from a saved artifact and close prices (serving path)."""
    config = read_config(directory)
    module = load_artifact(directory)
    series = log_returns(close)
    idx = np.asarray(idx, dtype=np.int64)
    scores = np.zeros(len(idx), dtype=np.float64)
    ok = prediction_window_ends(idx, int(config["inputSize"]), DeepForecastTrainer.first_valid)
    if ok.any():
        x = window_inputs(series, idx[ok], int(config["inputSize"]))
        with fixed_threads():
            forecast = batch_predict(module, x, torch.device("cpu")).reshape(-1, int(config["horizon"]))
        scores[ok] = forecast.astype(np.float64).sum(axis=1) / float(config["score"]["scale"])
    return scores


# ----------------------------------------------------------------------------- evaluation helpers


def naive_forecast(series: np.ndarray, idx: np.ndarray, horizon: int) -> np.ndarray:
    """The no-change forecast: the last observed value repeated over the horizon, shape (len(idx), H)."""
    last = np.asarray(series, dtype=np.float64)[np.asarray(idx, dtype=np.int64)]
    repeated: np.ndarray = np.repeat(last[:, None], horizon, axis=1)
    return repeated


def mase(actual: np.ndarray, forecast: np.ndarray, baseline: np.ndarray) -> float:
    """Mean absolute error of ``forecast`` scaled by that of ``baseline`` on the same points.

    With ``baseline`` = the naive forecast of the same windows, < 1 means better than "no change".
    (Hyndman & Koehler 2006 scale by the in-sample one-step naive MAE; scaling by the out-of-sample
    naive of the same horizon keeps 1.0 exactly "as good as naive" for multi-step forecasts.)
    """
    actual = np.asarray(actual, dtype=np.float64)
    error = np.nanmean(np.abs(actual - np.asarray(forecast, dtype=np.float64)))
    scale = np.nanmean(np.abs(actual - np.asarray(baseline, dtype=np.float64)))
    if not scale > 0:
        raise ValueError("the baseline forecast is perfect (zero error): MASE is undefined")
    return float(error / scale)


def interpolate_knots(knots: torch.Tensor, horizon: int) -> torch.Tensor:
    """(B, K) knots -> (B, H) by linear interpolation (N-HiTS' hierarchical interpolation)."""
    if knots.shape[-1] == horizon:
        return knots
    return F.interpolate(knots.unsqueeze(1), size=horizon, mode="linear", align_corners=False).squeeze(1)
