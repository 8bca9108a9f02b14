"""Every repair of the data loader, each on a small hand-made CSV whose right answer is known."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from clm_contract.training_job import DatasetSpec
from clm_trainer.data import DUPLICATE_RULE, DataError, LoadedData, load_dataset

HEADER = "unix,date,symbol,open,high,low,close,Volume BTC,Volume USDT,tradecount\n"
T0 = 1_600_000_000  # 2020-09-13T12:26:40Z; bars below are on whole hours from T1
T1 = 1_600_002_000 - 1_600_002_000 % 3600 + 3600  # 2020-09-13T14:00:00Z


def ts(hour: int) -> pd.Timestamp:
    return pd.Timestamp(T1 + 3600 * hour, unit="s", tz="UTC")


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return f"file://{path}"


def load(uri: str, **spec: Any) -> LoadedData:
    spec.setdefault("symbol", "BTCUSDT")
    return load_dataset(DatasetSpec(uri=uri, **spec))


def row(unix: str, o: float, h: float, lo: float, c: float, vol: float = 1.0, date: str = "x",
        count: str = "7") -> str:
    return f"{unix},{date},BTC/USDT,{o},{h},{lo},{c},{vol},{vol * c},{count}\n"


def test_mixed_second_and_millisecond_timestamps_become_one_utc_index(tmp_path: Path) -> None:
    text = HEADER + row(str(T1), 10, 11, 9, 10.5) + row(f"{(T1 + 3600) * 1000}", 10.5, 12, 10, 11) \
        + row(f"{T1 + 7200}.0", 11, 11.5, 10.5, 11.2)
    data = load(write(tmp_path, text))
    assert list(data.bars.index) == [ts(0), ts(1), ts(2)]
    assert data.report.timestamp_units == {"s": 2, "ms": 1}
    assert str(data.bars.index.tz) == "UTC"
    assert data.bars.index.name == "time"
    assert list(data.bars.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dtype == np.float64 for dtype in data.bars.dtypes)


def test_both_date_formats_parse_including_12_hour_clock(tmp_path: Path) -> None:
    text = ("date,open,high,low,close,volume\n"
            "2020-11-20 12-AM,1,2,1,1.5,3\n"        # 12-AM is midnight
            "2020-11-20 01-AM,1.5,2,1,1.2,3\n"
            "2020-11-20 02:00:00,1.2,2,1,1.1,3\n"
            "2020-11-20 03-AM,1.1,2,1,1.3,3\n")
    data = load(write(tmp_path, text), timeframe="1h")
    assert list(data.bars.index) == list(pd.date_range("2020-11-20", periods=4, freq="h", tz="UTC"))
    assert data.report.timestamp_units == {"text:%Y-%m-%d %H:%M:%S": 1, "text:%Y-%m-%d %I-%p": 3}


def test_12_pm_is_noon(tmp_path: Path) -> None:
    text = "date,open,high,low,close\n2020-11-20 12-PM,1,2,1,1\n2020-11-20 01-PM,1,2,1,1\n"
    data = load(write(tmp_path, text))
    assert data.bars.index[0] == pd.Timestamp("2020-11-20 12:00", tz="UTC")
    assert data.bars.index[1] == pd.Timestamp("2020-11-20 13:00", tz="UTC")


def test_iso_times_with_offsets_are_converted_to_utc(tmp_path: Path) -> None:
    text = "time,open,high,low,close\n2021-01-01T01:00:00+01:00,1,2,1,1\n2021-01-01T01:00:00Z,1,2,1,1\n"
    data = load(write(tmp_path, text))
    assert list(data.bars.index) == [pd.Timestamp("2021-01-01 00:00", tz="UTC"),
                                     pd.Timestamp("2021-01-01 01:00", tz="UTC")]
    assert data.report.timestamp_units == {"text:ISO8601": 2}


def test_epoch_column_wins_and_date_column_fills_rows_it_cannot_parse(tmp_path: Path) -> None:
    text = HEADER + row(str(T1), 1, 2, 1, 1) + row("", 1, 2, 1, 1, date=ts(1).strftime("%Y-%m-%d %H:%M:%S"))
    data = load(write(tmp_path, text))
    assert list(data.bars.index) == [ts(0), ts(1)]
    assert data.report.timestamp_units == {"s": 1, "text:%Y-%m-%d %H:%M:%S": 1}
    assert data.report.columns["time"] == "unix"


def test_reverse_order_is_sorted_and_reported(tmp_path: Path) -> None:
    rows = [row(str(T1 + 3600 * h), 10 + h, 11 + h, 9 + h, 10.5 + h) for h in range(5)]
    data = load(write(tmp_path, HEADER + "".join(reversed(rows))))
    assert data.bars.index.is_monotonic_increasing and data.bars.index.is_unique
    assert data.bars["open"].tolist() == [10, 11, 12, 13, 14]
    assert data.report.reordered is True

    ascending = load(write(tmp_path, HEADER + "".join(rows), "ascending.csv"))
    assert ascending.report.reordered is False
    assert ascending.report.fingerprint == data.report.fingerprint


def test_conflicting_duplicates_keep_the_millisecond_row_whatever_the_file_order(tmp_path: Path) -> None:
    seconds_row = row(str(T1 + 3600), 100.0, 101.0, 99.0, 100.5, vol=5.0, count="NULL")
    millis_row = row(str((T1 + 3600) * 1000), 100.01, 101.0, 99.0, 100.49, vol=5.01)
    first = row(str(T1), 99, 100.5, 98, 100)
    for order in ([seconds_row, millis_row], [millis_row, seconds_row]):
        data = load(write(tmp_path, HEADER + first + "".join(order)))
        assert data.bars.loc[ts(1), "open"] == 100.01
        assert data.bars.loc[ts(1), "close"] == 100.49
        assert data.report.duplicates_dropped == 1
        assert data.report.conflicting_duplicates == 1
        assert data.report.rows_kept == 2
        assert data.report.duplicate_rule == DUPLICATE_RULE


def test_identical_duplicates_are_dropped_but_not_conflicting(tmp_path: Path) -> None:
    same = row(str(T1), 1, 2, 1, 1.5)
    data = load(write(tmp_path, HEADER + same + same + row(str(T1 + 3600), 1.5, 2, 1, 1.7)))
    assert data.report.duplicates_dropped == 1
    assert data.report.conflicting_duplicates == 0


def test_same_unit_duplicates_prefer_fewer_empty_fields_then_first_in_file(tmp_path: Path) -> None:
    with_nulls = row(str(T1), 1.0, 2, 1, 1.1, count="NULL")
    complete = row(str(T1), 1.0, 2, 1, 1.2)
    later = row(str(T1), 1.0, 2, 1, 1.3)
    data = load(write(tmp_path, HEADER + with_nulls + complete + later + row(str(T1 + 3600), 1, 2, 1, 1)))
    assert data.bars.loc[ts(0), "close"] == 1.2
    assert data.report.duplicates_dropped == 2


def test_invalid_duplicate_never_wins(tmp_path: Path) -> None:
    broken_ms = row(str(T1 * 1000), 1.0, 0.5, 1, 1.2)  # high below open: invalid
    good_s = row(str(T1), 1.0, 2, 1, 1.3)
    data = load(write(tmp_path, HEADER + broken_ms + good_s + row(str(T1 + 3600), 1, 2, 1, 1)))
    assert data.bars.loc[ts(0), "close"] == 1.3
    assert data.report.rows_dropped_invalid == 1
    assert data.report.duplicates_dropped == 0


def test_gaps_are_reported_and_never_filled(tmp_path: Path) -> None:
    hours = [0, 1, 2, 5, 6, 10]  # missing 3,4 then 7,8,9
    text = HEADER + "".join(row(str(T1 + 3600 * h), 1, 2, 1, 1.5) for h in hours)
    report = load(write(tmp_path, text)).report
    assert report.rows_kept == 6
    assert report.gap_count == 2
    assert report.longest_gap_bars == 3
    assert report.gaps == [
        {"after": ts(2).strftime("%Y-%m-%dT%H:%M:%SZ"), "before": ts(5).strftime("%Y-%m-%dT%H:%M:%SZ"),
         "missingBars": 2},
        {"after": ts(6).strftime("%Y-%m-%dT%H:%M:%SZ"), "before": ts(10).strftime("%Y-%m-%dT%H:%M:%SZ"),
         "missingBars": 3},
    ]


def test_nulls_are_counted_and_rows_with_null_prices_dropped(tmp_path: Path) -> None:
    text = (HEADER + row(str(T1), 1, 2, 1, 1.5, count="NULL") + row(str(T1 + 3600), 1, 2, 1, 1.5, count="")
            + f"{T1 + 7200},x,BTC/USDT,1,2,1,NULL,1,1,5\n" + row(str(T1 + 10800), 1, 2, 1, 1.5))
    data = load(write(tmp_path, text))
    assert data.report.nulls == {"tradecount": 2, "close": 1}
    assert data.report.rows_dropped_invalid == 1
    assert data.report.rows_kept == 3


def test_null_volume_is_kept_as_nan_and_counted(tmp_path: Path) -> None:
    text = "time,open,high,low,close,volume\n" + f"{T1},1,2,1,1.5,\n{T1 + 3600},1,2,1,1.5,4\n"
    data = load(write(tmp_path, text))
    assert np.isnan(data.bars["volume"].iloc[0]) and data.bars["volume"].iloc[1] == 4
    assert data.report.nulls == {"volume": 1}
    assert data.report.rows_dropped_invalid == 0


@pytest.mark.parametrize("bad", [
    "1,0.9,1,1.5",      # high below open and close
    "1,2,1.2,1.5",      # low above open
    "-1,2,-1,1.5",      # negative prices
    "0,2,0,1.5",        # zero price
    "1,inf,1,1.5",      # not finite
    "1,2,1,abc",        # not a number
])
def test_inconsistent_or_non_positive_bars_are_dropped(tmp_path: Path, bad: str) -> None:
    text = ("time,open,high,low,close,volume\n" + f"{T1},1,2,1,1.5,3\n{T1 + 3600},1,2,1,1.5,3\n"
            + f"{T1 + 7200},{bad},3\n" + f"{T1 + 10800},1,2,1,1.5,3\n")
    data = load(write(tmp_path, text))
    assert data.report.rows_dropped_invalid == 1
    assert list(data.bars.index) == [ts(0), ts(1), ts(3)]


def test_negative_volume_is_invalid(tmp_path: Path) -> None:
    text = "time,open,high,low,close,volume\n" + f"{T1},1,2,1,1.5,-3\n{T1 + 3600},1,2,1,1.5,3\n" \
        f"{T1 + 7200},1,2,1,1.5,3\n"
    assert load(write(tmp_path, text)).report.rows_dropped_invalid == 1


def test_missing_price_column_is_a_data_error_naming_the_uri(tmp_path: Path) -> None:
    uri = write(tmp_path, "time,open,high,low,volume\n" + f"{T1},1,2,1,3\n")
    with pytest.raises(DataError) as caught:
        load(uri)
    assert caught.value.field == "spec.dataset.uri"
    assert "close" in str(caught.value) and uri in str(caught.value)
    assert caught.value.fix


def test_missing_time_column_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="time column") as caught:
        load(write(tmp_path, "open,high,low,close\n1,2,1,1.5\n"))
    assert caught.value.field == "spec.dataset.uri"


def test_nothing_usable_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="none of the 2 rows") as caught:
        load(write(tmp_path, "time,open,high,low,close\nnot-a-time,1,2,1,1\n" + f"{T1},1,0.5,1,1\n"))
    assert caught.value.field == "spec.dataset.uri"


def test_header_only_and_empty_files_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no rows"):
        load(write(tmp_path, "time,open,high,low,close\n"))
    with pytest.raises(DataError, match="empty"):
        load(write(tmp_path, "", "empty.csv"))


def test_missing_file_is_a_data_error_naming_the_uri(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as caught:
        load(f"file://{tmp_path}/nope.csv")
    assert caught.value.field == "spec.dataset.uri"


def test_columns_are_matched_case_insensitively(tmp_path: Path) -> None:
    text = "Timestamp,OPEN,High,low,Close,Volume\n" + f"{T1},1,2,1,1.5,3\n{T1 + 3600},1.5,2,1,1.2,4\n"
    data = load(write(tmp_path, text))
    assert data.bars["volume"].tolist() == [3, 4]
    assert data.report.columns == {"time": "Timestamp", "open": "OPEN", "high": "High", "low": "low",
                                   "close": "Close", "volume": "Volume"}


@pytest.mark.parametrize("symbol", ["BTCUSDT", "BTC/USDT", "btc-usdt"])
def test_base_asset_volume_is_chosen_from_symbol_named_columns(tmp_path: Path, symbol: str) -> None:
    text = HEADER + row(str(T1), 1, 2, 1, 1.5, vol=3.0) + row(str(T1 + 3600), 1, 2, 1, 1.5, vol=5.0)
    data = load(write(tmp_path, text), symbol=symbol)
    assert data.bars["volume"].tolist() == [3.0, 5.0]
    assert data.report.columns["volume"] == "Volume BTC"


def test_quote_volume_listed_first_is_still_skipped(tmp_path: Path) -> None:
    text = ("time,open,high,low,close,Volume ETH,Volume BTC\n"
            + f"{T1},1,2,1,1.5,3,99\n{T1 + 3600},1,2,1,1.5,4,98\n")
    data = load(write(tmp_path, text), symbol="BTCETH")
    assert data.report.columns["volume"] == "Volume BTC"


def test_missing_volume_gives_a_nan_column(tmp_path: Path) -> None:
    data = load(write(tmp_path, "time,open,high,low,close\n" + f"{T1},1,2,1,1.5\n{T1 + 3600},1,2,1,1.5\n"))
    assert data.bars["volume"].isna().all()
    assert "volume" not in data.report.columns


def test_timeframe_disagreeing_with_the_data_names_the_timeframe_field(tmp_path: Path) -> None:
    text = HEADER + "".join(row(str(T1 + 3600 * h), 1, 2, 1, 1.5) for h in range(4))
    with pytest.raises(DataError, match="'1h'") as caught:
        load(write(tmp_path, text), timeframe="4h")
    assert caught.value.field == "spec.dataset.timeframe"


def test_other_symbols_rows_are_filtered_and_a_wrong_symbol_is_refused(tmp_path: Path) -> None:
    text = ("time,symbol,open,high,low,close\n" + f"{T1},BTC/USDT,1,2,1,1.5\n{T1},ETH/USDT,5,6,5,5.5\n"
            + f"{T1 + 3600},BTC/USDT,1,2,1,1.6\n{T1 + 3600},ETH/USDT,5,6,5,5.6\n")
    uri = write(tmp_path, text)
    eth = load(uri, symbol="ETHUSDT")
    assert eth.bars["close"].tolist() == [5.5, 5.6]
    assert eth.report.duplicates_dropped == 0
    assert eth.report.rows_other_symbols == 2
    assert eth.report.rows_kept == 2
    with pytest.raises(DataError, match="ETH/USDT") as caught:
        load(uri, symbol="SOLUSDT")
    assert caught.value.field == "spec.dataset.symbol"


def hourly(tmp_path: Path, hours: int) -> str:
    rows = "".join(row(str(T1 + 3600 * h), 1, 2, 1, 1 + h / 100) for h in range(hours))
    return write(tmp_path, HEADER + rows)


def test_start_and_end_window_is_half_open(tmp_path: Path) -> None:
    uri = hourly(tmp_path, 10)
    data = load(uri, start=ts(2).to_pydatetime(), end=ts(5).to_pydatetime())
    assert list(data.bars.index) == [ts(2), ts(3), ts(4)]
    assert data.report.rows_outside_window == 7
    assert data.report.rows_kept == 3


def test_naive_window_times_are_utc(tmp_path: Path) -> None:
    data = load(hourly(tmp_path, 10), start=datetime(2020, 9, 13, 16, 0))
    assert data.bars.index[0] == pd.Timestamp("2020-09-13 16:00", tz="UTC")


def test_lookback_days_counts_back_from_the_last_bar(tmp_path: Path) -> None:
    data = load(hourly(tmp_path, 72), lookback_days=1)
    assert len(data.bars) == 24
    assert data.bars.index[-1] == ts(71)
    assert data.bars.index[0] == ts(48)


def test_window_with_no_bars_names_the_window_field(tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        load(hourly(tmp_path, 10), start=datetime(2030, 1, 1))
    assert caught.value.field == "spec.dataset.start"


def test_report_is_camel_case_json_and_fingerprint_tracks_the_bars(tmp_path: Path) -> None:
    data = load(hourly(tmp_path, 5))
    wire = data.report.to_dict()
    assert json.loads(json.dumps(wire)) == wire
    for key in ("rowsRead", "rowsKept", "duplicatesDropped", "duplicateRule", "conflictingDuplicates",
                "timestampUnits", "reordered", "gaps", "gapCount", "longestGapBars", "nulls",
                "rowsDroppedInvalid", "firstBar", "lastBar", "fingerprint"):
        assert key in wire
    assert wire["firstBar"] == ts(0).strftime("%Y-%m-%dT%H:%M:%SZ")
    again = load(hourly(tmp_path, 5))
    assert again.report.fingerprint == data.report.fingerprint
    changed = write(tmp_path, HEADER + "".join(row(str(T1 + 3600 * h), 1, 2, 1, 1 + h / 100 + (h == 3) * 1e-6)
                                               for h in range(5)), "changed.csv")
    assert load(changed).report.fingerprint != data.report.fingerprint


def test_empty_symbol_cells_in_a_single_symbol_file_are_nulls_not_other_symbols(tmp_path: Path) -> None:
    text = ("time,symbol,open,high,low,close\n" + f"{T1},BTC/USDT,1,2,1,1.5\n{T1 + 3600},,1,2,1,1.5\n"
            + f"{T1 + 7200},BTC/USDT,1,2,1,1.5\n")
    data = load(write(tmp_path, text))
    assert data.report.rows_kept == 3
    assert data.report.rows_other_symbols == 0
    assert data.report.nulls == {"symbol": 1}


def test_split_date_and_time_of_day_columns_are_combined(tmp_path: Path) -> None:
    text = ("Date,Time,Open,High,Low,Close,Volume\n2021-03-04,23:00,1,2,1,1.5,3\n"
            "2021-03-05,00:00,1.5,2,1,1.2,4\n2021-03-05,01:00:00,1.2,2,1,1.1,5\n")
    data = load(write(tmp_path, text))
    assert list(data.bars.index) == list(pd.date_range("2021-03-04 23:00", periods=3, freq="h", tz="UTC"))
    assert data.report.columns["time"] == "Date+Time"
