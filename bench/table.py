"""The summary table of `make bench`: one row per figure of issue 13's table.

A benchmark module records its rows with `record(...)` while it runs; `python -m bench`
prints every recorded row at the end, in the order of `ORDER` (rows not listed there come
last, in the order recorded). Each row is a ratio or time measured side by side in the same
run, with its target and whether it was met. A module adds a row with one call, so that a
new benchmark needs no change here beyond (optionally) its place in `ORDER`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Row keys in the order of issue 13's table.
ORDER = ("exact_fast_path", "gtg_vs_exact", "cifar_round", "market_loop", "baseline",
         "dask_overhead", "viz_redraw")


@dataclass(frozen=True)
class Row:
    key: str  # one of ORDER, or a new key
    figure: str  # what is measured, against what
    measured: str  # the measured value, with its reference
    target: str
    met: bool


ROWS: list[Row] = []


def record(key: str, figure: str, measured: str, target: str, met: bool) -> Row:
    """Add one row to the summary table (a later row with the same key replaces it)."""
    row = Row(key, figure, measured, target, bool(met))
    ROWS[:] = [r for r in ROWS if r.key != key]
    ROWS.append(row)
    return row


def ordered() -> list[Row]:
    rank = {key: i for i, key in enumerate(ORDER)}
    return sorted(ROWS, key=lambda r: rank.get(r.key, len(ORDER)))


def print_table() -> None:
    """The recorded rows as a fixed-width table (figure, measured, target, met)."""
    rows = ordered()
    if not rows:
        return
    print("\n== issue 13: every row measured side by side in this run ==")
    wf = max(len(r.figure) for r in rows)
    wm = max(len(r.measured) for r in rows)
    wt = max(len(r.target) for r in rows)
    for r in rows:
        print(f"  {r.figure:<{wf}}  {r.measured:<{wm}}  target {r.target:<{wt}}  "
              f"{'met' if r.met else 'NOT met'}")
