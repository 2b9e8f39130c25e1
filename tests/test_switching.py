"""Investors who switch strategies (`abm.agents.switching`, docs/model.md 7.17): the choice
probabilities against their closed form, the revisions' frequencies, the schema's refusals,
reproducibility by seed, the default's equality with a run without switching, the fast paths
against the reference decisions with switching on, and the books kept every step."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from abm.agents.switching import DiscreteChoice, Switchboard, choice_probabilities
from abm.errors import ScenarioError
from abm.model import WallStreetFedsModel
from abm.run import simulate
from tests.conftest import small_scenario
from tests.test_fast_paths import _same_tables

SWITCHING = {"kind": "discrete_choice",
             "strategies": ["fundamental", "momentum", "mean_reversion", "noise"],
             "beta": 300.0, "memory": 0.8, "rate": 0.3, "herding": 0.3}


def _switching_scenario(steps: int = 40, **switching):
    """The small scenario with every non-manipulator group switching among four
    strategies (one population: the same rule)."""
    scenario = small_scenario(steps=steps)
    groups = scenario.to_dict()["investors"]
    for g in groups:
        if g["strategy"] != "manipulator":
            g["switching"] = {**SWITCHING, **switching}
    return scenario.with_overrides({"investors": groups})


# -- the choice rule -------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 1.0, 250.0, 1e5])
def test_choice_probabilities_are_the_closed_form(beta):
    fitness = np.array([0.002, -0.001, 0.0005, -0.003])
    got = choice_probabilities(fitness, beta)
    # Brock and Hommes (1998): exp(beta U_h) / sum_k exp(beta U_k), written out in math.exp
    # (for the largest beta, the shifted form is the only one that does not overflow).
    shift = max(beta * u for u in fitness)
    weights = [math.exp(beta * u - shift) for u in fitness]
    expected = [w / sum(weights) for w in weights]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-300)
    assert got.sum() == pytest.approx(1.0)
    assert DiscreteChoice(strategies=["a", "b", "c", "d"], beta=beta).probabilities(
        fitness).tolist() == got.tolist()
    if beta == 0.0:
        assert got.tolist() == [0.25] * 4


def test_revisions_happen_at_rate_and_pick_by_the_closed_form():
    """One population facing fixed fitness: over many steps the share of revisions is
    `rate`, and a revising investor not herding picks each strategy with the closed-form
    probability; herding copies what another member used (frequencies within 4 standard
    errors)."""
    model = WallStreetFedsModel(_switching_scenario(steps=10, rate=0.4, herding=0.25,
                                                    beta=400.0))
    board = model.switching
    group = board.groups[0]
    fitness = np.array([0.003, 0.0, -0.002, 0.001])
    rule = group.rule
    expected = rule.probabilities(fitness)
    counts, steps = np.zeros(4), 3000
    names = list(rule.strategies)
    for _ in range(steps):
        group.fitness[:] = fitness
        # Everyone back on one strategy before each step: herding then copies momentum,
        # and only a choice by fitness can leave it.
        for m in group.members:
            m.switch_to("momentum")
        board.revise()
        for m in group.members:
            if m.strategy != "momentum":
                counts[names.index(m.strategy)] += 1
    n = len(group.members) * steps
    # P(leaving momentum) = rate * (1 - herding) * (1 - P(momentum)): herding copies a
    # member who uses momentum (all of them do at the start of each step).
    p_leave = rule.params.rate * (1 - rule.params.herding) * (1 - expected[1])
    left = counts.sum()
    assert abs(left / n - p_leave) < 4 * math.sqrt(p_leave * (1 - p_leave) / n)
    others = [0, 2, 3]
    p_cond = expected[others] / expected[others].sum()
    freq = counts[others] / left
    for f, p in zip(freq, p_cond, strict=True):
        assert abs(f - p) < 4 * math.sqrt(p * (1 - p) / left)


def test_fitness_is_the_memory_weighted_mean_return_of_wealth_if_sold():
    model = WallStreetFedsModel(_switching_scenario(steps=10))
    board: Switchboard = model.switching
    group = board.groups[0]
    for _ in range(3):
        model.step()
    wealth = model.marks.values["wealth_if_sold"][board._rows].copy()
    fitness = group.fitness.copy()
    model.step()
    # The strategies used in the step: those after its revisions (made before anyone acts).
    active = board.active
    now = model.marks.values["wealth_if_sold"][board._rows]
    memory = group.rule.params.memory
    for k, name in enumerate(group.rule.strategies):
        code = board.names.index(name)
        users = active == code
        if not users.any():
            assert group.fitness[k] == fitness[k]
            continue
        mean = float(np.mean(now[users] / wealth[users] - 1.0))
        assert group.fitness[k] == pytest.approx(memory * fitness[k] + (1 - memory) * mean,
                                                 rel=1e-12, abs=1e-18)


# -- the schema ------------------------------------------------------------------------------


@pytest.mark.parametrize(("switching", "message"), [
    ({"strategies": ["fundamental", "astrology"]}, "not registered"),
    ({"strategies": ["fundamental", "manipulator"]}, "cannot switch"),
    ({"strategies": ["momentum", "noise"]}, "must be among"),
    ({"strategies": ["fundamental", "fundamental"]}, "once"),
    ({"strategies": ["fundamental", "noise"], "beta": -1}, "beta"),
    ({"strategies": ["fundamental", "noise"], "memory": 1.0}, "memory"),
    ({"strategies": ["fundamental", "noise"], "rate": 0}, "rate"),
])
def test_nonsense_switching_is_refused(switching, message):
    scenario = small_scenario()
    groups = scenario.to_dict()["investors"]
    groups[0]["switching"] = {"kind": "discrete_choice", **switching}
    assert groups[0]["strategy"] == "fundamental"
    with pytest.raises(ScenarioError, match=message) as err:
        scenario.with_overrides({"investors": groups})
    assert "investors[0].switching" in str(err.value)


def test_herding_needs_a_second_investor_in_the_population():
    """Herding meets another member of the population, the groups with an equal rule: a
    lone investor is refused unless another group shares its rule."""
    scenario = small_scenario()
    groups = scenario.to_dict()["investors"]
    rule = {"kind": "discrete_choice", "strategies": ["fundamental", "noise"], "herding": 0.5}
    for g in groups:
        g.pop("switching", None)
    lone = [i for i, g in enumerate(groups) if g["strategy"] in ("fundamental", "noise")][:2]
    groups[lone[0]].update(count=1, switching=rule)
    with pytest.raises(ScenarioError, match="herding copies another investor of the population"):
        scenario.with_overrides({"investors": groups})
    groups[lone[1]].update(count=1, switching={**rule, "herding": 0.4})  # another rule
    with pytest.raises(ScenarioError, match="herding"):
        scenario.with_overrides({"investors": groups})
    groups[lone[1]].update(switching=rule)  # the same rule: a population of two
    model = WallStreetFedsModel(scenario.with_overrides({"investors": groups}))
    (population,) = model.switching.groups
    assert len(population.members) == 2


# -- runs ------------------------------------------------------------------------------------


def test_none_is_the_default_and_gives_the_same_tables():
    scenario = small_scenario(steps=20)
    groups = scenario.to_dict()["investors"]
    assert all(g["switching"] == {"kind": "none"} for g in groups)
    plain = simulate(scenario, counterfactual=False)
    for g in groups:
        g["switching"] = "none"
    named = simulate(scenario.with_overrides({"investors": groups}), counterfactual=False)
    for table in ("model", "agents", "rounds", "events"):
        pd.testing.assert_frame_equal(getattr(plain, table), getattr(named, table),
                                      check_exact=True)
    assert not any(c.startswith("strategy_share_") for c in plain.model.columns)


def test_a_switching_run_is_reproducible_by_seed_and_keeps_the_books():
    scenario = _switching_scenario(steps=40)
    # check=True: the ledger, the accounting identity and every investor's holdings are
    # proven after every step.
    first = simulate(scenario, check=True, counterfactual=False)
    again = simulate(scenario, counterfactual=False)
    for table in ("model", "agents", "rounds", "events"):
        pd.testing.assert_frame_equal(getattr(first, table), getattr(again, table),
                                      check_exact=True)
    other = simulate(scenario.with_overrides({"seed": 2}), counterfactual=False)
    assert not first.model.equals(other.model)
    shares = first.model[[c for c in first.model.columns if c.startswith("strategy_share_")]]
    assert set(shares.columns) == {f"strategy_share_{s}"
                                   for s in [*SWITCHING["strategies"], "manipulator"]}
    # Shares of all investors; the manipulator (1 of 13) never switches.
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    assert set(shares["strategy_share_manipulator"]) == {1 / 13}
    assert shares.nunique().max() > 1  # investors did switch
    # agents.parquet's strategy is the active one at each collected step, as the shares say.
    investors = first.agents[first.agents["agent_type"] == "investor"]
    counted = (investors.groupby(["step", "strategy"], observed=True).size()
               .unstack(fill_value=0) / len(investors["agent_id"].unique()))
    for s in SWITCHING["strategies"]:
        np.testing.assert_allclose(counted[s].to_numpy(),
                                   shares[f"strategy_share_{s}"].to_numpy())


def test_switching_draws_leave_every_other_stream_alone():
    """A switching rule that never revises in the run (the first step's revisions are
    drawn but none falls below the rate) gives the tables of a run without switching."""
    plain = small_scenario(steps=15)
    groups = plain.to_dict()["investors"]
    for g in groups:
        if g["strategy"] in ("fundamental", "momentum", "mean_reversion"):
            g["switching"] = {"kind": "discrete_choice",
                              "strategies": ["fundamental", "momentum", "mean_reversion"],
                              "rate": 1e-9}
    switching = plain.with_overrides({"investors": groups})
    a = simulate(plain, counterfactual=False)
    b = simulate(switching, counterfactual=False)
    assert set(b.model["strategy_share_momentum"]) == {3 / 13}
    share_columns = [c for c in b.model.columns if c.startswith("strategy_share_")]
    pd.testing.assert_frame_equal(a.model, b.model.drop(columns=share_columns),
                                  check_exact=True)
    for table in ("agents", "rounds", "events"):
        pd.testing.assert_frame_equal(getattr(a, table), getattr(b, table), check_exact=True)


@pytest.mark.parametrize("watchlist", [None, 2])
def test_the_fast_paths_give_the_reference_tables_with_switching(watchlist, monkeypatch):
    scenario = _switching_scenario(steps=40)
    if watchlist:
        groups = scenario.to_dict()["investors"]
        for g in groups:
            if g["strategy"] != "manipulator":
                g.update(watchlist=watchlist, activation=0.8)
        scenario = scenario.with_overrides({"investors": groups})
    _same_tables(scenario, monkeypatch)


def test_run_up_buyers_are_counted_by_the_strategy_they_used():
    """`_cash_by_class` in a switching run: each class's cash changes by what its investors
    spent while using it, and the classes add up to every agent's USD at every step."""
    from analysis.market_stats import _cash_by_class
    from analysis.runs import run_from_result

    run = run_from_result(simulate(_switching_scenario(steps=30), counterfactual=False))
    cash = _cash_by_class(run)
    total = run.agents.pivot_table(index="step", values="usd", aggfunc="sum")["usd"]
    np.testing.assert_allclose(cash.sum(axis=1), total, rtol=1e-12)
    agents = run.agents.sort_values(["agent_id", "step"])
    investors = agents[agents["agent_type"] == "investor"]
    spent = investors.groupby("agent_id")["usd"].diff()
    momentum = spent[investors["strategy"] == "momentum"].groupby(investors["step"]).sum()
    np.testing.assert_allclose(cash["momentum"].diff().iloc[1:],
                               momentum.reindex(cash.index[1:], fill_value=0.0), atol=1e-9)


def test_investor_tables_say_they_group_by_starting_strategy(tmp_path):
    """Where investors switch, `investor_pnl`'s `strategy` is each one's first collected
    strategy and `in_strategy_share` the share of its collected steps in it (checked row by
    row against agents.parquet); the report titles the table by starting strategy. Without
    switching every share is 1 and the report keeps its plain title."""
    from analysis.metrics import investor_performance, investor_pnl
    from analysis.report import render_report
    from analysis.runs import run_from_result

    run = run_from_result(simulate(_switching_scenario(steps=30), counterfactual=False))
    pnl = investor_pnl(run).set_index("agent_id")
    rows = run.agents[run.agents["agent_type"] == "investor"].sort_values(["agent_id", "step"])
    for agent_id, own in rows.groupby("agent_id"):
        labels = own["strategy"].astype(str).to_numpy()
        assert pnl.loc[agent_id, "strategy"] == labels[0]
        assert pnl.loc[agent_id, "in_strategy_share"] == pytest.approx(
            float(np.mean(labels == labels[0])))
    assert (pnl["in_strategy_share"] < 1).any()  # somebody left its starting strategy
    table = investor_performance(run).set_index("strategy")
    by_start = pnl.groupby("strategy")["in_strategy_share"].mean()
    np.testing.assert_allclose(table["in_strategy_share"], by_start.reindex(table.index))
    text = render_report(run, tmp_path, tmp_path)
    assert "## Investors by starting strategy" in text and "steps in it" in text

    plain = run_from_result(simulate(small_scenario(steps=30), counterfactual=False))
    assert (investor_pnl(plain)["in_strategy_share"] == 1.0).all()
    text = render_report(plain, tmp_path, tmp_path)
    assert "## Investors by strategy" in text and "steps in it" not in text
