"""A run's learning log, the key it replays under, and each worker process's cache of logs.

A model records every learning round it takes (`abm.agents.replay.LearnedRound`) in its
`LearningLog`. Its learning is a function of its scenario's `learning_key` (seed, `fl`,
`contribution`, the clients' behaviours and adaptive conducts) and of each round's
participants and their actions (`abm.agents.conduct`; a fixed client always takes its
behaviour): the learning core is deterministic given the seed, the participants and their
actions (`abm.fl.federation`; the contribution method draws from its own stream), and
nothing else of the market reaches it. So a model whose key is the same can take each round
from the log while its clients choose the same participants and actions
(`abm.agents.replay.Replay`) and get the tables of a model that learned every round itself
(tested).

Two users: a run's counterfactual twin (`Scenario.twin`: the same learning, reward budget 0)
replays its run's log (`abm.run.simulate`); and a sweep over market or reward parameters
learns once per key in each worker process (`abm.sweep.executor.execute_run`), each later run
of that key replaying the log of the one before, kept here (`recall`, `remember`). A log is
only ever replayed in the process that learned it, so a run's tables are those its own
machine would compute.

No Mesa, no torch: the sweep driver orders its runs by `learning_key` without importing the
model.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from abm.agents.replay import LearnedRound
    from abm.scenario import Scenario

__all__ = ["LOG_CACHE", "LearningLog", "forget", "learning_key", "recall", "remember"]


def learning_key(scenario: Scenario) -> str:
    """What a run's learning depends on besides the participants and their actions, as
    canonical JSON: the seed, the `fl` and `contribution` sections, every client's behaviour
    and, when any client's conduct is not `fixed`, every client's conduct (what its actions
    run, e.g. the free rider's noise). A log replays only into a model whose key is the
    same."""
    groups = scenario.client_groups()
    key = {
        "seed": scenario.seed,
        "fl": scenario.fl.model_dump(mode="json"),
        "contribution": scenario.contribution.model_dump(mode="json"),
        "behaviours": [[g.behaviour, g.behaviour_params.model_dump(mode="json")]
                       for _, g in groups],
    }
    if scenario.n_owners != scenario.n_clients:  # Sybil identities share their owner's data
        key["owners"] = scenario.client_owners()
    conducts = [g.conduct.model_dump(mode="json") for _, g in groups]
    if any(c["kind"] != "fixed" for c in conducts):
        key["conducts"] = conducts
    return json.dumps(key, sort_keys=True)


@dataclass
class LearningLog:
    """A model's learning rounds in order (`rounds[r]`: round r + 1), and the `key`
    (`learning_key`) of the scenario that learned them."""

    key: str
    rounds: list[LearnedRound] = field(default_factory=list)


#: Learning logs of the runs this worker process simulated, by `learning_key`, the most
#: recently stored last: a later run that learns the same replays the latest one.
_LOGS: OrderedDict[str, LearningLog] = OrderedDict()
#: Learning keys kept per worker process (a log is ~1 kB per round).
LOG_CACHE = 32


def recall(key: str) -> LearningLog | None:
    """The log of the latest run of `key` this process simulated, if it still keeps one."""
    return _LOGS.get(key)


def remember(key: str, log: LearningLog) -> None:
    """Keep `log` as the latest of `key`; the keys stored least recently go beyond
    `LOG_CACHE`."""
    _LOGS[key] = log
    _LOGS.move_to_end(key)
    while len(_LOGS) > LOG_CACHE:
        _LOGS.popitem(last=False)


def forget() -> None:
    """Drop every kept log: the next run of each key learns again (a benchmark's repeated
    sweep costs what its first one did)."""
    _LOGS.clear()
