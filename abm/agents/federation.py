"""The federation: runs FL rounds, measures contributions, pays the round's reward budget.

It is the only minter of client tokens, and its account is the treasury that receives the
buyers' USD each round before the reward policy moves it on.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from abm.agents.trader import Trader
from abm.amm import ONE, to_units
from abm.rewards import Budget, ClientAccount, RewardPolicy, shares_from_contributions

if TYPE_CHECKING:
    from abm.fl import ContributionMethod, Federation
    from abm.model import WallStreetFedsModel
    from abm.scenario import ContributionSpec

TREASURY = "federation"


class FederationAgent(Trader):
    """Runs one FL round every `round_every` steps and distributes that round's budget.

    Per round: train (FedAvg) -> contributions c (n,) by the configured method -> shares
    s (n,) by the negative-score rule -> buyers pay the budget R (USD) into the treasury ->
    the policy delivers s_i * R to client i. `timings` accumulates seconds spent in `fl`
    (training) and `contribution` (coalition evaluations).
    """

    agent_type = "federation"

    def __init__(self, model: WallStreetFedsModel, federation: Federation,
                 method: ContributionMethod, policy: RewardPolicy, budget: Budget,
                 clients: list[ClientAccount], spec: ContributionSpec,
                 behaviours: list[str]) -> None:
        super().__init__(model, TREASURY, policy.name, max_slippage=1.0)
        self.federation = federation
        self.method = method
        self.policy = policy
        self.budget = budget
        self.clients = clients
        self.spec = spec
        self.behaviours = behaviours
        self.timings = {"fl": 0.0, "contribution": 0.0}
        self.rounds_done = 0
        self.total_cost = 0  # base units of fees and slippage paid delivering rewards
        # The money book of the rewards, exact base units (docs/model.md, section 4.11).
        n = len(clients)
        self.budget_in = 0  # USD the model buyers paid in, all rounds
        self.equal_reference = 0  # what `equal` would have allotted each client: sum R // N
        self.allotted = [0] * n  # per client: the policy's allotments
        self.cash_to_client = [0] * n  # per client: USD paid to the client itself
        self.usd_to_pool = [0] * n  # per client: USD put into its pool (buyback, mint)
        self.dividends_to: dict[str, int] = {}  # per account: dividends received
        self.usd_paid = 0  # USD that left the treasury as rewards, all destinations
        # Rounds the method could not rank (no positive contribution): the shares then come
        # from `zero_total` (split equally, or withheld).
        self.unranked_rounds = 0
        self.unranked_budget = 0  # base units of budget in those rounds
        self.truncated_rounds = 0  # rounds the method truncated as a whole (GTG between-round)
        self.all_zero_rounds = 0  # rounds whose contributions were all exactly zero

    def run_round(self) -> tuple[list[dict[str, Any]], np.ndarray, float]:
        """One FL round and its reward distribution.

        Returns the rounds-table rows (one per client), the shares (n,) and the budget paid
        (USD display units).
        """
        t0 = time.perf_counter()
        result = self.federation.run_round()
        t1 = time.perf_counter()
        contributions = np.asarray(self.method(result), dtype=np.float64)
        self.timings["fl"] += t1 - t0
        self.timings["contribution"] += time.perf_counter() - t1

        shares = shares_from_contributions(
            contributions, negative=self.spec.negative, zero_total=self.spec.zero_total
        )
        info = getattr(self.method, "info_last_round", None) or {}
        truncated = bool(info.get("truncated_round", False))
        all_zero = bool(np.all(contributions == 0.0))
        # Unranked: the shares did not come from the scores (see shares_from_contributions).
        weights = (np.maximum(contributions, 0.0) if self.spec.negative == "clip"
                   else contributions - contributions.min())
        unranked = not weights.sum() > 0
        budget_usd = self.budget.for_round(
            self.rounds_done, result.accuracy - result.prev_accuracy
        )
        budget = to_units(float(budget_usd))
        market = self.model.market
        prices_before = [market.price(c.token) for c in self.clients]
        # The buyers' payment enters the economy here: new USD, recorded as minted.
        market.ledger.mint(TREASURY, "USD", budget)
        payouts = self.policy.distribute(market, TREASURY, self.clients, budget, shares)
        self.total_cost += sum(p.cost for p in payouts)
        self.rounds_done += 1
        self.budget_in += budget
        self.equal_reference += budget // len(self.clients)
        for i, payout in enumerate(payouts):
            self.allotted[i] += payout.reward
            self.cash_to_client[i] += payout.usd_to_client
            self.usd_to_pool[i] += payout.usd_to_pool
            self.usd_paid += payout.usd_paid
            for account, amount in payout.usd_to_holders.items():
                self.dividends_to[account] = self.dividends_to.get(account, 0) + amount
        if unranked:
            self.unranked_rounds += 1
            self.unranked_budget += budget
        self.truncated_rounds += truncated
        self.all_zero_rounds += all_zero

        sizes = self.federation.client_sizes
        evaluations = int(getattr(self.method, "evaluations_last_round", 0))
        rows = []
        for i, (client, payout) in enumerate(zip(self.clients, payouts, strict=True)):
            rows.append({
                "round": self.rounds_done,
                "step": self.model.steps,
                "client": client.token,
                "behaviour": self.behaviours[i],
                "n_samples": int(sizes[i]),
                "contribution": float(contributions[i]),
                "share": float(shares[i]),
                "reward_usd": payout.reward / ONE,
                "tokens_minted": payout.tokens_minted / ONE,
                "tokens_burned": payout.tokens_burned / ONE,
                "price_before": prices_before[i],
                "price_after": market.price(client.token),
                "accuracy": float(result.accuracy),
                "evaluations": evaluations,
                "method": self.spec.method,
                "policy": self.policy.name,
                "cost_usd": payout.cost / ONE,
                "usd_to_client": payout.usd_to_client / ONE,
                "usd_to_pool": payout.usd_to_pool / ONE,
                "usd_to_holders": sum(payout.usd_to_holders.values()) / ONE,
                "usd_kept": payout.usd_kept / ONE,
                "unranked": unranked,
                "truncated": truncated,
            })
        return rows, shares, budget_usd
