"""N-HiTS: the paper's mechanics (ceil-mode pooling, knots, interpolation, doubly residual stacking)
and out-of-sample accuracy against the naive forecast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clm_contract.hyperparameters import (
    HyperparameterError,
    NHiTSHyperparameters,
    validate_hyperparameters,
)
from clm_trainer.models.deep import mase, naive_forecast, window_targets
from clm_trainer.models.nhits import NHiTS, NHiTSBlock, NHiTSTrainer

from tests.unit.deep_series import CPU, ar_seasonal


@pytest.fixture(autouse=True)
def _one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small models on a shared 2-core runner: a second thread mostly spins waiting (5x slower here).
    monkeypatch.setenv("CLM_TORCH_THREADS", "1")


def test_pooling_uses_ceil_mode() -> None:
    block = NHiTSBlock(input_size=5, horizon=4, pool_kernel=2, n_knots=2, mlp_units=8, mlp_layers=1,
                       dropout=0.0)
    x = torch.tensor([[1.0, 5.0, 2.0, 0.0, 7.0]])
    pooled = block.pool(x.unsqueeze(1)).squeeze(1)
    # ceil(5/2) = 3 windows; the last, partial one still yields a value (7).
    assert pooled.tolist() == [[5.0, 2.0, 7.0]]
    assert block.mlp[0].in_features == 3


def test_default_architecture_follows_the_paper() -> None:
    hp = NHiTSHyperparameters()
    trainer = NHiTSTrainer(hp, seed=0, device=CPU)
    assert trainer.input_size_for(24) == 120  # 5 x horizon
    model = NHiTS(**trainer.core_config_for(120, 24))
    assert len(model.blocks) == 3
    # knots per stack: 24 // 4, 24 // 2, 24 // 1; backcast is the full window
    blocks = [b for b in model.blocks if isinstance(b, NHiTSBlock)]
    first_layers = [b.mlp[0] for b in blocks]
    assert all(isinstance(layer, torch.nn.Linear) for layer in first_layers)
    assert [b.theta.out_features - 120 for b in blocks] == [6, 12, 24]
    assert [b.pool.kernel_size for b in blocks] == [2, 2, 1]
    assert [layer.in_features for layer in first_layers] == [60, 60, 120]
    assert {layer.out_features for layer in first_layers} == {512}
    assert model(torch.zeros(7, 120)).shape == (7, 24)


def test_knots_interpolate_linearly_to_the_horizon() -> None:
    torch.manual_seed(0)
    block = NHiTSBlock(input_size=10, horizon=8, pool_kernel=1, n_knots=2, mlp_units=4, mlp_layers=1,
                       dropout=0.0)
    with torch.no_grad():
        block.theta.weight.zero_()
        block.theta.bias.zero_()
        block.theta.bias[10:] = torch.tensor([0.0, 1.0])  # the two forecast knots
    _, forecast = block(torch.randn(1, 10))
    values = forecast[0].detach().numpy()
    # align_corners=False: knot k sits at the centre of its share of the horizon (positions 1.5 and
    # 5.5 here); straight line in between, flat beyond.
    np.testing.assert_allclose(values, [0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1], atol=1e-6)
    one_knot = NHiTSBlock(input_size=10, horizon=8, pool_kernel=1, n_knots=1, mlp_units=4, mlp_layers=1,
                          dropout=0.0)
    _, flat = one_knot(torch.randn(3, 10))
    assert torch.all(flat == flat[:, :1])


def test_doubly_residual_stacking() -> None:
    torch.manual_seed(1)
    model = NHiTS(input_size=12, horizon=4, pool_kernel_sizes=[2, 1], freq_downsample=[2, 1], mlp_units=8)
    x = torch.randn(5, 12)
    backcast1, forecast1 = model.blocks[0](x)
    backcast2, forecast2 = model.blocks[1](x - backcast1)
    torch.testing.assert_close(model(x), forecast1 + forecast2)


def test_stacks_must_match() -> None:
    with pytest.raises(HyperparameterError) as info:
        validate_hyperparameters("nhits", {"poolKernelSizes": [2, 1], "freqDownsample": [4, 2, 1]})
    assert info.value.field == "spec.hyperparameters.freqDownsample"
    with pytest.raises(HyperparameterError) as info:
        validate_hyperparameters("nhits", {"poolKernelSizes": [0, 1], "freqDownsample": [2, 1]})
    assert info.value.field == "spec.hyperparameters.poolKernelSizes"


def test_beats_the_naive_forecast_out_of_sample() -> None:
    series = ar_seasonal(2400, seed=3)
    horizon, cut = 12, 1700
    hp = NHiTSHyperparameters(input_size=48, mlp_units=64, max_epochs=12, patience=4)
    trainer = NHiTSTrainer(hp, seed=0, device=CPU)
    trainer.fit_series(series, np.arange(cut), horizon)
    test = np.arange(cut + horizon, len(series) - horizon)  # windows entirely after the training span
    forecast = trainer.forecast_series(series, test)
    actual = window_targets(series, test, horizon)
    score = mase(actual, forecast, naive_forecast(series, test, horizon))
    assert score < 0.7, score
