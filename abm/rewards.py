"""Reward budgets, contribution shares and the five distribution policies (docs/model.md,
sections 7.6 and 7.7).

Every round the model buyers pay the federation a budget R (USD, a `Budget` component). Each
client's contribution c_i becomes a share s_i, and a policy turns client i's allotment s_i * R
into ledger movements: cash to the client, tokens minted to it, a buyback, or a dividend to
its holders:

=========  ==================================================================================
equal      baseline: R / N USD paid straight to every client
direct     baseline: s_i * R USD paid straight to client i (classic allocation, no tokens)
mint       the federation mints client i's token worth s_i * R at the pool's spot price; the
           buyers' USD goes into the pool as liquidity, to the client, or stays in treasury
buyback    the federation buys client i's token from its pool with s_i * R USD and burns it
dividend   s_i * R USD paid pro rata to all holders of client i's token (pools excluded)
=========  ==================================================================================

Money here is integer base units (18 decimals); every movement goes through the ledger, so the
ledger's conservation check covers the policies too. Integer division leaves at most a few base
units of dust per round; the dust stays in the federation's treasury, never disappears.

A new policy or budget is one subclass of `RewardPolicy` or `Budget` (see `abm.registry`);
a policy also says what a holder can expect from its token (`token_value`), which fundamental
investors use. This module imports neither mesa nor torch.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import numpy as np
from pydantic import model_validator

from abm.amm import BASE, Market
from abm.registry import Component, param
from abm.registry import Params as _Params

#: Shares are floats; they become integer weights with this resolution before the budget is
#: split, so that the split itself is exact integer arithmetic (sum of allotments <= budget).
SHARE_RESOLUTION = 2**48
#: Largest budget a scenario may ask for per round (USD): far beyond any experiment, and
#: small enough that 18-decimal base units stay exact.
MAX_BUDGET_USD = 1e12


# -- budgets and shares -------------------------------------------------------------------------


class Budget(Component):
    """USD paid by model buyers per round, in display units."""

    kind = "budget"

    @abstractmethod
    def for_round(self, round_index: int, accuracy_gain: float) -> float:
        """Budget of round `round_index` (0-based), USD display units, >= 0.
        `accuracy_gain` is the round's change of validation accuracy (a fraction)."""


class ConstantBudget(Budget):
    """The same amount every round."""

    name = "constant"

    class Params(_Params):
        amount: float = param(1000.0, "paid every round", unit="USD per round", ge=0,
                              le=MAX_BUDGET_USD)

    def for_round(self, round_index, accuracy_gain):
        return self.params.amount


class ScheduleBudget(Budget):
    """A list of amounts, one per round in order; the last one repeats."""

    name = "schedule"

    class Params(_Params):
        schedule: list[float] = param(
            ..., "amount of each round, in order; the last value repeats",
            unit="USD per round", min_length=1,
        )

        @model_validator(mode="after")
        def _in_range(self):
            if any(not 0 <= x <= MAX_BUDGET_USD for x in self.schedule):
                raise ValueError(f"every amount must lie in [0, {MAX_BUDGET_USD:g}] USD")
            return self

    def for_round(self, round_index, accuracy_gain):
        schedule = self.params.schedule
        return schedule[min(round_index, len(schedule) - 1)]


class AccuracyGainBudget(Budget):
    """Pays per percentage point of validation accuracy the round gained; a round that lost
    accuracy pays nothing."""

    name = "accuracy_gain"

    class Params(_Params):
        per_point: float = param(100.0, "paid per accuracy point gained in the round",
                                 unit="USD per percentage point", ge=0, le=MAX_BUDGET_USD)

    def for_round(self, round_index, accuracy_gain):
        return self.params.per_point * max(0.0, 100.0 * accuracy_gain)


class CarriedContributions:
    """The `carry` rule's state: per client its contributions to date and their high-water mark.

    A round's payable score is what lifts a client's running total above its highest total so
    far (never below 0): a client whose update hurt the model first makes up that loss before
    it earns again, so chance positive rounds of an update that is worth nothing in
    expectation (noise) do not add up to pay. Totals are in the utility's units, summed over
    the rounds the client took part in (a round it sat out adds 0). docs/model.md, 7.6.
    """

    def __init__(self, n: int) -> None:
        self.total = np.zeros(n)
        self.high = np.zeros(n)  # starts at 0: a negative start is owed, a positive one paid

    def payable(self, contributions: np.ndarray) -> np.ndarray:
        """Add one round's contributions (n,) and return the payable scores (n,), all >= 0."""
        self.total = self.total + np.asarray(contributions, dtype=np.float64)
        high = np.maximum(self.high, self.total)
        gain = high - self.high
        self.high = high
        assert np.all(gain >= 0.0), "a high-water mark never falls"
        return gain


def score_weights(contributions: np.ndarray, negative: Literal["clip", "shift"]) -> np.ndarray:
    """The non-negative weights (n,) a round's scores (n,) are shared by: `clip` keeps the
    positive part, `shift` subtracts the lowest score. All zero: the round cannot be ranked."""
    c = np.asarray(contributions, dtype=np.float64)
    return np.maximum(c, 0.0) if negative == "clip" else c - c.min()


def shares_from_contributions(
    contributions: np.ndarray,
    *,
    negative: Literal["clip", "shift"] = "clip",
    zero_total: Literal["equal", "withhold"] = "equal",
) -> np.ndarray:
    """Reward shares s (n,) summing to 1, or all zero, from one round's scores c (n,).

    `clip`: s_i = max(c_i, 0) / sum_j max(c_j, 0): a client that hurt the model earns
    nothing. `shift`: s_i proportional to c_i - min(c), which keeps the ranking even when
    every score is negative. (The `carry` rule clips the payable scores of
    `CarriedContributions`.) When no client has a positive score the round's budget is split
    equally (`zero_total="equal"`) or kept by the federation (`"withhold"`).
    """
    c = np.asarray(contributions, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"contributions must be a non-empty 1-d array, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError(f"contributions must be finite, got {c.tolist()}")
    w = score_weights(c, negative)
    total = w.sum()
    if total > 0:
        return w / total
    if zero_total == "equal":
        return np.full(c.size, 1.0 / c.size)
    return np.zeros(c.size)


def allot(budget: int, shares: np.ndarray) -> list[int]:
    """Split `budget` base units by `shares`, exactly: sum(result) <= budget, each floor-rounded.

    Rounding down (never up) is what keeps the treasury from paying out more than it holds.
    """
    weights = [round(float(s) * SHARE_RESOLUTION) for s in shares]
    total = sum(weights)
    if total == 0:
        return [0] * len(weights)
    return [budget * w // total for w in weights]


# -- distribution policies ----------------------------------------------------------------------


class Destination(StrEnum):
    """Where a USD base unit of a client's allotment ends (the money book sums by these,
    `abm.reward_book`; the money table shows each, never a policy's name)."""

    CLIENT = "client"  # cash to the client's own wallet
    POOL_PURCHASE = "pool_purchase"  # into the token's pool, buying its tokens (a buyback)
    POOL_LIQUIDITY = "pool_liquidity"  # into the token's pool as liquidity (mint)
    HOLDERS = "holders"  # dividends to the token's holders
    TREASURY = "treasury"  # stays in the federation's treasury (kept)


@dataclass
class Payout:
    """What one client's allotment became in one round (base units).

    Every USD unit of the allotment ends in exactly one `Destination`, which the payout
    states itself: `usd_to_client` (cash to the client), `usd_to_pool_by_purchase` (into the
    token's pool buying tokens: a buyback), `usd_to_pool_as_liquidity` (into the token's pool
    as liquidity: `mint`), `usd_to_holders` (dividends, by account) or, for the rest, the
    treasury (`usd_kept`). A policy sets the amounts it moved; `usd_paid`, `usd_to_pool` and
    `usd_kept` follow from them, so the destinations add up to `reward` by construction.
    """

    reward: int = 0  # USD allotted to this client by the policy (s_i * R, or R / N)
    usd_to_client: int = 0  # paid to the client itself as cash
    usd_to_pool_by_purchase: int = 0  # spent buying the client's token from its pool
    usd_to_pool_as_liquidity: int = 0  # deposited into the client's pool as liquidity
    usd_to_holders: dict[str, int] = field(default_factory=dict)  # dividends, by account
    tokens_minted: int = 0  # client tokens created
    tokens_burned: int = 0  # client tokens destroyed
    cost: int = 0  # fees and slippage the federation paid to deliver the reward, in USD

    @property
    def usd_to_pool(self) -> int:
        """USD put into the client's token pool, by purchase or as liquidity."""
        return self.usd_to_pool_by_purchase + self.usd_to_pool_as_liquidity

    @property
    def usd_paid(self) -> int:
        """USD that left the treasury (to the client, its pool or token holders)."""
        return self.usd_to_client + self.usd_to_pool + sum(self.usd_to_holders.values())

    @property
    def usd_kept(self) -> int:
        """USD of the allotment that stayed in the treasury."""
        return self.reward - self.usd_paid

    def by_destination(self) -> dict[Destination, int]:
        """The allotment by destination, every `Destination` once (sums to `reward`)."""
        return {Destination.CLIENT: self.usd_to_client,
                Destination.POOL_PURCHASE: self.usd_to_pool_by_purchase,
                Destination.POOL_LIQUIDITY: self.usd_to_pool_as_liquidity,
                Destination.HOLDERS: sum(self.usd_to_holders.values()),
                Destination.TREASURY: self.usd_kept}


@dataclass(frozen=True)
class ClientAccount:
    """Where a client's rewards go: its ledger account and its token's asset name."""

    account: str
    token: str


class RewardPolicy(Component):
    """Turns allotments (USD base units per client) into ledger movements."""

    kind = "policy"

    def token_value(self, reserve_usd: np.ndarray, supply: np.ndarray, pooled: np.ndarray,
                    prices: np.ndarray, flow: np.ndarray) -> np.ndarray:
        """USD per token a holder can expect from each token under this policy, (n,).

        `reserve_usd` (USD), `supply` and `pooled` (tokens) and `prices` (USD per token) are
        per token; `flow` (USD) is the discounted reward still to come to each client. The
        pool's USD reserve backs every token in existence: selling into a constant-product
        pool can never extract more than it, so R / S is the liquidation floor. This default
        is for policies that pay token holders nothing: R / S (docs/model.md, section 7.7).
        """
        return reserve_usd / np.maximum(supply, 1e-18)

    def allot(self, budget: int, shares: np.ndarray) -> list[int]:
        """Per-client allotments in USD base units (proportional to shares by default)."""
        return allot(budget, shares)

    @abstractmethod
    def deliver(
        self, market: Market, treasury: str, clients: Sequence[ClientAccount], amounts: list[int]
    ) -> list[Payout]:
        """Move the allotments out of `treasury` (which holds them in USD); one Payout each,
        stating where each USD unit went (`Destination`): the run's money book and money
        table sum payouts by destination, so a new policy needs no entry anywhere else."""

    def distribute(
        self,
        market: Market,
        treasury: str,
        clients: Sequence[ClientAccount],
        budget: int,
        shares: np.ndarray,
    ) -> list[Payout]:
        """Allot `budget` (USD base units, already in the treasury) by `shares` and deliver it."""
        if budget < 0:
            raise ValueError(f"budget must be >= 0 base units, got {budget}")
        if len(shares) != len(clients):
            raise ValueError(f"{len(shares)} shares for {len(clients)} clients")
        return self.deliver(market, treasury, clients, self.allot(budget, shares))


class EqualPolicy(RewardPolicy):
    """Baseline: R / N USD to every client, whatever it contributed."""

    name = "equal"

    def allot(self, budget: int, shares: np.ndarray) -> list[int]:
        return [budget // len(shares)] * len(shares)

    def deliver(self, market, treasury, clients, amounts):
        return _pay_cash(market, treasury, clients, amounts)


class DirectPolicy(RewardPolicy):
    """Baseline: s_i * R USD to client i (classic allocation, no tokens involved)."""

    name = "direct"

    def deliver(self, market, treasury, clients, amounts):
        return _pay_cash(market, treasury, clients, amounts)


class MintPolicy(RewardPolicy):
    """Mint client i's token worth s_i * R at the pool's spot price and give it to client i.

    The reward is paid by dilution: every other holder's tokens are worth a little less. The
    buyers' USD (s_i * R) goes where its parameter `usd_destination` says (docs/model.md,
    section 7.7):

    - `pool` (default): into client i's pool as liquidity, paired with newly minted tokens at
      the pool's price (so the price does not move); the liquidity shares belong to the
      federation. The pool the client will sell its minted tokens into gets deeper.
    - `client`: paid to client i as cash, on top of the minted tokens.
    - `treasury`: kept by the federation (the money table shows it as kept).
    """

    name = "mint"

    class Params(_Params):
        usd_destination: Literal["pool", "client", "treasury"] = param(
            "pool", "where the buyers' USD (s_i x R per client and round) goes: into the "
            "client's pool as liquidity at the pool's price (the federation owns the shares), "
            "to the client as cash beside the minted tokens, or kept by the treasury"
        )

    def token_value(self, reserve_usd, supply, pooled, prices, flow):
        """The flow arrives as new tokens, which dilute: R / (S + F / price)."""
        return reserve_usd / (np.maximum(supply, 1e-18) + flow / prices)

    def deliver(self, market, treasury, clients, amounts):
        ledger = market.ledger
        out = []
        for client, amount in zip(clients, amounts, strict=True):
            pool = market.pools[client.token]
            reserve_token, reserve_base = pool.reserves
            # Round down: the client never receives more tokens than its allotment buys at spot.
            tokens = amount * reserve_token // reserve_base
            if tokens:
                ledger.mint(client.account, client.token, tokens)
            payout = Payout(reward=amount, tokens_minted=tokens)
            destination = self.params.usd_destination
            if amount and destination == "client":
                ledger.transfer(treasury, client.account, BASE, amount)
                payout.usd_to_client = amount
            elif amount and destination == "pool":
                paired = amount * reserve_token // reserve_base
                if paired:
                    ledger.mint(treasury, client.token, paired)
                    used_token, used_base, _ = pool.add_liquidity(treasury, paired, amount)
                    if paired > used_token:  # the router's ratio left some: unmint it
                        ledger.burn(treasury, client.token, paired - used_token)
                    payout.tokens_minted += used_token
                    payout.usd_to_pool_as_liquidity = used_base
            out.append(payout)
        return out


class BuybackPolicy(RewardPolicy):
    """Buy client i's token from its pool with s_i * R USD and burn what was bought.

    Every holder of the token (the client first of all) gains through the price. The
    federation pays the pool fee and the price impact of its own purchase: `cost` is the USD
    spent minus the spot value (before the purchase) of the tokens bought.
    """

    name = "buyback"

    def token_value(self, reserve_usd, supply, pooled, prices, flow):
        """The flow is spent buying from the pool, so it backs every token: (R + F) / S."""
        return (reserve_usd + flow) / np.maximum(supply, 1e-18)

    def deliver(self, market, treasury, clients, amounts):
        out = []
        for client, amount in zip(clients, amounts, strict=True):
            if amount == 0:
                out.append(Payout())
                continue
            pool = market.pools[client.token]
            reserve_token, reserve_base = pool.reserves
            bought = pool.swap_exact_in(treasury, BASE, amount, 0)
            market.ledger.burn(treasury, client.token, bought)
            spot_value = bought * reserve_base // reserve_token
            out.append(
                Payout(reward=amount, usd_to_pool_by_purchase=amount, tokens_burned=bought,
                       cost=amount - spot_value)
            )
        return out


class DividendPolicy(RewardPolicy):
    """Pay s_i * R USD to the holders of client i's token, pro rata to their balances.

    Tokens held by pools (and by the treasury itself) are excluded: a dividend to a pool would
    only move the price. With no holder outside the pool, the allotment stays in the treasury.
    """

    name = "dividend"

    def token_value(self, reserve_usd, supply, pooled, prices, flow):
        """The flow is paid to the tokens outside the pool (O): R / S + F / O."""
        outside = np.maximum(supply - pooled, 1e-18)
        return reserve_usd / np.maximum(supply, 1e-18) + flow / outside

    def deliver(self, market, treasury, clients, amounts):
        ledger = market.ledger
        excluded = {treasury, *(p.address for p in market.pools.values())}
        out = []
        for client, amount in zip(clients, amounts, strict=True):
            holders = {
                a: b for a, b in ledger.holders(client.token).items() if a not in excluded
            }
            total = sum(holders.values())
            paid: dict[str, int] = {}
            if amount and total:
                # Sorted so that the order of transfers never depends on dict history.
                for account in sorted(holders):
                    part = amount * holders[account] // total
                    if part:
                        ledger.transfer(treasury, account, BASE, part)
                        paid[account] = part
            out.append(Payout(reward=amount, usd_to_holders=paid))
        return out


def _pay_cash(
    market: Market, treasury: str, clients: Sequence[ClientAccount], amounts: list[int]
) -> list[Payout]:
    out = []
    for client, amount in zip(clients, amounts, strict=True):
        if amount:
            market.ledger.transfer(treasury, client.account, BASE, amount)
        out.append(Payout(reward=amount, usd_to_client=amount))
    return out


