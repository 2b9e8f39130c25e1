"""Does the trading population alone move prices? The zero-budget drift of docs/model.md,
section 5 ("A genesis without drift").

`python -m bench.drift [--seeds N] [--steps N] [--scenario FILE]`: the scenario (default
the shipped baseline) with a reward budget of 0 (its counterfactual twin: no reward ever
enters the market, so nothing but the trading population can move a price), run for
`steps` steps for seeds 1..N. Printed per seed and overall: the median over tokens of the
final price over the opening price, and the investors' net USD put into tokens. Target
(issue 22): the median over tokens and seeds 1-3 after 300 steps in [0.75, 1.33].
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from abm.scenario import load_scenario

LOW, HIGH = 0.75, 1.33


def drift(scenario_file: str = "scenarios/baseline.yaml", seeds: int = 3,
          steps: int = 300, inventory: float | None = None) -> dict:
    """Per seed the final/opening price ratio of every token ``(n,)``; overall median.
    ``inventory``: every investor group's genesis inventory share (None: the file's)."""
    from abm.run import simulate

    base = load_scenario(scenario_file)
    if inventory is not None:
        groups = [{**g, "inventory": inventory} for g in base.to_dict()["investors"]]
        base = base.with_overrides({"investors": groups})
    ratios, flows = {}, {}
    for seed in range(1, seeds + 1):
        twin = base.with_overrides({"seed": seed, "steps": steps}).twin()
        result = simulate(twin, check=False, progress=False)
        prices = result.model[[c for c in result.model.columns if c.startswith("price/")]]
        ratios[seed] = (prices.iloc[-1] / base.market.opening_price).to_numpy()
        money = result.summary["money"]["usd_by_holder"]["investor"]
        flows[seed] = money["trading"]
    allr = np.concatenate(list(ratios.values()))
    return {"ratios": ratios, "investor_trading_usd": flows, "median": float(np.median(allr))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.drift",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="scenarios/baseline.yaml")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--inventory", type=float,
                        help="every investor group's genesis inventory (default: the file's)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    out = drift(args.scenario, args.seeds, args.steps, args.inventory)
    for seed, r in out["ratios"].items():
        print(f"seed {seed}: final / opening price, median over tokens {np.median(r):.3f} "
              f"(range {r.min():.3f}-{r.max():.3f}); investors' net USD from trading "
              f"{out['investor_trading_usd'][seed]:,.0f}")
    ok = LOW <= out["median"] <= HIGH
    print(f"median over tokens and seeds: {out['median']:.3f} (target [{LOW}, {HIGH}]: "
          f"{'met' if ok else 'NOT met'}), {time.perf_counter() - t0:.0f} s")
    from bench.table import record

    record("zero_budget_drift", f"zero-budget final/opening price, median ({args.seeds} seeds "
           f"x {args.steps} steps)", f"{out['median']:.3f}", f"[{LOW}, {HIGH}]", ok)


if __name__ == "__main__":
    main()
