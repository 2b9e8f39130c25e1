"""The component registry: one declaration per component, read by everything else.

Proves that adding a component of any kind is one class in one file (tests/toy_components.py:
a scenario then validates, resolves, runs and is documented with it), that the modules
declaring parameters load neither torch nor mesa, and that the schema, the browser controls
and the reference are derived from the registry.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import tests.toy_components as toys
from abm import registry
from abm.agents.strategies import Strategy
from abm.errors import ScenarioError
from abm.run import simulate
from abm.scenario import parse_scenario
from tests.conftest import ROOT, small_scenario

KIND_NAMES = sorted(registry.KINDS)


def _python(code: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_validating_reads_every_component_without_torch_or_mesa():
    done = _python("""
        import sys
        from abm import registry
        registry.load_builtins()
        import abm.reference
        from abm.cli import main
        assert main(["validate", "scenarios/baseline.yaml"]) == 0
        assert main(["validate", "scenarios/sweeps/policy_by_method.yaml"]) == 0
        heavy = sorted(m for m in ("torch", "mesa") if m in sys.modules)
        assert not heavy, heavy
    """)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_the_cores_keep_their_import_rules():
    done = _python("""
        import sys
        import abm.fl, abm.fl.federation, abm.fl.contribution, abm.fl.data
        assert not [m for m in sys.modules if m.startswith(("mesa", "abm.amm"))]
        import abm.amm
        assert not [m for m in sys.modules if m.startswith("abm.agents")]
    """)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_every_component_is_documented_and_builds_from_its_defaults(kind):
    found = registry.components(kind)
    assert found, kind
    for name, cls in found.items():
        assert cls.name == name and cls.kind == kind
        assert len(cls.describe()) > 20, f"{kind} {name}: no one-paragraph description"
        for field, info in cls.Params.model_fields.items():
            assert info.description, f"{kind} {name}: parameter {field} has no meaning"
        if all(not info.is_required() for info in cls.Params.model_fields.values()):
            assert registry.component_of(cls.validate({})) is cls


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_the_schema_allows_exactly_the_registered_names(kind):
    k = registry.KINDS[kind]
    bad = "no_such_component"
    where = {
        "policy": {"rewards": {"policy": bad}},
        "budget": {"rewards": {"budget": {"kind": bad}}},
        "method": {"contribution": {"method": bad}},
        "dataset": {"fl": {"dataset": {"name": bad}}},
        "behaviour": {"clients": [{"count": 2, "behaviour": bad}]},
        "cash_out": {"clients": [{"count": 2, "cash_out": {"kind": bad}}]},
        "strategy": {"investors": [{"count": 2, "strategy": bad}]},
        "lp_exit": {"liquidity_providers": [{"count": 1, "exit": {"kind": bad}}]},
        "participation": {"clients": [{"count": 2, "participation": {"kind": bad}}]},
        "issuance": {"market": {"issuance": {"kind": bad}}},
        "conduct": {"clients": [{"count": 2, "conduct": {"kind": bad}}]},
        "switching": {"investors": [{"count": 2, "strategy": "noise",
                                     "switching": {"kind": bad}}]},
    }[kind]
    with pytest.raises(ScenarioError) as err:
        parse_scenario(where, source="file.yaml")
    path = k.section.replace("[i]", "[0]") + "." + k.tag
    assert f"{path} = '{bad}': allowed values are {registry.or_list(registry.names(kind))}." \
        in str(err.value)


def test_parameters_are_checked_at_validation_with_the_field_path():
    # The two examples of issue 9 (item 4): refused by `wsf validate`, not by the run.
    with pytest.raises(ScenarioError, match=r"file.yaml: a problem: contribution.params."
                       r"eps_betwen = 0.1: unknown parameter of method 'gtg_shapley'"):
        parse_scenario({"contribution": {"params": {"eps_betwen": 0.1}}}, source="file.yaml")
    with pytest.raises(ScenarioError, match=r"clients\[1\].behaviour_params.mode = "
                       r"'sideways': allowed values are 'zero', 'global' or 'noise'"):
        parse_scenario({"clients": [{"count": 2}, {"count": 1, "behaviour": "free_rider",
                                                   "behaviour_params": {"mode": "sideways"}}]},
                       source="file.yaml")
    with pytest.raises(ScenarioError, match=r"investors\[0\].params.lookback = '5': input "
                       r"should be a valid integer"):
        parse_scenario({"investors": [{"strategy": "momentum", "count": 1,
                                       "params": {"lookback": "5"}}]}, source="file.yaml")


def test_parameters_that_depend_on_the_scenario_are_checked_at_validation():
    with pytest.raises(ScenarioError, match=r"clients\[0\].behaviour_params = .*: the "
                       r"permutation maps 2 labels but digits has 10 classes"):
        parse_scenario({"clients": [{"count": 3, "behaviour": "label_flip",
                                     "behaviour_params": {"permutation": [1, 0]}}]})
    with pytest.raises(ScenarioError, match=r"investors\[0\].params = .*: target 12 names no "
                       r"client: the clients are 0 to 9"):
        parse_scenario({"investors": [{"strategy": "manipulator", "count": 1,
                                       "params": {"target": 12}}]})
    wine = parse_scenario({"fl": {"dataset": {"name": "wine"}},
                           "clients": [{"count": 3, "behaviour": "label_flip",
                                        "behaviour_params": {"permutation": [2, 0, 1]}}]})
    assert wine.clients[0].behaviour_params.permutation == [2, 0, 1]


def test_a_toy_policy_and_a_toy_method_that_refuse_the_scenario_are_refused_at_validation():
    # Kinds that did not check in before (issue 25): a policy's or a method's refusal was
    # ignored, and the scenario failed at run time or ran on.
    with pytest.raises(ScenarioError, match=r"^toys.yaml: a problem: rewards.params = "
                       r"\{\"holder_value\": 30.0\}: holder_value 30 USD is over 100 times the "
                       r"opening price \(25 USD at most\)"):
        parse_scenario({**toys.SCENARIO, "rewards": {**toys.SCENARIO["rewards"],
                                                     "params": {"holder_value": 30.0}}},
                       source="toys.yaml")
    with pytest.raises(ScenarioError, match=r"^toys.yaml: a problem: contribution.params = "
                       r"\{\"favourite\": 3\}: favourite 3 names no client: the clients are "
                       r"0 to 2.$"):
        parse_scenario({**toys.SCENARIO, "contribution": {"method": "favourite",
                                                          "params": {"favourite": 3}}},
                       source="toys.yaml")


#: Where each kind's component sits in tests/toy_components.py's scenario, as a user writes it.
TOY_SLOTS = {
    "policy": "rewards.params", "budget": "rewards.budget", "method": "contribution.params",
    "dataset": "fl.dataset", "behaviour": "clients[1].behaviour_params",
    "cash_out": "clients[0].cash_out", "strategy": "investors[0].params",
    "lp_exit": "liquidity_providers[0].exit", "participation": "clients[1].participation",
    "issuance": "market.issuance", "conduct": "clients[0].conduct",
    "switching": "investors[0].switching",
}


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_every_kind_checks_in_at_its_field_path(kind, monkeypatch):
    # One walk over the scenario's component slots asks every component, whatever its kind.
    scenario = parse_scenario(toys.SCENARIO, source="toys.yaml")
    slots = dict(scenario.component_slots())
    toy = registry.component_of(slots[TOY_SLOTS[kind]])
    assert toy.kind == kind and registry.is_builtin(toy) is False
    monkeypatch.setattr(toy, "check_in", classmethod(lambda cls, params, s: "not here"))
    with pytest.raises(ScenarioError) as err:
        parse_scenario(toys.SCENARIO, source="toys.yaml")
    assert str(err.value).startswith(f"toys.yaml: a problem: {TOY_SLOTS[kind]} = ")
    assert str(err.value).endswith(": not here.")


def test_a_component_declaring_a_malformed_event_kind_is_refused_when_defined():
    with pytest.raises(TypeError, match=r"Shouty: events must be a tuple of event kinds, each "
                       r"a lower-case word .*; got \('Pump Start',\)"):
        class Shouty(Strategy):
            """Declares an event kind no table could hold."""

            name = "shouty"
            events = ("Pump Start",)

            def decide(self, view, cash, holdings, rng):
                return []
    assert "shouty" not in registry.names("strategy")


def test_a_component_taking_a_name_already_registered_is_refused_when_defined():
    with pytest.raises(TypeError, match=r"Impostor: the investor strategy name 'momentum' is "
                       r"taken by abm.agents.strategies.Momentum"):
        class Impostor(Strategy):
            """Claims a name another strategy holds."""

            name = "momentum"

            def decide(self, view, cash, holdings, rng):
                return []
    assert registry.get("strategy", "momentum").__qualname__ == "Momentum"


def _whale_run(**overrides):
    return simulate(small_scenario(steps=10, **overrides, investors=[
        {"strategy": "whale", "count": 1, "params": {"step": 3, "token": 2}}]))


def test_an_event_kind_a_component_declares_is_recorded_and_listed():
    events = _whale_run().events
    builtin = ["round", "leave", "join", "offering_start", "offering_end", "pump_start",
               "pump_end", "dump"]
    assert events["kind"].cat.categories.tolist() == [*builtin, "whale_buy"]
    whale = events[events["kind"] == "whale_buy"]
    assert whale[["step", "client"]].astype(str).values.tolist() == [["3", "c02"]]
    # A run without the component keeps the built-in categories, in their order.
    plain = simulate(small_scenario(steps=10)).events
    assert plain["kind"].cat.categories.tolist() == builtin


def test_an_event_kind_a_component_does_not_declare_is_refused_naming_it(monkeypatch):
    monkeypatch.setattr(toys.Whale, "events", ())
    with pytest.raises(ValueError, match=r"strategy 'whale' \(Whale\) records an event of "
                       r"kind 'whale_buy' but declares only \(\): add it to the class's `events`"):
        _whale_run()


def test_resolved_scenario_shows_only_the_parameters_that_apply():
    s = parse_scenario({"fl": {"dataset": {"name": "digits"}},
                        "clients": [{"count": 2, "cash_out": {"kind": "usd_target"}}]})
    resolved = s.to_dict()
    assert resolved["fl"]["dataset"] == {"name": "digits", "n_samples": None, "image": False}
    assert resolved["clients"][0]["cash_out"] == {"kind": "usd_target", "target_usd": 1000.0}
    assert resolved["rewards"]["budget"] == {"kind": "constant", "amount": 1000.0}
    assert parse_scenario(resolved) == s


def test_switching_a_component_by_override_drops_the_old_ones_parameters():
    s = parse_scenario({"contribution": {"method": "gtg_shapley",
                                         "params": {"eps_between": 0.01}}})
    mc = s.with_overrides({"contribution.method": "shapley_mc"})
    assert mc.contribution.params == registry.get("method", "shapley_mc").Params()
    kept = s.with_overrides({"contribution.method": "shapley_mc",
                             "contribution.params.max_permutations": 50})
    assert kept.contribution.params.max_permutations == 50
    assert s.with_overrides({"seed": 4}).contribution.params.eps_between == 0.01


@pytest.mark.slow
def test_adding_a_component_of_each_kind_is_one_class_in_one_file():
    done = _python("""
        import json, sys
        import numpy as np
        import tests.toy_components as toys
        from abm import registry
        from abm.model import WallStreetFedsModel
        from abm.reference import scenario_reference
        from abm.scenario import parse_scenario
        from abm.viz.app import knobs

        scenario = parse_scenario(toys.SCENARIO, source="toys.yaml")
        resolved = scenario.to_dict()
        model = WallStreetFedsModel(scenario, check=True)   # the ledger is checked every step
        model.run_model()
        rounds = model.round_rows
        investors = [a for a in model.investors]
        lp = model.lps[0]
        reference = scenario_reference()
        print(json.dumps({
            "names": {k: list(registry.names(k)) for k in registry.KINDS},
            "resolved": resolved,
            "steps": model.steps, "running": model.running,
            "budgets": [[k, sum(r["reward_usd"] for r in rounds if r["round"] == k)]
                        for k in (1, 2, 3)],
            "shares": [r["share"] for r in rounds if r["round"] == 1],
            "participating": [[r["participating"] for r in rounds if r["round"] == k]
                              for k in (1, 2, 3)],
            "issued": [c.issued for c in model.clients],
            "supply": [model.ledger.supply(c.token) for c in model.clients],
            "first_token": [model.ledger.balance(i.account, "c00") > 0 for i in investors],
            "other_token": [model.ledger.balance(i.account, "c01") for i in investors],
            "lp_exited": lp.exited, "lp_rule": lp.strategy,
            "client_tokens": [model.ledger.balance(c.account, c.token) for c in model.clients],
            "value": model.view.fundamental_values(1.0).tolist(),
            "documented": [n for n in ("toy_policy", "even_rounds", "favourite", "blobs",
                           "halfhearted", "sell_all", "buy_first", "leave_at",
                           "every_other", "one_shot", "coin", "restless")
                           if f"`{n}`" in reference],
            "controls": list(next(k for k in knobs(scenario) if k.name == "policy").values),
        }))
    """)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    for kind, name in [("policy", "toy_policy"), ("budget", "even_rounds"),
                       ("method", "favourite"), ("dataset", "blobs"),
                       ("behaviour", "halfhearted"), ("cash_out", "sell_all"),
                       ("strategy", "buy_first"), ("lp_exit", "leave_at"),
                       ("participation", "every_other"), ("issuance", "one_shot"),
                       ("conduct", "coin"), ("switching", "restless")]:
        assert name in out["names"][kind]
        assert name in out["documented"]
    resolved = out["resolved"]
    assert resolved["fl"]["dataset"] == {"name": "blobs", "n_samples": None, "spread": 0.4}
    assert resolved["clients"][1]["behaviour_params"] == {"scale": 0.2}
    assert resolved["liquidity_providers"][0]["exit"] == {"kind": "leave_at", "step": 3}
    assert out["steps"] == 6 and out["running"] is False
    # Rounds at steps 2, 4, 6 are the budget's rounds 0, 1, 2: paid, not paid, paid.
    assert out["budgets"] == [[1, 200.0], [2, 0.0], [3, 200.0]]
    assert out["shares"] == [0.0, 1.0, 0.0]  # the favourite method credits client 1 only
    # The third client trains every other round; the others always (the default).
    assert out["participating"] == [[True, True, True], [True, True, False],
                                    [True, True, True]]
    assert resolved["clients"][1]["participation"] == {"kind": "every_other"}
    # one_shot: every client issued and sold 50 new tokens at step 1 (the supply grew).
    assert out["issued"] == [50 * 10**18] * 3
    assert all(s >= 10_000 * 10**18 + 50 * 10**18 for s in out["supply"])
    assert all(out["first_token"]) and out["other_token"] == [0, 0]
    assert out["lp_exited"] and out["lp_rule"] == "leave_at"
    # sell_all offers everything after each round (the price-impact cap sells part of it);
    # the third client keeps the default `hold` rule and its whole genesis supply.
    supply = 10_000 * 10**18
    assert all(t < supply for t in out["client_tokens"][:2])
    assert out["client_tokens"][2] == supply
    assert out["value"] == pytest.approx([0.3] * 3)  # the policy values the tokens
    assert "toy_policy" in out["controls"]
