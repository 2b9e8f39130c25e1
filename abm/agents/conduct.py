"""Client conduct: how an FL client chooses to behave in each round (docs/model.md, 7.16).

A conduct is a registered component (`abm.registry`, kind `conduct`), named per client group
in `clients[i].conduct`. `fixed` (the default) keeps the client's behaviour
(`clients[i].behaviour`) for the whole run; an adaptive conduct picks one *action* every
round among

    honest       train on its own data with its own behaviour (honest or small_data)
    free_ride    send an update without training (a zero update, or small noise)
    label_flip   train on flipped labels (y -> n_classes - 1 - y), a poisoning attack
    sit_out      do not train this round (no update, no cost, no reward)

and learns from what it realised: the reward the round's payout added to its holdings if
sold (`RoundRecord.reward_usd`, 7.13) minus the cost of the action it took. Each action's
cost is a multiple of the client's `cost_per_round` (`cost_factor`).

The rule's state is a small float array per client (`start`); the client keeps it, draws one
uniform number per round from its own stream (`agent:<account>/conduct`, `abm.streams`)
whatever happens, picks the action by `choose`, and after the round calls `learn`. So a run
and its counterfactual twin draw the same numbers round for round and differ only where the
payoffs they learned from differ.

This module imports neither mesa nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import field_validator

from abm.registry import Component, param
from abm.registry import Params as _Params

if TYPE_CHECKING:
    from abm.fl.behaviours import Behaviour

__all__ = ["ACTIONS", "NOT_DRAWN", "Adaptive", "ConductRule", "Fixed", "last_quarter_start"]

#: Every action an adaptive client may take, in the order the reference lists them.
ACTIONS = ("honest", "free_ride", "label_flip", "sit_out")
Action = Literal["honest", "free_ride", "label_flip", "sit_out"]
#: rounds.parquet's `action` of an adaptive client the round's sample (`fl.clients_per_round`,
#: docs/model.md 7.15) did not invite: it chose nothing, played nothing, learned nothing.
NOT_DRAWN = "not_drawn"
#: The base behaviours an adaptive client's `honest` action may run: those that train on the
#: client's own, true labels (its partition size is the behaviour's, fixed for the run).
TRAINING_BEHAVIOURS = ("honest", "small_data")


def last_quarter_start(last_round: int) -> int:
    """The rounds after this one are the last quarter of a run whose last round is
    `last_round` (the last ceil(R / 4)): where `honest_share_last_quarter` is read."""
    return last_round - -(-last_round // 4)


class ConductRule(Component):
    """Base class: how a client chooses its action each round.

    A rule with no `actions` is fixed: the client runs its behaviour every round and draws
    nothing. An adaptive rule lists its actions; the client keeps the rule's state
    (`start`), picks by `probabilities` and a uniform draw (`choose`), and after the round
    hands `learn` its payoff (USD).
    """

    kind = "conduct"

    @property
    def actions(self) -> tuple[str, ...]:
        """The actions it chooses among, in `ACTIONS` order; () for a fixed conduct."""
        return ()

    def cost_factor(self, action: str) -> float:
        """The cost of `action` as a multiple of the client's `cost_per_round`: training
        (honest, label_flip) costs it all, free riding and sitting out nothing."""
        return {"honest": 1.0, "label_flip": 1.0}.get(action, 0.0)

    def behaviour(self, action: str) -> Behaviour | None:
        """The behaviour the federation runs for `action` in place of the client's own
        (None: its own, for `honest`; and for `sit_out`, which does not train)."""
        from abm.fl.behaviours import make_behaviour

        if action == "free_ride":
            return make_behaviour("free_rider")
        if action == "label_flip":
            return make_behaviour("label_flip")
        return None

    def start(self) -> np.ndarray:
        """A client's learning state before the first round (float64, one per action)."""
        return np.zeros(len(self.actions))

    def probabilities(self, state: np.ndarray) -> np.ndarray:
        """The probability of each action (sums to 1) given the client's `state`."""
        return np.full(len(self.actions), 1.0 / len(self.actions))

    def learn(self, state: np.ndarray, action: int, payoff_usd: float) -> None:
        """Update `state` in place after a round in which it took `action` (an index into
        `actions`) and realised `payoff_usd` (reward if sold minus the action's cost, USD)."""


class Fixed(ConductRule):
    """Behaves as its behaviour says in every round, as every client did before conduct
    existed: it chooses nothing and draws nothing."""

    name = "fixed"


class Adaptive(ConductRule):
    """Chooses its action each round by a logit (softmax) response to what each action paid
    it so far: it first tries every action once (uniformly among those it has not tried),
    then picks with probabilities proportional to exp(mean payoff / temperature), mixed with
    a uniform choice with weight `exploration`; an action's mean payoff (reward realised by
    realisable value minus the action's cost) is recency-weighted with `learning_rate`,
    without bias towards its start (docs/model.md, 7.16)."""

    name = "adaptive"

    class Params(_Params):
        actions: list[Action] = param(
            list(ACTIONS), "the actions it chooses among (honest training, free riding, "
            "label flipping, sitting out), at least two, each once", min_length=2)
        learning_rate: float = param(0.3, "weight of the latest payoff in an action's "
                                     "recency-weighted mean payoff", unit="fraction", gt=0,
                                     le=1)
        temperature: float = param(10.0, "payoff difference that multiplies an action's "
                                   "odds by e (lower: closer to a best response)",
                                   unit="USD", gt=0, le=1e9)
        exploration: float = param(0.05, "share of the choice made uniformly at random "
                                   "among the actions", unit="fraction", ge=0, lt=1)
        free_ride: Literal["zero", "noise"] = param(
            "zero", "what a free-riding round sends: a zero update, or Gaussian noise")
        noise_scale: float = param(0.01, "noise standard deviation per coordinate (free_ride "
                                   "noise)", unit="model parameter units", ge=0, le=1)
        free_ride_cost: float = param(0.05, "cost of a free-riding round", unit="x "
                                      "cost_per_round", ge=0, le=10)
        label_flip_cost: float = param(1.0, "cost of a label-flipping round (it trains)",
                                       unit="x cost_per_round", ge=0, le=10)

        @field_validator("actions")
        @classmethod
        def _distinct(cls, value: list[str]) -> list[str]:
            if len(set(value)) != len(value):
                raise ValueError("each action may be listed once")
            return value

    @classmethod
    def check_in(cls, params, scenario):
        for i, group in enumerate(scenario.clients):
            if group.conduct is not params:
                continue
            if group.behaviour not in TRAINING_BEHAVIOURS:
                return (f"an adaptive client's honest action runs its behaviour, which must "
                        f"train on its true labels ({' or '.join(TRAINING_BEHAVIOURS)}), not "
                        f"{group.behaviour!r}: its other behaviours are actions")
            if group.participation.kind != "always":
                return (f"an adaptive client chooses itself when to sit out (the action "
                        f"sit_out); clients[{i}].participation must be 'always', not "
                        f"{group.participation.kind!r}")
            if group.identities > 1:
                # One owner's identities would each learn and choose on their own, which no
                # Sybil does; a joint choice is not modelled.
                return (f"an adaptive client chooses alone; clients[{i}].identities is "
                        f"{group.identities}: give adaptive clients one identity each")
        return None

    @property
    def actions(self) -> tuple[str, ...]:
        chosen = set(self.params.actions)
        return tuple(a for a in ACTIONS if a in chosen)

    def cost_factor(self, action: str) -> float:
        p = self.params
        return {"honest": 1.0, "free_ride": p.free_ride_cost,
                "label_flip": p.label_flip_cost}.get(action, 0.0)

    def behaviour(self, action: str) -> Behaviour | None:
        if action == "free_ride":
            from abm.fl.behaviours import make_behaviour

            return make_behaviour("free_rider", mode=self.params.free_ride,
                                  noise_scale=self.params.noise_scale)
        return super().behaviour(action)

    def start(self) -> np.ndarray:
        """Row 0: each action's mean payoff (USD); row 1: its step trace (0: never tried)."""
        return np.zeros((2, len(self.actions)))

    def probabilities(self, state: np.ndarray) -> np.ndarray:
        p = self.params
        mean, trace = state
        untried = trace == 0
        if untried.any():
            # Every action is tried once before payoffs are compared: an estimate from no
            # observation would lock the client into the first action that paid anything.
            return untried / untried.sum()
        z = mean / p.temperature
        logit = np.exp(z - z.max())  # shifted: the same ratios, no overflow
        return (1.0 - p.exploration) * logit / logit.sum() + p.exploration / mean.size

    def learn(self, state: np.ndarray, action: int, payoff_usd: float) -> None:
        """Move the action's mean payoff towards `payoff_usd` by the step alpha / o, where the
        trace o <- o + alpha (1 - o) starts at 0: the first payoff sets the mean, later ones
        weigh alpha in the limit (Sutton and Barto 2018, exercise 2.7: a recency-weighted
        mean without the bias of its initial value)."""
        alpha = self.params.learning_rate
        mean, trace = state
        trace[action] += alpha * (1.0 - trace[action])
        mean[action] += alpha / trace[action] * (payoff_usd - mean[action])
