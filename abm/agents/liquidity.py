"""Liquidity providers: deposit into every pool, earn fees, bear impermanent loss, leave."""

from __future__ import annotations

from typing import TYPE_CHECKING

from abm.agents.trader import BASE, Trader
from abm.amm import ONE, to_units
from abm.registry import build

if TYPE_CHECKING:
    from abm.model import WallStreetFedsModel
    from abm.scenario import LiquidityGroup


class LiquidityProvider(Trader):
    """Puts `allocation` of its cash into the pools at `enter_step`, split evenly.

    At genesis (`enter_step` 0) it buys the token side of each deposit from the federation at
    the pool's opening price (primary issuance: the federation mints the tokens, the USD goes
    to the treasury) and deposits both sides at that price, so no price moves before any
    signal exists (docs/model.md, section 5 (Initialization)). Entering later, it "zaps": swaps half
    of each pool's budget into the token on the market and deposits both sides; the USD
    swapped is recorded as `zapped_usd`, a visible decision in the agents table. It keeps what
    it deposited so that `hodl_value` (what the deposit would be worth had it held the two
    assets) and `fees_earned` (its share of each step's pool fees) can be reported;
    `lp_value - hodl_value - fees_earned` is its impermanent loss.

    Its exit rule (`abm.agents.lp_exit`) is asked every step once it is in the pools. On exit
    it removes its liquidity and sells the tokens back (within its impact limit).
    """

    agent_type = "lp"

    def __init__(self, model: WallStreetFedsModel, spec: LiquidityGroup) -> None:
        exit_rule = build(spec.exit)
        super().__init__(model, "", exit_rule.name, max_slippage=0.05)
        self.account = f"lp:{self.unique_id}"
        self.spec = spec
        self.exit_rule = exit_rule
        self.start_cash = spec.cash
        self.deposited: dict[str, tuple[int, int]] = {}  # token -> (tokens, USD), base units
        self.active = False
        self.exited = False

    def act(self) -> None:
        step = self.model.steps
        if (not self.active and not self.exited and not self.deposited
                and step >= self.spec.enter_step):
            self.provide()
        elif self.active and self.exit_rule.should_exit(self, step):
            self.withdraw()

    def provide_at_genesis(self, issuer: str) -> None:
        """Deposit `allocation` of the cash into every pool at its current price, buying the
        token side from `issuer` (the federation's treasury), which mints it.

        The USD paid for the tokens moves to the issuer in one transfer after the deposits
        (their sum), not one per pool: the same balances, one ledger call per provider
        instead of one per pool (setup at 10,000 pools). The deposits need no more than the
        cash left: `allocation` <= 1 of it covers both sides of every pool."""
        ledger = self.market.ledger
        pools = self.market.pools
        per_pool = to_units(self.spec.cash * self.spec.allocation) // len(pools)
        usd_side = per_pool // 2
        paid = 0
        for token, pool in pools.items():
            reserve_token, reserve_base = pool.reserves
            # Rounded down: the issuer never sells below the pool's price.
            bought = usd_side * reserve_token // reserve_base
            if not bought:
                continue
            ledger.mint(self.account, token, bought)
            used_token, used_usd, _ = pool.add_liquidity(self.account, bought, usd_side)
            self.deposited[token] = (used_token, used_usd)
            paid += usd_side
        ledger.transfer(self.account, issuer, BASE, paid)
        self.active = bool(self.deposited)

    def provide(self) -> None:
        """Zap `allocation` of the cash into every pool (swap half, deposit both sides)."""
        tokens = list(self.market.pools)
        per_pool = to_units(self.spec.cash * self.spec.allocation) // len(tokens)
        for token in tokens:
            pool = self.market.pools[token]
            usd_before = self.balance(BASE)
            got = self.buy(token, per_pool // 2)
            if got == 0:
                continue
            self.zapped_usd += (usd_before - self.balance(BASE)) / ONE
            used_token, used_usd, _ = pool.add_liquidity(
                self.account, got, per_pool - per_pool // 2
            )
            self.deposited[token] = (used_token, used_usd)
        self.active = bool(self.deposited)

    def withdraw(self) -> None:
        """Remove all liquidity and sell the tokens back for USD."""
        for token in self.deposited:
            pool = self.market.pools[token]
            shares = self.balance(pool.lp_asset)
            if shares:
                pool.remove_liquidity(self.account, shares)
            self.sell(token, self.balance(token))
        self.deposited.clear()
        self.active = False
        self.exited = True

    def accrue(self, prices: dict[str, float]) -> None:
        """Refresh `hodl_value` (USD): the deposit valued at today's spot prices.

        (Fees accrue to every holder of liquidity shares, see `WallStreetFedsModel._refresh`.)
        """
        # The deposits in display units, converted again only when they change (a deposit
        # or a withdrawal; a provider of a thousand pools is valued every step).
        items = list(self.deposited.items())
        if items != getattr(self, "_deposits_seen", None):
            self._deposits_seen = items
            self._deposits = [(token, dep_token / ONE, dep_usd / ONE)
                              for token, (dep_token, dep_usd) in items]
        hodl = 0.0
        for token, dep_token, dep_usd in self._deposits:
            hodl += dep_token * prices[token] + dep_usd
        self.hodl_value = hodl if self.deposited else 0.0

