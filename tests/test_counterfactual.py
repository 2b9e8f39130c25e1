"""The counterfactual twin: same seed, reward budget 0, common random numbers.

Under `equal` and `direct` the cash paid to clients never feeds back into the market (the
clients here hold or sell a fraction of their tokens, never by a USD target), so the run and
its twin must be identical step for step in everything the rewards cannot affect, and each
client's attributable reward must equal the cash it was paid, exactly.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from abm import registry
from abm.cli import main
from abm.run import simulate
from abm.run_folder import COUNTERFACTUAL_DIR
from abm.scenario import load_scenario
from tests.conftest import small_scenario

#: Model-table columns the rewards can change under a cash policy (the treasury's and the
#: clients' money); everything else (prices, reserves, volumes, fees, supplies, contributions,
#: accuracy, the investors' and LPs' wealth) must be identical.
CASH_AFFECTED = ("reward_usd", "federation_usd", "wealth/client", "wealth_if_sold/client",
                 "wealth/federation", "wealth_if_sold/federation")
REWARD_COLUMNS = ("reward_usd", "usd_to_client", "usd_kept", "usd_paid", "reward_if_sold_usd")


@pytest.fixture(scope="module", params=["equal", "direct"])
def cash_run(request):
    return simulate(small_scenario(**{"rewards.policy": request.param}), counterfactual=True)


def test_the_twin_has_the_same_seed_and_no_budget(cash_run):
    twin = cash_run.twin
    assert twin.config["seed"] == cash_run.config["seed"]
    budget = twin.config["rewards"]["budget"]
    assert (budget["kind"], budget["amount"]) == ("constant", 0.0)
    assert twin.summary["total_reward_usd"] == 0.0
    assert twin.twin is None and twin.config["counterfactual"] is False


def test_under_cash_policies_run_and_twin_are_identical_where_rewards_cannot_reach(cash_run):
    run, twin = cash_run, cash_run.twin
    same = [c for c in run.model.columns if c not in CASH_AFFECTED]
    pd.testing.assert_frame_equal(run.model[same], twin.model[same], check_exact=True)
    # Every agent but the clients and the treasury, every column, every step.
    others = ~run.agents["agent_type"].isin(["client", "federation"])
    pd.testing.assert_frame_equal(run.agents[others], twin.agents[others], check_exact=True)
    # The clients' tokens and liquidity are untouched by cash: only their USD differs.
    clients = run.agents["agent_type"] == "client"
    for column in ("token_value", "lp_value"):
        assert run.agents.loc[clients, column].equals(twin.agents.loc[clients, column])
    # The learning side never sees the market: same contributions and shares.
    keep = [c for c in run.rounds.columns if c not in REWARD_COLUMNS]
    pd.testing.assert_frame_equal(run.rounds[keep], twin.rounds[keep], check_exact=True)


def test_under_cash_policies_attributable_is_the_cash_paid_to_the_cent(cash_run):
    paid = 0.0
    for cid, row in cash_run.summary["clients"].items():
        paid += row["cash_paid_usd"]
        # Exact in base units, so exact as floats: not merely within a cent.
        assert row["attributable_usd"] == row["cash_paid_usd"], cid
        assert round(row["attributable_usd"], 2) == round(row["allotted_usd"], 2), cid
    assert paid > 0
    holders = cash_run.summary["holders"]
    assert holders["investor"]["attributable_usd"] == 0.0
    assert holders["lp"]["attributable_usd"] == 0.0
    # The whole budget is accounted for: paid to clients, the rest (dust) kept.
    assert sum(h["attributable_usd"] for h in holders.values()) == pytest.approx(
        cash_run.summary["total_reward_usd"], abs=1e-9)


def test_under_equal_the_allotment_is_exactly_the_equal_split():
    # 3 clients: 500 USD / 3 is not a whole number of base units; allotted and the equal
    # split are both sum over rounds of floor(R / N) base units, so the difference is 0.
    scenario = small_scenario(**{"rewards.policy": "equal", "clients.0.count": 2})
    summary = simulate(scenario, counterfactual=True).summary
    for row in summary["clients"].values():
        assert row["allotted_vs_equal_pct"] == 0.0
        assert row["attributable_usd"] == row["cash_paid_usd"] == summary["equal_split_usd"]
        assert row["attributable_vs_equal_pct"] == 0.0


def test_the_run_length_does_not_change_behaviour():
    # The market's horizon is a belief (round_continuation), not the run's steps: the first
    # 30 steps of a 50-step run are those of a 30-step run, step for step.
    short = simulate(small_scenario(steps=30))
    long = simulate(small_scenario(steps=50))
    first = long.agents[long.agents["step"] <= 30].reset_index(drop=True)
    pd.testing.assert_frame_equal(short.agents, first, check_exact=True)


@pytest.mark.parametrize("policy", [
    # buyback also draws the report's figures (slow)
    pytest.param(p, marks=pytest.mark.slow) if p == "buyback" else p
    for p in registry.names("policy")])
def test_wsf_run_counterfactual_writes_the_twin_inside_the_run_folder(policy, tmp_path):
    scenario = small_scenario(steps=20, **{"rewards.policy": policy})
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(scenario.to_dict()), encoding="utf-8")
    out = tmp_path / "run"
    figures = [] if policy == "buyback" else ["--no-report"]
    assert main(["run", str(path), "--out", str(out), "--counterfactual", *figures]) == 0
    twin = out / COUNTERFACTUAL_DIR
    for name in ("config.yaml", "model.parquet", "agents.parquet", "rounds.parquet",
                 "summary.json"):
        assert (twin / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counterfactual"]["ran"] is True
    assert json.loads((twin / "summary.json").read_text())["total_reward_usd"] == 0.0
    rows = summary["clients"].values()
    assert all(isinstance(r["attributable_usd"], float) for r in rows)
    assert all(isinstance(h["attributable_usd"], float) for h in summary["holders"].values())
    if policy == "buyback":
        assert (out / "figures" / "reward_vs_equal.png").is_file()
        assert main(["report", str(out)]) == 0
        report = (out / "report.md").read_text()
        assert "attributable (USD)" in report and "## Where the money went" in report
    assert not list(tmp_path.glob(".run.tmp-*"))  # written atomically


def test_the_scenario_field_turns_the_twin_on(tmp_path):
    scenario = small_scenario(steps=10, counterfactual=True)
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(scenario.to_dict()), encoding="utf-8")
    assert load_scenario(path).counterfactual is True
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-report"]) == 0
    assert (tmp_path / "run" / COUNTERFACTUAL_DIR / "summary.json").is_file()
