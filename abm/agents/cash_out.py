"""Cash-out rules: when an FL client sells its own token for USD (docs/model.md, 7.10).

A rule is a registered component (`abm.registry`, kind `cash_out`). The client applies it once
per round, right after the round's rewards: `tokens_to_sell(client)` says how many of its own
tokens (base units) it offers; the client's price-impact limit then caps the sale, so a large
position is sold over several rounds rather than crashing its own price.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from abm.amm import BASE, to_units
from abm.registry import Component, param
from abm.registry import Params as _Params

if TYPE_CHECKING:
    from abm.agents.client import Client


class CashOutRule(Component):
    """Base class: how many of its own tokens a client sells after a round."""

    kind = "cash_out"

    @abstractmethod
    def tokens_to_sell(self, client: Client) -> int:
        """Base units of `client.token` to offer now (the client caps it by price impact)."""


class Hold(CashOutRule):
    """Never sells: the client keeps every token it holds or receives."""

    name = "hold"

    def tokens_to_sell(self, client):
        return 0


class SellFraction(CashOutRule):
    """Sells a fixed fraction of its token holdings after every round."""

    name = "sell_fraction"

    class Params(_Params):
        fraction: float = param(0.1, "share of its holdings offered per round",
                                unit="fraction", gt=0, le=1)

    def tokens_to_sell(self, client):
        return int(client.balance(client.token) * self.params.fraction)


class UsdTarget(CashOutRule):
    """Sells tokens until its USD balance reaches a target, then holds."""

    name = "usd_target"

    class Params(_Params):
        target_usd: float = param(1000.0, "USD balance it sells towards", unit="USD", ge=0,
                                  le=1e15)

    def tokens_to_sell(self, client):
        held = client.balance(client.token)
        missing = to_units(self.params.target_usd) - client.balance(BASE)
        if missing <= 0 or held == 0:
            return 0
        pool = client.market.pools[client.token]
        # Tokens that would fetch `missing` USD; if the pool cannot pay that much, offer all
        # and let the impact limit decide (the rest is tried next round).
        need = pool.quote_exact_out(BASE, missing) if missing < pool.reserves[1] else held
        return min(need, held)
