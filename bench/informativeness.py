"""How much do prices tell about contributions when investors see the signal through noise?

`python -m bench.informativeness [--scenario FILE] [--seeds 1 2 3] [--noise 0 0.01 ...]
[--dispersion SIGMA]` (not part of `make bench`: a measurement behind the private-beliefs
submodel, docs/model.md, section 7.9). For every `signal_noise` value (share units: the
standard deviation of the noise on each round share a fundamental investor observes, set on
every fundamental group of the scenario, with `noise_dispersion` SIGMA) and seed, the scenario
runs without its twin, and price informativeness is the Spearman rank correlation, across
clients, of the final token price with the true cumulative contribution
(`analysis.metrics.spearman`, as `price_contribution_spearman`). The learning side never sees
the market, so for a seed the contributions are the same whatever the noise: only prices
change. Printed: per noise value, the median and mean over seeds and every seed's value.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from abm.scenario import Scenario, load_scenario
from analysis.metrics import spearman
from analysis.report import markdown_table

BASELINE = Path(__file__).resolve().parents[1] / "scenarios" / "baseline.yaml"


def with_noise(scenario: Scenario, seed: int, noise: float, dispersion: float) -> Scenario:
    """`scenario` at `seed`, without its twin, every fundamental group observing with
    `signal_noise = noise` and `noise_dispersion = dispersion` (other parameters kept)."""
    groups = scenario.to_dict()["investors"]
    for g in groups:
        if g["strategy"] == "fundamental":
            g["params"] = {**g["params"], "signal_noise": noise,
                           "noise_dispersion": dispersion}
    return scenario.with_overrides({"seed": seed, "counterfactual": False,
                                    "investors": groups})


def informativeness(scenario: Scenario) -> float:
    """Spearman correlation of final price with cumulative contribution, across clients."""
    from abm.run import simulate

    result = simulate(scenario)
    ids = [f"c{i:02d}" for i in range(scenario.n_clients)]
    final = result.model.iloc[-1][[f"price/{c}" for c in ids]].to_numpy(dtype=float)
    cumulative = (result.rounds.groupby("client")["contribution"].sum()
                  .reindex(ids, fill_value=0.0).to_numpy())
    return spearman(final, cumulative)


def measure(path: Path, seeds: list[int], noises: list[float],
            dispersion: float) -> pd.DataFrame:
    base = load_scenario(path)
    rows = []
    for noise in noises:
        values = [informativeness(with_noise(base, s, noise, dispersion)) for s in seeds]
        rows.append({"signal_noise (share sd)": noise, "median rho": np.median(values),
                     "mean rho": np.mean(values),
                     **{f"seed {s}": v for s, v in zip(seeds, values, strict=True)}})
        print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", type=Path, default=BASELINE)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--noise", type=float, nargs="+",
                        default=[0.0, 0.01, 0.03, 0.1, 0.3])
    parser.add_argument("--dispersion", type=float, default=0.0)
    args = parser.parse_args()
    table = measure(args.scenario, args.seeds, args.noise, args.dispersion)
    print(markdown_table(table.round(3)))


if __name__ == "__main__":
    main()
