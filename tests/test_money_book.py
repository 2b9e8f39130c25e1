"""The money book of the rewards (`abm.reward_book.RewardBook`): where every budget base unit
went, by the destination each payout states (`abm.rewards.Destination`), and the money table
that reads it (`abm.run.money_table`).

A policy the money table has never heard of (half buyback, half cash, declared here) still
has its destinations sum to the budgets; the book's identities hold on short real runs of
every built-in policy.
"""

from __future__ import annotations

import pytest

from abm import registry
from abm.amm import ONE, InvariantViolation
from abm.model import WallStreetFedsModel
from abm.reward_book import POOLS, RewardBook
from abm.rewards import (
    BuybackPolicy,
    ClientAccount,
    Destination,
    DirectPolicy,
    Payout,
    RewardPolicy,
)
from abm.run import MONEY_DESTINATIONS, money_table
from tests.conftest import small_scenario

BUDGET_PER_ROUND = 500  # USD, small_scenario's constant budget; 3 rounds in 30 steps


@pytest.fixture(scope="module")
def half_buyback():
    """A policy that spends half of each allotment buying back (and burning) the client's
    token and pays the other half to the client in cash, registered for this module only (the
    other tests see the built-in registry)."""
    registry.load_builtins()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry._COMPONENTS, "policy", dict(registry._COMPONENTS["policy"]))

        class HalfBuyback(RewardPolicy):
            """Half of each allotment buys back the client's token, half is paid in cash."""

            name = "half_buyback"

            def deliver(self, market, treasury, clients, amounts):
                halves = [amount // 2 for amount in amounts]
                bought = BuybackPolicy().deliver(market, treasury, clients, halves)
                cash = DirectPolicy().deliver(market, treasury, clients,
                                              [a - h for a, h in zip(amounts, halves,
                                                                     strict=True)])
                return [Payout(reward=b.reward + c.reward, usd_to_client=c.usd_to_client,
                               usd_to_pool_by_purchase=b.usd_to_pool_by_purchase,
                               tokens_burned=b.tokens_burned, cost=b.cost)
                        for b, c in zip(bought, cash, strict=True)]

        yield HalfBuyback.name


def _run(policy: str, **overrides) -> WallStreetFedsModel:
    model = WallStreetFedsModel(small_scenario(**{"rewards.policy": policy, **overrides}))
    model.run_model()
    return model


def _destinations_usd(money: dict) -> float:
    """The money table's destinations of the budgets, summed (USD display units)."""
    return sum(sum(v.values()) if isinstance(v, dict) else v
               for v in (money[key] for key in MONEY_DESTINATIONS.values()))


def test_a_policy_paying_into_pools_in_a_new_way_still_sums_to_the_budget(half_buyback):
    model = _run(half_buyback)
    book, money = model.federation.book, money_table(model)
    went = book.destinations()
    assert book.budget_in == 3 * BUDGET_PER_ROUND * ONE
    # Half of what was allotted bought tokens from the pools, half went to the wallets
    # (integer halves: the cash half is the larger by at most a base unit per payout).
    assert went[Destination.POOL_PURCHASE] > 0
    assert 0 <= went[Destination.CLIENT] - went[Destination.POOL_PURCHASE] <= 3 * 4
    assert went[Destination.POOL_LIQUIDITY] == went[Destination.HOLDERS] == 0
    assert sum(went.values()) == book.budget_in
    # The money table shows it by destination, never by the policy's name: the pools' part
    # is under the purchases, and the destinations add up to the budgets paid in.
    assert money["into_pools_by_buybacks_usd"] == went[Destination.POOL_PURCHASE] / ONE
    assert money["to_clients_as_cash_usd"] == went[Destination.CLIENT] / ONE
    assert _destinations_usd(money) == pytest.approx(money["budgets_paid_in_usd"], abs=1e-9)
    rewards = {kind: row["rewards"] for kind, row in money["usd_by_holder"].items()}
    assert rewards["pool"] == went[Destination.POOL_PURCHASE] / ONE
    assert sum(rewards.values()) == pytest.approx(money["budgets_paid_in_usd"], abs=1e-9)
    assert money["balanced"]
    # The rounds table states the same split, row by row.
    for row in model.round_rows:
        assert row["policy"] == half_buyback
        assert row["usd_to_client"] + row["usd_to_pool"] + row["usd_to_holders"] \
            + row["usd_kept"] == pytest.approx(row["reward_usd"], abs=1e-12)


@pytest.fixture(scope="module", params=["equal", "direct", "mint", "buyback", "dividend",
                                        "mint/client", "mint/treasury"])
def policy_run(request):
    policy, _, destination = request.param.partition("/")
    overrides = {"rewards.params.usd_destination": destination} if destination else {}
    return request.param, _run(policy, **overrides)


def test_the_book_s_identities_on_a_short_run(policy_run):
    name, model = policy_run
    book = model.federation.book
    n = len(model.clients)
    budget = BUDGET_PER_ROUND * ONE
    assert book.budget_in == 3 * budget
    # Every client trains every round here: `equal` would have allotted R // N each round.
    assert book.equal_reference == 3 * (budget // n)
    assert book.equal_reference_by_client == [3 * (budget // n)] * n
    # Allotments never exceed the budgets (rounding down leaves dust in the treasury), and
    # each destination's run total is the book's own per-client figures summed.
    assert sum(book.allotted) <= book.budget_in
    went = book.destinations()
    assert list(went) == list(Destination)
    assert sum(went.values()) == book.budget_in
    assert book.usd_paid == book.budget_in - went[Destination.TREASURY]
    assert went[Destination.HOLDERS] == sum(book.dividends_to.values())
    by_holder = book.by_holder(model.holder_type)
    assert sum(by_holder.values()) == book.budget_in
    assert by_holder.get(POOLS, 0) == (went[Destination.POOL_PURCHASE]
                                       + went[Destination.POOL_LIQUIDITY])
    # The book agrees with the rounds table, which writes each payout's destinations.
    rows = model.round_rows
    for i, client in enumerate(model.clients):
        mine = [r for r in rows if r["client"] == client.token]
        assert sum(r["reward_usd"] for r in mine) == pytest.approx(book.allotted[i] / ONE)
        assert sum(r["usd_to_client"] for r in mine) == pytest.approx(
            book.paid[Destination.CLIENT][i] / ONE)
        assert sum(r["usd_to_pool"] for r in mine) == pytest.approx(
            (book.paid[Destination.POOL_PURCHASE][i]
             + book.paid[Destination.POOL_LIQUIDITY][i]) / ONE)
        assert sum(r["reward_if_sold_usd"] for r in mine) == pytest.approx(
            book.realised[i] / ONE)
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(book.total_cost / ONE)
    # Each policy's money goes where it says, whatever its name.
    where = {"equal": {Destination.CLIENT}, "direct": {Destination.CLIENT},
             "mint": {Destination.POOL_LIQUIDITY}, "mint/client": {Destination.CLIENT},
             "mint/treasury": set(), "buyback": {Destination.POOL_PURCHASE},
             "dividend": {Destination.HOLDERS}}[name]
    for destination, amount in went.items():
        if destination is not Destination.TREASURY:
            assert (amount > 0) == (destination in where), (destination, amount)
    # The money table reads the book: its figures are the book's, divided by ONE.
    money = money_table(model)
    assert money["budgets_paid_in_units"] == book.budget_in
    for destination, key in MONEY_DESTINATIONS.items():
        if destination is not Destination.HOLDERS:
            assert money[key] == went[destination] / ONE
    assert sum(money["dividends_to_holders_usd"].values()) == pytest.approx(
        went[Destination.HOLDERS] / ONE)
    assert _destinations_usd(money) == pytest.approx(money["budgets_paid_in_usd"], abs=1e-9)
    assert money["balanced"]


def test_every_destination_has_its_money_table_key_in_order():
    assert list(MONEY_DESTINATIONS) == list(Destination)
    assert len(set(MONEY_DESTINATIONS.values())) == len(Destination)


def test_a_payout_states_its_destinations_and_they_sum_to_its_allotment():
    payout = Payout(reward=100, usd_to_client=10, usd_to_pool_by_purchase=20,
                    usd_to_pool_as_liquidity=30, usd_to_holders={"a": 5, "b": 7})
    assert payout.by_destination() == {
        Destination.CLIENT: 10, Destination.POOL_PURCHASE: 20,
        Destination.POOL_LIQUIDITY: 30, Destination.HOLDERS: 12, Destination.TREASURY: 28}
    assert payout.usd_to_pool == 50 and payout.usd_paid == 72 and payout.usd_kept == 28
    assert sum(payout.by_destination().values()) == payout.reward


def test_the_book_routes_each_destination_to_its_holder_type():
    clients = [ClientAccount("client:c00", "c00"), ClientAccount("client:c01", "c01")]
    book = RewardBook(clients, "federation")
    kinds = {"client:c00": "client", "client:c01": "client", "inv:1": "investor",
             "federation": "federation"}
    book.record_round(100, [Payout(reward=60, usd_to_client=40, usd_to_holders={"inv:1": 9}),
                            Payout(reward=39, usd_to_pool_by_purchase=30)],
                      participants=[0, 1], realised=[35, 20])
    book.record_round(50, [Payout(reward=50, usd_to_pool_as_liquidity=50), Payout()],
                      participants=[0], realised=[45, 0])
    assert book.budget_in == 150 and book.usd_paid == 129 and book.kept == 21
    assert book.allotted == [110, 39]
    assert book.equal_reference == 50 + 25  # R // N over both rounds
    assert book.equal_reference_by_client == [50 + 50, 50]  # R // k over its rounds
    assert book.realised == [80, 20] and book.last_realised == [45, 0]
    assert book.destinations() == {
        Destination.CLIENT: 40, Destination.POOL_PURCHASE: 30,
        Destination.POOL_LIQUIDITY: 50, Destination.HOLDERS: 9, Destination.TREASURY: 21}
    assert book.by_holder(kinds.get) == {"client": 40, "investor": 9, POOLS: 80,
                                         "federation": 21}


def test_the_book_refuses_a_round_that_pays_more_than_it_has():
    clients = [ClientAccount("client:c00", "c00")]
    book = RewardBook(clients, "federation")
    with pytest.raises(InvariantViolation, match="allotted"):
        book.record_round(10, [Payout(reward=11, usd_to_client=11)], [0], [0])
    with pytest.raises(InvariantViolation, match="more than its allotment"):
        book.record_round(10, [Payout(reward=5, usd_to_client=6)], [0], [0])
    with pytest.raises(ValueError, match="1 clients"):
        book.record_round(10, [Payout(), Payout()], [0], [0, 0])
    # A refused round books nothing.
    assert (book.budget_in, book.allotted, book.destinations()[Destination.CLIENT]) == (0, [0], 0)
