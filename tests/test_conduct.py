"""Clients that choose their conduct each round (`abm.agents.conduct`, docs/model.md 7.16):
the learning rule alone, the federation running a round's chosen behaviours, the schema's
refusals, reproducibility, the default's equality with a run without conduct, and the
incentive-compatibility expectation on the shipped scenario (measured, not assumed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from abm.agents.choice import choose
from abm.agents.conduct import ACTIONS, NOT_DRAWN, Adaptive
from abm.errors import ScenarioError
from abm.fl import Federation, load_dataset, make_behaviour, partition, split_validation
from abm.model import WallStreetFedsModel
from abm.run import simulate
from abm.scenario import load_scenario
from abm.streams import stream
from tests.conftest import ROOT, small_scenario

SHIPPED = ROOT / "scenarios" / "incentive_compatibility.yaml"


def _play(rule: Adaptive, payoffs: dict[str, float], rounds: int, seed: int = 0,
          noise: float = 0.0) -> list[str]:
    """The actions `rule` takes facing a fixed payoff table (USD per action, plus Gaussian
    noise of sd `noise`), one uniform draw per round as a client draws them."""
    rng, shocks = stream(seed, "test/conduct"), stream(seed, "test/payoffs")
    state, taken = rule.start(), []
    for _ in range(rounds):
        a = choose(rule.probabilities(state), float(rng.random()))
        action = rule.actions[a]
        taken.append(action)
        rule.learn(state, a, payoffs[action] + noise * float(shocks.normal()))
    return taken


# -- the learning rule ----------------------------------------------------------------------


def test_choose_is_the_inverse_cdf_of_the_probabilities():
    p = np.array([0.1, 0.0, 0.6, 0.3])
    assert [choose(p, u) for u in (0.0, 0.0999, 0.1, 0.69, 0.7, 0.9999)] == [0, 0, 2, 2, 3, 3]
    # rounding that leaves the cumulative sum below u picks the last action
    assert choose(np.array([0.5, 0.5 - 1e-12]), 1.0 - 1e-13) == 1


def test_every_action_is_tried_once_before_payoffs_are_compared():
    taken = _play(Adaptive(), {"honest": 5.0, "free_ride": 1.0, "label_flip": -3.0,
                               "sit_out": 0.0}, rounds=4)
    assert sorted(taken) == sorted(ACTIONS)


def test_the_first_payoff_sets_the_mean_and_later_ones_weigh_the_learning_rate():
    rule = Adaptive(learning_rate=0.25)
    state = rule.start()
    rule.learn(state, 0, 8.0)
    assert state[0, 0] == 8.0  # no pull towards the initial 0
    rule.learn(state, 0, 0.0)
    # trace 0.25 -> 0.4375: the second payoff weighs 0.25 / 0.4375
    assert state[0, 0] == pytest.approx(8.0 * (1 - 0.25 / 0.4375))
    for _ in range(200):
        rule.learn(state, 0, 4.0)
    assert state[0, 0] == pytest.approx(4.0) and state[1, 0] == pytest.approx(1.0)


def test_probabilities_are_a_softmax_of_the_means_mixed_with_exploration():
    rule = Adaptive(temperature=2.0, exploration=0.2, actions=["honest", "free_ride"])
    state = np.array([[4.0, 0.0], [1.0, 1.0]])
    p = rule.probabilities(state)
    odds = np.exp(2.0)
    assert p == pytest.approx([0.8 * odds / (1 + odds) + 0.1, 0.8 / (1 + odds) + 0.1])
    # huge payoffs do not overflow
    assert rule.probabilities(np.array([[1e9, -1e9], [1.0, 1.0]])) == pytest.approx([0.9, 0.1])


@pytest.mark.parametrize(("payoffs", "best"), [
    ({"honest": 5.0, "free_ride": 8.0, "label_flip": -3.0, "sit_out": 0.0}, "free_ride"),
    ({"honest": 60.0, "free_ride": -1.0, "label_flip": -20.0, "sit_out": 0.0}, "honest"),
    ({"honest": -20.0, "free_ride": -1.0, "label_flip": -20.0, "sit_out": 0.0}, "sit_out"),
])
@pytest.mark.parametrize("noise", [0.0, 2.0])
def test_facing_a_fixed_payoff_table_it_converges_to_the_best_action(payoffs, best, noise):
    rule = Adaptive(temperature=0.5, exploration=0.04, learning_rate=0.2)
    taken = _play(rule, payoffs, rounds=600, noise=noise)
    late = taken[-300:]
    share = late.count(best) / len(late)
    # The limit: the rule's probabilities at the true mean payoffs.
    limit = rule.probabilities(np.array([[payoffs[a] for a in ACTIONS], [1.0] * 4]))
    assert limit[ACTIONS.index(best)] == max(limit) > 0.85
    assert max(set(late), key=late.count) == best
    # within 4 binomial standard deviations of the limit (noise blurs the means a little)
    sd = np.sqrt(limit[ACTIONS.index(best)] * (1 - limit[ACTIONS.index(best)]) / len(late))
    assert abs(share - limit[ACTIONS.index(best)]) < 4 * sd + (0.05 if noise else 0.0), share


def test_the_same_seed_takes_the_same_actions_and_another_seed_others():
    payoffs = {"honest": 1.0, "free_ride": 1.5, "label_flip": 0.5, "sit_out": 0.0}
    rule = Adaptive(temperature=5.0)  # near-indifferent: the draws decide
    assert _play(rule, payoffs, 100, seed=3) == _play(rule, payoffs, 100, seed=3)
    assert _play(rule, payoffs, 100, seed=3) != _play(rule, payoffs, 100, seed=4)


# -- the federation runs the round's chosen behaviour --------------------------------------


def _federation(behaviours: list[str]) -> Federation:
    rng = np.random.default_rng(0)
    data = load_dataset("digits", rng=rng, n_samples=400)
    train, val = split_validation(data, 0.2, rng)
    parts = partition(train.y, len(behaviours), scheme="iid", rng=rng)
    fed = Federation(train, parts, val, behaviours, model="logreg", seed=5)
    fed._reference_training = True  # one path for every client: exact comparisons
    return fed


def test_a_round_override_runs_that_behaviour_for_that_round_only():
    honest = _federation(["honest"] * 3)
    fixed = _federation(["honest", "honest", "label_flip"])
    # Round 1: client 1 free-rides, client 2 flips its labels; round 2: all honest.
    chosen = _federation(["honest"] * 3)
    first = chosen.run_round(behaviours={1: make_behaviour("free_rider"),
                                         2: make_behaviour("label_flip")})
    assert first.behaviours == ("honest", "free_rider", "label_flip")
    assert not first.updates[1].any()
    reference = honest.run_round()
    flipped = fixed.run_round()
    assert torch_equal(first.updates[0], reference.updates[0])
    # a flipped round trains on the labels a fixed label_flip client trains on
    assert torch_equal(first.updates[2], flipped.updates[2])
    second = chosen.run_round()
    assert second.behaviours == ("honest",) * 3
    # every client's update depends on the round and its own labels only
    honest.params = second.prev_params
    assert torch_equal(second.updates[0], honest.client_update(0))


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_a_round_override_must_name_a_client_and_a_behaviour():
    fed = _federation(["honest"] * 2)
    with pytest.raises(ValueError, match="behaviours must map client indices 0 to 1"):
        fed.run_round(behaviours={2: make_behaviour("free_rider")})
    with pytest.raises(ValueError, match="behaviours must map"):
        fed.run_round(behaviours={0: "free_rider"})


# -- the scenario --------------------------------------------------------------------------


def _adaptive(**conduct) -> dict:
    return {"count": 2, "behaviour": "honest", "cost_per_round": 20,
            "conduct": {"kind": "adaptive", **conduct}}


def test_the_schema_refuses_what_an_adaptive_client_cannot_be():
    base = small_scenario()
    cases = [
        ({"behaviour": "label_flip"}, "must train on its true labels"),
        ({"participation": {"kind": "net_payoff"}}, "participation must be 'always'"),
    ]
    for extra, message in cases:
        with pytest.raises(ScenarioError, match=message):
            base.with_overrides({"clients": [{**_adaptive(), **extra}, {"count": 2}]})
    with pytest.raises(ScenarioError, match="each action may be listed once"):
        base.with_overrides({"clients": [_adaptive(actions=["honest", "honest"]),
                                         {"count": 2}]})
    with pytest.raises(ScenarioError, match="actions"):
        base.with_overrides({"clients": [_adaptive(actions=["honest"]), {"count": 2}]})


def _tables(model: WallStreetFedsModel) -> dict[str, pd.DataFrame]:
    return {"model": model.datacollector.get_model_vars_dataframe(),
            "agents": model.agents_dataframe(), "rounds": pd.DataFrame(model.round_rows),
            "events": pd.DataFrame(model.events)}


def _run(scenario) -> WallStreetFedsModel:
    model = WallStreetFedsModel(scenario)
    model.run_for(scenario.steps)
    return model


def test_fixed_conduct_is_the_run_without_conduct_and_records_the_behaviour():
    scenario = small_scenario()
    explicit = scenario.with_overrides({"clients.0.conduct": "fixed",
                                        "clients.1.conduct": {"kind": "fixed"}})
    a, b = _run(scenario), _run(explicit)
    for name, table in _tables(a).items():
        pd.testing.assert_frame_equal(table, _tables(b)[name], check_exact=True)
    rounds = _tables(a)["rounds"]
    assert (rounds["action"] == rounds["behaviour"]).all()


def test_a_conduct_that_always_trains_honestly_runs_the_fixed_clients_run():
    # The toy `coin` conduct never flipping: the adaptive path (one draw per round, the
    # action's cost, no override) must give the tables of fixed honest clients.
    scenario = small_scenario().with_overrides({"clients.0.cost_per_round": 5,
                                                "market.client_cash": 100})
    coin = scenario.with_overrides({"clients.0.conduct": {"kind": "coin", "flip": 0.0}})
    fixed, chosen = _tables(_run(scenario)), _tables(_run(coin))
    for name in ("model", "agents", "events"):
        pd.testing.assert_frame_equal(fixed[name], chosen[name], check_exact=True)
    pd.testing.assert_frame_equal(fixed["rounds"], chosen["rounds"], check_exact=True)


def test_adaptive_runs_are_reproducible_by_seed_and_record_their_actions():
    scenario = load_scenario(SHIPPED).with_overrides({"steps": 30, "counterfactual": False})
    one, two = simulate(scenario), simulate(scenario)
    for name in ("model", "agents", "rounds", "events"):
        pd.testing.assert_frame_equal(getattr(one, name), getattr(two, name),
                                      check_exact=True)
    assert one.summary["conduct"] == two.summary["conduct"]
    other = simulate(scenario.with_overrides({"seed": 2}))
    adaptive = one.rounds["client"].isin(["c02", "c03", "c04", "c05"])
    assert set(one.rounds.loc[adaptive, "action"].astype(str)) <= set(ACTIONS)
    assert (one.rounds.loc[~adaptive, "action"] == "honest").all()
    assert list(one.rounds["action"]) != list(other.rounds["action"])
    counts = one.summary["conduct"]["actions"]
    assert sorted(counts) == ["c02", "c03", "c04", "c05"]
    assert all(sum(c.values()) == 15 for c in counts.values())
    # a client that sat out trained nothing and paid nothing
    out = one.rounds[one.rounds["action"] == "sit_out"]
    assert not out["participating"].any() and (out["training_cost_usd"] == 0).all()
    ride = one.rounds[(one.rounds["action"] == "free_ride") & one.rounds["participating"]]
    assert (ride["training_cost_usd"] == 1.0).all()  # 0.05 x 20 USD


@pytest.mark.parametrize("sampling", [{}, {"fl.clients_per_round": 3}])
def test_the_twin_replays_its_runs_rounds_only_while_the_actions_match(sampling):
    # The twin (no reward) learns other payoffs, so its actions part from the run's; the
    # replayed twin must equal a twin that learns every round itself, with client sampling
    # too (the twin draws the same samples, 7.15).
    scenario = load_scenario(SHIPPED).with_overrides({"steps": 30, "counterfactual": False,
                                                      **sampling})
    run = simulate(scenario)
    replayed = simulate(scenario.twin(), replay=run.learning)
    alone = simulate(scenario.twin())
    for name in ("model", "agents", "rounds", "events"):
        pd.testing.assert_frame_equal(getattr(replayed, name), getattr(alone, name),
                                      check_exact=True)
    # Common random numbers: the first round's choice knows no payoff yet, so the twin
    # takes the run's actions there; the payoffs part them later.
    by_round = [(r.groupby("round")["action"].apply(lambda a: list(a.astype(str))))
                for r in (run.rounds, alone.rounds)]
    assert by_round[0][1] == by_round[1][1]
    assert any(by_round[0][k] != by_round[1][k] for k in by_round[0].index)


def test_a_summary_without_adaptive_clients_has_no_honest_share():
    result = simulate(small_scenario(steps=20))
    assert result.summary["conduct"] == {"honest_share_last_quarter": None, "actions": {},
                                         "rounds_not_drawn": {}}


# -- with client sampling (docs/model.md, 7.15) ----------------------------------------------


def test_a_sampled_round_invites_k_clients_and_only_the_invited_choose():
    scenario = load_scenario(SHIPPED).with_overrides(
        {"steps": 30, "counterfactual": False, "fl.clients_per_round": 3})
    one, two = simulate(scenario), simulate(scenario)
    for name in ("model", "agents", "rounds", "events"):
        pd.testing.assert_frame_equal(getattr(one, name), getattr(two, name),
                                      check_exact=True)
    rounds = one.rounds.assign(action=one.rounds["action"].astype(str))
    adaptive = rounds["client"].isin(["c02", "c03", "c04", "c05"])
    # Every client is available (fixed ones `always`, adaptive ones by their rule), so each
    # round invites exactly 3: those that train plus the invited adaptive ones that sat out.
    invited = rounds["participating"] | (adaptive & (rounds["action"] == "sit_out"))
    assert (invited.groupby(rounds["round"]).sum() == 3).all()
    missed = rounds[adaptive & (rounds["action"] == NOT_DRAWN)]
    assert len(missed) and not missed["participating"].any()
    assert (missed[["training_cost_usd", "reward_usd", "contribution"]] == 0).all().all()
    assert not (~adaptive & (rounds["action"] == NOT_DRAWN)).any()  # fixed: its behaviour
    conduct = one.summary["conduct"]
    for client in ("c02", "c03", "c04", "c05"):
        mine = rounds[rounds["client"] == client]
        assert sum(conduct["actions"][client].values()) == int((mine["action"] != NOT_DRAWN).sum())
        assert conduct["rounds_not_drawn"][client] == int((mine["action"] == NOT_DRAWN).sum())
    # the honest share reads the choices made, not the rounds a client was left out of
    tail = rounds[adaptive & (rounds["round"] > 15 - 4) & (rounds["action"] != NOT_DRAWN)]
    assert conduct["honest_share_last_quarter"] == float((tail["action"] == "honest").mean())


def test_a_sample_of_every_client_is_the_run_without_sampling_with_adaptive_clients():
    scenario = load_scenario(SHIPPED).with_overrides({"steps": 30, "counterfactual": False})
    alone, sampled = simulate(scenario), simulate(scenario.with_overrides(
        {"fl.clients_per_round": 6}))
    for name in ("model", "agents", "rounds", "events"):
        pd.testing.assert_frame_equal(getattr(alone, name), getattr(sampled, name),
                                      check_exact=True)


# -- incentive compatibility, measured -------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_equal_pay_makes_free_riding_dominate_and_contribution_pay_honest_training(seed):
    """Measured on scenarios/incentive_compatibility.yaml (50 rounds, reward 500 USD per
    round against 20 USD of cost): seeds 1 and 2 gave honest shares in the last quarter of
    0.02 and 0.10 under `equal`, 0.94 and 0.96 under `direct` with GTG-Shapley (carry)."""
    scenario = load_scenario(SHIPPED).with_overrides({"seed": seed, "counterfactual": False})
    equal = simulate(scenario.with_overrides({"rewards.policy": "equal"}))
    direct = simulate(scenario)
    last = equal.rounds[equal.rounds["round"] > 37]
    adaptive = last[last["client"].isin(["c02", "c03", "c04", "c05"])]
    assert adaptive["action"].value_counts().idxmax() == "free_ride"
    assert equal.summary["conduct"]["honest_share_last_quarter"] < 0.25
    assert direct.summary["conduct"]["honest_share_last_quarter"] > 0.85


# -- the report ------------------------------------------------------------------------------


def test_the_report_tells_what_the_adaptive_clients_chose(tmp_path):
    from abm.run_folder import write_run
    from analysis.metrics import conduct_actions
    from analysis.report import write_report
    from analysis.runs import load_run

    scenario = load_scenario(SHIPPED).with_overrides({"steps": 30, "counterfactual": False})
    folder = tmp_path / "ic"
    write_run(simulate(scenario), folder)
    run = load_run(folder)
    table = conduct_actions(run)
    counts = run.summary["conduct"]["actions"]
    # every choice of every adaptive client is counted once, by the action it was
    per_action = {a: sum(c.get(a, 0) for c in counts.values()) for a in ACTIONS}
    assert dict(zip(table["action"], table["chosen"], strict=True)) == {
        a: n for a, n in per_action.items() if n}
    assert list(table["action"]) == [a for a in ACTIONS if per_action[a]]
    assert table["share_pct"].sum() == pytest.approx(100.0)
    assert table["share_last_quarter_pct"].sum() == pytest.approx(100.0)
    honest = table.set_index("action").loc["honest", "share_last_quarter_pct"]
    assert honest == pytest.approx(100.0 * run.summary["conduct"]["honest_share_last_quarter"])
    # the payoff the clients learn from: reward if sold minus the action's cost
    mine = run.rounds[run.rounds["client"].isin(list(counts))]
    ride = mine[mine["action"] == "free_ride"]
    if len(ride):
        expected = float((ride["reward_if_sold_usd"] - ride["training_cost_usd"]).mean())
        assert table.set_index("action").loc["free_ride", "mean_payoff_usd"] == expected
    text = write_report(folder).read_text(encoding="utf-8")
    assert "## Conduct: what the adaptive clients chose" in text
    assert f"{100.0 * run.summary['conduct']['honest_share_last_quarter']:.1f} % of their " \
           "choices were honest training" in text
    assert "](figures/actions.png)" in text
    assert (folder / "figures" / "actions.png").stat().st_size > 10_000
