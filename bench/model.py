"""Benchmark: `scenarios/baseline.yaml` end to end (without its twin), and its profile split.

Target (issue 13): the 500-step, 50-round baseline's simulation in <= 2 s on a 2-core
machine. Prints, for the fastest of `REPEAT` runs, the wall time and the CPU time of the
process (on a shared machine the wall time includes waiting for a core; the CPU time does
not), and the time by phase as the model measures it (`summary.json`'s `time_by_phase_s`):
`setup` (data, partitions, genesis), `fl` (FedAvg training and the new global model's
evaluation), `contribution` (coalition evaluations), `market` (agents acting), `collect`
(valuing every agent, the model's figures, recording the step); `other` is the rest of the
loop.

Then the profile split: one more run under cProfile, its own time (tottime) summed by where
the code lives — torch and the learning core (`abm/fl`), the market core (`abm/amm`), the
agents (`abm/agents`), the model and its recording (`abm/model.py`, `abm/collect.py`), Mesa,
NumPy, the rest — and the functions that take most of it. cProfile slows pure-Python code
more than torch's kernels, so the split overstates the Python parts somewhat; the phase times
above are the unprofiled ones.
"""

from __future__ import annotations

import cProfile
import pstats
import time
from pathlib import Path

from abm.run import simulate
from abm.scenario import load_scenario
from bench.table import record

BASELINE = Path(__file__).resolve().parents[1] / "scenarios" / "baseline.yaml"
TARGET_S = 2.0
REPEAT = 2
PHASES = ("setup", "fl", "contribution", "market", "collect")
#: (label, test on a profiled function's file name), first match wins.
AREAS = (
    ("learning: torch", lambda f: "/torch/" in f),
    ("learning: abm/fl", lambda f: "/abm/fl/" in f),
    ("market core: abm/amm", lambda f: "/abm/amm/" in f),
    ("agents: abm/agents", lambda f: "/abm/agents/" in f),
    ("model + recording", lambda f: f.endswith(("/abm/model.py", "/abm/collect.py"))),
    ("rewards: abm/rewards.py", lambda f: f.endswith("/abm/rewards.py")),
    ("mesa", lambda f: "/mesa/" in f),
    ("numpy", lambda f: "/numpy/" in f),
    ("pandas/pyarrow (tables)", lambda f: "/pandas/" in f or "/pyarrow/" in f),
)


def _area(filename: str) -> str:
    for label, test in AREAS:
        if test(filename):
            return label
    return "builtins (C calls)" if filename == "~" else "other"


def profile_split(scenario, top: int = 12) -> tuple[dict[str, float], list[tuple[str, float]]]:
    """(seconds of own time by area, the `top` functions by own time) of one profiled run."""
    profiler = cProfile.Profile()
    profiler.enable()
    simulate(scenario, counterfactual=False)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    areas: dict[str, float] = {}
    functions = []
    for (filename, line, name), (_cc, _nc, tottime, _ct, _callers) in stats.items():
        label = _area(filename)
        areas[label] = areas.get(label, 0.0) + tottime
        where = filename.split("/site-packages/")[-1].split("/wt-d/")[-1]
        functions.append((f"{where}:{line}({name})", tottime))
    functions.sort(key=lambda x: -x[1])
    return areas, functions[:top]


def main() -> None:
    scenario = load_scenario(BASELINE)
    simulate(scenario.with_overrides({"steps": 20}), counterfactual=False)  # imports, caches
    best = None
    for _ in range(REPEAT):
        cpu = time.process_time()
        result = simulate(scenario, counterfactual=False)
        cpu = time.process_time() - cpu
        if best is None or result.timings["total"] < best[0].timings["total"]:
            best = (result, cpu)
    result, cpu = best
    t = result.timings
    total = t["total"]
    other = total - sum(t[p] for p in PHASES)
    print(f"\n== model: {BASELINE.name} ({scenario.steps} steps, {scenario.n_rounds} rounds, "
          f"{scenario.n_clients} clients, {sum(g.count for g in scenario.investors)} "
          f"investors), without its twin, fastest of {REPEAT}")
    met = total <= TARGET_S
    print(f"simulation     {total:8.2f} s wall, {cpu:.2f} s CPU   "
          f"({scenario.steps / total:.1f} steps/s; target <= {TARGET_S:.0f} s: "
          f"{'met' if met else 'NOT met'})")
    for p in (*PHASES, "other"):
        v = other if p == "other" else t[p]
        print(f"  {p:<13}{v:8.2f} s   {100 * v / total:5.1f} %")
    print(f"final accuracy {result.summary['final_accuracy']:.3f}")
    split = "  ".join(f"{p} {100 * (other if p == 'other' else t[p]) / total:.0f}%"
                      for p in (*PHASES[1:], "other"))
    record("baseline", "baseline end to end (500 steps, 50 rounds), simulation time",
           f"{total:.2f} s wall ({cpu:.2f} s CPU); {split}", f"<= {TARGET_S:.0f} s", met)

    areas, functions = profile_split(scenario)
    whole = sum(areas.values())
    print(f"profile split of the baseline (cProfile, own time, {whole:.2f} s profiled):")
    for label, seconds in sorted(areas.items(), key=lambda x: -x[1]):
        print(f"  {label:<26}{seconds:7.2f} s  {100 * seconds / whole:5.1f} %")
    print("  largest functions by own time:")
    for name, seconds in functions:
        print(f"    {seconds:6.2f} s  {100 * seconds / whole:5.1f} %  {name}")


if __name__ == "__main__":
    main()
