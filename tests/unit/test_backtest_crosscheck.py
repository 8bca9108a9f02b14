"""The backtest against backtesting.py on identical trades, against a plain per-bar reference, and
hypothesis properties of its accounting.

Where backtesting.py and this backtest differ, the difference is a stated convention and is tested
as such, trade by trade:
- backtesting.py holds a fixed number of shares from entry to exit (return ``±(X/E - 1)``) and pays
  its commission on the entry and on the exit value (``- c·(1 + X/E)``); this backtest holds a
  constant exposure of the equity (a trade's return compounds its per-bar returns, DESIGN 6.4) and
  pays ``c`` of the equity at entry and at exit. For long trades without costs the two coincide
  exactly; otherwise each library's number is reproduced from the same bars and prices by its own
  formula, which proves that the trades themselves (bars, sides, prices) are identical.
- backtesting.py's profit factor is NaN when no trade lost; here it is inf.
- backtesting.py closes trades still open at the end at the close of the *second to last* bar when
  ``trade_on_close=True`` (its finalize step re-runs the last broker step); the data given to it is
  padded with one copy of the last bar so that it closes at the last close, as this backtest does.
"""

from __future__ import annotations

import math
import statistics
import warnings

import numpy as np
import pandas as pd
import pytest
from backtesting import Backtest, Strategy
from clm_trainer.backtest import run_backtest, trade_statistics
from hypothesis import given, settings
from hypothesis import strategies as st


def random_positions(rng: np.random.Generator, n: int, sides: tuple[float, ...]) -> np.ndarray:
    """Runs of random length (1-12 bars) of random sides, flat on bar 0 (backtesting.py's first
    decision is at the close of bar 1)."""
    lengths = rng.integers(1, 13, size=n)
    values = rng.choice(np.array(sides), size=n)
    pos = np.repeat(values, lengths)[:n].astype(float)
    pos[0] = 0.0
    return pos


def generated_market(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0002, 0.012, n)
    r[0] = 0.0
    return r, 100.0 * np.cumprod(1.0 + r)


def backtesting_py(close: np.ndarray, pos: np.ndarray, commission: float) -> pd.Series:
    n = close.size
    padded = np.append(close, close[-1])  # see the module docstring: finalize at the last close
    df = pd.DataFrame({"Open": padded, "High": padded, "Low": padded, "Close": padded, "Volume": 1.0},
                      index=pd.date_range("2024-01-01", periods=n + 1, freq="h"))

    class Follow(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            pass

        def next(self) -> None:
            i = len(self.data) - 1
            if i >= n - 1:  # positions[n-1] is never held (nothing after the last bar)
                return
            want, have = pos[i], float(np.sign(self.position.size))
            if want == have:
                return
            if want == 0:
                self.position.close()
            elif want > 0:
                self.buy(size=0.5)  # exclusive_orders closes an open short first
            else:
                self.sell(size=0.5)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # backtesting.py's own pandas deprecations
        stats: pd.Series = Backtest(df, Follow, cash=1e10, commission=commission, trade_on_close=True,
                                    exclusive_orders=True, finalize_trades=True).run()
    return stats


@pytest.mark.parametrize(("seed", "sides", "commission"), [
    (1, (0.0, 1.0), 0.0),
    (2, (-1.0, 0.0, 1.0), 0.0),
    (3, (-1.0, 0.0, 1.0), 0.001),
    (4, (-1.0, 1.0), 0.0005),  # always in the market: every change is a flip
])
def test_same_trades_as_backtesting_py(seed: int, sides: tuple[float, ...], commission: float) -> None:
    r, close = generated_market(seed)
    pos = random_positions(np.random.default_rng(seed + 100), r.size, sides)
    stats = backtesting_py(close, pos, commission)
    trades = stats["_trades"].sort_values("EntryBar")
    res = run_backtest(pos, r, fee_bps=commission * 1e4, slippage_bps=0.0, periods_per_year=8760)

    assert stats["# Trades"] == res.metrics.trades > 10
    # backtesting.py dates a trade by the bar whose close fills it; our entry is the first bar held
    assert (trades["EntryBar"].to_numpy() + 1).tolist() == res.trade_entries.tolist()
    assert trades["ExitBar"].tolist() == res.trade_exits.tolist()
    sides_held = pos[res.trade_entries - 1]
    assert np.sign(trades["Size"].to_numpy()).tolist() == sides_held.tolist()
    np.testing.assert_allclose(trades["EntryPrice"], close[res.trade_entries - 1], rtol=1e-12)
    np.testing.assert_allclose(trades["ExitPrice"], close[res.trade_exits], rtol=1e-12)

    c = commission
    theirs, ours = trades["ReturnPct"].to_numpy(), res.trade_returns
    for k, (entry, exit_, side) in enumerate(zip(res.trade_entries, res.trade_exits, sides_held,
                                                 strict=True)):
        e_price, x_price, first_close = close[entry - 1], close[exit_], close[entry]
        # backtesting.py: fixed shares, commission on entry and exit value
        assert theirs[k] == pytest.approx(side * (x_price / e_price - 1) - c * (1 + x_price / e_price),
                                          abs=1e-12)
        # ours: constant exposure, c of the equity at entry (first bar) and at exit (final factor)
        bars = r[entry:exit_ + 1] * side
        assert ours[k] == pytest.approx((1 + bars[0] - c) * np.prod(1 + bars[1:]) * (1 - c) - 1, abs=1e-12)
        if side > 0:  # for longs the gap is exactly the cost on the first bar's gain, closed form
            assert ours[k] - theirs[k] == pytest.approx(
                c * (1 - x_price / first_close) + c * c * x_price / first_close, abs=1e-12)

    # the win-rate and profit-factor definitions are backtesting.py's own
    win_rate, profit_factor = trade_statistics(theirs)
    assert win_rate == pytest.approx(stats["Win Rate [%]"] / 100, abs=1e-9)
    assert profit_factor == pytest.approx(stats["Profit Factor"], rel=1e-9)
    if sides == (0.0, 1.0) and commission == 0.0:  # no convention differs: identical numbers
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
        assert res.metrics.win_rate == pytest.approx(stats["Win Rate [%]"] / 100, abs=1e-9)
        assert res.metrics.profit_factor == pytest.approx(stats["Profit Factor"], rel=1e-9)


def test_profit_factor_without_losses_is_inf_where_backtesting_py_says_nan() -> None:
    close = np.array([100.0, 100, 101, 102, 102, 103, 104, 104])
    r = np.r_[0.0, close[1:] / close[:-1] - 1]
    pos = np.array([0.0, 1, 1, 0, 1, 1, 0, 0])
    stats = backtesting_py(close, pos, 0.0)
    assert stats["# Trades"] == 2 and math.isnan(stats["Profit Factor"])
    ours = run_backtest(pos, r, fee_bps=0, slippage_bps=0, periods_per_year=8760)
    assert ours.metrics.profit_factor == math.inf


# --- an independent, plain per-bar reference ---------------------------------------------------------

def reference_bars(pos: list[float], r: list[float], c: float) -> list[float]:
    """The conventions written bar by bar, for unit positions: no numpy, no shared code."""
    net = []
    for t in range(len(r)):
        now = pos[t - 1] if t >= 1 else 0.0
        before = pos[t - 2] if t >= 2 else 0.0
        growth = 1.0 + now * r[t]
        if now != before:
            growth = (1.0 - c * abs(before)) * (growth - c * abs(now))
        if t == len(r) - 1:
            growth *= 1.0 - c * abs(now)
        net.append(growth - 1.0)
    return net


def test_sharpe_and_drawdown_match_a_plain_reference() -> None:
    r, _ = generated_market(21, 2000)
    pos = random_positions(np.random.default_rng(22), r.size, (-1.0, 0.0, 1.0))
    c = 0.0012
    res = run_backtest(pos, r, fee_bps=8, slippage_bps=4, periods_per_year=8760)
    net = reference_bars(pos.tolist(), r.tolist(), c)
    np.testing.assert_allclose(res.net_returns, net, rtol=0, atol=1e-15)

    sharpe = statistics.fmean(net) / statistics.stdev(net) * math.sqrt(8760)
    equity, peak, worst = 1.0, 1.0, 0.0
    for x in net:
        equity *= 1.0 + x
        peak = max(peak, equity)
        worst = max(worst, (peak - equity) / peak)
    assert res.metrics.sharpe == pytest.approx(sharpe, rel=1e-9)
    assert res.metrics.max_drawdown == pytest.approx(worst, rel=1e-9)
    assert res.metrics.total_return == pytest.approx(equity - 1.0, rel=1e-9)
    held = [0.0] + pos[:-1].tolist()
    assert res.metrics.exposure == sum(1 for h in held if h != 0) / len(held)


# --- properties -------------------------------------------------------------------------------------------

unit_positions = st.lists(st.sampled_from([-1.0, 0.0, 1.0]), min_size=2, max_size=60)
sized_positions = st.lists(st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.25, 1.0, 1.5]), min_size=2, max_size=60)
bar_return = st.floats(min_value=-0.2, max_value=0.2, allow_nan=False)


@st.composite
def scenario(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float]:
    pos = draw(st.one_of(unit_positions, sized_positions))
    r = draw(st.lists(bar_return, min_size=len(pos), max_size=len(pos)))
    cost = draw(st.floats(min_value=0.0, max_value=50.0))
    return np.array(pos), np.array(r), cost


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_equity_net_returns_and_trades_are_consistent(case: tuple[np.ndarray, np.ndarray, float]) -> None:
    pos, r, cost = case
    res = run_backtest(pos, r, fee_bps=cost, slippage_bps=0.0, periods_per_year=365)
    n = pos.size
    assert res.equity[0] == 1.0
    np.testing.assert_allclose(res.equity, np.cumprod(1 + res.net_returns), rtol=1e-12)
    assert res.metrics.total_return == pytest.approx(res.equity[-1] - 1, abs=1e-12)
    # the equity is the product of the trades' growth factors: nothing is lost between trades
    assert np.prod(1 + res.trade_returns) == pytest.approx(res.equity[-1], rel=1e-11)

    # trades partition the bars held at a non-zero position, each a maximal run of one position
    held = np.r_[0.0, pos[:-1]]
    covered = np.zeros(n, dtype=int)
    for entry, exit_ in zip(res.trade_entries, res.trade_exits, strict=True):
        run = held[entry:exit_ + 1]
        assert run[0] != 0 and np.all(run == run[0])
        assert held[entry - 1] != run[0]
        assert exit_ == n - 1 or held[exit_ + 1] != run[0]
        covered[entry:exit_ + 1] += 1
    assert np.array_equal(covered, (held != 0).astype(int))

    win_rate, profit_factor = trade_statistics(res.trade_returns)
    assert res.metrics.trades == res.trade_returns.size
    tr = res.trade_returns
    assert res.metrics.win_rate == win_rate == (np.mean(tr > 0) if tr.size else 0)
    gains, losses = tr[tr > 0].sum(), -tr[tr < 0].sum()
    expected_pf = 0.0 if gains <= 0 else (math.inf if losses == 0 else gains / losses)
    assert res.metrics.profit_factor == profit_factor == pytest.approx(expected_pf)
    assert 0 <= res.metrics.max_drawdown <= 1 and 0 <= res.metrics.psr <= 1


@settings(max_examples=100, deadline=None)
@given(scenario(), st.floats(min_value=0.1, max_value=50.0))
def test_costs_only_ever_lower_the_result(case: tuple[np.ndarray, np.ndarray, float], extra: float) -> None:
    pos, r, cost = case
    cheap = run_backtest(pos, r, fee_bps=cost, slippage_bps=0.0, periods_per_year=365)
    dear = run_backtest(pos, r, fee_bps=cost, slippage_bps=extra, periods_per_year=365)
    assert np.all(dear.equity <= cheap.equity * (1 + 1e-12))
    assert np.all(dear.trade_returns <= cheap.trade_returns + 1e-12)
    if cheap.metrics.trades:
        assert dear.equity[-1] < cheap.equity[-1]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=1, max_value=3 * 24 * 60), bar_return), min_size=2,
                max_size=80),
       st.sampled_from(["s", "ms", "ns"]))
def test_daily_aggregation_matches_pandas_grouping(steps: list[tuple[int, float]], unit: str) -> None:
    minutes = np.cumsum([s for s, _ in steps])
    start = pd.Timestamp("2024-02-27 13:00")  # crosses a leap day
    ts = pd.DatetimeIndex(start + pd.to_timedelta(minutes, unit="min")).as_unit(unit)
    r = np.array([x for _, x in steps])
    pos = np.where(np.arange(r.size) % 3 == 0, 0.0, 1.0)
    res = run_backtest(pos, r, fee_bps=3, slippage_bps=0, periods_per_year=8760, timestamps=ts)
    expected = pd.Series(1 + res.net_returns, index=ts).groupby(ts.floor("D")).prod().to_numpy() - 1
    np.testing.assert_allclose(res.daily_returns, expected, rtol=1e-12, atol=1e-15)
