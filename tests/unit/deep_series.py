"""Shared test series for the deep forecasters: AR(2) + daily seasonality + noise, generated here."""

from __future__ import annotations

import numpy as np
from clm_trainer.models.base import DeviceChoice

CPU = DeviceChoice("cpu", "unit test")


def ar_seasonal(n: int = 2400, seed: int = 0) -> np.ndarray:
    """An hourly-like level series: AR(2) noise around a 24-bar and a 12-bar cycle."""
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0.0, 1.0, n)
    ar = np.zeros(n)
    for k in range(2, n):
        ar[k] = 0.6 * ar[k - 1] - 0.3 * ar[k - 2] + shocks[k]
    hours = np.arange(n)
    seasonal = 2.0 * np.sin(2 * np.pi * hours / 24) + 0.5 * np.cos(2 * np.pi * hours / 12)
    level: np.ndarray = 10.0 + ar + seasonal
    return level
