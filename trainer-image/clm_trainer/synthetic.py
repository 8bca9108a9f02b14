"""Builtin synthetic OHLCV series: the pipeline's honesty checks (DESIGN.md section 6.6).

``builtin:synthetic?kind=random_walk|planted&seed=N&bars=N&start=2020-01-01&vol=0.005``

* ``random_walk``: geometric Brownian motion with zero drift. Nothing is predictable, so no model may
  pass the promotion criteria on it (except by the luck the criteria are there to stop).
* ``planted``: a hidden trend regime ``s_t`` in {-1, +1} that persists for ``regime`` bars on average
  (never fewer than 40 % of that), and log returns ``r_t = strength * vol * s_t + vol * e_t``. The regime
  is revealed by recent returns, so a sign classifier on lagged-return features can find it; it is
  persistent enough that trading it survives 15 bps per position change. Defaults (strength 1.5,
  regime 50 bars, vol 0.005, 5000 bars) pass the default criteria under default costs for every seed:
  the oracle (position = sign of the regime at t, held over t+1) and an XGBoost classifier on lagged
  returns (default hyperparameters, 5-fold walk-forward) were both checked over 20 seeds.

Bars are valid OHLCV: open = previous close, high/low wrap open and close, volume > 0 and independent
of prices (volume features carry no signal). Output is a pure function of the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd

from clm_trainer.data import DataError, parse_timeframe

BUILTINS = ("synthetic",)
KINDS = ("random_walk", "planted")
_FIELD = "spec.dataset.uri"
_START_PRICE = 100.0

# parameter -> (kinds it applies to, default)
_PARAMS: dict[str, tuple[tuple[str, ...], str]] = {
    "kind": (KINDS, "random_walk"),
    "seed": (KINDS, "0"),
    "bars": (KINDS, "5000"),
    "start": (KINDS, "2020-01-01"),
    "vol": (KINDS, "0.005"),
    "strength": (("planted",), "1.5"),
    "regime": (("planted",), "50"),
}


@dataclass(frozen=True)
class SyntheticParams:
    kind: str = "random_walk"
    seed: int = 0
    bars: int = 5000
    start: pd.Timestamp = pd.Timestamp("2020-01-01", tz="UTC")
    vol: float = 0.005  # standard deviation of the per-bar log-return noise
    strength: float = 1.5  # planted: regime drift per bar, in units of vol
    regime: float = 50.0  # planted: mean regime length in bars


@dataclass(frozen=True)
class SyntheticSeries:
    bars: pd.DataFrame  # DatetimeIndex "time" UTC; float64 open high low close volume
    regime: np.ndarray | None  # planted: s_t in {-1, +1}, the sign of bar t's drift; None for random_walk
    params: SyntheticParams


def _bad(message: str, fix: str) -> DataError:
    return DataError(_FIELD, message, fix)


def parse_synthetic_uri(uri: str) -> SyntheticParams:
    """Validate a ``builtin:`` URI; unknown names, kinds or parameters are DataErrors naming the fix."""
    parts = urlsplit(uri)
    if parts.scheme != "builtin":
        raise _bad(f"{uri!r} is not a builtin dataset", "use builtin:synthetic?kind=planted&seed=7")
    name = parts.path
    if name not in BUILTINS:
        raise _bad(f"unknown builtin dataset {name!r}", f"use one of: {', '.join(BUILTINS)}")
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    repeated = sorted(k for k, v in query.items() if len(v) > 1)
    if repeated:
        raise _bad(f"parameter(s) {', '.join(repeated)} given more than once in {uri!r}", "give each once")
    values = {k: v[0] for k, v in query.items()}
    unknown = sorted(set(values) - set(_PARAMS))
    if unknown:
        raise _bad(f"unknown parameter(s) {', '.join(unknown)} in {uri!r}",
                   f"use only: {', '.join(_PARAMS)}")
    kind = values.get("kind", _PARAMS["kind"][1])
    if kind not in KINDS:
        raise _bad(f"unknown synthetic kind {kind!r}", f"use kind={' or kind='.join(KINDS)}")
    misplaced = sorted(k for k in values if kind not in _PARAMS[k][0])
    if misplaced:
        raise _bad(f"parameter(s) {', '.join(misplaced)} do not apply to kind={kind}",
                   "remove them or use kind=planted")
    raw = {k: values.get(k, default) for k, (_, default) in _PARAMS.items()}

    def number(key: str, cast: type[int] | type[float], low: float, high: float) -> float:
        try:
            value = cast(raw[key])
        except ValueError:
            raise _bad(f"{key}={raw[key]!r} is not a number", f"set {key} to a number") from None
        if not (low <= value <= high) or value != value:
            raise _bad(f"{key}={raw[key]} is out of range", f"set {key} between {low:g} and {high:g}")
        return value

    seed = int(number("seed", int, 0, 2**32 - 1))
    bars = int(number("bars", int, 2, 5_000_000))
    vol = number("vol", float, 1e-6, 0.5)
    strength = number("strength", float, 0.0, 20.0)
    regime = number("regime", float, 3.0, 1e6)
    try:
        start = pd.Timestamp(raw["start"])
    except ValueError:
        raise _bad(f"start={raw['start']!r} is not a date",
                   "use start=2020-01-01 or an ISO 8601 time") from None
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    return SyntheticParams(kind=kind, seed=seed, bars=bars, start=start, vol=vol, strength=strength,
                           regime=regime)


def planted_regime(rng: np.random.Generator, n: int, regime: float) -> np.ndarray:
    """Alternating +1/-1 runs: each at least 40 % of ``regime`` bars, mean ``regime`` bars."""
    min_len = max(1, int(regime * 0.4))
    extra_mean = max(1.0, regime - min_len)
    lengths = min_len + rng.geometric(1.0 / extra_mean, size=n // min_len + 2) - 1
    first = 1.0 if rng.random() < 0.5 else -1.0
    signs = first * np.where(np.arange(len(lengths)) % 2 == 0, 1.0, -1.0)
    return np.repeat(signs, lengths)[:n]


def generate(params: SyntheticParams, timeframe: str = "1h") -> SyntheticSeries:
    """The series for ``params`` with bars ``timeframe`` apart; identical parameters, identical bars."""
    step = parse_timeframe(timeframe)
    n = params.bars
    streams = np.random.SeedSequence([params.seed, KINDS.index(params.kind)]).spawn(4)
    noise_rng, regime_rng, wick_rng, volume_rng = (np.random.default_rng(s) for s in streams)
    noise = noise_rng.standard_normal(n)
    regime: np.ndarray | None = None
    if params.kind == "planted":
        regime = planted_regime(regime_rng, n, params.regime)
        log_returns = params.strength * params.vol * regime + params.vol * noise
    else:
        # Zero-drift GBM: the -vol^2/2 term makes the expected *price* change zero.
        log_returns = params.vol * noise - 0.5 * params.vol**2
    close = _START_PRICE * np.exp(np.cumsum(log_returns))
    open_ = np.concatenate([[_START_PRICE], close[:-1]])
    wicks = np.abs(wick_rng.standard_normal((2, n))) * params.vol * 0.5
    high = np.maximum(open_, close) * np.exp(wicks[0])
    low = np.minimum(open_, close) * np.exp(-wicks[1])
    volume = 1000.0 * np.exp(0.3 * volume_rng.standard_normal(n))
    index = pd.DatetimeIndex(params.start + step * np.arange(n), name="time").as_unit("ns")
    bars = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume},
                        index=index, dtype="float64")
    return SyntheticSeries(bars=bars, regime=regime, params=params)


def generate_from_uri(uri: str, timeframe: str = "1h") -> pd.DataFrame:
    """Bars for a ``builtin:`` URI (what ``data.load_dataset`` calls)."""
    return generate(parse_synthetic_uri(uri), timeframe).bars
