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
from clm_contract.hyperparameters import LightGBMHyperparameters, XGBoostHyperparameters
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


EARLY_STOPPING = [
    (XGBoostTrainer, XGBoostHyperparameters(n_estimators=200, early_stopping_rounds=20)),
    (LightGBMTrainer, LightGBMHyperparameters(n_estimators=200, early_stopping_rounds=20)),
]


def unpredictable(n: int = 1500, seed: int = 0) -> SeriesData:
    """Labels independent of the features: every tree after the first few fits noise."""
    data = planted(n, seed=seed)
    rng = np.random.default_rng(seed + 100)
    return SeriesData(bars=data.bars, features=data.features, feature_names=data.feature_names,
                      target=0.01 * rng.normal(size=n), horizon_bars=1, target_kind="sign")


@pytest.mark.parametrize(("cls", "hp"), EARLY_STOPPING, ids=["xgboost", "lightgbm"])
def test_early_stopping_stops_on_noise_and_keeps_trees_for_a_signal(cls: type, hp: object) -> None:
    """nEstimators is a maximum: on labels that nothing predicts the held-out loss stops improving at
    once, on the planted signal it keeps improving for many rounds."""
    train = np.arange(1000)
    noise_fits = []
    for seed in range(3):
        model = cls(hp, seed, CPU)
        model.fit(unpredictable(seed=seed), train)
        noise_fits.append(model.rounds)
    signal = cls(hp, 0, CPU)
    signal.fit(planted(), train)
    assert max(noise_fits) < 40, noise_fits
    assert signal.rounds > 2 * max(noise_fits), (signal.rounds, noise_fits)
    assert signal.rounds <= 200


@pytest.mark.parametrize(("cls", "hp"), EARLY_STOPPING, ids=["xgboost", "lightgbm"])
def test_early_stopping_off_or_too_few_rows_trains_every_tree(cls: type, hp: object) -> None:
    assert XGBoostHyperparameters().early_stopping_rounds == 0  # off by default
    assert LightGBMHyperparameters().early_stopping_rounds == 0
    off = cls(hp.model_copy(update={"early_stopping_rounds": 0}), 0, CPU)
    off.fit(unpredictable(), np.arange(1000))
    assert off.rounds == 200
    few = cls(hp, 0, CPU)
    few.fit(unpredictable(), np.arange(40))  # no purged hold-out fits in 40 rows
    assert few.rounds == 200


@pytest.mark.parametrize(("cls", "hp"), EARLY_STOPPING, ids=["xgboost", "lightgbm"])
def test_early_stopping_reads_only_the_training_rows(cls: type, hp: object) -> None:
    """The count is chosen inside the fit's own rows: rows after them (a fold's test bars) cannot move it."""
    data = planted()
    changed = planted()
    changed.features[1000:] = np.random.default_rng(9).normal(size=changed.features[1000:].shape)
    changed.target[1000:] = -changed.target[1000:]
    first, second = cls(hp, 5, CPU), cls(hp, 5, CPU)
    first.fit(data, np.arange(1000))
    second.fit(changed, np.arange(1000))
    assert first.rounds == second.rounds
    rows = np.arange(1000)
    np.testing.assert_array_equal(first.predict(data, rows), second.predict(changed, rows))


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
