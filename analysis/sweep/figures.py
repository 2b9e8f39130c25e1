"""The sweep report's seaborn figures: bars are means over seeds with t-interval error bars."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.figures import save_figure
from analysis.sweep.loading import SweepTables
from analysis.sweep.statistics import metric_interval
from analysis.sweep.tables import METHOD_PATH, POLICY_PATH

__all__ = ["FIGURE_NAMES", "make_sweep_figures"]

FIGURE_NAMES = (
    "reward_vs_equal",
    "execution_cost",
    "investor_returns",
    "price_contribution_correlation",
)
PANEL_SIZE = (4.6, 3.3)  # inches per facet panel
MAX_COLUMNS = 3  # facet panels per row


def make_sweep_figures(
    tables: SweepTables, out_dir: str | Path, formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """Draw the four sweep figures into `out_dir`; return the written files (figure by
    figure in `FIGURE_NAMES` order, formats in the given order).

    Bars are means over seeds with `tables.confidence` error bars (the interval the tables
    give each metric: `analysis.sweep.statistics.metric_kind`). Grid parameters
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
        "execution_cost": _bars(
            _with_setting(tables.runs, rest),
            x="policy",
            y="execution_cost_usd",
            hue="method",
            confidence=c,
            xlabel="Distribution policy",
            ylabel="Execution cost (USD)",
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
            # rho lies in [-1, 1], and so does its Fisher-z interval.
            ylim=(-1.1, 1.1),
        ),
    }
    return [file for name in FIGURE_NAMES
            for file in save_figure(figures[name], out, name, formats)]


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
    panels per row), error bars from the metric's interval (`metric_interval`);
    `reference` draws a dashed horizontal line per panel, `ylim` fixes the y range."""
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
                    errorbar=metric_interval(y, confidence),
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
