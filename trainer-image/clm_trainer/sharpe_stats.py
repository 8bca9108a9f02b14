"""Probabilistic and deflated Sharpe ratios: how much a backtest's Sharpe ratio can be trusted.

References:
- D. H. Bailey and M. López de Prado (2012), "The Sharpe Ratio Efficient Frontier",
  Journal of Risk 15(2), 3-44 — the probabilistic Sharpe ratio (PSR):
  ``PSR(SR*) = Φ( (SR - SR*) √(T-1) / √(1 - γ3·SR + (γ4-1)/4·SR²) )``.
- D. H. Bailey and M. López de Prado (2014), "The Deflated Sharpe Ratio: Correcting for Selection
  Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management 40(5), 94-107 —
  the deflated Sharpe ratio ``DSR = PSR(SR0)`` with the expected maximum Sharpe ratio of N
  unskilled trials ``SR0 = √V[SR_n] · ((1-γ)·Φ⁻¹(1-1/N) + γ·Φ⁻¹(1-1/(N·e)))`` (γ: Euler-Mascheroni).

Conventions (the papers leave them open, so they are fixed here):
- SR is the non-annualised Sharpe ratio of the observations passed in (the backtest passes
  daily-aggregated returns), mean / standard deviation with ddof=1 (as pandas' ``std``).
- γ3 and γ4 are the population (biased) skewness and the RAW kurtosis (3 for a normal
  distribution, not the excess kurtosis 0): the formula has ``(γ4 - 1) / 4``.
- Undefined cases (fewer than two observations, zero variance) give PSR = DSR = 0: no evidence of
  skill, rather than NaN.
- When the variance of the trials' Sharpe ratios is not known, the default is ``1 / (T - 1)``: the
  sampling variance of a Sharpe ratio estimate under the null hypothesis that no trial has skill
  (true SR 0, i.i.d. returns). Then ``SR0·√(T-1)`` is the expected maximum of N standard normals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

EULER_GAMMA = 0.5772156649015329


@dataclass(frozen=True)
class SharpeMoments:
    """What PSR needs from a return series."""

    sharpe: float  # non-annualised, ddof=1
    skewness: float  # population skewness
    kurtosis: float  # raw (non-excess) population kurtosis
    n_obs: int

    @property
    def defined(self) -> bool:
        return self.n_obs >= 2 and math.isfinite(self.sharpe)


def sharpe_moments(returns: np.ndarray) -> SharpeMoments:
    """Sharpe ratio, skewness and raw kurtosis of ``returns`` (NaN Sharpe when undefined)."""
    x = np.asarray(returns, dtype=np.float64)
    n = int(x.size)
    if n < 2:
        return SharpeMoments(math.nan, 0.0, 3.0, n)
    mean = float(x.mean())
    dev = x - mean
    sq = dev * dev
    m2 = float(sq.mean())
    if not m2 > 0.0 or not math.isfinite(m2):
        return SharpeMoments(math.nan, 0.0, 3.0, n)
    # not np.dot: a BLAS dot may go multi-threaded, slower than this on a busy machine
    m3 = float(np.add.reduce(sq * dev)) / n
    m4 = float(np.add.reduce(sq * sq)) / n
    std = math.sqrt(m2 * n / (n - 1))
    return SharpeMoments(mean / std, m3 / m2**1.5, m4 / (m2 * m2), n)


def probabilistic_sharpe_ratio(sharpe: float, n_obs: int, skewness: float, kurtosis: float,
                               benchmark_sharpe: float = 0.0) -> float:
    """PSR: probability that the true Sharpe ratio exceeds ``benchmark_sharpe`` (same units).

    ``kurtosis`` is the raw kurtosis (normal = 3). Returns 0 when the inputs leave it undefined.
    """
    if n_obs < 2 or not math.isfinite(sharpe) or not math.isfinite(benchmark_sharpe):
        return 0.0
    # 1 - γ3·SR + (γ4-1)/4·SR² >= 0 whenever γ4 >= γ3² + 1, which population moments satisfy;
    # the floor only protects against rounding with user-supplied moments.
    variance_term = 1.0 - skewness * sharpe + (kurtosis - 1.0) / 4.0 * sharpe * sharpe
    variance_term = max(variance_term, 1e-12)
    z = (sharpe - benchmark_sharpe) * math.sqrt(n_obs - 1) / math.sqrt(variance_term)
    return _clip01(float(norm.cdf(z)))


def expected_max_sharpe(n_trials: int, trial_sharpe_variance: float) -> float:
    """SR0: the expected maximum Sharpe ratio of ``n_trials`` unskilled trials (DSR paper, eq. 2).

    ``trial_sharpe_variance`` is the variance of the trials' Sharpe ratios, in the units of the
    Sharpe ratio being deflated. One trial: 0 (nothing was selected).
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if not trial_sharpe_variance >= 0.0 or not math.isfinite(trial_sharpe_variance):
        raise ValueError(f"trial_sharpe_variance must be a finite number >= 0, got {trial_sharpe_variance}")
    if n_trials == 1:
        return 0.0
    z = ((1.0 - EULER_GAMMA) * float(norm.ppf(1.0 - 1.0 / n_trials))
         + EULER_GAMMA * float(norm.ppf(1.0 - 1.0 / (n_trials * math.e))))
    return math.sqrt(trial_sharpe_variance) * z


def deflated_sharpe_ratio(sharpe: float, n_obs: int, skewness: float, kurtosis: float, n_trials: int,
                          trial_sharpe_variance: float | None = None) -> float:
    """DSR = PSR(SR0); ``trial_sharpe_variance`` None -> ``1/(n_obs-1)`` (see the module docstring)."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_obs < 2:
        return 0.0
    variance = 1.0 / (n_obs - 1) if trial_sharpe_variance is None else trial_sharpe_variance
    return probabilistic_sharpe_ratio(sharpe, n_obs, skewness, kurtosis,
                                      benchmark_sharpe=expected_max_sharpe(n_trials, variance))


def _clip01(value: float) -> float:
    return 0.0 if math.isnan(value) else min(1.0, max(0.0, value))
