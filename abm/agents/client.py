"""FL clients as market agents: each owns a data partition (in the federation) and a token."""

from __future__ import annotations

from typing import TYPE_CHECKING

from abm.agents.trader import BASE, Trader
from abm.amm import to_units

if TYPE_CHECKING:
    from abm.model import WallStreetFedsModel
    from abm.scenario import CashOutSpec


class Client(Trader):
    """An FL client: trains in the federation, holds its own token, cashes out by a rule.

    Cash-out rules (applied right after each round's rewards, once per round):
    `hold` never sells; `sell_fraction` sells `fraction` of its token holdings per round;
    `usd_target` sells tokens until its USD balance reaches `target_usd` (USD display units).
    Every sale respects the client's price-impact limit, so a large position is sold over
    several rounds rather than crashing its own price.
    """

    agent_type = "client"

    def __init__(self, model: WallStreetFedsModel, client_id: str, behaviour: str,
                 cash_out: CashOutSpec, max_slippage: float) -> None:
        super().__init__(model, f"client:{client_id}", behaviour, max_slippage, client_id)
        self.token = client_id
        self.cash_out_rule = cash_out

    def act(self) -> None:
        if self.model.view.round_just_ran:
            self.cash_out()

    def cash_out(self) -> None:
        """Sell own tokens for USD according to the cash-out rule."""
        rule = self.cash_out_rule
        held = self.balance(self.token)
        if rule.kind == "hold" or held == 0:
            return
        if rule.kind == "sell_fraction":
            self.sell(self.token, int(held * rule.fraction))
            return
        missing = to_units(rule.target_usd) - self.balance(BASE)
        if missing <= 0:
            return
        pool = self.market.pools[self.token]
        reserve_base = pool.reserves[1]
        # Tokens that would fetch `missing` USD; if the pool cannot pay that much, sell what the
        # impact limit allows and try again next round.
        need = (pool.quote_exact_out(BASE, missing) if missing < reserve_base
                else held)
        self.sell(self.token, min(need, held))

