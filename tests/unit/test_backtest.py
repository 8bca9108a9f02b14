"""The backtest's conventions on small hand-computed examples, its input checks and its calendar."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clm_trainer.backtest import (
    CONVENTIONS,
    infer_periods_per_year,
    positions_from_scores,
    run_backtest,
    trade_statistics,
)
from clm_trainer.sharpe_stats import deflated_sharpe_ratio, sharpe_moments

DATA = Path(__file__).resolve().parents[2] / "../shared/data/binance-btcusdt-1h.csv"


def bt(positions: list[float], returns: list[float], cost_bps: float = 0.0, **kw: object):  # type: ignore[no-untyped-def]
    return run_backtest(np.array(positions, dtype=float), np.array(returns, dtype=float),
                        fee_bps=cost_bps, slippage_bps=0.0, periods_per_year=kw.pop("ppy", 365.0),  # type: ignore[arg-type]
                        **kw)  # type: ignore[arg-type]


# --- timing, costs, trades ------------------------------------------------------------------------

def test_position_decided_at_close_is_held_over_the_next_bar() -> None:
    res = bt([0, 1, 1, 0, 0], [0.0, 0.01, 0.02, -0.01, 0.03])
    np.testing.assert_allclose(res.net_returns, [0, 0, 0.02, -0.01, 0], atol=1e-15)
    assert res.trade_entries.tolist() == [2] and res.trade_exits.tolist() == [3]
    assert res.trade_returns[0] == pytest.approx(1.02 * 0.99 - 1, abs=1e-15)
    assert res.equity[0] == 1.0
    np.testing.assert_allclose(res.equity, np.cumprod(1 + res.net_returns), rtol=1e-15)


def test_costs_charged_where_the_new_position_starts_earning() -> None:
    c = 0.001  # 6 bps fee + 4 bps slippage
    res = run_backtest(np.array([0, 1, 1, 0, 0.0]), np.array([0.0, 0.01, 0.02, -0.01, 0.03]),
                       fee_bps=6, slippage_bps=4, periods_per_year=365)
    np.testing.assert_allclose(res.net_returns, [0, 0, 0.02 - c, -0.01, -c], atol=1e-15)
    assert res.trade_returns[0] == pytest.approx((1.02 - c) * 0.99 * (1 - c) - 1, abs=1e-15)
    assert res.metrics.total_return == pytest.approx((1.02 - c) * 0.99 * (1 - c) - 1, abs=1e-15)


def test_flip_pays_both_legs_closing_first() -> None:
    c = 0.001
    r = [0.0, 0.01, 0.02, 0.03, -0.01]
    res = bt([1, 1, -1, -1, 0], r, cost_bps=10)
    # bar 1: enter long; bar 3: flip (close long: c, then open short: c on what remains)
    # bar 4: the short earns 1% and is closed at the last close
    expected_bars = [0.0, 0.01 - c, 0.02, (1 - c) * (1 - 0.03 - c) - 1, 1.01 * (1 - c) - 1]
    np.testing.assert_allclose(res.net_returns, expected_bars, atol=1e-15)
    assert res.trade_entries.tolist() == [1, 3] and res.trade_exits.tolist() == [2, 4]
    long_trade = (1.01 - c) * 1.02 * (1 - c) - 1
    short_trade = (1 - 0.03 - c) * 1.01 * (1 - c) - 1
    np.testing.assert_allclose(res.trade_returns, [long_trade, short_trade], atol=1e-15)
    # the equity is exactly the product of the trades' growth factors
    assert res.equity[-1] == pytest.approx(np.prod(1 + res.trade_returns), rel=1e-14)


def test_fractional_change_splits_cost_by_size() -> None:
    c = 0.001
    res = bt([0.5, 1.0, 1.0, 0.0], [0.0, 0.02, 0.01, 0.03], cost_bps=10)
    # 0.5 -> 1.0: |d| = 0.5, closing leg c*0.5*0.5/1.5, opening leg c*0.5*1/1.5
    x, y = c * 0.5 * 0.5 / 1.5, c * 0.5 * 1.0 / 1.5
    assert res.trade_entries.tolist() == [1, 2]
    assert res.trade_returns[0] == pytest.approx((1 + 0.5 * 0.02 - 0.5 * c) * (1 - x) - 1, abs=1e-15)
    assert res.trade_returns[1] == pytest.approx((1 + 0.01 - y) * 1.03 * (1 - c) - 1, abs=1e-15)
    assert res.net_returns[2] == pytest.approx((1 - x) * (1 + 0.01 - y) - 1, abs=1e-15)


def test_last_position_is_never_held_and_open_trade_closes_at_last_bar() -> None:
    res = bt([0, 0, 1, -1], [0.0, 0.01, 0.02, 0.05], cost_bps=10)
    # positions[3] (-1) is decided at the last close: never held, costs nothing
    assert res.trade_entries.tolist() == [3] and res.trade_exits.tolist() == [3]
    assert res.net_returns[3] == pytest.approx((1.05 - 0.001) * (1 - 0.001) - 1, abs=1e-15)
    assert res.metrics.exposure == pytest.approx(1 / 4)


def test_nan_return_allowed_only_where_nothing_is_held() -> None:
    res = bt([1, 0, 0], [math.nan, 0.01, math.nan])
    assert res.net_returns[1] == pytest.approx(0.01)
    with pytest.raises(ValueError, match=r"bar_returns\[1\]"):
        bt([1, 1, 0], [0.0, math.nan, 0.0])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"positions": [0, 1], "bar_returns": [0.0, 0.1, 0.2]}, "bar_returns has 3 bars but positions has 2"),
    ({"positions": [0, math.nan, 1], "bar_returns": [0.0, 0.1, 0.2]}, r"positions\[1\]"),
    ({"positions": [], "bar_returns": []}, "positions is empty"),
    ({"fee_bps": -1.0}, "fee_bps"),
    ({"slippage_bps": math.inf}, "slippage_bps"),
    ({"periods_per_year": 0.0}, "periods_per_year"),
    ({"n_trials": 0}, "n_trials"),
    ({"trial_sharpe_variance": -0.1}, "trial_sharpe_variance"),
    ({"timestamps": pd.date_range("2024-01-01", periods=2, freq="h")}, "timestamps has 2 entries"),
    ({"timestamps": pd.DatetimeIndex(["2024-01-02", "2024-01-01", "2024-01-03"])}, "sorted"),
    ({"positions": [[0, 1, 1]], "bar_returns": [[0.0, 0.1, 0.2]]}, "one-dimensional"),
])
def test_bad_input_names_the_argument(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"positions": [0, 1, 1], "bar_returns": [0.0, 0.1, 0.2], "fee_bps": 1.0,
                               "slippage_bps": 1.0, "periods_per_year": 365.0}
    args.update(kwargs)
    positions, returns = args.pop("positions"), args.pop("bar_returns")
    with pytest.raises(ValueError, match=match):
        run_backtest(np.array(positions, dtype=float), np.array(returns, dtype=float), **args)  # type: ignore[arg-type]


# --- degenerate inputs --------------------------------------------------------------------------------

def test_no_position_gives_zero_metrics_not_nan() -> None:
    rng = np.random.default_rng(1)
    res = bt([0.0] * 50, rng.normal(0, 0.01, 50).tolist(), cost_bps=10)
    m = res.metrics
    assert (m.trades, m.sharpe, m.sortino, m.profit_factor, m.win_rate) == (0, 0.0, 0.0, 0.0, 0.0)
    assert (m.max_drawdown, m.total_return, m.exposure, m.psr, m.dsr) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert res.trade_returns.size == 0 and res.trade_entries.size == 0


def test_zero_variance_returns_give_zero_sharpe() -> None:
    res = bt([1.0] * 30, [0.0] * 30)  # flat prices, no cost: every net return is 0
    assert res.metrics.sharpe == 0.0 and res.metrics.sortino == 0.0 and res.metrics.psr == 0.0
    assert res.metrics.trades == 1 and res.metrics.win_rate == 0.0 and res.metrics.profit_factor == 0.0


def test_single_bar_and_only_gains() -> None:
    one = bt([1.0], [0.05])
    assert one.metrics.trades == 0 and one.metrics.bars == 1 and one.metrics.sharpe == 0.0
    gains = bt([1, 0, 1, 0, 0], [0.0, 0.01, 0.0, 0.02, 0.0])
    assert gains.metrics.profit_factor == math.inf and gains.metrics.win_rate == 1.0
    assert gains.metrics.sortino == 0.0  # no downside deviation: 0 by convention, not inf
    assert gains.metrics.sharpe > 0 and math.isfinite(gains.metrics.sharpe)


def test_trade_statistics_definitions() -> None:
    win_rate, profit_factor = trade_statistics(np.array([0.1, -0.05, 0.0, -0.05]))
    assert win_rate == 0.25 and profit_factor == pytest.approx(1.0)
    assert trade_statistics(np.array([])) == (0.0, 0.0)
    assert trade_statistics(np.array([0.0, -0.1])) == (0.0, 0.0)
    assert trade_statistics(np.array([0.2, 0.0])) == (0.5, math.inf)


def test_drawdown_is_a_positive_fraction_from_the_running_peak() -> None:
    res = bt([1, 1, 1, 1, 0], [0.0, 0.10, -0.20, 0.05, 0.0])
    # equity 1, 1.1, 0.88, 0.924, 0.924: worst fall 0.88/1.1
    assert res.metrics.max_drawdown == pytest.approx(1 - 0.88 / 1.1, abs=1e-15)
    np.testing.assert_allclose(res.drawdown, [0, 0, 0.2, 1 - 0.924 / 1.1, 1 - 0.924 / 1.1], atol=1e-15)


def test_sharpe_and_sortino_follow_vectorbt() -> None:
    r = [0.0, 0.01, -0.02, 0.015, 0.005, -0.01]
    res = bt([1] * 6, r, ppy=8760.0)
    net = np.array([0.0, 0.01, -0.02, 0.015, 0.005, -0.01 * 1.0])
    # the last bar closes the open trade (no cost here), so net == held * r
    sharpe = net.mean() / net.std(ddof=1) * math.sqrt(8760)
    sortino = net.mean() / math.sqrt(np.mean(np.minimum(net, 0) ** 2)) * math.sqrt(8760)
    assert res.metrics.sharpe == pytest.approx(sharpe, rel=1e-12)
    assert res.metrics.sortino == pytest.approx(sortino, rel=1e-12)


# --- PSR / DSR on daily aggregates -----------------------------------------------------------------

def test_psr_uses_daily_compounded_returns() -> None:
    rng = np.random.default_rng(7)
    n = 24 * 20
    ts = pd.date_range("2024-03-01 05:00", periods=n, freq="h", tz="UTC")
    r = rng.normal(0.0005, 0.01, n)
    pos = np.where(rng.random(n) < 0.7, 1.0, 0.0)
    res = run_backtest(pos, r, fee_bps=2, slippage_bps=1, periods_per_year=8760, timestamps=ts, n_trials=5)
    by_day = pd.Series(1 + res.net_returns, index=ts).groupby(ts.floor("D")).prod().to_numpy() - 1
    np.testing.assert_allclose(res.daily_returns, by_day, rtol=1e-13, atol=1e-15)
    assert res.daily_returns.size == 21  # 05:00 on day one to 04:00 on day 21
    mom = sharpe_moments(by_day)
    assert res.metrics.dsr == pytest.approx(
        deflated_sharpe_ratio(mom.sharpe, mom.n_obs, mom.skewness, mom.kurtosis, 5), abs=1e-12)
    assert res.metrics.dsr < res.metrics.psr


def test_trial_sharpe_variance_is_converted_from_annualised_units() -> None:
    rng = np.random.default_rng(3)
    n = 24 * 30
    ts = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    r = rng.normal(0.0008, 0.01, n)
    res = run_backtest(np.ones(n), r, fee_bps=0, slippage_bps=0, periods_per_year=8760, timestamps=ts,
                       n_trials=20, trial_sharpe_variance=4.0)
    mom = sharpe_moments(res.daily_returns)
    expected = deflated_sharpe_ratio(mom.sharpe, mom.n_obs, mom.skewness, mom.kurtosis, 20, 4.0 * 24 / 8760)
    assert res.metrics.dsr == pytest.approx(expected, abs=1e-12)
    single = run_backtest(np.ones(n), r, fee_bps=0, slippage_bps=0, periods_per_year=8760, timestamps=ts)
    assert single.metrics.dsr == single.metrics.psr


def test_timestamps_in_seconds_and_other_timezones_group_by_utc_day() -> None:
    ts = pd.DatetimeIndex(pd.date_range("2024-01-01 22:00", periods=6, freq="h", tz="Europe/Berlin")
                          .as_unit("s"))
    res = run_backtest(np.ones(6), np.full(6, 0.01), fee_bps=0, slippage_bps=0, periods_per_year=8760,
                       timestamps=ts)
    # Berlin 22:00 and 23:00 on Jan 1 are 21:00/22:00 UTC, then 23:00 UTC, then Jan 2 UTC
    assert res.daily_returns.size == 2
    assert res.daily_returns[0] == pytest.approx(1.01**2 - 1)  # bar 0 holds nothing


# --- positions from scores ------------------------------------------------------------------------------

def test_positions_from_scores() -> None:
    s = np.array([0.3, -0.3, 0.1, -0.1, math.nan, 0.2, -0.2])
    assert positions_from_scores(s, 0.2).tolist() == [1, -1, 0, 0, 0, 0, 0]
    assert positions_from_scores(s).tolist() == [1, -1, 1, -1, 0, 1, -1]
    assert positions_from_scores(s, 0.2, allow_short=False).tolist() == [1, 0, 0, 0, 0, 0, 0]
    assert positions_from_scores(s).dtype == np.float64
    with pytest.raises(ValueError, match="signalThreshold"):
        positions_from_scores(s, -0.1)


# --- calendar ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("index", "expected"), [
    (pd.date_range("2024-01-01", periods=500, freq="h", tz="UTC"), 8760.0),
    (pd.date_range("2024-01-01", periods=500, freq="15min"), 35040.0),
    (pd.date_range("2024-01-01", periods=100, freq="D"), 365.0),
    (pd.bdate_range("2024-01-01", periods=100), 252.0),
    (pd.date_range("2024-01-01", periods=30, freq="W"), 365.0 / 7),
    # 7 hourly bars per weekday (an exchange open 09:00-15:00)
    (pd.DatetimeIndex([d + pd.Timedelta(hours=h) for d in pd.bdate_range("2024-01-01", periods=30)
                       for h in range(9, 16)]), 252.0 * 7),
    # three weekdays of hourly bars cannot show a calendar: taken as 24/7
    (pd.date_range("2024-01-01", periods=72, freq="h"), 8760.0),
])
def test_infer_periods_per_year(index: pd.DatetimeIndex, expected: float) -> None:
    assert infer_periods_per_year(index) == pytest.approx(expected, rel=1e-12)


def test_infer_periods_per_year_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="periodsPerYear"):
        infer_periods_per_year(pd.DatetimeIndex(["2024-01-01"]))
    with pytest.raises(ValueError, match="DatetimeIndex"):
        infer_periods_per_year(pd.Index([1, 2, 3]))
    with pytest.raises(ValueError, match="distinct"):
        infer_periods_per_year(pd.DatetimeIndex(["2024-01-01", "2024-01-01"]))


def _btc_hourly() -> pd.Series:
    """Closes of the real Binance export, de-duplicated (first row per timestamp) and sorted."""
    raw = pd.read_csv(DATA, usecols=["unix", "close"])
    unix = raw["unix"].astype("int64")
    seconds = np.where(unix > 10**11, unix // 1000, unix)  # the export mixes s and ms
    closes = pd.Series(raw["close"].to_numpy(float), index=pd.to_datetime(seconds, unit="s", utc=True))
    return closes[~closes.index.duplicated(keep="first")].sort_index()


def test_real_btc_data_end_to_end() -> None:
    closes = _btc_hourly().iloc[-24 * 120:]  # the last 120 days, real gaps included
    assert infer_periods_per_year(pd.DatetimeIndex(closes.index)) == 8760.0
    r = closes.pct_change().to_numpy()
    fast, slow = closes.rolling(12).mean(), closes.rolling(48).mean()
    pos = positions_from_scores((fast / slow - 1).to_numpy(), 0.002)
    res = run_backtest(pos, r, fee_bps=10, slippage_bps=5, periods_per_year=8760,
                       timestamps=pd.DatetimeIndex(closes.index), n_trials=3)
    m = res.metrics
    assert m.trades == res.trade_entries.size > 5
    assert m.bars == closes.size and 0 < m.exposure < 1
    assert res.daily_returns.size == closes.index.floor("D").nunique()
    assert m.total_return == pytest.approx(np.prod(1 + res.trade_returns) - 1, rel=1e-12, abs=1e-12)
    assert 0 <= m.dsr <= m.psr <= 1


def test_conventions_are_stated_for_every_metric() -> None:
    for key in ("timing", "costs", "trades", "sharpe", "sortino", "maxDrawdown", "winRate", "profitFactor",
                "totalReturn", "exposure", "psr", "dsr", "periodsPerYear"):
        assert CONVENTIONS[key]
