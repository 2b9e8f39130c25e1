"""Seaborn figures of one run, saved as PNG (screen, report) and PDF (papers).

Figures are drawn on `matplotlib.figure.Figure` objects with an Agg canvas, never through
`pyplot`: no window can open, no global figure list grows across a sweep, and nothing depends
on the backend a caller (a notebook, the Solara app) has selected. Styles are applied in
seaborn context managers so that making figures does not change a caller's rcParams. Every
table is aggregated with pandas before plotting: seaborn only ever sees one point per line
per step, so a 500-step run with ~110 agents draws in a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

from analysis.metrics import client_rewards, lp_decomposition
from analysis.runs import PRICE_PREFIX, Run

FIGURE_NAMES = ("reward_vs_equal", "token_prices", "contributions", "wealth_by_type", "lp_pnl")
FORMATS = ("png", "pdf")
PNG_DPI = 150
SIZE = (7.5, 4.2)  # inches: full text width of a paper page, legend beside the axes


def make_figures(run: Run, out_dir: str | Path | None = None) -> list[Path]:
    """Draw every figure of `run` and save each as PNG and PDF into `out_dir` (default
    `<run>/figures`, created if needed; files of the same name are replaced).

    Returns the written paths, figure by figure in `FIGURE_NAMES` order, PNG before PDF.
    """
    target = Path(out_dir) if out_dir is not None else run.path / "figures"
    target.mkdir(parents=True, exist_ok=True)
    painters: dict[str, Callable[[Run, Axes], None]] = {
        "reward_vs_equal": plot_reward_vs_equal,
        "token_prices": plot_token_prices,
        "contributions": plot_contributions,
        "wealth_by_type": plot_wealth_by_type,
        "lp_pnl": plot_lp_pnl,
    }
    written: list[Path] = []
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.1):
        for name in FIGURE_NAMES:
            fig = Figure(figsize=SIZE, layout="constrained")
            FigureCanvasAgg(fig)
            painters[name](run, fig.add_subplot())
            for fmt in FORMATS:
                file = target / f"{name}.{fmt}"
                fig.savefig(file, dpi=PNG_DPI if fmt == "png" else None)
                written.append(file)
                # The layout solved for the first file holds for the others (it is in
                # inches, not pixels); solving it again would only cost time.
                fig.set_layout_engine("none")
    return written


def plot_reward_vs_equal(run: Run, ax: Axes) -> None:
    """Bars per client of `vs_equal_pct` (percent more or less than an equal split of all
    rewards), coloured by FL behaviour, with the 0 line (= exactly an equal split)."""
    table = client_rewards(run)
    equal = float(table["equal_payout_usd"].iloc[0]) if len(table) else float("nan")
    if table["vs_equal_pct"].notna().any():
        sns.barplot(data=table, x="client", y="vs_equal_pct", hue="behaviour",
                    palette=_behaviour_palette(table["behaviour"]), dodge=False, ax=ax)
        _legend_outside(ax, "FL behaviour")
    else:
        _no_data(ax, "no reward was distributed: the equal payout is 0")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("Client")
    ax.set_ylabel("Received vs equal payout (%)")
    ax.set_title(f"Reward received vs equal payout ({run.policy}; equal payout "
                 f"{equal:,.2f} USD per client)")
    _rotate_if_crowded(ax, len(table))


def plot_token_prices(run: Run, ax: Axes) -> None:
    """Spot price of each client's token (USD per token) over steps; dotted vertical lines
    at the steps where an FL round distributed rewards."""
    clients = run.client_ids
    model = run.model.sort_values("step")
    prices = model[["step", *(PRICE_PREFIX + c for c in clients)]]
    prices.columns = ["step", *_client_labels(run)]
    long = prices.melt(id_vars="step", var_name="client", value_name="price")
    sns.lineplot(data=long, x="step", y="price", hue="client", estimator=None, sort=False,
                 linewidth=1.2, ax=ax)
    for i, step in enumerate(sorted(run.rounds["step"].unique())):
        ax.axvline(step, color="grey", linestyle=":", linewidth=0.9,
                   label="FL round" if i == 0 else None)
    _legend_outside(ax, "Client (behaviour)")
    ax.set_xlabel("Step")
    ax.set_ylabel("Token price (USD per token)")
    ax.set_title("Client token prices")


def plot_contributions(run: Run, ax: Axes) -> None:
    """Each client's contribution score per FL round (units of the contribution method)."""
    method = ", ".join(sorted(str(m) for m in run.rounds["method"].unique())) \
        if "method" in run.rounds.columns else ""
    if run.rounds.empty:
        _no_data(ax, "no FL round in this run")
    else:
        labels = dict(zip(run.client_ids, _client_labels(run), strict=True))
        table = (run.rounds.groupby(["round", "client"], as_index=False)["contribution"].sum()
                 .assign(client=lambda t: t["client"].map(labels)))
        # Markers show where the rounds are; past ~30 rounds they only blot the lines.
        marker = "o" if run.n_rounds <= 30 else None
        sns.lineplot(data=table, x="round", y="contribution", hue="client", marker=marker,
                     estimator=None, ax=ax)
        ax.axhline(0.0, color="black", linewidth=0.8)
        _legend_outside(ax, "Client (behaviour)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("FL round")
    ax.set_ylabel(f"Contribution ({method})" if method else "Contribution")
    ax.set_title("Contribution signal per client")


def plot_wealth_by_type(run: Run, ax: Axes) -> None:
    """Total wealth (USD: cash plus tokens and liquidity marked to market) summed over the
    agents of each type, over steps."""
    table = run.agents.groupby(["step", "agent_type"], as_index=False)["wealth"].sum()
    sns.lineplot(data=table, x="step", y="wealth", hue="agent_type", estimator=None,
                 sort=False, linewidth=1.4, ax=ax)
    _legend_outside(ax, "Agent type")
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_xlabel("Step")
    ax.set_ylabel("Total wealth (USD)")
    ax.set_title("Wealth by agent type")


def plot_lp_pnl(run: Run, ax: Axes) -> None:
    """Each LP's PnL (USD) split into fees earned, impermanent loss and price effect (bars),
    with the total PnL as a black marker; see `analysis.metrics.lp_decomposition`."""
    table = lp_decomposition(run)
    if table.empty:
        _no_data(ax, "no liquidity provider in this run")
    else:
        table = table.assign(lp=[f"LP {a} ({s})" for a, s in
                                 zip(table["agent_id"], table["strategy"], strict=True)])
        parts = table.melt(id_vars="lp", value_vars=["fees_earned_usd", "impermanent_loss_usd",
                                                     "price_effect_usd"],
                           var_name="component", value_name="usd")
        parts["component"] = parts["component"].map({
            "fees_earned_usd": "fees earned", "impermanent_loss_usd": "impermanent loss",
            "price_effect_usd": "price effect"})
        sns.barplot(data=parts, x="lp", y="usd", hue="component", ax=ax,
                    palette=["#4c9a2a", "#c0392b", "#2e86c1"])
        ax.scatter(np.arange(len(table)), table["pnl_usd"], marker="D", color="black",
                   zorder=3, label="total PnL")
        _legend_outside(ax, "Component")
        _rotate_if_crowded(ax, len(table))
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("Liquidity provider (exit rule)")
    ax.set_ylabel("PnL (USD)")
    ax.set_title("Liquidity providers: PnL decomposition")


def _client_labels(run: Run) -> list[str]:
    """`"c00 (honest)"` per client, in client order."""
    clients = run.agents.loc[run.agents["agent_type"] == "client"]
    behaviour = clients.drop_duplicates("client").set_index("client")["strategy"]
    return [f"{c} ({behaviour[c]})" if c in behaviour.index else c for c in run.client_ids]


def _behaviour_palette(behaviours: pd.Series) -> dict[str, tuple[float, float, float]]:
    names = sorted(set(behaviours))
    return dict(zip(names, sns.color_palette("colorblind", len(names)), strict=True))


def _legend_outside(ax: Axes, title: str) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  frameon=False)


def _rotate_if_crowded(ax: Axes, n: int) -> None:
    if n > 6:
        ax.tick_params(axis="x", labelrotation=45)


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center",
            color="grey")
