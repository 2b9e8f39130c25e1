"""Investor strategies (docs/model.md, section 7.9): each one class.

A strategy is a registered component (`abm.registry`): its `name`, its `Params` (default,
range, unit, meaning of every parameter) and its `decide` rule, declared once here.

A strategy only *decides*: given the public `MarketView`, its cash (USD) and its token holdings
(tokens, display units) it returns orders. The `Investor` agent enforces limits (cash, position,
price impact) and executes them, so no strategy can trade what its investor does not hold.

Orders: `Order(token, "buy", size)` spends `size` USD; `Order(token, "sell", size)` sells `size`
tokens. Sizes are display-unit floats; the agent converts them to base units.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import model_validator

from abm.registry import Component, param
from abm.registry import Params as _Params

if TYPE_CHECKING:
    from abm.agents.view import MarketView


@dataclass(frozen=True)
class Order:
    """Buy `size` USD worth of token `token`, or sell `size` tokens of it."""

    token: int  # index into MarketView.tokens
    side: Literal["buy", "sell"]
    size: float


class Strategy(Component):
    """Base class: `decide` turns the public view into orders; parameters in `Params`."""

    kind = "strategy"

    @abstractmethod
    def decide(
        self, view: MarketView, cash: float, holdings: np.ndarray, rng: np.random.Generator
    ) -> list[Order]:
        """Orders for this step. `cash` in USD, `holdings` (n,) in tokens."""


def _trade_fraction(default: float) -> float:
    return param(default, "share of cash spent per buy (or of holdings sold per sale)",
                 unit="fraction", ge=0, le=1)


class Fundamental(Strategy):
    """Buys tokens priced below the value the remaining rewards pay holders; sells above.

    Value per token comes from `MarketView.fundamental_values` (share signal x budget x the
    rounds the market expects still to come, spread over the supply the policy pays). `margin`
    is the mispricing it needs before acting (a band that absorbs fees); `discount` haircuts
    future rewards (risk, time). The horizon is the market's belief (`market.
    round_continuation`), never the run's length, which no trader can know.
    """

    name = "fundamental"

    class Params(_Params):
        margin: float = param(0.1, "mispricing (value / price - 1) needed before trading",
                              unit="fraction", ge=0, le=10)
        discount: float = param(0.8, "haircut on the rewards still to come (risk, time)",
                                unit="fraction", ge=0, le=1)
        trade_fraction: float = _trade_fraction(0.5)

    def decide(self, view, cash, holdings, rng):
        p = self.params
        value = view.fundamental_values(p.discount)
        gap = value / view.prices - 1.0
        orders = []
        i = int(np.argmax(gap))
        if gap[i] > p.margin and cash > 0:
            orders.append(Order(i, "buy", cash * p.trade_fraction))
        for j in np.flatnonzero((gap < -p.margin) & (holdings > 0)):
            orders.append(Order(int(j), "sell", holdings[j] * p.trade_fraction))
        return orders


class Momentum(Strategy):
    """Buys the token that rose most over `lookback` steps; sells tokens that fell."""

    name = "momentum"

    class Params(_Params):
        lookback: int = param(10, "steps over which the return is measured", unit="steps",
                              ge=1, le=1000)
        threshold: float = param(0.02, "return needed before buying (or, negative, selling)",
                                 unit="fraction", ge=0, le=10)
        trade_fraction: float = _trade_fraction(0.3)

    def decide(self, view, cash, holdings, rng):
        p = self.params
        if view.history_length <= p.lookback:
            return []
        ret = view.momentum(p.lookback)
        orders = []
        i = int(np.argmax(ret))
        if ret[i] > p.threshold and cash > 0:
            orders.append(Order(i, "buy", cash * p.trade_fraction))
        for j in np.flatnonzero((ret < -p.threshold) & (holdings > 0)):
            orders.append(Order(int(j), "sell", float(holdings[j])))
        return orders


class MeanReversion(Strategy):
    """Buys a token trading `band` below its `window`-step mean; sells when it is above."""

    name = "mean_reversion"

    class Params(_Params):
        window: int = param(20, "steps in the moving average", unit="steps", ge=2, le=1000)
        band: float = param(0.05, "deviation from the average needed before trading",
                            unit="fraction", ge=0, le=10)
        trade_fraction: float = _trade_fraction(0.3)

    def decide(self, view, cash, holdings, rng):
        p = self.params
        if view.history_length < p.window:
            return []
        dev = view.deviation_from_mean(p.window)
        orders = []
        i = int(np.argmin(dev))
        if dev[i] < -p.band and cash > 0:
            orders.append(Order(i, "buy", cash * p.trade_fraction))
        for j in np.flatnonzero((dev > p.band) & (holdings > 0)):
            orders.append(Order(int(j), "sell", holdings[j] * p.trade_fraction))
        return orders


class Noise(Strategy):
    """Trades a random token in a random direction with probability `p_trade` per step."""

    name = "noise"

    class Params(_Params):
        p_trade: float = param(0.2, "probability of trading in a step", unit="probability",
                               ge=0, le=1)
        trade_fraction: float = _trade_fraction(0.1)

    def decide(self, view, cash, holdings, rng):
        # Always four draws per step, whatever happens next: the number of draws must not
        # depend on holdings or prices, or a run and its counterfactual twin would drift
        # apart in their random numbers (docs/model.md, section 4.9 (Stochasticity)).
        p = self.params
        u_trade, u_token, u_side, u_size = rng.random(4)
        if u_trade >= p.p_trade:
            return []
        i = min(int(u_token * view.n), view.n - 1)
        if u_side < 0.5 or holdings[i] <= 0:
            return [Order(i, "buy", cash * p.trade_fraction)] if cash > 0 else []
        return [Order(i, "sell", holdings[i] * (0.1 + 0.9 * u_size))]


class Manipulator(Strategy):
    """Pump and dump: buys token `target` for `pump_steps` steps from `pump_start`, then
    sells everything at `dump_step` into the crowd it attracted (momentum traders).

    `target` is a client index; -1 picks the token with the lowest contribution signal at
    the start of the pump (a cheap token is the easiest to move).
    """

    name = "manipulator"

    class Params(_Params):
        target: int = param(-1, "client index to pump; -1: the lowest contribution signal",
                            ge=-1, le=10_000)
        pump_start: int = param(50, "first step of the pump", unit="step", ge=1, le=10**6)
        pump_steps: int = param(20, "length of the pump", unit="steps", ge=1, le=10**6)
        dump_step: int = param(100, "step at which it sells everything", unit="step", ge=1,
                               le=10**6)
        trade_fraction: float = _trade_fraction(0.2)

        @model_validator(mode="after")
        def _dump_after_pump(self):
            if self.dump_step < self.pump_start + self.pump_steps:
                raise ValueError(
                    f"dump_step ({self.dump_step}) must come after the pump ends "
                    f"(pump_start + pump_steps = {self.pump_start + self.pump_steps})"
                )
            return self

    @classmethod
    def check_in(cls, params, scenario):
        if params.target >= scenario.n_clients:
            return (f"target {params.target} names no client: the clients are 0 to "
                    f"{scenario.n_clients - 1} (or -1 for the lowest signal)")
        return None

    def __init__(self, params=None, /, **values) -> None:
        super().__init__(params, **values)
        self._chosen: int | None = None

    def decide(self, view, cash, holdings, rng):
        p = self.params
        if self._chosen is None and view.step >= p.pump_start:
            if p.target >= view.n:
                raise ValueError(f"target {p.target} but there are {view.n} tokens")
            self._chosen = int(np.argmin(view.share_signal)) if p.target < 0 else p.target
        t = self._chosen
        if t is None:
            return []
        if view.step < p.pump_start + p.pump_steps and cash > 0:
            return [Order(t, "buy", cash * p.trade_fraction)]
        if view.step >= p.dump_step and holdings[t] > 0:
            return [Order(t, "sell", float(holdings[t]))]
        return []
