"""Run every benchmark in bench/: `python -m bench` (what `make bench` does).

bench.amm always runs; the others run when they exist and are skipped with a one-line notice
while they do not. A benchmark that exists but fails (to import or to run) is reported, the
others still run, and the exit status is 1. At the end, the rows the benchmarks recorded
(`bench.table.record`) are printed as one table: issue 13's figures, each with its target and
met / NOT met. A new benchmark is one module here plus its name in OPTIONAL.
"""

from __future__ import annotations

import importlib
import sys
import traceback

from bench.table import print_table

REQUIRED = ("bench.amm",)
OPTIONAL = ("bench.fl", "bench.model", "bench.market_loop", "bench.sweep", "bench.design",
            "bench.viz")


def main() -> int:
    failed = []
    for name in REQUIRED + OPTIONAL:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if name in OPTIONAL and error.name == name:
                print(f"== {name}: not written yet, skipped ==")
                continue
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
