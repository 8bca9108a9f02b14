"""Builtin synthetic data: valid, deterministic, and the planted signal is there (and tradable) while the
random walk holds none.

The tradability check is a self-contained numpy backtest of the *oracle* (position = sign of the planted
regime at the close of bar t, held over bar t+1) under the default costs and criteria; the trainer's own
backtest is tested elsewhere. It runs on the out-of-sample part a default walk-forward would test.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from clm_contract.metrics import Criteria
from clm_contract.training_job import CostsSpec, DatasetSpec, EvaluationSpec
from clm_trainer.data import DataError, load_dataset
from clm_trainer.synthetic import forward_filter_scores, generate, parse_synthetic_uri

SEEDS = range(20)


def simple_backtest(position: np.ndarray, close: np.ndarray) -> dict[str, float]:
    """position[t] is decided at the close of bar t and earns bar t+1's return, net of costs."""
    costs = CostsSpec()
    cost = (costs.fee_bps + costs.slippage_bps) / 1e4
    returns = close[1:] / close[:-1] - 1
    held = position[:-1]
    change = np.abs(np.diff(np.concatenate([[0.0], held])))
    net = held * returns - cost * change
    equity = np.cumprod(1 + net)
    drawdown = float(np.max(1 - equity / np.maximum.accumulate(equity)))
    starts = np.concatenate([[True], held[1:] != held[:-1]])
    run = np.cumsum(starts)
    trades = pd.Series(net[held != 0]).groupby(run[held != 0]).sum()
    losses = -trades[trades < 0].sum()
    return {
        "sharpe": float(net.mean() / net.std() * np.sqrt(8760)),
        "win_rate": float((trades > 0).mean()),
        "profit_factor": float(trades[trades > 0].sum() / losses) if losses > 0 else float("inf"),
        "max_drawdown": drawdown,
        "trades": float(len(trades)),
    }


def passes(m: dict[str, float], criteria: Criteria) -> bool:
    return (m["sharpe"] >= criteria.min_sharpe and m["win_rate"] >= criteria.min_win_rate
            and m["profit_factor"] >= criteria.min_profit_factor
            and m["max_drawdown"] <= criteria.max_drawdown and m["trades"] >= criteria.min_trades)


def out_of_sample(n: int) -> slice:
    return slice(int(n * EvaluationSpec().min_train_fraction), n)


@pytest.mark.parametrize("kind", ["random_walk", "planted"])
def test_bars_are_valid_ohlcv(kind: str) -> None:
    bars = generate(parse_synthetic_uri(f"builtin:synthetic?kind={kind}&seed=3&bars=3000")).bars
    assert len(bars) == 3000
    assert list(bars.columns) == ["open", "high", "low", "close", "volume"]
    assert bars.index.is_monotonic_increasing and bars.index.is_unique and str(bars.index.tz) == "UTC"
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars[["open", "high", "low", "close", "volume"]] > 0).all().all()
    assert np.isfinite(bars.to_numpy()).all()
    assert (bars["open"].iloc[1:].to_numpy() == bars["close"].iloc[:-1].to_numpy()).all()


def test_same_parameters_same_bars_different_seed_different_bars() -> None:
    one = generate(parse_synthetic_uri("builtin:synthetic?kind=planted&seed=11&bars=500")).bars
    again = generate(parse_synthetic_uri("builtin:synthetic?kind=planted&seed=11&bars=500")).bars
    other = generate(parse_synthetic_uri("builtin:synthetic?kind=planted&seed=12&bars=500")).bars
    pd.testing.assert_frame_equal(one, again)
    assert not np.allclose(one["close"].to_numpy(), other["close"].to_numpy())


def test_loader_runs_builtins_through_the_same_cleaning_and_honours_timeframe_and_start() -> None:
    spec = DatasetSpec(uri="builtin:synthetic?kind=random_walk&seed=1&bars=100&start=2021-03-01",
                       symbol="SYN", timeframe="4h")
    data = load_dataset(spec)
    assert data.report.rows_kept == 100 and data.report.gap_count == 0
    assert data.report.first_bar == "2021-03-01T00:00:00Z"
    assert data.bars.index[1] - data.bars.index[0] == pd.Timedelta(hours=4)
    assert data.report.source == spec.uri
    assert load_dataset(spec).report.fingerprint == data.report.fingerprint


def test_defaults() -> None:
    params = parse_synthetic_uri("builtin:synthetic")
    assert (params.kind, params.seed, params.bars, params.vol) == ("random_walk", 0, 52560, 0.005)
    assert params.start == pd.Timestamp("2020-01-01", tz="UTC")
    planted = parse_synthetic_uri("builtin:synthetic?kind=planted")
    assert (planted.strength, planted.regime, planted.df, planted.vol_ratio) == (0.075, 600.0, 0.0, 1.0)


@pytest.mark.parametrize(("uri", "message"), [
    ("builtin:prices", "use one of: synthetic"),
    ("builtin:synthetic?kind=sine", "kind=random_walk or kind=planted"),
    ("builtin:synthetic?colour=red", "unknown parameter"),
    ("builtin:synthetic?seed=abc", "not a number"),
    ("builtin:synthetic?bars=1", "out of range"),
    ("builtin:synthetic?vol=0", "out of range"),
    ("builtin:synthetic?start=someday", "not a date"),
    ("builtin:synthetic?seed=1&seed=2", "more than once"),
    ("builtin:synthetic?kind=random_walk&strength=2", "do not apply"),
])
def test_bad_builtin_uris_are_data_errors_naming_the_uri_field(uri: str, message: str) -> None:
    with pytest.raises(DataError, match=message) as caught:
        load_dataset(DatasetSpec(uri=uri, symbol="SYN"))
    assert caught.value.field == "spec.dataset.uri"


def test_planted_regime_is_a_markov_chain_with_the_stated_mean_length() -> None:
    series = generate(parse_synthetic_uri("builtin:synthetic?kind=planted&seed=5&bars=200000&regime=400"))
    assert series.regime is not None
    switches = np.flatnonzero(np.diff(series.regime) != 0)
    lengths = np.diff(switches)
    assert 360 <= lengths.mean() <= 440  # ~500 runs: the mean is within ~10 %
    # geometric run lengths: memoryless, so the share of runs shorter than the mean is 1 - e^-1
    assert 0.57 <= float(np.mean(lengths < 400)) <= 0.69


def test_planted_oracle_is_far_above_any_past_only_benchmark() -> None:
    """Holding the true regime is not achievable: the forward filter, which knows every parameter,
    nets a fraction of the oracle's Sharpe on the same bars."""
    for seed in range(3):
        series = generate(parse_synthetic_uri(f"builtin:synthetic?kind=planted&seed={seed}"))
        assert series.regime is not None
        close = series.bars["close"].to_numpy()
        oos = out_of_sample(len(close))
        oracle = simple_backtest(series.regime[oos], close[oos])
        filtered = simple_backtest(np.sign(forward_filter_scores(series))[oos], close[oos])
        assert oracle["sharpe"] > 6.0, (seed, oracle)
        assert filtered["sharpe"] < 0.75 * oracle["sharpe"], (seed, filtered, oracle)


def test_planted_regime_is_visible_in_past_returns() -> None:
    """A past-only 200-bar momentum sign agrees with the hidden regime more often than chance."""
    for seed in range(5):
        series = generate(parse_synthetic_uri(f"builtin:synthetic?kind=planted&seed={seed}&bars=20000"))
        assert series.regime is not None
        momentum = np.sign(series.bars["close"].pct_change(200).to_numpy())
        agreement = float(np.mean(momentum[200:] == series.regime[200:]))
        assert agreement > 0.6, (seed, agreement)


def test_random_walk_rewards_no_rule() -> None:
    """Trend following, its reverse and one-bar follow-through all fail the criteria on a random walk."""
    criteria = Criteria()
    for seed in SEEDS:
        uri = f"builtin:synthetic?seed={seed}&bars=5000"
        close = generate(parse_synthetic_uri(uri)).bars["close"].to_numpy()
        oos = out_of_sample(len(close))
        momentum = np.sign(pd.Series(close).pct_change(20).fillna(0).to_numpy())
        for position in (momentum, -momentum, np.sign(pd.Series(close).pct_change(1).fillna(0).to_numpy())):
            metrics = simple_backtest(position[oos], close[oos])
            assert not passes(metrics, criteria), (seed, metrics)
