"""Participation rules: whether an FL client trains in the next round (docs/model.md, 7.13).

A rule is a registered component (`abm.registry`, kind `participation`), named per client
group in `clients[i].participation`. Before every round each client asks its rule whether to
train, given what it realised in the rounds so far (`RoundRecord`s, oldest first) and its
training cost per round; a client that does not train is absent from that round's coalition
game and earns nothing that round. Paying the cost is the client's business
(`abm.agents.client.Client.join_round`), not the rule's.

This module imports neither mesa nor torch.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import model_validator

from abm.registry import Component, param
from abm.registry import Params as _Params


@dataclass(frozen=True)
class RoundRecord:
    """What one client saw of one round (USD display units).

    `participated`: it trained in the round; `reward_usd`: what the round's reward delivery
    added to what its holdings would fetch if sold (`Market.liquidation_value` after minus
    before the policy paid out; 0 when it sat out); `budget_usd`: the round's budget R;
    `participants`: how many clients trained in the round.
    """

    participated: bool
    reward_usd: float
    budget_usd: float
    participants: int

    def __post_init__(self) -> None:
        # A client that trained was one of the round's participants; budgets are amounts.
        if self.participants < int(self.participated) or not self.budget_usd >= 0:
            raise ValueError(f"impossible round record: {self}")


class ParticipationRule(Component):
    """Base class: does a client train in the next round?"""

    kind = "participation"

    @abstractmethod
    def participates(self, history: Sequence[RoundRecord], cost_usd: float,
                     participating: bool) -> bool:
        """Whether the client trains in the next round. `history`: its records of the rounds
        so far, oldest first; `cost_usd`: its training cost per round (USD);
        `participating`: whether it trained in the latest round (True before the first)."""


class Always(ParticipationRule):
    """Trains in every round whatever it earns (the behaviour of every client before
    participation rules existed): it still pays its cost_per_round, so individual
    rationality can fail."""

    name = "always"

    def participates(self, history, cost_usd, participating):
        return True


class NetPayoff(ParticipationRule):
    """Weighs the reward it expects against its cost: it leaves when the expected reward over
    a trailing window of rounds falls below leave_below x its cost per round, and a client
    that left rejoins once it rises above rejoin_above x that cost. The expected reward is
    the mean, over the last `window` rounds, of the reward it realised by realisable value
    in the rounds it trained and, in the rounds it sat out, of the reward it forwent,
    estimated from the budget of those rounds: its yield (realised reward per USD of budget
    over its last `window` rounds of training) x the round's budget x the clients it shared
    with then / the clients that would share with it now (docs/model.md, 7.13)."""

    name = "net_payoff"

    class Params(_Params):
        window: int = param(3, "trailing rounds the expected reward averages over; no "
                            "decision before a full window has run", unit="rounds", ge=1,
                            le=1000)
        leave_below: float = param(1.0, "leaves when the expected reward per round is below "
                                   "this multiple of its cost per round", unit="x cost",
                                   ge=0, le=100)
        rejoin_above: float = param(1.2, "rejoins when the expected reward per round is above "
                                    "this multiple of its cost per round (>= leave_below, "
                                    "so that it does not flap)", unit="x cost", ge=0, le=100)

        @model_validator(mode="after")
        def _ordered(self):
            if self.rejoin_above < self.leave_below:
                raise ValueError(f"rejoin_above ({self.rejoin_above}) must be >= leave_below "
                                 f"({self.leave_below}), otherwise a client leaves and rejoins "
                                 "on the same expectation")
            return self

    def expected_reward(self, history: Sequence[RoundRecord]) -> float:
        """Expected reward per round (USD) from the last `window` records (see the class)."""
        window = self.params.window
        recent = list(history[-window:])
        if not recent:
            return 0.0
        trained = [r for r in history if r.participated][-window:]
        budget = sum(r.budget_usd for r in trained)
        rate = sum(r.reward_usd for r in trained) / budget if budget > 0 else 0.0
        shared = sum(r.participants for r in trained) / len(trained) if trained else 1.0
        # A round that paid nothing forgoes nothing, whatever the yield (also when a
        # vanishing past budget made the yield infinite: inf x 0 would be NaN).
        values = [
            r.reward_usd if r.participated
            else rate * r.budget_usd * shared / (r.participants + 1) if r.budget_usd > 0
            else 0.0
            for r in recent
        ]
        return sum(values) / len(values)

    def participates(self, history, cost_usd, participating):
        if len(history) < self.params.window:
            return participating
        expected = self.expected_reward(history)
        if participating:
            return not expected < self.params.leave_below * cost_usd
        return expected > self.params.rejoin_above * cost_usd
