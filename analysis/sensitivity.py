"""Global sensitivity analysis of a design sweep: which parameters drive which outputs.

`sensitivity(tables)` takes the combined tables of a sweep run with a SALib design
(`abm.sweep.design`) and, for every scalar output of a run (every numeric column of the
runs table: `analysis.metrics.summarise_run`), averages the seeds of each design point first
(the indices are then about the mechanism, not about seed noise), and estimates with SALib:

- Sobol designs: first-order and total indices `S1`, `ST` (and `S2` with
  `second_order: true`), each with its bootstrap confidence half-width (`*_conf`, SALib's
  resampling of the design's rows, `RESAMPLES` resamples, at the sweep's report level);
- Morris designs: `mu_star` (mean absolute elementary effect: the change of the output over
  a step of Δ = p / (2 (p − 1)) of the parameter's range, divided by Δ, i.e. in output units
  per whole range of the parameter, so parameters of different units compare), its
  bootstrap half-width `mu_star_conf`, and `sigma` (the elementary effects' standard
  deviation, same units: interactions or non-linearity);
- Latin hypercubes (no variance decomposition): Spearman's rho of each parameter's value with
  the output across points, with its Fisher-z interval.

Outputs that are constant over the design (no variance to decompose, up to float rounding:
`CONSTANT_RTOL`) or undefined at some
point (NaN, e.g. attributable measures of a sweep without twins) are listed, not analysed.
An output for which no parameter's interval excludes zero gets a warning: the sample is too
small to tell the parameters' effects from estimation noise (more samples, or trajectories).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.figures import save_figure
from analysis.metrics import NOT_OUTPUTS, spearman
from analysis.sweep.loading import SweepTables
from analysis.sweep.statistics import fisher_z_interval

__all__ = ["RESAMPLES", "Sensitivity", "make_sensitivity_figures", "sensitivity"]

#: Bootstrap resamples of SALib's confidence intervals.
RESAMPLES = 1000
#: Seed of SALib's bootstrap (the same report every time).
SEED = 0
#: An output whose spread over the design is below this share of its magnitude is constant.
CONSTANT_RTOL = 1e-9
PANEL = (4.2, 3.0)  # inches per output panel
COLUMNS = 3

SOBOL_COLUMNS = ["output", "parameter", "S1", "S1_conf", "ST", "ST_conf"]
MORRIS_COLUMNS = ["output", "parameter", "mu_star", "mu_star_conf", "sigma"]
LHS_COLUMNS = ["output", "parameter", "rho", "rho_ci_low", "rho_ci_high", "n_points"]


@dataclass
class Sensitivity:
    """The indices of one design sweep, and what could not be analysed."""

    kind: str  # sobol, morris or lhs
    table: pd.DataFrame  # SOBOL_COLUMNS (+ S2, S2_conf), MORRIS_COLUMNS or LHS_COLUMNS
    parameters: list[str]
    points: int  # design rows
    seeds: int  # seeds averaged per point
    confidence: float
    constant: list[str] = field(default_factory=list)  # outputs with no variance
    undefined: dict[str, int] = field(default_factory=dict)  # output -> points with NaN
    unresolved: list[str] = field(default_factory=list)  # no interval excludes zero
    missing_runs: int = 0  # runs of the design not finished (nothing analysed then)

    @property
    def file_stem(self) -> str:
        return "rank_correlations" if self.kind == "lhs" else "sensitivity"


def outputs_of(runs: pd.DataFrame, labels: list[str]) -> list[str]:
    """The scalar outputs in a runs table: numeric columns that are not labels or sizes."""
    skip = set(labels) | NOT_OUTPUTS
    return [c for c in runs.columns
            if c not in skip and pd.api.types.is_numeric_dtype(runs[c])
            and not pd.api.types.is_bool_dtype(runs[c])]


def point_means(tables: SweepTables, outputs: list[str]) -> tuple[pd.DataFrame, int]:
    """Per design point (rows in design order), each output's mean over the point's seeds;
    and the number of the design's runs not finished (then the frame is empty)."""
    assert tables.design is not None
    by_run = tables.runs.set_index("run_id")[outputs]
    points = tables.design["points"]
    wanted = {rid for point in points for rid in point["runs"]}
    missing = len(wanted - set(by_run.index))
    if missing:
        return pd.DataFrame(columns=outputs), missing
    rows = [by_run.loc[point["runs"]].mean(axis=0, skipna=False) for point in points]
    return pd.DataFrame(rows).reset_index(drop=True), 0


def unit_rows(design: dict[str, Any]) -> np.ndarray:
    """The design's rows on the unit hypercube, shape (points, D), as SALib drew them."""
    return np.asarray([point["unit"] for point in design["points"]], dtype=float)


def sensitivity(tables: SweepTables) -> Sensitivity:
    """The sensitivity indices of a design sweep's finished runs (see the module docstring).

    Raises ValueError for a sweep without a design.
    """
    design = tables.design
    if design is None:
        raise ValueError(f"{tables.path}: not a design sweep")
    kind = design["kind"]
    parameters = list(design["parameters"])
    outputs = outputs_of(tables.runs, tables.labels)
    means, missing = point_means(tables, outputs)
    columns = {"sobol": SOBOL_COLUMNS + (["S2", "S2_conf"] if design.get("second_order")
                                         else []),
               "morris": MORRIS_COLUMNS, "lhs": LHS_COLUMNS}[kind]
    result = Sensitivity(kind, pd.DataFrame(columns=columns), parameters,
                         len(design["points"]), len(tables.seeds) or 1, tables.confidence,
                         missing_runs=missing)
    if missing:
        return result
    problem = {"num_vars": len(parameters), "names": parameters,
               "bounds": [[0.0, 1.0]] * len(parameters)}
    rows: list[dict[str, Any]] = []
    for output in outputs:
        y = means[output].to_numpy(dtype=float)
        if not np.isfinite(y).all():
            result.undefined[output] = int((~np.isfinite(y)).sum())
            continue
        if np.ptp(y) <= CONSTANT_RTOL * max(float(np.abs(y).max()), 1e-300):
            # Constant up to float rounding (a Gini of allotments that only scale with the
            # budget differs in the 16th digit): decomposing rounding noise would report
            # the parameter it scales with as "influential".
            result.constant.append(output)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SALib's notices on small samples
            if kind == "sobol":
                found = _sobol(problem, y, design, tables.confidence)
            elif kind == "morris":
                found = _morris(problem, unit_rows(design), y, design, tables.confidence)
            else:
                found = _ranks(design, parameters, y, tables.confidence)
        for row in found:
            row["output"] = output
        rows += found
        if not _resolved(kind, found):
            result.unresolved.append(output)
    result.table = pd.DataFrame(rows, columns=columns)
    return result


def _sobol(problem: dict[str, Any], y: np.ndarray, design: dict[str, Any],
           confidence: float) -> list[dict[str, Any]]:
    from SALib.analyze import sobol

    second = bool(design.get("second_order"))
    found = sobol.analyze(problem, y, calc_second_order=second, num_resamples=RESAMPLES,
                          conf_level=confidence, seed=SEED)
    rows = [{"parameter": name, "S1": float(found["S1"][i]),
             "S1_conf": float(found["S1_conf"][i]), "ST": float(found["ST"][i]),
             "ST_conf": float(found["ST_conf"][i])}
            for i, name in enumerate(problem["names"])]
    if second:
        for row in rows:
            row["S2"] = row["S2_conf"] = math.nan
        names = problem["names"]
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                rows.append({"parameter": f"{names[i]} × {names[j]}",
                             "S1": math.nan, "S1_conf": math.nan, "ST": math.nan,
                             "ST_conf": math.nan, "S2": float(found["S2"][i, j]),
                             "S2_conf": float(found["S2_conf"][i, j])})
    return rows


def _morris(problem: dict[str, Any], x: np.ndarray, y: np.ndarray, design: dict[str, Any],
            confidence: float) -> list[dict[str, Any]]:
    from SALib.analyze import morris

    found = morris.analyze(problem, x, y, num_resamples=RESAMPLES, conf_level=confidence,
                           num_levels=int(design["levels"]), seed=SEED)
    return [{"parameter": name, "mu_star": float(found["mu_star"][i]),
             "mu_star_conf": float(found["mu_star_conf"][i]),
             "sigma": float(found["sigma"][i])}
            for i, name in enumerate(problem["names"])]


def _ranks(design: dict[str, Any], parameters: list[str], y: np.ndarray,
           confidence: float) -> list[dict[str, Any]]:
    x = np.asarray([point["sample"] for point in design["points"]], dtype=float)
    rows = []
    for i, name in enumerate(parameters):
        rho = spearman(x[:, i], y)
        low, high = fisher_z_interval(rho, len(y), confidence)
        rows.append({"parameter": name, "rho": rho, "rho_ci_low": low, "rho_ci_high": high,
                     "n_points": len(y)})
    return rows


def _resolved(kind: str, rows: list[dict[str, Any]]) -> bool:
    """Does some parameter's interval exclude zero (the sample resolves an effect)?"""
    for row in rows:
        if kind == "sobol" and math.isfinite(row["ST"]) and row["ST"] - row["ST_conf"] > 0:
            return True
        if kind == "morris" and row["mu_star"] - row["mu_star_conf"] > 0:
            return True
        if kind == "lhs" and math.isfinite(row["rho_ci_low"]) and (
                row["rho_ci_low"] > 0 or row["rho_ci_high"] < 0):
            return True
    return False


def warnings_of(result: Sensitivity) -> list[str]:
    """One line per problem a reader must know before trusting the indices."""
    lines = []
    if result.missing_runs:
        lines.append(f"{result.missing_runs} runs of the design have not finished; the "
                     "indices need every point (run `wsf sweep` again to complete it).")
    if result.unresolved:
        what = {"sobol": "total index ST", "morris": "mu*", "lhs": "rank correlation"}
        lines.append(
            f"the sample is too small for the intervals to exclude zero: for "
            f"{len(result.unresolved)} output(s) ({', '.join(result.unresolved)}) no "
            f"parameter's {what[result.kind]} interval excludes 0 at the "
            f"{result.confidence:.0%} level; raise the design's "
            f"{'trajectories' if result.kind == 'morris' else 'samples'} (or seeds) before "
            "reading these as 'no effect'.")
    if result.seeds < 5:
        lines.append(f"each point averages {result.seeds} seed(s) (fewer than 5): seed noise "
                     "left in the point means counts as parameter effect or estimation noise.")
    return lines


# -- figures ----------------------------------------------------------------------------------


def make_sensitivity_figures(result: Sensitivity, out_dir: str | Path,
                             formats: list[str] | tuple[str, ...] = ("png", "pdf")
                             ) -> list[Path]:
    """Draw the indices per output: Sobol S1 and ST bars with their intervals, Morris
    mu*-sigma scatter with mu* intervals, or LHS rank correlations with their intervals.
    Returns the written files (none when nothing was analysed)."""
    table = result.table
    if table.empty:
        return []
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    outputs = list(dict.fromkeys(table["output"]))
    ncols = min(COLUMNS, len(outputs))
    nrows = math.ceil(len(outputs) / ncols)
    figure = Figure(figsize=(PANEL[0] * ncols + 0.8, PANEL[1] * nrows + 0.8),
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    level = f"{result.confidence:.0%} bootstrap intervals"
    for ax, output in zip(axes.flat, outputs, strict=False):
        rows = table[table["output"] == output]
        if result.kind == "sobol":
            _sobol_panel(ax, rows[rows["S1"].notna()], output)
        elif result.kind == "morris":
            _morris_panel(ax, rows, output)
        else:
            _rank_panel(ax, rows, output)
    for ax in axes.flat[len(outputs):]:
        ax.set_visible(False)
    name = {"sobol": "sobol_indices", "morris": "morris_mu_star_sigma",
            "lhs": "rank_correlations"}[result.kind]
    title = {
        "sobol": f"Sobol indices per output: S1 (first order) and ST (total), {level}",
        "morris": f"Morris screening per output: mu* vs sigma, {level} on mu*",
        "lhs": f"Spearman rho of each parameter with each output across the design "
               f"({result.confidence:.0%} Fisher-z intervals)",
    }[result.kind]
    figure.suptitle(f"{title}; {result.points} points × {result.seeds} seed(s), seeds "
                    "averaged first")
    return save_figure(figure, out, name, formats)


def _short(path: str) -> str:
    return path if len(path) <= 28 else "…" + path[-27:]


def _sobol_panel(ax: Any, rows: pd.DataFrame, output: str) -> None:
    y = np.arange(len(rows))
    ax.barh(y - 0.2, rows["S1"], height=0.4, xerr=rows["S1_conf"], label="S1", color="#0173b2",
            capsize=2)
    ax.barh(y + 0.2, rows["ST"], height=0.4, xerr=rows["ST_conf"], label="ST", color="#de8f05",
            capsize=2)
    ax.set_yticks(y, [_short(p) for p in rows["parameter"]], fontsize=7)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("index (share of the output's variance)")
    ax.set_title(output, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")


def _morris_panel(ax: Any, rows: pd.DataFrame, output: str) -> None:
    ax.errorbar(rows["mu_star"], rows["sigma"], xerr=rows["mu_star_conf"], fmt="o",
                color="#0173b2", capsize=2, markersize=4)
    for _, row in rows.iterrows():
        ax.annotate(_short(row["parameter"]), (row["mu_star"], row["sigma"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    top = float(max(rows["mu_star"].max(), rows["sigma"].max(), 0.0)) * 1.1 or 1.0
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=0.8,
            label="sigma = mu*")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("mu* (output units per whole range)")
    ax.set_ylabel("sigma (same units)")
    ax.set_title(output, fontsize=9)
    ax.legend(fontsize=7)


def _rank_panel(ax: Any, rows: pd.DataFrame, output: str) -> None:
    y = np.arange(len(rows))
    err = np.vstack([rows["rho"] - rows["rho_ci_low"], rows["rho_ci_high"] - rows["rho"]])
    ax.barh(y, rows["rho"], xerr=err, color="#0173b2", capsize=2)
    ax.set_yticks(y, [_short(p) for p in rows["parameter"]], fontsize=7)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel("Spearman rho with the output")
    ax.set_title(output, fontsize=9)
