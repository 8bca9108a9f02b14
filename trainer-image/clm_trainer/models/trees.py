"""Gradient-boosted trees: XGBoost and LightGBM through their native APIs (no scikit-learn).

Target kinds (``SeriesData.target_kind``):

* ``sign``: binary classifier of "forward return > 0"; score = p(up) - 0.5.
* ``return``: regression of the forward return; score = forecast / std of the training targets, so
  ``evaluation.signalThreshold`` is in units of the target's typical size.

Both are seeded and run with a fixed thread count, which makes CPU training deterministic.
Artifacts are the libraries' own portable formats (XGBoost UBJSON, LightGBM text), never pickle.

Number of trees: ``nEstimators``. With ``earlyStoppingRounds`` N > 0 it is a maximum: the fit first
trains on the earlier rows of its training rows and watches the loss on their last 20 %
(``walkforward.inner_validation_split``: purged by the horizon, so no fitted label overlaps a held-out
bar), stops after N rounds without improvement, then refits on all its training rows with the best
number of rounds. The count is chosen on training rows only, by the loss rather than by any backtest,
so it is not a trial of the DSR. Too few rows for the hold-out: ``nEstimators`` trees. It is off by
default: on the planted series the log loss of overlapping-horizon labels is too noisy a guide (see
``clm_contract.hyperparameters`` for the measurement).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from clm_contract.common import CamelModel
from clm_contract.hyperparameters import LightGBMHyperparameters, XGBoostHyperparameters

from clm_trainer.device import lightgbm_gpu_device_type, thread_count
from clm_trainer.models.base import DeviceChoice, SeriesData
from clm_trainer.walkforward import WalkForwardError, inner_validation_split

HyperparametersT = TypeVar("HyperparametersT", bound=CamelModel)
# (fit features, fit labels, held-out features, held-out labels) -> the best number of rounds
RoundsProbe = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], int]

EARLY_STOPPING_FRACTION = 0.2  # the held-out share of a fit's training rows (see the module docstring)


def early_stopping_split(data: SeriesData, train_idx: np.ndarray,
                         patience: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(rows the probe fit sees, held-out rows) inside ``train_idx``, or None: no early stopping
    (``patience`` 0, or too few rows for a purged hold-out)."""
    if patience <= 0:
        return None
    try:
        return inner_validation_split(train_idx, fraction=EARLY_STOPPING_FRACTION,
                                      embargo=data.horizon_bars, horizon=data.horizon_bars)
    except WalkForwardError:
        return None


class _BoostedTrees(Generic[HyperparametersT]):
    """What both libraries share: labels, the score convention, state checks and saving."""

    algorithm: str
    artifact_format: str
    artifact_name: str
    hyperparameter_type: type[HyperparametersT]
    outputs_positions: ClassVar[bool] = False  # scores, turned into positions by the position layer
    budget: dict[str, Any] | None = None  # trees need no training budget: they are fast on any CPU

    def __init__(self, hyperparameters: CamelModel, seed: int, device: DeviceChoice) -> None:
        if not isinstance(hyperparameters, self.hyperparameter_type):
            expected, got = self.hyperparameter_type.__name__, type(hyperparameters).__name__
            raise TypeError(f"expected {expected}, got {got}")
        self.hp: HyperparametersT = hyperparameters
        self.seed = seed
        self.device = device
        self._booster: Any = None
        self._scale = 1.0
        self._kind = "sign"
        self._feature_names: list[str] = []
        self.rounds = 0  # trees in the fitted model (early stopping may choose fewer than nEstimators)

    def _labels(self, data: SeriesData, idx: np.ndarray) -> np.ndarray:
        """Training labels for ``idx``; remembers the target kind, feature names and the score scale."""
        if idx.size == 0:
            raise ValueError("no training rows")
        target: np.ndarray = np.asarray(data.target[idx], dtype="float64")
        if not np.isfinite(target).all():
            raise ValueError("training rows must all have a label (finite target)")
        self._kind = data.target_kind
        self._feature_names = list(data.feature_names)
        if self._kind == "sign":
            self._scale = 1.0
            labels: np.ndarray = (target > 0).astype("float64")
            return labels
        scale = float(np.std(target))
        self._scale = scale if scale > 0 else 1.0
        return target

    def _rounds_and_labels(self, data: SeriesData, train_idx: np.ndarray, probe: RoundsProbe, *,
                           max_rounds: int, patience: int) -> tuple[int, np.ndarray]:
        """(number of trees, labels of ``train_idx``): ``probe(fit_x, fit_y, held_x, held_y)`` trains
        with early stopping and returns its best round count (see the module docstring)."""
        labels = self._labels(data, train_idx)
        split = early_stopping_split(data, train_idx, patience)
        self.rounds = max_rounds
        if split is not None:
            fit_rows, held_rows = split
            position = np.searchsorted(train_idx, fit_rows), np.searchsorted(train_idx, held_rows)
            self.rounds = max(1, int(probe(data.features[fit_rows], labels[position[0]],
                                           data.features[held_rows], labels[position[1]])))
        return self.rounds, labels

    def _booster_or_raise(self, action: str) -> Any:
        if self._booster is None:
            raise RuntimeError(f"{action} before fit")
        return self._booster

    def _scores(self, raw: Any) -> np.ndarray:
        values = np.asarray(raw, dtype="float64")
        return values - 0.5 if self._kind == "sign" else values / self._scale

    def save(self, directory: Path) -> Path:
        path = directory / self.artifact_name
        self._booster_or_raise("save").save_model(str(path))
        return path


class XGBoostTrainer(_BoostedTrees[XGBoostHyperparameters]):
    algorithm, artifact_format, artifact_name = "xgboost", "xgboost-ubj", "model.ubj"
    hyperparameter_type = XGBoostHyperparameters

    def _params(self, kind: str) -> dict[str, Any]:
        hp = self.hp
        return {
            "objective": "binary:logistic" if kind == "sign" else "reg:squarederror",
            "eta": hp.learning_rate,
            "max_depth": hp.max_depth,
            "subsample": hp.subsample,
            "colsample_bytree": hp.colsample_bytree,
            "min_child_weight": hp.min_child_weight,
            "lambda": hp.reg_lambda,
            "alpha": hp.reg_alpha,
            "gamma": hp.gamma,
            "tree_method": "hist",
            "device": "cuda" if self.device.kind == "cuda" else "cpu",
            "nthread": thread_count(),
            "seed": self.seed,
            "verbosity": 0,
        }

    def fit(self, data: SeriesData, train_idx: np.ndarray) -> None:
        import xgboost

        def probe(fit_x: np.ndarray, fit_y: np.ndarray, held_x: np.ndarray, held_y: np.ndarray) -> int:
            fit = xgboost.DMatrix(fit_x, label=fit_y, feature_names=self._feature_names, missing=np.nan)
            held = xgboost.DMatrix(held_x, label=held_y, feature_names=self._feature_names, missing=np.nan)
            booster = xgboost.train(self._params(self._kind), fit, num_boost_round=self.hp.n_estimators,
                                    evals=[(held, "held_out")],
                                    early_stopping_rounds=self.hp.early_stopping_rounds, verbose_eval=False)
            return int(booster.best_iteration) + 1

        rounds, labels = self._rounds_and_labels(data, train_idx, probe, max_rounds=self.hp.n_estimators,
                                                  patience=self.hp.early_stopping_rounds)
        matrix = xgboost.DMatrix(data.features[train_idx], label=labels, feature_names=self._feature_names,
                                 missing=np.nan)
        self._booster = xgboost.train(self._params(self._kind), matrix, num_boost_round=rounds)

    def predict(self, data: SeriesData, idx: np.ndarray) -> np.ndarray:
        import xgboost

        booster = self._booster_or_raise("predict")
        matrix = xgboost.DMatrix(data.features[idx], feature_names=self._feature_names, missing=np.nan)
        return self._scores(booster.predict(matrix))

    def feature_importance(self) -> dict[str, float] | None:
        if self._booster is None:
            return None
        gains = self._booster.get_score(importance_type="gain")
        return {name: float(gains.get(name, 0.0)) for name in self._feature_names}


class LightGBMTrainer(_BoostedTrees[LightGBMHyperparameters]):
    algorithm, artifact_format, artifact_name = "lightgbm", "lightgbm-text", "model.txt"
    hyperparameter_type = LightGBMHyperparameters

    def _params(self, kind: str) -> dict[str, Any]:
        hp = self.hp
        params: dict[str, Any] = {
            "objective": "binary" if kind == "sign" else "regression",
            "learning_rate": hp.learning_rate,
            "num_leaves": hp.num_leaves,
            "max_depth": hp.max_depth,
            "bagging_fraction": hp.subsample,
            "bagging_freq": 1 if hp.subsample < 1 else 0,
            "feature_fraction": hp.colsample_bytree,
            "min_data_in_leaf": hp.min_child_samples,
            "lambda_l2": hp.reg_lambda,
            "lambda_l1": hp.reg_alpha,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": thread_count(),
            "verbose": -1,
        }
        if self.device.kind == "cuda":
            device_type = lightgbm_gpu_device_type()
            if device_type is not None:
                params["device_type"] = device_type
        return params

    def fit(self, data: SeriesData, train_idx: np.ndarray) -> None:
        import lightgbm

        def probe(fit_x: np.ndarray, fit_y: np.ndarray, held_x: np.ndarray, held_y: np.ndarray) -> int:
            fit = lightgbm.Dataset(fit_x, label=fit_y, feature_name=self._feature_names, free_raw_data=True)
            held = lightgbm.Dataset(held_x, label=held_y, reference=fit, free_raw_data=True)
            booster = lightgbm.train(self._params(self._kind), fit, num_boost_round=self.hp.n_estimators,
                                     valid_sets=[held], valid_names=["held_out"],
                                     callbacks=[lightgbm.early_stopping(self.hp.early_stopping_rounds,
                                                                        verbose=False)])
            return int(booster.best_iteration) or self.hp.n_estimators

        rounds, labels = self._rounds_and_labels(data, train_idx, probe, max_rounds=self.hp.n_estimators,
                                                  patience=self.hp.early_stopping_rounds)
        dataset = lightgbm.Dataset(data.features[train_idx], label=labels, feature_name=self._feature_names,
                                   free_raw_data=True)
        self._booster = lightgbm.train(self._params(self._kind), dataset, num_boost_round=rounds)

    def predict(self, data: SeriesData, idx: np.ndarray) -> np.ndarray:
        return self._scores(self._booster_or_raise("predict").predict(data.features[idx]))

    def feature_importance(self) -> dict[str, float] | None:
        if self._booster is None:
            return None
        gains = self._booster.feature_importance(importance_type="gain")
        return {name: float(g) for name, g in zip(self._feature_names, gains, strict=True)}
