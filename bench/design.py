"""Benchmark: overhead per run of a design sweep and of an Optuna study, against a plain sweep.

Both are measured against a plain grid sweep of exactly the same runs (same run ids), in the
same process, on the same 2 local workers, each into a fresh folder:

1. a Latin-hypercube design of N points over `market.fee_bps` (`wsf sweep` with
   `design:`): T_design; then a grid listing the N fee values it drew: T_grid. Overhead
   per run = (T_design − T_grid) / N: drawing the design with SALib, resolving it and
   storing its points in sweep.yaml;
2. a study of N trials over the same parameter (random sampler, one seed per trial, so
   both keep 2 runs in flight): T_study; then a grid of the N fee values its trials drew:
   T_grid'. Overhead per run = (T_study − T_grid') / N: Optuna's ask/tell and journal
   storage, reading each finished run's outputs, and the trials table, Pareto table and
   scenario files at the end.

Times are end to end (driver call, worker pool start-up, simulation, atomic writes; the
sweeps then build their combined tables as `wsf sweep` does), seconds, after a one-run
warm-up that starts the forkserver. Runs are `scenarios/baseline.yaml` shortened to
`--steps` (default 60) without its twin.

    python -m bench.design [--runs N] [--steps S]
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
    args = parser.parse_args(argv)
    overrides = {"steps": args.steps, "counterfactual": False}
    with tempfile.TemporaryDirectory(prefix="wsf-bench-design-") as tmp:
        folder = Path(tmp)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"\n== design sweep and study vs plain sweep: {args.runs} runs of "
              f"{BASELINE.name} at {args.steps} steps, 2 local workers; {os.cpu_count()} "
              f"cores, load average {load:.2f} before")
        warm = _write(folder / "warm.yaml", {"name": "warm", "base": str(BASELINE),
                                             "overrides": {"steps": 10}, "seeds": 1})
        _timed_sweep(warm, folder / "warm")

        design = _write(folder / "design.yaml", {
            "name": "bench-design", "base": str(BASELINE), "overrides": overrides,
            "design": {"kind": "lhs", "samples": args.runs, "seed": 0},
            "parameters": {"market.fee_bps": {"low": 5, "high": 100}}, "seeds": 1})
        fees = [p.params["market.fee_bps"] for p in load_sweep(design).points]
        t_design = _timed_sweep(design, folder / "design-out")
        grid = _write(folder / "grid.yaml", {
            "name": "bench-grid", "base": str(BASELINE), "overrides": overrides,
            "grid": {"market.fee_bps": sorted(set(fees))}, "seeds": 1})
        assert ({r.run_id for r in load_sweep(grid).runs}
                == {r.run_id for r in load_sweep(design).runs}), "not the same runs"
        t_grid = _timed_sweep(grid, folder / "grid-out")
        n = len(set(fees))
        print(f"plain sweep        {t_grid:7.2f} s   {t_grid / n:6.2f} s per run")
        overhead = 1000 * (t_design - t_grid) / n
        print(f"lhs design sweep   {t_design:7.2f} s   overhead {overhead:+7.1f} ms per run")

        study = _write(folder / "study.yaml", {
            "name": "bench-study", "base": str(BASELINE), "overrides": overrides,
            "parameters": {"market.fee_bps": {"low": 5, "high": 100}},
            "objectives": [{"output": "distribution_cost_usd", "direction": "minimize"}],
            "seeds": 1, "sampler": {"kind": "random", "seed": 0}})
        started = time.perf_counter()
        out = run_study(study, trials=args.runs, out=folder / "study-out", workers=2,
                        outputs=run_outputs, output_names=RUN_OUTPUTS, progress=False)
        t_study = time.perf_counter() - started
        drawn = sorted(set(pd.read_parquet(out / "trials.parquet")["market.fee_bps"]))
        grid2 = _write(folder / "grid2.yaml", {
            "name": "bench-grid2", "base": str(BASELINE), "overrides": overrides,
            "grid": {"market.fee_bps": [int(f) for f in drawn]}, "seeds": 1})
        t_grid2 = _timed_sweep(grid2, folder / "grid2-out")
        print(f"plain sweep        {t_grid2:7.2f} s   {t_grid2 / len(drawn):6.2f} s per run "
              f"({len(drawn)} distinct points of {args.runs} trials)")
        print(f"optuna study       {t_study:7.2f} s   overhead "
              f"{1000 * (t_study - t_grid2) / args.runs:+7.1f} ms per trial-run")


if __name__ == "__main__":
    main()
