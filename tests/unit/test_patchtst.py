"""PatchTST: patching with end padding, RevIN, channel independence, and accuracy against naive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clm_contract.hyperparameters import (
    HyperparameterError,
    PatchTSTHyperparameters,
    validate_hyperparameters,
)
from clm_trainer.models.deep import mase, naive_forecast, window_targets
from clm_trainer.models.patchtst import PatchTST, PatchTSTTrainer, RevIN, patch_count

from tests.unit.deep_series import CPU, ar_seasonal


@pytest.fixture(autouse=True)
def _one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small models on a shared 2-core runner: a second thread mostly spins waiting (5x slower here).
    monkeypatch.setenv("CLM_TORCH_THREADS", "1")


@pytest.mark.parametrize(("length", "patch", "stride", "expected"),
                         [(96, 16, 8, 12), (336, 16, 8, 42), (512, 16, 8, 64), (32, 8, 4, 8), (20, 6, 5, 4)])
def test_patch_count_with_end_padding(length: int, patch: int, stride: int, expected: int) -> None:
    assert patch_count(length, patch, stride) == expected
    model = PatchTST(input_size=length, horizon=3, patch_len=patch, stride=stride, d_model=8, n_heads=2,
                     n_layers=1, d_ff=8)
    patches = model.patchify(torch.zeros(2, 1, length))
    assert patches.shape == (2, 1, expected, patch)


def test_padding_repeats_the_last_value() -> None:
    model = PatchTST(input_size=10, horizon=2, patch_len=4, stride=2, d_model=8, n_heads=2, n_layers=1,
                     d_ff=8)
    x = torch.arange(10.0).reshape(1, 1, 10)
    patches = model.patchify(x)[0, 0]
    assert patches.shape == ((10 - 4) // 2 + 2, 4)
    assert patches[0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert patches[-1].tolist() == [8.0, 9.0, 9.0, 9.0]


def test_revin_is_reversible() -> None:
    revin = RevIN(n_channels=2)
    with torch.no_grad():
        revin.weight.copy_(torch.tensor([1.5, 0.5]))
        revin.bias.copy_(torch.tensor([0.2, -0.1]))
    x = torch.randn(4, 30, 2) * 5 + 3
    normed, mean, std = revin.normalise(x)
    torch.testing.assert_close(revin.denormalise(normed, mean, std), x, rtol=1e-4, atol=1e-4)
    plain = RevIN(n_channels=1)
    z, _, _ = plain.normalise(torch.randn(3, 40, 1) * 7 + 11)
    torch.testing.assert_close(z.mean(dim=1), torch.zeros(3, 1), atol=1e-5, rtol=0)


def test_channels_are_independent_and_shapes_hold() -> None:
    torch.manual_seed(0)
    model = PatchTST(input_size=32, horizon=5, n_channels=3, patch_len=8, stride=4, d_model=16, n_heads=4,
                     n_layers=2, d_ff=32, norm="layer").eval()
    x = torch.randn(6, 32, 3)
    out = model(x)
    assert out.shape == (6, 5, 3)
    changed = x.clone()
    changed[:, :, 2] = torch.randn(6, 32) * 10
    out2 = model(changed)
    torch.testing.assert_close(out2[:, :, :2], out[:, :, :2])
    assert not torch.allclose(out2[:, :, 2], out[:, :, 2])
    univariate = PatchTST(input_size=32, horizon=5, patch_len=8, stride=4, d_model=16, n_heads=4, n_layers=1,
                          d_ff=32)
    assert univariate(torch.randn(4, 32)).shape == (4, 5)


def test_batch_norm_is_the_default_as_in_the_paper() -> None:
    model = PatchTST(input_size=32, horizon=2, patch_len=8, stride=4, d_model=16, n_heads=4, n_layers=1,
                     d_ff=16)
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())


def test_bad_hyperparameters_name_the_field() -> None:
    with pytest.raises(HyperparameterError) as info:
        validate_hyperparameters("patchtst", {"dModel": 30, "nHeads": 4})
    assert info.value.field == "spec.hyperparameters.nHeads"
    with pytest.raises(HyperparameterError) as info:
        validate_hyperparameters("patchtst", {"inputSize": 16, "patchLen": 32})
    assert info.value.field == "spec.hyperparameters.patchLen"


def test_beats_the_naive_forecast_out_of_sample() -> None:
    series = ar_seasonal(2400, seed=4)
    horizon, cut = 12, 1700
    hp = PatchTSTHyperparameters(input_size=48, patch_len=8, stride=4, d_model=16, n_heads=4, n_layers=1,
                                 d_ff=32, max_epochs=15, patience=4)
    trainer = PatchTSTTrainer(hp, seed=0, device=CPU)
    trainer.fit_series(series, np.arange(cut), horizon)
    test = np.arange(cut + horizon, len(series) - horizon)
    forecast = trainer.forecast_series(series, test)
    actual = window_targets(series, test, horizon)
    score = mase(actual, forecast, naive_forecast(series, test, horizon))
    assert score < 0.7, score
