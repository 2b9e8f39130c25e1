"""The books of a run: the per-step accounting identity, realisable wealth, where money went.

- Every step, exactly: the USD held by all accounts and pools equals the USD minted
  (endowments plus reward budgets paid in); each token's holdings equal minted minus burned.
- `wealth_if_sold <= wealth` for every agent and step, on random scenarios (hypothesis).
- The money table: the budget's destinations add up to the budgets; trading only moves USD.
- Genesis liquidity is deposited at the pool's price; the mint policy's USD goes where the
  scenario says; rounds the method cannot rank are counted and their budget withheld.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abm import registry
from abm.agents.federation import TREASURY
from abm.amm import ONE
from abm.model import WallStreetFedsModel
from abm.run import simulate
from tests.conftest import small_scenario, with_component

POLICIES = registry.names("policy")
#: Every registered component (the toy ones included) but the datasets, which feed only
#: the learning (tests/test_registry.py runs the toy one; cifar10 needs its files).
COMPONENTS = [pytest.param(kind, name, id=f"{kind}-{name}") for kind in registry.KINDS
              if kind != "dataset" for name in registry.names(kind)]


@pytest.mark.parametrize("policy", POLICIES)
def test_usd_held_equals_endowments_plus_budgets_and_tokens_minted_minus_burned(policy):
    model = WallStreetFedsModel(small_scenario(steps=20, **{"rewards.policy": policy}))
    endowed = sum(model.endowments.values())
    assert endowed == model.ledger.minted("USD")
    for _ in range(20):
        model.step()
        books = model.accounting()
        held, sources = books.pop("USD")
        assert held == sources == endowed + model.federation.book.budget_in
        for token, (held, sources) in books.items():
            assert held == sources == model.ledger.supply(token), token
    assert model.federation.book.budget_in == 2 * 500 * ONE


@pytest.mark.parametrize(("kind", "name"), COMPONENTS)
def test_every_component_keeps_the_books_and_its_twin_accounts_for_the_budget(kind, name):
    # check=True proves, after every step of the run and of its twin, the ledger, the
    # accounting identity (USD held = endowments + budgets; tokens = minted - burned) and
    # every investor's holdings; run minus twin then accounts for the budget paid in to the
    # base unit, as in test_where_the_budget_went_adds_up_to_the_budget_exactly. A training
    # cost gives the participation rules something to weigh.
    scenario = with_component(small_scenario(steps=20, **{"clients.0.cost_per_round": 40.0,
                                                          "market.client_cash": 100.0}),
                              kind, name)
    result = simulate(scenario, check=True, counterfactual=True)
    twin = result.twin
    paid_in = result.summary["money"]["budgets_paid_in_units"]
    by_agents = sum(result.final_joint[a] - twin.final_joint[a] for a in result.accounts)
    costs = result.outside_usd - twin.outside_usd
    left = result.joint_left - twin.joint_left
    assert by_agents + costs + left == paid_in
    assert abs(left) <= 10**6  # the locked minimum liquidity's part: < 1e-12 USD
    assert result.summary["money"]["balanced"] and twin.summary["money"]["balanced"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=st.sampled_from(POLICIES), seed=st.integers(0, 2**16),
       fee_bps=st.sampled_from([0, 30, 300]), noise=st.integers(0, 6),
       momentum=st.integers(0, 6), mint_usd=st.sampled_from(["pool", "client", "treasury"]),
       enter_step=st.sampled_from([0, 3]))
def test_wealth_if_sold_never_exceeds_wealth_at_spot(policy, seed, fee_bps, noise, momentum,
                                                     mint_usd, enter_step):
    # Where mint's USD goes is a parameter of the mint policy only.
    mint = {"rewards.params.usd_destination": mint_usd} if policy == "mint" else {}
    scenario = small_scenario(steps=20, seed=seed, **{
        "rewards.policy": policy, **mint, "market.fee_bps": fee_bps,
        "investors.1.count": momentum, "investors.3.count": noise,
        "liquidity_providers.1.enter_step": enter_step})
    result = simulate(scenario, check=True)
    agents = result.agents
    assert (agents["wealth_if_sold"] <= agents["wealth"]).all()
    for kind in ("client", "investor", "lp", "federation"):
        assert (result.model[f"wealth_if_sold/{kind}"]
                <= result.model[f"wealth/{kind}"] + 1e-6).all(), kind
    assert result.summary["money"]["balanced"]
    last = result.model.iloc[-1]
    for kind, holder in result.summary["holders"].items():  # selling at once fetches less
        assert holder["final_if_all_sold_usd"] <= last[f"wealth_if_sold/{kind}"] + 1e-6, kind


@pytest.mark.parametrize("policy", POLICIES)
def test_the_budget_destinations_add_up_and_trading_only_moves_usd(policy):
    money = simulate(small_scenario(**{"rewards.policy": policy})).summary["money"]
    paid = (money["to_clients_as_cash_usd"] + money["into_pools_by_buybacks_usd"]
            + money["into_pools_as_mint_liquidity_usd"]
            + sum(money["dividends_to_holders_usd"].values()) + money["kept_by_treasury_usd"])
    assert paid == pytest.approx(money["budgets_paid_in_usd"], abs=1e-9)
    by_holder = money["usd_by_holder"]
    assert sum(h["trading"] for h in by_holder.values()) == pytest.approx(0.0, abs=1e-6)
    assert sum(h["rewards"] for h in by_holder.values()) == pytest.approx(
        money["budgets_paid_in_usd"], abs=1e-9)
    assert money["balanced"]
    if policy in ("equal", "direct"):
        assert money["to_clients_as_cash_usd"] + money["kept_by_treasury_usd"] == 1500.0
    if policy == "buyback":
        assert money["into_pools_by_buybacks_usd"] == 1500.0


def test_genesis_liquidity_goes_in_at_the_pools_price_and_a_late_lp_zaps_visibly():
    scenario = small_scenario(**{"liquidity_providers.1.enter_step": 5})
    model = WallStreetFedsModel(scenario)
    genesis_lp, late_lp = model.lps
    for pool in model.market.pools.values():
        reserve_token, reserve_usd = pool.reserves
        assert reserve_usd * 4 == reserve_token  # still exactly the opening 0.25 USD/token
        assert model.ledger.balance(genesis_lp.account, pool.lp_asset) > 0
    # The genesis LP bought its token side from the federation: the treasury holds its USD.
    assert model.genesis_token_sales == model.ledger.balance(TREASURY, "USD") > 0
    assert genesis_lp.zapped_usd == 0.0
    model.run_for(5)
    assert late_lp.zapped_usd > 0  # the later entry swapped on the market: recorded
    assert model.agents_dataframe()["zapped_usd"].max() > 0


@pytest.mark.parametrize("destination", ["pool", "client", "treasury"])
def test_mint_puts_the_buyers_usd_where_the_scenario_says(destination):
    scenario = small_scenario(steps=10, **{"rewards.policy": "mint",
                                           "rewards.params.usd_destination": destination})
    result = simulate(scenario)
    money, rounds = result.summary["money"], result.rounds
    budget = money["budgets_paid_in_usd"]
    if destination == "pool":
        assert money["into_pools_as_mint_liquidity_usd"] == pytest.approx(budget, abs=1e-12)
        # Liquidity goes in at the pool's price: the reward moved no price.
        assert (rounds["price_after"] == rounds["price_before"]).all()
    elif destination == "client":
        assert money["to_clients_as_cash_usd"] == budget
    else:
        assert money["kept_by_treasury_usd"] == budget
    assert rounds["tokens_minted"].sum() > 0


@pytest.mark.parametrize("zero_total", ["withhold", "equal"])
def test_rounds_the_method_cannot_rank_are_counted_and_their_budget_handled(zero_total):
    # GTG truncates a round whose utility moved by at most eps_between: with eps 1 every
    # round is truncated and scores all zero.
    scenario = small_scenario(**{
        "rewards.policy": "direct", "contribution.method": "gtg_shapley",
        "contribution.params": {"eps_between": 1.0}, "contribution.zero_total": zero_total})
    summary = simulate(scenario).summary
    unranked = summary["unranked_rounds"]
    assert unranked["rounds"] == unranked["truncated"] == unranked["all_zero"] == 3
    assert unranked["budget_usd"] == 1500.0
    kept = summary["money"]["kept_by_treasury_usd"]
    if zero_total == "withhold":
        assert kept == 1500.0 and "withheld" in unranked["handled"]
        assert all(r["allotted_usd"] == 0.0 for r in summary["clients"].values())
    else:
        assert kept == 0.0 and "equally" in unranked["handled"]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=st.sampled_from(POLICIES), seed=st.integers(0, 2**16),
       budget=st.sampled_from([0.0, 100.0, 500.0, 5000.0]),
       cost=st.sampled_from([0.0, 40.0, 150.0]))
def test_where_the_budget_went_adds_up_to_the_budget_exactly(policy, seed, budget, cost):
    """All agents selling at once, run minus twin, summed over holder types = the budget paid
    in, less the run's extra training costs and what the pools keep (the locked minimum
    liquidity's part), to the base unit; `equal` and `direct` reach the clients whole."""
    result = simulate(small_scenario(seed=seed, **{
        "rewards.policy": policy, "rewards.budget.amount": budget,
        "clients.0.cost_per_round": cost}), counterfactual=True)
    twin, summary = result.twin, result.summary
    paid_in = summary["money"]["budgets_paid_in_units"]
    by_agents = sum(result.final_joint[a] - twin.final_joint[a] for a in result.accounts)
    costs = result.outside_usd - twin.outside_usd
    left = result.joint_left - twin.joint_left
    assert by_agents + costs + left == paid_in
    assert abs(left) <= 10**6  # the locked minimum liquidity's part: < 1e-12 USD
    went = summary["budget_went_usd"]
    assert sum(went.values()) == pytest.approx(paid_in / ONE, abs=1e-6)
    assert went["client"] == summary["reached_clients_usd"]
    holders = sum(summary["holders"][k]["attributable_usd"]
                  for k in ("client", "investor", "lp", "federation"))
    assert holders == pytest.approx(by_agents / ONE, abs=1e-6)
    if policy in ("equal", "direct") and paid_in and not cost:
        # cash to the clients, nothing traded for them: all of it reaches them
        assert summary["reached_clients_pct"] == 100.0
