"""Benchmark of the market loop (issue 13): agent-steps per second of the model's market and
data collection, against a Mesa float toy of the same size, measured side by side in one run.

    python -m bench.market_loop [--steps N] [--repeats N]

Workload (ours): 1,013 agents: 10 FL clients, 1,000 investors (250 each of `fundamental`,
`momentum`, `mean_reversion` and `noise`, default parameters) and 3 liquidity providers, for
`--steps` steps (100) on 10 token pools with exact integer swaps; the FL side is as light as
the schema allows (logistic regression, `data_size` contributions) and its rounds are not
timed: the figure counts the model's `market` and `collect` phases (`model.timings`: agents
acting, then marking to market, the DataCollector and the pool statistics), the work per
agent-step the issue is about.

The toy: a plain Mesa model of 1,013 agents, each making one float constant-product swap per
step (buy 1 % of its USD or sell 10 % of its tokens, by a coin from the model's generator)
on one of 10 float pools with a 0.3 % fee, in `shuffle_do` order, and a `mesa.DataCollector`
with two agent attributes collected every step.

The exact toys, the ceiling of the ratio for exact integers in Python: the same Mesa toy with
integer base units (18 decimals), Uniswap V2's `getAmountOut` rounded down and its K check,
agents trading on pools drawn by the model's generator, and two agent attributes collected
(USD cash and wealth). `exact toy, 1 swap` makes the float toy's one swap per agent-step and
marks nothing; `exact toy, our counts` makes as many swaps per agent-step as our workload made
in the same run (`Pool.n_swaps`) and marks every agent's holdings exactly at spot each step
(`balance * reserve_usd // reserve_token`, as many holdings per agent as ours held at the
end). It has no decisions, guards, ledger, order records or if-sold values, so no exact loop
doing our workload's work in Python can beat its ratio.

Each side's figure is its best of `--repeats` runs, taken alternately, so that a busy machine
slows all alike. Printed: the rates, the ratio (target >= 0.5) and met / NOT met, the exact
toys' ratios, and the split of our time per agent-step into the market phase (agents deciding
and trading) and collection, beside the market phase with the decisions' reference path
(`Strategy.decide` for one investor at a time, `tests/test_fast_paths.py` checks both give the
same tables).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator

import mesa

from abm.agents.strategies import Fundamental, MeanReversion, Momentum, Noise, Strategy
from abm.model import WallStreetFedsModel
from abm.scenario import Scenario, parse_scenario
from bench.table import record

TARGET_RATIO = 0.5
N_POOLS = 10
UNIT = 10**18  # base units per token or USD (18 decimals)
STRATEGIES = ("fundamental", "momentum", "mean_reversion", "noise")


def workload(steps: int) -> Scenario:
    """1,013 agents on 10 pools (see the module docstring)."""
    return parse_scenario({
        "name": "market_loop", "seed": 1, "steps": steps, "round_every": 10,
        "fl": {"dataset": {"name": "digits"}, "model": "logreg",
               "partition": {"scheme": "iid"}},
        "contribution": {"method": "data_size"},
        "rewards": {"policy": "buyback", "budget": {"kind": "constant", "amount": 1000}},
        "clients": [{"count": 5, "cash_out": {"kind": "hold"}},
                    {"count": 5, "cash_out": {"kind": "sell_fraction", "fraction": 0.05}}],
        "investors": [{"strategy": s, "count": 250, "cash": 500} for s in STRATEGIES],
        "liquidity_providers": [{"count": 3, "cash": 5000}],
    }, source="bench.market_loop")


def run_ours(scenario: Scenario) -> tuple[float, float, int, float, float]:
    """Seconds of the market and collection phases over the run, agent-steps done, and per
    agent-step the swaps made and (at the end) the token holdings of the market agents."""
    model = WallStreetFedsModel(scenario)
    model.run_for(scenario.steps)
    agents = model.market_agents
    agent_steps = len(agents) * scenario.steps
    swaps = sum(pool.n_swaps for pool in model.market.pools.values())
    accounts = {a.account for a in agents}
    holdings = sum(1 for pool in model.market.pools.values()
                   for account, balance in model.market.ledger.holders(pool.token).items()
                   if balance and account in accounts)
    return (model.timings["market"], model.timings["collect"], agent_steps,
            swaps / agent_steps, holdings / len(agents))


@contextlib.contextmanager
def reference_decisions() -> Iterator[None]:
    """The built-in strategies decide by their reference path (`decide`, one investor and
    its whole holdings vector at a time) instead of their fast `orders`."""
    classes = (Fundamental, Momentum, MeanReversion, Noise)
    saved = [c.__dict__["orders"] for c in classes]
    try:
        for c in classes:
            c.orders = Strategy.orders
        yield
    finally:
        for c, orders in zip(classes, saved, strict=True):
            c.orders = orders


class ToyTrader(mesa.Agent):
    """One float constant-product swap per step on its pool."""

    def __init__(self, model: ToyMarket, pool: int) -> None:
        super().__init__(model)
        self.pool = pool
        self.usd = 500.0
        self.tokens = 0.0

    def step(self) -> None:
        reserves = self.model.reserves[self.pool]
        token, usd = reserves
        if self.tokens <= 0 or self.model.random.random() < 0.5:
            paid = 0.01 * self.usd
            got = paid * 0.997 * token / (usd + paid * 0.997)
            reserves[0], reserves[1] = token - got, usd + paid
            self.usd -= paid
            self.tokens += got
        else:
            sold = 0.1 * self.tokens
            got = sold * 0.997 * usd / (token + sold * 0.997)
            reserves[0], reserves[1] = token + sold, usd - got
            self.tokens -= sold
            self.usd += got


class ToyMarket(mesa.Model):
    """`n_agents` toy traders on `N_POOLS` float pools; two agent attributes collected."""

    def __init__(self, n_agents: int, seed: int = 1) -> None:
        super().__init__(rng=seed)
        self.reserves = [[10_000.0, 2_500.0] for _ in range(N_POOLS)]
        for i in range(n_agents):
            ToyTrader(self, i % N_POOLS)
        self.datacollector = mesa.DataCollector(agent_reporters={"usd": "usd",
                                                                 "tokens": "tokens"})
        self.datacollector.collect(self)

    def step(self) -> None:
        self.agents.shuffle_do("step")
        self.datacollector.collect(self)


def run_toy(n_agents: int, steps: int) -> tuple[float, int]:
    model = ToyMarket(n_agents)
    start = time.perf_counter()
    for _ in range(steps):
        model.step()
    return time.perf_counter() - start, n_agents * steps


class ExactToyTrader(mesa.Agent):
    """`model.swaps_per_step` exact swaps per step (on average) on pools drawn by the model's
    generator; `wealth` is its exact spot mark, set by the model after each step."""

    def __init__(self, model: ExactToyMarket) -> None:
        super().__init__(model)
        self.usd = 500 * UNIT
        self.tokens = [0] * N_POOLS  # base units per pool
        self.wealth = self.usd

    def step(self) -> None:
        model = self.model
        model.owed += model.swaps_per_step
        for _ in range(int(model.owed)):
            model.owed -= 1
            pool = model.random.randrange(N_POOLS)
            reserves = model.reserves[pool]
            token, usd = reserves
            held = self.tokens[pool]
            if held <= 0 or model.random.random() < 0.5:
                paid = self.usd // 100
                x = paid * 997
                num, d = x * token, usd * 1000 + x
                got = num // d  # getAmountOut, rounded down
                if not got or got * d > num:  # nothing out, or the K check fails
                    continue
                reserves[0], reserves[1] = token - got, usd + paid
                self.usd -= paid
                self.tokens[pool] = held + got
            else:
                sold = held // 10
                x = sold * 997
                num, d = x * usd, token * 1000 + x
                got = num // d
                if not got or got * d > num:
                    continue
                reserves[0], reserves[1] = token + sold, usd - got
                self.tokens[pool] = held - sold
                self.usd += got


class ExactToyMarket(mesa.Model):
    """`n_agents` exact toy traders on `N_POOLS` integer pools; each step every agent's
    holdings are marked exactly at spot when `marks`, and `usd` and `wealth` collected."""

    def __init__(self, n_agents: int, swaps_per_step: float, marks: bool, seed: int = 1) -> None:
        super().__init__(rng=seed)
        self.reserves = [[10_000 * UNIT, 2_500 * UNIT] for _ in range(N_POOLS)]
        self.swaps_per_step = swaps_per_step
        self.owed = 0.0  # swaps owed by the agents so far (the fractional rate's carry)
        self.marks = marks
        for _ in range(n_agents):
            ExactToyTrader(self)
        self.datacollector = mesa.DataCollector(agent_reporters={"usd": "usd",
                                                                 "wealth": "wealth"})
        self.datacollector.collect(self)

    def step(self) -> None:
        self.agents.shuffle_do("step")
        if self.marks:
            reserves = self.reserves
            for agent in self.agents:
                wealth = agent.usd
                for pool, held in enumerate(agent.tokens):
                    if held:
                        token, usd = reserves[pool]
                        wealth += held * usd // token
                agent.wealth = wealth
        self.datacollector.collect(self)


def run_exact_toy(n_agents: int, steps: int, swaps_per_step: float, marks: bool) -> float:
    model = ExactToyMarket(n_agents, swaps_per_step, marks)
    start = time.perf_counter()
    for _ in range(steps):
        model.step()
    return time.perf_counter() - start


def measure(steps: int = 100, repeats: int = 3) -> dict[str, float]:
    scenario = workload(steps)
    ours, toy, exact_one, exact_ours, reference = [], [], [], [], []
    for _ in range(repeats):
        market, collect, agent_steps, swaps, holdings = run_ours(scenario)
        ours.append((market + collect, market, collect))
        n_agents = agent_steps // steps
        toy.append(run_toy(n_agents, steps)[0])
        exact_one.append(run_exact_toy(n_agents, steps, 1.0, marks=False))
        exact_ours.append(run_exact_toy(n_agents, steps, swaps, marks=True))
        with reference_decisions():
            reference.append(run_ours(scenario)[0])
    best = min(ours)
    us = 1e6 / agent_steps
    return {"agents": n_agents, "steps": steps, "ours": agent_steps / best[0],
            "toy": agent_steps / min(toy), "ratio": min(toy) / best[0],
            "market_us": best[1] * us, "collect_us": best[2] * us,
            "reference_market_us": min(reference) * us, "toy_us": min(toy) * us,
            "swaps": swaps, "holdings": holdings,
            "exact_one_ratio": min(toy) / min(exact_one), "exact_one_us": min(exact_one) * us,
            "exact_ours_ratio": min(toy) / min(exact_ours),
            "exact_ours_us": min(exact_ours) * us}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    r = measure(args.steps, args.repeats)
    met = r["ratio"] >= TARGET_RATIO
    verdict = "met" if met else "NOT met"
    record("market_loop", f"market loop, {r['agents']:,} agents x {r['steps']} steps, "
           "agent-steps/s incl. collection, vs a Mesa float toy",
           f"{r['ratio']:.2f}x ({r['ours']:,.0f} vs {r['toy']:,.0f} agent-steps/s; an exact "
           f"toy doing our swaps and marks: {r['exact_ours_ratio']:.2f}x)",
           f">= {TARGET_RATIO}x", met)
    print(f"market loop: {r['agents']:,} agents ({len(STRATEGIES)} x 250 investors), "
          f"{r['steps']} steps, agent-steps/s incl. data collection, best of {args.repeats}")
    print(f"  ours (exact integers) {r['ours']:10,.0f}   Mesa float toy {r['toy']:10,.0f}")
    print(f"  per agent-step: ours {r['market_us'] + r['collect_us']:.1f} us (market "
          f"{r['market_us']:.1f}, collect {r['collect_us']:.1f}); market with the reference "
          f"decisions {r['reference_market_us']:.1f} us; toy {r['toy_us']:.1f} us")
    print(f"  {'market loop vs Mesa float toy':50s} {r['ratio']:.2f}x   target >= "
          f"{TARGET_RATIO}x   {verdict}")
    print("  the ceiling for exact integers in Python (exact toys, same run):")
    print(f"  {'exact toy, 1 swap per agent-step, no marks':50s} {r['exact_one_ratio']:.2f}x "
          f"({r['exact_one_us']:.1f} us per agent-step)")
    print(f"  {'exact toy, our counts':50s} {r['exact_ours_ratio']:.2f}x "
          f"({r['exact_ours_us']:.1f} us: {r['swaps']:.2f} swaps per agent-step, "
          f"~{r['holdings']:.1f} holdings marked per agent)")


if __name__ == "__main__":
    main()
