"""Third-party investors: a registered strategy decides, the agent enforces the limits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from abm.agents.strategies import Strategy
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
        self._signal = self._own_stream("signal")

    def observe_round(self) -> None:
        """The federation published a round: the strategy updates what it believes."""
        self.rule.observe_round(self.model.view, self._signal)

    def act(self) -> None:
        # The coin is drawn every step, before anything is looked at, so that the number
        # of draws never depends on the market (docs/model.md, section 4.9).
        if self.activation < 1.0 and self._clock.random() >= self.activation:
            return
        view = self.model.view
        ledger = self.market.ledger
        cash_units = ledger.balance(self.account, BASE)
        holdings = np.array([ledger.balance(self.account, t) / ONE for t in view.tokens])
        orders = self.rule.decide(view, cash_units / ONE, holdings, self.stream)
        for kind, token, text in self.rule.pop_events():
            self.model.record_event(kind, client=view.tokens[token], agent_id=self.unique_id,
                                    text=text)
        if not orders:
            return
        wealth = cash_units / ONE + float(holdings @ view.prices)
        scale = self.size_scale
        for order in orders:
            token = view.tokens[order.token]
            if order.side == "buy":
                room = self.max_position * wealth - holdings[order.token] * view.prices[order.token]
                usd = min(order.size * scale, self.max_trade * cash_units / ONE, room)
                if usd > 0:
                    self.buy(token, decision_units(usd))
            else:
                amount = min(order.size * scale, holdings[order.token])
                self.sell(token, decision_units(amount))
