"""Offerings and issuance: investors' USD reaching the clients that train
(abm/agents/issuance.py, abm/agents/client.py; docs/model.md, section 7.14)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from abm import registry
from abm.amm import ONE, get_amount_out, to_units
from abm.errors import ScenarioError
from abm.model import WallStreetFedsModel
from abm.run import simulate
from abm.scenario import parse_scenario
from tests.conftest import ROOT, small_scenario


def _offering(investors=True, **issuance):
    """4 clients that hold their tokens, no reward budget and no cost: the only USD a client
    can get is what its offering raises."""
    spec = {"kind": "offering", "tokens": 1000.0, "start_step": 1, "end_step": 11, **issuance}
    overrides = {
        "steps": 20, "rewards.policy": "equal", "rewards.budget": {"amount": 0.0},
        "clients": [{"count": 4, "behaviour": "honest"}], "market.issuance": spec,
        "liquidity_providers": [],
    }
    if not investors:
        overrides["investors"] = []
    return small_scenario(**overrides)


def test_an_offering_pays_the_client_exactly_what_its_pool_paid_net_of_fees():
    scenario = _offering(investors=False)
    model = WallStreetFedsModel(scenario, check=True)  # conservation proven every step
    model.run_model()
    m = scenario.market
    # Replay the ten tranches (remaining / steps left, each step 1..10) on the pool alone.
    reserve_token, reserve_usd = to_units(m.pool_tokens), to_units(m.pool_tokens * m.opening_price)
    left, expected = to_units(1000.0), 0
    for step in range(1, 11):
        tranche = left // (11 - step)
        out = get_amount_out(tranche, reserve_token, reserve_usd, m.fee_bps)
        reserve_token, reserve_usd = reserve_token + tranche, reserve_usd - out
        left -= tranche
        expected += out
    for client in model.clients:
        assert client.offering_usd == expected == client.balance("USD")
        assert client.offering_tokens == client.issued == to_units(1000.0)
        assert model.market.pools[client.token].reserves == (reserve_token, reserve_usd)


def test_investors_money_reaches_the_clients_and_holders_see_the_dilution():
    result = simulate(_offering(), check=True)
    money = result.summary["money"]
    assert money["balanced"]
    clients = result.summary["clients"]
    raised = sum(c["offering_usd"] for c in clients.values())
    assert money["offering_usd"] == pytest.approx(raised, rel=1e-15) and raised > 0
    # the clients' USD came only from the offering (no budget, no cost, no sales of their own)
    assert money["usd_by_holder"]["client"]["end"] == pytest.approx(raised, rel=1e-12)
    supply = result.model[[f"supply/{c}" for c in clients]]
    assert (supply.iloc[-1] - supply.iloc[0]).tolist() == [1000.0] * 4
    assert all(c["tokens_issued"] == 1000.0 for c in clients.values())


def test_an_offering_from_the_genesis_supply_does_not_dilute():
    model = WallStreetFedsModel(_offering(source="genesis", clients=[1]), check=True)
    model.run_model()
    seller, others = model.clients[1], [model.clients[i] for i in (0, 2, 3)]
    assert seller.offering_tokens == to_units(1000.0) and seller.issued == 0
    assert seller.balance(seller.token) == to_units(10_000.0 - 1000.0)
    # nothing minted beyond genesis: the client's and pool's supply and the investors'
    # genesis inventories (bought from the federation before the first step)
    inventories = model.genesis_inventory[seller.token]
    assert inventories > 0
    assert model.ledger.supply(seller.token) == to_units(20_000.0) + inventories
    assert all(c.offering_tokens == 0 for c in others)


def test_offering_events_mark_its_start_and_end():
    model = WallStreetFedsModel(_offering(investors=False, clients=[0], start_step=3,
                                          end_step=8))
    model.run_model()
    events = [(e["step"], e["kind"], e["client"]) for e in model.events
              if e["kind"].startswith("offering")]
    assert events == [(3, "offering_start", "c00"), (7, "offering_end", "c00")]


def test_per_round_issuance_funds_training_costs_within_the_dilution_limit():
    scenario = small_scenario(**{
        "steps": 60, "rewards.policy": "equal", "rewards.budget": {"amount": 0.0},
        "investors": [], "liquidity_providers": [],
        "clients": [{"count": 2, "behaviour": "honest", "cost_per_round": 30.0}],
        "market.issuance": {"kind": "offering", "tokens": 0.0, "fund_costs": True,
                            "dilution_limit": 0.04, "end_step": 2},
    })
    model = WallStreetFedsModel(scenario, check=True)
    model.run_model()
    limit = to_units(400.0)  # 0.04 x 10,000 genesis tokens
    for client in model.clients:
        assert 0 < client.issued <= limit
        assert client.funding_usd >= client.cost_paid - 0  # every cost paid was raised
        assert client.cost_paid == 30 * ONE * client.rounds_participated
    taken = [[r["participating"] for r in model.round_rows if r["client"] == c.token]
             for c in model.clients]
    # About 125 tokens raise 30 USD at 0.25: three rounds fit in 400 tokens, then it cannot
    # pay and sits out.
    assert taken[0][:3] == [True] * 3 and not any(taken[0][3:])
    leave = [e for e in model.events if e["kind"] == "leave" and e["client"] == "c00"]
    assert len(leave) == 1 and "cannot pay" in leave[0]["text"]


@pytest.mark.parametrize("issuance, message", [
    ({"kind": "ipo"}, "market.issuance.kind = 'ipo': allowed values are "
                      + registry.or_list(registry.names("issuance"))),
    ({"kind": "offering", "start_step": 5, "end_step": 5},
     "end_step (5) must be after start_step (5)"),
    ({"kind": "offering", "clients": [2, 9], "end_step": 11},
     "clients [9] name no client: the clients are 0 to 3"),
    ({"kind": "offering", "tokens": 3000.0, "end_step": 11},
     "an offering of 3000 new tokens exceeds the dilution limit of 0.2 x 10000 genesis tokens"),
    ({"kind": "offering", "source": "genesis", "tokens": 20000.0, "end_step": 11},
     "an offering of 20000 genesis tokens exceeds the 10000 a client holds after genesis"),
    ({"kind": "offering"}, "end_step 101 lies beyond the run: the offering must end by step "
                           "31 (steps + 1)"),
    ({"kind": "offering", "dilution_limit": -0.1},
     "market.issuance.dilution_limit = -0.1: input should be greater than or equal to 0"),
])
def test_bad_issuance_fields_get_one_paragraph(issuance, message):
    data = small_scenario().to_dict()
    data["market"]["issuance"] = issuance
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data, source="f.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_wsf_validate_refuses_bad_new_fields_with_exit_code_2(tmp_path):
    data = small_scenario().to_dict()
    data["clients"][0]["participation"] = {"kind": "net_payoff", "windw": 3}
    data["market"]["issuance"] = {"kind": "offering", "source": "treasury"}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-m", "abm.cli", "validate", str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "clients[0].participation.windw" in proc.stderr
    assert "market.issuance.source = 'treasury'" in proc.stderr
