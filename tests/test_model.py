"""The Mesa model: step order, conservation under every policy, reproducibility."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from abm import registry
from abm.amm import ONE
from abm.model import WallStreetFedsModel
from abm.run import simulate
from abm.scenario import ScenarioError
from tests.conftest import ROOT, small_scenario

POLICIES = registry.names("policy")


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_every_asset_is_conserved_after_every_step_under_every_policy(policy):
    model = WallStreetFedsModel(small_scenario(**{"rewards.policy": policy}), check=True)
    model.run_for(30)  # check=True proves the ledger invariant after each step
    assert model.federation.rounds_done == 3
    for asset in model.ledger.assets():
        assert all(b >= 0 for b in model.ledger.holders(asset).values())


def test_rounds_run_on_round_boundaries_and_are_recorded_per_client(small):
    model = WallStreetFedsModel(small)
    model.run_for(25)
    steps = sorted({row["step"] for row in model.round_rows})
    assert steps == [10, 20]
    assert len(model.round_rows) == 2 * 4
    assert model.last_round_rows == model.round_rows[-4:]
    assert {r["round"] for r in model.last_round_rows} == {2}


def test_buyback_burns_tokens_and_budget_enters_as_minted_usd(small):
    model = WallStreetFedsModel(small)
    usd_before = model.ledger.supply("USD")
    model.run_for(10)
    assert model.ledger.supply("USD") == usd_before + 500 * ONE
    burned = sum(model.ledger.burned(c) for c in model.client_ids)
    assert burned > 0
    assert sum(r["tokens_burned"] for r in model.round_rows) == pytest.approx(burned / ONE)


def test_free_rider_earns_less_than_honest_clients_under_leave_one_out(small):
    model = WallStreetFedsModel(small)
    model.run_for(30)
    rows = pd.DataFrame(model.round_rows)
    by_kind = rows.groupby("behaviour")["reward_usd"].mean()
    assert by_kind["free_rider"] < by_kind["honest"]


def test_mint_gives_clients_new_tokens_and_dilutes_supply():
    model = WallStreetFedsModel(small_scenario(**{"rewards.policy": "mint"}))
    supply = {c: model.ledger.supply(c) for c in model.client_ids}
    model.run_for(10)
    minted = sum(model.ledger.supply(c) - supply[c] for c in model.client_ids)
    assert minted > 0
    assert minted == pytest.approx(sum(r["tokens_minted"] for r in model.round_rows) * ONE,
                                   rel=1e-12)


def test_same_seed_gives_identical_tables_and_another_seed_does_not(small):
    a, b = simulate(small), simulate(small)
    for name in ("model", "agents", "rounds"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    c = simulate(small.with_overrides({"seed": 2}))
    assert not a.model.equals(c.model)


def test_tables_have_the_documented_columns(small):
    result = simulate(small.with_overrides({"steps": 10}))
    m, ag, r = result.model, result.agents, result.rounds
    assert len(m) == 11 and list(m["step"]) == list(range(11))
    for col in ("round", "accuracy", "loss", "reward_usd", "volume_usd", "fees_usd",
                "execution_cost_usd", "federation_usd", "wealth/client", "wealth/investor",
                "wealth/lp", "price/c00", "reserve_token/c00", "reserve_usd/c00",
                "supply/c00", "volume_usd/c00", "contribution/c03"):
        assert col in m.columns, col
    assert set(ag.columns) >= {"step", "agent_id", "agent_type", "strategy", "client", "usd",
                               "token_value", "lp_value", "wealth", "fees_earned",
                               "hodl_value"}
    assert set(ag["agent_type"]) == {"client", "investor", "lp", "federation"}
    assert len(ag) == 11 * ag["agent_id"].nunique()
    assert set(r.columns) >= {"round", "step", "client", "behaviour", "n_samples",
                              "contribution", "share", "reward_usd", "tokens_minted",
                              "tokens_burned", "price_before", "price_after", "accuracy",
                              "evaluations", "method", "policy"}
    assert r["share"].sum() == pytest.approx(1.0)


def test_wealth_columns_add_up_and_lp_fees_accrue(small):
    result = simulate(small)
    ag = result.agents
    np.testing.assert_allclose(ag["usd"] + ag["token_value"] + ag["lp_value"], ag["wealth"])
    lps = ag[ag["agent_type"] == "lp"]
    assert lps["fees_earned"].max() > 0


def test_investors_trade_and_pay_fees(small):
    result = simulate(small)
    assert result.model["volume_usd"].sum() > 0
    assert result.model["fees_usd"].sum() > 0


def test_genesis_seeds_pools_at_the_opening_price_by_federation_or_by_client():
    from abm.amm import MINIMUM_LIQUIDITY

    # Without liquidity providers (they deposit at genesis too, at the same price).
    by_fed = WallStreetFedsModel(small_scenario(liquidity_providers=[]))
    pool = by_fed.market.pools["c00"]
    assert pool.reserves == (10_000 * ONE, 2_500 * ONE)  # 10,000 tokens at 0.25 USD
    assert by_fed.ledger.balance("client:c00", "c00") == 10_000 * ONE
    # the federation minted the pool side, and the investors' genesis inventories
    inventories = sum(by_fed.ledger.balance(i.account, "c00") for i in by_fed.investors)
    assert by_fed.ledger.supply("c00") == 20_000 * ONE + inventories
    assert by_fed.ledger.balance("federation", pool.lp_asset) == pool.total_shares - (
        MINIMUM_LIQUIDITY)

    by_client = WallStreetFedsModel(small_scenario(**{
        "liquidity_providers": [], "market.seeded_by": "client", "market.pool_tokens": 4000,
        "market.client_cash": 1000}))
    pool = by_client.market.pools["c00"]
    assert pool.reserves == (4_000 * ONE, 1_000 * ONE)
    # nothing minted beyond the supply but the investors' genesis inventories
    inventories = sum(by_client.ledger.balance(i.account, "c00") for i in by_client.investors)
    assert by_client.ledger.supply("c00") == 10_000 * ONE + inventories
    assert by_client.ledger.balance("client:c00", "c00") == 6_000 * ONE
    assert by_client.ledger.balance("client:c00", "USD") == 0
    assert by_client.ledger.balance("client:c00", pool.lp_asset) > 0


def test_investors_buy_their_genesis_inventory_at_the_opening_price_without_moving_it():
    """`inventory` of an investor's cash buys every token equally at the pool's price from
    the federation (no swap): 500 USD x 0.3 over 4 tokens = 37.5 USD of each, 150 tokens at
    0.25 USD; the pools do not move and the federation books the USD as a genesis sale."""
    model = WallStreetFedsModel(small_scenario(liquidity_providers=[], investors=[
        {"strategy": "noise", "count": 2, "cash": 500, "inventory": 0.3}]))
    for investor in model.investors:
        assert investor.balance("USD") == 350 * ONE
        for token in model.client_ids:
            assert model.ledger.balance(investor.account, token) == 150 * ONE
    assert all(p.reserves == (10_000 * ONE, 2_500 * ONE) for p in model.market.pools.values())
    assert model.genesis_token_sales == 2 * 150 * ONE
    assert model.ledger.balance("federation", "USD") == 300 * ONE  # its pool USD is deposited
    assert model.endowments["investor"] == 2 * 500 * ONE  # endowed in USD, then spent


def test_run_model_stops_after_the_scenarios_steps():
    model = WallStreetFedsModel(small_scenario(steps=12))
    model.run_model()
    assert model.steps == 12 and model.running is False
    assert len(model.datacollector.get_model_vars_dataframe()) == 13  # genesis + 12 steps
    assert model.accuracy == model.datacollector.get_model_vars_dataframe()["accuracy"].iloc[-1]


def test_the_model_takes_a_file_and_dotted_overrides_as_keywords():
    model = WallStreetFedsModel(ROOT / "scenarios" / "baseline.yaml", rng=7, steps=20,
                                **{"rewards.policy": "mint", "investors.0.count": 2})
    assert (model.config.steps, model.config.rewards.policy, model.config.seed) == (20, "mint", 7)
    assert sum(a.strategy == "fundamental" for a in model.investors) == 2
    with pytest.raises(ScenarioError, match=r"baseline.yaml \(model keyword arguments\): a "
                       r"problem: rewards.polcy: does not exist"):
        WallStreetFedsModel(ROOT / "scenarios" / "baseline.yaml", **{"rewards.polcy": "mint"})


@pytest.mark.slow
def test_mesa_batch_run_sweeps_scenario_fields():
    # The exact call of the documentation, in a fresh interpreter: batch_run switches
    # multiprocessing to "spawn" for the whole process.
    code = textwrap.dedent("""
        import json, mesa
        from abm.model import WallStreetFedsModel
        rows = mesa.batch_run(WallStreetFedsModel, parameters={
            "scenario": "scenarios/baseline.yaml", "rewards.policy": ["equal", "mint"],
            "steps": 30}, rng=[1, 2], max_steps=30, display_progress=False)
        print(json.dumps(sorted({(r["rewards.policy"], r["iteration"], r["Step"],
                                  r["reward_usd"] > 0) for r in rows})))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    # Every policy and seed, collected at its last step (30: the run stopped by itself), the
    # step of the third round, which paid its budget.
    assert seen == [[p, i, 30, True] for p in ("equal", "mint") for i in (0, 1)]


def test_a_small_data_clients_size_weight_is_the_one_used():
    # The bug of issue 10: the parameter was accepted and ignored.
    scenario = small_scenario(clients=[
        {"count": 3, "behaviour": "honest"},
        {"count": 1, "behaviour": "small_data", "behaviour_params": {"size_weight": 0.1}},
    ])
    sizes = WallStreetFedsModel(scenario).federation.federation.client_sizes
    assert sizes[3] / np.mean(sizes[:3]) == pytest.approx(0.1, abs=0.02)
    default = WallStreetFedsModel(small_scenario(clients=[
        {"count": 3}, {"count": 1, "behaviour": "small_data"}])).federation.federation
    assert default.client_sizes[3] / np.mean(default.client_sizes[:3]) == pytest.approx(
        0.25, abs=0.02)


def test_agent_rows_every_k_steps_are_the_every_step_rows_at_those_steps(small, tmp_path):
    """`collect.agents_every`: agent rows at step 0, every k-th step and the last step,
    exactly those of the every-step table; the model table and the summary do not change;
    the label columns are categoricals that survive the parquet round trip, and the
    analysis reads the thinned table."""
    from abm.run_folder import write_run
    from analysis.metrics import client_rewards, investor_performance, lp_decomposition
    from analysis.runs import load_run

    full = simulate(small)  # 30 steps
    thin = simulate(small.with_overrides({"collect.agents_every": 7}))
    steps = sorted(thin.agents["step"].unique())
    assert steps == [0, 7, 14, 21, 28, 30]
    expected = full.agents[full.agents["step"].isin(steps)].reset_index(drop=True)
    pd.testing.assert_frame_equal(thin.agents, expected, check_exact=True)
    pd.testing.assert_frame_equal(thin.model, full.model, check_exact=True)
    assert thin.summary["clients"] == full.summary["clients"]
    assert thin.summary["holders"] == full.summary["holders"]
    for column in ("agent_type", "strategy", "client"):
        assert isinstance(thin.agents[column].dtype, pd.CategoricalDtype), column
    assert list(thin.agents["agent_type"].cat.categories) == ["client", "investor", "lp",
                                                              "federation"]
    run = load_run(write_run(thin, tmp_path / "thin"))
    assert isinstance(run.agents["strategy"].dtype, pd.CategoricalDtype)
    full_run = load_run(write_run(full, tmp_path / "full"))
    # what compares first and last rows is the same on both tables
    pd.testing.assert_frame_equal(client_rewards(run), client_rewards(full_run))
    # an LP still in the pools at the end is read at the last step on both; one that left
    # is read at its last collected step with a position (docs/model.md, section 4.11)
    held = lp_decomposition(full_run)["measured_step"] == 30
    assert held.any()
    pd.testing.assert_frame_equal(lp_decomposition(run)[held], lp_decomposition(full_run)[held])
    perf = investor_performance(run)
    assert list(perf["strategy"]) == sorted(perf["strategy"])
    assert (perf["n"] > 0).all()


def test_agents_every_is_validated(small):
    with pytest.raises(ScenarioError, match=r"collect\.agents_every"):
        small.with_overrides({"collect.agents_every": 0})


def test_agent_attributes_read_the_models_marks(small):
    model = WallStreetFedsModel(small)
    model.run_for(12)
    marks = model.market.mark_accounts([a.account for a in model.agents])
    for k, agent in enumerate(model.agents):
        assert agent.wealth == (marks.usd[k] + marks.tokens[k] + marks.lp[k]) / ONE
        assert agent.wealth_if_sold == model.market.liquidation_value(agent.account) / ONE
        assert agent.usd == model.ledger.balance(agent.account, "USD") / ONE
    table = model.agents_dataframe()
    assert table["step"].max() == 12 and len(table) == 13 * len(model.agents)


def test_partition_seed_keeps_each_clients_data_fixed_while_the_run_seed_varies() -> None:
    """`fl.partition.seed` draws subsample, validation split and partition from its own seed:
    client c00 holds the same samples in every run seed; without it each seed redraws them."""
    import torch

    def data(seed: int, partition_seed: int | None) -> list[torch.Tensor]:
        scenario = small_scenario(**{"seed": seed, "fl.partition.scheme": "dirichlet",
                                     "fl.partition.seed": partition_seed})
        federation = WallStreetFedsModel(scenario).federation.federation
        return [x.cpu() for x in federation._X]

    fixed = [data(seed, 7) for seed in (0, 1, 2)]
    for other in fixed[1:]:
        assert [len(x) for x in other] == [len(x) for x in fixed[0]]
        assert all(torch.equal(a, b) for a, b in zip(other, fixed[0], strict=True))
    redrawn = [data(seed, None) for seed in (0, 1)]
    assert [len(x) for x in redrawn[0]] != [len(x) for x in redrawn[1]]


def test_mesa_datacollector_agent_rows_are_the_agents_table() -> None:
    model = WallStreetFedsModel(small_scenario(**{"collect.agents_every": 4}))
    for _ in range(10):
        model.step()
    mesa_rows = model.datacollector.get_agent_vars_dataframe()
    table = model.agents_dataframe()
    assert mesa_rows.index.names == ["Step", "AgentID"]
    assert sorted(set(mesa_rows.index.get_level_values("Step"))) == [0, 4, 8]
    assert len(mesa_rows) == 3 * len(model.agents)
    pd.testing.assert_frame_equal(
        mesa_rows.reset_index().rename(columns={"Step": "step", "AgentID": "agent_id"}), table)
    # Mesa's own reading of a row: an investor's wealth at step 8, as its attribute said.
    investor = next(a for a in model.agents if a.agent_type == "investor")
    assert mesa_rows.loc[(8, investor.unique_id), "agent_type"] == "investor"
    # The model rows stay Mesa's, one per step from genesis.
    assert len(model.datacollector.get_model_vars_dataframe()) == 11


def test_model_config_is_the_projects_scenario_and_mesa_keeps_its_own() -> None:
    model = WallStreetFedsModel(small_scenario(), rng=7)
    assert model.config.seed == 7 and model.config.name == "small"
    assert not hasattr(model.scenario, "rewards")  # Mesa's experiment object, not the file's
