"""Interval estimators for the run report, the sweep report and the sensitivity analysis.

Each returns its centre and interval in the units of the values it is given (USD, percent,
rho), and each keeps the interval inside the range its quantity can take:

- `mean_ci`: the mean with its Student-t interval (money, percentages, accuracy, counts);
- `fisher_z_mean_ci`: correlations (Spearman rho) averaged in Fisher z space,
  ``tanh(mean(atanh r))``, with the t interval of the z values transformed back, so the
  interval stays inside [-1, 1]; `fisher_z_interval`: one correlation over n points
  (Spearman standard error sqrt(1.06 / (n − 3)), Fieller, Hartley & Pearson 1957);
- `wilson_ci`: a proportion k / n with the Wilson score interval (statsmodels), which stays
  inside [0, 1] and behaves at 0 and 1;
- `bootstrap_ci`: the mean with a percentile bootstrap interval (scipy.stats.bootstrap,
  9,999 resamples, fixed seed) for bounded, skewed quantities (Gini coefficients, NMADs):
  it never leaves the range of the values.

Which estimator a sweep's metric gets is `analysis.sweep.statistics.metric_kind`'s choice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy import stats

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "BOOTSTRAP_SEED",
    "RHO_CLIP",
    "bootstrap_ci",
    "fisher_z_interval",
    "fisher_z_mean_ci",
    "mean_ci",
    "wilson_ci",
]

#: Resamples of the percentile bootstrap, and its seed (the same report every time).
BOOTSTRAP_RESAMPLES = 9_999
BOOTSTRAP_SEED = 0
#: |rho| is clipped to this before atanh: a run whose prices rank clients exactly (rho = 1)
#: would otherwise make the mean z infinite.
RHO_CLIP = 1.0 - 1e-6
NAN = math.nan


def _finite(values: Iterable[float]) -> np.ndarray:
    x = np.asarray([float(v) for v in values], dtype=float)
    return x[np.isfinite(x)]


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval `(mean, low, high)` of the finite values.

    low/high = mean -/+ t_{(1+confidence)/2, n-1} * s / sqrt(n), with s the sample standard
    deviation (ddof 1): the interval for the mean over seeds when runs are independent draws.
    NaN interval with fewer than two finite values; all NaN with none.
    """
    x = _finite(values)
    if len(x) == 0:
        return NAN, NAN, NAN
    mean = float(x.mean())
    if len(x) < 2:
        return mean, NAN, NAN
    half = float(
        stats.t.ppf((1.0 + confidence) / 2.0, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    )
    return mean, mean - half, mean + half


def fisher_z_mean_ci(values: Iterable[float],
                     confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean correlation over seeds and its interval, in Fisher z space.

    z_s = atanh(r_s) per seed (|r| clipped to `RHO_CLIP`), the t interval of the mean z, and
    everything transformed back with tanh: `(tanh(mean z), tanh(low z), tanh(high z))`,
    inside [-1, 1] by construction. NaN interval with fewer than two finite values.
    """
    r = _finite(values)
    if len(r) == 0:
        return NAN, NAN, NAN
    z = np.arctanh(np.clip(r, -RHO_CLIP, RHO_CLIP))
    mean, low, high = mean_ci(z, confidence)
    return float(np.tanh(mean)), float(np.tanh(low)), float(np.tanh(high))


def fisher_z_interval(r: float, n: int, confidence: float = 0.95,
                      spearman: bool = True) -> tuple[float, float]:
    """Interval of one correlation coefficient `r` measured over `n` pairs (e.g. clients).

    atanh(r) -/+ z_{(1+confidence)/2} * se, transformed back with tanh; se = 1 / sqrt(n − 3)
    for Pearson's r and sqrt(1.06 / (n − 3)) for Spearman's rho (Fieller, Hartley & Pearson
    1957). NaN with n <= 3 or a NaN `r`.
    """
    if not math.isfinite(r) or n <= 3:
        return NAN, NAN
    se = math.sqrt((1.06 if spearman else 1.0) / (n - 3))
    z = math.atanh(min(max(r, -RHO_CLIP), RHO_CLIP))
    half = float(stats.norm.ppf((1.0 + confidence) / 2.0)) * se
    return math.tanh(z - half), math.tanh(z + half)


def wilson_ci(successes: float, trials: float,
              confidence: float = 0.95) -> tuple[float, float, float]:
    """Proportion k / n and its Wilson score interval `(p, low, high)` (statsmodels'
    `proportion_confint(method="wilson")`). All NaN with n = 0."""
    from statsmodels.stats.proportion import proportion_confint

    if not trials or not math.isfinite(trials):
        return NAN, NAN, NAN
    low, high = proportion_confint(round(successes), round(trials), alpha=1.0 - confidence,
                                   method="wilson")
    return float(successes / trials), float(low), float(high)


def bootstrap_ci(values: Iterable[float],
                 confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval `(mean, low, high)` of the finite values
    (scipy.stats.bootstrap, `BOOTSTRAP_RESAMPLES` resamples, seed `BOOTSTRAP_SEED`).

    For metrics with no closed-form interval (a Gini coefficient's mean over seeds): the
    interval never leaves the range of the values. NaN interval with fewer than two values;
    a zero-width interval when they are all equal.
    """
    x = _finite(values)
    if len(x) == 0:
        return NAN, NAN, NAN
    mean = float(x.mean())
    if len(x) < 2:
        return mean, NAN, NAN
    if np.ptp(x) == 0:
        return mean, mean, mean
    result = stats.bootstrap((x,), np.mean, confidence_level=confidence,
                             n_resamples=BOOTSTRAP_RESAMPLES, method="percentile",
                             random_state=np.random.default_rng(BOOTSTRAP_SEED))
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)
