"""Strategy switching: investors who re-pick their strategy by its fitness (docs/model.md,
7.17).

A switching rule is a registered component (`abm.registry`, kind `switching`), named per
investor group in `investors[i].switching`. `none` (the default) keeps each investor's
strategy for the whole run and draws nothing. `discrete_choice` lets every investor of the
group re-pick, now and then, among the strategies the rule allows it:

- **Asynchronous updating** (Hommes 2006): in each step an investor revises with
  probability `rate`.
- **Discrete choice** (Brock and Hommes 1998): a revising investor picks strategy h with
  probability exp(beta U_h) / sum_k exp(beta U_k), where U_h is h's fitness.
- **Herding** (Kirman 1993's recruitment; Lux and Marchesi 1999's contagion): with
  probability `herding` a revising investor instead meets another investor of its group,
  drawn uniformly, and adopts the strategy that one used at the start of the step.

**Fitness** is realised and public, as in Brock and Hommes: U_h is the exponentially
weighted mean, with weight `memory` on the past, of r_h,t, the mean over the investors that
used h in step t (every investor of the model, switching or not) of their per-step return of
wealth valued if sold (`wealth_if_sold`, USD, the realisable mark `abm.collect.AgentMarks`
computes each step): r_i,t = W_i,t / W_i,t-1 - 1, a fraction per step. A strategy no
investor used in a step keeps its fitness; every fitness starts at 0.

An investor keeps one instance of each strategy allowed to it, all created and started at
the start of the run (each joins its group's shared arrays, `abm.agents.strategies._Crowd` and
`_Chart`, like any investor of that strategy), so that a strategy it returns to has kept its
beliefs; the active one decides. Every instance observes every round. Instances other than
the group's own strategy draw from their own streams (`agent:<account>/traits:<name>`,
`.../signal:<name>`, `.../decide:<name>`), and an idle instance whose decisions draw (the
noise trader's) draws in every step in which its investor acts, so that no draw count depends
on the market. The revisions draw four uniforms per investor per step from
`agent:<account>/switching` (revise, herd, pick, partner), whatever happens.

This module imports neither mesa nor torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import field_validator

from abm import registry
from abm.agents.choice import choose
from abm.registry import Component, param
from abm.registry import Params as _Params

if TYPE_CHECKING:
    from abm.agents.investor import Investor
    from abm.collect import AgentMarks

__all__ = ["DiscreteChoice", "NoSwitching", "Switchboard", "SwitchingRule", "choice_probabilities"]


def choice_probabilities(fitness: np.ndarray, beta: float) -> np.ndarray:
    """exp(beta U_h) / sum_k exp(beta U_k) for the fitness `fitness` (per-step returns,
    fractions) and intensity of choice `beta` (1 / per-step return); shifted by the largest
    term first, which leaves the ratios and avoids overflow."""
    z = beta * np.asarray(fitness, dtype=float)
    weights = np.exp(z - z.max())
    return weights / weights.sum()


class SwitchingRule(Component):
    """Base class: whether and how the investors of a group re-pick their strategy."""

    kind = "switching"

    @property
    def strategies(self) -> tuple[str, ...]:
        """The strategies an investor of the group may use, in the order given; () for a
        group that keeps its strategy."""
        return ()

    @property
    def rate(self) -> float:
        """Probability that an investor revises its strategy in a step."""
        return 0.0

    @property
    def herding(self) -> float:
        """Probability that a revising investor copies another's strategy instead."""
        return 0.0

    @property
    def memory(self) -> float:
        """Weight of the past in a strategy's fitness (an exponentially weighted mean)."""
        return 0.0

    def probabilities(self, fitness: np.ndarray) -> np.ndarray:
        """The probability that a revising investor (not herding) picks each of
        `strategies`, given their fitness (per-step returns, fractions). Default: uniform."""
        return np.full(len(fitness), 1.0 / len(fitness))


class NoSwitching(SwitchingRule):
    """Each investor keeps its group's strategy for the whole run, as every investor did
    before switching existed: it re-picks nothing and draws nothing."""

    name = "none"


class DiscreteChoice(SwitchingRule):
    """Each step, with probability `rate`, an investor re-picks its strategy among
    `strategies`: with probability `herding` it adopts the strategy of another investor of
    its group met at random (Kirman's recruitment), else it picks strategy h with probability
    proportional to exp(beta U_h) (Brock and Hommes' discrete choice), U_h the exponentially
    weighted (`memory`) mean per-step return of wealth if sold of the investors using h
    (docs/model.md, 7.17)."""

    name = "discrete_choice"

    class Params(_Params):
        strategies: list[str] = param(
            ["fundamental", "momentum"], "the registered strategies an investor may use, "
            "the group's own among them, each once; each runs with the parameters of the "
            "scenario's first investor group of that strategy (its defaults if none)",
            min_length=2, max_length=20)
        beta: float = param(200.0, "intensity of choice: a fitness difference of 1/beta "
                            "multiplies a strategy's odds by e (0: uniform choice)",
                            unit="1 / (return per step)", ge=0, le=1e7)
        memory: float = param(0.9, "weight of the past in a strategy's fitness (its "
                              "exponentially weighted mean return; 0: the last step only)",
                              unit="fraction", ge=0, lt=1)
        rate: float = param(0.05, "probability that an investor revises its strategy in a "
                            "step", unit="probability per step", gt=0, le=1)
        herding: float = param(0.0, "probability that a revising investor copies the "
                               "strategy of another investor of its group met at random "
                               "instead of choosing by fitness", unit="probability", ge=0,
                               le=1)

        @field_validator("strategies")
        @classmethod
        def _distinct(cls, value: list[str]) -> list[str]:
            if len(set(value)) != len(value):
                raise ValueError("each strategy may be listed once")
            return value

    @classmethod
    def check_in(cls, params, scenario):
        known = registry.names("strategy")
        for name in params.strategies:
            if name not in known:
                return (f"strategy {name!r} is not registered: choose among "
                        f"{', '.join(sorted(known))}")
            if not registry.get("strategy", name).follows_watchlist:
                return (f"strategy {name!r} trades the tokens its own rule names on a "
                        f"schedule of its own: an investor cannot switch into or out of it")
        for i, group in enumerate(scenario.investors):
            if group.switching is not params:
                continue
            if group.strategy not in params.strategies:
                return (f"investors[{i}] use {group.strategy!r}, which must be among the "
                        f"strategies they switch between ({', '.join(params.strategies)})")
            if params.herding > 0:
                # Groups with equal rules are one population (`Switchboard`): herding meets
                # another member of it, whichever group that member came from.
                rule = params.model_dump_json()
                population = sum(g.count for g in scenario.investors
                                 if g.switching.model_dump_json() == rule)
                if population < 2:
                    return (f"herding copies another investor of the population (the groups "
                            f"with this switching rule), and investors[{i}]'s has "
                            f"{population}: set herding to 0, add investors, or give another "
                            f"group the same rule")
        return None

    @property
    def strategies(self) -> tuple[str, ...]:
        return tuple(self.params.strategies)

    @property
    def rate(self) -> float:
        return self.params.rate

    @property
    def herding(self) -> float:
        return self.params.herding

    @property
    def memory(self) -> float:
        return self.params.memory

    def probabilities(self, fitness: np.ndarray) -> np.ndarray:
        """The discrete-choice probability of each of `strategies` given their fitness."""
        return choice_probabilities(fitness, self.params.beta)


class _Group:
    """The switching investors of one scenario group and their rule's fitness."""

    def __init__(self, rule: SwitchingRule, members: list[Investor], names: list[str]):
        self.rule = rule
        self.members = members
        #: Index into the switchboard's strategy names of each allowed strategy.
        self.index = np.array([names.index(s) for s in rule.strategies], dtype=np.intp)
        self.fitness = np.zeros(len(rule.strategies))
        self.draws = [m._own_stream("switching") for m in members]
        self._block: list[list[list[float]]] = [[] for _ in members]


class Switchboard:
    """The model's strategy switching: the per-step revisions, the fitness of every
    strategy and the share of investors using each (docs/model.md, 7.17).

    `investors` are the model's investors, in creation order; `marks` the model's
    `AgentMarks` (their `wealth_if_sold` each step). Built only when a group switches."""

    #: Steps of draws taken ahead at once (the same numbers as one step at a time).
    BLOCK = 256

    def __init__(self, investors: Sequence[Investor]) -> None:
        self.investors = list(investors)
        names: list[str] = []
        for inv in self.investors:
            for name in (inv.strategy, *inv.switching.strategies):
                if name not in names:
                    names.append(name)
        #: Every strategy an investor uses or may use, in order of first appearance.
        self.names = names
        self._code = {n: i for i, n in enumerate(names)}
        self.groups: list[_Group] = []
        # Groups with the same switching rule (equal parameters) are one population: they
        # share the rule's fitness and meet each other.
        by_rule: dict[str, list[Investor]] = {}
        for inv in self.investors:
            if inv.switching.strategies:
                by_rule.setdefault(inv.switching.params.model_dump_json(), []).append(inv)
        for members in by_rule.values():
            self.groups.append(_Group(members[0].switching, members, names))
        self._rows: np.ndarray | None = None
        self._before: np.ndarray | None = None
        self.active = np.array([self._code[i.strategy] for i in self.investors], dtype=np.intp)

    def _draw(self, g: _Group, k: int) -> list[float]:
        block = g._block[k]
        if not block:
            g._block[k] = block = g.draws[k].random((self.BLOCK, 4)).tolist()[::-1]
        return block.pop()

    def revise(self) -> bool:
        """Every switching investor's revision of the step (before anyone acts); returns
        whether any investor changed strategy. Herding copies what the met investor used at
        the start of the step, so the order of revisions does not matter."""
        changed = False
        for g in self.groups:
            rule, members = g.rule, g.members
            rate, herding = rule.rate, rule.herding
            start = [m.strategy for m in members]
            chance = rule.probabilities(g.fitness)
            allowed = rule.strategies
            k_all = len(members)
            for k, inv in enumerate(members):
                u_rev, u_herd, u_pick, u_meet = self._draw(g, k)
                if u_rev >= rate:
                    continue
                if u_herd < herding:
                    # Another member, uniformly: the k_all - 1 others in order, skipping itself.
                    other = min(int(u_meet * (k_all - 1)), k_all - 2)
                    name = start[other + (other >= k)]
                else:
                    name = allowed[choose(chance, u_pick)]
                if name != inv.strategy:
                    inv.switch_to(name)
                    changed = True
        if changed:
            self.active = np.array([self._code[i.strategy] for i in self.investors],
                                   dtype=np.intp)
        return changed

    def observe(self, marks: AgentMarks) -> None:
        """After the step's marks: each strategy's mean per-step return of wealth if sold
        over the investors that used it in the step, folded into each group's fitness."""
        if self._rows is None:
            self._rows = np.array([i.mark_row for i in self.investors], dtype=np.intp)
        now = marks.values["wealth_if_sold"][self._rows]
        before, self._before = self._before, now.copy()
        if before is None:
            return
        ok = before > 0
        ret = np.divide(now, before, out=np.zeros_like(now), where=ok) - 1.0
        codes = self.active[ok]
        sums = np.bincount(codes, weights=ret[ok], minlength=len(self.names))
        counts = np.bincount(codes, minlength=len(self.names))
        #: The step's mean return per strategy (NaN: nobody used it).
        self.last_returns = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        for g in self.groups:
            r = self.last_returns[g.index]
            m = g.rule.memory
            seen = ~np.isnan(r)
            g.fitness[seen] = m * g.fitness[seen] + (1.0 - m) * r[seen]

    def shares(self) -> dict[str, float]:
        """`strategy_share_<name>`: the share of all investors using each strategy now."""
        counts = np.bincount(self.active, minlength=len(self.names))
        total = max(len(self.investors), 1)
        return {f"strategy_share_{n}": float(c) / total
                for n, c in zip(self.names, counts.tolist(), strict=True)}
