"""Features come only from the past; the target is the forward return (docs/architecture.md section 6.2)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from clm_contract.training_job import FeaturesSpec, TargetSpec
from clm_trainer.features import FeatureError, build_feature_frame, build_series, forward_return
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SPEC = FeaturesSpec(return_lags=[1, 2, 5], windows=[2, 3, 7], volume=True, calendar=True)


def make_bars(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n))
    volume = rng.uniform(1, 100, n)
    index = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC", name="time")
    columns = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    return pd.DataFrame(columns, index=index)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(30, 90), seed=st.integers(0, 10_000), data=st.data())
def test_changing_future_bars_never_changes_past_features(n: int, seed: int, data: st.DataObject) -> None:
    bars = make_bars(n, seed)
    k = data.draw(st.integers(0, n - 2), label="k")
    scale = data.draw(st.floats(0.2, 5.0), label="scale")
    changed = bars.copy()
    future = changed.index > changed.index[k]
    # Any valid but different future: prices scaled, volume replaced.
    for col in ("open", "high", "low", "close"):
        changed.loc[future, col] = changed.loc[future, col] * scale
    changed.loc[future, "volume"] = changed.loc[future, "volume"][::-1].to_numpy() * 3.0

    before = build_feature_frame(bars, SPEC).to_numpy()
    after = build_feature_frame(changed, SPEC).to_numpy()
    np.testing.assert_array_equal(before[: k + 1], after[: k + 1])


def test_future_change_does_change_later_rows() -> None:
    """The property above is not vacuous: features after k do react to the change."""
    bars = make_bars(60, 1)
    changed = bars.copy()
    changed.iloc[40:, :4] *= 1.5
    before = build_feature_frame(bars, SPEC).to_numpy()
    after = build_feature_frame(changed, SPEC).to_numpy()
    np.testing.assert_array_equal(before[:40], after[:40])
    assert not np.allclose(before[40], after[40], equal_nan=True)


def test_feature_names_and_warm_up() -> None:
    frame = build_feature_frame(make_bars(50, 2), SPEC)
    names = list(frame.columns)
    for expected in ("ret_lag_1", "ret_lag_5", "vol_7", "mom_3", "zscore_7", "rsi_7", "volume_z_7",
                     "hour_sin", "dow_cos"):
        assert expected in names
    # the longest window (7) on log returns needs 7 returns, i.e. row 7
    assert frame["vol_7"].iloc[:7].isna().all()
    assert frame["vol_7"].iloc[7:].notna().all()
    rsi = frame.filter(like="rsi_").to_numpy().ravel()
    rsi = rsi[np.isfinite(rsi)]
    assert rsi.size > 100 and ((rsi >= 0) & (rsi <= 100)).all()


def test_no_volume_and_no_calendar_features_when_disabled() -> None:
    frame = build_feature_frame(make_bars(30, 3), FeaturesSpec(windows=[5], return_lags=[1], volume=False))
    assert not [c for c in frame.columns if "volume" in c or "hour" in c or "dow" in c]


def test_target_is_forward_return_over_horizon() -> None:
    close = np.array([100.0, 110.0, 99.0, 99.0, 120.0])
    target = forward_return(close, 2)
    np.testing.assert_allclose(target[:3], [99 / 100 - 1, 99 / 110 - 1, 120 / 99 - 1])
    assert np.isnan(target[3:]).all()


def test_series_aligns_bars_features_target_and_returns() -> None:
    bars = make_bars(200, 4)
    series = build_series(bars, SPEC, TargetSpec(horizon_bars=3, kind="return"))
    assert series.features.shape == (200, len(series.feature_names))
    assert series.features.dtype == np.float32
    assert series.target_kind == "return"
    close = bars["close"].to_numpy()
    assert series.bar_returns[0] == 0.0
    np.testing.assert_allclose(series.bar_returns[1:], close[1:] / close[:-1] - 1)
    np.testing.assert_allclose(series.target[10], close[13] / close[10] - 1)


def test_too_few_bars_is_a_clear_error() -> None:
    with pytest.raises(FeatureError) as info:
        build_series(make_bars(40, 5), FeaturesSpec(windows=[50]), TargetSpec())
    assert info.value.field == "spec.dataset"
    assert "windows" in str(info.value)
