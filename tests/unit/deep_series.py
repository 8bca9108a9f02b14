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
    for t in range(2, n):
        ar[t] = 0.6 * ar[t - 1] - 0.3 * ar[t - 2] + shocks[t]
    t = np.arange(n)
    return 10.0 + ar + 2.0 * np.sin(2 * np.pi * t / 24) + 0.5 * np.cos(2 * np.pi * t / 12)
