"""Benchmark: `scenarios/baseline.yaml` end to end, with the time by phase.

Target (issue 4): the whole 500-step baseline in <= 30 s on a 2-core machine. Prints wall time,
steps per second and where the time goes: `setup` (data, partitions, genesis), `fl` (FedAvg
training), `contribution` (coalition evaluations), `market` (agents acting), `collect`
(marking to market and the DataCollector); `other` is the rest of the loop.
"""

from __future__ import annotations

from pathlib import Path

from abm.run import simulate
from abm.scenario import load_scenario

BASELINE = Path(__file__).resolve().parents[1] / "scenarios" / "baseline.yaml"
TARGET_S = 30.0


def main() -> None:
    scenario = load_scenario(BASELINE)
    result = simulate(scenario)
    t = result.timings
    total = t["total"]
    phases = ("setup", "fl", "contribution", "market", "collect")
    other = total - sum(t[p] for p in phases)
    print(f"\n== model: {BASELINE.name} ({scenario.steps} steps, {scenario.n_rounds} rounds, "
          f"{scenario.n_clients} clients, "
          f"{sum(g.count for g in scenario.investors)} investors)")
    print(f"wall time      {total:8.2f} s   ({scenario.steps / total:.1f} steps/s; "
          f"target <= {TARGET_S:.0f} s: {'met' if total <= TARGET_S else 'MISSED'})")
    for p in (*phases, "other"):
        v = other if p == "other" else t[p]
        print(f"  {p:<13}{v:8.2f} s   {100 * v / total:5.1f} %")
    print(f"final accuracy {result.summary['final_accuracy']:.3f}")


if __name__ == "__main__":
    main()
