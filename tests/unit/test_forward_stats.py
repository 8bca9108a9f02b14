"""The paired block-bootstrap test and the PSI of clm_trainer/forward_stats.py: calibration under the null,
power on a planted edge, repeatability, edge cases, and PSI against values worked by hand.

Nothing here runs multi-threaded (numpy reductions and arch's Cython sampler), so no thread pinning is
needed; every random draw comes from a fixed seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from clm_trainer.forward_stats import (
    EMPTY_BIN_PROPORTION,
    MIN_BARS,
    PairedTest,
    default_block_length,
    feature_psi,
    paired_block_bootstrap_pvalue,
    population_stability_index,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import lfilter
from scipy.stats import kstest

BARS = 500
DRAWS = 199
PHI = 0.5  # AR(1) coefficient of the simulated returns: blocks matter at this autocorrelation
NOISE = 0.01


def ar1_returns(rng: np.random.Generator, bars: int = BARS, phi: float = PHI) -> np.ndarray:
    """A stationary AR(1) return stream (200 burn-in bars dropped)."""
    shocks = rng.normal(0.0, NOISE, bars + 200)
    return np.asarray(lfilter([1.0], [1.0, -phi], shocks)[200:])


def test_p_values_are_uniform_under_the_null() -> None:
    """200 pairs of streams from one AR(1) distribution: the p-values pass a KS test against U(0,1) at 1 %."""
    p_values = []
    for simulation in range(200):
        rng = np.random.default_rng(10_000 + simulation)
        challenger, champion = ar1_returns(rng), ar1_returns(rng)
        result = paired_block_bootstrap_pvalue(challenger, champion, block=None, draws=DRAWS, seed=simulation)
        assert result.bars == BARS and result.draws == DRAWS and result.block >= 1
        p_values.append(result.p_value)
    ks = kstest(p_values, "uniform")
    assert ks.pvalue > 0.01, (
        f"p-values not uniform under the null: KS D={ks.statistic:.3f}, p={ks.pvalue:.4f}"
    )
    # A gross size error would show here before the KS test noticed it.
    assert 0.01 <= np.mean(np.array(p_values) < 0.05) <= 0.12


def test_a_real_per_bar_edge_is_found_in_most_seeds() -> None:
    # Long-run sd of the difference of two AR(1)(0.5) streams: 0.01·√2 / 0.5 ≈ 0.028 per bar, so its mean
    # over 500 bars has a standard error of ≈ 0.0013; an edge of 0.004 is ≈ 3 standard errors.
    edge = 0.004
    significant = 0
    for seed in range(20):
        rng = np.random.default_rng(20_000 + seed)
        champion = ar1_returns(rng)
        challenger = ar1_returns(rng) + edge
        result = paired_block_bootstrap_pvalue(challenger, champion, block=None, draws=DRAWS, seed=seed)
        assert result.mean_difference > 0.0
        significant += result.p_value < 0.05
    assert significant >= 15, f"only {significant} of 20 seeds found a 3-standard-error edge"


def test_the_test_is_one_sided() -> None:
    rng = np.random.default_rng(3)
    champion = ar1_returns(rng)
    challenger = ar1_returns(rng) + 0.004
    better = paired_block_bootstrap_pvalue(challenger, champion, block=None, draws=DRAWS, seed=1)
    worse = paired_block_bootstrap_pvalue(champion, challenger, block=None, draws=DRAWS, seed=1)
    assert better.p_value < 0.05
    assert worse.p_value > 0.95
    assert worse.mean_difference == pytest.approx(-better.mean_difference, rel=1e-12)


def test_same_inputs_and_seed_give_identical_results() -> None:
    rng = np.random.default_rng(4)
    challenger, champion = ar1_returns(rng), ar1_returns(rng)
    kept = (challenger.copy(), champion.copy())
    first = paired_block_bootstrap_pvalue(challenger, champion, block=None, draws=DRAWS, seed=7)
    second = paired_block_bootstrap_pvalue(challenger, champion, block=None, draws=DRAWS, seed=7)
    assert first == second
    assert np.array_equal(challenger, kept[0]) and np.array_equal(champion, kept[1]), "inputs were modified"
    assert isinstance(first, PairedTest)
    with pytest.raises(AttributeError):
        first.p_value = 0.0  # type: ignore[misc]


def test_p_value_is_on_the_bootstrap_grid_and_uses_the_given_block() -> None:
    rng = np.random.default_rng(5)
    result = paired_block_bootstrap_pvalue(ar1_returns(rng), ar1_returns(rng), block=12, draws=99, seed=0)
    assert result.block == 12 and result.draws == 99
    exceedances = result.p_value * 100 - 1
    assert exceedances == pytest.approx(round(exceedances), abs=1e-9) and 0 <= round(exceedances) <= 99


def test_default_block_length_grows_with_autocorrelation() -> None:
    rng = np.random.default_rng(6)
    independent = default_block_length(ar1_returns(rng, bars=2000, phi=0.0))
    persistent = default_block_length(ar1_returns(rng, bars=2000, phi=0.9))
    assert 1 <= independent <= 5
    assert persistent > 4 * independent


def test_constant_difference_has_no_sampling_error() -> None:
    # Dyadic values: the difference is exactly 1/1024 on every bar, without rounding.
    base = np.random.default_rng(8).integers(-8, 8, 100) / 1024
    ahead = paired_block_bootstrap_pvalue(base + 1 / 1024, base, block=None, draws=DRAWS, seed=0)
    assert ahead.p_value == pytest.approx(1 / (DRAWS + 1)) and ahead.block == 1
    same = paired_block_bootstrap_pvalue(base, base, block=None, draws=DRAWS, seed=0)
    assert same.p_value == 1.0 and same.mean_difference == 0.0
    flat = np.zeros(100)
    assert paired_block_bootstrap_pvalue(flat, flat, block=None, draws=DRAWS, seed=0).p_value == 1.0


def test_too_few_bars_is_no_evidence() -> None:
    few = np.linspace(0.01, 0.02, MIN_BARS - 1)
    result = paired_block_bootstrap_pvalue(few, np.zeros_like(few), block=None, draws=DRAWS, seed=0)
    assert result == PairedTest(
        p_value=1.0, mean_difference=pytest.approx(0.015), bars=MIN_BARS - 1, block=0, draws=0
    )
    empty = paired_block_bootstrap_pvalue(np.array([]), np.array([]), block=None, draws=DRAWS, seed=0)
    assert empty.p_value == 1.0 and empty.bars == 0 and empty.mean_difference == 0.0
    enough = np.random.default_rng(9).normal(0.0, NOISE, MIN_BARS)
    assert (
        paired_block_bootstrap_pvalue(enough, np.zeros(MIN_BARS), block=None, draws=DRAWS, seed=0).draws
        == DRAWS
    )


@pytest.mark.parametrize(
    ("challenger", "champion", "kwargs", "message"),
    [
        (np.array([0.1, np.nan] * 10), np.zeros(20), {}, "challenger returns hold 10 NaN"),
        (np.zeros(20), np.array([np.inf] + [0.0] * 19), {}, "champion returns hold 1 NaN or infinite"),
        (np.zeros((20, 2)), np.zeros((20, 2)), {}, "must be 1-D"),
        (np.zeros(20), np.zeros(21), {}, "same bars, got 20 and 21"),
        (np.zeros(20), np.zeros(20), {"draws": 0}, "draws must be >= 1"),
        (np.arange(20.0), np.zeros(20), {"block": 0}, r"block must be within \[1, 20\]"),
        (np.arange(20.0), np.zeros(20), {"block": 21}, r"block must be within \[1, 20\]"),
    ],
    ids=["nan", "inf", "2-D", "unequal", "no draws", "block 0", "block too long"],
)
def test_bad_inputs_raise_clearly(
    challenger: np.ndarray, champion: np.ndarray, kwargs: dict[str, int], message: str
) -> None:
    arguments: dict[str, int | None] = {"block": None, "draws": DRAWS, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        paired_block_bootstrap_pvalue(challenger, champion, **arguments)  # type: ignore[arg-type]


# --- PSI ---------------------------------------------------------------------------------------------------


def test_psi_of_identical_samples_is_zero() -> None:
    sample = np.random.default_rng(11).normal(size=1000)
    assert population_stability_index(sample, sample) == 0.0
    assert population_stability_index(sample, sample[::-1].copy()) == 0.0


def test_psi_grows_with_the_shift() -> None:
    rng = np.random.default_rng(12)
    reference, recent = rng.normal(size=5000), rng.normal(size=5000)
    values = [population_stability_index(reference, recent + shift) for shift in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and len(set(values)) == len(values), values
    assert values[0] < 0.02  # two samples of one distribution: sampling noise only
    assert values[-1] > 1.0


def test_psi_matches_a_hand_computed_case() -> None:
    reference = np.arange(10.0)  # median edge 4: bins (-inf, 4] and (4, inf) hold 5 and 5
    recent = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 1.0, 2.0, 5.0, 6.0])  # 8 and 2
    # (0.8 - 0.5)·ln(0.8/0.5) + (0.2 - 0.5)·ln(0.2/0.5) = 0.3·ln 4
    assert population_stability_index(reference, recent, bins=2) == pytest.approx(
        0.3 * math.log(4.0), rel=1e-12
    )


def test_an_empty_bin_counts_with_the_stated_epsilon() -> None:
    reference = np.arange(10.0)
    recent = np.array([0.0, 1.0, 2.0, 3.0, 4.0])  # nothing above the median
    eps = EMPTY_BIN_PROPORTION
    expected = 0.5 * math.log(2.0) + (0.5 - eps) * math.log(0.5 / eps)
    assert population_stability_index(reference, recent, bins=2) == pytest.approx(expected, rel=1e-12)


def test_values_beyond_the_reference_range_fall_in_the_outer_bins() -> None:
    reference = np.arange(100.0)  # deciles: ten bins of ten values
    recent = np.full(50, 1000.0)  # all in the last, open bin
    eps = EMPTY_BIN_PROPORTION
    expected = 9 * (eps - 0.1) * math.log(eps / 0.1) + 0.9 * math.log(1.0 / 0.1)
    assert population_stability_index(reference, recent) == pytest.approx(expected, rel=1e-12)


def test_psi_is_not_symmetric() -> None:
    reference = np.arange(100.0)
    recent = np.concatenate([np.arange(50.0), np.full(50, 10.0)])
    assert population_stability_index(reference, recent) != pytest.approx(
        population_stability_index(recent, reference)
    )


integer_samples = st.lists(st.integers(-50, 50), min_size=1, max_size=200).map(
    lambda v: np.array(v, dtype=float)
)


@settings(max_examples=200, deadline=None)
@given(reference=integer_samples, recent=integer_samples, bins=st.integers(2, 12))
def test_psi_properties(reference: np.ndarray, recent: np.ndarray, bins: int) -> None:
    psi = population_stability_index(reference, recent, bins=bins)
    assert psi >= 0.0 and math.isfinite(psi)
    assert population_stability_index(reference, reference, bins=bins) == 0.0
    # Ranks only: one strictly increasing map applied to both samples (exact in floats for these integers).
    assert population_stability_index(3 * reference + 7, 3 * recent + 7, bins=bins) == psi


def test_feature_psi_names_each_column() -> None:
    rng = np.random.default_rng(13)
    reference = rng.normal(size=(2000, 3))
    recent = rng.normal(size=(500, 3))
    recent[:, 1] += 1.5
    result = feature_psi(reference, recent, ["returns", "volatility", "volume"])
    assert list(result) == ["returns", "volatility", "volume"]
    assert result["volatility"] == population_stability_index(reference[:, 1], recent[:, 1])
    assert result["volatility"] > 0.5 > max(result["returns"], result["volume"])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: population_stability_index(np.arange(5.0), np.arange(5.0), bins=1), "bins must be >= 2"),
        (lambda: population_stability_index(np.array([]), np.arange(5.0)), "reference sample is empty"),
        (
            lambda: population_stability_index(np.arange(5.0), np.array([1.0, np.nan])),
            "recent sample holds 1 NaN",
        ),
        (lambda: feature_psi(np.zeros((5, 2)), np.zeros((5, 2)), ["a"]), "one column per name"),
        (lambda: feature_psi(np.zeros(5), np.zeros(5), ["a"]), "must be 2-D"),
        (lambda: feature_psi(np.zeros((5, 2)), np.zeros((5, 2)), ["a", "a"]), "must be unique"),
    ],
    ids=["bins", "empty", "nan", "columns", "1-D", "duplicate names"],
)
def test_psi_bad_inputs_raise_clearly(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
