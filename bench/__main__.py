"""Run every benchmark in bench/: `python -m bench` (what `make bench` does).

Each benchmark in `BENCHMARKS` runs in turn; one that fails (to import or to run) is reported,
the others still run, and the exit status is 1. At the end, the rows the benchmarks recorded
(`bench.table.record`) are printed as one table: issue 13's figures, each with its target and
met / NOT met. A new benchmark is one module here plus its name in `BENCHMARKS`.
"""

from __future__ import annotations

import importlib
import sys
import traceback

from bench.table import print_table

BENCHMARKS = ("bench.amm", "bench.fl", "bench.train", "bench.model", "bench.market_loop",
              "bench.sweep", "bench.design", "bench.viz", "bench.startup",
              "bench.contribution_grid", "bench.scale")


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        try:
            module = importlib.import_module(name)
        except Exception:
            failed.append(name)
            traceback.print_exc()
            continue
        print(f"== {name} ==", flush=True)
        try:
            module.main()
        except Exception:
            failed.append(name)
            traceback.print_exc()
    print_table()
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
