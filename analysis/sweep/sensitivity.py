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

Reproducible: SALib's bootstraps draw from `bootstrap_seed(design seed)`, a non-zero seed
derived from the sweep's design seed (SALib's Sobol estimator reads ``seed=0`` as "no seed"
and then draws from numpy's global state, so the intervals changed from one report to the
next). The indices and their intervals depend on the finished runs and the design only: the
same table whatever the number of workers, the scheduler or the machine.

Trustworthy: every Sobol row carries `flags` (`sobol_flags`): an index outside [0, 1] by
more than its interval, S1 > ST (impossible for the true indices: S1 <= ST), and an interval
wider than the index (half-width > |index| and >= `WIDE_MIN`); `checks_of` counts them with
what to do. `convergence` recomputes the indices on the first half of the design (N/2 base
samples, r/2 trajectories, half the LHS points) and states the change and the size the
design needs (`Convergence.recommended`) for half-widths of `TARGET_HALF_WIDTH`.
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

from abm.streams import stream_int
from analysis.figures import save_figure
from analysis.metrics import NOT_OUTPUTS, spearman
from analysis.statistics import fisher_z_interval
from analysis.sweep.loading import SweepTables

__all__ = ["RESAMPLES", "Convergence", "Sensitivity", "bootstrap_seed", "checks_of",
           "convergence", "make_sensitivity_figures", "sensitivity", "sobol_flags"]

#: Bootstrap resamples of SALib's confidence intervals.
RESAMPLES = 1000
#: Name of the random stream (`abm.streams`) the bootstrap seed is drawn from.
BOOTSTRAP_STREAM = "sensitivity.bootstrap"
#: An interval whose half-width exceeds |index| is flagged "wide" only from this half-width
#: on (share of variance): ST = 0.01 +/- 0.02 resolves "no effect"; 0.46 +/- 0.56 resolves
#: nothing.
WIDE_MIN = 0.05
#: The half-width (share of variance for Sobol ST; share of the largest mu* for Morris; rho
#: for LHS) a design should reach; `Convergence.recommended` sizes the design for it.
TARGET_HALF_WIDTH = 0.1
#: An output whose spread over the design is below this share of its magnitude is constant.
CONSTANT_RTOL = 1e-9
PANEL = (4.2, 3.0)  # inches per output panel
COLUMNS = 3

SOBOL_COLUMNS = ["output", "parameter", "S1", "S1_conf", "ST", "ST_conf", "flags"]
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
    seed: int = 1  # the bootstrap's seed (`bootstrap_seed` of the design's seed)

    @property
    def file_stem(self) -> str:
        return "rank_correlations" if self.kind == "lhs" else "sensitivity"


@dataclass
class Convergence:
    """The indices at half the design against the whole design (`convergence`).

    `table`: one row per output and parameter: the main index at half size and at full size
    (`ST` for Sobol, `mu_star` for Morris, `rho` for LHS), their change, and the full-size
    half-width. `summary`: one row per output: the largest change, the largest half-width,
    and the design size that output needs (`recommended`, in `size_name` units).
    """

    kind: str
    index: str  # the index compared: ST, mu_star or rho
    size: int  # N (base samples), r (trajectories) or points of the full design
    half: int  # the same of the half design
    size_name: str  # samples or trajectories
    table: pd.DataFrame
    summary: pd.DataFrame
    recommended: int | None  # the largest over the outputs; None when nothing was analysed
    note: str = ""  # why no check was possible (a design too small to halve)


def bootstrap_seed(design_seed: int | None) -> int:
    """The seed of SALib's bootstraps for a design drawn with `design_seed`: a 32-bit draw
    of the `BOOTSTRAP_STREAM` stream of that seed (`abm.streams`), never 0 (SALib's Sobol
    estimator takes 0 for "no seed" and then draws from numpy's global state)."""
    return stream_int(int(design_seed or 0), BOOTSTRAP_STREAM, bits=32) or 1


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


def _columns(kind: str, design: dict[str, Any]) -> list[str]:
    if kind == "sobol":
        return SOBOL_COLUMNS[:-1] + (["S2", "S2_conf"] if design.get("second_order")
                                     else []) + ["flags"]
    return {"morris": MORRIS_COLUMNS, "lhs": LHS_COLUMNS}[kind]


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
    result = Sensitivity(kind, pd.DataFrame(columns=_columns(kind, design)), parameters,
                         len(design["points"]), len(tables.seeds) or 1, tables.confidence,
                         missing_runs=missing, seed=bootstrap_seed(design.get("seed")))
    if missing:
        return result
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
        found = _indices(design, parameters, y, len(design["points"]), tables.confidence,
                         result.seed)
        for row in found:
            row["output"] = output
        rows += found
        if not _resolved(kind, found):
            result.unresolved.append(output)
    result.table = pd.DataFrame(rows, columns=_columns(kind, design))
    return result


def _indices(design: dict[str, Any], parameters: list[str], y: np.ndarray, points: int,
             confidence: float, seed: int) -> list[dict[str, Any]]:
    """The index rows of one output over the design's first `points` points (`y` holds at
    least that many point means, in design order)."""
    kind = design["kind"]
    problem = {"num_vars": len(parameters), "names": parameters,
               "bounds": [[0.0, 1.0]] * len(parameters)}
    y = y[:points]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SALib's notices on small samples
        if kind == "sobol":
            return _sobol(problem, y, design, confidence, seed)
        if kind == "morris":
            return _morris(problem, unit_rows(design)[:points], y, design, confidence, seed)
        return _ranks(design, parameters, y, confidence)


def _sobol(problem: dict[str, Any], y: np.ndarray, design: dict[str, Any],
           confidence: float, seed: int) -> list[dict[str, Any]]:
    from SALib.analyze import sobol

    second = bool(design.get("second_order"))
    found = sobol.analyze(problem, y, calc_second_order=second, num_resamples=RESAMPLES,
                          conf_level=confidence, seed=seed)
    rows = [{"parameter": name, "S1": float(found["S1"][i]),
             "S1_conf": float(found["S1_conf"][i]), "ST": float(found["ST"][i]),
             "ST_conf": float(found["ST_conf"][i])}
            for i, name in enumerate(problem["names"])]
    for row in rows:
        row["flags"] = sobol_flags(row)
    if second:
        for row in rows:
            row["S2"] = row["S2_conf"] = math.nan
        names = problem["names"]
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                rows.append({"parameter": f"{names[i]} × {names[j]}",
                             "S1": math.nan, "S1_conf": math.nan, "ST": math.nan,
                             "ST_conf": math.nan, "S2": float(found["S2"][i, j]),
                             "S2_conf": float(found["S2_conf"][i, j]), "flags": ""})
    return rows


def sobol_flags(row: dict[str, Any]) -> str:
    """The checks a Sobol row fails, `;`-separated ("" when none), for a reader to see before
    trusting it: `S1<0`, `S1>1`, `ST<0`, `ST>1` (the index lies outside [0, 1] by more than
    its half-width), `S1>ST` (point estimates; the true indices have S1 <= ST), `S1 wide`,
    `ST wide` (half-width > |index| and >= `WIDE_MIN`: the interval is wider than what it
    measures)."""
    flags = []
    for name in ("S1", "ST"):
        value, conf = row[name], row[f"{name}_conf"]
        if not (math.isfinite(value) and math.isfinite(conf)):
            continue
        if value + conf < 0:
            flags.append(f"{name}<0")
        if value - conf > 1:
            flags.append(f"{name}>1")
    if math.isfinite(row["S1"]) and math.isfinite(row["ST"]) and row["S1"] > row["ST"]:
        flags.append("S1>ST")
    for name in ("S1", "ST"):
        value, conf = row[name], row[f"{name}_conf"]
        if math.isfinite(conf) and conf >= WIDE_MIN and conf > abs(value):
            flags.append(f"{name} wide")
    return ";".join(flags)


def _morris(problem: dict[str, Any], x: np.ndarray, y: np.ndarray, design: dict[str, Any],
            confidence: float, seed: int) -> list[dict[str, Any]]:
    from SALib.analyze import morris

    found = morris.analyze(problem, x, y, num_resamples=RESAMPLES, conf_level=confidence,
                           num_levels=int(design["levels"]), seed=seed)
    return [{"parameter": name, "mu_star": float(found["mu_star"][i]),
             "mu_star_conf": float(found["mu_star_conf"][i]),
             "sigma": float(found["sigma"][i])}
            for i, name in enumerate(problem["names"])]


def _ranks(design: dict[str, Any], parameters: list[str], y: np.ndarray,
           confidence: float) -> list[dict[str, Any]]:
    x = np.asarray([point["sample"] for point in design["points"]], dtype=float)[:len(y)]
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


def convergence(tables: SweepTables, result: Sensitivity) -> Convergence:
    """The indices of `result`'s outputs recomputed on the first half of the design, against
    the whole design, and the size the design needs.

    Half the design is a design of its own: the first N/2 base samples of a Sobol design
    (each base sample is a block of D + 2 rows, or 2D + 2 with second order, and a scrambled
    Sobol sequence's first N/2 points are balanced), the first r/2 Morris trajectories, the
    first half of the LHS points. Bootstrap half-widths shrink as 1 / sqrt(size), so the
    size an output needs for half-widths of `TARGET_HALF_WIDTH` is
    size × (largest half-width / target)², at least twice the size where halving moved an
    index by more than the target (rounded up to a power of 2 for Sobol). Morris half-widths
    are taken relative to the output's largest mu*; LHS half-widths are those of rho's
    Fisher-z interval.
    """
    design = tables.design or {}
    kind = result.kind
    index = {"sobol": "ST", "morris": "mu_star", "lhs": "rho"}[kind]
    size, size_name, block = {
        "sobol": (int(design.get("samples") or 0), "samples",
                  2 * len(result.parameters) + 2 if design.get("second_order")
                  else len(result.parameters) + 2),
        "morris": (int(design.get("trajectories") or 0), "trajectories",
                   len(result.parameters) + 1),
        "lhs": (int(design.get("samples") or 0), "samples", 1),
    }[kind]
    half = size // 2
    columns = ["output", "parameter", f"{index}_half", index, "change", f"{index}_conf"]
    empty = Convergence(kind, index, size, half, size_name, pd.DataFrame(columns=columns),
                        pd.DataFrame(columns=["output", "max_change", "max_conf",
                                              "recommended"]), None)
    minimum = {"sobol": 4, "morris": 4, "lhs": 8}[kind]
    if result.table.empty or size < minimum:
        empty.note = (f"a design of {size} {size_name} is too small to halve (at least "
                      f"{minimum})" if size < minimum else "nothing was analysed")
        return empty
    outputs = list(dict.fromkeys(result.table["output"]))
    means, _ = point_means(tables, outputs)
    parameters = result.parameters
    rows, summary = [], []
    for output in outputs:
        full = result.table[(result.table["output"] == output)
                            & result.table["parameter"].isin(parameters)]
        full = full.set_index("parameter").loc[parameters]
        y = means[output].to_numpy(dtype=float)
        halved = pd.DataFrame(_indices(design, parameters, y, half * block,
                                       result.confidence, result.seed)).set_index("parameter")
        if kind == "lhs":
            conf = (full["rho_ci_high"] - full["rho_ci_low"]) / 2
        else:
            conf = full[f"{index}_conf"]
        scale = float(full["mu_star"].abs().max()) if kind == "morris" else 1.0
        change = (full[index] - halved[index]).abs() / (scale or 1.0)
        for name in parameters:
            rows.append({"output": output, "parameter": name,
                         f"{index}_half": float(halved.loc[name, index]),
                         index: float(full.loc[name, index]), "change": float(change[name]),
                         f"{index}_conf": float(conf[name])})
        max_change = float(change.max())
        max_conf = float(conf.max()) / (scale or 1.0)
        summary.append({"output": output, "max_change": max_change, "max_conf": max_conf,
                        "recommended": _recommended(kind, size, max_change, max_conf)})
    frame = pd.DataFrame(summary, columns=list(empty.summary.columns))
    recommended = int(frame["recommended"].max()) if len(frame) else None
    return Convergence(kind, index, size, half, size_name, pd.DataFrame(rows, columns=columns),
                       frame, recommended)


def _recommended(kind: str, size: int, change: float, conf: float) -> int:
    """The design size for half-widths of `TARGET_HALF_WIDTH` (see `convergence`)."""
    wanted = size * (conf / TARGET_HALF_WIDTH) ** 2 if math.isfinite(conf) else 2 * size
    if math.isfinite(change) and change > TARGET_HALF_WIDTH:
        wanted = max(wanted, 2 * size)
    wanted = max(float(size), wanted)
    if kind == "sobol":
        return int(2 ** math.ceil(math.log2(wanted)))
    return math.ceil(wanted)


#: What a reader should do about each flag of a Sobol row.
FLAG_ADVICE = {
    "outside": "an index outside [0, 1] by more than its interval: the estimators are "
               "unbiased but not bounded, and at this size their noise exceeds the index; "
               "raise `samples`",
    "S1>ST": "S1 > ST, impossible for the true indices (S1 <= ST): the difference is "
             "estimation noise; read neither index alone, raise `samples`",
    "wide": "an interval wider than its index (half-width > |index|): the index is not "
            "resolved, not 'small'; raise `samples` (the convergence check below gives the "
            "size) or `seeds`",
}


def checks_of(result: Sensitivity) -> pd.DataFrame:
    """Per output of a Sobol table, how many parameters fail each check of `sobol_flags`
    (columns `output`, `outside`, `S1>ST`, `wide`); empty for other designs."""
    columns = ["output", "outside", "S1>ST", "wide"]
    if result.kind != "sobol" or result.table.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for output, group in result.table.groupby("output", sort=False):
        flags = [f.split(";") for f in group["flags"] if f]
        rows.append({"output": output,
                     "outside": sum(any(x[-2:] in ("<0", ">1") for x in f) for f in flags),
                     "S1>ST": sum("S1>ST" in f for f in flags),
                     "wide": sum(any(x.endswith("wide") for x in f) for f in flags)})
    return pd.DataFrame(rows, columns=columns)


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
    checks = checks_of(result)
    if len(checks):
        totals = {name: int(checks[name].sum()) for name in ("outside", "S1>ST", "wide")}
        if any(totals.values()):
            lines.append(
                f"of {len(result.table)} Sobol rows, {totals['outside']} have an index outside "
                f"[0, 1] beyond its interval, {totals['S1>ST']} have S1 > ST and "
                f"{totals['wide']} an interval wider than the index (column `flags`; what to "
                "do: the report's 'Checks' section).")
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
