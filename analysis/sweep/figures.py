"""The sweep report's figures: each draws exactly what its table prints.

A figure's bars are the centres its table gives (`<metric>_mean`: the mean, or the Fisher-z
mean of a correlation) and its whiskers the table's interval (`<metric>_ci_low`,
`<metric>_ci_high`), read from `analysis.sweep.tables.summary_tables` by `figure_data`, never
re-estimated: one estimator per figure and table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.figures import save_figure
from analysis.sweep.loading import SweepTables
from analysis.sweep.statistics import metric_kind
from analysis.sweep.tables import METHOD_PATH, POLICY_PATH, dataset_label, summary_tables

__all__ = ["FIGURE_NAMES", "FIGURE_TABLES", "figure_data", "make_sweep_figures"]

FIGURE_NAMES = (
    "reward_vs_equal",
    "execution_cost",
    "investor_returns",
    "price_contribution_correlation",
)
#: The table each figure draws (a report table of the same rows and intervals).
FIGURE_TABLES = {
    "reward_vs_equal": "client_rewards",
    "execution_cost": "execution_cost",
    "investor_returns": "investor_returns",
    "price_contribution_correlation": "price_contribution_correlation",
}
PANEL_SIZE = (4.6, 3.3)  # inches per facet panel
MAX_COLUMNS = 3  # facet panels per row
ATTRIBUTABLE = "attributable (run − twin, if sold)"
ALLOTTED = "allotted by the policy"
#: How a figure's title names the estimator of each kind of metric (`metric_kind`).
ESTIMATORS = {"mean": "Bars: mean over seeds; whiskers: Student-t interval",
              "correlation": "Bars: Fisher-z mean over seeds; whiskers: its interval",
              "bootstrap": "Bars: mean over seeds; whiskers: percentile-bootstrap interval",
              "proportion": "Bars: mean over seeds; whiskers: percentile-bootstrap interval"}
#: The figure data's columns: panel, bar group, bar colour, the table's row and metric,
#: centre, interval.
DATA_COLUMNS = ["facet", "x", "hue", "row", "metric", "value", "low", "high"]


def figure_data(tables: SweepTables) -> dict[str, pd.DataFrame]:
    """Per figure (`FIGURE_NAMES`), the bars it draws, one row per bar (`DATA_COLUMNS`):
    `value`, `low`, `high` are the `<metric>_mean`, `_ci_low`, `_ci_high` cells of row `row`
    of its table (`FIGURE_TABLES`) as `summary_tables` computes them."""
    by = tables.params
    frames = {t.name: t for t in summary_tables(tables)}
    policy = POLICY_PATH if POLICY_PATH in by else "policy"
    method = METHOD_PATH if METHOD_PATH in by else "method"
    rest = [p for p in by if p not in (POLICY_PATH, METHOD_PATH)]

    clients = frames["client_rewards"]
    keyed = clients.frame.copy()
    keyed["_x"] = (keyed["client"].astype(str) if "client" in clients.by else
                   keyed["behaviour"].astype(str) + " #"
                   + keyed["contribution_rank"].astype(str))
    if keyed[policy].nunique(dropna=False) <= 1 if policy in keyed.columns else True:
        # One policy (the paper's figure): a panel per method, allotted and attributable
        # side by side in it, one colour each.
        measures = [_long(keyed.assign(_m=label), metric, "_x", "_m", [method, *rest])
                    for metric, label in (("allotted_vs_equal_pct", ALLOTTED),
                                          ("attributable_vs_equal_pct", ATTRIBUTABLE))]
    else:
        measures = [_long(keyed, "allotted_vs_equal_pct", "_x", policy, [method, *rest],
                          ALLOTTED),
                    _long(keyed, "attributable_vs_equal_pct", "_x", policy, [method, *rest],
                          ATTRIBUTABLE)]
    if measures[1]["value"].isna().all():  # no twins in this sweep: the allotment alone
        measures = measures[:1]
    rewards = pd.concat(measures, ignore_index=True)
    order = {f: i for i, f in enumerate(dict.fromkeys(
        f.rsplit(" · ", 1)[0] for f in rewards["facet"]))}
    rewards = rewards.assign(_o=[order[f.rsplit(" · ", 1)[0]] for f in rewards["facet"]])
    rewards = rewards.sort_values("_o", kind="stable").drop(columns="_o")
    return {
        "reward_vs_equal": rewards.reset_index(drop=True),
        "execution_cost": _long(frames["execution_cost"].frame, "execution_cost_usd",
                                   policy, method, rest),
        "investor_returns": _long(frames["investor_returns"].frame, "mean_return_pct",
                                  "strategy", policy, [method, *rest]),
        "price_contribution_correlation": _long(
            frames["price_contribution_correlation"].frame, "price_contribution_spearman",
            policy, method, rest),
    }


def _long(frame: pd.DataFrame, metric: str, x: str, hue: str, facets: Sequence[str],
          measure: str = "") -> pd.DataFrame:
    """The bars of one metric of a summary table: `x` and `hue` from those columns, the panel
    from the `facets` columns that vary (a method as "method <m>", others "<key>=<v>"),
    followed by " · `measure`" when given."""
    parts: list[pd.Series] = []
    for key in facets:
        if key in frame.columns and frame[key].nunique(dropna=False) > 1:
            label = "method " if key in ("method", METHOD_PATH) else f"{key}="
            parts.append(label + frame[key].astype(str))
    facet = pd.Series([""] * len(frame), index=frame.index, dtype=object)
    for part in parts:
        facet = facet.where(facet == "", facet + ", ") + part
    if measure:
        facet = facet.where(facet != "", "all runs") + " · " + measure
    return pd.DataFrame({
        "facet": facet.to_numpy(), "x": frame[x].astype(str).to_numpy(),
        "hue": frame[hue].astype(str).to_numpy() if hue in frame.columns else "",
        "row": np.arange(len(frame)), "metric": metric,
        "value": frame[f"{metric}_mean"].to_numpy(dtype=float),
        "low": frame[f"{metric}_ci_low"].to_numpy(dtype=float),
        "high": frame[f"{metric}_ci_high"].to_numpy(dtype=float),
    }, columns=DATA_COLUMNS)


def make_sweep_figures(
    tables: SweepTables, out_dir: str | Path, formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """Draw the four sweep figures into `out_dir`; return the written files (figure by
    figure in `FIGURE_NAMES` order, formats in the given order).

    Each bar and whisker is a cell of the figure's table (`figure_data`): the centre over
    seeds and its `tables.confidence` interval, of the kind the table gives the metric
    (Student t, Fisher z for correlations, bootstrap for Gini). Grid parameters other than
    policy and method, when they vary, split the figures into panels.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    level = f"{tables.confidence:.0%} CI over seeds, as in its table"
    data = figure_data(tables)
    rewards = data["reward_vs_equal"]
    by_measure = set(rewards["hue"]) <= {ALLOTTED, ATTRIBUTABLE}
    twins = not by_measure and rewards["facet"].str.endswith(ATTRIBUTABLE).any()
    zero = pd.Series(0.0, index=list(dict.fromkeys(rewards["facet"])))
    by_rank = not rewards.empty and " #" in rewards["x"].iloc[0]
    figures = {
        "reward_vs_equal": _bars(
            rewards,
            xlabel=("Behaviour #contribution rank" if by_rank
                    else "Client (the same data in every seed)"),
            ylabel="Reward vs the equal split (%)\n100 × (reward / equal split − 1)",
            hue="reward" if by_measure else "policy",
            title=_reward_title(tables, by_rank),
            reference=("equal split (0 %)", zero),
            columns=2 if twins else MAX_COLUMNS,
        ),
        "execution_cost": _bars(
            data["execution_cost"],
            hue="method",
            xlabel="Distribution policy",
            ylabel="Execution cost (USD)",
            title=f"Cost of distributing the rewards per policy ({level})",
        ),
        "investor_returns": _bars(
            data["investor_returns"],
            hue="policy",
            xlabel="Investor strategy",
            ylabel="Mean return (%)",
            title=f"Investor returns per strategy ({level})",
            zero_line=True,
        ),
        "price_contribution_correlation": _bars(
            data["price_contribution_correlation"],
            hue="method",
            xlabel="Distribution policy",
            ylabel="Spearman ρ (final price vs contribution)",
            title=f"Do token prices rank clients by contribution? Fisher-z mean ({level})",
            zero_line=True,
            # rho lies in [-1, 1], and so does its Fisher-z interval.
            ylim=(-1.1, 1.1),
        ),
    }
    return [file for name in FIGURE_NAMES
            for file in save_figure(figures[name], out, name, formats)]


def _reward_title(tables: SweepTables, by_rank: bool) -> str:
    """The per-client figure's title: what is plotted, on which data, under which policy,
    with the estimator and interval its table (`client_rewards`) gives."""
    frame = tables.clients
    names = [str(p) for p in dict.fromkeys(frame["policy"])] if not frame.empty else []
    policies = f"{', '.join(names) or 'no'} polic{'ies' if len(names) > 1 else 'y'}"
    per_point = frame.groupby([*tables.params, "client"], sort=False, dropna=False)[
        "seed"].nunique() if not frame.empty else pd.Series([0])
    low, high = int(per_point.min()), int(per_point.max())
    seeds = f"{low}" if low == high else f"{low}-{high}"
    kind = metric_kind("allotted_vs_equal_pct")
    return (f"Per-{'behaviour and contribution rank' if by_rank else 'client'} reward vs an "
            f"equal payout: allotted and attributable ({policies})\n"
            f"Data: {dataset_label(tables)}\n"
            f"{ESTIMATORS[kind]} ({seeds} seed{'s' if high != 1 else ''}, "
            f"{tables.confidence:.0%}), as in table "
            f"client_rewards")


def _bars(
    data: pd.DataFrame,
    *,
    hue: str,
    xlabel: str,
    ylabel: str,
    title: str,
    reference: tuple[str, pd.Series] | None = None,
    zero_line: bool = False,
    ylim: tuple[float, float] | None = None,
    columns: int = MAX_COLUMNS,
) -> Figure:
    """Grouped bars of `data` (`DATA_COLUMNS`: one bar per row at its `x`, coloured by its
    `hue`, whiskers from `low` to `high`), one panel per `facet` (`columns` panels per row);
    `reference` draws a dashed horizontal line per panel, `ylim` fixes the y range. A bar
    without a centre is left out; one without an interval has no whisker."""
    facets = list(dict.fromkeys(data["facet"])) or [""]  # an empty table: one empty panel
    ncols = min(len(facets), columns)
    nrows = math.ceil(len(facets) / ncols)
    figure = Figure(
        figsize=(PANEL_SIZE[0] * ncols + 1.6, PANEL_SIZE[1] * nrows + 0.6), layout="constrained"
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False, sharey=True)
    order = list(dict.fromkeys(data["x"]))
    hue_order = list(dict.fromkeys(data["hue"]))
    palette = dict(zip(hue_order, sns.color_palette("colorblind", len(hue_order)), strict=True))
    width = 0.8 / max(len(hue_order), 1)
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.0):
        for ax, facet in zip(axes.flat, facets, strict=False):
            panel = data[data["facet"] == facet]
            if panel["value"].notna().any():
                for k, level in enumerate(hue_order):
                    rows = panel[(panel["hue"] == level) & panel["value"].notna()]
                    if rows.empty:
                        continue
                    at = np.asarray([order.index(x) for x in rows["x"]], dtype=float)
                    at += (k - (len(hue_order) - 1) / 2) * width
                    value = rows["value"].to_numpy(dtype=float)
                    ax.bar(at, value, width=width, color=palette[level], label=level)
                    low, high = rows["low"].to_numpy(float), rows["high"].to_numpy(float)
                    has = np.isfinite(low) & np.isfinite(high)
                    if has.any():
                        ax.errorbar(at[has], value[has],
                                    yerr=np.vstack([value[has] - low[has],
                                                    high[has] - value[has]]),
                                    fmt="none", ecolor="#333333", elinewidth=0.9, capsize=3)
                ax.set_xticks(range(len(order)), order)
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
        for ax in axes.flat[len(facets) :]:
            ax.set_visible(False)
        _figure_legend(figure, list(axes.flat), hue)
        figure.suptitle(title)
    return figure


def _figure_legend(figure: Figure, axes: Sequence[Axes], title: str) -> None:
    """One legend below the panels, every label once (a panel may lack a colour)."""
    seen: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    if seen:
        # Below the panels: beside them it would collide with the figure title.
        figure.legend(
            list(seen.values()),
            list(seen),
            title=title,
            loc="outside lower center",
            ncols=min(len(seen), 6),
            frameon=False,
        )
