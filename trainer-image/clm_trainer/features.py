"""Past-only features and the forward-looking target (docs/architecture.md section 6.2).

Every feature at row ``t`` is a function of bars ``0..t`` only: trailing rolling windows, differences
with earlier rows, the timestamp of row ``t`` itself. Nothing is centred, back-filled or normalised
with statistics of the whole series, so changing any bar after ``t`` cannot change row ``t``
(tests/unit/test_features.py checks exactly that with hypothesis). The target is the only
forward-looking column and is kept apart from the features.

Windows and lags count bars, not clock time: gaps in the data are not filled (the data report lists
them), so a window that spans a gap covers slightly more time than its bar count says.

RSI uses simple (Cutler) averages of gains and losses rather than Wilder's exponential smoothing: it
stays a bounded trailing window, which keeps the warm-up explicit and the computation vectorised.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from clm_contract.training_job import FeaturesSpec, TargetSpec

from clm_trainer.models.base import SeriesData

REQUIRED_COLUMNS = ("open", "high", "low", "close", "volume")


class FeatureError(ValueError):
    """The bars cannot produce the requested features (e.g. fewer bars than the longest window)."""

    def __init__(self, field: str, message: str, fix: str) -> None:
        super().__init__(f"{field}: {message}; fix: {fix}")
        self.field = field
        self.fix = fix


def _safe_log(values: pd.Series) -> pd.Series:
    return np.log(values.where(values > 0))


def _rolling_rsi(delta: pd.Series, window: int) -> pd.Series:
    # pandas' running-sum rolling mean can leave -1e-17 residues on non-negative input: clip them.
    gain = delta.clip(lower=0).rolling(window, min_periods=window).mean().clip(lower=0)
    loss = (-delta.clip(upper=0)).rolling(window, min_periods=window).mean().clip(lower=0)
    total = gain + loss
    # A flat window has no gains and no losses: neutral 50 rather than 0/0.
    rsi = (100.0 * gain / total.where(total > 0)).clip(0.0, 100.0)
    return rsi.where(total > 0, 50.0).where(gain.notna())


def build_feature_frame(bars: pd.DataFrame, spec: FeaturesSpec) -> pd.DataFrame:
    """All features as a DataFrame indexed like ``bars`` (NaN during each feature's warm-up)."""
    missing = [c for c in REQUIRED_COLUMNS[:4] if c not in bars.columns]
    if missing:
        raise FeatureError("spec.dataset.uri", f"bars lack columns {missing}",
                           "provide OHLC columns (open, high, low, close)")
    close = bars["close"].astype("float64")
    log_close = _safe_log(close)
    log_ret = log_close.diff()
    cols: dict[str, pd.Series] = {}

    for lag in spec.return_lags:
        # lag 1 is the return of bar t itself; lag k the one-bar return k-1 bars earlier.
        cols[f"ret_lag_{lag}"] = log_ret.shift(lag - 1)

    high = bars["high"].astype("float64")
    low = bars["low"].astype("float64")
    cols["hl_range"] = (high - low) / close
    cols["close_in_range"] = ((close - low) / (high - low).where(high > low)).fillna(0.5)

    for w in spec.windows:
        vol = log_ret.rolling(w, min_periods=w).std(ddof=0) if w > 1 else log_ret.abs()
        cols[f"vol_{w}"] = vol
        cols[f"mom_{w}"] = log_close - log_close.shift(w)
        if w > 1:
            mean = close.rolling(w, min_periods=w).mean()
            std = close.rolling(w, min_periods=w).std(ddof=0)
            cols[f"zscore_{w}"] = ((close - mean) / std.where(std > 0)).fillna(0.0).where(std.notna())
            cols[f"rsi_{w}"] = _rolling_rsi(log_ret, w)

    if spec.volume and "volume" in bars.columns:
        volume = bars["volume"].astype("float64")
        if bool((volume > 0).any()):
            log_vol = np.log1p(volume.clip(lower=0))
            cols["log_volume_chg"] = log_vol.diff()
            for w in spec.windows:
                if w < 2:
                    continue
                mean = log_vol.rolling(w, min_periods=w).mean()
                std = log_vol.rolling(w, min_periods=w).std(ddof=0)
                cols[f"volume_z_{w}"] = ((log_vol - mean) / std.where(std > 0)).fillna(0.0).where(std.notna())

    if spec.calendar:
        index = pd.DatetimeIndex(bars.index)
        hour = index.hour.to_numpy(dtype="float64")
        dow = index.day_of_week.to_numpy(dtype="float64")
        cols["hour_sin"] = pd.Series(np.sin(2 * np.pi * hour / 24), index=bars.index)
        cols["hour_cos"] = pd.Series(np.cos(2 * np.pi * hour / 24), index=bars.index)
        cols["dow_sin"] = pd.Series(np.sin(2 * np.pi * dow / 7), index=bars.index)
        cols["dow_cos"] = pd.Series(np.cos(2 * np.pi * dow / 7), index=bars.index)

    frame = pd.DataFrame(cols, index=bars.index)
    return frame.replace([np.inf, -np.inf], np.nan)


def forward_return(close: np.ndarray, horizon: int) -> np.ndarray:
    """close[t+h]/close[t]-1, NaN for the last ``horizon`` rows (no future to look at)."""
    target = np.full(close.shape[0], np.nan, dtype="float64")
    if close.shape[0] > horizon:
        target[:-horizon] = close[horizon:] / close[:-horizon] - 1.0
    return target


def bar_returns_of(close: np.ndarray) -> np.ndarray:
    """close[t]/close[t-1]-1 with 0 at t=0: what a position held over bar t earns."""
    out = np.zeros(close.shape[0], dtype="float64")
    if close.shape[0] > 1:
        out[1:] = close[1:] / close[:-1] - 1.0
    return out


def build_series(bars: pd.DataFrame, features: FeaturesSpec, target: TargetSpec) -> SeriesData:
    """Features, target and per-bar returns, row-aligned with ``bars``."""
    longest = max([*features.windows, *features.return_lags, 1])
    needed = longest + target.horizon_bars + 10
    if len(bars) < needed:
        raise FeatureError(
            "spec.dataset", f"{len(bars)} bars, fewer than the {needed} needed by the longest feature window "
            f"({longest}) and the horizon ({target.horizon_bars})",
            "widen the dataset window (start/end/lookbackDays) or shorten spec.features.windows")
    frame = build_feature_frame(bars, features)
    close = bars["close"].to_numpy(dtype="float64")
    return SeriesData(
        bars=bars,
        features=frame.to_numpy(dtype="float32"),
        feature_names=list(frame.columns),
        target=forward_return(close, target.horizon_bars),
        horizon_bars=target.horizon_bars,
        bar_returns=bar_returns_of(close),
        target_kind=target.kind,
    )
