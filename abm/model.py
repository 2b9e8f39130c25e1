"""The Mesa model: a federation, its clients' token markets, and the agents trading on them.

One step (see `step()`):

1. On a round boundary (every `round_every` steps) the federation trains one FedAvg round,
   measures each client's contribution, publishes the signal and pays the round's budget
   through the reward policy.
2. The public market view is refreshed (prices after any reward flow).
3. Market agents (clients, investors, liquidity providers) act once each, in shuffled order:
   who trades first is a modelling choice, so it is made visible here.
4. Holdings are marked to market and the step is recorded by the DataCollector.

One seed drives everything: Mesa's `rng`/`random`, the data split, torch (through the
federation's private generator) and the contribution method's sampling.
"""

from __future__ import annotations

import time
from typing import Any

import mesa
import numpy as np
from mesa.agent import AgentSet

from abm.agents.client import Client
from abm.agents.federation import TREASURY, FederationAgent
from abm.agents.investor import Investor
from abm.agents.liquidity import LiquidityProvider
from abm.agents.strategies import make_strategy
from abm.agents.view import MarketView
from abm.amm import ONE, Ledger, Market, to_units
from abm.rewards import Budget, ClientAccount, make_policy
from abm.scenario import Scenario, ScenarioError, check_components

AGENT_TYPES = ("client", "investor", "lp", "federation")
#: Relative data size of a `small_data` client when its group sets no `size_weight`.
SMALL_DATA_WEIGHT = 0.25


class WallStreetFedsModel(mesa.Model):
    """Client-specific tokens as investment vehicles in federated learning.

    Args:
        scenario: the validated scenario (`abm.scenario.load_scenario`).
        rng: seed; `None` uses `scenario.seed`. The scenario kept as `self.config` carries the
            seed actually used. (Mesa 3.5 reserves `model.scenario` for its own experiments.)
        check: prove the ledger's conservation invariant after every step (raises on failure).
    """

    def __init__(self, scenario: Scenario, *, rng: int | None = None, check: bool = False):
        seed = scenario.seed if rng is None else int(rng)
        super().__init__(rng=seed)
        self.config = scenario if seed == scenario.seed else scenario.with_overrides({"seed": seed})
        self.check_ledger = check
        self.timings = {"market": 0.0, "collect": 0.0}

        groups = scenario.client_groups()
        self.client_ids = [cid for cid, _ in groups]
        self.ledger = Ledger()
        self.market = Market(self.ledger, base="USD", fee_bps=scenario.market.fee_bps)
        for cid in self.client_ids:
            self.market.create_pool(cid)

        # Agents are created before genesis so that every balance has an owner.
        self.clients = [
            Client(self, cid, g.behaviour, g.cash_out, g.max_slippage) for cid, g in groups
        ]
        self.investors = self._create_investors()
        self.lps = [
            LiquidityProvider(self, spec)
            for spec in scenario.liquidity_providers for _ in range(spec.count)
        ]
        self.federation = FederationAgent(
            self, *self._build_learning(groups),
            budget=Budget(**scenario.rewards.budget.model_dump()),
            clients=[ClientAccount(c.account, c.token) for c in self.clients],
            spec=scenario.contribution,
            behaviours=[g.behaviour for _, g in groups],
        )
        self._genesis()
        self.market_agents = AgentSet([*self.clients, *self.investors, *self.lps],
                                           random=self.random)

        self.view = MarketView(tokens=self.client_ids, policy=scenario.rewards.policy,
                               round_every=scenario.round_every,
                               total_rounds=scenario.n_rounds)
        n = len(self.client_ids)
        # Prior of the public signal before any round: equal shares of the expected budget.
        self.view.share_signal = np.full(n, 1.0 / n)
        self.view.last_shares = np.zeros(n)
        self.view.last_budget = self.federation.budget.for_round(0, 0.0)

        self.round_rows: list[dict[str, Any]] = []
        self.last_round_rows: list[dict[str, Any]] = []
        self.contribution = dict.fromkeys(self.client_ids, 0.0)
        self._counters = self._pool_counters()
        self._step_reward = 0.0
        self._step_cost = 0.0
        self._stats: dict[str, float] = {}
        self._refresh()
        self.datacollector = mesa.DataCollector(
            model_reporters={k: (lambda m, k=k: m._stats[k]) for k in self._stats},
            agent_reporters={k: k for k in ("agent_type", "strategy", "client", "usd",
                                            "token_value", "lp_value", "wealth",
                                            "fees_earned", "hodl_value")},
        )
        self.datacollector.collect(self)

    # -- construction -------------------------------------------------------------------------

    def _create_investors(self) -> list[Investor]:
        # Strategy parameters are checked (with the usual message) before any agent exists.
        check_components(self.config, f"scenario {self.config.name!r}")
        return [
            Investor(self, make_strategy(spec.strategy, **spec.params), spec.cash,
                     spec.max_trade, spec.max_position, spec.max_slippage)
            for spec in self.config.investors for _ in range(spec.count)
        ]

    def _build_learning(self, groups) -> tuple[Any, Any, Any]:
        """The FL federation, the contribution method and the reward policy."""
        # Imported here so that importing the model (e.g. by the viz app) stays light until a
        # model is built; torch loads with the first federation.
        from abm.fl import (
            Federation,
            load_dataset,
            make_behaviour,
            make_contribution_method,
            partition,
            split_validation,
        )

        cfg = self.config
        fl = cfg.fl
        data_rng = np.random.default_rng(int(self.rng.integers(2**63)))
        fl_seed = int(self.rng.integers(2**31))
        method_rng = np.random.default_rng(int(self.rng.integers(2**63)))
        ds = fl.dataset
        options = ({"n_features": ds.n_features, "n_classes": ds.n_classes,
                    "class_sep": ds.class_sep} if ds.name == "synthetic" else {})
        with _as_scenario_error(cfg.name, "fl.dataset", ds.model_dump()):
            data = load_dataset(ds.name, rng=data_rng, path=ds.path, n_samples=ds.n_samples,
                                **options)
            train, val = split_validation(data, fl.val_fraction, data_rng)
        weights = [
            g.size_weight if g.size_weight is not None
            else (SMALL_DATA_WEIGHT if g.behaviour == "small_data" else 1.0)
            for _, g in groups
        ]
        with _as_scenario_error(cfg.name, "fl.partition", fl.partition.model_dump()):
            parts = partition(train.y, len(groups), scheme=fl.partition.scheme, rng=data_rng,
                              alpha=fl.partition.alpha, size_weights=weights)
        behaviours = []
        for i, (_, g) in enumerate(groups):
            with _as_scenario_error(cfg.name, f"clients (client {i}).behaviour_params",
                                    g.behaviour_params):
                behaviours.append(make_behaviour(g.behaviour, **g.behaviour_params))
        federation = Federation(train, parts, val, behaviours, model=fl.model, hidden=fl.hidden,
                                local_epochs=fl.local_epochs, batch_size=fl.batch_size,
                                lr=fl.lr, metric=fl.metric, seed=fl_seed)
        c = cfg.contribution
        with _as_scenario_error(cfg.name, "contribution.params", c.params):
            method = make_contribution_method(c.method, rng=method_rng, **c.params)
        return federation, method, make_policy(cfg.rewards.policy)

    def _genesis(self) -> None:
        """Initial supplies, endowments and seeded pools (DESIGN.md section 5)."""
        m = self.config.market
        mint = self.ledger.mint
        supply, pooled = to_units(m.initial_supply), to_units(m.pool_tokens)
        pool_usd = to_units(m.pool_tokens * m.opening_price)
        for client in self.clients:
            mint(client.account, client.token, supply)
            mint(client.account, "USD", to_units(m.client_cash))
            pool = self.market.pools[client.token]
            if m.seeded_by == "federation":
                mint(TREASURY, client.token, pooled)
                mint(TREASURY, "USD", pool_usd)
                pool.add_liquidity(TREASURY, pooled, pool_usd)
            else:
                pool.add_liquidity(client.account, pooled, pool_usd)
        for investor in self.investors:
            mint(investor.account, "USD", to_units(investor.start_cash))
        for lp in self.lps:
            mint(lp.account, "USD", to_units(lp.spec.cash))
        self.ledger.check()

    # -- the step -----------------------------------------------------------------------------

    def step(self) -> None:
        """Round (if due) -> refreshed view -> market agents in shuffled order -> record."""
        self.view.round_just_ran = False
        self._step_reward = self._step_cost = 0.0
        if (self.steps % self.config.round_every == 0
                and self.federation.rounds_done < self.config.n_rounds):
            self._fl_round()
        self.view.update(self.steps, *self._market_arrays())

        t0 = time.perf_counter()
        self.market_agents.shuffle_do("act")
        t1 = time.perf_counter()
        self._refresh()
        if self.check_ledger:
            self.ledger.check()
        self.datacollector.collect(self)
        self.timings["market"] += t1 - t0
        self.timings["collect"] += time.perf_counter() - t1

    def _fl_round(self) -> None:
        cost_before = self.federation.total_cost
        rows, shares, budget = self.federation.run_round()
        self.round_rows.extend(rows)
        self.last_round_rows = rows
        for row in rows:
            self.contribution[row["client"]] = row["contribution"]
        self.view.publish_round(shares, budget)
        self.view.round_just_ran = True
        self._step_reward = budget
        self._step_cost = (self.federation.total_cost - cost_before) / ONE

    # -- measurement --------------------------------------------------------------------------

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
        for lp in self.lps:
            lp.accrue(fee_values, prices)
        wealth = dict.fromkeys(AGENT_TYPES, 0.0)
        for agent in self.agents:
            agent.snapshot()
            wealth[agent.agent_type] += agent.wealth

        s: dict[str, float] = {
            "round": float(self.federation.rounds_done),
            "accuracy": float(self.federation.federation.accuracy),
            "loss": float(self.federation.federation.loss),
            "reward_usd": self._step_reward,
            "volume_usd": sum(volume.values()),
            "fees_usd": sum(fee_values.values()),
            "distribution_cost_usd": self._step_cost,
            "federation_usd": self.ledger.balance(TREASURY, "USD") / ONE,
        }
        for kind in ("client", "investor", "lp"):
            s[f"wealth/{kind}"] = wealth[kind]
        for c in self.client_ids:
            reserve_token, reserve_usd = self.market.pools[c].reserves
            s[f"price/{c}"] = prices[c]
            s[f"reserve_token/{c}"] = reserve_token / ONE
            s[f"reserve_usd/{c}"] = reserve_usd / ONE
            s[f"supply/{c}"] = self.ledger.supply(c) / ONE
            s[f"volume_usd/{c}"] = volume[c]
            s[f"contribution/{c}"] = self.contribution[c]
        self._stats = s


class _as_scenario_error:
    """Context manager: a component's ValueError becomes a ScenarioError naming the field."""

    def __init__(self, name: str, path: str, value: Any) -> None:
        self.name, self.path, self.value = name, path, value

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if kind is not None and issubclass(kind, ValueError) and not isinstance(
            exc, ScenarioError
        ):
            raise ScenarioError(
                f"scenario {self.name!r}: a problem: {self.path} = {self.value}: {exc}."
            ) from None
        return False
