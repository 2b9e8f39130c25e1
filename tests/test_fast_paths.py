"""Every fast path of the investors' decisions against its reference path: the same orders
(`Strategy.orders` against `Strategy.decide`) and the same tables (docs/model.md, section
7.9; abm/agents/strategies.py, "Two paths, one rule")."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abm import registry
from abm.agents.investor import Investor
from abm.agents.strategies import Fundamental, MeanReversion, Momentum, Noise, Strategy
from abm.agents.view import MarketView
from abm.amm import ONE
from abm.run import simulate
from tests.conftest import small_scenario

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
balances = st.lists(st.sampled_from([0, 1, ONE // 3, 7 * ONE, 10**21 + 17]), min_size=N,
                    max_size=N)


def _same_orders(strategy: Strategy, view, cash_units, held) -> None:
    holdings = np.array([h / ONE for h in held])
    reference = strategy.decide(view, cash_units / ONE, holdings, None)
    fast = strategy.orders(view, cash_units, lambda j: held[j], None)
    assert fast == reference


@settings(max_examples=60, deadline=None)
@given(path=st.lists(prices, min_size=1, max_size=25), held=balances,
       cash=st.sampled_from([0, 1, 123 * ONE, 10**22 + 5]), live=prices,
       policy=st.sampled_from(["buyback", "dividend", "mint", "equal"]),
       shares=st.lists(st.floats(0, 1), min_size=N, max_size=N))
def test_chartists_and_fundamentalists_give_the_reference_orders(path, held, cash, live, policy,
                                                                  shares):
    view = _view(path, policy)
    crowd = [registry.create("strategy", "fundamental", discount=[0.2, 1.0], horizon=[1, 80],
                             learning_rate=[0.1, 0.9], margin=0.05, signal_noise=0.05)
             for _ in range(5)]
    # One parameter set, one group: the investors of a scenario group share their Params.
    crowd = [Fundamental(crowd[0].params) for _ in range(5)]
    for k, s in enumerate(crowd):
        s.start(view, np.random.default_rng(k))
    view.publish_round(np.array(shares), 400.0)
    for k, s in enumerate(crowd):
        s.observe_round(view, np.random.default_rng(100 + k))
    chartists = [registry.create("strategy", "momentum", lookback=3, threshold=0.01),
                 registry.create("strategy", "mean_reversion", window=4, band=0.02)]
    for s in chartists:
        s.start(view, np.random.default_rng(0))
    for s in crowd + chartists:
        _same_orders(s, view, cash, held)
    # A trade moves one price: every fast path sees it (live prices), as decide does.
    view.trade("c1", live[1], 4_000.0)
    for s in crowd + chartists:
        _same_orders(s, view, cash, held)


def test_the_noise_trader_draws_the_same_numbers_in_blocks():
    view = _view([[1.0] * N])
    fast, reference = (registry.create("strategy", "noise", p_trade=0.7) for _ in range(2))
    rng_fast, rng_ref = np.random.default_rng(3), np.random.default_rng(3)
    held = [0, 2 * ONE, 0, 5]
    for _ in range(3 * Noise._BLOCK + 5):  # across block boundaries
        holdings = np.array([h / ONE for h in held])
        assert fast.orders(view, 50 * ONE, lambda j: held[j], rng_fast) == \
            reference.decide(view, 50.0, holdings, rng_ref)


def _reference_orders(self, view, cash_units, balance, rng):
    return Strategy.orders(self, view, cash_units, balance, rng)


def _coin_one_at_a_time(self):
    return self._clock.random()


@pytest.mark.parametrize("heterogeneous", [False, True])
def test_the_fast_paths_give_the_reference_tables(heterogeneous, monkeypatch):
    scenario = small_scenario(steps=40)
    if heterogeneous:
        groups = scenario.to_dict()["investors"]
        for g in groups:
            g.update(activation=0.6, size_dispersion=0.4)
            if g["strategy"] == "fundamental":
                g["params"].update(signal_noise=0.05, noise_dispersion=0.5,
                                   discount=[0.5, 1.0], horizon=[5.0, 60.0])
        scenario = scenario.with_overrides({"investors": groups})
    fast = simulate(scenario)
    for cls in (Fundamental, Momentum, MeanReversion, Noise):
        monkeypatch.setattr(cls, "orders", _reference_orders)
    monkeypatch.setattr(Investor, "_coin", _coin_one_at_a_time)
    reference = simulate(scenario)
    for table in ("model", "agents", "rounds", "events"):
        pd.testing.assert_frame_equal(getattr(fast, table), getattr(reference, table),
                                      check_exact=True)
