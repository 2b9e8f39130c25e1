"""Third-party investors: a registered strategy decides, the agent enforces the limits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from abm.agents.strategies import Order, Strategy
from abm.agents.trader import BASE, Trader, decision_units
from abm.amm import ONE
from abm.streams import stream

if TYPE_CHECKING:
    from abm.model import WallStreetFedsModel
    from abm.scenario import InvestorGroup


class Investor(Trader):
    """An investor with cash and a strategy (see `abm.agents.strategies`).

    Limits, as fractions (its group's, `abm.scenario.InvestorGroup`): `max_trade` of its USD
    per buy, `max_position` of its wealth in any one token, `max_slippage` price impact per
    trade. It sells only tokens it holds. It acts in a step with probability `activation`
    (its own coin, drawn every step) and scales every order its strategy asks for by its own
    `size_scale` (docs/model.md, section 7.9).

    Its random streams, each keyed by its account (docs/model.md, section 4.9):
    `agent:<account>` its strategy's decisions (a noise trader's coins), `.../traits` its
    own parameter values (drawn once, at `start`), `.../clock` its activation coins (one per
    step), `.../signal` what it observes of each round (a fundamental investor's noise).
    """

    agent_type = "investor"

    def __init__(self, model: WallStreetFedsModel, strategy: Strategy,
                 spec: InvestorGroup) -> None:
        super().__init__(model, "", strategy.name, spec.max_slippage)
        self.account = f"investor:{self.unique_id}"
        self.start_cash = spec.cash  # USD (display units) minted to it at genesis
        self.rule = strategy
        self.max_trade = spec.max_trade
        self.max_position = spec.max_position
        self.activation = spec.activation
        self.size_dispersion = spec.size_dispersion
        self.size_scale = 1.0  # set by `start`

    def _own_stream(self, part: str) -> np.random.Generator:
        return stream(self.model.config.seed, f"agent:{self.account}/{part}")

    def start(self) -> None:
        """Draw this investor's own values (order-size factor, then its strategy's), once the
        model's view holds the prior signal."""
        traits = self._own_stream("traits")
        sigma = self.size_dispersion
        # Mean 1 across investors, so dispersion changes who trades big, not the total.
        self.size_scale = float(np.exp(sigma * traits.standard_normal() - sigma * sigma / 2))
        self.rule.start(self.model.view, traits)
        self._clock = self._own_stream("clock")
        self._coins: list[float] = []
        self._signal = self._own_stream("signal")
        self._stream = self.stream
        ledger, account = self.market.ledger, self.account
        # Live read-only books (`Ledger.live`): a balance is one dict lookup, and the
        # strategy reads only the balances its decision needs (`Strategy.orders`).
        self._usd = ledger.live(BASE)
        self._books = books = [ledger.live(t) for t in self.model.view.tokens]
        self._balance_of = lambda j: books[j].get(account, 0)

    def observe_round(self) -> None:
        """The federation published a round: the strategy updates what it believes."""
        self.rule.observe_round(self.model.view, self._signal)

    def _coin(self) -> float:
        """This step's activation coin: the clock stream's next uniform (drawn in blocks
        ahead, the same numbers one at a time would give)."""
        if not self._coins:
            self._coins = self._clock.random(256).tolist()[::-1]
        return self._coins.pop()

    def act(self) -> None:
        # The coin is drawn every step, before anything is looked at, so that the number
        # of draws never depends on the market (docs/model.md, section 4.9).
        if self.activation < 1.0 and self._coin() >= self.activation:
            return
        cash_units = self._usd.get(self.account, 0)
        orders = self.rule.orders(self.model.view, cash_units, self._balance_of, self._stream)
        if orders or self.rule.events:
            self.execute(orders, cash_units)

    def execute(self, orders: list[Order], cash_units: int) -> None:
        """Record the strategy's events; trade `orders` within the limits (docs/model.md,
        section 7.9): decided in display units from the balances before the first order
        (the wealth for `max_position` only when there is a buy), traded in base units."""
        view = self.model.view
        for kind, token, text in self.rule.pop_events():
            self.model.record_event(kind, client=view.tokens[token], agent_id=self.unique_id,
                                    text=text)
        if not orders:
            return
        account, books = self.account, self._books
        held = [books[o.token].get(account, 0) / ONE for o in orders]
        if any(o.side == "buy" for o in orders):
            holdings = np.array([book.get(account, 0) / ONE for book in books])
            wealth = cash_units / ONE + float(holdings @ view.prices)
        scale = self.size_scale
        for order, have in zip(orders, held, strict=True):
            token = view.tokens[order.token]
            if order.side == "buy":
                room = self.max_position * wealth - have * view.prices[order.token]
                usd = min(order.size * scale, self.max_trade * cash_units / ONE, room)
                if usd > 0:
                    self.buy(token, decision_units(usd))
            else:
                self.sell(token, decision_units(min(order.size * scale, have)))
