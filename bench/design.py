"""Benchmark: overhead per run of a design sweep and of an Optuna study, against a plain sweep.

Both are measured against a plain grid sweep of exactly the same runs (same run ids), in the
same process, on the same 2 local workers, each into a fresh folder:

1. a Latin-hypercube design of N points over `rewards.budget.amount` (`wsf sweep` with
   `design:`): T_design; then a grid listing the N amounts it drew: T_grid. Overhead
   per run = (T_design − T_grid) / N: drawing the design with SALib, resolving it and
   storing its points in sweep.yaml;
2. a study of N trials over the same parameter (random sampler, one seed per trial, so
   both keep 2 runs in flight): T_study; then a grid of the N amounts its trials drew:
   T_grid'. Overhead per run = (T_study − T_grid') / N: Optuna's ask/tell and journal
   storage, reading each finished run's outputs, and the trials table, Pareto table and
   scenario files at the end.

Each pair is measured `--repeat` times, alternating, and the fastest of each kept: on a
shared machine other work only ever adds time. Times are end to end (driver call, worker
pool start-up, simulation, atomic writes; the sweeps then build their combined tables as
`wsf sweep` does), seconds, after a one-run warm-up that starts the forkserver. Runs are
`scenarios/baseline.yaml` shortened to `--steps` (default 60) without its twin.

    python -m bench.design [--runs N] [--steps S] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from abm.sweep import load_sweep, run_sweep
from abm.sweep.optimize import run_study
from analysis.metrics import RUN_OUTPUTS, run_outputs
from analysis.sweep import combine

BASELINE = Path(__file__).resolve().parents[1] / "scenarios" / "baseline.yaml"
DEFAULT_RUNS = 6
DEFAULT_STEPS = 60


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _timed_sweep(path: Path, out: Path) -> float:
    started = time.perf_counter()
    run_sweep(path, out=out, workers=2, progress=False)
    combine(out)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.design", description=__doc__)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    overrides = {"steps": args.steps, "counterfactual": False}
    space = {"rewards.budget.amount": {"low": 100, "high": 2000}}
    with tempfile.TemporaryDirectory(prefix="wsf-bench-design-") as tmp:
        folder = Path(tmp)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"\n== design sweep and study vs plain sweep: {args.runs} runs of "
              f"{BASELINE.name} at {args.steps} steps, 2 local workers, fastest of "
              f"{args.repeat}; {os.cpu_count()} cores, load average {load:.2f} before")
        warm = _write(folder / "warm.yaml", {"name": "warm", "base": str(BASELINE),
                                             "overrides": {"steps": 10}, "seeds": 1})
        _timed_sweep(warm, folder / "warm")

        design = _write(folder / "design.yaml", {
            "name": "bench-design", "base": str(BASELINE), "overrides": overrides,
            "design": {"kind": "lhs", "samples": args.runs, "seed": 0},
            "parameters": space, "seeds": 1})
        amounts = [p.params["rewards.budget.amount"] for p in load_sweep(design).points]
        grid = _write(folder / "grid.yaml", {
            "name": "bench-grid", "base": str(BASELINE), "overrides": overrides,
            "grid": {"rewards.budget.amount": amounts}, "seeds": 1})
        assert ({r.run_id for r in load_sweep(grid).runs}
                == {r.run_id for r in load_sweep(design).runs}), "not the same runs"
        study = _write(folder / "study.yaml", {
            "name": "bench-study", "base": str(BASELINE), "overrides": overrides,
            "parameters": space,
            "objectives": [{"output": "execution_cost_usd", "direction": "minimize"}],
            "seeds": 1, "sampler": {"kind": "random", "seed": 0}})
        times: dict[str, list[float]] = {"design": [], "grid": [], "study": [], "grid2": []}
        for rep in range(args.repeat):
            times["design"].append(_timed_sweep(design, folder / f"design-{rep}"))
            times["grid"].append(_timed_sweep(grid, folder / f"grid-{rep}"))
            started = time.perf_counter()
            out = run_study(study, trials=args.runs, out=folder / f"study-{rep}", workers=2,
                            outputs=run_outputs, output_names=RUN_OUTPUTS, progress=False)
            times["study"].append(time.perf_counter() - started)
            drawn = list(pd.read_parquet(out / "trials.parquet")["rewards.budget.amount"])
            grid2 = _write(folder / f"grid2-{rep}.yaml", {
                "name": "bench-grid2", "base": str(BASELINE), "overrides": overrides,
                "grid": {"rewards.budget.amount": [float(a) for a in drawn]}, "seeds": 1})
            times["grid2"].append(_timed_sweep(grid2, folder / f"grid2-{rep}"))
        t = {key: min(values) for key, values in times.items()}
        n = args.runs
        print(f"plain sweep        {t['grid']:7.2f} s   {t['grid'] / n:6.2f} s per run")
        print(f"lhs design sweep   {t['design']:7.2f} s   overhead "
              f"{1000 * (t['design'] - t['grid']) / n:+7.1f} ms per run")
        print(f"plain sweep        {t['grid2']:7.2f} s   {t['grid2'] / n:6.2f} s per run "
              "(the study's points)")
        print(f"optuna study       {t['study']:7.2f} s   overhead "
              f"{1000 * (t['study'] - t['grid2']) / n:+7.1f} ms per run (one run per trial)")


if __name__ == "__main__":
    main()
