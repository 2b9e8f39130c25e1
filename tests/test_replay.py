"""The twin replays its run's learning rounds (`abm.agents.replay`) and gets the tables of a
twin that learns every round itself: while its clients train in the same rounds, and after
they stop doing so (it then catches up and learns on its own)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from abm import registry
from abm.amm import InvariantViolation
from abm.learning_log import learning_key
from abm.model import WallStreetFedsModel
from abm.run import simulate
from tests.conftest import small_scenario, with_component

#: Clients who pay to train and leave once the rewards they realise stop covering the cost:
#: the twin pays no reward, so its clients stop training where the run's go on.
COSTLY = {"clients": [
    {"count": 3, "behaviour": "honest", "cost_per_round": 60,
     "participation": {"kind": "net_payoff", "window": 1, "leave_below": 1.0,
                       "rejoin_above": 1.2},
     "cash_out": {"kind": "sell_fraction", "fraction": 0.2}},
    {"count": 1, "behaviour": "free_rider"},
], "market": {"client_cash": 400}, "steps": 50}


def _run(scenario, replay=None, check=False) -> WallStreetFedsModel:
    model = WallStreetFedsModel(scenario, replay=replay, check=check)
    model.run_for(scenario.steps)
    return model


def _assert_same_tables(a: WallStreetFedsModel, b: WallStreetFedsModel) -> None:
    pd.testing.assert_frame_equal(a.datacollector.get_model_vars_dataframe(),
                                  b.datacollector.get_model_vars_dataframe(), check_exact=True)
    pd.testing.assert_frame_equal(a.agents_dataframe(), b.agents_dataframe(), check_exact=True)
    pd.testing.assert_frame_equal(pd.DataFrame(a.round_rows), pd.DataFrame(b.round_rows),
                                  check_exact=True)
    assert a.events == b.events


@pytest.mark.parametrize(("kind", "name"), [
    (kind, name) for kind in ("method", "behaviour", "conduct")
    for name in registry.names(kind)])
def test_a_twin_in_step_with_its_run_learns_nothing_and_gets_the_same_tables(kind, name):
    # Every learning-side component, the toy ones included. GTG-Shapley draws from the
    # contribution stream: a replayed round must leave it where learning the round would have.
    scenario = with_component(small_scenario(steps=30), kind, name)
    run = _run(scenario)
    twin = _run(scenario.twin(), replay=run.federation.log)
    alone = _run(scenario.twin())
    _assert_same_tables(twin, alone)
    assert twin.federation.replayed_rounds == run.federation.rounds_done == 3
    assert twin.federation.timings == {"fl": 0.0, "contribution": 0.0, "probe": 0.0}
    assert twin.accuracy == alone.accuracy and twin.loss == alone.loss
    # what the twin learned is what it logs, round for round
    for mine, theirs in zip(twin.federation.log.rounds, alone.federation.log.rounds,
                            strict=True):
        assert mine.differences(theirs) == []


def test_a_twin_whose_clients_stop_training_catches_up_and_learns_on_its_own():
    scenario = small_scenario(**COSTLY)
    run = _run(scenario)
    twin = _run(scenario.twin(), replay=run.federation.log)
    alone = _run(scenario.twin())
    chose = [tuple(r.participants) for r in run.federation.log.rounds]
    twin_chose = [tuple(r.participants) for r in alone.federation.log.rounds]
    first = next(i for i, (a, b) in enumerate(zip(chose, twin_chose, strict=True)) if a != b)
    assert first >= 1  # the test's point: some rounds replayed, then a different choice
    assert twin.federation.replay.in_step is False
    assert twin.federation.replayed_rounds == 0  # the skipped rounds were trained after all
    _assert_same_tables(twin, alone)
    assert twin.federation.federation.round == alone.federation.federation.round
    assert twin.federation.method.rng.bit_generator.state == \
        alone.federation.method.rng.bit_generator.state


def test_a_check_run_learns_every_round_and_proves_the_log():
    scenario = small_scenario(**{"contribution.method": "gtg_shapley", "steps": 20})
    run = _run(scenario)
    twin = _run(scenario.twin(), replay=run.federation.log, check=True)
    assert twin.federation.replayed_rounds == 0
    assert twin.federation.timings["contribution"] > 0
    # a log that does not hold what the learning gives is caught at the round it lies about
    log = run.federation.log
    bad = dataclasses.replace(log.rounds[1], contributions=log.rounds[1].contributions + 1e-12)
    log.rounds[1] = bad
    with pytest.raises(InvariantViolation, match="round 2: the twin learned other contribu"):
        _run(scenario.twin(), replay=log, check=True)


def test_a_log_replays_only_into_a_scenario_that_learns_the_same():
    scenario = small_scenario(steps=10)
    log = _run(scenario).federation.log
    assert log.key == learning_key(scenario.twin())  # the budget is not the learning's
    for other in (scenario.with_overrides({"seed": 2}),
                  scenario.with_overrides({"fl.lr": 0.05}),
                  scenario.with_overrides({"contribution.method": "gtg_shapley"})):
        with pytest.raises(ValueError, match="learns differently"):
            WallStreetFedsModel(other.twin(), replay=log)


def test_simulate_reports_how_many_rounds_the_twin_replayed():
    scenario = small_scenario(steps=20, counterfactual=True)
    result = simulate(scenario)
    assert result.summary["learning_rounds_replayed"] == 0
    assert result.twin.summary["learning_rounds_replayed"] == 2
    assert result.summary["counterfactual"]["twin_rounds_replayed"] == 2
    assert result.twin.summary["time_by_phase_s"]["fl"] == 0.0
    alone = WallStreetFedsModel(scenario.twin())
    alone.run_for(scenario.steps)
    assert np.array_equal(result.twin.rounds["contribution"].to_numpy(),
                          pd.DataFrame(alone.round_rows)["contribution"].to_numpy())


def test_a_run_that_learns_as_an_earlier_one_replays_its_log():
    """A sweep point differing in market and reward parameters only (the same learning key)
    replays an earlier run's rounds, and its twin the same, with the tables of learning."""
    first = small_scenario(steps=40, **{"contribution.method": "gtg_shapley"})
    later = first.with_overrides({"rewards.policy": "dividend", "market.fee_bps": 100,
                                  "investors.0.count": 5})
    assert learning_key(later) == learning_key(first)
    log = simulate(first, counterfactual=False).learning
    reused = simulate(later, counterfactual=True, replay=log)
    alone = simulate(later, counterfactual=True)
    for mine, theirs in ((reused, alone), (reused.twin, alone.twin)):
        for name in ("model", "agents", "rounds", "events"):
            pd.testing.assert_frame_equal(getattr(mine, name), getattr(theirs, name),
                                          check_exact=True)
    assert reused.summary["learning_rounds_replayed"] == 4
    assert reused.twin.summary["learning_rounds_replayed"] == 4
    assert alone.summary["learning_rounds_replayed"] == 0
    assert reused.summary["time_by_phase_s"]["contribution"] == 0.0
    assert [row["attributable_usd"] for row in reused.summary["clients"].values()] == \
        [row["attributable_usd"] for row in alone.summary["clients"].values()]
