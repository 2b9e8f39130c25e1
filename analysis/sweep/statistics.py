"""The sweep report's statistics: intervals over seeds that respect their ranges, paired tests.

Each metric gets the interval its kind calls for (`metric_kind` decides by name; the
estimators are `analysis.statistics`'):

- `mean`: the mean over seeds with its Student-t interval (`mean_ci`): money, percentages,
  accuracy, counts;
- `correlation` (Spearman rho, names ending `_spearman` or `_rho`): averaged in Fisher z
  space (`fisher_z_mean_ci`), so the interval stays inside [-1, 1];
- `proportion` (names ending `_share`, with the group sizes beside them): the proportion
  pooled over seeds, k / n, with the Wilson score interval (`wilson_ci`); it treats the n
  units (investors) as independent draws;
- `bootstrap` (Gini coefficients and `nmad`s, bounded, skewed): the mean over seeds with a
  percentile bootstrap interval (`bootstrap_ci`), which never leaves the range of the values.

Below `MIN_SEEDS` seeds per point the report warns that the intervals are unreliable.

Paired comparisons (`paired_comparisons`): runs of two policies (or methods) on the same seed
share every random stream but the ones the mechanism drives, so the difference per seed is
the effect with the seed's noise removed. Per pair of values and metric: the mean paired
difference with its t interval, the paired t test and the Wilcoxon signed-rank test
(scipy.stats), and their p-values Holm-corrected across the comparisons of that metric
(statsmodels' `multipletests`).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.statistics import bootstrap_ci, fisher_z_mean_ci, mean_ci, wilson_ci

__all__ = [
    "MIN_SEEDS",
    "metric_kind",
    "paired_comparisons",
    "summarise_over_seeds",
]

#: Fewer seeds per point than this, and the report warns: a t interval over 2-4 values is
#: wide and, for skewed metrics, unreliable.
MIN_SEEDS = 5
NAN = math.nan


def metric_kind(name: str) -> str:
    """The interval a metric gets, by its name: 'correlation', 'proportion', 'bootstrap' or
    'mean' (see the module docstring)."""
    if name.endswith(("_spearman", "_rho")):
        return "correlation"
    if name.endswith("_share"):
        return "proportion"
    if name.endswith(("_gini", "_nmad")):
        return "bootstrap"
    return "mean"


def interval(name: str, group: pd.DataFrame, confidence: float,
             count: str | None = None) -> tuple[float, float, float]:
    """(centre, low, high) of metric `name` over the rows of `group`, by its kind; a
    proportion pools k = share x n over the rows when the group has a `count` column."""
    kind = metric_kind(name)
    if kind == "correlation":
        return fisher_z_mean_ci(group[name], confidence)
    if kind == "proportion" and count is not None and count in group.columns:
        keep = group[name].notna() & group[count].notna()
        n = float(group.loc[keep, count].sum())
        k = float((group.loc[keep, name] * group.loc[keep, count]).sum())
        return wilson_ci(k, n, confidence)
    if kind in ("bootstrap", "proportion"):
        return bootstrap_ci(group[name], confidence)
    return mean_ci(group[name], confidence)


def summarise_over_seeds(
    frame: pd.DataFrame,
    by: Sequence[str],
    values: Sequence[str],
    confidence: float = 0.95,
    count: str | None = None,
) -> pd.DataFrame:
    """Centre and confidence interval over the rows of each group (the seeds of a grid point).

    One row per group of `by` (in order of first appearance; all rows when `by` is empty):
    the `by` columns, `n_runs`, then `<v>_mean`, `<v>_ci_low`, `<v>_ci_high` per value
    column, each by its kind (`metric_kind`: the arithmetic mean with a t interval; for a
    correlation the Fisher-z mean; for a proportion the pooled k / n with `count` the column
    of group sizes n; a bootstrap interval for a Gini).
    """
    by = list(by)
    groups: Iterable[tuple[Any, pd.DataFrame]] = (
        frame.groupby(by, sort=False, dropna=False) if by else [((), frame)]
    )
    rows = []
    for key, group in groups:
        keys = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, keys, strict=True))
        row["n_runs"] = len(group)
        for value in values:
            mean, low, high = interval(value, group, confidence, count)
            row[f"{value}_mean"] = mean
            row[f"{value}_ci_low"] = low
            row[f"{value}_ci_high"] = high
        rows.append(row)
    return pd.DataFrame(
        rows,
        columns=[
            *by,
            "n_runs",
            *(f"{v}_{s}" for v in values for s in ("mean", "ci_low", "ci_high")),
        ],
    )


def paired_comparisons(
    frame: pd.DataFrame,
    factor: str,
    metrics: Sequence[str],
    within: Sequence[str] = (),
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Paired differences between the values of `factor` (policy, method) on common seeds.

    For every setting of the `within` columns (the other grid parameters), every pair (a, b)
    of `factor` values in order of appearance and every metric: the seeds both ran with a
    finite value (`n_pairs`), the mean difference a − b with its Student-t interval, the
    paired t test's p-value (`p_t`: a one-sample t test of the differences, which is
    scipy.stats.ttest_rel) and the Wilcoxon signed-rank
    test's (`p_wilcoxon`, exact for small samples; 1.0 when every difference is 0), and both
    Holm-corrected (`p_t_holm`, `p_wilcoxon_holm`) across all comparisons of that metric
    in the table (statsmodels' `multipletests`). `significant`: the Holm-corrected t test
    rejects at 1 − `confidence`. Rows with fewer than two pairs have NaN tests.
    """
    from statsmodels.stats.multitest import multipletests

    within = list(within)
    columns = [*within, "metric", "a", "b", "n_pairs", "mean_diff", "diff_ci_low",
               "diff_ci_high", "p_t", "p_wilcoxon", "p_t_holm", "p_wilcoxon_holm",
               "significant"]
    groups: Iterable[tuple[Any, pd.DataFrame]] = (
        frame.groupby(within, sort=False, dropna=False) if within else [((), frame)])
    rows = []
    for key, group in groups:
        keys = key if isinstance(key, tuple) else (key,)
        levels = list(dict.fromkeys(group[factor]))
        for metric in metrics:
            if metric not in group.columns:
                continue
            wide = group.pivot_table(index="seed", columns=factor, values=metric,
                                     aggfunc="mean")
            for a, b in itertools.combinations(levels, 2):
                if a not in wide.columns or b not in wide.columns:
                    continue
                d = (wide[a] - wide[b]).to_numpy(dtype=float)
                d = d[np.isfinite(d)]
                mean, low, high = mean_ci(d, confidence)
                p_t = p_w = NAN
                if len(d) >= 2:
                    if np.ptp(d) == 0:
                        p_t = 1.0 if d[0] == 0 else 0.0
                    else:
                        p_t = float(stats.ttest_1samp(d, 0.0).pvalue)
                    if np.all(d == 0):
                        p_w = 1.0
                    else:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")  # small-sample notices
                            p_w = float(stats.wilcoxon(d).pvalue)
                rows.append({**dict(zip(within, keys, strict=True)), "metric": metric,
                             "a": a, "b": b, "n_pairs": len(d), "mean_diff": mean,
                             "diff_ci_low": low, "diff_ci_high": high, "p_t": p_t,
                             "p_wilcoxon": p_w})
    table = pd.DataFrame(rows, columns=columns[:-3])
    for test in ("p_t", "p_wilcoxon"):
        table[f"{test}_holm"] = NAN
        for _, index in table.groupby("metric", sort=False).groups.items():
            p = table.loc[index, test]
            ok = p.notna()
            if ok.any():
                table.loc[p[ok].index, f"{test}_holm"] = multipletests(
                    p[ok].to_numpy(), method="holm")[1]
    table["significant"] = table["p_t_holm"] < (1.0 - confidence)
    return table[columns]
