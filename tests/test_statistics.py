"""The sweep report's statistics: intervals that respect their ranges, paired tests, Holm."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.statistics import bootstrap_ci, fisher_z_interval, fisher_z_mean_ci, wilson_ci
from analysis.sweep.statistics import metric_kind, paired_comparisons, summarise_over_seeds

rhos = st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=12)


@settings(max_examples=60, deadline=None)
@given(rhos)
def test_fisher_z_interval_of_correlations_stays_inside_minus_one_one(values: list) -> None:
    mean, low, high = fisher_z_mean_ci(values)
    assert -1.0 <= low <= mean <= high <= 1.0


def test_fisher_z_mean_is_the_back_transformed_mean_z() -> None:
    r = np.array([0.2, 0.5, 0.8])
    z = np.arctanh(r)
    mean, low, high = fisher_z_mean_ci(r, 0.95)
    assert mean == pytest.approx(math.tanh(z.mean()))
    half = 4.302652729911275 * z.std(ddof=1) / math.sqrt(3)  # t_{0.975, 2}
    assert (low, high) == pytest.approx((math.tanh(z.mean() - half), math.tanh(z.mean() + half)))


def test_fisher_z_interval_of_one_spearman_rho() -> None:
    low, high = fisher_z_interval(0.6, 10)
    se = math.sqrt(1.06 / 7)
    assert (low, high) == pytest.approx((math.tanh(math.atanh(0.6) - 1.959964 * se),
                                         math.tanh(math.atanh(0.6) + 1.959964 * se)), abs=1e-6)
    assert all(math.isnan(v) for v in fisher_z_interval(0.6, 3))


def test_wilson_interval_known_values() -> None:
    # Wilson (1927): 0 of 10 -> [0, 0.2775]; 5 of 10 -> [0.2366, 0.7634].
    p, low, high = wilson_ci(0, 10)
    assert (p, low) == (0.0, pytest.approx(0.0, abs=1e-12))
    assert high == pytest.approx(0.2775, abs=1e-4)
    assert wilson_ci(5, 10)[1:] == pytest.approx((0.2366, 0.7634), abs=1e-4)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=10))
def test_bootstrap_interval_never_leaves_the_values_range(values: list) -> None:
    mean, low, high = bootstrap_ci(values)
    assert min(values) - 1e-12 <= low <= high <= max(values) + 1e-12
    assert min(values) - 1e-12 <= mean <= max(values) + 1e-12


def test_each_metric_gets_the_interval_of_its_kind() -> None:
    assert metric_kind("price_contribution_spearman") == "correlation"
    assert metric_kind("reward_contribution_rho") == "correlation"
    assert metric_kind("profitable_share") == "proportion"
    assert metric_kind("reward_gini") == "bootstrap"
    assert metric_kind("execution_cost_usd") == "mean"
    frame = pd.DataFrame({"g": ["a"] * 3, "profitable_share": [0.0, 0.5, 1.0],
                          "n": [10, 10, 20], "reward_gini": [0.1, 0.2, 0.4]})
    row = summarise_over_seeds(frame, ["g"], ["profitable_share", "reward_gini"],
                               count="n").iloc[0]
    # Pooled: (0 + 5 + 20) of 40 investors, with its Wilson interval.
    assert row["profitable_share_mean"] == pytest.approx(25 / 40)
    assert (row["profitable_share_ci_low"], row["profitable_share_ci_high"]) == pytest.approx(
        wilson_ci(25, 40)[1:])
    assert 0.1 - 1e-12 <= row["reward_gini_ci_low"] <= row["reward_gini_ci_high"] <= 0.4 + 1e-12


def test_paired_comparisons_difference_tests_and_holm() -> None:
    rng = np.random.default_rng(0)
    seeds = np.arange(8)
    noise = rng.normal(0, 1, len(seeds))  # shared by every policy on one seed
    rows = []
    for policy, shift in (("buyback", 0.0), ("mint", 3.0), ("dividend", 0.1)):
        for s in seeds:
            rows.append({"policy": policy, "seed": s, "cost": 10 + shift + noise[s]
                         + 0.01 * rng.normal()})
    table = paired_comparisons(pd.DataFrame(rows), "policy", ["cost"])
    assert list(zip(table["a"], table["b"], strict=True)) == [
        ("buyback", "mint"), ("buyback", "dividend"), ("mint", "dividend")]
    bm = table.iloc[0]
    assert bm["n_pairs"] == 8
    assert bm["mean_diff"] == pytest.approx(-3.0, abs=0.05)
    assert bm["diff_ci_low"] < -3.0 + 0.05 and bm["diff_ci_high"] > -3.0 - 0.05
    assert bm["significant"]  # the seed noise (sd 1) cancels in the pairs
    # Holm: sorted p-values times (m - rank + 1), made monotone, capped at 1.
    p = table["p_t"].to_numpy()
    order = np.argsort(p)
    adjusted = np.minimum(1, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    expected = np.empty_like(p)
    expected[order] = adjusted
    assert table["p_t_holm"].to_numpy() == pytest.approx(expected)
    assert (table["p_wilcoxon_holm"] >= table["p_wilcoxon"]).all()
