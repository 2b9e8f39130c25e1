"""Replaying a run's learning rounds, so that its counterfactual twin need not learn them again.

The twin (`Scenario.twin`: the same scenario and seed, reward budget 0) differs from its run
in the market only. Its federated learning is the run's for as long as its clients choose
the same participants and the same actions (`abm.agents.conduct`): the learning core is
deterministic given the seed and each round's participants and actions
(`abm.fl.federation`; the contribution method draws from its own stream), and nothing else
of the market reaches it. So the twin takes each round's outcome from the run's
`LearningLog` (`abm.learning_log`) while its participants and actions match, and trains
nothing. At the first round where they differ (a client priced out of training by a zero
budget, an adaptive client that learned other payoffs, say) the twin catches up: it trains
and measures the rounds it took from the log, in order, so that its learning core and
contribution method reach the state that round starts from, and learns on its own from
there. Either way its tables are those of a twin that learned every round itself (tested;
and proved round by round in a `check=True` run, which learns every round and compares).

The saving is the twin's whole learning (the baseline's `fl` and `contribution` phases,
about half of the twin's time) whenever participation does not depend on the rewards.

The same holds between any two runs whose scenarios have the same `learning_key`
(`abm.learning_log`, which also keeps a sweep worker's logs between its runs).

Here: what the agents replay with, one round's outcome (`LearnedRound`) and the replay of a
log (`Replay`); the log itself and its key are the run layer's (`abm.learning_log`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from abm.learning_log import LearningLog


@dataclass(frozen=True)
class LearnedRound:
    """What one round's learning gave the model.

    `participants` bool (n,) (who trained); `accuracy`, `loss` of the new global model and
    `prev_accuracy` of the one before (validation split; a fraction and a mean cross-entropy);
    `contributions` (k,) float64, the method's values for the k participants in client
    order; the method's `info` and coalition `evaluations` (0 when nobody trained); the
    zero-update probe's value in the round's game (`abm.fl.shapley.zero_probe`, utility
    units; 0 when nobody trained) and the coalitions evaluated for it; `actions` (n,): what
    each client did in the round (`abm.agents.conduct`: its behaviour's name for a fixed
    client, its chosen action for an adaptive one), which the learning depends on as much
    as on the participants.
    """

    participants: np.ndarray
    accuracy: float
    loss: float
    prev_accuracy: float
    contributions: np.ndarray
    info: dict[str, Any]
    evaluations: int
    probe: float = 0.0
    probe_evaluations: int = 0
    actions: tuple[str, ...] = ()

    def differences(self, other: LearnedRound) -> list[str]:
        """The fields in which `other` differs from this round (exact comparison; [] if
        none)."""
        out = [name for name in ("accuracy", "loss", "prev_accuracy", "info", "evaluations",
                                 "probe", "probe_evaluations", "actions")
               if getattr(self, name) != getattr(other, name)]
        for name in ("participants", "contributions"):
            if not np.array_equal(getattr(self, name), getattr(other, name)):
                out.append(name)
        return out


class Replay:
    """Serves a twin the rounds of its run's `LearningLog` while its participants and their
    actions match.

    `recorded(r, participants, actions)` is the run's round r + 1 if every round so far
    matched and this one has the same participants and actions, else None, from then on for
    good: once the twin chose differently its learning is its own.
    """

    def __init__(self, log: LearningLog, key: str, source: str) -> None:
        """`key`: the `learning_key` of the replaying model's scenario, read from `source`
        (for the message)."""
        if log.key != key:
            raise ValueError(
                f"{source}: the learning log comes from a scenario that learns "
                "differently (seed, fl, contribution or the clients' behaviours differ); "
                "a log replays only into a scenario with the same learning_key"
            )
        self.log = log
        self.in_step = True

    def recorded(self, r: int, participants: np.ndarray,
                 actions: tuple[str, ...] = ()) -> LearnedRound | None:
        rounds = self.log.rounds
        if (self.in_step and r < len(rounds)
                and np.array_equal(rounds[r].participants, participants)
                and rounds[r].actions == tuple(actions)):
            return rounds[r]
        self.in_step = False
        return None
