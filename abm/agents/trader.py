"""What every market agent shares: a ledger account, guarded swaps and its marks (wealth).

Trades go through the pools with two limits chosen by the agent's scenario group:
a price-impact cap (an order is shrunk until executing it moves the price less than
`max_slippage`) and a minimum-out guard derived from the spot price, so a swap that would fill
worse than spot by more than the fee plus `max_slippage` is refused by the pool and changes
nothing (docs/model.md, section 7.12). Agents only ever spend what their ledger account
holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mesa
import numpy as np

from abm.amm import BASE, ONE, InsufficientOutputAmount, Market, Pool, SlippageError
from abm.streams import stream

if TYPE_CHECKING:
    from abm.model import WallStreetFedsModel

#: Orders smaller than this (base units, 0.01 USD or 0.01 token) are not worth a swap.
DUST = ONE // 100


def decision_units(x: float) -> int:
    """A decision's float amount (display units) as base units, rounded towards zero.

    Decisions are floats by design; exactness starts at the pool, which rounds in its own
    favour. (`abm.amm.to_units` is the exact conversion for configured amounts.)
    """
    return int(float(x) * ONE) if x > 0 else 0


class _Marked:
    """An agent attribute kept in the model's `AgentMarks` column of the same name (USD
    display units): the model values every agent at once, the agent reads its row."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, agent: Trader | None, owner: type | None = None) -> float:
        if agent is None:
            return self  # type: ignore[return-value]
        marks = agent.model.marks
        return 0.0 if marks is None else float(marks.values[self.name][agent.mark_row])

    def __set__(self, agent: Trader, value: float) -> None:
        agent.model.marks.values[self.name][agent.mark_row] = value


class Trader(mesa.Agent):
    """A Mesa agent with a ledger account that can swap on the model's market.

    Attributes refreshed by the model at the end of each step (USD display units; 0 before
    the model's first valuation): `usd`, `token_value`, `lp_value`, `wealth` (all marked at
    spot) and `wealth_if_sold` (what the agent would hold in USD after selling everything
    alone, `Market.liquidation_value`); plus `fees_earned` (its cumulative share of pool fees,
    for any holder of liquidity shares). They live in the model's `AgentMarks` columns
    (`abm.collect`), so that valuing and recording every agent is one pass, not a call per
    agent. `hodl_value` and `zapped_usd` are plain attributes (liquidity providers only).

    `stream` is the agent's own random generator (`abm.streams`, keyed by its account), so
    its draws never depend on other agents' or on the order they act in.
    """

    agent_type = "trader"
    model: WallStreetFedsModel
    usd = _Marked()
    token_value = _Marked()
    lp_value = _Marked()
    wealth = _Marked()
    wealth_if_sold = _Marked()
    fees_earned = _Marked()

    def __init__(self, model: WallStreetFedsModel, account: str, strategy: str,
                 max_slippage: float, client: str = "") -> None:
        super().__init__(model)
        self.account = account
        self.strategy = strategy
        self.client = client
        self.max_slippage = max_slippage
        self.mark_row = -1  # this agent's row in the model's AgentMarks (set by them)
        self.hodl_value = self.zapped_usd = 0.0
        #: What the latest `_swap_at` paid in (base units; 0: not filled).
        self.last_in = 0
        self._stream: np.random.Generator | None = None

    @property
    def market(self) -> Market:
        return self.model.market

    def balance(self, asset: str) -> int:
        """This agent's balance of `asset`, base units."""
        return self.market.ledger.balance(self.account, asset)

    def buy(self, token: str, usd: int, *, asked: int | None = None, cash: int = 0,
            position: int = 0) -> int:
        """Spend up to `usd` base units on `token`; returns tokens received (base units).

        The order goes on record (`abm.agents.orders`): `asked` is what it asked before the
        limits its caller applied (default `usd`), `cash` and `position` what they cut (base
        units); the USD balance cuts it further as `cash`, the trade guard as `slippage`."""
        return self._order(token, BASE, usd, self.balance(BASE),
                           usd if asked is None else asked, cash, position, 0)

    def sell(self, token: str, amount: int, *, asked: int | None = None, cash: int = 0,
             dilution: int = 0) -> int:
        """Sell up to `amount` base units of `token`; returns proceeds in USD (base units).

        On record like `buy`: the holding cuts it as `cash`, the trade guard as `slippage`;
        `dilution` is what the dilution limit cut before (a client's new tokens)."""
        return self._order(token, token, amount, self.balance(token),
                           amount if asked is None else asked, cash, 0, dilution)

    def _order(self, token: str, asset_in: str, amount: int, balance: int, asked: int,
               cash: int, position: int, dilution: int) -> int:
        """Swap `amount` (base units of `asset_in`) capped by `balance`, and record the
        order (`OrderRecord.record`; an order asked below `DUST` is none). A cap that leaves
        less than `DUST` cuts it all (nothing is swapped then either)."""
        j = self.model.view.tokens.index(token)
        price = self.model.view.price_list[j]
        if amount > balance:
            cash += amount - balance
            amount = balance
        if amount < DUST:
            cash += max(amount, 0)
            out = done = 0
        else:
            out = self._swap_at(self.market.pools[token], j, asset_in, amount)
            done = self.last_in
        if asked >= DUST:
            self.model.marks.orders.record(self.mark_row, asset_in == BASE, price, asked,
                                           done, cash, position, dilution)
        return out

    def _swap_at(self, pool: Pool, j: int, asset_in: str, amount: int) -> int:
        """Swap up to `amount` of `asset_in` on `pool` (token index `j` of the view) within
        the agent's price-impact cap and minimum-out guard; write the new spot price into the
        view. Returns what it received (0: not filled); `last_in` is then what it paid in
        (base units of `asset_in`: `amount` after the cap, or 0). The guard and the swap's
        own checks are the pool's (`Pool.swap_exact_in`); the new reserves are the pool's commit,
        recomputed from the amounts instead of read back."""
        reserve_token, reserve_base = pool.reserves
        buying = asset_in == BASE
        reserve_in = reserve_base if buying else reserve_token
        # Execution price is worse than spot by amount / (reserve_in + amount) (plus the fee);
        # keeping that below max_slippage caps the order at reserve_in * s / (1 - s).
        s = self.max_slippage
        cap = reserve_in if s >= 0.5 else int(reserve_in * (s / (1.0 - s)))
        if amount > cap:
            amount = cap
        if amount < DUST:
            self.last_in = 0
            return 0
        spot_out = (amount * reserve_token // reserve_base if buying
                    else amount * reserve_base // reserve_token)
        fee_kept = 10_000 - pool.fee_bps
        min_out = int(spot_out * fee_kept // 10_000 * (1.0 - s))
        try:
            out = pool.swap_exact_in(self.account, asset_in, amount, min_out)
        except (SlippageError, InsufficientOutputAmount):
            # The guard refused a fill worse than the agent accepts, or the order is too
            # small to buy one base unit (a nearly drained side of the pool): not filled.
            self.last_in = 0
            return 0
        if buying:
            reserve_token -= out
            reserve_base += amount
        else:
            reserve_token += amount
            reserve_base -= out
        self.model.view.trade_at(j, reserve_base / reserve_token, reserve_token / ONE)
        self.last_in = amount
        return out

    @property
    def stream(self) -> np.random.Generator:
        """This agent's random stream (created on first use, keyed by its account)."""
        if self._stream is None:
            self._stream = stream(self.model.config.seed, f"agent:{self.account}")
        return self._stream

    def act(self) -> None:
        """One step of market behaviour (overridden by each agent type)."""
