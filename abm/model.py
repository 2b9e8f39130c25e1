"""The Mesa model: a federation, its clients' token markets, and the agents trading on them.

The process and its scheduling are described in docs/model.md, section 3 (Process overview
and scheduling). One step (see `step()`):

1. On a round boundary (every `round_every` steps) the federation trains one FedAvg round,
   measures each client's contribution, publishes the signal and pays the round's budget
   through the reward policy.
2. The public market view is refreshed (prices after any reward flow).
3. Market agents (clients, investors, liquidity providers) act once each, in shuffled order:
   who trades first is a modelling choice, so it is made visible here.
4. Holdings are marked to market (spot) and to liquidation (what selling would fetch), and
   the step is recorded by the DataCollector.

One seed drives everything, through named streams (`abm.streams`): the data split, torch,
the contribution method's sampling, the activation order and each agent's own draws. Each
stream depends only on the seed and its name, and no consumer's number of draws depends on
market state, so a run and its counterfactual twin (budget zero) share their random numbers
(docs/model.md, section 4.9 (Stochasticity)).

Mesa's own tools drive it: `run_model()` stops after the scenario's `steps`, and the scenario's
fields are keyword arguments (dotted paths), so that `mesa.batch_run` can sweep them::

    mesa.batch_run(WallStreetFedsModel, parameters={"scenario": "scenarios/baseline.yaml",
                   "rewards.policy": ["equal", "mint"], "steps": 30}, rng=[1, 2], max_steps=30)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import mesa
import numpy as np
import pandas as pd
from mesa.agent import AgentSet

from abm import registry
from abm.agents.client import COST_SINK, Client
from abm.agents.federation import TREASURY, FederationAgent
from abm.agents.investor import Investor
from abm.agents.liquidity import LiquidityProvider
from abm.agents.replay import Replay
from abm.agents.switching import Switchboard
from abm.agents.view import MarketView
from abm.amm import BASE, ONE, Ledger, Market, to_units
from abm.collect import AGENT_TYPES, AgentMarks, AgentTable
from abm.errors import ScenarioError, problem_text
from abm.learning_log import LearningLog, learning_key
from abm.registry import build, component_of, event_kinds
from abm.rewards import ClientAccount
from abm.scenario import MIN_SAMPLES_PER_CLIENT, Scenario, load_scenario
from abm.streams import activation, stream, stream_int

#: Kinds of `WallStreetFedsModel.events` the model and its agents record themselves
#: (events.parquet; marked on the app's price chart): an FL round, a client leaving or
#: rejoining the federation, an offering's start and end. Components add theirs (a
#: manipulator's pump start, pump end and dump) by declaring them (`Component.events`);
#: `WallStreetFedsModel.event_kinds` lists them all.
MODEL_EVENTS = ("round", "leave", "join", "offering_start", "offering_end")
EVENT_COLUMNS = ("step", "kind", "client", "agent_id", "text")


class StepCollector(mesa.DataCollector):
    """Mesa's DataCollector whose agent rows are the agents table's.

    The model's figures are Mesa model reporters (one row per step). Every agent's values are
    kept as columns by `AgentTable` (one exact valuation pass per step, no Python call per
    agent and reporter), so that `get_agent_vars_dataframe()` returns those rows in Mesa's
    shape: indexed by `Step` and `AgentID`, one column per agents-table column (`agent_type`,
    `strategy`, `client` categoricals, then the USD values; docs/architecture.md), at the
    steps the agents table collects (`collect.agents_every`).
    """

    def __init__(self, table: AgentTable, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._table = table

    def collect(self, model: mesa.Model) -> None:
        """Mesa's `collect`, for the model's reporters: each reads one float of the step's
        figures (`WallStreetFedsModel._stats`, rebuilt every step), so the value is
        appended as it is (a float is its own deep copy) without a call and a `deepcopy`
        per reporter (at a thousand clients there are seven thousand). Anything else goes
        through Mesa's."""
        stats = getattr(model, "_stats", None)
        if (not self._validated or stats is None or self.agent_reporters
                or self.agenttype_reporters or stats.keys() != self.model_vars.keys()
                or any(type(v) is not float for v in stats.values())):
            super().collect(model)
            return
        if hasattr(self, "_collection_steps"):
            self._collection_steps.append(model.time)
        model_vars = self.model_vars
        for var, value in stats.items():
            model_vars[var].append(value)

    def get_agent_vars_dataframe(self) -> pd.DataFrame:
        return (self._table.dataframe().rename(columns={"step": "Step", "agent_id": "AgentID"})
                .set_index(["Step", "AgentID"]))


class WallStreetFedsModel(mesa.Model):
    """Client-specific tokens as investment vehicles in federated learning.

    Args:
        scenario: a validated `Scenario`, or the path of a scenario file.
        rng: seed; `None` uses the scenario's seed. The scenario kept as `self.config` carries
            the seed actually used. `model.config` is the project's scenario; `model.scenario`
            is Mesa 3.5's own (its experiment object, holding only `rng`), not this file's.
        check: prove the ledger's conservation invariant after every step (raises on failure).
        replay: the learning log (`model.federation.log`) of the run this model is the
            counterfactual twin of: its rounds are taken from the log while the twin's
            clients choose the same participants (`abm.agents.replay`; the same tables as
            learning them again). `ValueError` if the log's run learns differently.
        **overrides: scenario fields by dotted path (``**{"rewards.policy": "mint"}``,
            ``steps=30``), applied with `Scenario.with_overrides` (`ScenarioError` if refused).
    """

    def __init__(self, scenario: Scenario | str | Path, *, rng: int | None = None,
                 check: bool = False, replay: LearningLog | None = None,
                 **overrides: Any):
        if not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        if overrides:
            scenario = scenario.with_overrides(
                overrides, source=f"{scenario.source} (model keyword arguments)")
        seed = scenario.seed if rng is None else int(rng)
        super().__init__(rng=seed)
        self.config = scenario if seed == scenario.seed else scenario.with_overrides({"seed": seed})
        self.check_ledger = check
        #: The rounds' client samples (`_draw`): its own stream, so sampling shifts no other
        #: component's numbers.
        self._sample_rng = stream(seed, "fl.sample")
        self.timings = {"market": 0.0, "collect": 0.0}
        #: Every agent's valuation this step (`abm.collect`); None until the agents exist.
        self.marks: AgentMarks | None = None

        groups = scenario.client_groups()
        self.client_ids = [cid for cid, _ in groups]
        self.ledger = Ledger()
        self.market = Market(self.ledger, base=BASE, fee_bps=scenario.market.fee_bps)
        for cid in self.client_ids:
            self.market.create_pool(cid)

        # Agents are created before genesis so that every balance has an owner.
        #: The scenario's issuance rule (`market.issuance`), one for the whole market.
        self.issuance = build(scenario.market.issuance)
        genesis_supply = to_units(scenario.market.initial_supply)
        self.clients = [
            Client(self, cid, g.behaviour, build(g.cash_out), g.max_slippage, index=i,
                   cost_per_round=to_units(g.cost_per_round),
                   participation=build(g.participation), issuance=self.issuance,
                   genesis_supply=genesis_supply, conduct=build(g.conduct))
            for i, (cid, g) in enumerate(groups)
        ]
        self.investors = self._create_investors()
        self.lps = [
            LiquidityProvider(self, spec)
            for spec in scenario.liquidity_providers for _ in range(spec.count)
        ]
        key = learning_key(self.config)
        self.federation = FederationAgent(
            self, *build_learning(self.config), build(self.config.rewards.params),
            budget=build(scenario.rewards.budget),
            clients=[ClientAccount(c.account, c.token) for c in self.clients],
            spec=scenario.contribution,
            behaviours=[g.behaviour for _, g in groups],
            log=LearningLog(key),
            replay=None if replay is None else Replay(replay, key, self.config.source),
            conducts=[c.conduct for c in self.clients],
        )
        #: USD minted at genesis, by holder type (base units): the endowments.
        self.endowments: dict[str, int] = dict.fromkeys(AGENT_TYPES, 0)
        self._by_account = {a.account: a for a in self.agents}
        self._genesis()
        # The activation order has its own stream: Mesa's shuffle would otherwise draw from
        # the model's generator, shared with anything else that draws from it.
        self.market_agents = AgentSet([*self.clients, *self.investors, *self.lps],
                                      random=activation(seed))

        self.view = MarketView(tokens=self.client_ids, policy=self.federation.policy,
                               round_every=scenario.round_every,
                               round_continuation=scenario.market.round_continuation)
        n = len(self.client_ids)
        # Prior of the public signal before any round: equal shares of the expected budget.
        self.view.share_signal = np.full(n, 1.0 / n)
        self.view.last_shares = np.zeros(n)
        self.view.last_budget = self.federation.budget.for_round(0, 0.0)
        #: Every token's live book and pool (`Ledger.live`), in the view's order: read by
        #: the investors, one list for all of them.
        self.token_books = [self.ledger.live(t) for t in self.client_ids]
        self.token_pools = [self.market.pools[t] for t in self.client_ids]
        for investor in self.investors:
            investor.start()
        #: The strategy switching (`abm.agents.switching`); None when no group switches.
        self.switching = (Switchboard(self.investors)
                          if any(i.switching.strategies for i in self.investors) else None)

        self.round_rows: list[dict[str, Any]] = []
        #: Every event kind this run may record: the model's own, then those its components
        #: declare (`abm.registry.event_kinds`); the events table's `kind` categories.
        self.event_kinds: tuple[str, ...] = tuple(dict.fromkeys(MODEL_EVENTS + event_kinds(
            component_of(params) for _, params in scenario.component_slots())))
        #: What happened when, one dict per event (`EVENT_COLUMNS`), in the order recorded.
        self.events: list[dict[str, Any]] = []
        self.last_round_rows: list[dict[str, Any]] = []
        self.contribution = dict.fromkeys(self.client_ids, 0.0)
        self._counters = self._pool_counters()
        self._step_reward = 0.0
        self._step_cost = 0.0
        self._stats: dict[str, float] = {}
        self.marks = AgentMarks(self.agents)
        self._refresh()
        # Model-level figures through Mesa's DataCollector (one row per step); agent rows
        # as columns in `agent_table` (`AgentTable`), every `collect.agents_every` steps,
        # which the collector's `get_agent_vars_dataframe()` returns (`StepCollector`).
        #: The rows of agents.parquet (`agents_dataframe()` builds the table).
        self.agent_table = AgentTable()
        self.datacollector = StepCollector(
            self.agent_table,
            model_reporters={k: (lambda m, k=k: m._stats[k]) for k in self._stats},
        )
        self._collect()

    # -- construction -------------------------------------------------------------------------

    def _create_investors(self) -> list[Investor]:
        """The investors, group by group; one that may switch strategies
        (`investors[i].switching`) gets one instance of each strategy allowed to it, each
        with the parameters of the scenario's first group of that strategy (its defaults
        if none: one parameter object per strategy, so that its instances share their
        group arrays)."""
        params = {}
        for spec in self.config.investors:
            params.setdefault(spec.strategy, spec.params)
        investors = []
        for spec in self.config.investors:
            rule = build(spec.switching)
            others = [s for s in rule.strategies if s != spec.strategy]
            for name in others:
                if name not in params:
                    params[name] = registry.get("strategy", name).Params()
            for _ in range(spec.count):
                investors.append(Investor(
                    self, build(spec.params), spec, rule,
                    {name: build(params[name]) for name in others}))
        return investors

    def _genesis(self) -> None:
        """Initial supplies, endowments and seeded pools (docs/model.md, section 5).

        Every USD minted here is an endowment, booked by holder type in `endowments`; later
        USD enters only as reward budgets. Liquidity providers entering at step 0 deposit at
        the opening price, buying the token side from the federation (no swap).
        """
        m = self.config.market
        supply, pooled = to_units(m.initial_supply), to_units(m.pool_tokens)
        pool_usd = to_units(m.pool_tokens * m.opening_price)

        def endow(agent_type: str, account: str, usd: int) -> None:
            self.ledger.mint(account, BASE, usd)
            self.endowments[agent_type] += usd

        for client in self.clients:
            self.ledger.mint(client.account, client.token, supply)
            endow("client", client.account, to_units(m.client_cash))
            pool = self.market.pools[client.token]
            if m.seeded_by == "federation":
                self.ledger.mint(TREASURY, client.token, pooled)
                endow("federation", TREASURY, pool_usd)
                pool.add_liquidity(TREASURY, pooled, pool_usd)
            else:
                pool.add_liquidity(client.account, pooled, pool_usd)
        for investor in self.investors:
            endow("investor", investor.account, to_units(investor.start_cash))
        for lp in self.lps:
            endow("lp", lp.account, to_units(lp.spec.cash))
        # USD the LPs and investors paid the federation for genesis tokens
        self.genesis_token_sales = 0
        supply = {t: self.ledger.supply(t) for t in self.client_ids}
        for investor in self.investors:
            if investor.inventory:
                self.genesis_token_sales += investor.buy_inventory_at_genesis(TREASURY)
        #: Tokens minted for the investors' starting inventories, per token (base units).
        self.genesis_inventory = {t: self.ledger.supply(t) - supply[t] for t in self.client_ids}
        for lp in self.lps:
            if lp.spec.enter_step == 0:
                before = self.ledger.balance(TREASURY, BASE)
                lp.provide_at_genesis(TREASURY)
                self.genesis_token_sales += self.ledger.balance(TREASURY, BASE) - before
        self.ledger.check()
        #: USD held right after genesis (base units): by holder type, and in the pools.
        self.usd_at_genesis = self.usd_by_holder()

    def holder_type(self, account: str) -> str:
        """`client`, `investor`, `lp`, `federation`, `costs` (the training-cost sink), or
        `pool` (pools and the locked minimum liquidity) for a ledger account."""
        agent = self._by_account.get(account)
        if agent is not None:
            return agent.agent_type
        return "costs" if account == COST_SINK else "pool"

    def usd_by_holder(self) -> dict[str, int]:
        """USD held now by each holder type, the pools and the cost sink (`costs`: training
        costs paid), base units (sums to all USD)."""
        out = dict.fromkeys((*AGENT_TYPES, "pool", "costs"), 0)
        for account, amount in self.ledger.holders(BASE).items():
            out[self.holder_type(account)] += amount
        return out

    # -- the step -----------------------------------------------------------------------------

    @property
    def accuracy(self) -> float:
        """Validation accuracy of the current global model (a fraction)."""
        return self.federation.accuracy

    @property
    def loss(self) -> float:
        """Validation cross-entropy loss of the current global model."""
        return self.federation.loss

    def step(self) -> None:
        """Round (if due) -> refreshed view -> market agents in shuffled order -> record.

        Sets `running = False` once the scenario's `steps` have run (Mesa's `run_model()`
        and `batch_run` stop there)."""
        self.view.round_just_ran = False
        self._step_reward = self._step_cost = 0.0
        if (self.steps % self.config.round_every == 0
                and self.federation.rounds_done < self.config.n_rounds):
            self._fl_round()
        self.view.update(self.steps, *self._market_arrays())

        t0 = time.perf_counter()
        if self.switching is not None and self.switching.revise():
            # A new array, not an edit: the agents table keeps each collected step's labels.
            self.marks.labels["strategy"] = np.array(
                [a.strategy for a in self.marks.agents], dtype=object)
        self._activate()
        t1 = time.perf_counter()
        self._refresh()
        if self.check_ledger:
            self.ledger.check()
            self.check_accounting()
            for investor in self.investors:
                investor.check_holdings()
        self._collect()
        self.timings["market"] += t1 - t0
        self.timings["collect"] += time.perf_counter() - t1
        if self.steps >= self.config.steps:
            self.running = False

    def _activate(self) -> None:
        """Every market agent acts once, in a fresh shuffled order: what
        `self.market_agents.shuffle_do("act")` does (the reference, tested against), on
        bound methods. The activation generator shuffles a list of the same length in the
        AgentSet's order, so it draws the same permutation, without a weak reference and a
        name lookup per agent."""
        acts = [agent.act for agent in self.market_agents]
        self.market_agents.random.shuffle(acts)
        for act in acts:
            act()

    def _collect(self) -> None:
        """Record the step: its model row always; every agent's row at step 0, at the
        multiples of `collect.agents_every` and at the scenario's last step."""
        self.datacollector.collect(self)
        every = self.config.collect.agents_every
        if self.steps % every == 0 or self.steps == self.config.steps:
            self.agent_table.collect(int(self.steps), self.marks)

    def agents_dataframe(self):
        """The agents table so far (the columns of agents.parquet, `abm.collect`)."""
        return self.agent_table.dataframe()

    def record_event(self, kind: str, *, client: str = "", agent_id: int = -1,
                     text: str = "") -> None:
        """Record an event at the current step: `kind` one of `event_kinds`, the client
        (token id) it concerns if any, the agent that caused it (-1: none) and a one-line
        description (a chart tooltip)."""
        if kind not in self.event_kinds:
            raise ValueError(f"event kind {kind!r} is not one of {self.event_kinds}: a "
                             f"component records only the kinds it declares (`events`)")
        self.events.append({"step": int(self.steps), "kind": kind, "client": client,
                            "agent_id": int(agent_id), "text": text})

    def _draw(self, willing: np.ndarray) -> np.ndarray:
        """The round's client sample, bool (n,): the first `fl.clients_per_round` willing
        clients in a uniformly random order of all n clients (docs/model.md, 7.15); every
        willing client when the scenario samples none. One permutation of n is drawn per
        round whoever is willing, so a run and its twin draw the same orders."""
        k = self.config.fl.clients_per_round
        if k is None:
            return willing.copy()
        order = self._sample_rng.permutation(willing.size)
        drawn = np.zeros_like(willing)
        drawn[order[willing[order]][:k]] = True
        return drawn

    def _fl_round(self) -> None:
        cost_before = self.federation.book.total_cost
        # Who trains this round (docs/model.md, 7.13 and 7.15): each client decides on what
        # it saw so far; the round's sample is drawn among the willing; those drawn pay their
        # cost (in client order, as funding a cost can sell tokens) and train.
        paid = [c.cost_paid for c in self.clients]
        willing = np.array([c.willing() for c in self.clients], dtype=bool)
        drawn = self._draw(willing)
        for client, was_drawn in zip(self.clients, drawn, strict=True):
            if client.adaptive:
                client.choose_action(bool(was_drawn))
        participants = np.array([c.join_round(bool(d)) for c, d in
                                 zip(self.clients, drawn, strict=True)], dtype=bool)
        rows, shares, budget = self.federation.run_round(participants,
                                                         [c.action for c in self.clients])
        k = int(participants.sum())
        for client, row, before, reward, was_drawn in zip(
                self.clients, rows, paid, self.federation.book.last_realised, drawn,
                strict=True):
            row["training_cost_usd"] = (client.cost_paid - before) / ONE
            # What its cash-out rule asks right after the round, and what the guards let
            # it sell (tokens; filled by `Client.cash_out`).
            row["cash_out_asked_tokens"] = row["cash_out_sold_tokens"] = 0.0
            if was_drawn or not client.wants:
                # A willing client that was not drawn neither paid nor earned: the round
                # tells its participation rule nothing about reward against cost (7.15).
                client.record_round(reward, budget, k)
                client.learn_round(client.cost_paid - before)
        self.round_rows.extend(rows)
        self.last_round_rows = rows
        for row in rows:
            self.contribution[row["client"]] = row["contribution"]
        self.view.publish_round(shares, budget)
        for investor in self.investors:
            investor.observe_round()
        self.view.round_just_ran = True
        self._step_reward = budget
        self._step_cost = (self.federation.book.total_cost - cost_before) / ONE
        self.record_event("round", text=f"FL round {self.federation.rounds_done}: "
                                        f"{budget:,.0f} USD budget, {k} of "
                                        f"{len(self.clients)} clients training")

    # -- measurement --------------------------------------------------------------------------

    def accounting(self) -> dict[str, tuple[int, int]]:
        """The per-step accounting identity, exact base units: `{asset: (held, sources)}`.

        For USD, `held` is the USD of every account and pool and `sources` the endowments
        plus the reward budgets paid in so far; for each client token, `held` is the sum of
        all balances and `sources` minted minus burned. Training costs stay in the books:
        `costs` pairs the cost sink's USD with the costs the clients paid (docs/model.md,
        7.13). The two are equal at every step; `check_accounting` raises if not.
        """
        out = {BASE: (sum(self.ledger.holders(BASE).values()),
                      sum(self.endowments.values()) + self.federation.book.budget_in),
               "costs": (self.ledger.balance(COST_SINK, BASE),
                         sum(c.cost_paid for c in self.clients))}
        for c in self.client_ids:
            out[c] = (sum(self.ledger.holders(c).values()),
                      self.ledger.minted(c) - self.ledger.burned(c))
        return out

    def check_accounting(self) -> None:
        """Raise `InvariantViolation` unless every asset's holdings equal its sources."""
        from abm.amm import InvariantViolation

        for asset, (held, sources) in self.accounting().items():
            if held != sources:
                raise InvariantViolation(
                    f"{asset}: holders own {held} base units but {sources} entered the economy"
                )

    def _market_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prices (USD/token), supplies and pooled tokens (tokens), each (n,)."""
        pools = self.market.pools
        prices = np.array([pools[c].spot_price() for c in self.client_ids])
        # Divide each int first: 18-decimal balances overflow int64 arrays.
        supply = np.array([self.ledger.supply(c) / ONE for c in self.client_ids])
        pooled = np.array([pools[c].reserves[0] / ONE for c in self.client_ids])
        return prices, supply, pooled

    def _pool_counters(self) -> dict[str, tuple[int, int, int]]:
        return {c: (p.volume_base, p.fees_base, p.fees_token)
                for c, p in self.market.pools.items()}

    def _refresh(self) -> None:
        """Mark every agent to market and compute this step's model-level figures."""
        counters = self._pool_counters()
        prices = {c: self.market.pools[c].spot_price() for c in self.client_ids}
        volume = {c: (counters[c][0] - self._counters[c][0]) / ONE for c in self.client_ids}
        fee_values = {
            c: (counters[c][1] - self._counters[c][1]) / ONE
            + (counters[c][2] - self._counters[c][2]) / ONE * prices[c]
            for c in self.client_ids
        }
        self._counters = counters
        marks = self.marks
        if len(marks) != len(self.agents):  # an agent joined: value it from now on
            marks = self.marks = _remarked(marks, self.agents)
        # Fees stay in the reserves and accrue to every holder of liquidity shares (the
        # federation and LPs alike), pro rata to its shares at the end of the step.
        for c, pool in self.market.pools.items():
            total = pool.total_shares
            if total and fee_values[c]:
                marks.accrue_fees(self.ledger.live(pool.lp_asset), total, fee_values[c], c)
        for lp in self.lps:
            lp.accrue(prices)
        marks.mark(self.market)
        wealth = {t: marks.total("wealth", t) for t in AGENT_TYPES}
        if_sold = {t: marks.total("wealth_if_sold", t) for t in AGENT_TYPES}

        s: dict[str, float] = {
            "round": float(self.federation.rounds_done),
            "accuracy": self.accuracy,
            "loss": self.loss,
            "reward_usd": self._step_reward,
            "volume_usd": sum(volume.values()),
            "fees_usd": sum(fee_values.values()),
            "execution_cost_usd": self._step_cost,
            "federation_usd": self.ledger.balance(TREASURY, BASE) / ONE,
            "participating": float(self.federation.last_participants),
        }
        for kind in AGENT_TYPES:
            s[f"wealth/{kind}"] = wealth[kind]
            s[f"wealth_if_sold/{kind}"] = if_sold[kind]
        for c in self.client_ids:
            reserve_token, reserve_usd = self.market.pools[c].reserves
            s[f"price/{c}"] = prices[c]
            s[f"reserve_token/{c}"] = reserve_token / ONE
            s[f"reserve_usd/{c}"] = reserve_usd / ONE
            s[f"supply/{c}"] = self.ledger.supply(c) / ONE
            s[f"volume_usd/{c}"] = volume[c]
            s[f"fees_usd/{c}"] = fee_values[c]
            s[f"contribution/{c}"] = self.contribution[c]
        if self.switching is not None:
            self.switching.observe(marks)
            s.update(self.switching.shares())
        self._stats = s


def _remarked(old: AgentMarks, agents) -> AgentMarks:
    """New `AgentMarks` for `agents`, carrying the fees earned and the order counters so far
    over by agent."""
    fees = dict(zip(old.ids.tolist(), old.values["fees_earned"].tolist(), strict=True))
    new = AgentMarks(agents)
    new.values["fees_earned"][:] = [fees.get(i, 0.0) for i in new.ids.tolist()]
    new.orders = old.orders.carried({uid: i for i, uid in enumerate(old.ids.tolist())},
                                    new.ids.tolist())
    return new


def build_learning(cfg: Scenario) -> tuple[Any, Any]:
    """The FL federation (`abm.fl.Federation`) and the contribution method a scenario asks
    for, built from its seed's streams (`fl.data`, `fl.torch`, `contribution`) exactly as a
    run builds them (so that what `bench.contribution_grid` measures is what runs compute).
    A data file or partition that cannot be made is a `ScenarioError` naming the field."""
    # Imported here so that importing the model (e.g. by the viz app) stays light until a
    # model is built; torch loads with the first federation.
    from abm.fl import Federation, partition, split_validation

    groups = cfg.client_groups()
    fl = cfg.fl
    # The data draw (subsample, validation split, partition) follows `fl.partition.seed`
    # when given, so that each client keeps its data across a sweep's seeds.
    data_seed = cfg.seed if fl.partition.seed is None else fl.partition.seed
    data_rng = stream(data_seed, "fl.data")
    fl_seed = stream_int(cfg.seed, "fl.torch", bits=31)
    method_rng = stream(cfg.seed, "contribution")
    with _as_scenario_error(cfg, "fl.dataset", fl.dataset.model_dump(mode="json")):
        data = build(fl.dataset).load(data_rng)
        wanted = getattr(fl.dataset, "n_samples", None)
        if wanted is not None and len(data) < wanted:
            # The resolved config must not claim samples that were not used (a partial
            # CIFAR-10 copy; the bundled sizes are checked by the schema).
            raise ValueError(
                f"n_samples is {wanted} but the data holds {len(data)} samples; give at "
                f"most {len(data)}"
            )
        train, val = split_validation(data, fl.val_fraction, data_rng)
    behaviours = [build(g.behaviour_params) for _, g in groups]
    # The data is split among the owners; a Sybil's identities (docs/model.md, 7.18) each
    # get their owner's whole share, so the draw is the same whatever the identities.
    owners = cfg.client_owners()
    first = {owner: i for i, owner in reversed(list(enumerate(owners)))}
    with _as_scenario_error(cfg, "fl.partition", fl.partition.model_dump()):
        # The partitioner enforces the minimum (redrawing Dirichlet proportions, topping up
        # small clients from the largest); checked again on what it produced.
        shares = partition(train.y, len(first), scheme=fl.partition.scheme, rng=data_rng,
                           alpha=fl.partition.alpha,
                           size_weights=[behaviours[first[o]].size_weight
                                         for o in range(len(first))],
                           min_size=MIN_SAMPLES_PER_CLIENT)
    parts = [shares[owner] if i == first[owner] else shares[owner].copy()
             for i, owner in enumerate(owners)]
    for (cid, g), part in zip(groups, parts, strict=True):
        if len(part) < MIN_SAMPLES_PER_CLIENT:
            raise ScenarioError(
                f"{cfg.source}: a problem: client {cid} (behaviour {g.behaviour}) gets "
                f"{len(part)} training samples of {len(train)}; every client needs at "
                f"least {MIN_SAMPLES_PER_CLIENT}: use fewer clients, more samples, or a "
                f"larger size_weight or partition alpha."
            )
    from abm.fl.device import resolve_device

    with _as_scenario_error(cfg, "fl.device", fl.device):
        device = resolve_device(fl.device)
    # the only user-reachable Federation error left after the schema's checks
    with _as_scenario_error(cfg, "fl.utility_samples", fl.utility_samples):
        federation = Federation(
            train, parts, val, behaviours, model=fl.model, hidden=fl.hidden,
            local_epochs=fl.local_epochs, batch_size=fl.batch_size, lr=fl.lr,
            metric=fl.metric, coalition=cfg.contribution.coalition,
            utility_samples=fl.utility_samples, device=device,
            seed=fl_seed,
        )
    method = build(cfg.contribution.params, rng=method_rng)
    return federation, method


class _as_scenario_error:
    """Context manager: a ValueError (a data file that is not what it should be, a partition
    that cannot be made) or OSError (a data file that cannot be read) raised while building
    a part of the model becomes the usual one-paragraph `ScenarioError`, naming the
    scenario's file and the field."""

    def __init__(self, scenario: Scenario, path: str, value: Any) -> None:
        self.scenario, self.path, self.value = scenario, path, value

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if kind is not None and issubclass(kind, ValueError | OSError) and not isinstance(
            exc, ScenarioError
        ):
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ScenarioError(
                problem_text(self.scenario.source, self.path, self.value, reason[:400])
            ) from None
        return False
