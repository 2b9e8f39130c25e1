"""Participation: clients weigh their training cost against the reward they realise
(abm/agents/participation.py, abm/agents/client.py; docs/model.md, section 7.13)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abm import registry
from abm.agents.participation import NetPayoff, RoundRecord
from abm.amm import ONE
from abm.errors import ScenarioError
from abm.model import WallStreetFedsModel
from abm.run import simulate
from abm.scenario import parse_scenario
from tests.conftest import small_scenario


def _rec(participated, reward, budget=400.0, participants=4):
    return RoundRecord(participated, reward, budget, participants)


# -- the rule ---------------------------------------------------------------------------------


def test_net_payoff_waits_for_a_full_window_then_leaves_when_the_reward_does_not_pay():
    rule = NetPayoff(window=3)
    history = [_rec(True, 10.0), _rec(True, 10.0)]
    assert rule.participates(history, cost_usd=50.0, participating=True)  # window not full
    history.append(_rec(True, 10.0))
    assert rule.expected_reward(history) == pytest.approx(10.0)
    assert not rule.participates(history, cost_usd=50.0, participating=True)
    assert rule.participates(history, cost_usd=10.0, participating=True)  # 10 is not < 10


def test_the_expected_reward_averages_the_trailing_window_only():
    rule = NetPayoff(window=2)
    history = [_rec(True, 100.0), _rec(True, 20.0), _rec(True, 40.0)]
    assert rule.expected_reward(history) == pytest.approx(30.0)


def test_a_client_that_sat_out_expects_its_yield_times_the_budget_shared_among_fewer():
    rule = NetPayoff(window=2)
    # Trained with 4 clients for 100 of a 400 budget (yield 1/4), then sat out a round in
    # which 1 client trained with a budget of 800: had it trained, 2 would have shared it.
    history = [_rec(True, 100.0, 400.0, 4), _rec(False, 0.0, 800.0, 1)]
    forgone = 0.25 * 800.0 * 4 / 2
    assert rule.expected_reward(history) == pytest.approx((100.0 + forgone) / 2)
    # Under `equal` this is exact: R / (k + 1) is what a rejoining client is allotted.
    assert forgone == 800.0 / 2


def test_rejoining_needs_the_higher_threshold():
    rule = NetPayoff(window=1, leave_below=1.0, rejoin_above=1.5)
    out = [_rec(True, 100.0, 400.0, 4), _rec(False, 0.0, 480.0, 4)]  # expects 96
    assert not rule.participates(out, cost_usd=80.0, participating=False)  # 96 < 1.5 x 80
    assert rule.participates(out, cost_usd=60.0, participating=False)  # 96 > 90
    assert rule.participates(out, cost_usd=80.0, participating=True)  # stays: 96 >= 80


# Possible records only: a client that trained is one of its round's participants.
_records = st.lists(st.tuples(
    st.booleans(), st.floats(0, 1e4), st.floats(0, 1e4), st.integers(0, 20)
).map(lambda t: RoundRecord(t[0], t[1], t[2], max(t[3], int(t[0])))), min_size=0, max_size=12)


@settings(max_examples=200, deadline=None)
@given(history=_records, window=st.integers(1, 5), cost=st.floats(0, 1e4),
       cheaper=st.floats(0, 1), leave=st.floats(0, 2), band=st.floats(0, 1))
def test_net_payoff_decisions_are_monotone_in_cost_and_never_flap(history, window, cost,
                                                                  cheaper, leave, band):
    # (Found by hypothesis: a sat-out round with budget 0 after a trained round with a
    # vanishing budget gave inf x 0 = NaN.)
    rule = NetPayoff(window=window, leave_below=leave, rejoin_above=leave + band)
    assert rule.expected_reward(history) >= 0
    for participating in (True, False):
        if rule.participates(history, cost, participating):  # a cheaper round pays too
            assert rule.participates(history, cost * cheaper, participating)
    # whatever makes a client that left come back keeps a participant in
    if rule.participates(history, cost, False):
        assert rule.participates(history, cost, True)


def test_a_round_that_paid_nothing_forgoes_nothing_even_after_a_vanishing_budget():
    rule = NetPayoff(window=2)
    history = [_rec(True, 1.0, 5e-324, 1), _rec(False, 0.0, 0.0, 1)]
    assert rule.expected_reward(history) == pytest.approx(0.5)


def test_impossible_round_records_are_refused():
    with pytest.raises(ValueError, match="impossible round record"):
        RoundRecord(True, 1.0, 10.0, 0)  # trained in a round nobody trained in
    with pytest.raises(ValueError, match="impossible round record"):
        RoundRecord(False, 0.0, float("nan"), 3)


def test_always_trains_whatever_it_earns():
    rule = registry.create("participation", "always")
    assert rule.participates([_rec(True, 0.0)] * 5, cost_usd=1e9, participating=True)


# -- in the model -------------------------------------------------------------------------------


def _costly(policy="equal", budget=400.0, cost_b=1000.0, **overrides):
    """4 clients under `equal` (100 USD each per round): c00-c02 cost 50 a round, c03 costs
    `cost_b`, more than any reward the round can pay."""
    return small_scenario(**{
        "steps": 40, "rewards.policy": policy, "rewards.budget": {"amount": budget},
        "market.client_cash": 5000.0, "investors": [], "liquidity_providers": [],
        "clients": [
            {"count": 3, "behaviour": "honest", "cost_per_round": 50.0,
             "participation": {"kind": "net_payoff", "window": 1}},
            {"count": 1, "behaviour": "honest", "cost_per_round": cost_b,
             "participation": {"kind": "net_payoff", "window": 1}},
        ], **overrides})


def test_a_client_whose_cost_exceeds_any_reward_leaves_and_is_absent_from_the_next_game():
    model = WallStreetFedsModel(_costly(), check=True)
    model.run_model()
    rounds = model.round_rows
    by_round = {k: [r for r in rounds if r["round"] == k] for k in (1, 2, 3, 4)}
    assert [r["participating"] for r in by_round[1]] == [True] * 4
    for k in (2, 3, 4):
        rows = by_round[k]
        assert [r["participating"] for r in rows] == [True, True, True, False]
        gone = rows[3]
        assert (gone["contribution"], gone["share"], gone["reward_usd"]) == (0.0, 0.0, 0.0)
        assert gone["training_cost_usd"] == 0.0 and gone["reward_if_sold_usd"] == 0.0
        # leave-one-out over the 3 participants: the grand coalition and 3 without one
        assert rows[0]["evaluations"] == 4
        # `equal` splits the round's budget among those who trained
        assert [r["reward_usd"] for r in rows[:3]] == [pytest.approx(400 / 3)] * 3
    assert by_round[1][0]["evaluations"] == 5
    leave = [e for e in model.events if e["kind"] == "leave"]
    assert [(e["step"], e["client"]) for e in leave] == [(20, "c03")]
    c = model.clients
    assert [x.rounds_participated for x in c] == [4, 4, 4, 1]
    assert [x.cost_paid for x in c] == [200 * ONE] * 3 + [1000 * ONE]
    assert model.datacollector.get_model_vars_dataframe()["participating"].iloc[-1] == 3


def test_the_federation_accuracy_feels_the_absence():
    left = simulate(_costly())
    stay = simulate(_costly(cost_b=50.0))
    assert stay.rounds["participating"].all()
    acc = lambda r: r.rounds.groupby("round")["accuracy"].first().tolist()  # noqa: E731
    assert acc(left)[0] == acc(stay)[0]  # round 1: everyone trained in both
    assert acc(left)[1:] != acc(stay)[1:]


def test_individual_rationality_is_reported_per_client():
    result = simulate(_costly())
    clients = result.summary["clients"]
    for cid in ("c00", "c01", "c02"):
        assert clients[cid]["individually_rational"]
        assert clients[cid]["rounds_participated"] == 4
        assert clients[cid]["cost_usd"] == 200.0
        # under `equal` the reward realised if sold is the cash: 100 + 3 x 133.33
        assert clients[cid]["reward_if_sold_usd"] == pytest.approx(100 + 400.0, rel=1e-12)
    assert not clients["c03"]["individually_rational"]
    assert result.summary["participation"]["ir_violations"] == 1
    assert result.summary["participation"]["final_participating"] == 3


def test_a_round_nobody_trains_in_keeps_the_model_and_withholds_the_budget_then_they_rejoin():
    # 100 USD each against a cost of 150: all four leave after round 1. Round 2 nobody
    # trains; each expects its yield (1/4) x 400 x 4 / (0 + 1) = 400 > 1.2 x 150, so all
    # rejoin in round 3.
    scenario = _costly(cost_b=150.0, **{"clients.0.cost_per_round": 150.0, "steps": 30})
    model = WallStreetFedsModel(scenario, check=True)
    model.run_model()
    rows = {k: [r for r in model.round_rows if r["round"] == k] for k in (1, 2, 3)}
    assert [r["participating"] for r in rows[2]] == [False] * 4
    assert [r["participating"] for r in rows[3]] == [True] * 4
    assert rows[2][0]["accuracy"] == rows[1][0]["accuracy"]  # nobody trained
    assert all(r["reward_usd"] == 0 and r["evaluations"] == 0 for r in rows[2])
    fed = model.federation
    assert (fed.empty_rounds, fed.empty_budget) == (1, 400 * ONE)
    kinds = [(e["step"], e["kind"]) for e in model.events if e["kind"] in ("leave", "join")]
    assert kinds == [(20, "leave")] * 4 + [(30, "join")] * 4
    # the empty round's budget stayed in the treasury (the others split 400 / 4 exactly)
    assert model.ledger.balance("federation", "USD") - model.usd_at_genesis["federation"] \
        == 400 * ONE


def test_a_client_that_cannot_pay_sits_the_round_out():
    scenario = _costly(cost_b=50.0, **{"market.client_cash": 120.0})
    model = WallStreetFedsModel(scenario, check=True)
    model.run_model()
    # 120 USD pay two rounds of 50; the 100 USD rewards of round 1 pay for the rest.
    assert all(r["participating"] for r in model.round_rows)
    broke = _costly(cost_b=50.0, **{"market.client_cash": 0.0,
                                    "clients.0.participation": "always"})
    model = WallStreetFedsModel(broke, check=True)
    model.run_model()
    assert not any(r["participating"] for r in model.round_rows)
    texts = [e["text"] for e in model.events if e["kind"] == "leave"]
    assert len(texts) == 4 and all("cannot pay" in t for t in texts)


def test_training_costs_stay_in_the_books():
    model = WallStreetFedsModel(_costly(), check=True)  # check_accounting every step
    model.run_model()
    held, paid = model.accounting()["costs"]
    assert held == paid == (3 * 200 + 1000) * ONE
    money = simulate(_costly()).summary["money"]
    assert money["training_costs_usd"] == 1600.0 and money["balanced"]
    assert money["usd_by_holder"]["client"]["training_costs"] == -1600.0
    assert money["usd_by_holder"]["costs"]["end"] == 1600.0


def test_always_and_no_cost_change_nothing():
    base = small_scenario()
    explicit = base.with_overrides({"clients.0.participation": "always",
                                    "clients.0.cost_per_round": 0.0,
                                    "market.issuance": "none"})
    a, b = simulate(base), simulate(explicit)
    assert a.rounds.equals(b.rounds) and a.model.equals(b.model)
    assert a.rounds["participating"].all()
    assert (a.rounds["training_cost_usd"] == 0).all()


@pytest.mark.parametrize("policy", ["mint", "buyback", "dividend"])
def test_token_rewards_are_weighed_by_what_they_would_fetch(policy):
    result = simulate(_costly(policy=policy, **{"contribution.method": "data_size"}))
    rounds = result.rounds
    paid = rounds[rounds["participating"]]
    assert (paid["reward_if_sold_usd"] > 0).all()
    if policy == "dividend":  # the client is its token's only holder outside the pool
        np.testing.assert_allclose(paid["reward_if_sold_usd"], paid["reward_usd"], rtol=1e-12)
    else:  # a token reward fetches less than its allotment once sold into the pool
        assert (paid["reward_if_sold_usd"] < paid["reward_usd"]).all()


# -- the scenario fields ----------------------------------------------------------------------


@pytest.mark.parametrize("field, value, message", [
    ("participation", "sometimes", "clients[0].participation.kind = 'sometimes': allowed "
     "values are " + registry.or_list(registry.names("participation"))),
    ("participation", {"kind": "net_payoff", "window": 0},
     "clients[0].participation.window = 0: input should be greater than or equal to 1"),
    ("participation", {"kind": "net_payoff", "leave_below": 2.0},
     "rejoin_above (1.2) must be >= leave_below (2.0)"),
    ("cost_per_round", -5.0, "clients[0].cost_per_round = -5.0: input should be greater "
                             "than or equal to 0"),
    ("cost_per_round", "10", "clients[0].cost_per_round = '10': input should be a valid "
                             "number"),
])
def test_bad_participation_fields_get_one_paragraph(field, value, message):
    with pytest.raises(ScenarioError) as err:
        parse_scenario({"clients": [{"count": 2, field: value}]}, source="f.yaml")
    text = str(err.value)
    assert text.startswith("f.yaml: ") and message in text and "\n" not in text


def test_participation_named_alone_takes_its_defaults():
    s = parse_scenario({"clients": [{"count": 2, "participation": "net_payoff"}]})
    assert s.to_dict()["clients"][0]["participation"] == {
        "kind": "net_payoff", "window": 3, "leave_below": 1.0, "rejoin_above": 1.2}
    assert np.isclose(s.clients[0].cost_per_round, 0.0)


@pytest.mark.slow
def test_end_to_end_a_scenario_file_with_costs_participation_and_an_offering(tmp_path):
    import json
    import subprocess
    import sys

    import pandas as pd
    import yaml

    from tests.conftest import ROOT

    data = _costly().to_dict()
    data["market"]["issuance"] = {"kind": "offering", "clients": [3], "tokens": 500.0,
                                  "start_step": 1, "end_step": 21}
    path = tmp_path / "costly.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "abm.cli", "run", str(path), "--out",
                           str(out), "--check"], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    rounds = pd.read_parquet(out / "rounds.parquet")
    assert rounds.groupby("client")["participating"].sum().to_dict() == {
        "c00": 4, "c01": 4, "c02": 4, "c03": 1}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clients"]["c03"]["rounds_participated"] == 1
    assert summary["clients"]["c03"]["cost_usd"] == 1000.0
    assert summary["clients"]["c03"]["offering_tokens"] == 500.0
    assert summary["money"]["offering_usd"] == pytest.approx(
        summary["clients"]["c03"]["offering_usd"]) and summary["money"]["balanced"]
    events = pd.read_parquet(out / "events.parquet")
    assert {"leave", "offering_start", "offering_end"} <= set(events["kind"])
    model = pd.read_parquet(out / "model.parquet")
    assert model["participating"].tolist()[-1] == 3 and model["participating"].dtype == "int64"
    report = (out / "report.md").read_text()
    assert "## Participation" in report and "| c03 | honest | 1 | 4 |" in report
    assert (out / "figures" / "participation.png").stat().st_size > 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["clients"][1]["participation"]["kind"] == "net_payoff"
