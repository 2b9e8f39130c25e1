"""`report.md` of a sweep folder, with its tables (CSV, LaTeX and Markdown) and figures.

Grid sweeps get the per-point tables and figures, and, where the grid varies the policy or
the contribution method, paired comparisons on common seeds (`paired_comparisons`). Design
sweeps (Sobol, Morris, LHS) get the sensitivity indices (`analysis.sweep.sensitivity`:
`sensitivity.csv` or `rank_correlations.csv`, their figures) and the per-point tables as CSV
and LaTeX only (one row per design point is a table to analyse, not to read). Every table is
written as CSV and LaTeX by pandas' own writers; every figure as the sweep file's
`report.formats` (PNG and PDF by default). Warnings a reader must know before trusting the
numbers (fewer than `MIN_SEEDS` seeds, a design too small for its intervals to exclude zero,
unfinished runs) go to stderr and to the top of `report.md`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd

from analysis.markdown import markdown_table
from analysis.sweep.figures import make_sweep_figures
from analysis.sweep.loading import SweepTables, load_sweep_tables
from analysis.sweep.sensitivity import (
    FLAG_ADVICE,
    TARGET_HALF_WIDTH,
    WIDE_MIN,
    checks_of,
    convergence,
    make_sensitivity_figures,
    sensitivity,
    warnings_of,
)
from analysis.sweep.statistics import MIN_SEEDS, paired_comparisons
from analysis.sweep.tables import METHOD_PATH, POLICY_PATH, SummaryTable, markdown, summary_tables

__all__ = ["COMPARED_METRICS", "REPORT_DIR", "REPORT_FILE", "write_sweep_report"]

REPORT_DIR = "report"
REPORT_FILE = "report.md"
#: The run outputs compared between policies and methods on common seeds.
COMPARED_METRICS = (
    "reached_clients_pct",
    "execution_cost_usd",
    "reward_gini",
    "reward_contribution_rho",
    "attributable_nmad",
    "attributable_contribution_rho",
    "price_contribution_spearman",
    "mcap_contribution_rho",
    "investor_pnl_if_sold_usd",
    "final_accuracy",
)


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Write the tables, figures and `report.md` of a sweep folder into `<sweep>/report/`;
    return the path of `report.md`.

    Re-running replaces the report with one over the runs finished by then. Raises SweepError
    for a folder that is not a sweep folder or has no finished run.
    """
    tables = load_sweep_tables(sweep_dir)
    out = tables.path / REPORT_DIR
    out.mkdir(exist_ok=True)
    design = tables.design is not None
    summaries = summary_tables(tables)
    for table in summaries:
        write_table(table.frame, out / table.name)
        if not design:
            (out / f"{table.name}.md").write_text(
                markdown(table, tables.confidence) + "\n", encoding="utf-8"
            )
    figures = (make_sweep_figures(tables, out / "figures", tables.formats)
               if tables.figures and not design else [])
    warnings = _seed_warnings(tables)
    sections: list[str] = []
    if design:
        result = sensitivity(tables)
        write_table(result.table, out / result.file_stem)
        converged = convergence(tables, result)
        write_table(converged.table, out / "convergence")
        write_table(converged.summary, out / "convergence_summary")
        pictures = (make_sensitivity_figures(result, out / "figures", tables.formats)
                    if tables.figures else [])
        warnings += [w for w in warnings_of(result) if "seed(s)" not in w]
        if converged.recommended is not None and converged.recommended > converged.size:
            warnings.append(
                f"the design is too small for {TARGET_TEXT}: the convergence check recommends "
                f"{converged.size_name} = {converged.recommended} (it has {converged.size}); "
                "read these indices as exploratory.")
        sections += _sensitivity_sections(tables, result, pictures, out)
        sections += _convergence_sections(result, converged)
    else:
        comparisons = _comparisons(tables)
        if comparisons is not None:
            write_table(comparisons[1], out / "paired_comparisons")
            sections += comparisons[2]
    if tables.skipped:
        warnings.append(_skipped_warning(tables.skipped))
        sections += _skipped_section(tables.skipped)
    for line in warnings:
        print(f"wsf report: warning: {line}", file=sys.stderr)
    text = _render(tables, summaries, figures, out, sections, warnings)
    target = out / REPORT_FILE
    partial = target.with_name(f".{REPORT_FILE}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)
    return target


def _skipped_warning(skipped: dict[str, str]) -> str:
    first, why = next(iter(skipped.items()))
    return (f"{len(skipped)} run folder(s) left out of this report, because they cannot be read "
            f"or are no longer points of the sweep (first: {first}: {why}); all are listed "
            "under \"Runs left out\" in report.md. Remove a damaged run's folder and run "
            "`wsf sweep` again to redo it.")


def _skipped_section(skipped: dict[str, str]) -> list[str]:
    lines = "\n".join(f"- `{run}`: {why.replace('|', '/')}" for run, why in skipped.items())
    return ["## Runs left out", "These run folders are not in the tables and figures below:",
            lines]


def write_table(frame: pd.DataFrame, stem: Path) -> list[Path]:
    """`<stem>.csv` and `<stem>.tex` (pandas' `to_csv` and `to_latex`), floats in LaTeX to 4
    significant digits. Returns both paths."""
    csv, tex = stem.with_suffix(".csv"), stem.with_suffix(".tex")
    frame.to_csv(csv, index=False)
    frame.to_latex(tex, index=False, float_format="%.4g", na_rep="--",
                   caption=stem.name.replace("_", " "), label=f"tab:{stem.name}")
    return [csv, tex]


def _seed_warnings(tables: SweepTables) -> list[str]:
    by = tables.params
    seeds = tables.runs.groupby(by, sort=False).size() if by else pd.Series([len(tables.runs)])
    fewest = int(seeds.min()) if len(seeds) else 0
    if tables.design is not None:
        fewest = len(tables.seeds) or fewest
    if fewest < MIN_SEEDS:
        return [f"{'each design point averages' if tables.design is not None else 'a point has'}"
                f" {fewest} seed(s), fewer than {MIN_SEEDS}: intervals over so few seeds are "
                "wide and, for skewed measures, unreliable; add seeds for a paper."]
    return []


def _comparisons(tables: SweepTables) -> tuple[str, pd.DataFrame, list[str]] | None:
    """Paired comparisons of the policy (else the method) on common seeds, if the grid
    varies one with at least two seeds."""
    factors = [(p, c) for p, c in ((POLICY_PATH, "policy"), (METHOD_PATH, "method"))
               if p in tables.params]
    if not factors or tables.runs["seed"].nunique() < 2:
        return None
    frames, sections = [], []
    for path, column in factors:
        within = [p for p in tables.params if p != path]
        metrics = [m for m in COMPARED_METRICS if m in tables.runs.columns
                   and tables.runs[m].notna().any()]
        table = paired_comparisons(tables.runs, column, metrics, within, tables.confidence)
        frames.append(table.assign(factor=column))
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[["factor", *[c for c in frame.columns if c != "factor"]]]
    level = f"{tables.confidence:.0%}"
    shown = frame.copy()
    shown["mean a − b"] = [
        f"{m:,.4g} [{lo:,.4g}, {hi:,.4g}]" if pd.notna(lo) else f"{m:,.4g}"
        for m, lo, hi in zip(frame["mean_diff"], frame["diff_ci_low"], frame["diff_ci_high"],
                             strict=True)]
    keep = [c for c in shown.columns if c not in ("mean_diff", "diff_ci_low", "diff_ci_high",
                                                   "p_t", "p_wilcoxon")]
    sections += [
        "## Paired comparisons on common seeds",
        "Runs of two policies (or methods) with the same seed share every random stream the "
        "mechanism does not drive, so each seed gives one paired difference a − b. Mean "
        f"difference with its {level} Student-t interval; p-values of the paired t test and "
        "of the Wilcoxon signed-rank test, Holm-corrected across all comparisons of the same "
        f"metric (`significant`: the corrected t test rejects at {1 - tables.confidence:.0%}"
        "). With fewer than 6 pairs no Wilcoxon p-value can fall below 0.05.",
        markdown_table(shown[keep], {"p_t_holm": ".3g", "p_wilcoxon_holm": ".3g"}),
        "CSV: [paired_comparisons.csv](paired_comparisons.csv), LaTeX: "
        "[paired_comparisons.tex](paired_comparisons.tex)",
    ]
    return "paired_comparisons", frame, sections


def _sensitivity_sections(tables: SweepTables, result, pictures: list[Path],
                          out: Path) -> list[str]:
    design = tables.design or {}
    size = (f"{design.get('samples')} base samples" if result.kind == "sobol"
            else f"{design.get('trajectories')} trajectories on {design.get('levels')} levels"
            if result.kind == "morris" else f"{design.get('samples')} points")
    what = {
        "sobol": "Sobol indices: S1 is the share of the output's variance a parameter explains "
                 "alone, ST its share with all its interactions (ST ≈ 0: the output does not "
                 "depend on it); `*_conf` is the half-width of the "
                 f"{result.confidence:.0%} bootstrap interval (SALib).",
        "morris": "Morris elementary effects: mu* is the mean absolute change of the output "
                  "per whole range of the parameter (a Morris step's change divided by the "
                  "step's share of the range; output units; large = influential), "
                  "sigma their spread (large relative to mu*: interactions or non-linearity); "
                  f"`mu_star_conf` is the half-width of the {result.confidence:.0%} bootstrap "
                  "interval of mu* (SALib).",
        "lhs": "Spearman rank correlation of each parameter's value with the output across the "
               f"design's points, with its {result.confidence:.0%} Fisher-z interval (n = "
               "points). A Latin hypercube has no variance decomposition.",
    }[result.kind]
    lines = [
        f"## Sensitivity ({result.kind})",
        f"{result.kind} design of {size} over {len(result.parameters)} parameters "
        f"({', '.join(f'`{p}`' for p in result.parameters)}): {result.points} points × "
        f"{result.seeds} seed(s); each point's outputs are averaged over its seeds first. "
        + what + (f" The bootstrap draws from seed {result.seed}, derived from the design's "
                  "seed: the same intervals on every machine and with any number of workers."
                  if result.kind != "lhs" else ""),
    ]
    if result.constant:
        lines.append("Constant over the design (nothing to attribute): "
                     + ", ".join(f"`{o}`" for o in result.constant) + ".")
    if result.undefined:
        lines.append("Undefined at some points, not analysed: "
                     + ", ".join(f"`{o}` ({n} points)" for o, n in result.undefined.items())
                     + ".")
    if not result.table.empty:
        lines.append(markdown_table(result.table, default_format=".3f"))
    stem = result.file_stem
    lines.append(f"CSV: [{stem}.csv]({stem}.csv), LaTeX: [{stem}.tex]({stem}.tex)")
    for png in (p for p in pictures if p.suffix == ".png"):
        rel = Path(os.path.relpath(png, out)).as_posix()
        others = " ".join(f"[{p.name}]({Path(os.path.relpath(p, out)).as_posix()})"
                          for p in pictures if p.stem == png.stem and p.suffix != ".png")
        lines.append(f"![{png.stem}]({rel})" + (f"\n\n{others}" if others else ""))
    lines.append("Per design point (means over seeds and intervals, as for a grid): "
                 "[runs_by_point.csv](runs_by_point.csv) and the other tables beside it.")
    return lines


TARGET_TEXT = "its intervals (target half-width 0.1)"


def _convergence_sections(result, converged) -> list[str]:
    """The report's 'Checks' (Sobol flags, with what to do) and 'Convergence' sections."""
    lines: list[str] = []
    checks = checks_of(result)
    if len(checks):
        lines += [
            "## Checks",
            "Per output, the parameters whose Sobol row fails a check (column `flags` of "
            f"sensitivity.csv). *outside*: {FLAG_ADVICE['outside']}. *S1>ST*: "
            f"{FLAG_ADVICE['S1>ST']}. *wide* (half-width > |index| and >= {WIDE_MIN}): "
            f"{FLAG_ADVICE['wide']}.",
            markdown_table(checks),
        ]
    index = {"ST": "ST", "mu_star": "mu*", "rho": "rho"}[converged.index]
    lines.append("## Convergence")
    if converged.recommended is None:
        lines.append(f"No convergence check: {converged.note}.")
        return lines
    relative = " (relative to the output's largest mu*)" if converged.kind == "morris" else ""
    lines += [
        f"Each output's {index} recomputed on the first half of the design ("
        f"{converged.half} {converged.size_name} against {converged.size}; the same bootstrap "
        f"seed, {result.seed}): *max change* is the largest |{index}(full) − {index}(half)| "
        f"over the parameters{relative}, *max conf* the largest half-width at full size; "
        f"*recommended* the {converged.size_name} that output needs for half-widths of "
        f"{TARGET_HALF_WIDTH} (half-widths shrink as 1/sqrt(size); at least twice the size "
        f"where halving moved an index by more than {TARGET_HALF_WIDTH}). The design needs "
        f"**{converged.size_name} = {converged.recommended}** (it has {converged.size}).",
        markdown_table(converged.summary, {"max_change": ".3f", "max_conf": ".3f"}),
        "Per parameter: [convergence.csv](convergence.csv); summary: "
        "[convergence_summary.csv](convergence_summary.csv).",
    ]
    return lines


def _render(tables: SweepTables, summaries: list[SummaryTable], figures: list[Path],
            out: Path, extra: list[str], warnings: list[str]) -> str:
    level = f"{tables.confidence:.0%}"
    grid = ", ".join(f"`{p}`" for p in tables.params) or "none (seeds only)"
    seeds = tables.runs.groupby(tables.params, sort=False).size() if tables.params else None
    n_seeds = int(seeds.max()) if seeds is not None else len(tables.runs)
    design = tables.design is not None
    sections = [
        f"# Sweep report: {tables.name}",
        f"Sweep folder `{tables.path}`: {len(tables.runs)} of {tables.n_planned} runs finished; "
        f"{'design' if design else 'grid'} parameters {grid}; up to {n_seeds} seeds per "
        f"{'run configuration' if design else 'grid point'}. Every cell is the mean over seeds "
        f"with its {level} confidence interval in brackets (Student t for money, percentages "
        "and accuracy; Fisher z for correlations; bootstrap for Gini coefficients; Wilson for "
        "proportions; a single value when a point has one finished seed). Money in USD. "
        "Every table is also written as CSV and LaTeX beside this file.",
    ]
    if warnings:
        sections.append("\n".join(f"> **Warning:** {w}" for w in warnings))
    sections += extra
    if design:
        return "\n\n".join(sections) + "\n"
    pictures = {p.stem: p for p in figures if p.suffix == ".png"}
    links = {
        "client_rewards": ("reward_vs_equal", "Allotted and attributable reward vs equal split"),
        "execution_cost": ("execution_cost", "Execution cost per policy"),
        "investor_returns": ("investor_returns", "Investor returns per strategy"),
        "price_contribution_correlation": (
            "price_contribution_correlation",
            "Price-contribution correlation per policy",
        ),
    }
    for table in summaries:
        sections += [f"## {table.title}", table.note, markdown(table, tables.confidence)]
        sections.append(f"CSV: [{table.name}.csv]({table.name}.csv), LaTeX: "
                        f"[{table.name}.tex]({table.name}.tex)")
        if table.name in links and links[table.name][0] in pictures:
            name, caption = links[table.name]
            png = Path(os.path.relpath(pictures[name], out)).as_posix()
            others = [
                f"[{p.name}]({Path(os.path.relpath(p, out)).as_posix()})"
                for p in figures
                if p.stem == name and p.suffix != ".png"
            ]
            sections.append(f"![{caption}]({png})" + ("\n\n" + " ".join(others) if others else ""))
    return "\n\n".join(sections) + "\n"
