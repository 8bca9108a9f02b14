"""PatchTST: "A Time Series is Worth 64 Words: Long-term Forecasting with Transformers".

Nie, Nguyen, Sinthong, Kalagnanam, ICLR 2023 (arXiv:2211.14730).

A compact, faithful implementation of the supervised PatchTST (section 3.1 of the paper):

- **RevIN** (Kim et al., ICLR 2022): each window is normalised by its own mean and standard deviation
  (with a learnable affine map) and the forecast is de-normalised with the same statistics.
- **Patching**: the window is padded at the end by repeating its last value ``stride`` times
  (the paper's "replication padding") and cut into patches of ``patch_len`` with ``stride``:
  ``N = (L - patch_len) // stride + 2`` patches (12 for L=96, 16/8 as here; the paper's 42 for 336).
- **Channel independence**: every channel is a separate sequence through the same shared
  Transformer (here one channel, the log return of the close; the module accepts several).
- **Encoder**: a linear patch embedding plus a learnable positional embedding, then vanilla
  post-norm Transformer encoder layers (multi-head attention, GELU feed-forward) with BatchNorm
  as in the paper (LayerNorm selectable), ``batch_first`` tensors.
- **Flatten head**: the (N, d_model) representation is flattened and mapped linearly to the horizon.

Left out: the self-supervised pre-training variant and the "residual attention" option of the
reference code (attention scores carried between layers), which the paper does not describe.
How the trainer uses it for trading: see ``clm_trainer.models.deep``.
"""

from __future__ import annotations

from typing import Any

import torch
from clm_contract.hyperparameters import PatchTSTHyperparameters
from torch import nn

from clm_trainer.models.deep import BudgetedForecastTrainer


def patch_count(input_size: int, patch_len: int, stride: int) -> int:
    """Patches after padding the end with ``stride`` copies of the last value."""
    return (input_size - patch_len) // stride + 2


class RevIN(nn.Module):
    """Reversible instance normalisation over the time axis of (B, L, C) windows."""

    def __init__(self, n_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_channels))
        self.bias = nn.Parameter(torch.zeros(n_channels))

    def normalise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean = x.mean(dim=1, keepdim=True).detach()
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        return (x - mean) / std * self.weight + self.bias, mean, std

    def denormalise(self, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return (y - self.bias) / (self.weight + self.eps * self.eps) * std + mean


class _TokenNorm(nn.Module):
    """BatchNorm over the feature dimension of (B, N, D) tokens (the paper's choice), or LayerNorm."""

    def __init__(self, d_model: int, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.norm: nn.Module = nn.BatchNorm1d(d_model) if kind == "batch" else nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "batch":
            out: torch.Tensor = self.norm(x.transpose(1, 2)).transpose(1, 2)
            return out
        out = self.norm(x)
        return out


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, norm: str) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.drop_attention = nn.Dropout(dropout)
        self.norm_attention = _TokenNorm(d_model, norm)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, d_ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))
        self.drop_ff = nn.Dropout(dropout)
        self.norm_ff = _TokenNorm(d_model, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(x, x, x, need_weights=False)
        x = self.norm_attention(x + self.drop_attention(attended))
        out: torch.Tensor = self.norm_ff(x + self.drop_ff(self.feed_forward(x)))
        return out


class PatchTST(nn.Module):
    """(B, L) or (B, L, C) -> (B, H) or (B, H, C). Plain arguments so ``config.json`` can rebuild it."""

    def __init__(self, input_size: int, horizon: int, n_channels: int = 1, patch_len: int = 16,
                 stride: int = 8, d_model: int = 64, n_heads: int = 4, n_layers: int = 3, d_ff: int = 128,
                 dropout: float = 0.2, head_dropout: float = 0.0, norm: str = "batch",
                 revin: bool = True) -> None:
        super().__init__()
        if patch_len > input_size:
            raise ValueError(f"patch_len {patch_len} exceeds input_size {input_size}")
        self.input_size, self.horizon, self.n_channels = input_size, horizon, n_channels
        self.patch_len, self.stride = patch_len, stride
        self.n_patches = patch_count(input_size, patch_len, stride)
        self.revin = RevIN(n_channels) if revin else None
        self.embedding = nn.Linear(patch_len, d_model)
        self.position = nn.Parameter(torch.empty(self.n_patches, d_model).uniform_(-0.02, 0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(d_model, n_heads, d_ff, dropout, norm) for _ in range(n_layers))
        self.head = nn.Sequential(nn.Flatten(start_dim=-2), nn.Dropout(head_dropout),
                                  nn.Linear(self.n_patches * d_model, horizon))

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> (B, C, N, patch_len), padding the end with the last value ``stride`` times.

        Padding by concatenation rather than ``nn.ReplicationPad1d``: same values, and its backward
        has a deterministic kernel on CUDA too.
        """
        padded = torch.cat([x, x[..., -1:].expand(*x.shape[:-1], self.stride)], dim=-1)
        return padded.unfold(-1, self.patch_len, self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        univariate = x.dim() == 2
        if univariate:
            x = x.unsqueeze(-1)
        batch, _, channels = x.shape
        mean = std = None
        if self.revin is not None:
            x, mean, std = self.revin.normalise(x)
        patches = self.patchify(x.permute(0, 2, 1))  # (B, C, N, P)
        tokens = patches.reshape(batch * channels, self.n_patches, self.patch_len)
        z = self.dropout(self.embedding(tokens) + self.position)
        for layer in self.layers:
            z = layer(z)
        y = self.head(z).reshape(batch, channels, self.horizon).permute(0, 2, 1)  # (B, H, C)
        if self.revin is not None and mean is not None and std is not None:
            y = self.revin.denormalise(y, mean, std)
        out: torch.Tensor = y.squeeze(-1) if univariate else y
        return out


class PatchTSTTrainer(BudgetedForecastTrainer[PatchTSTHyperparameters]):
    algorithm = "patchtst"
    hyperparameter_type = PatchTSTHyperparameters

    def input_size_for(self, horizon: int) -> int:
        return int(self.hp.input_size)

    def core_config_for(self, input_size: int, horizon: int) -> dict[str, Any]:
        return {
            "input_size": input_size,
            "horizon": horizon,
            "n_channels": 1,
            "patch_len": self.hp.patch_len,
            "stride": self.hp.stride,
            "d_model": self.hp.d_model,
            "n_heads": self.hp.n_heads,
            "n_layers": self.hp.n_layers,
            "d_ff": self.hp.d_ff,
            "dropout": self.hp.dropout,
            "head_dropout": self.hp.head_dropout,
            "norm": self.hp.norm,
            "revin": self.hp.revin,
        }
