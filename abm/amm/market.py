"""The market: one pool per client token, all paired with the same base currency, all in one
ledger; prices and mark-to-market values for agents and run tables."""

from __future__ import annotations

from abm.amm.ledger import Ledger
from abm.amm.math import DEFAULT_FEE_BPS, check_fee_bps
from abm.amm.pool import Pool


class Market:
    """Pools of `token/base` in `ledger`, keyed by token; `fee_bps` is the default fee."""

    def __init__(self, ledger: Ledger, base: str = "USD", fee_bps: int = DEFAULT_FEE_BPS) -> None:
        self.ledger = ledger
        self.base = base
        self.fee_bps = check_fee_bps(fee_bps)
        self.pools: dict[str, Pool] = {}

    def __repr__(self) -> str:
        return f"Market({self.base}, pools={list(self.pools)})"

    def create_pool(self, token: str, fee_bps: int | None = None) -> Pool:
        """A new, empty `token/base` pool (seed it with `add_liquidity`)."""
        if token in self.pools:
            raise ValueError(f"a pool for {token!r} already exists")
        pool = Pool(self.ledger, token, self.base, self.fee_bps if fee_bps is None else fee_bps)
        self.pools[token] = pool
        return pool

    def price(self, token: str) -> float:
        """Spot price of `token` in base per token (display units)."""
        return self.pools[token].spot_price()

    def value(self, account: str) -> int:
        """Everything `account` holds, marked to market at spot, in base units."""
        return sum(self.value_breakdown(account).values())

    def value_breakdown(self, account: str) -> dict[str, int]:
        """`{"usd": base held, "tokens": tokens at spot, "lp": LP shares at spot}`, base units,
        each rounded down.

        A token is worth `balance * reserve_base // reserve_token`. An LP share is worth its part
        of both reserves with the token reserve at spot, i.e. `2 * reserve_base / S` each. Assets
        without a pool, and tokens of a pool without liquidity, count 0.
        """
        held = self.ledger.balances(account)
        tokens = lp = 0
        for token, pool in self.pools.items():
            amount, shares = held.get(token, 0), held.get(pool.lp_asset, 0)
            if not amount and not shares:
                continue
            reserve_token, reserve_base = pool.reserves
            if not reserve_token or not reserve_base:
                continue
            tokens += amount * reserve_base // reserve_token
            if shares:
                lp += 2 * shares * reserve_base // pool.total_shares
        return {"usd": held.get(self.base, 0), "tokens": tokens, "lp": lp}
