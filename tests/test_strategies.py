"""Investor strategies decide from the public view; parameters are checked when built."""

from __future__ import annotations

import numpy as np
import pytest

from abm import registry
from abm.agents.strategies import Order
from abm.agents.view import MarketView

STRATEGIES = registry.names("strategy")


def make_strategy(name, **params):
    return registry.create("strategy", name, **params)


def _view(policy="buyback", prices=(1.0, 1.0, 1.0)) -> MarketView:
    # Continuation 10/11: the market expects 10 / 11 / (1 / 11) = 10 more rounds.
    v = MarketView(tokens=["c0", "c1", "c2"], policy=registry.create("policy", policy),
                   round_every=10, round_continuation=10 / 11)
    v.share_signal = np.full(3, 1 / 3)
    v.last_budget = 300.0
    supply = np.full(3, 1000.0)
    v.update(0, np.array(prices), supply, np.full(3, 500.0))
    return v


def test_fundamental_value_depends_on_who_the_policy_pays():
    # Each pool: 500 tokens at 1 USD (R = 500 USD) of a 1,000-token supply; the rewards still
    # to come are F = 1/3 x 300 USD x 10 expected rounds = 1,000 USD per token.
    assert _view("buyback").fundamental_values(1.0).tolist() == pytest.approx([1.5] * 3)
    assert _view("dividend").fundamental_values(1.0).tolist() == pytest.approx([2.5] * 3)
    assert _view("mint").fundamental_values(1.0).tolist() == pytest.approx([0.25] * 3)
    for policy in ("equal", "direct"):
        assert _view(policy).fundamental_values(1.0).tolist() == pytest.approx([0.5] * 3)
    # The discount haircuts the future rewards only, never the pool's reserve.
    assert _view("buyback").fundamental_values(0.5).tolist() == pytest.approx([1.0] * 3)


def test_fundamental_buys_the_most_underpriced_token_and_sells_overpriced_holdings():
    # Values under dividend: 0.5 p + 2 -> 2.5, 6.0, 3.25 for prices 1, 8, 2.5.
    v = _view("dividend", prices=(1.0, 8.0, 2.5))
    strat = make_strategy("fundamental", margin=0.1, trade_fraction=0.5)
    strat.start(v, np.random.default_rng(0))
    orders = strat.decide(v, 100.0, np.array([0.0, 10.0, 0.0]), np.random.default_rng(0))
    assert orders == [Order(0, "buy", 50.0), Order(1, "sell", 5.0)]


def test_momentum_follows_the_biggest_riser_and_dumps_fallers():
    v = _view()
    for step, p in enumerate([(1.0, 1.0, 1.0), (1.2, 0.9, 1.05)], start=1):
        v.update(step, np.array(p), v.supply, v.pooled)
    orders = make_strategy("momentum", lookback=2, threshold=0.02).decide(
        v, 100.0, np.array([0.0, 4.0, 0.0]), np.random.default_rng(0))
    assert orders[0] == Order(0, "buy", 30.0)
    assert orders[1] == Order(1, "sell", 4.0)


def test_mean_reversion_buys_dips_below_the_band():
    v = _view()
    for step in range(1, 5):  # five prices in all, the last one a dip
        v.update(step, np.array([1.0, 1.0, 0.8 if step == 4 else 1.0]), v.supply, v.pooled)
    orders = make_strategy("mean_reversion", window=5, band=0.05).decide(
        v, 100.0, np.zeros(3), np.random.default_rng(0))
    assert orders == [Order(2, "buy", 30.0)]


def test_noise_never_sells_what_it_does_not_hold():
    strat = make_strategy("noise", p_trade=1.0)
    rng = np.random.default_rng(1)
    for _ in range(200):
        for o in strat.decide(_view(), 10.0, np.zeros(3), rng):
            assert o.side == "buy"


def test_manipulator_pumps_then_dumps_its_target():
    strat = make_strategy("manipulator", target=1, pump_start=2, pump_steps=2, dump_step=6)
    v = _view()
    held = np.array([0.0, 0.0, 0.0])
    sides = {}
    for step in range(1, 8):
        v.update(step, v.prices, v.supply, v.pooled)
        orders = strat.decide(v, 100.0, held, np.random.default_rng(0))
        sides[step] = [(o.token, o.side) for o in orders]
        if orders and orders[0].side == "buy":
            held = np.array([0.0, 10.0, 0.0])
    assert sides[1] == [] and sides[2] == sides[3] == [(1, "buy")]
    assert sides[4] == sides[5] == [] and sides[6] == [(1, "sell")]


def test_manipulator_reports_its_pump_and_dump_once_each():
    strat = make_strategy("manipulator", target=1, pump_start=2, pump_steps=2, dump_step=6)
    v = _view()
    held = np.zeros(3)
    events = {}
    for step in range(1, 9):
        v.update(step, v.prices, v.supply, v.pooled)
        orders = strat.decide(v, 100.0, held, np.random.default_rng(0))
        events[step] = [(kind, token) for kind, token, _ in strat.pop_events()]
        if orders and orders[0].side == "buy":
            held = np.array([0.0, 10.0, 0.0])
    assert events == {1: [], 2: [("pump_start", 1)], 3: [], 4: [("pump_end", 1)], 5: [],
                      6: [("dump", 1)], 7: [], 8: []}


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_unknown_or_out_of_range_parameters_are_refused(name):
    with pytest.raises(ValueError, match=f"unknown parameter of strategy '{name}'"):
        make_strategy(name, lookbak=3)
    key, info = next(iter(registry.get("strategy", name).Params.model_fields.items()))
    low = next(m.ge for m in info.metadata if hasattr(m, "ge"))
    with pytest.raises(ValueError, match=f"{key} = {low - 1}: input should be greater than"):
        make_strategy(name, **{key: low - 1})


def test_manipulator_must_dump_after_the_pump():
    with pytest.raises(ValueError, match="dump_step"):
        make_strategy("manipulator", pump_start=10, pump_steps=10, dump_step=15)
