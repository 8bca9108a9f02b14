"""Properties of the loader: whatever order, units and duplicates a clean series is exported with, the
same bars (and fingerprint) come back, and the report counts exactly what was added."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from clm_contract.training_job import DatasetSpec
from clm_trainer.data import clean_bars, read_table
from hypothesis import given, settings
from hypothesis import strategies as st

SPEC = DatasetSpec(uri="file:///in-memory.csv", symbol="BTCUSDT")


def clean_series(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = np.round(100 * np.exp(np.cumsum(rng.normal(0, 0.01, n))), 2)
    open_ = np.concatenate([[100.0], close[:-1]])
    skips = np.zeros(n, dtype=np.int64)
    skips[rng.choice(np.arange(1, n), size=n // 5, replace=False)] = rng.integers(1, 4, n // 5)
    hours = np.arange(n) + np.cumsum(skips)  # a few gaps, rare enough that 1h stays the usual step
    return pd.DataFrame({
        "unix": 1_600_000_000 - 1_600_000_000 % 3600 + 3600 * hours,
        "open": open_, "high": np.maximum(open_, close) + 0.5, "low": np.minimum(open_, close) - 0.5,
        "close": close, "volume": np.round(rng.uniform(1, 9, n), 3),
    })


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 40), seed=st.integers(0, 10_000), data=st.data())
def test_order_units_and_duplicates_do_not_change_the_bars(n: int, seed: int, data: st.DataObject) -> None:
    base = clean_series(n, seed)
    reference = clean_bars(base, SPEC, source="ref")
    rng = np.random.default_rng(data.draw(st.integers(0, 10_000)))

    in_ms = rng.random(n) < data.draw(st.floats(0, 1))
    exported = base.copy()
    exported["unix"] = np.where(in_ms, exported["unix"] * 1000, exported["unix"])
    n_dup = data.draw(st.integers(0, n))
    dup_rows = rng.choice(n, size=n_dup, replace=False)
    # Duplicates come from the coarser export: second timestamps and prices rounded to 1 decimal, so
    # every duplicate of a millisecond row conflicts with it and must lose.
    dups = base.iloc[dup_rows].copy()
    dups[["open", "close"]] = dups[["open", "close"]].round(1)
    dups["high"] = dups[["open", "close", "high"]].max(axis=1)
    dups["low"] = dups[["open", "close", "low"]].min(axis=1)
    ms_dup_rows = dup_rows[in_ms[dup_rows]]
    rows = pd.concat([exported, dups.loc[base.index[ms_dup_rows]]], ignore_index=True)
    rows = rows.iloc[rng.permutation(len(rows))]

    loaded = clean_bars(read_table(rows.to_csv(index=False).encode(), "x.csv"), SPEC, source="x")

    pd.testing.assert_frame_equal(loaded.bars, reference.bars)
    assert loaded.report.fingerprint == reference.report.fingerprint
    assert loaded.report.duplicates_dropped == len(ms_dup_rows)
    conflicting = int((dups.loc[base.index[ms_dup_rows], ["open", "close"]].to_numpy()
                       != base.loc[base.index[ms_dup_rows], ["open", "close"]].to_numpy()).any(axis=1).sum())
    assert loaded.report.conflicting_duplicates == conflicting
    assert loaded.report.timestamp_units.get("ms", 0) == int(in_ms.sum())
    assert loaded.report.rows_read == n + len(ms_dup_rows)
    assert loaded.report.gap_count == reference.report.gap_count


@settings(max_examples=25, deadline=None)
@given(n=st.integers(3, 30), seed=st.integers(0, 10_000))
def test_parquet_and_csv_exports_load_identically(n: int, seed: int) -> None:
    base = clean_series(n, seed)
    buffer = io.BytesIO()
    base.to_parquet(buffer, index=False)
    from_parquet = clean_bars(read_table(buffer.getvalue(), "x.parquet"), SPEC, source="p")
    from_csv = clean_bars(read_table(base.to_csv(index=False).encode(), "x.csv"), SPEC, source="c")
    pd.testing.assert_frame_equal(from_parquet.bars, from_csv.bars)
