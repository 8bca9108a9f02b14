"""The real Binance BTC/USDT export in ../shared/data loads with every fault of its README repaired.

Expected figures are the README's (36,062 rows; 28,584 in seconds, 7,478 in milliseconds; 2,649
duplicated timestamps, 1,442 of them with different prices; 8 gaps, the longest 5 hours; tradecount
NULL for the older rows), not numbers read back from the loader.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from clm_contract.training_job import DatasetSpec
from clm_trainer.data import LoadedData, load_dataset

BTC = Path(__file__).resolve().parents[2] / "../shared/data/binance-btcusdt-1h.csv"
URI = f"file://{BTC.resolve()}"

ROWS, SECONDS_ROWS, MILLIS_ROWS, DUPLICATES, CONFLICTING = 36_062, 28_584, 7_478, 2_649, 1_442


@pytest.fixture(scope="module")
def btc() -> LoadedData:
    if not BTC.is_file():
        pytest.fail(f"test data missing: {BTC} (see ../shared/data/README.md)")
    return load_dataset(DatasetSpec(uri=URI, symbol="BTCUSDT", timeframe="1h"))


def test_row_counts_units_and_duplicates(btc: LoadedData) -> None:
    report = btc.report
    assert report.rows_read == ROWS
    assert report.timestamp_units == {"s": SECONDS_ROWS, "ms": MILLIS_ROWS}
    assert report.duplicates_dropped == DUPLICATES
    assert report.conflicting_duplicates == CONFLICTING
    assert report.rows_dropped_invalid == 0
    assert report.rows_kept == ROWS - DUPLICATES == 33_413
    assert len(btc.bars) == report.rows_kept
    assert report.reordered is True
    assert report.nulls == {"tradecount": SECONDS_ROWS}


def test_index_is_ascending_unique_utc_hourly(btc: LoadedData) -> None:
    index = btc.bars.index
    assert index.is_monotonic_increasing and index.is_unique
    assert str(index.tz) == "UTC" and index.name == "time"
    assert btc.report.first_bar == "2017-08-17T04:00:00Z"
    assert btc.report.last_bar == "2021-06-10T00:00:00Z"
    assert btc.report.timeframe == "1h"
    assert list(btc.bars.columns) == ["open", "high", "low", "close", "volume"]
    assert btc.bars.notna().all().all()


def test_all_eight_gaps_are_reported_and_none_filled(btc: LoadedData) -> None:
    report = btc.report
    assert report.gap_count == 8 == len(report.gaps)
    spans = [pd.Timestamp(str(g["before"])) - pd.Timestamp(str(g["after"])) for g in report.gaps]
    assert max(spans) == pd.Timedelta(hours=5)
    assert all(span > pd.Timedelta(hours=1) for span in spans)
    assert report.longest_gap_bars == 4  # a 5-hour step between bars: 4 hourly bars missing
    assert sum(int(str(g["missingBars"])) for g in report.gaps) == 16
    hours = (btc.bars.index[-1] - btc.bars.index[0]) // pd.Timedelta(hours=1) + 1
    assert hours - len(btc.bars) == 16  # exactly the missing bars: nothing was invented
    assert report.gaps[0] == {"after": "2017-09-22T19:00:00Z", "before": "2017-09-23T00:00:00Z",
                              "missingBars": 4}


def test_overlap_keeps_the_full_precision_millisecond_rows(btc: LoadedData) -> None:
    # 2020-08-01 23:00 is in both exports: 11783.31 (ms export, 8 decimals) vs 11783.30 (s export).
    bar = btc.bars.loc[pd.Timestamp("2020-08-01 23:00", tz="UTC")]
    assert bar["open"] == 11783.31
    assert bar["volume"] == pytest.approx(2194.598589)
    # Base-asset volume (BTC), not the quote volume in USDT.
    assert btc.report.columns["volume"] == "Volume BTC"
    assert btc.bars["volume"].iloc[-1] == pytest.approx(798.276499)


def test_report_is_json_and_the_load_is_fast_and_deterministic(btc: LoadedData) -> None:
    wire = btc.report.to_dict()
    assert json.loads(json.dumps(wire)) == wire
    started = time.perf_counter()
    again = load_dataset(DatasetSpec(uri=URI, symbol="BTC/USDT"))
    assert time.perf_counter() - started < 2.0
    assert again.report.fingerprint == btc.report.fingerprint
    pd.testing.assert_frame_equal(again.bars, btc.bars)


def test_windows_on_the_real_file() -> None:
    start = datetime(2021, 1, 1, tzinfo=UTC)
    windowed = load_dataset(DatasetSpec(uri=URI, symbol="BTCUSDT", start=start,
                                        end=datetime(2021, 2, 1, tzinfo=UTC)))
    assert windowed.report.first_bar == "2021-01-01T00:00:00Z"
    assert windowed.report.last_bar == "2021-01-31T23:00:00Z"
    assert windowed.report.rows_kept == 31 * 24 and windowed.report.gap_count == 0
    assert windowed.report.rows_outside_window == ROWS - DUPLICATES - 31 * 24
    recent = load_dataset(DatasetSpec(uri=URI, symbol="BTCUSDT", lookback_days=90))
    assert recent.report.last_bar == "2021-06-10T00:00:00Z"
    # 90 days of hourly bars minus the bars missing in the gaps of that period (Mar 12 - Jun 10).
    missing = sum(int(str(g["missingBars"])) for g in recent.report.gaps)
    assert recent.report.rows_kept == 90 * 24 - missing
    assert recent.report.gap_count == 2
