"""Do token prices, or market values, rank clients by contribution, and how much of that
ranking do investors make? The table of docs/model.md, section 4.11 ("Informativeness").

`python -m bench.informativeness [--seeds N] [--steps N] [--policies ...]`: the shipped
baseline under each policy, seeds 1..N, with its investors and without any (the mechanism
alone: clients, LPs and the federation's policy). Per run: Spearman's rho across clients of
the cumulative contribution with the final price (`price_contribution_spearman`) and with the
final market capitalisation, price x total supply (`mcap_contribution_rho`). Printed: per
policy and population, the mean over seeds with its range, and what investors add (with
minus without).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from abm.scenario import load_scenario


def measure(seeds: int = 5, steps: int = 200, policies=("buyback", "dividend", "mint"),
            scenario_file: str = "scenarios/baseline.yaml") -> pd.DataFrame:
    """One row per (policy, population, seed): price and market-cap rho."""
    from abm.run import simulate
    from analysis.metrics import mcap_contribution_correlation, price_contribution_correlation
    from analysis.runs import run_from_result

    base = load_scenario(scenario_file)
    rows = []
    for policy in policies:
        for population in ("with investors", "without investors"):
            for seed in range(1, seeds + 1):
                overrides = {"seed": seed, "steps": steps, "rewards.policy": policy,
                             "counterfactual": False}
                if population == "without investors":
                    overrides["investors"] = []
                result = simulate(base.with_overrides(overrides))
                run = run_from_result(result)
                rows.append({"policy": policy, "population": population, "seed": seed,
                             "price_rho": price_contribution_correlation(run),
                             "mcap_rho": mcap_contribution_correlation(run)})
    return pd.DataFrame(rows)


def table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean (min-max over seeds) per policy and population, and investors' part."""
    g = df.groupby(["policy", "population"], sort=False)
    out = g.agg(price_rho=("price_rho", "mean"), price_min=("price_rho", "min"),
                price_max=("price_rho", "max"), mcap_rho=("mcap_rho", "mean"),
                mcap_min=("mcap_rho", "min"), mcap_max=("mcap_rho", "max")).reset_index()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.informativeness",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--policies", nargs="+", default=["buyback", "dividend", "mint"])
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    df = measure(args.seeds, args.steps, tuple(args.policies))
    t = table(df)
    print(f"{args.seeds} seeds x {args.steps} steps, {time.perf_counter() - t0:.0f} s")
    print("| policy | population | price rho, mean (range) | market-cap rho, mean (range) |")
    print("|---|---|---|---|")
    for r in t.itertuples():
        print(f"| {r.policy} | {r.population} | {r.price_rho:.2f} ({r.price_min:.2f} to "
              f"{r.price_max:.2f}) | {r.mcap_rho:.2f} ({r.mcap_min:.2f} to {r.mcap_max:.2f}) |")
    print()
    for policy in t["policy"].unique():
        w = t[(t.policy == policy) & (t.population == "with investors")].iloc[0]
        wo = t[(t.policy == policy) & (t.population == "without investors")].iloc[0]
        print(f"{policy}: the mechanism alone {wo.price_rho:.2f} (price), {wo.mcap_rho:.2f} "
              f"(market cap); investors add {w.price_rho - wo.price_rho:+.2f} and "
              f"{w.mcap_rho - wo.mcap_rho:+.2f}")
    if np.isnan(df[["price_rho", "mcap_rho"]].to_numpy()).any():
        print("(some runs had an undefined rho: constant prices or contributions)")


if __name__ == "__main__":
    main()
