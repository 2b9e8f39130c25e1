"""Client sampling: each round a seeded sample of `fl.clients_per_round` willing clients trains
(abm/model.py `_draw`, abm/agents/client.py; docs/model.md, section 7.15)."""

from __future__ import annotations

import numpy as np
import pytest

from abm.errors import ScenarioError
from abm.model import WallStreetFedsModel
from abm.run import simulate
from tests.conftest import small_scenario


def _drawn(result) -> np.ndarray:
    """Who trained, bool (rounds, clients)."""
    table = result.rounds.pivot(index="round", columns="client", values="participating")
    return table.to_numpy(dtype=bool)


def _without(value, keys):
    """`value` without the wall-clock fields `keys`, at any depth."""
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    return value


def _sampled(k: int, **more):
    return small_scenario(**{"fl.clients_per_round": k, "steps": 60, **more})


def test_each_round_draws_exactly_k_clients_reproducibly_by_seed():
    a, b = simulate(_sampled(2), counterfactual=False), simulate(_sampled(2),
                                                                counterfactual=False)
    drawn = _drawn(a)
    assert drawn.shape == (6, 4)
    assert (drawn.sum(axis=1) == 2).all()
    assert a.rounds.equals(b.rounds) and a.model.equals(b.model)
    other = _drawn(simulate(_sampled(2, seed=2), counterfactual=False))
    assert not np.array_equal(drawn, other)
    # over the rounds the sample moves: no client trains in all six, every one in some
    assert drawn.any(axis=0).all() and not drawn.all(axis=0).any()


def test_the_sample_is_a_uniform_draw_of_k_among_n():
    """The draw on its own: over 4,000 rounds each of 10 clients is drawn 3/10 of the time,
    and every pair together 3/10 x 2/9 of the time (sampling without replacement)."""
    model = WallStreetFedsModel(_sampled(3, **{"clients.0.count": 9}))
    willing = np.ones(10, dtype=bool)
    draws = np.array([model._draw(willing) for _ in range(4000)])
    assert (draws.sum(axis=1) == 3).all()
    assert draws.mean(axis=0) == pytest.approx(np.full(10, 0.3), abs=0.03)
    pair = (draws[:, 0] & draws[:, 1]).mean()
    assert pair == pytest.approx(0.3 * 2 / 9, abs=0.015)


def test_only_willing_clients_are_drawn_and_fewer_than_k_willing_all_train():
    model = WallStreetFedsModel(_sampled(3))
    willing = np.array([True, False, True, False])
    for _ in range(50):
        assert (model._draw(willing) == willing).all()
    willing = np.array([True, True, True, True])
    assert model._draw(willing).sum() == 3


def test_k_equal_to_the_number_of_clients_is_todays_run():
    every = simulate(small_scenario(), counterfactual=True)
    k_all = simulate(small_scenario(**{"fl.clients_per_round": 4}), counterfactual=True)
    for name in ("rounds", "model", "agents", "events"):
        assert getattr(every, name).equals(getattr(k_all, name)), name
    clock = ("wall_time_s", "steps_per_s", "time_by_phase_s", "twin_wall_time_s")
    assert _without(every.summary, clock) == _without(k_all.summary, clock)


def test_the_undrawn_pay_nothing_earn_nothing_and_are_no_players():
    result = simulate(_sampled(2, **{"clients.0.cost_per_round": 5.0,
                                     "market.client_cash": 100.0, "rewards.policy": "equal",
                                     "contribution.method": "shapley_exact"}),
                      counterfactual=False)
    rounds = result.rounds
    out = rounds[~rounds["participating"]]
    assert len(out) == 6 * 2
    assert (out[["contribution", "share", "reward_usd", "training_cost_usd"]] == 0).all().all()
    trained = rounds[rounds["participating"]]
    # a drawn client of the costly group paid its cost, and only then
    costly = trained["client"].isin(["c00", "c01", "c02"])
    assert (trained.loc[costly, "training_cost_usd"] == 5.0).all()
    # exact Shapley over the 2 drawn players: 2^2 coalitions per round
    assert (trained["evaluations"] == 4).all()
    # equal splits each round's budget between the two that trained
    assert trained.groupby("round")["share"].sum().to_numpy() == pytest.approx(np.ones(6))
    # no leave or join: a willing client that was not drawn stays in the federation
    assert not result.events["kind"].isin(["leave", "join"]).any()


def test_a_willing_client_not_drawn_tells_its_rule_nothing():
    """Its records hold only the rounds it was drawn in (or chose to sit out): a round it
    neither paid for nor earned in does not enter its reward-against-cost estimate."""
    model = WallStreetFedsModel(_sampled(2, **{"clients.0.participation": "net_payoff"}))
    model.run_model()
    for client in model.clients:
        assert len(client.history) == client.rounds_participated
        assert all(record.participated for record in client.history)


def test_the_twin_draws_the_same_samples():
    result = simulate(_sampled(2), counterfactual=True)
    assert np.array_equal(_drawn(result), _drawn(result.twin))


def test_more_clients_per_round_than_clients_is_refused_with_its_path():
    with pytest.raises(ScenarioError, match=r"fl\.clients_per_round.*at most 4"):
        small_scenario(**{"fl.clients_per_round": 5})
    with pytest.raises(ScenarioError, match=r"fl\.clients_per_round"):
        small_scenario(**{"fl.clients_per_round": 0})


@pytest.mark.slow
def test_two_hundred_clients_with_twenty_per_round_run_end_to_end():
    """Cross-device in small: 200 clients on synthetic data, 20 drawn per round, GTG plays a
    20-player game each round, a tenth of the clients free ride and earn nothing."""
    from abm.scenario import parse_scenario
    from bench.scale import workload

    scenario = parse_scenario(workload(200, 20, 40, 30), source="tests/test_sampling.py")
    result = simulate(scenario, counterfactual=False)
    rounds = result.rounds
    assert len(rounds) == 3 * 200
    assert (rounds.groupby("round")["participating"].sum() == 20).all()
    riders = rounds[rounds["behaviour"] == "free_rider"]
    assert riders["reward_usd"].sum() == 0.0
    assert rounds["reward_usd"].sum() > 0
