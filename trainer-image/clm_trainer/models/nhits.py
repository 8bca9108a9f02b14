"""N-HiTS: Neural Hierarchical Interpolation for Time Series Forecasting.

Challu, Olivares, Oreshkin, Garza, Mergenthaler-Canseco, Dubrawski, AAAI 2023 (arXiv:2201.12886).

A compact, faithful implementation of the paper's architecture (section 3):

- **Multi-rate signal sampling**: each block max-pools its input window with the stack's kernel
  (``MaxPool1d(k, stride=k, ceil_mode=True)``), so stacks see the past at different resolutions.
- **Non-linear regression**: an MLP (ReLU) maps the pooled window to backcast coefficients and to
  ``max(H // r, 1)`` forecast *knots*, ``r`` being the stack's expressiveness ratio (freq downsample).
- **Hierarchical interpolation**: knots are linearly interpolated to the horizon (``F.interpolate``),
  so low-resolution stacks can only express slow components.
- **Doubly residual stacking** (as N-BEATS): each block removes its backcast from the input of the
  next and adds its forecast to the total.

Defaults follow the paper: input window 5 x horizon, 3 stacks of 1 block, pooling kernels
[2, 2, 1], downsampling [4, 2, 1], MLPs of 2 x 512 units. Differences from neuralforecast's
implementation: no "naive level" added to the forecast (the paper's equations have none, and for
returns the last value is not a sensible level) and one univariate input without exogenous series.
How the trainer uses it for trading: see ``clm_trainer.models.deep``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from clm_contract.hyperparameters import NHiTSHyperparameters
from torch import nn

from clm_trainer.models.deep import BudgetedForecastTrainer, interpolate_knots


class NHiTSBlock(nn.Module):
    def __init__(self, input_size: int, horizon: int, pool_kernel: int, n_knots: int, mlp_units: int,
                 mlp_layers: int, dropout: float) -> None:
        super().__init__()
        self.input_size = input_size
        self.horizon = horizon
        self.pool = nn.MaxPool1d(kernel_size=pool_kernel, stride=pool_kernel, ceil_mode=True)
        pooled = math.ceil(input_size / pool_kernel)
        layers: list[nn.Module] = [nn.Linear(pooled, mlp_units), nn.ReLU()]
        for _ in range(mlp_layers - 1):
            layers += [nn.Linear(mlp_units, mlp_units), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.mlp = nn.Sequential(*layers)
        self.theta = nn.Linear(mlp_units, input_size + n_knots)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.pool(x.unsqueeze(1)).squeeze(1)
        theta = self.theta(self.mlp(pooled))
        backcast = theta[:, : self.input_size]
        forecast = interpolate_knots(theta[:, self.input_size:], self.horizon)
        return backcast, forecast


class NHiTS(nn.Module):
    """(B, input_size) -> (B, horizon). Built from plain arguments so ``config.json`` can rebuild it."""

    def __init__(self, input_size: int, horizon: int, pool_kernel_sizes: list[int],
                 freq_downsample: list[int], blocks_per_stack: int = 1, mlp_units: int = 512,
                 mlp_layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if len(pool_kernel_sizes) != len(freq_downsample):
            raise ValueError("pool_kernel_sizes and freq_downsample need one entry per stack")
        self.input_size = input_size
        self.horizon = horizon
        self.blocks = nn.ModuleList(
            NHiTSBlock(input_size, horizon, kernel, max(horizon // ratio, 1), mlp_units, mlp_layers, dropout)
            for kernel, ratio in zip(pool_kernel_sizes, freq_downsample, strict=True)
            for _ in range(blocks_per_stack)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        forecast = torch.zeros(x.shape[0], self.horizon, dtype=x.dtype, device=x.device)
        for block in self.blocks:
            backcast, block_forecast = block(residual)
            residual = residual - backcast
            forecast = forecast + block_forecast
        return forecast


class NHiTSTrainer(BudgetedForecastTrainer[NHiTSHyperparameters]):
    algorithm = "nhits"
    hyperparameter_type = NHiTSHyperparameters

    def input_size_for(self, horizon: int) -> int:
        if self.hp.input_size is not None:
            return int(self.hp.input_size)
        return max(2, int(self.hp.input_size_multiplier) * horizon)

    def core_config_for(self, input_size: int, horizon: int) -> dict[str, Any]:
        return {
            "input_size": input_size,
            "horizon": horizon,
            "pool_kernel_sizes": list(self.hp.pool_kernel_sizes),
            "freq_downsample": list(self.hp.freq_downsample),
            "blocks_per_stack": self.hp.blocks_per_stack,
            "mlp_units": self.hp.mlp_units,
            "mlp_layers": self.hp.mlp_layers,
            "dropout": self.hp.dropout,
        }
