"""Means over seeds and their Student-t confidence intervals (the sweep report's statistics)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["mean_ci", "summarise_over_seeds", "t_interval"]


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval `(mean, low, high)` of the finite values.

    low/high = mean -/+ t_{(1+confidence)/2, n-1} * s / sqrt(n), with s the sample standard
    deviation (ddof 1): the interval for the mean over seeds when runs are independent draws.
    NaN interval with fewer than two finite values; all NaN with none.
    """
    x = np.asarray([float(v) for v in values], dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(
        stats.t.ppf((1.0 + confidence) / 2.0, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    )
    return mean, mean - half, mean + half


def summarise_over_seeds(
    frame: pd.DataFrame, by: Sequence[str], values: Sequence[str], confidence: float = 0.95
) -> pd.DataFrame:
    """Mean and confidence interval over the rows of each group (the seeds of a grid point).

    One row per group of `by` (in order of first appearance; all rows when `by` is empty):
    the `by` columns, `n_runs`, then `<v>_mean`, `<v>_ci_low`, `<v>_ci_high` per value column.
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
            mean, low, high = mean_ci(group[value], confidence)
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


def t_interval(confidence: float) -> Callable[[Any], tuple[float, float]]:
    """seaborn `errorbar=` callable drawing the same t interval as the tables."""

    def interval(values: Any) -> tuple[float, float]:
        _, low, high = mean_ci(values, confidence)
        return low, high

    return interval
