"""Metrics on hand-built tables whose results are worked out by hand, and on real runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from analysis.metrics import (
    RUN_OUTPUTS,
    client_rewards,
    execution_cost,
    gini,
    investor_performance,
    lp_decomposition,
    nmad,
    price_contribution_correlation,
    price_contribution_correlation_by_round,
    reward_gini,
    run_outputs,
    spearman,
    summarise_run,
)
from analysis.runs import Run, load_run
from tests.conftest import write_real_run

CLIENTS = ("c0", "c1", "c2")
STEPS = (0, 1, 2, 3)


def _agent(agent_id: int, agent_type: str, strategy: str, wealth: list[float], *,
           client: str = "", lp_value: list[float] | None = None,
           hodl: list[float] | None = None, fees: list[float] | None = None) -> list[dict]:
    lp_value = lp_value or [0.0] * len(STEPS)
    hodl = hodl or [0.0] * len(STEPS)
    fees = fees or [0.0] * len(STEPS)
    # Liquidity would fetch 90 % of its spot mark if sold; cash is worth itself.
    return [{"step": s, "agent_id": agent_id, "agent_type": agent_type, "strategy": strategy,
             "client": client, "usd": w - v, "token_value": 0.0, "lp_value": v,
             "wealth": w, "wealth_if_sold": w - 0.1 * v, "fees_earned": f, "hodl_value": h}
            for s, w, v, h, f in zip(STEPS, wealth, lp_value, hodl, fees, strict=True)]


def hand_run(*, rewards: tuple[tuple[float, ...], ...] = ((40.0, 20.0, 0.0), (15.0, 15.0, 0.0)),
             final_prices: tuple[float, ...] = (3.0, 1.0, 2.0)) -> Run:
    """Three clients, steps 0..3, FL rounds at steps 1 and 2.

    Cumulative contributions (6, 4, 0); allotments (55, 35, 0) by default, 90 in all, so the
    equal split is 30; clients' wealth goes 100 -> (160, 130, 100), a spot-marked change of
    (60, 30, 0). No counterfactual twin: attributable is NaN.
    Prices after round 1 (step 1): (2, 1.5, 1); final (step 3): `final_prices`.
    """
    contributions = ((4.0, 2.0, 0.0), (2.0, 2.0, 0.0))
    rounds = pd.DataFrame([
        {"round": r + 1, "step": r + 1, "client": c, "behaviour": b,
         "contribution": contributions[r][i], "reward_usd": rewards[r][i], "policy": "buyback"}
        for r in range(2)
        for i, (c, b) in enumerate(zip(CLIENTS, ("honest", "honest", "free_rider"),
                                       strict=True))
    ])
    prices = {0: (1.0, 1.0, 1.0), 1: (2.0, 1.5, 1.0), 2: (2.5, 1.2, 1.5), 3: final_prices}
    model = pd.DataFrame([
        {"step": s, "accuracy": acc, "reward_usd": rew, "execution_cost_usd": cost,
         **{f"price/{c}": prices[s][i] for i, c in enumerate(CLIENTS)}}
        for s, acc, rew, cost in zip(STEPS, (0.1, 0.5, 0.6, 0.6), (0.0, 60.0, 30.0, 0.0),
                                     (0.0, 0.6, 0.3, 0.0), strict=True)
    ])
    rows = [
        *_agent(1, "federation", "", [500.0, 440.0, 410.0, 410.0]),
        *_agent(2, "client", "honest", [100.0, 130.0, 150.0, 160.0], client="c0"),
        *_agent(3, "client", "honest", [100.0, 110.0, 125.0, 130.0], client="c1"),
        *_agent(4, "client", "free_rider", [100.0, 100.0, 100.0, 100.0], client="c2"),
        # Returns +10 %, -10 %, +10 %: mean 1/30, sample std 2/(10 sqrt 3), Sharpe 0.5.
        *_agent(10, "investor", "momentum", [100.0, 110.0, 99.0, 108.9]),
        # Returns 0, 0, -10 %: mean -1/30, sample std sqrt(3)/30, Sharpe -1.
        *_agent(11, "investor", "momentum", [200.0, 200.0, 200.0, 180.0]),
        # Wealth never moves: no Sharpe, no profit.
        *_agent(12, "investor", "noise", [50.0, 50.0, 50.0, 50.0]),
        *_agent(20, "lp", "never", [1000.0, 1010.0, 1030.0, 1050.0],
                lp_value=[1000.0, 950.0, 920.0, 900.0], hodl=[1000.0, 960.0, 935.0, 920.0],
                fees=[0.0, 10.0, 20.0, 30.0]),
        # Leaves at step 3: its loss is read at step 2, its last step with a position.
        *_agent(21, "lp", "at_step_3", [500.0, 505.0, 495.0, 520.0],
                lp_value=[500.0, 505.0, 500.0, 0.0], hodl=[500.0, 502.0, 510.0, 0.0],
                fees=[0.0, 2.0, 5.0, 5.0]),
    ]
    return Run(path=Path("hand-run"), config={"name": "hand", "seed": 7,
                                              "rewards": {"policy": "buyback"}},
               model=model, agents=pd.DataFrame(rows), rounds=rounds, summary={})


def test_client_rewards_reports_allotted_attributable_and_spot_marked_change() -> None:
    table = client_rewards(hand_run())
    assert list(table["client"]) == list(CLIENTS)
    assert list(table["behaviour"]) == ["honest", "honest", "free_rider"]
    assert list(table["contribution"]) == [6.0, 4.0, 0.0]
    assert list(table["allotted_usd"]) == [55.0, 35.0, 0.0]
    assert list(table["equal_split_usd"]) == [30.0, 30.0, 30.0]
    # 100 * (55 / 30 - 1), 100 * (35 / 30 - 1), 100 * (0 / 30 - 1)
    assert list(table["allotted_vs_equal_pct"]) == pytest.approx([250 / 3, 50 / 3, -100.0])
    assert table["attributable_usd"].isna().all()  # no twin in this run
    assert table["attributable_vs_equal_pct"].isna().all()
    assert list(table["mtm_change_usd"]) == [60.0, 30.0, 0.0]
    # These hand-built clients hold only cash: all of it is cash, none is token value.
    assert list(table["cash_change_usd"]) == [60.0, 30.0, 0.0]
    assert list(table["holdings_change_usd"]) == [0.0, 0.0, 0.0]
    assert list(table["if_sold_change_usd"]) == [60.0, 30.0, 0.0]
    assert "received_usd" not in table.columns


def test_client_rewards_takes_the_exact_figures_from_the_summary_when_written() -> None:
    run = hand_run()
    exact = {"c0": {"allotted_usd": 55.0, "allotted_vs_equal_pct": 83.0,
                    "attributable_usd": 41.5, "attributable_vs_equal_pct": 38.3,
                    "cash_paid_usd": 55.0}}
    table = client_rewards(Run(path=run.path, config=run.config, model=run.model,
                               agents=run.agents, rounds=run.rounds,
                               summary={"clients": exact, "equal_split_usd": 30.0}))
    row = table.set_index("client").loc["c0"]
    assert (row["allotted_vs_equal_pct"], row["attributable_usd"],
            row["attributable_vs_equal_pct"]) == (83.0, 41.5, 38.3)


def test_vs_equal_is_nan_not_an_error_when_no_reward_was_budgeted() -> None:
    run = hand_run(rewards=((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
    run.model["reward_usd"] = 0.0
    table = client_rewards(run)
    assert table["allotted_vs_equal_pct"].isna().all()
    assert list(table["mtm_change_usd"]) == [60.0, 30.0, 0.0]


def test_reward_gini_of_allotments_matches_hand_computation() -> None:
    # allotted (55, 35, 0): sum over ordered pairs of |x_i - x_j| = 220, 2 n^2 mean = 540.
    assert reward_gini(hand_run()) == pytest.approx(11 / 27)


def test_gini_is_zero_for_equal_values_and_classical_for_one_winner() -> None:
    assert gini([5.0, 5.0, 5.0]) == 0.0
    assert gini([0.0, 0.0, 0.0, 10.0]) == pytest.approx(3 / 4)  # (n - 1) / n


def test_gini_refuses_negative_values() -> None:
    with pytest.raises(ValueError, match="non-negative values only: use nmad"):
        gini([-10.0, 10.0, 30.0])


def test_nmad_of_signed_values_on_exact_vectors() -> None:
    # Σ_i Σ_j |x_i − x_j| = 2 (20 + 40 + 20) = 160; 2 n² mean|x| = 2 · 9 · 50/3 = 300.
    assert nmad([-10.0, 10.0, 30.0]) == pytest.approx(8 / 15)
    assert nmad([-5.0, 5.0]) == pytest.approx(1 / 2)  # 20 / (2 · 4 · 5)
    # A loss stays apart from nothing, unlike clipping at 0 (the Gini of [0, 0, 30] is 2/3).
    assert nmad([-20.0, 0.0, 30.0]) == pytest.approx(2 * (20 + 50 + 30) / (2 * 9 * 50 / 3))
    assert nmad([-5.0, -5.0]) == 0.0  # all equal, whatever the sign
    # Without negatives it is the Gini.
    for values in ([0.0, 0.0, 30.0], [1.0, 2.0, 7.0, 7.0], [5.0, 5.0]):
        assert nmad(values) == pytest.approx(gini(values))
    # Bounded below 1 for any signs: |x_i − x_j| <= |x_i| + |x_j|.
    rng = np.random.default_rng(0)
    for _ in range(100):
        assert 0.0 <= nmad(rng.normal(0.0, 1.0, size=7)) < 1.0
    assert math.isnan(nmad([])) and math.isnan(nmad([0.0, 0.0]))
    assert math.isnan(nmad([1.0, float("nan")]))


def test_gini_is_nan_when_undefined() -> None:
    assert math.isnan(gini([]))
    assert math.isnan(gini([0.0, 0.0]))


def test_price_contribution_correlation_matches_hand_ranks() -> None:
    # Final prices (3, 1, 2) rank (3, 1, 2); contributions (6, 4, 0) rank (3, 2, 1);
    # sum d^2 = 2, rho = 1 - 6 * 2 / (3 * (9 - 1)) = 0.5.
    assert price_contribution_correlation(hand_run()) == pytest.approx(0.5)


def test_per_round_correlation_uses_prices_before_next_round_and_ends_at_final() -> None:
    run = hand_run()
    by_round = price_contribution_correlation_by_round(run)
    # Round 1: prices at step 1 (2, 1.5, 1) vs contributions so far (4, 2, 0): same order.
    assert list(by_round.index) == [1, 2]
    assert by_round[1] == pytest.approx(1.0)
    assert by_round[2] == pytest.approx(price_contribution_correlation(run))


def test_price_contribution_correlation_is_nan_for_constant_prices_or_two_clients() -> None:
    assert math.isnan(price_contribution_correlation(hand_run(final_prices=(1.0, 1.0, 1.0))))
    assert math.isnan(spearman([1.0, 2.0], [2.0, 3.0]))
    assert math.isnan(spearman([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]))
    assert spearman([1.0, 2.0, 3.0], [30.0, 20.0, 10.0]) == pytest.approx(-1.0)


def test_spearman_ranks_values_equal_up_to_float_rounding_as_ties() -> None:
    # no_investors: six prices from identical reserve paths, two of them one ulp apart
    price = 0.11155889538337661
    prices = [price, np.nextafter(price, 1.0), price, np.nextafter(price, 0.0), price, price]
    assert math.isnan(spearman(prices, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    # a tie group among real differences: ranks as scipy's average ranks of the exact ties
    near = [1.0, 2.0, 2.0 + 1e-15, 3.0, 2.0 - 1e-15]
    y = [0.5, 0.1, 0.9, 0.7, 0.3]
    assert spearman(near, y) == pytest.approx(spearmanr([1.0, 2.0, 2.0, 3.0, 2.0], y).statistic)
    # differences well above rounding keep their order
    assert spearman([1.0, 1.0 + 1e-6, 1.0 + 2e-6], [1.0, 2.0, 3.0]) == pytest.approx(1.0)


def test_investor_performance_by_strategy_matches_hand_values() -> None:
    table = investor_performance(hand_run()).set_index("strategy")
    assert list(table.index) == ["momentum", "noise"]
    momentum = table.loc["momentum"]
    assert momentum["n"] == 2
    assert momentum["mean_pnl_usd"] == pytest.approx((8.9 - 20.0) / 2)
    assert momentum["median_pnl_usd"] == pytest.approx((8.9 - 20.0) / 2)
    assert momentum["mean_return_pct"] == pytest.approx((8.9 - 10.0) / 2)
    assert momentum["sharpe"] == pytest.approx((0.5 - 1.0) / 2)
    assert momentum["profitable_share"] == 0.5
    # Cash-only investors: if sold is the same as at spot.
    assert momentum["mean_pnl_if_sold_usd"] == pytest.approx(momentum["mean_pnl_usd"])
    assert momentum["sharpe_if_sold"] == pytest.approx(momentum["sharpe"])
    noise = table.loc["noise"]
    assert noise["mean_pnl_usd"] == 0.0
    assert math.isnan(noise["sharpe"])  # std 0: no Sharpe
    assert noise["profitable_share"] == 0.0


def test_lp_decomposition_splits_pnl_and_reads_exited_lp_at_its_last_position() -> None:
    table = lp_decomposition(hand_run()).set_index("agent_id")
    stayer = table.loc[20]
    assert stayer["pnl_usd"] == 50.0
    assert stayer["fees_earned_usd"] == 30.0
    assert stayer["impermanent_loss_usd"] == -50.0  # 900 - 920 - 30
    assert stayer["price_effect_usd"] == 70.0  # 50 - 30 - (-50)
    assert stayer["measured_step"] == 3
    # If sold, the liquidity fetches 90 % of its mark: 1050 - 90 and 1000 - 100.
    assert stayer["pnl_if_sold_usd"] == pytest.approx(960.0 - 900.0)
    leaver = table.loc[21]
    assert leaver["pnl_usd"] == 20.0
    assert leaver["measured_step"] == 2
    assert leaver["fees_earned_usd"] == 5.0
    assert leaver["impermanent_loss_usd"] == -15.0  # 500 - 510 - 5 at step 2
    assert leaver["price_effect_usd"] == 30.0  # 20 - 5 - (-15)


def test_execution_cost_sums_per_step_cost_against_rewards() -> None:
    cost = execution_cost(hand_run())
    assert cost["policy"] == "buyback"
    assert cost["rounds"] == 2
    assert cost["rewards_usd"] == 90.0
    assert cost["cost_usd"] == pytest.approx(0.9)
    assert cost["cost_pct"] == pytest.approx(1.0)
    nothing = execution_cost(hand_run(rewards=((0.0,) * 3, (0.0,) * 3)))
    assert math.isnan(nothing["cost_pct"])


def test_summarise_run_collects_the_headline_numbers() -> None:
    summary = summarise_run(hand_run())
    assert summary["scenario"] == "hand"
    assert summary["seed"] == 7
    assert summary["steps"] == 3
    assert summary["final_accuracy"] == 0.6
    assert summary["price_contribution_spearman"] == pytest.approx(0.5)
    assert summary["reward_gini"] == pytest.approx(11 / 27)
    assert summary["execution_cost_pct"] == pytest.approx(1.0)
    assert summary["min_allotted_vs_equal_pct"] == pytest.approx(-100.0)
    assert summary["max_allotted_vs_equal_pct"] == pytest.approx(250 / 3)
    assert math.isnan(summary["max_attributable_vs_equal_pct"])
    # The market statistics (analysis.market_stats) ride along, under the contract's names.
    for key in ("ret_excess_kurtosis", "ret_hill_alpha", "ret_acf1", "absret_acf1",
                "round_clock_acf", "round_clock_absacf", "max_peak_multiple", "bubbles"):
        assert key in summary
    assert summary["bubbles"] == 0.0  # prices at most 3x the opening (1.0): none flagged


@pytest.mark.parametrize("policy", ["equal", "direct", "mint", "buyback", "dividend"])
def test_real_run_rewards_add_up_and_only_buyback_pays_execution_cost(
        tmp_path: Path, policy: str) -> None:
    run = load_run(write_real_run(tmp_path / policy, **{"rewards.policy": policy}))
    table = client_rewards(run)
    assert table["allotted_usd"].sum() == pytest.approx(run.model["reward_usd"].sum())
    assert table["equal_split_usd"].iloc[0] == pytest.approx(table["allotted_usd"].sum() / 4)
    assert list(table["mtm_change_usd"]) == pytest.approx(
        list(table["final_wealth_usd"] - table["initial_wealth_usd"]))
    assert (table["final_wealth_if_sold_usd"] <= table["final_wealth_usd"] + 1e-9).all()
    cost = execution_cost(run)
    assert (cost["cost_usd"] > 0) == (policy == "buyback")
    if policy == "equal":
        assert list(table["allotted_usd"]) == pytest.approx(list(table["equal_split_usd"]))
        assert table["allotted_vs_equal_pct"].abs().max() < 1e-9
    lps = lp_decomposition(run)
    assert (lps["impermanent_loss_usd"] <= 0).all()  # constant product: never a gain
    assert list(lps["pnl_usd"]) == pytest.approx(list(
        lps["fees_earned_usd"] + lps["impermanent_loss_usd"] + lps["price_effect_usd"]))


def test_run_outputs_are_the_numeric_keys_of_a_real_run_in_order(tmp_path: Path) -> None:
    """`RUN_OUTPUTS` is written out (`summarise_run`'s keys exist only for a run), so it is
    held here to what a real run gives: every numeric key of `run_outputs`, in its order, but
    the per-behaviour participation shares, which depend on the run's clients."""
    outputs = run_outputs(write_real_run(tmp_path / "run"))
    per_behaviour = [k for k in outputs if k.startswith("participation_")]
    assert sorted(per_behaviour) == ["participation_free_rider", "participation_honest"]
    assert [k for k in outputs if k not in per_behaviour] == list(RUN_OUTPUTS)
    assert len(set(RUN_OUTPUTS)) == len(RUN_OUTPUTS)


def test_market_cap_rho_is_recomputed_from_the_tables() -> None:
    """`mcap_contribution_rho` is Spearman of price x supply (model.parquet, last step, the
    ledger's supply) with the cumulative contribution (rounds.parquet); under `mint` the
    supplies differ, so it is not the price rho."""

    from abm.run import simulate
    from analysis.metrics import mcap_contribution_correlation, spearman
    from analysis.runs import run_from_result
    from tests.conftest import small_scenario

    result = simulate(small_scenario(steps=40, **{"rewards.policy": "mint"}))
    run = run_from_result(result)
    last = result.model.iloc[-1]
    clients = run.client_ids
    mcap = [last[f"price/{c}"] * last[f"supply/{c}"] for c in clients]
    contribution = result.rounds.groupby("client")["contribution"].sum()[clients]
    assert mcap_contribution_correlation(run) == spearman(mcap, contribution)
    assert summarise_run(run)["mcap_contribution_rho"] == spearman(mcap, contribution)
    assert len(set(last[[f"supply/{c}" for c in clients]])) > 1  # mint made them differ
