"""Market statistics against series whose values are known, and the bubble flag on a
constructed price path."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.market_stats import (
    ACF_LAGS,
    BUBBLE_MULTIPLE,
    MARKET_STAT_KEYS,
    autocorrelation,
    bubble_flags,
    excess_kurtosis,
    hill_tail_index,
    log_returns,
    market_statistics,
    price_runups,
    token_return_stats,
)
from analysis.runs import Run

N = 20_000  # long enough that sampling error is a few hundredths


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_iid_gaussian_returns_have_no_excess_kurtosis_and_no_autocorrelation() -> None:
    x = _rng(1).normal(0.0, 0.01, N)
    assert excess_kurtosis(x) == pytest.approx(0.0, abs=0.15)  # se sqrt(24 / N) = 0.035
    est = autocorrelation(x, ACF_LAGS)
    assert est["acf"][0] == 1.0
    assert est["band"] == pytest.approx(1.959964 / math.sqrt(N), rel=1e-6)
    # Every lag within the band's double (a 1-in-10^5 miss per lag by chance).
    assert np.all(np.abs(est["acf"][1:]) < 2 * est["band"])
    assert np.all(np.abs(autocorrelation(np.abs(x))["acf"][1:]) < 2 * est["band"])
    assert est["ljung_box_p"] > 0.01


def test_laplace_returns_have_excess_kurtosis_three() -> None:
    assert excess_kurtosis(_rng(2).laplace(0.0, 1.0, 200_000)) == pytest.approx(3.0, abs=0.3)


@pytest.mark.parametrize("phi", [0.6, -0.4])
def test_ar1_autocorrelation_at_lag_k_is_phi_to_the_k(phi: float) -> None:
    e = _rng(3).normal(size=N)
    x = np.empty(N)
    x[0] = e[0] / math.sqrt(1 - phi**2)
    for t in range(1, N):
        x[t] = phi * x[t - 1] + e[t]
    acf = autocorrelation(x, 10)["acf"]
    # se of r_k for an AR(1) is about sqrt((1 + phi^2) / (1 - phi^2) / N) <= 0.013 here.
    for k in range(1, 11):
        assert acf[k] == pytest.approx(phi**k, abs=0.04), k
    assert autocorrelation(x, 10)["ljung_box_p"] < 1e-10


def test_hill_recovers_the_tail_index_of_a_symmetric_pareto_sample() -> None:
    rng = _rng(4)
    alpha = 3.0
    # |X| Pareto with x_min 0.01: P(|X| > x) = (x / 0.01)^-alpha, a random sign each.
    x = 0.01 * (1.0 - rng.random(N)) ** (-1.0 / alpha) * rng.choice([-1.0, 1.0], N)
    # Exact Pareto: the estimator is unbiased at any k; se alpha / sqrt(k) = 0.095 (k 1000).
    assert hill_tail_index(x) == pytest.approx(alpha, abs=0.3)
    assert hill_tail_index(x, k=200) == pytest.approx(alpha, abs=0.6)


def test_hill_of_a_student_t_sample_is_near_its_degrees_of_freedom() -> None:
    x = _rng(5).standard_t(3, 200_000)
    # A Student t's tail index is its degrees of freedom; Hill is biased only by the t's
    # second-order term, small in the top 1 %.
    assert hill_tail_index(x, tail_fraction=0.01) == pytest.approx(3.0, abs=0.4)


def test_hill_leaves_out_zero_returns_and_refuses_a_short_tail() -> None:
    rng = _rng(6)
    x = 0.01 * (1.0 - rng.random(4000)) ** (-1.0 / 2.0)
    with_zeros = np.concatenate([x, np.zeros(4000)])
    assert hill_tail_index(with_zeros) == hill_tail_index(x)
    assert math.isnan(hill_tail_index(x[:100]))  # 5 % of 100 is below the minimum tail


def test_constant_or_short_series_give_nan_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(excess_kurtosis(np.zeros(100)))
        assert math.isnan(excess_kurtosis([1.0, 2.0]))
        est = autocorrelation(np.zeros(100))
        assert np.isnan(est["acf"]).all() and math.isnan(est["band"])
        assert np.isnan(autocorrelation([1.0, 2.0])["acf"]).all()
    short = autocorrelation(_rng(8).normal(size=10), 20)
    assert np.isfinite(short["acf"][:9]).all() and np.isnan(short["acf"][9:]).all()
    assert math.isnan(short["ljung_box_p"])


def test_log_returns_are_per_step_and_indexed_by_the_later_step() -> None:
    prices = pd.DataFrame({"a": [1.0, 2.0, 1.0], "b": [4.0, 4.0, 8.0]}, index=[0, 1, 2])
    r = log_returns(prices)
    assert list(r.index) == [1, 2]
    assert r["a"].tolist() == pytest.approx([math.log(2), -math.log(2)])
    assert r["b"].tolist() == pytest.approx([0.0, math.log(2)])


# -- a constructed run ------------------------------------------------------------------------

STEPS = 200


def _run(prices: dict[str, np.ndarray], cash: dict[tuple[int, str, str], np.ndarray],
         round_every: int = 10) -> Run:
    """A run folder's tables, hand-made: `prices` per client (one value per step 0..STEPS),
    `cash` per (agent_id, agent_type, strategy) (USD per step)."""
    steps = np.arange(STEPS + 1)
    model = pd.DataFrame({"step": steps, "accuracy": 0.5, "reward_usd": 0.0,
                          "execution_cost_usd": 0.0,
                          **{f"price/{c}": p for c, p in prices.items()}})
    agents = pd.DataFrame([
        {"step": s, "agent_id": a, "agent_type": kind, "strategy": strategy, "client": "",
         "usd": float(usd[s]), "token_value": 0.0, "lp_value": 0.0, "wealth": float(usd[s]),
         "wealth_if_sold": float(usd[s]), "fees_earned": 0.0, "hodl_value": 0.0}
        for (a, kind, strategy), usd in cash.items() for s in steps])
    rounds = pd.DataFrame(columns=["round", "step", "client", "behaviour", "contribution",
                                   "reward_usd"])
    return Run(path=Path("constructed"), config={"round_every": round_every, "name": "c"},
               model=model, agents=agents, rounds=rounds, summary={})


def _constructed() -> Run:
    steps = np.arange(STEPS + 1)
    # "steady": rises tenfold over the run, as a buyback lifts a top contributor: no bubble.
    steady = 0.25 * 10.0 ** (steps / STEPS)
    # "pumped": flat at 0.25, pumped from step 100 to 20x by step 120, crashes to 0.3.
    pumped = np.full(STEPS + 1, 0.25)
    pumped[100:121] = 0.25 * 20.0 ** ((steps[100:121] - 100) / 20)
    pumped[121:] = 0.3
    # Momentum traders spend 6,000 USD during the pump; noise traders 500; the clients sell.
    momentum = np.where(steps < 100, 8000.0, np.where(steps <= 120,
                                                      8000.0 - 300.0 * (steps - 100), 2000.0))
    noise = np.where(steps < 100, 1000.0, np.where(steps <= 120, 1000.0 - 25.0 * (steps - 100),
                                                   500.0))
    client = np.where(steps <= 120, 100.0 + 10.0 * np.maximum(steps - 100, 0), 300.0)
    return _run({"steady": steady, "pumped": pumped},
                {(1, "investor", "momentum"): momentum, (2, "investor", "noise"): noise,
                 (3, "client", "honest"): client})


def test_bubble_flag_finds_the_pump_not_the_steady_climb_and_names_the_buyer() -> None:
    run = _constructed()
    runups = price_runups(run).set_index("client")
    # The steady climb's median follows it: its peak is 10 / 10^0.5 ~ 3.2 times the median.
    assert runups.loc["steady", "multiple"] == pytest.approx(10**0.5, rel=0.02)
    assert runups.loc["pumped", "reference_price"] == pytest.approx(0.25)
    assert runups.loc["pumped", "multiple"] == pytest.approx(20.0)
    assert runups.loc["pumped", "peak_step"] == 120
    assert runups.loc["pumped", "start_step"] == 100  # last step at the typical price
    assert runups.loc["pumped", "after_peak_pct"] == pytest.approx(100 * (0.3 / 5.0 - 1))
    flags = bubble_flags(run)
    assert list(flags["client"]) == ["pumped"]
    row = flags.iloc[0]
    assert row["net_buyer"] == "momentum"
    assert row["net_buyer_usd"] == pytest.approx(6000.0)
    assert row["net_buyer_share"] == pytest.approx(6000.0 / 6500.0)
    assert row["net_usd_by_class"] == pytest.approx(
        {"momentum": 6000.0, "noise": 500.0, "client": -200.0})
    assert BUBBLE_MULTIPLE <= 20.0
    assert bubble_flags(run, multiple=25.0).empty


def test_bubble_flag_reads_agent_rows_collected_every_few_steps() -> None:
    run = _constructed()
    agents = run.agents
    # collect.agents_every 7: rows at 0, 7, ..., 196 and the last step (200).
    sparse = agents[(agents["step"] % 7 == 0) | (agents["step"] == STEPS)].copy()
    sparse["agent_type"] = sparse["agent_type"].astype("category")
    sparse["strategy"] = sparse["strategy"].astype("category")
    thin = Run(path=run.path, config=run.config, model=run.model, agents=sparse,
               rounds=run.rounds, summary={})
    row = bubble_flags(thin).iloc[0]
    # Window widened to steps 98..126: the whole pump, nothing after it.
    assert row["net_buyer"] == "momentum"
    assert row["net_usd_by_class"] == pytest.approx(
        {"momentum": 6000.0, "noise": 500.0, "client": -200.0})


def test_market_statistics_are_the_medians_across_tokens() -> None:
    run = _constructed()
    stats = market_statistics(run)
    assert tuple(stats) == MARKET_STAT_KEYS
    per_token = token_return_stats(run)
    assert list(per_token["client"]) == ["steady", "pumped"]
    assert per_token["n_returns"].tolist() == [STEPS, STEPS]
    assert stats["ret_excess_kurtosis"] == pytest.approx(per_token["excess_kurtosis"].median())
    assert stats["ret_acf1"] == pytest.approx(per_token["acf1"].median())
    # The steady climb has equal returns every step: no spread, so no kurtosis or ACF.
    assert math.isnan(per_token.loc[0, "excess_kurtosis"])
    assert stats["bubbles"] == 1.0
    assert stats["max_peak_multiple"] == pytest.approx(20.0)


def test_round_clock_footprint_is_the_autocorrelation_at_lag_round_every() -> None:
    steps = np.arange(STEPS + 1)
    rng = _rng(7)
    # A jump every 10 steps on top of small noise: the returns remember the clock.
    r = rng.normal(0.0, 0.001, STEPS + 1) + np.where(steps % 10 == 0, 0.05, 0.0)
    prices = 0.25 * np.exp(np.cumsum(r))
    run = _run({"a": prices, "b": prices[::-1].copy()},
               {(1, "investor", "noise"): np.full(STEPS + 1, 100.0)}, round_every=10)
    stats = token_return_stats(run).set_index("client")
    assert stats.loc["a", "round_clock_absacf"] > 0.7
    assert abs(stats.loc["a", "absacf1"]) < 0.2


def test_run_report_section_states_the_rule_and_names_the_net_buyer() -> None:
    from analysis.report import _market_section

    run = _constructed()
    text = "\n\n".join(_market_section(run, market_statistics(run),
                                       lambda name, caption: f"[{name}]"))
    assert "## Market statistics" in text and "[autocorrelation]" in text
    assert f"peak price is at least {BUBBLE_MULTIPLE:g} times its typical price" in text
    assert "**1 bubble(s) flagged**" in text
    assert "- **pumped**: peak 5.0000 USD at step 120, 20.0 times its typical 0.2500 USD" in text
    assert "Net buyer over the run-up: **momentum** (6,000 USD net, 92% " in text
    assert "momentum 6,000, noise 500, client -200." in text
    assert "| median across tokens |" in text


def test_the_trading_population_alone_does_not_move_prices():
    """Issue 22's drift bound at reduced size: the shipped baseline with a zero reward
    budget (its twin), seed 1, 150 steps: the median token ends within [0.75, 1.33] of its
    opening price (0.98 measured with the switching investors of issue 26's calibration, 1.15
    before them; 1.88 when investors start in USD only, `inventory: 0`)."""
    from bench.drift import HIGH, LOW, drift

    assert LOW <= drift(seeds=1, steps=150)["median"] <= HIGH
    assert drift(seeds=1, steps=150, inventory=0.0)["median"] > HIGH  # the drift it removes
