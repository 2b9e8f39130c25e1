"""Orders on record (abm/agents/orders.py; docs/model.md, 7.12): what every agent asked, what
its limits and the trade guard cut, and what was done, exactly in base units."""

from __future__ import annotations

import json

import pytest

from abm.agents.orders import GUARDS, OrderRecord
from abm.agents.strategies import Order
from abm.agents.trader import decision_units
from abm.amm import ONE, Pool
from abm.model import WallStreetFedsModel
from abm.run import simulate
from abm.run_folder import write_run
from analysis.report import write_report
from tests.conftest import small_scenario

S = 0.02  # every group's default max_slippage


def _cap(reserve_in: int) -> int:
    """The trade guard's cap on an order into `reserve_in` (base units), as the agents
    compute it."""
    return int(reserve_in * (S / (1.0 - S)))


def _one_investor(**group) -> WallStreetFedsModel:
    scenario = small_scenario(**{
        "rewards.policy": "equal", "liquidity_providers": [],
        "investors": [{"strategy": "noise", "count": 1, "cash": 1000, "inventory": 0.0,
                       **group}]})
    model = WallStreetFedsModel(scenario)
    model.view.update(0, *model._market_arrays())
    return model


def test_a_buy_cut_by_cash_position_and_slippage_is_recorded_exactly():
    model = _one_investor(max_trade=0.5, max_position=0.2)
    investor = model.investors[0]
    usd_before = investor.balance("USD")
    reserve_usd = model.market.pools["c00"].reserves[1]
    investor.execute([Order(0, "buy", 10_000.0)], usd_before)

    done = usd_before - investor.balance("USD")  # the ledger's movement
    assert done == _cap(reserve_usd) > 0         # the guard bound last
    record, row = model.marks.orders, investor.mark_row
    assert record.orders[row] == record.orders_cut[row] == 1
    assert record.done_usd_units[row] == done
    # asked 10,000 USD; max_trade 0.5 x 1,000 USD leaves 500; max_position 0.2 x 1,000 USD
    # of wealth leaves 200; the guard leaves `done`.
    assert record.asked_usd[row] == decision_units(10_000.0) / ONE == 10_000.0
    assert record.cut_usd["cash"][row] == 9_500.0
    assert record.cut_usd["position"][row] == 300.0
    assert record.cut_usd["slippage"][row] == (200 * ONE - done) / ONE
    assert record.done_usd[row] == done / ONE
    assert all(record.cut_orders[g][row] == 1 for g in ("cash", "position", "slippage"))
    assert record.cut_orders["dilution"][row] == 0


def test_a_clients_sell_fraction_is_recorded_as_asked_against_sold():
    # One round: every client offers a fifth of its 10,000 tokens right after it; the guard
    # lets only R_token s / (1 - s) of them sell (about 204 of 2,000).
    scenario = small_scenario(**{
        "steps": 10, "rewards.policy": "equal", "investors": [], "liquidity_providers": [],
        "clients": [{"count": 2, "behaviour": "honest",
                     "cash_out": {"kind": "sell_fraction", "fraction": 0.2}}]})
    model = WallStreetFedsModel(scenario, check=True)
    reserves = {c: model.market.pools[c].reserves[0] for c in model.client_ids}
    model.run_model()
    for client, row in zip(model.clients, model.last_round_rows, strict=True):
        assert row["client"] == client.token
        sold = _cap(reserves[client.token])
        assert 10_000 * ONE - client.balance(client.token) == sold  # the ledger's movement
        book = client.sales["cash_out"]
        assert (book.asked, book.sold) == (2_000 * ONE, sold)
        assert row["cash_out_asked_tokens"] == 2_000.0
        assert row["cash_out_sold_tokens"] == sold / ONE
        record = model.marks.orders
        assert record.done_token_units[client.mark_row] == sold
        assert record.cut_orders["slippage"][client.mark_row] == 1
        assert record.cut_usd["slippage"][client.mark_row] == pytest.approx(
            (2_000 * ONE - sold) / ONE * 0.25, rel=1e-12)


def test_the_done_amounts_are_what_every_agent_paid_into_the_pools(monkeypatch):
    """Over a whole run with every agent type (clients selling, investors, an LP zapping in
    and leaving, offerings and cost funding), each agent's recorded done amounts are exactly
    what it paid into the pools, USD and tokens."""
    paid: dict[tuple[str, bool], int] = {}
    swap = Pool.swap_exact_in

    def counted(self, trader, asset_in, amount_in, min_out):
        out = swap(self, trader, asset_in, amount_in, min_out)
        key = (trader, asset_in == "USD")
        paid[key] = paid.get(key, 0) + amount_in
        return out

    monkeypatch.setattr(Pool, "swap_exact_in", counted)
    scenario = small_scenario(**{
        "steps": 40, "liquidity_providers": [
            {"count": 1, "cash": 2000, "enter_step": 3, "exit": {"kind": "horizon",
                                                                  "horizon": 15}}],
        "clients": [{"count": 3, "behaviour": "honest", "cost_per_round": 200.0,
                     "cash_out": {"kind": "sell_fraction", "fraction": 0.2}},
                    {"count": 1, "behaviour": "free_rider"}],
        "market.client_cash": 20.0,
        "market.issuance": {"kind": "offering", "tokens": 100.0, "end_step": 6,
                            "fund_costs": True}})
    model = WallStreetFedsModel(scenario, check=True)
    model.run_model()
    record = model.marks.orders
    kinds = set()
    for agent in model.agents:
        if agent.agent_type == "federation":
            continue  # the policy's own trades are no agent's orders
        row = agent.mark_row
        assert record.done_usd_units[row] == paid.get((agent.account, True), 0)
        assert record.done_token_units[row] == paid.get((agent.account, False), 0)
        if record.orders_cut[row]:
            kinds.add(agent.agent_type)
    assert kinds == {"client", "investor", "lp"}
    assert sum(c.sales["funding"].sold for c in model.clients) > 0


def test_asked_is_done_plus_every_guards_cut():
    model = WallStreetFedsModel(small_scenario(steps=30), check=True)
    model.run_model()
    record = model.marks.orders
    for row in range(len(record)):
        cut = sum(record.cut_usd[g][row] for g in GUARDS)
        assert record.asked_usd[row] == pytest.approx(record.done_usd[row] + cut, rel=1e-9,
                                                      abs=1e-9)
    frame = model.agents_dataframe()
    last = frame[frame["step"] == 30].set_index("agent_id")
    for agent in model.agents:
        assert last.loc[agent.unique_id, "orders_cut"] == record.orders_cut[agent.mark_row]
    assert str(frame["orders"].dtype) == "int64"


def test_a_carried_record_keeps_each_agents_rows():
    old = OrderRecord(2)
    old.record(1, True, 0.0, 5 * ONE, 2 * ONE, cash=3 * ONE)
    new = old.carried({10: 0, 11: 1}, [11, 12, 10])
    assert (new.orders, new.asked_usd, new.cut_usd["cash"]) == ([1, 0, 0], [5.0, 0.0, 0.0],
                                                                 [3.0, 0.0, 0.0])


@pytest.mark.slow
def test_the_summary_and_the_report_show_the_orders_cut(tmp_path):
    result = simulate(small_scenario(steps=20), counterfactual=False)
    orders = result.summary["orders"]
    investors = orders["by_type"]["investor"]
    assert investors["orders"] > investors["orders_cut"] > 0
    assert investors["done_usd"] < investors["asked_usd"]
    cash_out = orders["clients"]["c00"]["cash_out"]
    assert 0 < cash_out["sold_tokens"] < cash_out["asked_tokens"]
    run_dir = write_run(result, tmp_path / "run")
    assert json.loads((run_dir / "summary.json").read_text())["orders"]["by_type"]
    text = write_report(run_dir).read_text(encoding="utf-8")
    assert "## Orders cut by guards" in text
    assert "Their cash-out rules asked to sell" in text
