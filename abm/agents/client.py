"""FL clients as market agents: each owns a data partition (in the federation) and a token."""

from __future__ import annotations

from typing import TYPE_CHECKING

from abm.agents.trader import Trader

if TYPE_CHECKING:
    from abm.agents.cash_out import CashOutRule
    from abm.model import WallStreetFedsModel


class Client(Trader):
    """An FL client: trains in the federation, holds its own token, cashes out by a rule.

    The cash-out rule (`abm.agents.cash_out`) is applied right after each round's rewards,
    once per round. Every sale respects the client's price-impact limit (`max_slippage`).
    """

    agent_type = "client"

    def __init__(self, model: WallStreetFedsModel, client_id: str, behaviour: str,
                 cash_out: CashOutRule, max_slippage: float) -> None:
        super().__init__(model, f"client:{client_id}", behaviour, max_slippage, client_id)
        self.token = client_id
        self.cash_out_rule = cash_out

    def act(self) -> None:
        if self.model.view.round_just_ran:
            self.cash_out()

    def cash_out(self) -> None:
        """Sell own tokens for USD as the cash-out rule says."""
        amount = self.cash_out_rule.tokens_to_sell(self)
        if amount > 0:
            self.sell(self.token, amount)
