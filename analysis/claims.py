"""Stated answers that re-measure themselves: a shipped file's `claims:` block and
`wsf check-claims`.

A scenario, sweep or study file states its answer twice: in prose (its header) and in a
machine-readable `claims:` block beside it, a list of checks. Each check says how to re-run
the file (`overrides` for a scenario, e.g. a second partition; `trials` and `workers` for a
study; `workers` for a sweep) and which figures it claims, each with a value and an absolute
tolerance::

    claims:
      - figures:
          - {figure: summary.clients.c06.allotted_vs_equal_pct, value: -100, tolerance: 0.01}
          - {figure: "clients[free_rider].final_price", agg: mean, value: 0.41, tolerance: 0.01}
      - overrides: {fl.partition.scheme: iid}
        figures:
          - {figure: metrics.price_contribution_spearman, value: 0.9, tolerance: 0.05}

Figures, by the kind of file:

- a scenario (one run, with its twin when the scenario asks for one):
  `summary.<dotted path>` into summary.json; `metrics.<key>` into
  `analysis.metrics.summarise_run`; `clients[<behaviour>].<field>` a summary.json client
  field over the clients of one behaviour, reduced by `agg`; `investors[<strategy>].<column>`
  a column of `analysis.metrics.investor_performance` for one strategy (e.g.
  `mean_return_if_sold_pct`);
- a sweep: `<table>.<column>` over one of the combined tables (`runs`, `clients`,
  `investors`, `holders`), or `report.<csv name>.<column>` over a table of its report
  (e.g. `report.sensitivity.ST`), rows chosen by `where` (column: value) and reduced by
  `agg`;
- a study: `trials.<column>` over trials.parquet, or `front.<column>` over the Pareto front,
  with `where` and `agg`.

A claim holds when |measured - value| <= tolerance. The block is file metadata: loaders drop
it before validating the scenario, sweep or study, so a claim never changes what runs (nor a
sweep's run ids). `wsf validate` checks it; `wsf check-claims FILE...` runs the files and
exits 0 when every claim holds, 1 otherwise (2 for a bad file), printing claimed and measured
values; `make claims` checks every shipped file.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from abm.cli import file_kind
from abm.errors import ScenarioError, format_validation_error
from abm.scenario import load_scenario, read_yaml
from analysis.metrics import RUN_OUTPUTS, investor_performance, run_outputs, summarise_run
from analysis.runs import run_from_result

CLAIMS_KEY = "claims"
AGGREGATES = ("mean", "median", "min", "max", "sum", "abs_median", "count")
SWEEP_TABLES = ("runs", "clients", "investors", "holders")
_CLIENTS = re.compile(r"^clients\[(?P<behaviour>[A-Za-z0-9_]+)\]\.(?P<field>[A-Za-z0-9_]+)$")
_INVESTORS = re.compile(r"^investors\[(?P<strategy>[A-Za-z0-9_]+)\]\.(?P<field>[A-Za-z0-9_]+)$")


class Claim(BaseModel):
    """One claimed figure: `value` within `tolerance` (absolute, in the figure's unit)."""

    model_config = ConfigDict(extra="forbid")

    figure: str = Field(min_length=3, description="what is measured (module docstring)")
    value: float = Field(allow_inf_nan=False)
    tolerance: float = Field(ge=0, allow_inf_nan=False)
    agg: Literal["mean", "median", "min", "max", "sum", "abs_median", "count"] = "mean"
    where: dict[str, Any] = Field(default_factory=dict)
    note: str = ""


class ClaimSet(BaseModel):
    """One way to run the file and the figures it claims."""

    model_config = ConfigDict(extra="forbid")

    overrides: dict[str, Any] = Field(default_factory=dict)
    trials: int | None = Field(None, ge=1, le=10_000)
    workers: int = Field(1, ge=1, le=64)
    figures: list[Claim] = Field(min_length=1)


class _Block(BaseModel):
    claims: list[ClaimSet] = Field(min_length=1)


@dataclass
class Checked:
    """A claim and what was measured."""

    source: str
    check: int  # index of its ClaimSet in the block
    claim: Claim
    measured: float

    @property
    def holds(self) -> bool:
        return (not math.isnan(self.measured)
                and abs(self.measured - self.claim.value) <= self.claim.tolerance)


def read_claims(path: str | Path) -> tuple[str, list[ClaimSet]]:
    """The kind of file and its claims; ScenarioError (one paragraph) if the block is
    missing or malformed."""
    data = read_yaml(path, kind="scenario, sweep or study")
    if CLAIMS_KEY not in data:
        raise ScenarioError(f"{path}: has no `{CLAIMS_KEY}:` block; a shipped file states its "
                            f"answer there (analysis/claims.py says how).")
    try:
        block = _Block.model_validate({"claims": data[CLAIMS_KEY]})
    except ValidationError as exc:
        raise ScenarioError(format_validation_error(
            exc, f"{path}: invalid `{CLAIMS_KEY}:` block", _Block)) from None
    kind = file_kind(data)
    for i, check in enumerate(block.claims):
        for claim in check.figures:
            _check_figure(path, kind, i, claim)
        if check.overrides and kind != "scenario":
            raise ScenarioError(f"{path}: claims.{i}.overrides: only a scenario's claims may "
                                f"override fields (a sweep or study states its own).")
    return kind, block.claims


def _check_figure(path: str | Path, kind: str, i: int, claim: Claim) -> None:
    figure = claim.figure
    head = figure.split(".", 1)[0]
    allowed = {"scenario": ("summary", "metrics"),
               "sweep": (*SWEEP_TABLES, "report"),
               "study": ("trials", "front")}[kind]
    if kind == "scenario" and (_CLIENTS.match(figure) or _INVESTORS.match(figure)):
        return
    if head not in allowed or "." not in figure:
        shapes = {"scenario": "summary.<path>, metrics.<key>, clients[<behaviour>].<field> "
                              "or investors[<strategy>].<column>",
                  "sweep": "runs|clients|investors|holders.<column> or "
                           "report.<table>.<column>",
                  "study": "trials.<column> or front.<column>"}[kind]
        raise ScenarioError(f"{path}: claims.{i}.figures: {figure!r} is not a figure of a "
                            f"{kind} file; allowed: {shapes}.")


def reduce(values: Any, agg: str) -> float:
    """`values` reduced by `agg` (NaN-aware; NaN when nothing is left)."""
    a = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)
    if agg == "count":
        return float(len(a))
    a = a[~np.isnan(a)]
    if not len(a):
        return math.nan
    if agg == "abs_median":
        return float(np.median(np.abs(a)))
    return float(getattr(np, agg)(a))


def _walk(tree: Any, path: str) -> float:
    node = tree
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return math.nan
        node = node[part]
    try:
        return math.nan if node is None else float(node)
    except (TypeError, ValueError):
        return math.nan


def _select(frame: pd.DataFrame, where: dict[str, Any]) -> pd.DataFrame:
    for column, value in where.items():
        if column not in frame.columns:
            return frame.iloc[0:0]
        frame = frame[frame[column].astype(str) == str(value)]
    return frame


def _from_table(frame: pd.DataFrame, claim: Claim, column: str) -> float:
    rows = _select(frame, claim.where)
    if column not in rows.columns:
        return math.nan
    return reduce(rows[column], claim.agg)


def measure_scenario(path: Path, check: ClaimSet) -> list[float]:
    """Run the scenario (with its twin when it asks for one) and read every claimed figure."""
    from abm.run import simulate  # torch and mesa: only when a claim is re-measured

    scenario = load_scenario(path)
    if check.overrides:
        scenario = scenario.with_overrides(check.overrides, source=f"{path} (claims)")
    result = simulate(scenario)
    run = run_from_result(result, path)
    metrics = summarise_run(run)
    investors = investor_performance(run)
    out = []
    for claim in check.figures:
        head, _, rest = claim.figure.partition(".")
        match = _CLIENTS.match(claim.figure)
        by_strategy = _INVESTORS.match(claim.figure)
        if by_strategy:
            rows = investors[investors["strategy"].astype(str) == by_strategy["strategy"]]
            out.append(reduce(rows[by_strategy["field"]], claim.agg)
                       if by_strategy["field"] in rows.columns else math.nan)
        elif match:
            values = [c.get(match["field"]) for c in result.summary["clients"].values()
                      if c.get("behaviour") == match["behaviour"]]
            out.append(reduce([math.nan if v is None else v for v in values], claim.agg))
        elif head == "summary":
            out.append(_walk(result.summary, rest))
        else:
            out.append(_walk(metrics, rest))
    return out


def measure_sweep(path: Path, check: ClaimSet, out: Path) -> list[float]:
    """Run the sweep into `out`, write its report, read every claimed figure."""
    # The sweep driver and the sweep report (matplotlib, seaborn) load only here, so that
    # `wsf validate` reading a claims block stays quick.
    from abm.sweep import run_sweep
    from analysis.sweep import write_sweep_report
    from analysis.sweep.loading import load_sweep_tables

    folder = run_sweep(path, workers=check.workers, out=out / "sweep")
    report = write_sweep_report(folder).parent
    tables = load_sweep_tables(folder)
    values = []
    for claim in check.figures:
        head, _, rest = claim.figure.partition(".")
        if head == "report":
            name, _, column = rest.partition(".")
            csv = report / f"{name}.csv"
            frame = pd.read_csv(csv) if csv.is_file() else pd.DataFrame()
            values.append(_from_table(frame, claim, column))
        else:
            values.append(_from_table(getattr(tables, head), claim, rest))
    return values


def measure_study(path: Path, check: ClaimSet, out: Path) -> list[float]:
    """Run the study's trials into `out` and read every claimed figure."""
    from abm.sweep.optimize import run_study  # the study driver: only here, as above

    folder = run_study(path, trials=check.trials or 1, workers=check.workers,
                       out=out / "study", outputs=run_outputs, output_names=RUN_OUTPUTS)
    trials = pd.read_parquet(folder / "trials.parquet")
    front = pd.read_csv(folder / "pareto.csv")
    values = []
    for claim in check.figures:
        head, _, column = claim.figure.partition(".")
        values.append(_from_table(trials if head == "trials" else front, claim, column))
    return values


def check_file(path: str | Path, *, progress: bool = True) -> list[Checked]:
    """Re-measure every claim of one file (in a temporary folder, removed after)."""
    path = Path(path)
    kind, checks = read_claims(path)
    results = []
    with tempfile.TemporaryDirectory(prefix="wsf-claims-") as tmp:
        for i, check in enumerate(checks):
            started = time.perf_counter()
            if kind == "scenario":
                measured = measure_scenario(path, check)
            elif kind == "sweep":
                measured = measure_sweep(path, check, Path(tmp) / str(i))
            else:
                measured = measure_study(path, check, Path(tmp) / str(i))
            if progress:
                print(f"  {path} check {i + 1}/{len(checks)}: "
                      f"{time.perf_counter() - started:.1f} s", flush=True)
            results += [Checked(str(path), i, c, m)
                        for c, m in zip(check.figures, measured, strict=True)]
    return results


def format_results(results: list[Checked]) -> str:
    """One line per claim: file, figure (and rows), claimed +- tolerance, measured, verdict."""
    lines = []
    for r in results:
        c = r.claim
        rows = f" where {c.where}" if c.where else ""
        agg = f" ({c.agg})" if c.agg != "mean" or c.where or "[" in c.figure else ""
        lines.append(f"{'holds' if r.holds else 'FAILS':5}  {r.source} #{r.check + 1}  "
                     f"{c.figure}{agg}{rows}: claimed {c.value:g} +- {c.tolerance:g}, "
                     f"measured {r.measured:.6g}")
    return "\n".join(lines)
