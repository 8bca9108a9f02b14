"""The shared deep-training machinery: windows, leakage, determinism, early stopping, artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from clm_contract.hyperparameters import NHiTSHyperparameters, PatchTSTHyperparameters
from clm_trainer.models.base import DeviceChoice, SeriesData
from clm_trainer.models.deep import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    DeepTrainingError,
    TrainingConfig,
    load_artifact,
    log_returns,
    mase,
    naive_forecast,
    resolve_device,
    scores_from_artifact,
    train_module,
    training_window_ends,
    window_inputs,
    window_targets,
)
from clm_trainer.models.nhits import NHiTS, NHiTSTrainer
from clm_trainer.models.patchtst import PatchTSTTrainer

from tests.unit.deep_series import CPU


@pytest.fixture(autouse=True)
def _one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small models on a shared 2-core runner: a second thread mostly spins waiting (5x slower here).
    monkeypatch.setenv("CLM_TORCH_THREADS", "1")

SMALL_NHITS = NHiTSHyperparameters(input_size=24, mlp_units=32, max_epochs=4, batch_size=64)
SMALL_PATCHTST = PatchTSTHyperparameters(input_size=32, patch_len=8, stride=4, d_model=16, n_heads=4,
                                         n_layers=1, d_ff=32, max_epochs=4, batch_size=64)


def market(n: int = 1500, seed: int = 0, horizon: int = 3) -> SeriesData:
    """Bars whose log returns follow an AR(1): enough structure for a forecaster to fit."""
    rng = np.random.default_rng(seed)
    r = np.zeros(n)
    shocks = rng.normal(0, 0.01, n)
    for t in range(1, n):
        r[t] = 0.3 * r[t - 1] + shocks[t]
    close = 100 * np.exp(np.cumsum(r))
    index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    bars = pd.DataFrame({"open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
                         "volume": 1.0}, index=index)
    target = np.full(n, np.nan)
    target[:-horizon] = close[horizon:] / close[:-horizon] - 1
    bar_returns = np.concatenate([[0.0], close[1:] / close[:-1] - 1])
    return SeriesData(bars=bars, features=np.zeros((n, 1), dtype=np.float32), feature_names=["x"],
                      target=target, horizon_bars=horizon, bar_returns=bar_returns)


def test_windows_line_up_with_the_series() -> None:
    series = np.arange(20.0)
    ends = np.array([4, 10])
    np.testing.assert_array_equal(window_inputs(series, ends, 3), [[2, 3, 4], [8, 9, 10]])
    np.testing.assert_array_equal(window_targets(series, ends, 2), [[5, 6], [11, 12]])


def test_training_windows_keep_targets_inside_the_training_rows() -> None:
    train = np.concatenate([np.arange(0, 50), np.arange(60, 80)])  # a hole at 50..59
    ends = training_window_ends(100, train, input_size=5, horizon=3, first_valid=1)
    assert ends.min() == 5  # first full window reads rows 1..5 (row 0 has no return)
    for t in ends:
        assert t in train and all(t + k in train for k in (1, 2, 3))
    assert 46 in ends and 47 not in ends  # 47's target reaches row 50
    assert 76 in ends and 77 not in ends


def test_future_rows_cannot_change_the_fit() -> None:
    """Leakage guard: rows after the training span (normalisation included) leave the fit bit-identical."""
    data = market(900)
    altered_close = data.bars["close"].to_numpy().copy()
    altered_close[700:] *= np.exp(np.cumsum(np.full(200, 0.05)))
    altered = SeriesData(bars=data.bars.assign(close=altered_close), features=data.features,
                         feature_names=data.feature_names, target=data.target, horizon_bars=3,
                         bar_returns=data.bar_returns)
    train = np.arange(0, 697)  # targets end at row 699
    first = NHiTSTrainer(SMALL_NHITS, seed=5, device=CPU)
    first.fit(data, train)
    second = NHiTSTrainer(SMALL_NHITS, seed=5, device=CPU)
    second.fit(altered, train)
    assert first.module is not None and second.module is not None
    for key, value in first.module.state_dict().items():
        assert torch.equal(value, second.module.state_dict()[key]), key
    assert first.score_scale == second.score_scale


@pytest.mark.parametrize("factory", [lambda s: NHiTSTrainer(SMALL_NHITS, s, CPU),
                                     lambda s: PatchTSTTrainer(SMALL_PATCHTST, s, CPU)])
def test_seeded_fits_are_identical_and_seeds_matter(factory: object) -> None:
    data = market(800)
    train = np.arange(0, 600)
    preds = []
    for seed in (11, 11, 12):
        model = factory(seed)  # type: ignore[operator]
        model.fit(data, train)
        preds.append(model.predict(data, np.arange(600, 800)))
    np.testing.assert_array_equal(preds[0], preds[1])
    assert not np.array_equal(preds[0], preds[2])


def test_scores_are_forecast_sums_in_units_of_typical_horizon_moves() -> None:
    data = market(1000)
    model = NHiTSTrainer(SMALL_NHITS, seed=0, device=CPU)
    train = np.arange(0, 800)
    model.fit(data, train)
    series = log_returns(data.bars["close"].to_numpy())
    ends = training_window_ends(len(series), train, model.input_size, 3, first_valid=1)
    expected_scale = np.std(window_targets(series, ends, 3).sum(axis=1))
    assert model.score_scale == pytest.approx(expected_scale, rel=1e-12)
    idx = np.array([0, 5, 850, 900])
    scores = model.predict(data, idx)
    assert scores[0] == 0.0 and scores[1] == 0.0  # no full input window yet: flat
    forecasts = model.forecast_series(series, idx[2:], first_valid=1)
    np.testing.assert_allclose(scores[2:], forecasts.sum(axis=1) / expected_scale)


def test_artifact_reloads_bit_for_bit(tmp_path: Path) -> None:
    data = market(900)
    for trainer in (NHiTSTrainer(SMALL_NHITS, 3, CPU), PatchTSTTrainer(SMALL_PATCHTST, 3, CPU)):
        trainer.fit(data, np.arange(0, 700))
        directory = tmp_path / trainer.algorithm
        main = trainer.save(directory)
        assert main == directory / WEIGHTS_FILE and trainer.artifact_format == "torch-state-dict"
        state = torch.load(main, weights_only=True)  # tensors only: safe loader accepts it
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        config = json.loads((directory / CONFIG_FILE).read_text())
        assert config["algorithm"] == trainer.algorithm and config["horizon"] == 3
        assert config["normalisation"]["std"] > 0 and config["score"]["scale"] == trainer.score_scale
        idx = np.arange(650, 900)
        expected = trainer.predict(data, idx)
        reloaded = scores_from_artifact(directory, data.bars["close"].to_numpy(), idx)
        np.testing.assert_array_equal(reloaded, expected)
        module = load_artifact(directory)
        series = log_returns(data.bars["close"].to_numpy())
        x = torch.as_tensor(window_inputs(series, idx, trainer.input_size), dtype=torch.float32)
        with torch.inference_mode():
            assert trainer.module is not None
            torch.testing.assert_close(module(x), trainer.module(x), rtol=0, atol=0)


def test_early_stopping_restores_the_best_epoch() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16))
    y = rng.normal(size=(400, 2))  # pure noise: validation loss stops improving quickly
    module = NHiTS(input_size=16, horizon=2, pool_kernel_sizes=[1], freq_downsample=[1], mlp_units=128)
    config = TrainingConfig(max_epochs=60, batch_size=32, learning_rate=3e-3, patience=3)
    torch.manual_seed(0)
    record = train_module(module, x, y, config, seed=0, device=torch.device("cpu"))
    assert record.epochs < 60
    assert record.epochs == record.best_epoch + 3
    assert record.best_validation_loss == min(record.validation_losses)
    with torch.inference_mode():
        val_x = torch.as_tensor(x[-80:], dtype=torch.float32)
        val_y = torch.as_tensor(y[-80:], dtype=torch.float32)
        val_loss = torch.nn.functional.mse_loss(module.eval()(val_x), val_y)
    assert float(val_loss) == pytest.approx(record.best_validation_loss, rel=1e-5)


def test_too_little_data_is_a_clear_error() -> None:
    data = market(200)
    with pytest.raises(DeepTrainingError, match="training windows") as info:
        NHiTSTrainer(SMALL_NHITS, 0, CPU).fit(data, np.arange(0, 60))
    assert info.value.field == "spec.hyperparameters"
    with pytest.raises(DeepTrainingError, match="no training window"):
        PatchTSTTrainer(SMALL_PATCHTST, 0, CPU).fit(data, np.arange(0, 30))


def test_cuda_request_without_a_gpu_falls_back_to_cpu() -> None:
    if torch.cuda.is_available():
        assert resolve_device(DeviceChoice("cuda", "test")).type == "cuda"
    else:
        assert resolve_device(DeviceChoice("cuda", "test")).type == "cpu"
    assert resolve_device(DeviceChoice("cpu", "test")).type == "cpu"


def test_mase_is_relative_to_the_naive_forecast() -> None:
    series = np.array([1.0, 2.0, 4.0, 3.0, 5.0, 6.0])
    idx = np.array([1, 2, 3])
    naive = naive_forecast(series, idx, 2)
    np.testing.assert_array_equal(naive, [[2, 2], [4, 4], [3, 3]])
    actual = window_targets(series, idx, 2)
    assert mase(actual, naive, naive) == 1.0
    assert mase(actual, actual, naive) == 0.0
    assert mase(actual, naive + 10, naive) > 1.0
    with pytest.raises(ValueError, match="undefined"):
        mase(actual, naive, actual)


def test_the_same_run_writes_the_same_bytes(tmp_path: Path) -> None:
    """A retried run re-uploads identical files (the pipeline's resume compares them)."""
    data = market(700)
    written = []
    for attempt in ("a", "b"):
        trainer = NHiTSTrainer(SMALL_NHITS, 9, CPU)
        trainer.fit(data, np.arange(0, 600))
        trainer.save(tmp_path / attempt)
        written.append([(tmp_path / attempt / name).read_bytes() for name in (WEIGHTS_FILE, CONFIG_FILE)])
    assert written[0] == written[1]


def test_cpu_budget_caps_epochs_and_windows_unless_the_spec_sets_them() -> None:
    from clm_contract.hyperparameters import validate_hyperparameters
    from clm_trainer.models.budget import CPU_CAPS

    for cls, algorithm in ((NHiTSTrainer, "nhits"), (PatchTSTTrainer, "patchtst")):
        caps = CPU_CAPS[algorithm]
        on_cpu = cls(validate_hyperparameters(algorithm, {}), 0, CPU)
        assert on_cpu.training.max_epochs == caps["max_epochs"]
        assert on_cpu.training.max_train_windows == caps["max_train_windows"]
        assert on_cpu.budget is not None and on_cpu.budget["name"] == "cpu"
        assert set(on_cpu.budget["settings"]) == {"maxEpochs", "maxTrainWindows"}
        given = cls(validate_hyperparameters(algorithm, {"maxEpochs": 3}), 0, CPU)
        assert given.training.max_epochs == 3
        assert given.training.max_train_windows == caps["max_train_windows"]
        assert given.budget is not None and "maxEpochs" in given.budget["reason"]
        full = cls(validate_hyperparameters(algorithm, {"budget": "full"}), 0, CPU)
        assert full.training.max_epochs == 30 and full.training.max_train_windows is None
        gpu = cls(validate_hyperparameters(algorithm, {}), 0, DeviceChoice("cuda", "1 GPU requested"))
        assert gpu.training.max_epochs == 30 and gpu.training.max_train_windows is None
        assert gpu.budget is not None and gpu.budget["name"] == "full"


def test_window_cap_spreads_the_windows_over_the_training_rows() -> None:
    from clm_trainer.models.deep import spread_windows

    ends = np.arange(100, 1100)
    kept = spread_windows(ends, 64)
    assert len(kept) <= 64 and kept[-1] == 1099 and kept[0] < 200  # the latest kept, history covered
    assert (np.diff(kept) == np.diff(kept)[0]).all()
    np.testing.assert_array_equal(spread_windows(ends, None), ends)
    np.testing.assert_array_equal(spread_windows(ends, 5000), ends)
    data = market(n=1500)
    capped = NHiTSTrainer(NHiTSHyperparameters(input_size=24, mlp_units=32, max_epochs=1, batch_size=64,
                                               max_train_windows=300), 0, CPU)
    capped.fit(data, np.arange(0, 1400))
    assert capped.training_log is not None
    assert capped.training_log.train_windows + capped.training_log.validation_windows <= 300
