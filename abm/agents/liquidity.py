"""Liquidity providers: deposit into every pool, earn fees, bear impermanent loss, leave."""

from __future__ import annotations

from typing import TYPE_CHECKING

from abm.agents.trader import Trader
from abm.amm import ONE, to_units

if TYPE_CHECKING:
    from abm.model import WallStreetFedsModel
    from abm.scenario import LiquidityGroup


class LiquidityProvider(Trader):
    """Puts `allocation` of its cash into the pools at `enter_step`, split evenly.

    For each pool it swaps half of that pool's budget into the token and deposits both sides
    (a "zap"). It keeps what it deposited so that `hodl_value` (what the deposit would be worth
    had it held the two assets) and `fees_earned` (its share of each step's pool fees) can be
    reported; `lp_value - hodl_value - fees_earned` is its impermanent loss.

    Exit rules: `hold` stays to the end; `stop_loss` withdraws everything once its wealth is
    below (1 - stop_loss) of its starting cash; `horizon` withdraws after `horizon` steps.
    On exit it removes its liquidity and sells the tokens back (within its impact limit).
    """

    agent_type = "lp"

    def __init__(self, model: WallStreetFedsModel, spec: LiquidityGroup) -> None:
        super().__init__(model, "", spec.exit_rule, max_slippage=0.05)
        self.account = f"lp:{self.unique_id}"
        self.spec = spec
        self.start_cash = spec.cash
        self.deposited: dict[str, tuple[int, int]] = {}  # token -> (tokens, USD), base units
        self.active = False
        self.exited = False

    def act(self) -> None:
        step = self.model.steps
        if not self.active and not self.exited and step >= self.spec.enter_step:
            self.provide()
        elif self.active and self.should_exit(step):
            self.withdraw()

    def provide(self) -> None:
        """Zap `allocation` of the cash into every pool."""
        tokens = list(self.market.pools)
        per_pool = to_units(self.spec.cash * self.spec.allocation) // len(tokens)
        for token in tokens:
            pool = self.market.pools[token]
            got = self.buy(token, per_pool // 2)
            if got == 0:
                continue
            used_token, used_usd, _ = pool.add_liquidity(
                self.account, got, per_pool - per_pool // 2
            )
            self.deposited[token] = (used_token, used_usd)
        self.active = bool(self.deposited)

    def should_exit(self, step: int) -> bool:
        rule = self.spec.exit_rule
        if rule == "stop_loss":
            return self.wealth < (1.0 - self.spec.stop_loss) * self.start_cash
        if rule == "horizon":
            return step >= self.spec.enter_step + self.spec.horizon
        return False

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

    def accrue(self, fee_values: dict[str, float], prices: dict[str, float]) -> None:
        """Add this step's share of pool fees (USD) and refresh `hodl_value` (USD)."""
        ledger = self.market.ledger
        hodl = 0.0
        for token, (dep_token, dep_usd) in self.deposited.items():
            pool = self.market.pools[token]
            total = pool.total_shares
            if total:
                share = ledger.balance(self.account, pool.lp_asset) / total
                self.fees_earned += share * fee_values[token]
            hodl += dep_token / ONE * prices[token] + dep_usd / ONE
        self.hodl_value = hodl if self.deposited else 0.0

