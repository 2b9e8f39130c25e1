"""The money book of a run's rewards: every round's budget, each client's payout and where
each payout went, exact base units (docs/model.md, section 4.11).

`FederationAgent.run_round` records each round here (`RewardBook.record_round`); the run's
summary and money table (`abm.run`) read their reward figures from the book and compute none
of them again. Destinations come from the payouts themselves (`abm.rewards.Payout`,
`Destination`), never from a policy's name, so a new policy's money is in the book and the
money table without an entry of its own. This module imports neither mesa nor torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from abm.amm import InvariantViolation
from abm.rewards import ClientAccount, Destination, Payout

#: The holder type of the pools (as `WallStreetFedsModel.holder_type` names it): where USD
#: put into a pool, by purchase or as liquidity, went.
POOLS = "pool"


class RewardBook:
    """The rewards of one run so far, base units (integers, 1 USD = 10**18).

    Per run: `budget_in` (USD the model buyers paid in), `usd_paid` (USD that left the
    treasury as rewards), `total_cost` (fees and slippage the federation paid delivering
    them: part of what went into the pools, not a destination of its own), `equal_reference`
    (what `equal` would have allotted each client: the sum of R // N). Per client, in the
    order of `clients`: `allotted` (the policy's allotments), `paid[destination]` (USD paid
    to each destination that leaves the treasury), `equal_reference_by_client` (what `equal`
    would have allotted it in the rounds it trained: the sum of R // k), `realised` (the
    rewards it realised by realisable value) and `last_realised` (the latest round's). Per
    account: `dividends_to`.

    Identities, checked as each round is recorded (`InvariantViolation` if broken): a round's
    allotments never exceed its budget, and no payout moves more than its allotment; so
    `destinations()` and `by_holder()` sum to `budget_in` exactly.
    """

    def __init__(self, clients: Sequence[ClientAccount], treasury: str) -> None:
        n = len(clients)
        self.clients = list(clients)
        self.treasury = treasury
        self.budget_in = 0
        self.total_cost = 0
        self.equal_reference = 0
        self.equal_reference_by_client = [0] * n
        self.allotted = [0] * n
        self.paid: dict[Destination, list[int]] = {
            d: [0] * n for d in Destination if d is not Destination.TREASURY}
        self.dividends_to: dict[str, int] = {}
        self.realised = [0] * n
        self.last_realised = [0] * n

    def record_round(self, budget: int, payouts: Sequence[Payout],
                     participants: Sequence[int] | np.ndarray,
                     realised: Sequence[int]) -> None:
        """Record one round: its `budget` (base units, paid into the treasury), one payout per
        client (an empty `Payout` for a client that sat out), the indices of the clients that
        trained (`participants`) and what each client realised by realisable value."""
        if len(payouts) != len(self.clients) or len(realised) != len(self.clients):
            raise ValueError(f"{len(payouts)} payouts and {len(realised)} realised rewards "
                             f"for {len(self.clients)} clients")
        allotted = sum(p.reward for p in payouts)
        if allotted > budget:
            raise InvariantViolation(f"a round allotted {allotted} base units of a budget of "
                                     f"{budget}")
        went = [payout.by_destination() for payout in payouts]
        for client, destinations in zip(self.clients, went, strict=True):
            if min(destinations.values()) < 0:
                raise InvariantViolation(f"client {client.token}'s payout moved more than its "
                                         f"allotment, or a negative amount: {destinations}")
        # Checked before anything is booked: a refused round leaves the book as it was.
        n = len(self.clients)
        self.budget_in += budget
        self.total_cost += sum(p.cost for p in payouts)
        self.equal_reference += budget // n
        for i in participants:
            self.equal_reference_by_client[i] += budget // len(participants)
        for i, payout in enumerate(payouts):
            self.allotted[i] += payout.reward
            for destination, paid in self.paid.items():
                paid[i] += went[i][destination]
            self.realised[i] += realised[i]
            for account, amount in payout.usd_to_holders.items():
                self.dividends_to[account] = self.dividends_to.get(account, 0) + amount
        self.last_realised = list(realised)

    @property
    def usd_paid(self) -> int:
        """USD of the budgets that left the treasury: the sum over every destination paid."""
        return sum(sum(paid) for paid in self.paid.values())

    @property
    def kept(self) -> int:
        """USD of the budgets still in the treasury: allotments kept, rounding dust, and the
        budgets of rounds that paid nobody (withheld, or nobody trained)."""
        return self.budget_in - self.usd_paid

    def destinations(self) -> dict[Destination, int]:
        """Where the budgets went, run totals by destination (every `Destination` once, in
        its order): sums to `budget_in` exactly."""
        out = {destination: sum(paid) for destination, paid in self.paid.items()}
        out[Destination.TREASURY] = self.kept
        return out

    def by_holder(self, holder_type: Callable[[str], str]) -> dict[str, int]:
        """Where the budgets went by the holder type of whoever received them, base units
        (sums to `budget_in` exactly): cash to the type of the client's account, dividends to
        the type of each receiving account, USD put into pools to `POOLS`, the kept part to
        the treasury's type. `holder_type` maps a ledger account to its type."""
        out: dict[str, int] = {}

        def add(kind: str, amount: int) -> None:
            out[kind] = out.get(kind, 0) + amount

        for client, cash in zip(self.clients, self.paid[Destination.CLIENT], strict=True):
            add(holder_type(client.account), cash)
        for account, amount in self.dividends_to.items():
            add(holder_type(account), amount)
        add(POOLS, sum(self.paid[Destination.POOL_PURCHASE])
            + sum(self.paid[Destination.POOL_LIQUIDITY]))
        add(holder_type(self.treasury), self.kept)
        if sum(out.values()) != self.budget_in:
            raise InvariantViolation(f"the budgets by holder type {out} do not add up to the "
                                     f"{self.budget_in} base units paid in")
        return out
