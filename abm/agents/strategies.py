"""Investor strategies: each one class with validated parameters plus one registry entry.

A strategy only *decides*: given the public `MarketView`, its cash (USD) and its token holdings
(tokens, display units) it returns orders. The `Investor` agent enforces limits (cash, position,
price impact) and executes them, so no strategy can trade what its investor does not hold.

Orders: `Order(token, "buy", size)` spends `size` USD; `Order(token, "sell", size)` sells `size`
tokens. Sizes are display-unit floats; the agent converts them to base units.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from abm.agents.view import MarketView


@dataclass(frozen=True)
class Order:
    """Buy `size` USD worth of token `token`, or sell `size` tokens of it."""

    token: int  # index into MarketView.tokens
    side: Literal["buy", "sell"]
    size: float


class Strategy(ABC):
    """Base class: parameters with defaults and ranges, checked when the strategy is built.

    Subclasses declare `params = {name: (default, low, high)}` and implement `decide`.
    """

    name: ClassVar[str]
    params: ClassVar[dict[str, tuple[Any, float, float]]] = {}

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.params)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {sorted(unknown)} for strategy {self.name!r}; "
                f"allowed: {sorted(self.params) or 'none'}"
            )
        for key, (default, low, high) in self.params.items():
            value = values.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{key} must be a number, got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"{key} must be between {low} and {high}, got {value!r}")
            setattr(self, key, type(default)(value))

    def decide(
        self, view: MarketView, cash: float, holdings: np.ndarray, rng: np.random.Generator
    ) -> list[Order]:
        """Orders for this step. `cash` in USD, `holdings` (n,) in tokens."""
        raise NotImplementedError


class Fundamental(Strategy):
    """Buys tokens priced below the value the remaining rewards pay holders; sells above.

    Value per token comes from `MarketView.fundamental_values` (share signal x budget x the
    rounds the market expects still to come, spread over the supply the policy pays). `margin`
    is the mispricing it needs before acting (a band that absorbs fees); `discount` haircuts
    future rewards (risk, time). The horizon is the market's belief (`market.
    round_continuation`), never the run's length, which no trader can know.
    """

    name = "fundamental"
    params: ClassVar = {"margin": (0.1, 0.0, 10.0), "discount": (0.8, 0.0, 1.0),
                        "trade_fraction": (0.5, 0.0, 1.0)}

    def decide(self, view, cash, holdings, rng):
        value = view.fundamental_values(self.discount)
        gap = value / view.prices - 1.0
        orders = []
        i = int(np.argmax(gap))
        if gap[i] > self.margin and cash > 0:
            orders.append(Order(i, "buy", cash * self.trade_fraction))
        for j in np.flatnonzero((gap < -self.margin) & (holdings > 0)):
            orders.append(Order(int(j), "sell", holdings[j] * self.trade_fraction))
        return orders


class Momentum(Strategy):
    """Buys the token that rose most over `lookback` steps; sells tokens that fell."""

    name = "momentum"
    params: ClassVar = {"lookback": (10, 1, 1000), "threshold": (0.02, 0.0, 10.0),
                        "trade_fraction": (0.3, 0.0, 1.0)}

    def decide(self, view, cash, holdings, rng):
        if view.history_length <= self.lookback:
            return []
        ret = view.momentum(self.lookback)
        orders = []
        i = int(np.argmax(ret))
        if ret[i] > self.threshold and cash > 0:
            orders.append(Order(i, "buy", cash * self.trade_fraction))
        for j in np.flatnonzero((ret < -self.threshold) & (holdings > 0)):
            orders.append(Order(int(j), "sell", float(holdings[j])))
        return orders


class MeanReversion(Strategy):
    """Buys a token trading `band` below its `window`-step mean; sells when it is above."""

    name = "mean_reversion"
    params: ClassVar = {"window": (20, 2, 1000), "band": (0.05, 0.0, 10.0),
                        "trade_fraction": (0.3, 0.0, 1.0)}

    def decide(self, view, cash, holdings, rng):
        if view.history_length < self.window:
            return []
        dev = view.deviation_from_mean(self.window)
        orders = []
        i = int(np.argmin(dev))
        if dev[i] < -self.band and cash > 0:
            orders.append(Order(i, "buy", cash * self.trade_fraction))
        for j in np.flatnonzero((dev > self.band) & (holdings > 0)):
            orders.append(Order(int(j), "sell", holdings[j] * self.trade_fraction))
        return orders


class Noise(Strategy):
    """Trades a random token in a random direction with probability `p_trade` per step."""

    name = "noise"
    params: ClassVar = {"p_trade": (0.2, 0.0, 1.0), "trade_fraction": (0.1, 0.0, 1.0)}

    def decide(self, view, cash, holdings, rng):
        # Always four draws per step, whatever happens next: the number of draws must not
        # depend on holdings or prices, or a run and its counterfactual twin would drift
        # apart in their random numbers (docs/model.md, "Design concepts: Stochasticity").
        u_trade, u_token, u_side, u_size = rng.random(4)
        if u_trade >= self.p_trade:
            return []
        i = min(int(u_token * view.n), view.n - 1)
        if u_side < 0.5 or holdings[i] <= 0:
            return [Order(i, "buy", cash * self.trade_fraction)] if cash > 0 else []
        return [Order(i, "sell", holdings[i] * (0.1 + 0.9 * u_size))]


class Manipulator(Strategy):
    """Pump and dump: buys token `target` for `pump_steps` steps from `pump_start`, then
    sells everything at `dump_step` into the crowd it attracted (momentum traders).

    `target` is a client index; -1 picks the token with the lowest contribution signal at
    the start of the pump (a cheap token is the easiest to move).
    """

    name = "manipulator"
    params: ClassVar = {"target": (-1, -1, 10_000), "pump_start": (50, 1, 10**6),
                        "pump_steps": (20, 1, 10**6), "dump_step": (100, 1, 10**6),
                        "trade_fraction": (0.2, 0.0, 1.0)}

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if self.dump_step < self.pump_start + self.pump_steps:
            raise ValueError(
                f"dump_step ({self.dump_step}) must come after the pump ends "
                f"(pump_start + pump_steps = {self.pump_start + self.pump_steps})"
            )
        self._chosen: int | None = None

    def decide(self, view, cash, holdings, rng):
        if self._chosen is None and view.step >= self.pump_start:
            if self.target >= view.n:
                raise ValueError(f"target {self.target} but there are {view.n} tokens")
            self._chosen = (
                int(np.argmin(view.share_signal)) if self.target < 0 else self.target
            )
        t = self._chosen
        if t is None:
            return []
        if view.step < self.pump_start + self.pump_steps and cash > 0:
            return [Order(t, "buy", cash * self.trade_fraction)]
        if view.step >= self.dump_step and holdings[t] > 0:
            return [Order(t, "sell", float(holdings[t]))]
        return []


STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (Fundamental, Momentum, MeanReversion, Noise, Manipulator)
}


def make_strategy(name: str, **params: Any) -> Strategy:
    """The strategy registered under `name`, built with `params` (ValueError if invalid)."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; allowed: {', '.join(STRATEGIES)}") from None
    return cls(**params)
