"""Investors with their own views (docs/model.md, section 7.9): private beliefs from noisy
signals, parameters drawn per investor, stochastic activation and order sizes; with the
defaults, exactly the public-signal investors that act every step."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from abm import registry
from abm.agents.investor import Investor
from abm.agents.strategies import Fundamental, Order
from abm.agents.trader import BASE, decision_units
from abm.agents.view import MarketView
from abm.amm import ONE
from abm.model import WallStreetFedsModel
from abm.run import simulate
from abm.scenario import ScenarioError
from tests.conftest import small_scenario


class FixedDraws:
    """A stand-in generator returning given numbers (to check arithmetic exactly)."""

    def __init__(self, uniforms=(), normals=()):
        self.uniforms, self.normals = list(uniforms), list(normals)

    def random(self, size=None):
        out = [self.uniforms.pop(0) for _ in range(size or 1)]
        return np.array(out) if size else out[0]

    def standard_normal(self, size=None):
        out = [self.normals.pop(0) for _ in range(size or 1)]
        return np.array(out) if size else out[0]


def _view(shares=(1 / 3, 1 / 3, 1 / 3)) -> MarketView:
    # Each pool: 500 tokens at 1 USD of a 1,000-token supply; 10 expected rounds.
    v = MarketView(tokens=["c0", "c1", "c2"], policy=registry.create("policy", "buyback"),
                   round_every=10, round_continuation=10 / 11)
    v.share_signal = np.array(shares)
    v.last_shares = np.zeros(3)
    v.last_budget = 300.0
    v.update(0, np.ones(3), np.full(3, 1000.0), np.full(3, 500.0))
    return v


def _publish(view: MarketView, shares) -> None:
    view.publish_round(np.array(shares, dtype=float), view.last_budget)


def test_a_noiseless_belief_is_an_exponential_average_of_the_shares():
    view = _view()
    strat = registry.create("strategy", "fundamental", learning_rate=0.5)
    strat.start(view, np.random.default_rng(0))
    assert strat.belief.tolist() == [1 / 3] * 3
    _publish(view, [0.5, 0.3, 0.2])
    strat.observe_round(view, np.random.default_rng(0))
    assert strat.belief.tolist() == pytest.approx([5 / 12, 19 / 60, 16 / 60], abs=1e-15)
    _publish(view, [1.0, 0.0, 0.0])
    strat.observe_round(view, np.random.default_rng(0))
    assert strat.belief.tolist() == pytest.approx([17 / 24, 19 / 120, 16 / 120], abs=1e-15)


def test_a_noisy_reading_is_clipped_at_zero_and_rescaled_to_the_rounds_total():
    view = _view()
    strat = registry.create("strategy", "fundamental", learning_rate=1.0, signal_noise=0.1)
    strat.start(view, FixedDraws([0.5, 0.5, 0.5], [0.0]))
    assert strat.noise_sd == 0.1
    _publish(view, [0.5, 0.3, 0.2])
    # Readings 0.5 + 0.1, 0.3 - 0.4, 0.2 + 0 -> clipped 0.6, 0, 0.2 -> x 1 / 0.8.
    strat.observe_round(view, FixedDraws(normals=[1.0, -4.0, 0.0]))
    assert strat.belief.tolist() == pytest.approx([0.75, 0.0, 0.25], abs=1e-15)
    # A round that paid nobody (shares 0): whatever the noise, nothing was paid.
    _publish(view, [0.0, 0.0, 0.0])
    strat.observe_round(view, FixedDraws(normals=[2.0, 1.0, -1.0]))
    assert strat.belief.tolist() == [0.0, 0.0, 0.0]


def test_each_investor_draws_its_own_values_from_the_groups_ranges():
    view = _view()
    strat = registry.create("strategy", "fundamental", discount=[0.6, 1.0],
                            learning_rate=[0.1, 0.5], horizon=[10.0, 30.0], signal_noise=0.1,
                            noise_dispersion=0.5)
    strat.start(view, FixedDraws([0.25, 0.5, 0.75], [1.0]))
    assert strat.discount == pytest.approx(0.7)
    assert strat.learning_rate == pytest.approx(0.3)
    assert strat.horizon == pytest.approx(25.0)
    assert strat.noise_sd == pytest.approx(0.1 * np.exp(0.5))
    fixed = registry.create("strategy", "fundamental")
    fixed.start(view, FixedDraws([0.25, 0.5, 0.75], [1.0]))
    # Numbers are everyone's; no horizon: the market's belief, 10 rounds here.
    assert (fixed.discount, fixed.learning_rate, fixed.horizon, fixed.noise_sd) == (
        0.8, 0.3, view.expected_rounds_left, 0.0)


def test_the_decision_values_tokens_on_the_private_belief():
    view = _view()
    strat = registry.create("strategy", "fundamental", discount=0.5, horizon=10.0,
                            margin=0.1, trade_fraction=0.5, learning_rate=1.0)
    strat.start(view, np.random.default_rng(0))
    _publish(view, [0.6, 0.2, 0.2])
    strat.observe_round(view, np.random.default_rng(0))
    # Flows 0.6 x 300 x 10 x 0.5 = 900 (then 300, 300); buyback value (500 + F) / 1000:
    # 1.4, 0.8, 0.8 USD against prices of 1: buy token 0, sell half of token 2.
    orders = strat.decide(view, 100.0, np.array([0.0, 0.0, 8.0]), None)
    assert orders == [Order(0, "buy", 50.0), Order(2, "sell", 4.0)]


@pytest.mark.parametrize("bad, match", [
    ({"discount": [0.9, 0.5]}, "low <= high"),
    ({"learning_rate": [0.1, 1.5]}, r"every value must lie in \[0, 1\]"),
    ({"horizon": [1.0, 2.0, 3.0]}, "a number or a range"),
    ({"signal_noise": -0.1}, "greater than or equal to 0"),
])
def test_impossible_values_are_refused_with_their_path(bad, match):
    data = small_scenario().to_dict()
    data["investors"][0]["params"] = bad
    with pytest.raises(ScenarioError, match=rf"investors\[0\]\.params\.{next(iter(bad))}"):
        small_scenario().with_overrides({"investors": data["investors"]})
    with pytest.raises(ScenarioError, match=match):
        small_scenario().with_overrides({"investors": data["investors"]})


# -- in the model -------------------------------------------------------------------------------


def _acting_steps(scenario, steps=40) -> dict[int, list[int]]:
    """Steps at which each investor decided (its activation coin came up)."""
    model = WallStreetFedsModel(scenario)
    seen: dict[int, list[int]] = {inv.unique_id: [] for inv in model.investors}
    for inv in model.investors:
        orders = inv.rule.orders

        def spy(view, cash_units, balance, rng, inv=inv, orders=orders):
            seen[inv.unique_id].append(view.step)
            return orders(view, cash_units, balance, rng)

        inv.rule.orders = spy
    model.run_for(steps)
    return seen


def _noise_crowd(**group):
    return small_scenario(steps=40, investors=[
        {"strategy": "noise", "count": 50, "cash": 500, **group}])


def test_activation_is_a_coin_per_step_with_the_groups_probability():
    seen = _acting_steps(_noise_crowd(activation=0.3))
    acts = sum(len(s) for s in seen.values())
    # 50 investors x 40 steps, p = 0.3: mean 600, sd 20.5.
    assert 540 <= acts <= 660
    assert len({tuple(s) for s in seen.values()}) > 40  # each investor has its own coins
    assert all(len(s) == 40 for s in _acting_steps(_noise_crowd()).values())


def test_activation_is_reproducible_by_seed_and_the_same_in_the_twin():
    scenario = _noise_crowd(activation=0.3)
    first = _acting_steps(scenario)
    assert _acting_steps(scenario) == first
    assert _acting_steps(scenario.twin()) == first  # common random numbers
    assert _acting_steps(scenario.with_overrides({"seed": 2})) != first


def test_order_sizes_scale_by_a_factor_of_mean_one_drawn_per_investor():
    scenario = small_scenario(investors=[
        {"strategy": "noise", "count": 400, "cash": 500, "size_dispersion": 0.5}])
    model = WallStreetFedsModel(scenario)
    scales = np.array([inv.size_scale for inv in model.investors])
    assert len(set(scales)) == 400
    assert scales.mean() == pytest.approx(1.0, abs=0.06)  # sd of the mean ~ 0.027
    assert np.log(scales).std() == pytest.approx(0.5, abs=0.05)
    again = WallStreetFedsModel(scenario)
    assert [inv.size_scale for inv in again.investors] == scales.tolist()


def test_a_scaled_order_is_still_capped_by_the_limits():
    model = WallStreetFedsModel(small_scenario(investors=[
        {"strategy": "noise", "count": 1, "cash": 500, "max_trade": 0.2,
         "max_slippage": 0.9, "inventory": 0.0}]))
    inv = model.investors[0]
    inv.size_scale = 100.0
    inv.rule.orders = lambda view, cash_units, balance, rng: [Order(0, "buy", 10.0)]
    before = inv.balance(BASE)
    model.step()
    # 10 x 100 = 1,000 USD asked; at most max_trade x cash = 100 USD spent.
    assert before - inv.balance(BASE) == decision_units(100.0)


# -- the defaults are today's investors, exactly ----------------------------------------------


def _public_signal_decide(self, view, cash, holdings, rng):
    """The fundamental rule before private beliefs (the reference path): the public signal,
    the market's horizon, the group's discount."""
    p = self.params
    gap = view.fundamental_values(p.discount) / view.prices - 1.0
    orders = []
    i = int(np.argmax(gap))
    if gap[i] > p.margin and cash > 0:
        orders.append(Order(i, "buy", cash * p.trade_fraction))
    for j in np.flatnonzero((gap < -p.margin) & (holdings > 0)):
        orders.append(Order(int(j), "sell", holdings[j] * p.trade_fraction))
    return orders


def _every_step_act(self):
    """The investor's step before activation and order sizes (the reference path)."""
    view = self.model.view
    ledger = self.market.ledger
    cash_units = ledger.balance(self.account, BASE)
    holdings = np.array([ledger.balance(self.account, t) / ONE for t in view.tokens])
    orders = self.rule.decide(view, cash_units / ONE, holdings, self.stream)
    self.rule.pop_events()
    if not orders:
        return
    wealth = cash_units / ONE + float(holdings @ view.prices)
    for order in orders:
        token = view.tokens[order.token]
        if order.side == "buy":
            room = self.max_position * wealth - holdings[order.token] * view.prices[order.token]
            usd = min(order.size, self.max_trade * cash_units / ONE, room)
            if usd > 0:
                self.buy(token, decision_units(usd))
        else:
            self.sell(token, decision_units(min(order.size, holdings[order.token])))


def test_with_the_defaults_investors_are_todays_to_the_last_bit(monkeypatch):
    scenario = small_scenario(steps=60)
    new = simulate(scenario)
    monkeypatch.setattr(Fundamental, "decide", _public_signal_decide)
    monkeypatch.setattr(Investor, "act", _every_step_act)
    old = simulate(scenario)
    from abm.agents.orders import ORDER_COLUMNS

    for table in ("model", "agents", "rounds"):
        # Every trade the same to the last bit. The order counters are not trades: the
        # reference path asks for what its limits already capped, so it records no cuts.
        pd.testing.assert_frame_equal(
            getattr(new, table).drop(columns=list(ORDER_COLUMNS), errors="ignore"),
            getattr(old, table).drop(columns=list(ORDER_COLUMNS), errors="ignore"),
            check_exact=True)
    # The manipulator's phases are now events (the only difference).
    kinds = new.events["kind"].tolist()
    assert [k for k in kinds if k != "round"] == ["pump_start", "pump_end", "dump"]
    assert old.events["kind"].eq("round").all()
    assert new.events.set_index("kind").loc[["pump_start", "pump_end", "dump"], "step"].tolist() \
        == [5, 10, 20]


def test_private_views_change_the_market():
    base = simulate(small_scenario(steps=40))
    noisy = small_scenario(steps=40).to_dict()
    noisy["investors"][0]["params"] = {"signal_noise": 0.2, "noise_dispersion": 0.5}
    noisy["investors"][0]["activation"] = 0.5
    other = simulate(small_scenario().with_overrides({"steps": 40,
                                                      "investors": noisy["investors"]}))
    assert not base.model["price/c00"].equals(other.model["price/c00"])
