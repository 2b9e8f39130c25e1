"""The federation: runs FL rounds, measures contributions, pays the round's reward budget.

It is the only minter of client tokens, and its account is the treasury that receives the
buyers' USD each round before the reward policy moves it on.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from abm.agents.replay import LearnedRound, Replay
from abm.agents.trader import Trader
from abm.amm import BASE, ONE, InvariantViolation, to_units
from abm.reward_book import RewardBook
from abm.rewards import (
    Budget,
    CarriedContributions,
    ClientAccount,
    Payout,
    RewardPolicy,
    score_weights,
    shares_from_contributions,
)
from abm.streams import stream

if TYPE_CHECKING:
    from abm.agents.conduct import ConductRule
    from abm.fl import Behaviour, ContributionMethod, Federation
    from abm.learning_log import LearningLog
    from abm.model import WallStreetFedsModel
    from abm.scenario import ContributionSpec

TREASURY = "federation"


class FederationAgent(Trader):
    """Runs one FL round every `round_every` steps and distributes that round's budget.

    Per round: train (FedAvg) -> contributions c (n,) by the configured method -> shares
    s (n,) by the negative-score rule -> buyers pay the budget R (USD) into the treasury ->
    the policy delivers s_i * R to client i, and the round's budget and payouts are recorded
    in `book` (`abm.reward_book.RewardBook`). `timings` accumulates seconds spent in `fl`
    (training) and `contribution` (coalition evaluations).
    """

    agent_type = "federation"

    def __init__(self, model: WallStreetFedsModel, federation: Federation,
                 method: ContributionMethod, policy: RewardPolicy, budget: Budget,
                 clients: list[ClientAccount], spec: ContributionSpec,
                 behaviours: list[str], log: LearningLog,
                 replay: Replay | None = None,
                 conducts: list[ConductRule] | None = None) -> None:
        super().__init__(model, TREASURY, policy.name, max_slippage=1.0)
        self.federation = federation
        self.method = method
        #: This model's learning rounds (`abm.learning_log`), for a twin to replay.
        self.log = log
        #: The run's rounds, when this model is that run's counterfactual twin.
        self.replay = replay
        #: How many rounds, the first ones of `log`, were taken from `replay` and not run by
        #: the learning core (yet).
        self._skipped = 0
        self.policy = policy
        self.budget = budget
        self.clients = clients
        self.spec = spec
        self.behaviours = behaviours
        #: Each client's conduct (`abm.agents.conduct`): what an adaptive client's action
        #: runs in the federation in place of its behaviour. None: every client fixed.
        self.conducts = conducts
        self._action_behaviours: dict[tuple[int, str], Behaviour | None] = {}
        self.timings = {"fl": 0.0, "contribution": 0.0, "probe": 0.0}
        #: The zero-update probe's own stream: the method's draws are not shifted by it.
        self.probe_rng = stream(model.config.seed, "contribution.probe")
        self.rounds_done = 0
        #: The money book of the rewards: each round's budget, payouts and where they went.
        self.book = RewardBook(clients, TREASURY)
        n = len(clients)
        # Rounds the method could not rank (no positive contribution): the shares then come
        # from `zero_total` (split equally, or withheld).
        self.unranked_rounds = 0
        self.unranked_budget = 0  # base units of budget in those rounds
        self.truncated_rounds = 0  # rounds the method truncated as a whole (GTG between-round)
        self.all_zero_rounds = 0  # rounds whose contributions were all exactly zero
        # Participation (docs/model.md, 7.13): rounds nobody trained in and their budget
        # (withheld).
        self.empty_rounds = 0
        self.empty_budget = 0
        self.last_participants = n
        #: Per round in which anyone trained: the zero-update probe's share (%), above.
        self.probe_pcts: list[float] = []
        #: The `carry` rule's running totals and high-water marks (unused by clip and shift).
        self.carried = CarriedContributions(n)

    def run_round(self, participants: np.ndarray | None = None,
                  actions: list[str] | None = None
                  ) -> tuple[list[dict[str, Any]], np.ndarray, float]:
        """One FL round among `participants` (bool (n,); None: every client) and its reward
        distribution; `actions`: what each client does in it (`abm.agents.conduct`; None:
        every client its behaviour).

        Only participants train, play the round's coalition game and share its budget; a
        client that sat out gets contribution 0, share 0 and no payout (docs/model.md,
        7.13). A round nobody trained in pays nobody: its budget is withheld by the treasury
        whatever `zero_total` says (there is nobody to split it among). Returns the
        rounds-table rows (one per client, participants or not), the shares (n,) and the
        budget paid (USD display units).
        """
        n = len(self.clients)
        mask = np.ones(n, dtype=bool) if participants is None else np.asarray(participants)
        idx = np.flatnonzero(mask)
        actions = tuple(self.behaviours if actions is None else actions)
        learned = self._learn(mask, actions)
        self.log.rounds.append(learned)
        contributions = np.zeros(n)
        contributions[idx] = learned.contributions
        scores, shares, unranked = self._shares(contributions, idx)
        truncated = bool(learned.info.get("truncated_round", False))
        all_zero = bool(idx.size and np.all(contributions[idx] == 0.0))
        budget_usd = self.budget.for_round(
            self.rounds_done, learned.accuracy - learned.prev_accuracy
        )
        budget = to_units(float(budget_usd))
        prices_before = [self.model.market.price(c.token) for c in self.clients]
        payouts, realised = self._pay(budget, idx, shares)
        self.rounds_done += 1
        self.book.record_round(budget, payouts, idx, realised)
        if unranked:
            self.unranked_rounds += 1
            self.unranked_budget += budget
        if not idx.size:
            self.empty_rounds += 1
            self.empty_budget += budget
        self.truncated_rounds += truncated
        self.all_zero_rounds += all_zero
        self.last_participants = int(idx.size)
        # What a client sending nothing would have been paid, % of the round's positive
        # total: > 0 when the game rewards a zero update (docs/model.md, 7.5).
        positive = float(np.maximum(contributions, 0.0).sum()) + max(learned.probe, 0.0)
        probe_pct = 100 * max(learned.probe, 0.0) / positive if positive > 0 else 0.0
        if idx.size:
            self.probe_pcts.append(probe_pct)
        columns = {"contribution": contributions, "payable": scores, "share": shares,
                   "price_before": prices_before, "participating": mask,
                   "reward_if_sold": realised}
        round_wide = {"unranked": unranked, "truncated": truncated, "probe_pct": probe_pct,
                      "actions": actions}
        return self._rows(learned, payouts, columns, round_wide), shares, budget_usd

    def _shares(self, contributions: np.ndarray, idx: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, bool]:
        """The round's payable scores (n,), reward shares (n,, summing to 1 or 0 over the
        participants `idx`) and whether the round was unranked (the shares did not come
        from the scores, `shares_from_contributions`; an empty round counts on its own)."""
        n = contributions.size
        # The scores the shares come from: this round's contributions (clip, shift), or what
        # lifts each client's contributions to date above their high-water mark (carry).
        carry = self.spec.negative == "carry"
        scores = self.carried.payable(contributions) if carry else contributions
        rule = "clip" if carry else self.spec.negative
        shares = np.zeros(n)
        if idx.size:
            shares[idx] = shares_from_contributions(
                scores[idx], negative=rule, zero_total=self.spec.zero_total
            )
        unranked = bool(idx.size) and not score_weights(scores[idx], rule).sum() > 0
        return scores, shares, unranked

    def _pay(self, budget: int, idx: np.ndarray, shares: np.ndarray
             ) -> tuple[list[Payout], list[int]]:
        """Mint the round's `budget` (base units) into the treasury and have the policy pay
        it out to the participants `idx` by `shares`: each client's payout (n), and the
        reward each realised by realisable value (base units, n; 7.13)."""
        n = len(self.clients)
        market = self.model.market
        # The buyers' payment enters the economy here: new USD, recorded as minted.
        market.ledger.mint(TREASURY, BASE, budget)
        # What each client's holdings would fetch, before and after the payout: the reward
        # it realised by realisable value (what the participation rules weigh, 7.13).
        # A round that pays nothing (a twin's, an empty round's) moves nothing: 0, unmeasured.
        measured = bool(budget and idx.size)
        accounts = [c.account for c in self.clients]
        if_sold_before = market.liquidation_values(accounts) if measured else [0] * n
        payouts = [Payout() for _ in range(n)]
        if idx.size:
            paid = self.policy.distribute(market, TREASURY, [self.clients[i] for i in idx],
                                          budget, shares[idx])
            for i, payout in zip(idx, paid, strict=True):
                payouts[i] = payout
        realised = ([after - before for after, before in
                     zip(market.liquidation_values(accounts), if_sold_before, strict=True)]
                    if measured else [0] * n)
        return payouts, realised

    def _rows(self, learned: LearnedRound, payouts: list[Payout],
              columns: dict[str, Any], round_wide: dict[str, Any]) -> list[dict[str, Any]]:
        """The round's rows of the rounds table, one per client (display units): `columns`
        hold per-client values (n each), `round_wide` the round's flags, probe share and
        the clients' actions."""
        market = self.model.market
        sizes = self.federation.client_sizes
        rows = []
        for i, (client, payout) in enumerate(zip(self.clients, payouts, strict=True)):
            rows.append({
                "round": self.rounds_done,
                "step": self.model.steps,
                "client": client.token,
                "behaviour": self.behaviours[i],
                "action": round_wide["actions"][i],
                "n_samples": int(sizes[i]),
                "contribution": float(columns["contribution"][i]),
                "payable": float(columns["payable"][i]),
                "share": float(columns["share"][i]),
                "reward_usd": payout.reward / ONE,
                "tokens_minted": payout.tokens_minted / ONE,
                "tokens_burned": payout.tokens_burned / ONE,
                "price_before": columns["price_before"][i],
                "price_after": market.price(client.token),
                "accuracy": learned.accuracy,
                "evaluations": learned.evaluations,
                "method": self.spec.method,
                "policy": self.policy.name,
                "cost_usd": payout.cost / ONE,
                "usd_to_client": payout.usd_to_client / ONE,
                "usd_to_pool": payout.usd_to_pool / ONE,
                "usd_to_holders": sum(payout.usd_to_holders.values()) / ONE,
                "usd_kept": payout.usd_kept / ONE,
                "unranked": round_wide["unranked"],
                "truncated": round_wide["truncated"],
                "participating": bool(columns["participating"][i]),
                "reward_if_sold_usd": columns["reward_if_sold"][i] / ONE,
                "zero_probe": learned.probe,
                "zero_probe_pct": round_wide["probe_pct"],
            })
        return rows

    @property
    def accuracy(self) -> float:
        """Validation accuracy of the current global model (the latest round's, learned or
        replayed; before any round, the initial model's)."""
        rounds = self.log.rounds
        return rounds[-1].accuracy if rounds else float(self.federation.accuracy)

    @property
    def loss(self) -> float:
        """Validation loss of the current global model, as `accuracy`."""
        rounds = self.log.rounds
        return rounds[-1].loss if rounds else float(self.federation.loss)

    @property
    def replayed_rounds(self) -> int:
        """Rounds taken from the run's log that this twin never trained."""
        return self._skipped

    def _learn(self, mask: np.ndarray, actions: tuple[str, ...]) -> LearnedRound:
        """This round's learning among `mask` (bool (n,)) taking `actions` (n): taken from
        the run's log while this twin is in step with it (`abm.agents.replay`), else trained
        and measured here, after catching up on the rounds taken so far. A `check=True`
        model learns every round and proves that the log holds what it learned."""
        recorded = None
        if self.replay is not None:
            recorded = self.replay.recorded(self.rounds_done, mask, actions)
            if recorded is not None and not self.model.check_ledger:
                self._skipped += 1
                return recorded
            # Replay stops for good at the first round out of step, so the skipped rounds
            # are the log's first ones: the learning core and the method catch up on them.
            for skipped in self.log.rounds[:self._skipped]:
                self._train_and_measure(skipped.participants, skipped.actions)
            self._skipped = 0
        learned = self._train_and_measure(mask, actions)
        if recorded is not None:
            differ = recorded.differences(learned)
            if differ:
                raise InvariantViolation(
                    f"round {self.rounds_done + 1}: the twin learned other {', '.join(differ)} "
                    "than its run's log holds for the same participants and actions"
                )
        return learned

    def _overrides(self, mask: np.ndarray, actions: tuple[str, ...]) -> dict[int, Behaviour]:
        """The behaviour each participant whose conduct is adaptive runs this round in place
        of its own, by its action (none for `honest`: its own behaviour)."""
        if self.conducts is None:
            return {}
        out = {}
        for i in np.flatnonzero(mask).tolist():
            conduct = self.conducts[i]
            if not conduct.actions:
                continue
            key = (i, actions[i])
            if key not in self._action_behaviours:
                self._action_behaviours[key] = conduct.behaviour(actions[i])
            if self._action_behaviours[key] is not None:
                out[i] = self._action_behaviours[key]
        return out

    def _train_and_measure(self, mask: np.ndarray, actions: tuple[str, ...]) -> LearnedRound:
        """Train one FedAvg round among `mask` taking `actions`, measure its contributions
        (the participants' only) and the zero-update probe, timed as `fl`, `contribution`
        and `probe`."""
        t0 = time.perf_counter()
        result = self.federation.run_round(mask, self._overrides(mask, actions))
        t1 = time.perf_counter()
        trained = bool(mask.any())
        contributions = (np.asarray(self.method(result), dtype=np.float64) if trained
                         else np.zeros(0))
        self.timings["fl"] += t1 - t0
        self.timings["contribution"] += time.perf_counter() - t1
        probe, probe_evaluations = 0.0, 0
        if trained:
            from abm.fl.shapley import zero_probe

            # A phantom claiming the participants' mean data share (docs/model.md, 7.5).
            t2 = time.perf_counter()
            probe, probe_evaluations = zero_probe(result.game, float(np.mean(result.weights)),
                                                  self.probe_rng)
            self.timings["probe"] += time.perf_counter() - t2
        method = self.method
        return LearnedRound(
            participants=mask.copy(), accuracy=float(result.accuracy),
            loss=float(result.loss), prev_accuracy=float(result.prev_accuracy),
            contributions=contributions,
            info=dict(getattr(method, "info_last_round", None) or {}) if trained else {},
            evaluations=int(getattr(method, "evaluations_last_round", 0)) if trained else 0,
            probe=probe, probe_evaluations=probe_evaluations, actions=tuple(actions),
        )
