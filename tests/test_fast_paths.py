"""Every fast path of the market loop and the collection against its reference path: the
same orders (`Strategy.orders` against `Strategy.decide`), the same activation order
(`WallStreetFedsModel._activate` against Mesa's `shuffle_do`) and the same tables with every
reference path at once (`Investor.execute_reference`, the marks converted without reuse,
the full pass of `Market.mark_accounts` instead of the incremental `MarkBook`);
docs/model.md, section 7.9; abm/agents/strategies.py, "Two paths, one rule";
docs/performance.md, "The market loop").

Parametrised over every registered policy and strategy (the toy ones of
tests/toy_components.py included), so that a new one is held to the same paths: a policy's
`token_value` must be elementwise (the fundamental groups recompute one token at a time)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abm import collect, registry
from abm.agents.investor import Investor
from abm.agents.strategies import Fundamental, Noise, Strategy
from abm.agents.view import MarketView
from abm.amm import ONE, InvariantViolation
from abm.model import WallStreetFedsModel
from abm.rewards import DirectPolicy, RewardPolicy
from abm.run import simulate
from abm.scenario import load_scenario
from tests.conftest import ROOT, small_scenario

POLICIES = registry.names("policy")
STRATEGIES = registry.names("strategy")

N = 4


def _view(prices_path, policy="buyback") -> MarketView:
    v = MarketView(tokens=[f"c{i}" for i in range(N)], policy=registry.create("policy", policy),
                   round_every=10, round_continuation=0.9)
    v.share_signal = np.full(N, 1 / N)
    v.last_shares = np.zeros(N)
    v.last_budget = 400.0
    for step, prices in enumerate(prices_path):
        v.update(step, np.array(prices), np.full(N, 10_000.0), np.full(N, 5_000.0))
    return v


prices = st.lists(st.floats(0.05, 5.0), min_size=N, max_size=N)
#: A watchlist (ascending token indices) or None (every token).
watchlists = st.one_of(st.none(), st.lists(st.integers(0, N - 1), min_size=1, max_size=N,
                                           unique=True).map(sorted))
balances = st.lists(st.sampled_from([0, 1, ONE // 3, 7 * ONE, 10**21 + 17]), min_size=N,
                    max_size=N)


def _same_orders(strategy: Strategy, view, cash_units, held) -> None:
    holdings = np.array([h / ONE for h in held])
    reference = strategy.decide(view, cash_units / ONE, holdings, None)
    fast = strategy.orders(view, cash_units, {j: h for j, h in enumerate(held) if h}, None)
    assert fast == reference


@settings(max_examples=80, deadline=None)
@given(path=st.lists(prices, min_size=1, max_size=25), held=balances,
       cash=st.sampled_from([0, 1, 123 * ONE, 10**22 + 5]), live=prices,
       policy=st.sampled_from(POLICIES),
       shares=st.lists(st.floats(0, 1), min_size=N, max_size=N),
       watches=st.one_of(st.just([None] * 7), st.lists(watchlists, min_size=7, max_size=7)))
def test_chartists_and_fundamentalists_give_the_reference_orders(path, held, cash, live, policy,
                                                                  shares, watches):
    # `watches`: every investor's watchlist (none at all, or each its own, some None: a
    # group follows watchlists or not, but chartists of two groups share one chart); the
    # holdings may include unwatched tokens, which neither path trades.
    view = _view(path, policy)
    crowd = [registry.create("strategy", "fundamental", discount=[0.2, 1.0], horizon=[1, 80],
                             learning_rate=[0.1, 0.9], margin=0.05, signal_noise=0.05)
             for _ in range(5)]
    # One parameter set, one group: the investors of a scenario group share their Params.
    crowd = [Fundamental(crowd[0].params) for _ in range(5)]
    chartists = [registry.create("strategy", "momentum", lookback=3, threshold=0.01),
                 registry.create("strategy", "mean_reversion", window=4, band=0.02)]
    for s, watch in zip(crowd + chartists, watches, strict=True):
        s.follow(watch)
    for k, s in enumerate(crowd):
        s.start(view, np.random.default_rng(k))
    view.publish_round(np.array(shares), 400.0)
    for k, s in enumerate(crowd):
        s.observe_round(view, np.random.default_rng(100 + k))
    for s in chartists:
        s.start(view, np.random.default_rng(0))
    for s in crowd + chartists:
        _same_orders(s, view, cash, held)
    # A trade moves one price: every fast path sees it (live prices), as decide does; the
    # groups recompute only the traded token's entries (incrementally, trade after trade).
    for k, token in enumerate((1, 1, 3, 0, 1)):
        view.trade(f"c{token}", live[token] * (1 + 0.03 * k), 4_000.0 + k)
        for s in crowd + chartists:
            _same_orders(s, view, cash, held)


@pytest.mark.parametrize("watch", [None, [1, 3]])
def test_the_noise_trader_draws_the_same_numbers_in_blocks(watch):
    view = _view([[1.0] * N])
    fast, reference = (registry.create("strategy", "noise", p_trade=0.7) for _ in range(2))
    fast.follow(watch)
    reference.follow(watch)
    rng_fast, rng_ref = np.random.default_rng(3), np.random.default_rng(3)
    held = [0, 2 * ONE, 0, 5]
    for _ in range(3 * Noise._BLOCK + 5):  # across block boundaries
        holdings = np.array([h / ONE for h in held])
        assert fast.orders(view, 50 * ONE, {1: 2 * ONE, 3: 5}, rng_fast) == \
            reference.decide(view, 50.0, holdings, rng_ref)


def _reference_orders(self, view, cash_units, held, rng):
    return Strategy.orders(self, view, cash_units, held, rng)


def _coin_one_at_a_time(self):
    return self._clock.random()


def _reference_floats(units, before, floats):
    return [u / ONE for u in units]


def _reference_paths(monkeypatch) -> None:
    """Every fast path of the market loop and the collection replaced by its reference."""
    for cls in registry.components("strategy").values():
        if "orders" in cls.__dict__:
            monkeypatch.setattr(cls, "orders", _reference_orders)
    monkeypatch.setattr(Investor, "_coin", _coin_one_at_a_time)
    monkeypatch.setattr(Investor, "execute", Investor.execute_reference)
    monkeypatch.setattr(WallStreetFedsModel, "_activate",
                        lambda model: model.market_agents.shuffle_do("act"))
    monkeypatch.setattr(collect, "_floats", _reference_floats)
    monkeypatch.setattr(collect.AgentMarks, "valuations",
                        collect.AgentMarks.valuations_reference)


def _same_tables(scenario, monkeypatch) -> None:
    # The fast run also proves, after every step, the ledger, the accounting identity and
    # every investor's `held` against its ledger balances (`check=True`).
    fast = simulate(scenario, check=True, counterfactual=False)
    with monkeypatch.context() as patch:
        _reference_paths(patch)
        reference = simulate(scenario, counterfactual=False)
    for table in ("model", "agents", "rounds", "events"):
        pd.testing.assert_frame_equal(getattr(fast, table), getattr(reference, table),
                                      check_exact=True)


@pytest.mark.parametrize("variant", ["defaults", "heterogeneous", "tight_limits", "watchlist"])
def test_the_fast_paths_give_the_reference_tables(variant, monkeypatch):
    scenario = small_scenario(steps=40)
    groups = scenario.to_dict()["investors"]
    for g in groups:
        if variant == "heterogeneous":
            g.update(activation=0.6, size_dispersion=0.4)
            if g["strategy"] == "fundamental":
                g["params"].update(signal_noise=0.05, noise_dispersion=0.5,
                                   discount=[0.5, 1.0], horizon=[5.0, 60.0])
        elif variant == "tight_limits":
            # The position limit binds often: the exact wealth, the estimates around it.
            g.update(max_position=0.12, max_trade=0.5)
        elif variant == "watchlist" and registry.get("strategy", g["strategy"]).follows_watchlist:
            # Each investor follows 2 of the 4 tokens, under a binding position limit (the
            # wealth of its watched tokens); fundamental investors with noise (the beliefs
            # of their watched tokens).
            g.update(watchlist=2, max_position=0.3, activation=0.8)
            if g["strategy"] == "fundamental":
                g["params"].update(signal_noise=0.05, discount=[0.5, 1.0])
    scenario = scenario.with_overrides({"investors": groups})
    _same_tables(scenario, monkeypatch)


@pytest.mark.parametrize("policy", POLICIES)
def test_the_fast_paths_give_the_reference_tables_under_every_policy(policy, monkeypatch):
    _same_tables(small_scenario(steps=20, **{"rewards.policy": policy}), monkeypatch)


@pytest.mark.parametrize(("strategy", "watchlist"), [
    *((s, None) for s in STRATEGIES),
    # A watchlist for every strategy that follows one (a group of another refuses it).
    *((s, 2) for s in STRATEGIES if registry.get("strategy", s).follows_watchlist)])
def test_the_fast_paths_give_the_reference_tables_with_every_strategy(strategy, watchlist,
                                                                     monkeypatch):
    scenario = small_scenario(steps=20)
    groups = [*scenario.to_dict()["investors"], {"strategy": strategy, "count": 3, "cash": 800,
                                                 "watchlist": watchlist}]
    _same_tables(scenario.with_overrides({"investors": groups}), monkeypatch)


def _not_elementwise(policy: RewardPolicy) -> str | None:
    """Why `policy.token_value` is not elementwise, or None: the fundamental groups value
    every token with (n,) market arrays and (k, n) flows, then one traded token with that
    token's figures as scalars and its (k,) flows (`_Crowd.gaps`); the two must agree to the
    last bit."""
    rng = np.random.default_rng(7)
    pooled, prices = rng.uniform(1e3, 1e5, N), rng.uniform(0.05, 5.0, N)
    supply, flows = pooled + rng.uniform(0.0, 1e5, N), rng.uniform(0.0, 1e4, (3, N))
    whole = np.broadcast_to(policy.token_value(pooled * prices, supply, pooled, prices, flows),
                            flows.shape)
    by_token = np.ascontiguousarray(flows.T)
    for j in range(N):
        p, o = prices[j], pooled[j]
        alone = np.broadcast_to(policy.token_value(o * p, supply[j], o, p, by_token[j]), (3,))
        if not np.array_equal(alone, whole[:, j]):
            return f"token {j}: {alone} alone, {whole[:, j]} among all"
    return None


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_values_tokens_elementwise(policy):
    assert _not_elementwise(registry.create("policy", policy)) is None


def test_a_policy_that_values_tokens_together_is_caught():
    class Pooled(DirectPolicy):  # no `name`: not registered
        """Values every token at the average reserve per token of all of them."""

        def token_value(self, reserve_usd, supply, pooled, prices, flow):
            return np.sum(reserve_usd) / np.sum(supply) + 0 * flow

    assert _not_elementwise(Pooled()) is not None


@pytest.mark.parametrize(("name", "steps"), [("baseline", 25), ("speculative", 25)])
def test_the_fast_paths_give_the_reference_tables_of_shipped_scenarios(name, steps,
                                                                       monkeypatch):
    scenario = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    _same_tables(scenario.with_overrides({"steps": steps}), monkeypatch)


def test_agents_act_in_the_order_shuffle_do_draws():
    orders = []
    for reference in (False, True):
        model = WallStreetFedsModel(small_scenario(steps=10))
        acted: list[int] = []
        for agent in model.market_agents:
            agent.act = lambda a=agent, acted=acted: acted.append(a.unique_id)
        for _ in range(3):
            if reference:
                model.market_agents.shuffle_do("act")
            else:
                model._activate()
        orders.append(acted)
    assert orders[0] == orders[1]
    assert len(set(orders[0][:len(model.market_agents)])) == len(model.market_agents)


def test_a_changed_balance_outside_its_own_swaps_is_caught():
    model = WallStreetFedsModel(small_scenario(steps=10), check=True)
    model.step()
    investor = model.investors[0]
    model.ledger.mint(investor.account, model.client_ids[0], ONE)
    with pytest.raises(InvariantViolation, match="holdings"):
        investor.check_holdings()
