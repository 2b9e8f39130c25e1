"""Reward shares, exact allotment and the five distribution policies on a real market."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abm import registry
from abm.amm import ONE, Ledger, Market
from abm.rewards import CarriedContributions, ClientAccount, allot, shares_from_contributions

POLICIES = registry.names("policy")


def make_policy(name, **params):
    return registry.create("policy", name, **params)

TREASURY = "federation"


def _market(n_clients: int = 3, pool_tokens: int = 1000, pool_usd: int = 250):
    """n pools at 0.25 USD/token seeded by the treasury; each client holds 1,000 tokens."""
    ledger = Ledger()
    market = Market(ledger)
    clients = []
    for i in range(n_clients):
        token = f"c{i}"
        pool = market.create_pool(token)
        ledger.mint(TREASURY, token, pool_tokens * ONE)
        ledger.mint(TREASURY, "USD", pool_usd * ONE)
        pool.add_liquidity(TREASURY, pool_tokens * ONE, pool_usd * ONE)
        ledger.mint(f"client:{token}", token, 1000 * ONE)
        clients.append(ClientAccount(f"client:{token}", token))
    return market, clients


def test_clip_gives_negative_contributors_nothing_and_shares_sum_to_one():
    s = shares_from_contributions(np.array([0.3, -0.1, 0.1]))
    assert s.tolist() == pytest.approx([0.75, 0.0, 0.25])


def test_shift_keeps_ranking_when_every_score_is_negative():
    s = shares_from_contributions(np.array([-0.1, -0.3, -0.2]), negative="shift")
    assert s.tolist() == pytest.approx([2 / 3, 0.0, 1 / 3])


def test_all_zero_scores_split_equally_or_are_withheld():
    assert shares_from_contributions(np.zeros(4)).tolist() == [0.25] * 4
    assert shares_from_contributions(np.zeros(4), zero_total="withhold").tolist() == [0.0] * 4


def test_non_finite_contributions_are_refused():
    with pytest.raises(ValueError, match="finite"):
        shares_from_contributions(np.array([1.0, np.nan]))


@settings(max_examples=300, deadline=None)
@given(
    budget=st.integers(0, 10**30),
    shares=st.lists(st.floats(0, 1), min_size=1, max_size=20),
)
def test_allotment_never_exceeds_the_budget_and_loses_at_most_n_units(budget, shares):
    amounts = allot(budget, np.array(shares))
    assert all(a >= 0 for a in amounts)
    assert sum(amounts) <= budget
    if sum(shares) > 0 and any(round(s * 2**48) for s in shares):
        assert budget - sum(amounts) < len(shares)


def test_budget_kinds():
    assert registry.create("budget", "constant", amount=500).for_round(7, -0.1) == 500
    sched = registry.create("budget", "schedule", schedule=[100.0, 200.0])
    assert [sched.for_round(i, 0) for i in range(4)] == [100.0, 200.0, 200.0, 200.0]
    gain = registry.create("budget", "accuracy_gain", per_point=50)
    assert gain.for_round(0, 0.02) == pytest.approx(100.0)
    assert gain.for_round(1, -0.05) == 0.0


def _distribute(name, shares, budget_usd=100, **params):
    market, clients = _market(len(shares))
    budget = budget_usd * ONE
    market.ledger.mint(TREASURY, "USD", budget)
    before = {c.account: market.ledger.balance(c.account, "USD") for c in clients}
    payouts = make_policy(name, **params).distribute(market, TREASURY, clients, budget,
                                                     np.array(shares))
    market.ledger.check()
    return market, clients, payouts, before


def test_equal_pays_every_client_the_same_whatever_the_shares():
    market, clients, payouts, _ = _distribute("equal", [1.0, 0.0, 0.0], budget_usd=90)
    assert [market.ledger.balance(c.account, "USD") for c in clients] == [30 * ONE] * 3
    assert [p.reward for p in payouts] == [30 * ONE] * 3


def test_direct_pays_usd_by_share():
    market, clients, _, _ = _distribute("direct", [0.5, 0.25, 0.25])
    assert [market.ledger.balance(c.account, "USD") for c in clients] == [
        50 * ONE, 25 * ONE, 25 * ONE]


def test_mint_gives_tokens_worth_the_allotment_at_spot_price():
    market, clients, payouts, _ = _distribute("mint", [0.5, 0.5, 0.0],
                                              usd_destination="treasury")
    # 50 USD at 0.25 USD/token = 200 tokens, exactly (reserves 1000 tokens / 250 USD).
    assert payouts[0].tokens_minted == 200 * ONE
    assert market.ledger.balance(clients[0].account, "c0") == 1200 * ONE
    assert market.ledger.supply("c0") == 2200 * ONE
    assert payouts[2].tokens_minted == 0
    # With `treasury`, the buyers' USD stays in the treasury, reported as kept.
    assert market.ledger.balance(TREASURY, "USD") == 100 * ONE
    assert payouts[0].usd_kept == 50 * ONE


def test_mint_puts_the_buyers_usd_into_the_pool_as_liquidity_at_its_price():
    market, clients, payouts, _ = _distribute("mint", [0.5, 0.5, 0.0])  # default: pool
    pool = market.pools["c0"]
    # 200 tokens to the client, and 50 USD paired with 200 new tokens as liquidity.
    assert market.ledger.balance(clients[0].account, "c0") == 1200 * ONE
    assert pool.reserves == (1200 * ONE, 300 * ONE)
    assert market.price("c0") == 0.25  # the price did not move
    assert payouts[0].tokens_minted == 400 * ONE
    assert payouts[0].usd_to_pool == payouts[0].usd_paid == 50 * ONE
    assert market.ledger.balance(TREASURY, pool.lp_asset) > 0
    assert market.ledger.balance(TREASURY, "USD") == 0


def test_mint_can_pay_the_buyers_usd_to_the_client():
    market, clients, payouts, _ = _distribute("mint", [1.0, 0.0, 0.0], usd_destination="client")
    assert market.ledger.balance(clients[0].account, "USD") == 100 * ONE
    assert payouts[0].usd_to_client == 100 * ONE
    assert market.ledger.balance(clients[0].account, "c0") == 1400 * ONE


def test_buyback_burns_what_it_buys_and_raises_the_price():
    market, _, payouts, _ = _distribute("buyback", [1.0, 0.0, 0.0])
    pool = market.pools["c0"]
    # Uniswap V2 output for 100 USD into (250 USD, 1000 tokens) at 0.3%:
    expected = 100 * ONE * 997 * 1000 * ONE // (250 * ONE * 1000 + 100 * ONE * 997)
    assert payouts[0].tokens_burned == expected
    assert market.ledger.burned("c0") == expected
    assert pool.reserves == (1000 * ONE - expected, 350 * ONE)
    assert market.price("c0") > 0.25
    # Cost = USD paid minus the spot value of what was bought (fee + price impact).
    assert payouts[0].cost == 100 * ONE - expected * 250 // 1000
    assert market.ledger.balance(TREASURY, "c0") == 0


def test_dividend_with_a_single_holder_pays_it_everything():
    market, clients, payouts, _ = _distribute("dividend", [1.0, 0.0, 0.0])
    assert market.ledger.balance(clients[0].account, "USD") == 100 * ONE
    assert payouts[0].usd_paid == 100 * ONE


def test_dividend_pays_holders_pro_rata_and_never_the_pool():
    market, clients = _market(3)
    # An investor holds as many c0 tokens as the client: they split the dividend evenly.
    market.ledger.mint("investor:1", "c0", 1000 * ONE)
    market.ledger.mint(TREASURY, "USD", 100 * ONE)
    make_policy("dividend").distribute(market, TREASURY, clients, 100 * ONE,
                                       np.array([1.0, 0.0, 0.0]))
    assert market.ledger.balance("investor:1", "USD") == 50 * ONE
    assert market.ledger.balance("client:c0", "USD") == 50 * ONE
    assert market.ledger.balance("pool:c0", "USD") == 250 * ONE


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_conserves_every_asset_and_never_overspends(name):
    market, _, payouts, _ = _distribute(name, [0.6, 0.3, 0.1], budget_usd=1000)
    assert market.ledger.balance(TREASURY, "USD") >= 0
    assert sum(p.reward for p in payouts) <= 1000 * ONE


def test_unknown_policy_names_the_allowed_ones():
    with pytest.raises(ValueError, match=re.escape(
            "allowed values are " + registry.or_list(registry.names("policy")))):
        make_policy("airdrop")


def test_carry_pays_what_lifts_the_total_above_its_high_water_mark():
    """A round that hurt the model is made up before the client earns again (exact vector)."""
    carried = CarriedContributions(2)
    rounds = [[1.0, -2.0], [-3.0, 1.0], [1.0, 1.5], [2.5, 0.25], [0.5, -1.0]]
    got = [carried.payable(np.array(c)).tolist() for c in rounds]
    # client 0: totals 1, -2, -1, 1.5, 2 -> high 1, 1, 1, 1.5, 2
    # client 1: totals -2, -1, 0.5, 0.75, -0.25 -> high 0, 0, 0.5, 0.75, 0.75
    assert got == [[1.0, 0.0], [0.0, 0.0], [0.0, 0.5], [0.5, 0.25], [0.5, 0.0]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3), min_size=1,
                max_size=30))
def test_carry_never_pays_more_than_the_best_total_to_date(rounds):
    """Payable scores are >= 0 and, summed, equal each client's highest running total
    (floored at 0): noise that sums to nothing in expectation is paid only its excursions."""
    carried = CarriedContributions(3)
    paid = sum(carried.payable(np.array(c)) for c in rounds)
    best = np.maximum(np.cumsum(np.array(rounds), axis=0).max(axis=0), 0.0)
    np.testing.assert_allclose(paid, best, rtol=1e-9, atol=1e-9)
