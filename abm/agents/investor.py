"""Third-party investors: a registered strategy decides, the agent enforces the limits."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from abm.agents.strategies import Strategy
from abm.agents.trader import BASE, Trader, decision_units
from abm.amm import ONE

if TYPE_CHECKING:
    from abm.model import WallStreetFedsModel


class Investor(Trader):
    """An investor with cash and a strategy (see `abm.agents.strategies`).

    Limits, as fractions: `max_trade` of its USD per buy, `max_position` of its wealth in any
    one token, `max_slippage` price impact per trade. It sells only tokens it holds.
    """

    agent_type = "investor"

    def __init__(self, model: WallStreetFedsModel, strategy: Strategy, cash: float,
                 max_trade: float, max_position: float, max_slippage: float) -> None:
        super().__init__(model, "", strategy.name, max_slippage)
        self.account = f"investor:{self.unique_id}"
        self.start_cash = cash  # USD (display units) minted to it at genesis
        self.rule = strategy
        self.max_trade = max_trade
        self.max_position = max_position

    def act(self) -> None:
        view = self.model.view
        ledger = self.market.ledger
        cash_units = ledger.balance(self.account, BASE)
        holdings = np.array([ledger.balance(self.account, t) / ONE for t in view.tokens])
        orders = self.rule.decide(view, cash_units / ONE, holdings, self.stream)
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
