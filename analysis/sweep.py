"""Tables and figures over a sweep folder: means and confidence intervals over seeds.

`write_sweep_report(sweep_dir)` is what `wsf report SWEEP_DIR` does. It reads every finished
run under `<sweep>/runs/`, computes the per-run metrics of `analysis.metrics`, and writes into
`<sweep>/report/`:

- tables (CSV for analysis, Markdown for reading), each grouped by the grid parameters, with
  the mean over seeds and its confidence interval (Student t, level from the sweep file's
  `report.confidence`, default 95 %):
  `runs_by_point` (headline figures of `summarise_run`), `client_rewards` (per client:
  allotted and attributable vs the equal split), `paired_differences` (per holder type: run
  minus its counterfactual twin, the paired difference of each seed, when the sweep ran
  twins), `distribution_cost`, `investor_returns` (per strategy, at spot and if sold),
  `price_contribution_correlation`;
- seaborn figures (PNG and PDF, or the sweep file's `report.formats`), every bar a mean over
  seeds with the same t interval as error bar: allotted and attributable reward vs the equal
  split per client per contribution method (the paper's figure), distribution cost per
  policy, investor returns per strategy, price-contribution correlation per policy;
- `report.md` with every table and figure.

Money is in USD display units, returns and shares of rewards in percent, correlations are
Spearman's rho (see `analysis.metrics` for each definition).

CSV columns: the grid parameters (one column per dotted path, named values by their label),
the entity (`client`, `strategy`) where there is one, `n_runs` (runs in the group, i.e. seeds),
then per metric `<metric>_mean`, `<metric>_ci_low`, `<metric>_ci_high` (NaN with one seed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from abm.sweep.spec import canonical_json
from abm.sweep.store import (
    RUNS_DIR,
    SweepError,
    finished_run_ids,
    label_names,
    param_columns,
    read_spec,
    run_folder,
)
from analysis.metrics import (
    client_rewards,
    distribution_cost,
    holder_outcomes,
    investor_performance,
    summarise_run,
)
from analysis.report import markdown_table
from analysis.runs import load_run

__all__ = [
    "FIGURE_NAMES",
    "REPORT_DIR",
    "SweepTables",
    "load_sweep_tables",
    "make_sweep_figures",
    "mean_ci",
    "summarise_over_seeds",
    "sweep_summary_tables",
    "write_sweep_report",
]

REPORT_DIR = "report"
REPORT_FILE = "report.md"
FIGURE_NAMES = (
    "reward_vs_equal",
    "distribution_cost",
    "investor_returns",
    "price_contribution_correlation",
)
# Grid keys that the policy and method columns (read from each run's config) already show.
POLICY_PATH = "rewards.policy"
METHOD_PATH = "contribution.method"
PANEL_SIZE = (4.6, 3.3)  # inches per facet panel
MAX_COLUMNS = 3  # facet panels per row
PNG_DPI = 150

HEADLINE = (
    "final_accuracy",
    "price_contribution_spearman",
    "reward_gini",
    "rewards_usd",
    "distribution_cost_usd",
    "distribution_cost_pct",
    "min_allotted_vs_equal_pct",
    "max_allotted_vs_equal_pct",
    "min_attributable_vs_equal_pct",
    "max_attributable_vs_equal_pct",
    "unranked_rounds",
)
CLIENT_METRICS = (
    "contribution",
    "allotted_usd",
    "equal_split_usd",
    "allotted_vs_equal_pct",
    "attributable_usd",
    "attributable_vs_equal_pct",
    "mtm_change_usd",
)
HOLDER_METRICS = ("attributable_usd", "mtm_change_usd", "if_sold_change_usd",
                  "final_if_sold_together_usd")
COST_METRICS = ("rewards_usd", "cost_usd", "cost_pct")
INVESTOR_METRICS = (
    "mean_return_pct",
    "mean_return_if_sold_pct",
    "mean_pnl_usd",
    "mean_pnl_if_sold_usd",
    "sharpe",
    "sharpe_if_sold",
    "profitable_share",
)


@dataclass(frozen=True)
class SweepTables:
    """Per-run metrics of a sweep's finished runs.

    Every table starts with the label columns `run_id`, the grid parameters (`params`, one
    column per dotted path), `seed`, `policy` and `method` (read from each run's resolved
    config, whether or not the grid varies them).
    """

    path: Path
    name: str
    params: list[str]  # grid parameter columns (dotted paths; `grid:<path>` on a clash)
    confidence: float
    formats: list[str]
    figures: bool
    n_planned: int  # runs in the sweep spec, finished or not
    runs: pd.DataFrame  # one row per run: `summarise_run` headline figures
    clients: pd.DataFrame  # one row per run x client: `client_rewards`
    costs: pd.DataFrame  # one row per run: `distribution_cost`
    investors: pd.DataFrame  # one row per run x strategy: `investor_performance`
    holders: pd.DataFrame  # one row per run x holder type: `holder_outcomes`

    @property
    def labels(self) -> list[str]:
        """The label columns that start every table."""
        return ["run_id", *self.params, "seed", "policy", "method"]


def load_sweep_tables(sweep_dir: str | Path) -> SweepTables:
    """Read every finished run of a sweep folder and compute its per-run metrics.

    Raises SweepError when the folder is not a sweep folder or no run has finished.
    """
    path = Path(sweep_dir)
    spec = read_spec(path)
    grid = spec.get("grid") or {}
    params = list(grid)
    cells = param_columns(grid)
    done = finished_run_ids(path)
    records = [record for record in spec["runs"] if record["run_id"] in done]
    if not records:
        raise SweepError(
            f"{path}: no finished run under {RUNS_DIR}/ (of {len(spec['runs'])} planned); run "
            "`wsf sweep` on it first."
        )
    computed = []
    for record in records:
        run = load_run(run_folder(path, record["run_id"]))
        computed.append(
            (
                record,
                run,
                summarise_run(run),
                distribution_cost(run),
                client_rewards(run),
                investor_performance(run),
                holder_outcomes(run),
            )
        )
    # A grid key named like a per-client or per-strategy column (a grid over the
    # `contribution` section) becomes `grid:<key>`, as in the combined tables.
    taken = {"run_id", "seed", "policy", "method", "facet"}
    for *_, per_client, per_strategy, per_holder in computed:
        taken |= {*per_client.columns, *per_strategy.columns, *per_holder.columns}
    names = label_names(params, taken)
    runs, clients, costs, investors, holders = [], [], [], [], []
    for record, run, summary, cost, per_client, per_strategy, per_holder in computed:
        labels: dict[str, Any] = {"run_id": record["run_id"]}
        for key in params:
            labels[names[key]] = cells[key][canonical_json(record["params"][key])]
        labels["seed"] = record["seed"]
        labels["policy"] = run.policy
        labels["method"] = _config_value(run.config, "contribution", "method")
        runs.append({**labels, **{k: v for k, v in summary.items() if k not in labels}})
        costs.append({**labels, **{k: v for k, v in cost.items() if k not in labels}})
        clients.append(_with_labels(per_client, labels))
        investors.append(_with_labels(per_strategy, labels))
        holders.append(_with_labels(per_holder, labels))
    report = spec.get("report") or {}
    return SweepTables(
        path=path,
        name=str(spec.get("name", path.name)),
        params=[names[key] for key in params],
        confidence=float(report.get("confidence", 0.95)),
        formats=list(report.get("formats", ["png", "pdf"])),
        figures=bool(report.get("figures", True)),
        n_planned=len(spec["runs"]),
        runs=pd.DataFrame(runs),
        clients=pd.concat(clients, ignore_index=True),
        costs=pd.DataFrame(costs),
        investors=pd.concat(investors, ignore_index=True),
        holders=pd.concat(holders, ignore_index=True),
    )


def _config_value(config: dict[str, Any], *path: str) -> str:
    node: Any = config
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return "unknown"
        node = node[key]
    return str(node)


def _with_labels(table: pd.DataFrame, labels: dict[str, Any]) -> pd.DataFrame:
    """`labels` as leading columns; they replace a table column of the same name."""
    front = pd.DataFrame({key: [value] * len(table) for key, value in labels.items()})
    rest = table.drop(columns=[c for c in table.columns if c in labels]).reset_index(drop=True)
    return pd.concat([front, rest], axis=1)


# -- statistics -------------------------------------------------------------------------------


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval `(mean, low, high)` of the finite values.

    low/high = mean -/+ t_{(1+confidence)/2, n-1} * s / sqrt(n), with s the sample standard
    deviation (ddof 1): the interval for the mean over seeds when runs are independent draws.
    NaN interval with fewer than two finite values; all NaN with none.
    """
    x = np.asarray([float(v) for v in values], dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if len(x) < 2:
        return mean, math.nan, math.nan
    half = float(
        stats.t.ppf((1.0 + confidence) / 2.0, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    )
    return mean, mean - half, mean + half


def summarise_over_seeds(
    frame: pd.DataFrame, by: Sequence[str], values: Sequence[str], confidence: float = 0.95
) -> pd.DataFrame:
    """Mean and confidence interval over the rows of each group (the seeds of a grid point).

    One row per group of `by` (in order of first appearance; all rows when `by` is empty):
    the `by` columns, `n_runs`, then `<v>_mean`, `<v>_ci_low`, `<v>_ci_high` per value column.
    """
    by = list(by)
    groups: Iterable[tuple[Any, pd.DataFrame]] = (
        frame.groupby(by, sort=False, dropna=False) if by else [((), frame)]
    )
    rows = []
    for key, group in groups:
        keys = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(by, keys, strict=True))
        row["n_runs"] = len(group)
        for value in values:
            mean, low, high = mean_ci(group[value], confidence)
            row[f"{value}_mean"] = mean
            row[f"{value}_ci_low"] = low
            row[f"{value}_ci_high"] = high
        rows.append(row)
    return pd.DataFrame(
        rows,
        columns=[
            *by,
            "n_runs",
            *(f"{v}_{s}" for v in values for s in ("mean", "ci_low", "ci_high")),
        ],
    )


def _t_interval(confidence: float) -> Callable[[Any], tuple[float, float]]:
    """seaborn `errorbar=` callable drawing the same t interval as the tables."""

    def interval(values: Any) -> tuple[float, float]:
        _, low, high = mean_ci(values, confidence)
        return low, high

    return interval


# -- tables -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    name: str
    title: str
    note: str
    frame: pd.DataFrame  # summarise_over_seeds output
    by: list[str]
    values: tuple[str, ...]


def sweep_summary_tables(tables: SweepTables) -> dict[str, pd.DataFrame]:
    """The report's tables ({name: summarise_over_seeds frame}), grouped by grid parameters."""
    return {t.name: t.frame for t in _tables(tables)}


def _tables(tables: SweepTables) -> list[_Table]:
    by, c = tables.params, tables.confidence
    headline = [v for v in HEADLINE if v in tables.runs.columns]
    return [
        _Table(
            "runs_by_point",
            "Headline figures per grid point",
            "Per run: `analysis.metrics.summarise_run` (accuracy of the global model, Spearman "
            "rho of final price vs cumulative contribution, Gini of the allotments, rewards "
            "and distribution cost in USD and % of rewards, extremes of allotted and "
            "attributable vs the equal split in %, rounds the method could not rank).",
            summarise_over_seeds(tables.runs, by, headline, c),
            by,
            tuple(headline),
        ),
        _Table(
            "client_rewards",
            "Reward per client: allotted, attributable, spot-marked",
            "*allotted* = what the policy allotted (USD); *equal split* = what `equal` would "
            "have allotted; *vs equal* = 100 × (amount / equal split − 1), in %; "
            "*attributable* = realisable final wealth of the run minus its counterfactual "
            "twin's (same seed, budget 0; n/a when the sweep ran no twins), i.e. the paired "
            "difference per seed; *mtm change* = final − initial wealth at spot "
            "(speculation included, no measure of reward).",
            summarise_over_seeds(tables.clients, [*by, "client"], CLIENT_METRICS, c),
            [*by, "client"],
            CLIENT_METRICS,
        ),
        _Table(
            "paired_differences",
            "Run minus twin per holder type (paired differences across seeds)",
            "Per seed, the run and its counterfactual twin (same seed, reward budget 0) share "
            "their random numbers; *attributable* = final wealth if sold, run − twin (USD). "
            "Mean over seeds and its Student-t interval: what the reward mechanism caused per "
            "holder type. Beside it, each run's own change at spot and if sold.",
            summarise_over_seeds(tables.holders, [*by, "holder"], HOLDER_METRICS, c),
            [*by, "holder"],
            HOLDER_METRICS,
        ),
        _Table(
            "distribution_cost",
            "Distribution cost",
            "Fees and slippage the federation paid to distribute the rewards (USD, and % of "
            "the rewards distributed).",
            summarise_over_seeds(tables.costs, [*by, *_unless(by, "policy")], COST_METRICS, c),
            [*by, *_unless(by, "policy")],
            COST_METRICS,
        ),
        _Table(
            "investor_returns",
            "Investor returns per strategy",
            "Per run and strategy: mean return (%) and mean PnL (USD) at spot and if sold "
            "(everything sold alone, fees and impact included), mean run-horizon Sharpe ratio "
            "on each, and the share of investors profitable at spot (0..1).",
            summarise_over_seeds(tables.investors, [*by, "strategy"], INVESTOR_METRICS, c),
            [*by, "strategy"],
            INVESTOR_METRICS,
        ),
        _Table(
            "price_contribution_correlation",
            "Price-contribution correlation",
            "Spearman rho across clients of the final token price against the cumulative "
            "contribution (+1: the market ranks clients as the contribution method does).",
            summarise_over_seeds(
                tables.runs,
                [*by, *_unless(by, "policy")],
                ("price_contribution_spearman",),
                c,
            ),
            [*by, *_unless(by, "policy")],
            ("price_contribution_spearman",),
        ),
    ]


def _unless(by: Sequence[str], column: str) -> list[str]:
    """`column` as an extra grouping column unless the grid already varies it."""
    path = {"policy": POLICY_PATH, "method": METHOD_PATH}[column]
    return [] if path in by else [column]


def _markdown(table: _Table, confidence: float) -> str:
    """Markdown of a summary table: one 'mean [low, high]' cell per metric."""
    shown = table.frame[[*table.by, "n_runs"]].copy()
    for value in table.values:
        spec = _format_of(value)
        shown[value] = [
            _interval_text(m, lo, hi, spec)
            for m, lo, hi in zip(
                table.frame[f"{value}_mean"],
                table.frame[f"{value}_ci_low"],
                table.frame[f"{value}_ci_high"],
                strict=True,
            )
        ]
    return markdown_table(shown.rename(columns={"n_runs": "seeds"}))


def _format_of(metric: str) -> str:
    if metric.endswith(("_usd", "_pct")):
        return ",.2f"
    if metric in ("final_accuracy", "contribution"):
        return ".4f"
    return ".3f"


def _interval_text(mean: float, low: float, high: float, spec: str) -> str:
    if not np.isfinite(mean):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return format(mean, spec)
    return f"{format(mean, spec)} [{format(low, spec)}, {format(high, spec)}]"


# -- figures ----------------------------------------------------------------------------------


def make_sweep_figures(
    tables: SweepTables, out_dir: str | Path, formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """Draw the four sweep figures into `out_dir`; return the written files (figure by
    figure in `FIGURE_NAMES` order, formats in the given order).

    Bars are means over seeds with `tables.confidence` Student-t error bars. Grid parameters
    other than policy and method, when they vary, split the figures into panels.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = tables.confidence
    rest = [p for p in tables.params if p not in (POLICY_PATH, METHOD_PATH)]
    level = f"{c:.0%} CI over seeds"
    # The paper's figure, two measures side by side: one row of panels per setting (method
    # and any other varying grid key), allotted on the left, attributable on the right.
    clients = _with_setting(tables.clients, rest, lead="method")
    setting = clients["facet"].where(clients["facet"] != "", "all runs")
    measures = pd.concat(
        [
            clients.assign(
                vs_equal_pct=clients[column],
                facet=setting + " · " + label,
                order=setting.map({s: i for i, s in enumerate(dict.fromkeys(setting))}) * 2
                + k,
            )
            for k, (column, label) in enumerate((
                ("allotted_vs_equal_pct", "allotted by the policy"),
                ("attributable_vs_equal_pct", "attributable (run − twin, if sold)"),
            ))
        ],
        ignore_index=True,
    ).sort_values("order", kind="stable")
    twins = measures.loc[measures["facet"].str.endswith("if sold)"), "vs_equal_pct"]
    if twins.isna().all():  # no twins in this sweep: the allotment alone
        measures = measures[~measures["facet"].str.endswith("if sold)")]
    zero = pd.Series(0.0, index=list(dict.fromkeys(measures["facet"])))
    figures = {
        "reward_vs_equal": _bars(
            measures,
            x="client",
            y="vs_equal_pct",
            hue="policy",
            confidence=c,
            xlabel="Client",
            ylabel="Difference from the equal split (%)",
            title=f"Allotted and attributable reward vs the equal split, per client ({level})",
            reference=("equal split (0 %)", zero),
            columns=2 if twins.notna().any() else MAX_COLUMNS,
        ),
        "distribution_cost": _bars(
            _with_setting(tables.costs, rest),
            x="policy",
            y="cost_usd",
            hue="method",
            confidence=c,
            xlabel="Distribution policy",
            ylabel="Distribution cost (USD)",
            title=f"Cost of distributing the rewards per policy ({level})",
        ),
        "investor_returns": _bars(
            _with_setting(tables.investors, rest, lead="method"),
            x="strategy",
            y="mean_return_pct",
            hue="policy",
            confidence=c,
            xlabel="Investor strategy",
            ylabel="Mean return (%)",
            title=f"Investor returns per strategy ({level})",
            zero_line=True,
        ),
        "price_contribution_correlation": _bars(
            _with_setting(tables.runs, rest),
            x="policy",
            y="price_contribution_spearman",
            hue="method",
            confidence=c,
            xlabel="Distribution policy",
            ylabel="Spearman ρ (final price vs contribution)",
            title=f"Do token prices rank clients by contribution? ({level})",
            zero_line=True,
            # rho lies in [-1, 1]; with few seeds the t interval reaches past it (see tables).
            ylim=(-1.1, 1.1),
        ),
    }
    written = []
    for name in FIGURE_NAMES:
        figure = figures[name]
        for fmt in formats:
            file = out / f"{name}.{fmt}"
            figure.savefig(file, dpi=PNG_DPI if fmt == "png" else None)
            written.append(file)
    return written


def _with_setting(
    frame: pd.DataFrame, rest: Sequence[str], lead: str | None = None
) -> pd.DataFrame:
    """Add a `facet` column: the panel a row is drawn in (`lead` column and the other grid
    parameters that vary; one panel when nothing varies)."""
    parts: list[pd.Series] = []
    if lead is not None and frame[lead].nunique(dropna=False) > 1:
        parts.append(lead + " " + frame[lead].astype(str))
    for key in rest:
        if frame[key].nunique(dropna=False) > 1:
            parts.append(key + "=" + frame[key].astype(str))
    if not parts:
        facet = pd.Series([""] * len(frame), index=frame.index)
    else:
        facet = parts[0]
        for part in parts[1:]:
            facet = facet + ", " + part
    return frame.assign(facet=facet.to_numpy())


def _bars(
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    hue: str,
    confidence: float,
    xlabel: str,
    ylabel: str,
    title: str,
    reference: tuple[str, pd.Series] | None = None,
    zero_line: bool = False,
    ylim: tuple[float, float] | None = None,
    columns: int = MAX_COLUMNS,
) -> Figure:
    """Bar chart of the mean of `y` per `x` and `hue`, one panel per `facet` (`columns`
    panels per row), error bars from the t interval; `reference` draws a dashed horizontal
    line per panel, `ylim` fixes the y range."""
    facets = list(dict.fromkeys(frame["facet"])) or [""]  # an empty table: one empty panel
    ncols = min(len(facets), columns)
    nrows = math.ceil(len(facets) / ncols)
    figure = Figure(
        figsize=(PANEL_SIZE[0] * ncols + 1.6, PANEL_SIZE[1] * nrows + 0.6), layout="constrained"
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False, sharey=True)
    order = list(dict.fromkeys(frame[x]))
    hue_order = list(dict.fromkeys(frame[hue]))
    palette = dict(zip(hue_order, sns.color_palette("colorblind", len(hue_order)), strict=True))
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.0):
        for ax, facet in zip(axes.flat, facets, strict=False):
            data = frame[frame["facet"] == facet]
            if data[y].notna().any():
                sns.barplot(
                    data=data,
                    x=x,
                    y=y,
                    hue=hue,
                    order=order,
                    hue_order=hue_order,
                    palette=palette,
                    estimator="mean",
                    errorbar=_t_interval(confidence),
                    capsize=0.15,
                    err_kws={"linewidth": 0.9},
                    ax=ax,
                )
            else:
                ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", color="grey")
            if zero_line:
                ax.axhline(0.0, color="black", linewidth=0.8)
            if ylim is not None:
                ax.set_ylim(*ylim)
            if reference is not None and facet in reference[1].index:
                ax.axhline(
                    float(reference[1][facet]),
                    color="black",
                    linestyle="--",
                    linewidth=1.0,
                    label=reference[0],
                )
            ax.set_title(facet)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if len(order) > 5:
                ax.tick_params(axis="x", labelrotation=45)
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        for ax in axes.flat[len(facets) :]:
            ax.set_visible(False)
        _figure_legend(figure, axes.flat[0], hue)
        figure.suptitle(title)
    return figure


def _figure_legend(figure: Figure, ax: Axes, title: str) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        # Below the panels: beside them it would collide with the figure title.
        figure.legend(
            handles,
            labels,
            title=title,
            loc="outside lower center",
            ncols=min(len(labels), 6),
            frameon=False,
        )


# -- report -----------------------------------------------------------------------------------


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Write the tables, figures and `report.md` of a sweep folder into `<sweep>/report/`;
    return the path of `report.md`.

    Re-running replaces the report with one over the runs finished by then. Raises SweepError
    for a folder that is not a sweep folder or has no finished run.
    """
    tables = load_sweep_tables(sweep_dir)
    out = tables.path / REPORT_DIR
    out.mkdir(exist_ok=True)
    summaries = _tables(tables)
    for table in summaries:
        table.frame.to_csv(out / f"{table.name}.csv", index=False)
        (out / f"{table.name}.md").write_text(
            _markdown(table, tables.confidence) + "\n", encoding="utf-8"
        )
    figures = make_sweep_figures(tables, out / "figures", tables.formats) if tables.figures else []
    text = _render(tables, summaries, figures, out)
    target = out / REPORT_FILE
    partial = target.with_name(f".{REPORT_FILE}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)
    return target


def _render(tables: SweepTables, summaries: list[_Table], figures: list[Path], out: Path) -> str:
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
        sections += [f"## {table.title}", table.note, _markdown(table, tables.confidence)]
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
