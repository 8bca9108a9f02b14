"""XGBoost and LightGBM trainers: learn a known signal, deterministic under a seed, portable artifacts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightgbm
import numpy as np
import pandas as pd
import pytest
import xgboost
from clm_operator.api.hyperparameters import LightGBMHyperparameters, XGBoostHyperparameters
from clm_trainer.device import choose_device, cuda_device_count, thread_count
from clm_trainer.models import REGISTRY, UnknownAlgorithmError, trainer_factory
from clm_trainer.models.base import DeviceChoice, SeriesData
from clm_trainer.models.trees import LightGBMTrainer, XGBoostTrainer

CPU = DeviceChoice("cpu", "test")


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Shared CI cores: OpenMP spin-waiting on an oversubscribed machine is far slower than one thread.
    monkeypatch.setenv("CLM_NUM_THREADS", "1")


def planted(n: int = 1500, kind: str = "sign", seed: int = 0) -> SeriesData:
    """Target = 0.8 * feature 0 + noise: a tree model must find it out of sample."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 4)).astype("float32")
    target = 0.01 * (0.8 * features[:, 0] + 0.6 * rng.normal(size=n))
    bars = pd.DataFrame({"close": np.ones(n)}, index=pd.date_range("2024", periods=n, freq="h", tz="UTC"))
    return SeriesData(bars=bars, features=features, feature_names=["signal", "n1", "n2", "n3"],
                      target=target, horizon_bars=1, target_kind=kind)


TRAINERS = [
    (XGBoostTrainer, XGBoostHyperparameters(n_estimators=60)),
    (LightGBMTrainer, LightGBMHyperparameters(n_estimators=60)),
]


@pytest.mark.parametrize(("cls", "hp"), TRAINERS, ids=["xgboost", "lightgbm"])
@pytest.mark.parametrize("kind", ["sign", "return"])
def test_learns_a_planted_signal_out_of_sample(cls: type, hp: object, kind: str) -> None:
    data = planted(kind=kind)
    train, test = np.arange(1000), np.arange(1000, 1500)
    model = cls(hp, 7, CPU)
    model.fit(data, train)
    scores = model.predict(data, test)
    hit_rate = float(np.mean(np.sign(scores) == np.sign(data.target[test])))
    assert hit_rate > 0.7
    importance = model.feature_importance()
    assert importance is not None and max(importance, key=importance.__getitem__) == "signal"
    if kind == "sign":
        assert np.all(np.abs(scores) <= 0.5)  # p(up) - 0.5


@pytest.mark.parametrize(("cls", "hp"), TRAINERS, ids=["xgboost", "lightgbm"])
def test_same_seed_same_model(cls: type, hp: object) -> None:
    data = planted()
    idx = np.arange(1000)
    first, second = cls(hp, 3, CPU), cls(hp, 3, CPU)
    first.fit(data, idx)
    second.fit(data, idx)
    np.testing.assert_array_equal(first.predict(data, np.arange(1000, 1500)),
                                  second.predict(data, np.arange(1000, 1500)))


def test_xgboost_artifact_reloads_with_the_library_alone(tmp_path: Path) -> None:
    data = planted()
    model = XGBoostTrainer(XGBoostHyperparameters(n_estimators=30), 1, CPU)
    model.fit(data, np.arange(1000))
    path = model.save(tmp_path)
    assert path.name == "model.ubj"
    booster = xgboost.Booster(model_file=str(path))
    test = np.arange(1000, 1500)
    reloaded = booster.predict(xgboost.DMatrix(data.features[test], feature_names=data.feature_names)) - 0.5
    np.testing.assert_allclose(reloaded, model.predict(data, test), rtol=0, atol=1e-7)


def test_lightgbm_artifact_is_text_and_reloads(tmp_path: Path) -> None:
    data = planted()
    model = LightGBMTrainer(LightGBMHyperparameters(n_estimators=30), 1, CPU)
    model.fit(data, np.arange(1000))
    path = model.save(tmp_path)
    assert path.read_text().startswith("tree")  # LightGBM's text format, not a pickle
    booster = lightgbm.Booster(model_file=str(path))
    test = np.arange(1000, 1500)
    reloaded = np.asarray(booster.predict(data.features[test]), dtype="float64")
    np.testing.assert_allclose(reloaded - 0.5, model.predict(data, test))


def test_training_rows_must_be_labelled() -> None:
    data = planted()
    data.target[5] = np.nan
    with pytest.raises(ValueError, match="label"):
        XGBoostTrainer(XGBoostHyperparameters(), 1, CPU).fit(data, np.arange(10))


def test_wrong_hyperparameter_model_is_rejected() -> None:
    with pytest.raises(TypeError):
        XGBoostTrainer(LightGBMHyperparameters(), 1, CPU)


def test_registry_resolves_tree_models_and_rejects_unknown() -> None:
    assert trainer_factory("xgboost") is XGBoostTrainer
    assert trainer_factory("lightgbm") is LightGBMTrainer
    assert set(REGISTRY) == {"xgboost", "lightgbm", "nhits", "patchtst", "ppo"}
    with pytest.raises(UnknownAlgorithmError) as info:
        trainer_factory("random-forest")
    assert info.value.field == "spec.algorithm" and "xgboost" in str(info.value)


def test_tree_pipeline_never_imports_torch() -> None:
    code = ("import sys, clm_trainer.pipeline, clm_trainer.cli\n"
            "from clm_trainer.models import trainer_factory\n"
            "trainer_factory('xgboost'); trainer_factory('lightgbm')\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_device_choice_is_cpu_without_a_request_and_explains_a_missing_gpu() -> None:
    assert choose_device("xgboost", 0) == DeviceChoice("cpu", "spec.resources.gpu is 0")
    choice = choose_device("xgboost", 1)
    if cuda_device_count() == 0:
        assert choice.kind == "cpu" and "no CUDA device" in choice.reason
    else:
        assert choice.kind == "cuda"


def test_thread_count_honours_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLM_NUM_THREADS", "3")
    assert thread_count() == 3
    monkeypatch.delenv("CLM_NUM_THREADS")
    assert thread_count() >= 1
