"""Load OHLCV bars (CSV or Parquet from file:// or s3://, or a builtin) and repair what can be repaired.

Real exports are messy (see ``../shared/data/README.md``): reverse order, timestamps in seconds and
milliseconds mixed, several date formats, overlapping exports that duplicate bars with slightly
different prices, gaps, NULLs, volume columns named after the asset. ``load_dataset`` normalises all of
that with vectorised pandas, records every repair in a ``DataReport`` (it goes into ``manifest.json``),
and raises ``DataError`` (permanent, exit 2) naming the spec field at fault when the data is unusable.

Nothing is resampled or filled: gaps are reported, never invented.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import cast
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
from clm_contract.storage import ObjectNotFoundError, S3Settings, read_uri
from clm_contract.training_job import DatasetSpec

OHLCV = ["open", "high", "low", "close", "volume"]
PRICES = ["open", "high", "low", "close"]

# Candidate time columns, most trusted first: a numeric epoch beats a formatted date (no time-zone or
# 12-hour-clock ambiguity). Later candidates only fill rows the earlier ones could not parse.
_TIME_NAMES = ["unix", "timestamp", "unixtime", "epoch", "opentime", "time", "datetime", "date", "ts"]

# Resolution rank of each timestamp source, finest first (used by the de-duplication rule).
_UNIT_RANK = {"ns": 5, "us": 4, "ms": 3, "s": 2, "datetime": 2}

# Text formats tried in order (each only on rows still unparsed); ISO 8601 catches the rest.
_TEXT_FORMATS = ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %I-%p", "%Y-%m-%d %H:%M", "%Y-%m-%d"]

DUPLICATE_RULE = (
    "one row per timestamp: keep the row whose timestamp has the finest unit (ns > us > ms > s/text, "
    "i.e. the full-precision export), then the row with the fewest empty fields, then the first in "
    "file order; rows are validated before de-duplication so an invalid row never wins"
)

TRAILING_BAR_WINDOW = 48
TRAILING_BAR_VOLUME_SHARE = 0.1
TRAILING_BAR_RULE = (
    f"the last bar is dropped when its volume is below {TRAILING_BAR_VOLUME_SHARE:g} x the median volume of "
    f"the {TRAILING_BAR_WINDOW} bars before it (an export taken while that bar was still open); "
    "only the last bar, only when the data has volume and that median is > 0"
)

_MIN_TIME = pd.Timestamp("1970-01-01", tz="UTC")
_MAX_TIME = pd.Timestamp("2200-01-01", tz="UTC")
_FIELD_URI = "spec.dataset.uri"


class DataError(ValueError):
    """Bad, empty or unrepairable data, or a spec that does not fit the data: permanent (exit 2)."""

    def __init__(self, field: str, message: str, fix: str) -> None:
        super().__init__(f"{field}: {message}. Fix: {fix}")
        self.field = field
        self.detail = message
        self.fix = fix


@dataclass(frozen=True)
class DataReport:
    """Everything the loader did to the data; ``to_dict`` is what goes into ``manifest.json``."""

    source: str
    rows_read: int
    rows_kept: int
    duplicates_dropped: int
    duplicate_rule: str
    conflicting_duplicates: int  # duplicated timestamps whose open/high/low/close differ
    timestamp_units: dict[str, int]  # rows per timestamp source: s, ms, us, ns, datetime, text:<format>
    reordered: bool  # the input was not in ascending time order
    gaps: list[dict[str, object]]  # {"after": iso, "before": iso, "missingBars": int}, every gap
    gap_count: int
    longest_gap_bars: int  # bars missing in the longest gap (bars 19:00 then 00:00 hourly -> 4)
    nulls: dict[str, int]  # empty cells per input column (only columns that have any)
    rows_dropped_invalid: int  # bad timestamp, non-finite or non-positive price, high/low inconsistent
    first_bar: str
    last_bar: str
    fingerprint: str  # sha256 of the cleaned OHLCV bytes (index as int64 ns, then float64 values)
    # Additions beyond the shared contract (all defaulted):
    timeframe: str = ""  # detected bar spacing, e.g. "1h"
    rows_outside_window: int = 0  # removed by start/end/lookbackDays
    rows_other_symbols: int = 0  # rows of other symbols in a multi-symbol file
    columns: dict[str, str] = field(default_factory=dict)  # canonical name -> input column used
    trailing_bar_dropped: str | None = None  # ISO time of the incomplete last bar dropped (TRAILING_BAR_RULE)

    def to_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "rowsRead": self.rows_read,
            "rowsKept": self.rows_kept,
            "duplicatesDropped": self.duplicates_dropped,
            "duplicateRule": self.duplicate_rule,
            "conflictingDuplicates": self.conflicting_duplicates,
            "timestampUnits": dict(self.timestamp_units),
            "reordered": self.reordered,
            "gaps": [dict(g) for g in self.gaps],
            "gapCount": self.gap_count,
            "longestGapBars": self.longest_gap_bars,
            "nulls": dict(self.nulls),
            "rowsDroppedInvalid": self.rows_dropped_invalid,
            "firstBar": self.first_bar,
            "lastBar": self.last_bar,
            "fingerprint": self.fingerprint,
            "timeframe": self.timeframe,
            "rowsOutsideWindow": self.rows_outside_window,
            "rowsOtherSymbols": self.rows_other_symbols,
            "columns": dict(self.columns),
            "trailingBarDropped": self.trailing_bar_dropped,
            "trailingBarRule": TRAILING_BAR_RULE,
        }


@dataclass(frozen=True)
class LoadedData:
    bars: pd.DataFrame  # DatetimeIndex "time" (UTC, ascending, unique); float64 open high low close volume
    report: DataReport


# ------------------------------------------------------------------------------------------- entry


def load_dataset(spec: DatasetSpec, s3: S3Settings | None = None) -> LoadedData:
    """Read ``spec.uri``, clean it, apply the window; raise DataError naming the field at fault.

    Storage trouble (StorageError) propagates unchanged: it is transient, not the data's fault.
    """
    if spec.uri.startswith("builtin:"):
        from clm_trainer.synthetic import generate_from_uri  # lazy: synthetic imports DataError from here

        frame = generate_from_uri(spec.uri, spec.timeframe)
        return clean_bars(frame, spec, source=spec.uri)
    try:
        payload = read_uri(spec.uri, s3)
    except ObjectNotFoundError as exc:
        raise DataError(_FIELD_URI, f"{spec.uri} does not exist",
                        "point spec.dataset.uri at an existing CSV or Parquet object") from exc
    except ValueError as exc:
        raise DataError(_FIELD_URI, str(exc), "use s3://bucket/key.csv, file:///path or builtin:...") from exc
    frame = read_table(payload, urlsplit(spec.uri).path)
    return clean_bars(frame, spec, source=spec.uri)


def read_table(payload: bytes, name: str = "") -> pd.DataFrame:
    """Parse CSV (optionally gzip) or Parquet bytes; the format comes from the name or is sniffed."""
    suffixes = [s.lower() for s in PurePosixPath(name).suffixes]
    is_parquet = payload[:4] == b"PAR1" or bool(suffixes and suffixes[-1] in (".parquet", ".pq"))
    if not payload.strip():
        raise DataError(_FIELD_URI, f"{name or 'the dataset'} is empty", "upload a file with OHLCV rows")
    try:
        if is_parquet:
            frame = pd.read_parquet(io.BytesIO(payload))
            if isinstance(frame.index, pd.DatetimeIndex) or (frame.index.name or "").lower() in _TIME_NAMES:
                frame = frame.reset_index()
            return frame
        return _read_csv(payload)
    except DataError:
        raise
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        kind = "Parquet" if is_parquet else "CSV"
        raise DataError(_FIELD_URI, f"cannot parse {name or 'the dataset'} as {kind}: {exc}",
                        "provide a CSV with a header row or a Parquet file") from exc


def _read_csv(payload: bytes) -> pd.DataFrame:
    if payload[:2] == b"\x1f\x8b":
        payload = gzip.decompress(payload)
    lines = payload[:65536].decode("utf-8", errors="replace").lstrip("\ufeff").splitlines()
    delimiters = [",", ";", "\t", "|"]
    # Public crypto dumps often put a banner (a URL) above the header: a first line with no delimiter
    # above one that has some is skipped.
    skip = int(len(lines) > 1 and not any(d in lines[0] for d in delimiters)
               and any(d in lines[1] for d in delimiters))
    header = lines[skip] if len(lines) > skip else ""
    sep = max(delimiters, key=header.count)
    return pd.read_csv(io.BytesIO(payload), sep=sep, skiprows=skip, encoding="utf-8-sig")


# ----------------------------------------------------------------------------------------- cleaning


def _norm(name: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).replace("\ufeff", "").lower())


def _find_columns(frame: pd.DataFrame) -> tuple[list[str], dict[str, str], list[str]]:
    """(time columns by priority, price columns, volume columns in file order)."""
    by_norm: dict[str, str] = {}
    for column in frame.columns:
        by_norm.setdefault(_norm(column), str(column))
    times = [by_norm[n] for n in _TIME_NAMES if n in by_norm]
    prices = {p: by_norm[p] for p in PRICES if p in by_norm}
    volumes = [str(c) for c in frame.columns if _norm(c).startswith("volume") or _norm(c).endswith("volume")
               or _norm(c) == "vol"]
    return times, prices, volumes


def _base_asset_volume(volumes: list[str], symbols: list[str]) -> str | None:
    """The base-asset volume column: ``volume`` itself, else ``Volume <BASE>`` for the pair's base."""
    if not volumes:
        return None
    tokens = {v: _norm(v).removeprefix("volume").removesuffix("volume") for v in volumes}
    for column, token in tokens.items():
        if token in ("", "base", "from"):
            return column
    for symbol in symbols:
        parts = [p for p in re.split(r"[/\-_:]", symbol.lower()) if p]
        base = _norm(parts[0]) if len(parts) > 1 else ""
        compact = _norm(symbol)
        for column, token in tokens.items():
            if token and (token == base or (not base and compact.startswith(token) and token != compact)):
                return column
    return volumes[0]


def _epoch_to_ms(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Epoch numbers of any unit -> integer milliseconds, and the unit detected per value.

    The unit is decided per value by magnitude (seconds < 1e11 <= ms < 1e14 <= us < 1e17 <= ns), which
    is unambiguous for every date between 1973 and 5138 and is what mixed exports need.
    """
    magnitude = values.abs()
    unit = pd.Series(np.select([magnitude < 1e11, magnitude < 1e14, magnitude < 1e17],
                               ["s", "ms", "us"], default="ns"), index=values.index)
    scale = np.select([magnitude < 1e11, magnitude < 1e14, magnitude < 1e17], [1e3, 1.0, 1e-3], default=1e-6)
    millis = (values * scale).round()
    unit = unit.where(values.notna())
    return millis, unit


def _parse_time_column(column: pd.Series) -> tuple[pd.Series, pd.Series]:
    """UTC timestamps (NaT where unparseable) and the source unit/format label per row."""
    index = column.index
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(column):
        stamps = pd.to_datetime(column, utc=True)
        return stamps, pd.Series("datetime", index=index, dtype="object").where(stamps.notna())
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().any() and 2 * numeric.notna().sum() >= column.notna().sum():
        millis, unit = _epoch_to_ms(numeric.astype("float64"))
        in_range = millis.between(_MIN_TIME.value // 1_000_000, _MAX_TIME.value // 1_000_000)
        millis = millis.where(in_range)
        stamps = pd.to_datetime(millis, unit="ms", utc=True)
        return stamps, unit.where(in_range)
    text = column.astype("string").str.strip()
    stamps = pd.Series(pd.NaT, index=index, dtype="datetime64[ns, UTC]")
    labels = pd.Series(None, index=index, dtype="object")
    for fmt in [*_TEXT_FORMATS, "ISO8601"]:
        todo = stamps.isna() & text.notna()
        if not todo.any():
            break
        parsed = pd.to_datetime(text[todo], format=fmt, errors="coerce", utc=True)
        hit = parsed.notna()
        stamps.loc[parsed.index[hit]] = parsed[hit]
        labels.loc[parsed.index[hit]] = f"text:{fmt}"
    return stamps, labels


_TIME_OF_DAY = r"^\s*\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*$"


def _time_candidates(frame: pd.DataFrame, time_columns: list[str]) -> list[tuple[str, pd.Series]]:
    """Time sources in priority order; a date column plus a time-of-day column (as MetaTrader-style
    exports split them) become one ``date time`` source ahead of either alone."""
    by_norm = {_norm(c): c for c in time_columns}
    candidates = [(c, frame[c]) for c in time_columns]
    if "date" in by_norm and "time" in by_norm:
        clock = frame[by_norm["time"]].astype("string")
        if bool(clock.str.match(_TIME_OF_DAY).fillna(False).mean() > 0.5):
            combined = frame[by_norm["date"]].astype("string").str.strip() + " " + clock.str.strip()
            label = f"{by_norm['date']}+{by_norm['time']}"
            candidates = [(label, combined)] + [(c, v) for c, v in candidates
                                                if c not in (by_norm["date"], by_norm["time"])]
    return candidates


def _parse_times(frame: pd.DataFrame, time_columns: list[str]) -> tuple[pd.Series, pd.Series, str]:
    """UTC timestamps, their source label per row, and the name of the main time source."""
    stamps = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
    labels = pd.Series(None, index=frame.index, dtype="object")
    candidates = _time_candidates(frame, time_columns)
    for _, values in candidates:
        todo = stamps.isna()
        if not todo.any():
            break
        parsed, label = _parse_time_column(values[todo])
        parsed = parsed.where((parsed >= _MIN_TIME) & (parsed < _MAX_TIME))
        hit = parsed.notna()
        stamps.loc[parsed.index[hit]] = parsed[hit]
        labels.loc[parsed.index[hit]] = label[hit]
    return stamps, labels, candidates[0][0]


def parse_timeframe(timeframe: str) -> pd.Timedelta:
    match = re.fullmatch(r"([1-9][0-9]*)(m|h|d|w)", timeframe)
    if match is None:
        raise DataError("spec.dataset.timeframe", f"{timeframe!r} is not a timeframe",
                        "use a number and a unit: 1m, 15m, 1h, 4h, 1d, 1w")
    unit = {"m": "min", "h": "h", "d": "D", "w": "W"}[match.group(2)]
    return pd.Timedelta(int(match.group(1)), unit=unit)


def format_timeframe(spacing: pd.Timedelta) -> str:
    seconds = int(spacing.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _iso(stamp: pd.Timestamp) -> str:
    return str(stamp.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def fingerprint_bars(bars: pd.DataFrame) -> str:
    """sha256 of the index (int64 ns) and the float64 OHLCV matrix: same bars, same fingerprint."""
    digest = hashlib.sha256(b"clm-ohlcv-v1")
    digest.update(np.ascontiguousarray(bars.index.asi8).tobytes())
    digest.update(np.ascontiguousarray(bars[OHLCV].to_numpy(dtype="float64")).tobytes())
    return digest.hexdigest()


def clean_bars(frame: pd.DataFrame, spec: DatasetSpec, *, source: str) -> LoadedData:
    """Normalise, validate, de-duplicate, sort and window raw rows; report every repair."""
    if isinstance(frame.index, pd.DatetimeIndex):
        frame = frame.rename_axis("time").reset_index()
    frame = frame.reset_index(drop=True)
    rows_read = len(frame)
    time_columns, price_columns, volume_columns = _find_columns(frame)
    missing = [p for p in PRICES if p not in price_columns]
    if not time_columns or missing:
        wanted = (["a time column (unix, timestamp, time or date)"] if not time_columns else []) + missing
        raise DataError(_FIELD_URI, f"{source} lacks {', '.join(wanted)}; it has columns "
                        f"{', '.join(map(str, frame.columns)) or 'none'}",
                        "provide columns time/timestamp/unix/date, open, high, low, close and optionally "
                        "volume (names are matched case-insensitively)")
    if rows_read == 0:
        raise DataError(_FIELD_URI, f"{source} has a header but no rows", "provide a file with OHLCV rows")

    nulls = {str(c): int(n) for c, n in frame.isna().sum().items() if int(n) > 0}
    symbol_column = next((str(c) for c in frame.columns if _norm(c) in ("symbol", "ticker", "pair")), None)
    selected = _select_symbol(frame, symbol_column, spec, source)
    rows_other_symbols = len(frame) - len(selected)
    frame = selected
    data_symbols = ([str(s) for s in frame[symbol_column].dropna().unique()[:1]] if symbol_column else [])
    volume_column = _base_asset_volume(volume_columns, [spec.symbol, *data_symbols])

    stamps, labels, time_source = _parse_times(frame, time_columns)
    values = pd.DataFrame({p: pd.to_numeric(frame[price_columns[p]], errors="coerce") for p in PRICES},
                          index=frame.index, dtype="float64")
    values["volume"] = (pd.to_numeric(frame[volume_column], errors="coerce").astype("float64")
                        if volume_column else np.nan)
    values["time"] = stamps
    units = {str(k): int(v) for k, v in labels.value_counts().sort_index().items()}

    prices = values[PRICES].to_numpy()
    volume = values["volume"].to_numpy()
    valid = (
        stamps.notna().to_numpy()
        & np.isfinite(prices).all(axis=1)
        & (prices > 0).all(axis=1)
        & (values["high"].to_numpy() >= np.maximum(values["open"].to_numpy(), values["close"].to_numpy()))
        & (values["low"].to_numpy() <= np.minimum(values["open"].to_numpy(), values["close"].to_numpy()))
        & ~(np.isinf(volume) | (volume < 0))
    )
    rows_dropped_invalid = int((~valid).sum())
    values = values[valid]
    if values.empty:
        raise DataError(_FIELD_URI, f"none of the {rows_read} rows of {source} is a valid bar "
                        "(time parseable, prices finite and > 0, low <= open/close <= high)",
                        "check the file's columns and units")

    times = values["time"]
    reordered = not bool(times.is_monotonic_increasing)

    # De-duplication (DUPLICATE_RULE): rank rows, stable-sort by time then rank, keep the first.
    rank = pd.DataFrame({
        "time": times,
        "unit": -labels[values.index].map(_UNIT_RANK).fillna(1).astype("int64"),
        "empty": frame.loc[values.index].isna().sum(axis=1).astype("int64"),
        "position": np.arange(len(values)),
    }, index=values.index)
    order = rank.sort_values(["time", "unit", "empty", "position"], kind="mergesort").index
    ordered = values.loc[order]
    duplicated = ordered["time"].duplicated(keep="first")
    duplicates_dropped = int(duplicated.sum())
    conflicting = 0
    if duplicates_dropped:
        dups = ordered[ordered["time"].duplicated(keep=False)]
        conflicting = int((dups.groupby("time")[PRICES].nunique() > 1).any(axis=1).sum())
    bars = ordered[~duplicated.to_numpy()].set_index("time")[OHLCV].astype("float64")
    bars.index = pd.DatetimeIndex(bars.index, name="time").as_unit("ns")

    spacing = _check_timeframe(bars, spec, source)
    bars, outside = _apply_window(bars, spec, source)
    bars, trailing = drop_incomplete_last_bar(bars)

    steps = bars.index.to_series().diff().iloc[1:]
    gap_steps = steps[steps > spacing]
    missing_bars = ((gap_steps // spacing) - 1).astype("int64")
    after = bars.index[bars.index.get_indexer(gap_steps.index) - 1]
    gaps: list[dict[str, object]] = [
        {"after": _iso(a), "before": _iso(b), "missingBars": int(m)}
        for a, b, m in zip(after, gap_steps.index, missing_bars.to_numpy(), strict=True)
    ]
    columns = {"time": time_source, **{p: price_columns[p] for p in PRICES}}
    if volume_column:
        columns["volume"] = volume_column
    report = DataReport(
        source=source,
        rows_read=rows_read,
        rows_kept=len(bars),
        duplicates_dropped=duplicates_dropped,
        duplicate_rule=DUPLICATE_RULE,
        conflicting_duplicates=conflicting,
        timestamp_units=units,
        reordered=reordered,
        gaps=gaps,
        gap_count=len(gaps),
        longest_gap_bars=int(missing_bars.max()) if len(gaps) else 0,
        nulls=nulls,
        rows_dropped_invalid=rows_dropped_invalid,
        first_bar=_iso(bars.index[0]),
        last_bar=_iso(bars.index[-1]),
        fingerprint=fingerprint_bars(bars),
        timeframe=format_timeframe(spacing),
        rows_outside_window=outside,
        rows_other_symbols=rows_other_symbols,
        columns=columns,
        trailing_bar_dropped=trailing,
    )
    return LoadedData(bars=bars, report=report)


def drop_incomplete_last_bar(bars: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """``bars`` without a trailing incomplete bar (TRAILING_BAR_RULE), and that bar's time or None."""
    if len(bars) <= TRAILING_BAR_WINDOW or "volume" not in bars.columns:
        return bars, None
    volume = bars["volume"].to_numpy(dtype="float64")
    before = volume[-TRAILING_BAR_WINDOW - 1:-1]
    before = before[np.isfinite(before)]
    if before.size == 0 or not np.isfinite(volume[-1]):
        return bars, None
    median = float(np.median(before))
    if median > 0 and volume[-1] < TRAILING_BAR_VOLUME_SHARE * median:
        return bars.iloc[:-1], _iso(bars.index[-1])
    return bars, None


def _select_symbol(frame: pd.DataFrame, column: str | None, spec: DatasetSpec, source: str) -> pd.DataFrame:
    """Keep the rows of ``spec.symbol`` when the file names its symbol(s); refuse another symbol's data."""
    if column is None:
        return frame
    names = frame[column].astype("string")
    wanted = _norm(spec.symbol)
    matches = (names.map(_norm, na_action="ignore") == wanted).fillna(False).astype(bool)
    if bool((matches | names.isna()).all()):
        return frame  # one symbol (empty cells are just nulls, counted in the report)
    present = sorted({str(s) for s in names.dropna().unique()})
    if not bool(matches.any()):
        raise DataError("spec.dataset.symbol",
                        f"{source} holds {', '.join(present[:10])}, not {spec.symbol!r}",
                        "set spec.dataset.symbol to the pair in the file (separators and case do not matter)")
    return frame[matches.to_numpy()]


def _check_timeframe(bars: pd.DataFrame, spec: DatasetSpec, source: str) -> pd.Timedelta:
    expected = parse_timeframe(spec.timeframe)
    if len(bars) < 2:
        raise DataError(_FIELD_URI, f"{source} has {len(bars)} usable bar(s)", "provide at least two bars")
    steps = bars.index.to_series().diff().iloc[1:]
    counts = steps.value_counts()
    # The most common step is the bar spacing; gaps and odd steps are reported, never resampled.
    detected = cast(pd.Timedelta, counts.index[counts.to_numpy() == counts.max()].min())
    if detected != expected:
        share = counts.max() / len(steps)
        raise DataError(
            "spec.dataset.timeframe",
            f"spec says {spec.timeframe!r} but {source} has bars every {format_timeframe(detected)} "
            f"({share:.0%} of steps)",
            f"set spec.dataset.timeframe to {format_timeframe(detected)!r} (data is never resampled)",
        )
    return expected


def _apply_window(bars: pd.DataFrame, spec: DatasetSpec, source: str) -> tuple[pd.DataFrame, int]:
    """start <= t < end, then lookbackDays: keep t > (last bar - lookbackDays)."""
    total = len(bars)
    keep = np.ones(total, dtype=bool)
    if spec.start is not None:
        keep &= bars.index >= _utc(spec.start)
    if spec.end is not None:
        keep &= bars.index < _utc(spec.end)
    windowed = bars[keep]
    if spec.lookback_days is not None and len(windowed):
        since = windowed.index[-1] - timedelta(days=spec.lookback_days)
        windowed = windowed[windowed.index > since]
    if windowed.empty:
        field_name = ("spec.dataset.start" if spec.start is not None else
                      "spec.dataset.end" if spec.end is not None else "spec.dataset.lookbackDays")
        raise DataError(field_name, f"no bars of {source} fall in the window (data covers "
                        f"{_iso(bars.index[0])} to {_iso(bars.index[-1])})",
                        "move start/end inside the data's range")
    return windowed, total - len(windowed)
