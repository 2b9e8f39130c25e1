"""`report.md` of a sweep folder, with its tables (CSV and Markdown) and figures."""

from __future__ import annotations

import os
from pathlib import Path

from analysis.sweep.figures import make_sweep_figures
from analysis.sweep.loading import SweepTables, load_sweep_tables
from analysis.sweep.tables import SummaryTable, markdown, summary_tables

__all__ = ["REPORT_DIR", "REPORT_FILE", "write_sweep_report"]

REPORT_DIR = "report"
REPORT_FILE = "report.md"


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Write the tables, figures and `report.md` of a sweep folder into `<sweep>/report/`;
    return the path of `report.md`.

    Re-running replaces the report with one over the runs finished by then. Raises SweepError
    for a folder that is not a sweep folder or has no finished run.
    """
    tables = load_sweep_tables(sweep_dir)
    out = tables.path / REPORT_DIR
    out.mkdir(exist_ok=True)
    summaries = summary_tables(tables)
    for table in summaries:
        table.frame.to_csv(out / f"{table.name}.csv", index=False)
        (out / f"{table.name}.md").write_text(
            markdown(table, tables.confidence) + "\n", encoding="utf-8"
        )
    figures = make_sweep_figures(tables, out / "figures", tables.formats) if tables.figures else []
    text = _render(tables, summaries, figures, out)
    target = out / REPORT_FILE
    partial = target.with_name(f".{REPORT_FILE}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)
    return target


def _render(tables: SweepTables, summaries: list[SummaryTable], figures: list[Path],
            out: Path) -> str:
    level = f"{tables.confidence:.0%}"
    grid = ", ".join(f"`{p}`" for p in tables.params) or "none (seeds only)"
    seeds = tables.runs.groupby(tables.params, sort=False).size() if tables.params else None
    n_seeds = int(seeds.max()) if seeds is not None else len(tables.runs)
    sections = [
        f"# Sweep report: {tables.name}",
        f"Sweep folder `{tables.path}`: {len(tables.runs)} of {tables.n_planned} runs finished; "
        f"grid parameters {grid}; up to {n_seeds} seeds per grid point. Every cell is the mean "
        f"over seeds with its {level} Student-t confidence interval in brackets (a single "
        "value when a grid point has one finished seed). Money in USD.",
    ]
    pictures = {p.stem: p for p in figures if p.suffix == ".png"}
    links = {
        "client_rewards": ("reward_vs_equal", "Allotted and attributable reward vs equal split"),
        "distribution_cost": ("distribution_cost", "Distribution cost per policy"),
        "investor_returns": ("investor_returns", "Investor returns per strategy"),
        "price_contribution_correlation": (
            "price_contribution_correlation",
            "Price-contribution correlation per policy",
        ),
    }
    for table in summaries:
        sections += [f"## {table.title}", table.note, markdown(table, tables.confidence)]
        sections.append(f"CSV: [{table.name}.csv]({table.name}.csv)")
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
