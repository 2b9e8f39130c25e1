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

Each side's figure is its best of `--repeats` runs, taken alternately, so that a busy machine
slows both alike. Printed: both rates, the ratio (target >= 0.5) and met / NOT met, and the
split of our time per agent-step into the market phase (agents deciding and trading) and
collection, beside the market phase with the decisions' reference path (`Strategy.decide`
for one investor at a time, `tests/test_fast_paths.py` checks both give the same tables).
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


def run_ours(scenario: Scenario) -> tuple[float, float, int]:
    """Seconds of the market and collection phases over the run, and agent-steps done."""
    model = WallStreetFedsModel(scenario)
    model.run_for(scenario.steps)
    return (model.timings["market"], model.timings["collect"],
            len(model.market_agents) * scenario.steps)


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


def measure(steps: int = 100, repeats: int = 3) -> dict[str, float]:
    scenario = workload(steps)
    ours, toy, reference = [], [], []
    for _ in range(repeats):
        market, collect, agent_steps = run_ours(scenario)
        ours.append((market + collect, market, collect))
        n_agents = agent_steps // steps
        seconds, _ = run_toy(n_agents, steps)
        toy.append(seconds)
        with reference_decisions():
            reference.append(run_ours(scenario)[0])
    best = min(ours)
    us = 1e6 / agent_steps
    return {"agents": n_agents, "steps": steps, "ours": agent_steps / best[0],
            "toy": agent_steps / min(toy), "ratio": min(toy) / best[0],
            "market_us": best[1] * us, "collect_us": best[2] * us,
            "reference_market_us": min(reference) * us, "toy_us": min(toy) * us}


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
           f"{r['ratio']:.2f}x ({r['ours']:,.0f} vs {r['toy']:,.0f} agent-steps/s)",
           f">= {TARGET_RATIO}x", met)
    print(f"market loop: {r['agents']:,} agents ({len(STRATEGIES)} x 250 investors), "
          f"{r['steps']} steps, agent-steps/s incl. data collection, best of {args.repeats}")
    print(f"  ours (exact integers) {r['ours']:10,.0f}   Mesa float toy {r['toy']:10,.0f}")
    print(f"  per agent-step: ours {r['market_us'] + r['collect_us']:.1f} us (market "
          f"{r['market_us']:.1f}, collect {r['collect_us']:.1f}); market with the reference "
          f"decisions {r['reference_market_us']:.1f} us; toy {r['toy_us']:.1f} us")
    print(f"  {'market loop vs Mesa float toy':50s} {r['ratio']:.2f}x   target >= "
          f"{TARGET_RATIO}x   {verdict}")


if __name__ == "__main__":
    main()
