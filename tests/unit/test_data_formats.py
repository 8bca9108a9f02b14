"""File formats the loader reads: Parquet (round trip), gzip CSV, sniffing, odd delimiters, banners."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clm_contract.training_job import DatasetSpec
from clm_trainer.data import DataError, LoadedData, load_dataset, read_table


def bars_frame(n: int = 48) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    return pd.DataFrame({
        "open": open_, "high": np.maximum(open_, close) * 1.002, "low": np.minimum(open_, close) * 0.998,
        "close": close, "volume": rng.uniform(1, 10, n),
    }, index=pd.date_range("2022-03-01", periods=n, freq="h", tz="UTC", name="time"))


def load(path: Path) -> LoadedData:
    return load_dataset(DatasetSpec(uri=f"file://{path}", symbol="TEST"))


def test_parquet_round_trip_with_datetime_index_matches_csv(tmp_path: Path) -> None:
    frame = bars_frame()
    frame.to_parquet(tmp_path / "bars.parquet")
    as_csv = frame.reset_index()
    as_csv["time"] = as_csv["time"].dt.as_unit("ms").astype("int64")  # epoch milliseconds
    as_csv.to_csv(tmp_path / "bars.csv", index=False)
    from_parquet, from_csv = load(tmp_path / "bars.parquet"), load(tmp_path / "bars.csv")
    expected = frame.astype("float64")
    expected.index = expected.index.as_unit("ns")
    pd.testing.assert_frame_equal(from_parquet.bars, expected, check_freq=False)
    assert from_parquet.report.fingerprint == from_csv.report.fingerprint
    assert from_parquet.report.timestamp_units == {"datetime": 48}
    assert from_csv.report.timestamp_units == {"ms": 48}


def test_parquet_with_time_column_and_naive_times(tmp_path: Path) -> None:
    frame = bars_frame().reset_index()
    frame["time"] = frame["time"].dt.tz_localize(None)
    frame.to_parquet(tmp_path / "bars.pq", index=False)
    data = load(tmp_path / "bars.pq")
    assert data.bars.index[0] == pd.Timestamp("2022-03-01", tz="UTC")
    assert len(data.bars) == 48


def test_format_is_sniffed_without_an_extension(tmp_path: Path) -> None:
    bars_frame().to_parquet(tmp_path / "blob")
    assert len(load(tmp_path / "blob").bars) == 48


def test_gzip_csv(tmp_path: Path) -> None:
    text = bars_frame().reset_index().to_csv(index=False)
    (tmp_path / "bars.csv.gz").write_bytes(gzip.compress(text.encode()))
    data = load(tmp_path / "bars.csv.gz")
    assert len(data.bars) == 48
    assert data.report.timestamp_units == {"text:ISO8601": 48}


def test_semicolon_delimiter_and_banner_line(tmp_path: Path) -> None:
    body = bars_frame(4).reset_index().to_csv(index=False, sep=";")
    (tmp_path / "semi.csv").write_text(body)
    assert len(load(tmp_path / "semi.csv").bars) == 4
    # Public crypto dumps often put a URL above the header.
    banner = "https://www.example.com\n" + bars_frame(4).reset_index().to_csv(index=False)
    (tmp_path / "banner.csv").write_text(banner)
    assert len(load(tmp_path / "banner.csv").bars) == 4


def test_garbage_is_a_data_error_naming_the_uri(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(DataError, match="Parquet") as caught:
        load(tmp_path / "bad.parquet")
    assert caught.value.field == "spec.dataset.uri"


def test_read_table_returns_raw_columns() -> None:
    frame = read_table(b"Date,Open,High,Low,Close\n2020-01-01 00:00:00,1,2,1,1\n", "x.csv")
    assert list(frame.columns) == ["Date", "Open", "High", "Low", "Close"]
