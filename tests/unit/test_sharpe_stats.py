"""PSR and DSR against the formulas worked by hand and against the DSR paper's own example."""

from __future__ import annotations

import math

import numpy as np
import pytest
from clm_trainer.backtest import run_backtest
from clm_trainer.sharpe_stats import (
    EULER_GAMMA,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    sharpe_moments,
)

DAILY = [0.012, -0.004, 0.007, 0.001, -0.009, 0.015, 0.003, -0.002, 0.006, 0.004]


def phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def hand_moments(x: list[float]) -> tuple[float, float, float, int]:
    n = len(x)
    mean = sum(x) / n
    m2 = sum((v - mean) ** 2 for v in x) / n
    m3 = sum((v - mean) ** 3 for v in x) / n
    m4 = sum((v - mean) ** 4 for v in x) / n
    sample_sd = math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1))
    return mean / sample_sd, m3 / m2**1.5, m4 / m2**2, n


def test_moments_match_hand_computation() -> None:
    sr, skew, kurt, n = hand_moments(DAILY)
    got = sharpe_moments(np.array(DAILY))
    assert got.n_obs == n
    assert got.sharpe == pytest.approx(sr, rel=1e-12)
    assert got.skewness == pytest.approx(skew, rel=1e-12)
    assert got.kurtosis == pytest.approx(kurt, rel=1e-12)


def test_psr_matches_the_formula_by_hand() -> None:
    sr, skew, kurt, n = hand_moments(DAILY)
    expected = phi(sr * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2))
    assert probabilistic_sharpe_ratio(sr, n, skew, kurt) == pytest.approx(expected, abs=1e-12)
    # and against a non-zero benchmark
    bench = 0.1
    expected_b = phi((sr - bench) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2))
    assert probabilistic_sharpe_ratio(sr, n, skew, kurt, bench) == pytest.approx(expected_b, abs=1e-12)


def test_dsr_matches_the_formula_by_hand() -> None:
    sr, skew, kurt, n = hand_moments(DAILY)
    trials, variance = 25, 0.04
    # inverse normal CDF by bisection on erf, independent of scipy
    def inv_phi(p: float) -> float:
        lo, hi = -10.0, 10.0
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if phi(mid) < p else (lo, mid)
        return (lo + hi) / 2
    sr0 = math.sqrt(variance) * ((1 - EULER_GAMMA) * inv_phi(1 - 1 / trials)
                                 + EULER_GAMMA * inv_phi(1 - 1 / (trials * math.e)))
    assert expected_max_sharpe(trials, variance) == pytest.approx(sr0, abs=1e-9)
    expected = phi((sr - sr0) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2))
    assert deflated_sharpe_ratio(sr, n, skew, kurt, trials, variance) == pytest.approx(expected, abs=1e-9)


def test_the_dsr_papers_worked_example() -> None:
    # Bailey & Lopez de Prado (2014), section 4: annualised SR 2.5 over 5 years of daily data
    # (T=1250, 250 days a year), skewness -3, kurtosis 10, N=100 trials whose annualised Sharpe
    # ratios have variance 0.5 -> SR0 = 0.1132 (daily) and DSR = 0.9004.
    sr, days = 2.5 / math.sqrt(250), 250
    assert expected_max_sharpe(100, 0.5 / days) == pytest.approx(0.1132, abs=1e-4)
    assert deflated_sharpe_ratio(sr, 1250, -3.0, 10.0, 100, 0.5 / days) == pytest.approx(0.9004, abs=5e-4)


def test_more_trials_deflate_more() -> None:
    sr, skew, kurt, n = hand_moments(DAILY * 30)
    values = [deflated_sharpe_ratio(sr, n, skew, kurt, k) for k in (1, 2, 5, 10, 100, 1000, 10**6)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[0] == probabilistic_sharpe_ratio(sr, n, skew, kurt)
    assert expected_max_sharpe(1, 0.3) == 0.0


def test_default_variance_is_the_null_sampling_variance() -> None:
    sr, skew, kurt, n = hand_moments(DAILY * 10)
    assert deflated_sharpe_ratio(sr, n, skew, kurt, 50) == deflated_sharpe_ratio(sr, n, skew, kurt, 50,
                                                                                 1 / (n - 1))


def test_psr_moves_the_right_way() -> None:
    base = probabilistic_sharpe_ratio(0.1, 500, 0.0, 3.0)
    assert probabilistic_sharpe_ratio(0.2, 500, 0.0, 3.0) > base  # higher Sharpe
    assert probabilistic_sharpe_ratio(0.1, 2000, 0.0, 3.0) > base  # longer track record
    assert probabilistic_sharpe_ratio(0.1, 500, -2.0, 3.0) < base  # negative skew
    assert probabilistic_sharpe_ratio(0.1, 500, 0.0, 12.0) < base  # fat tails
    assert probabilistic_sharpe_ratio(0.0, 500, 0.0, 3.0) == pytest.approx(0.5)


def test_undefined_cases_give_zero_not_nan() -> None:
    assert not sharpe_moments(np.array([0.01])).defined
    assert not sharpe_moments(np.zeros(20)).defined
    assert probabilistic_sharpe_ratio(math.nan, 20, 0.0, 3.0) == 0.0
    assert probabilistic_sharpe_ratio(0.5, 1, 0.0, 3.0) == 0.0
    assert deflated_sharpe_ratio(0.5, 1, 0.0, 3.0, 10) == 0.0
    assert 0.0 <= probabilistic_sharpe_ratio(50.0, 10**6, 0.0, 3.0) <= 1.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_trials"):
        expected_max_sharpe(0, 0.1)
    with pytest.raises(ValueError, match="trial_sharpe_variance"):
        expected_max_sharpe(3, -0.1)
    with pytest.raises(ValueError, match="n_trials"):
        deflated_sharpe_ratio(0.1, 100, 0.0, 3.0, 0)


def test_backtest_reports_deflation_by_trials() -> None:
    rng = np.random.default_rng(11)
    r = rng.normal(0.001, 0.01, 400)
    pos = np.ones(400)
    dsr = [run_backtest(pos, r, fee_bps=1, slippage_bps=1, periods_per_year=365, n_trials=k).metrics
           for k in (1, 10, 1000)]
    assert dsr[0].dsr == dsr[0].psr
    assert dsr[0].dsr > dsr[1].dsr > dsr[2].dsr
    assert all(m.n_trials == k for m, k in zip(dsr, (1, 10, 1000), strict=True))
