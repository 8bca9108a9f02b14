"""Forward evaluation statistics: is a challenger better than the champion on the same bars, and has the
input drifted since training (issue 13; docs/architecture.md section 9). Pure: arrays in, numbers out.

Paired test (``paired_block_bootstrap_pvalue``)
- Inputs are the two versions' per-bar NET returns (after costs, as the backtest computes them) on the
  SAME forward bars, in bar order, as 1-D float arrays of equal length; units do not matter (the test
  is on their difference), only that both use the same ones.
- Statistic: the mean of ``d = challenger - champion``. H0: E[d] <= 0; H1 (one-sided): E[d] > 0,
  "the challenger earns more per bar".
- Null imposed by centring: ``d0 = d - mean(d)`` is resampled with a stationary block bootstrap
  (Politis and Romano 1994; ``arch.bootstrap.StationaryBootstrap``), which keeps the serial dependence
  of returns within blocks of random, geometrically distributed length. ``p = (1 + #{mean(d0*) >=
  mean(d)}) / (draws + 1)``: never 0, and uniform on {1, ..., draws+1}/(draws+1) under H0, so
  ``draws`` must be at least ``1/alpha - 1`` for the test to ever reach ``alpha``.
- Mean block length: ``block``, or None for the Politis and White (2004) estimate
  (``arch.bootstrap.optimal_block_length``, its stationary-bootstrap column, with the Patton, Politis
  and White 2009 correction), rounded up and kept within [1, bars].
- Deterministic: the bootstrap draws from ``numpy.random.default_rng(seed)``.
- Size, measured on 1,000 null simulations of 500 bars and 199 draws: 3.7 % of p-values below 0.05 for
  serially uncorrelated differences (as two strategies' on a random walk), 6.0 % for AR(1) 0.5 ones:
  the blocks catch most, not all, of the long-run variance.
- Edge cases: fewer than ``MIN_BARS`` bars -> p = 1 (no evidence, like the zero PSR of
  clm_trainer/sharpe_stats.py), with ``block = draws = 0`` (no bootstrap ran); a constant ``d`` (zero
  variance, e.g. two versions that never trade) -> every resample equals the observed mean exactly, so
  p = 1/(draws+1) when that constant is > 0 and 1 otherwise, without estimating a block length.
  NaN or infinite values, other shapes, unequal lengths, ``draws < 1`` or a block outside [1, bars]
  raise ``ValueError``: a missing bar must be filled (a flat position earns 0) before testing.

Population stability index (``population_stability_index``, ``feature_psi``)
- ``PSI = sum_i (q_i - p_i) * ln(q_i / p_i)`` over bins, with ``p`` the reference (training window)
  proportions and ``q`` the recent ones.
- Bins: the reference's deciles by default (``bins`` quantiles by the inverted CDF, so every edge is a
  reference value: the ceil(n·k/bins)-th smallest, k = 1 .. bins-1); bin i holds ``edge[i-1] < x <=
  edge[i]``, the outer bins are open (recent values beyond the reference's range count in them), and
  tied edges merge their bins.
- A proportion of 0 is replaced by ``EMPTY_BIN_PROPORTION`` (1e-4) without renormalising: the log
  ratio stays finite and an empty bin still adds a large term.
- What holds: PSI >= 0 (each term is (q-p)·ln(q/p) >= 0); PSI = 0 when both samples fall into the
  bins in the same proportions (identical samples in particular); it is unchanged when one strictly
  increasing map is applied to both samples (it depends on ranks only). It is NOT symmetric in its two
  arguments: the bins come from the reference.
- NaN or infinite values, an empty sample or ``bins < 2`` raise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from arch.bootstrap import StationaryBootstrap, optimal_block_length
from numpy.typing import ArrayLike

MIN_BARS = 10
EMPTY_BIN_PROPORTION = 1e-4


@dataclass(frozen=True)
class PairedTest:
    """The paired test of a challenger against the champion on the same bars."""

    p_value: float  # one-sided, "challenger better"; in (0, 1]
    mean_difference: float  # mean of challenger - champion per bar, in the returns' units
    bars: int
    block: int  # the stationary bootstrap's mean block length; 0: no bootstrap ran
    draws: int  # bootstrap resamples; 0: no bootstrap ran


def paired_block_bootstrap_pvalue(challenger: np.ndarray, champion: np.ndarray, *, block: int | None,
                                  draws: int, seed: int) -> PairedTest:
    """One-sided block-bootstrap p-value for "the challenger's mean net return per bar is higher"
    (conventions in the module docstring)."""
    difference = _paired_difference(challenger, champion)
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    bars = int(difference.size)
    if bars < MIN_BARS:
        mean = float(difference.mean()) if bars else 0.0
        return PairedTest(p_value=1.0, mean_difference=mean, bars=bars, block=0, draws=0)
    if block is not None and not 1 <= block <= bars:
        raise ValueError(f"block must be within [1, {bars}] (the number of bars), got {block}")
    observed = float(difference.mean())
    if float(np.ptp(difference)) == 0.0:
        # Every resample of a constant equals it: no exceedance when it is positive, all otherwise.
        p_value = 1.0 / (draws + 1) if observed > 0.0 else 1.0
        return PairedTest(p_value=p_value, mean_difference=observed, bars=bars, block=block or 1, draws=draws)
    mean_block = default_block_length(difference) if block is None else block
    centred = difference - observed
    bootstrap = StationaryBootstrap(mean_block, centred, seed=np.random.default_rng(seed))
    resampled = bootstrap.apply(_column_mean, draws)[:, 0]
    exceed = int(np.count_nonzero(resampled >= observed))
    return PairedTest(p_value=(1 + exceed) / (draws + 1), mean_difference=observed, bars=bars,
                      block=mean_block, draws=draws)


def default_block_length(series: np.ndarray) -> int:
    """Politis-White optimal mean block length of the stationary bootstrap, rounded up, within [1, n]."""
    x = np.asarray(series, dtype=np.float64)
    # On short series some autocorrelations divide 0 by 0 inside arch; a non-finite estimate is handled below.
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = float(optimal_block_length(x)["stationary"].iloc[0])
    if not math.isfinite(estimate):
        return 1
    return int(min(max(math.ceil(estimate), 1), x.size))


def population_stability_index(reference: np.ndarray, recent: np.ndarray, *, bins: int = 10) -> float:
    """PSI of ``recent`` against ``reference`` on the reference's quantile bins (module docstring)."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    ref = _finite_sample(reference, "reference")
    new = _finite_sample(recent, "recent")
    # The inverted-CDF quantiles k/bins in integer arithmetic: the smallest value with F(x) >= k/bins is the
    # ceil(n·k/bins)-th order statistic (np.quantile's float probabilities can land one value off).
    ranks = (ref.size * np.arange(1, bins) + bins - 1) // bins - 1
    edges = np.unique(np.sort(ref)[ranks])
    expected = _bin_proportions(ref, edges)
    actual = _bin_proportions(new, edges)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def feature_psi(reference_rows: ArrayLike, recent_rows: ArrayLike, names: Sequence[str], *,
                bins: int = 10) -> dict[str, float]:
    """PSI per feature: column j of both 2-D arrays (rows = bars) is the feature ``names[j]``."""
    if len(set(names)) != len(names):
        raise ValueError(f"feature names must be unique, got {list(names)}")
    ref = np.asarray(reference_rows, dtype=np.float64)
    new = np.asarray(recent_rows, dtype=np.float64)
    for label, rows in (("reference_rows", ref), ("recent_rows", new)):
        if rows.ndim != 2 or rows.shape[1] != len(names):
            raise ValueError(f"{label} must be 2-D with one column per name ({len(names)}), got shape "
                             f"{rows.shape}")
    return {name: population_stability_index(ref[:, j], new[:, j], bins=bins) for j, name in enumerate(names)}


def _paired_difference(challenger: np.ndarray, champion: np.ndarray) -> np.ndarray:
    a = np.asarray(challenger, dtype=np.float64)
    b = np.asarray(champion, dtype=np.float64)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"returns must be 1-D arrays (one value per bar), got shapes {a.shape} and "
                         f"{b.shape}")
    if a.size != b.size:
        raise ValueError(f"challenger and champion must cover the same bars, got {a.size} and {b.size} "
                         "values")
    for label, x in (("challenger", a), ("champion", b)):
        if not np.isfinite(x).all():
            bad = int(np.count_nonzero(~np.isfinite(x)))
            raise ValueError(f"{label} returns hold {bad} NaN or infinite value(s); fill missing bars first")
    return a - b


def _finite_sample(values: np.ndarray, label: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError(f"{label} sample is empty")
    if not np.isfinite(x).all():
        raise ValueError(f"{label} sample holds {int(np.count_nonzero(~np.isfinite(x)))} NaN or infinite "
                         "value(s)")
    return x


def _bin_proportions(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # side="left": a value equal to an edge belongs to the bin that edge closes (edge[i-1] < x <= edge[i]).
    counts = np.bincount(np.searchsorted(edges, x, side="left"), minlength=edges.size + 1)
    proportions = counts / x.size
    return np.where(proportions > 0.0, proportions, EMPTY_BIN_PROPORTION)


def _column_mean(x: np.ndarray) -> np.ndarray:
    return np.asarray(x.mean(axis=0, keepdims=True))
