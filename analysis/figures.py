"""Seaborn figures of one run, saved as PNG (screen, report) and PDF (papers).

Figures are drawn on `matplotlib.figure.Figure` objects with an Agg canvas, never through
`pyplot`: no window can open, no global figure list grows across a sweep, and nothing depends
on the backend a caller (a notebook, the Solara app) has selected. Styles are applied in
seaborn context managers so that making figures does not change a caller's rcParams. Every
table is aggregated with pandas before plotting: seaborn only ever sees one point per line
per step, so a 500-step run with ~110 agents draws in a few seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

from abm.collect import AGENT_TYPE_COLOURS, AGENT_TYPE_LABELS, AGENT_TYPES
from analysis.market_stats import ACF_CONFIDENCE, ACF_LAGS, acf_table, round_every
from analysis.metrics import (
    adaptive_choices,
    adaptive_clients,
    client_rewards,
    lp_decomposition,
    money_by_holder,
    money_flows,
)
from analysis.runs import PRICE_PREFIX, Run

FIGURE_NAMES = ("reward_vs_equal", "token_prices", "contributions", "wealth_by_type", "lp_pnl",
                "money", "participation", "actions", "autocorrelation", "strategy_shares")
FORMATS = ("png", "pdf")
PNG_DPI = 150
SIZE = (7.5, 4.2)  # inches: full text width of a paper page, legend beside the axes


def save_figure(figure: Figure, folder: Path, name: str, formats: Sequence[str]) -> list[Path]:
    """Write `figure` as `folder/<name>.<fmt>` for each format (PNG at `PNG_DPI`, vector
    formats at their own resolution); returns the files written, in `formats` order."""
    written = []
    for fmt in formats:
        file = folder / f"{name}.{fmt}"
        figure.savefig(file, dpi=PNG_DPI if fmt == "png" else None)
        written.append(file)
    return written


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
        "money": plot_money,
        "participation": plot_participation,
        "actions": plot_actions,
        "strategy_shares": plot_strategy_shares,
    }
    # Figures of several panels draw on the whole figure.
    figure_painters: dict[str, Callable[[Run, Figure], None]] = {
        "autocorrelation": plot_autocorrelation,
    }
    written: list[Path] = []
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.1):
        for name in FIGURE_NAMES:
            fig = Figure(figsize=SIZE, layout="constrained")
            FigureCanvasAgg(fig)
            if name in figure_painters:
                figure_painters[name](run, fig)
            else:
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
    """Per client, side by side: `allotted_vs_equal_pct` (what the policy allotted) and
    `attributable_vs_equal_pct` (what the run delivered beyond its counterfactual twin, at
    realisable value), both in % against the equal split, which is the labelled 0 line.
    Without a twin only the allotment is drawn and the title says so."""
    table = client_rewards(run)
    equal = float(table["equal_split_usd"].iloc[0]) if len(table) else float("nan")
    # With participation (docs/model.md, 7.13) each client's equal split covers the rounds
    # it trained in, so the figure cannot name one amount.
    same = len(table) and bool(np.allclose(table["equal_split_usd"], equal, rtol=1e-12))
    labels = dict(zip(run.client_ids, _client_labels(run), strict=True))
    long = table.melt(id_vars="client",
                      value_vars=["allotted_vs_equal_pct", "attributable_vs_equal_pct"],
                      var_name="measure", value_name="pct")
    long["measure"] = long["measure"].map({
        "allotted_vs_equal_pct": "allotted by the policy",
        "attributable_vs_equal_pct": "attributable (run − twin, if sold)"})
    long["client"] = long["client"].map(labels)
    has_twin = table["attributable_vs_equal_pct"].notna().any()
    if not has_twin:
        long = long[long["measure"] == "allotted by the policy"]
    if long["pct"].notna().any():
        sns.barplot(data=long, x="client", y="pct", hue="measure",
                    palette=["#2e86c1", "#e67e22"][: long["measure"].nunique()], ax=ax)
    else:
        _no_data(ax, "no reward was budgeted: the equal split is 0")
    ax.axhline(0.0, color="black", linewidth=1.0, label="equal split (R / N per round)")
    _legend_outside(ax, "Measure")
    ax.set_xlabel("Client (behaviour)")
    ax.set_ylabel("Difference from the equal split (%)")
    twin = "" if has_twin else "; no counterfactual twin: attributable not measured"
    split = (f"equal split {equal:,.2f} USD per client" if same
             else "equal split over the rounds each client trained")
    ax.set_title(f"Reward vs equal split, % ({run.policy}; {split}{twin})")
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


def plot_participation(run: Run, ax: Axes) -> None:
    """Clients training in each FL round, stacked by behaviour (bars, left axis), and the
    validation accuracy of the global model after the round (line, right axis, %): what the
    participation rules (docs/model.md, 7.13) did to the federation's learning."""
    rounds = run.rounds
    ax.set_xlabel("FL round")
    ax.set_ylabel("Clients training in the round")
    ax.set_title("Participation and the accuracy it led to, per FL round")
    if rounds.empty or "participating" not in rounds.columns:
        _no_data(ax, "no FL round with participation recorded in this run")
        return
    counts = (rounds.assign(training=rounds["participating"].astype(int))
              .pivot_table(index="round", columns="behaviour", values="training",
                           aggfunc="sum").sort_index())
    _stacked_bars(ax, counts, _behaviour_palette(pd.Series(counts.columns)))
    ax.set_ylim(0, len(run.client_ids) + 0.5)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.xaxis.get_major_locator().set_params(integer=True)
    accuracy = rounds.groupby("round")["accuracy"].first().sort_index() * 100.0
    twin = ax.twinx()
    twin.plot(accuracy.index, accuracy.to_numpy(), color="black", marker="o" if
              len(accuracy) <= 30 else None, markersize=3, label="accuracy (right axis)")
    twin.set_ylabel("Validation accuracy after the round (%)")
    twin.set_ylim(0, 100)
    twin.grid(False)
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = twin.get_legend_handles_labels()
    ax.legend(handles + more, labels + more_labels, title="Clients training, by behaviour",
              loc="upper left", bbox_to_anchor=(1.12, 1.0), frameon=False)


def plot_actions(run: Run, ax: Axes) -> None:
    """Share of the adaptive clients choosing each action in each FL round (stacked bars, %
    of the adaptive clients, docs/model.md 7.16): whether the mechanism makes honest
    training the choice clients learn to make."""
    from abm.agents.conduct import ACTIONS  # the one list of actions, in its order

    ax.set_xlabel("FL round")
    ax.set_ylabel("Adaptive clients choosing it (% of those invited)")
    ax.set_title("Actions the adaptive clients chose, per FL round")
    # Of the clients invited to the round: the others chose nothing (docs/model.md, 7.15).
    mine = adaptive_choices(run)
    if mine.empty:
        _no_data(ax, "no client with an adaptive conduct in this run")
        return
    shares = (pd.crosstab(mine["round"], mine["action"], normalize="index") * 100.0)
    shares = shares[[a for a in ACTIONS if a in shares.columns]].sort_index()
    _stacked_bars(ax, shares, dict(zip(ACTIONS, sns.color_palette("colorblind", len(ACTIONS)),
                                       strict=True)))
    ax.set_ylim(0, 100)
    ax.xaxis.get_major_locator().set_params(integer=True)
    _legend_outside(ax, f"Action ({len(adaptive_clients(run))} adaptive clients)")


#: model.parquet's columns of the share of investors using each strategy (switching runs).
SHARE_PREFIX = "strategy_share_"


def strategy_shares(run: Run) -> pd.DataFrame:
    """The share of all investors using each strategy, steps x strategies (fractions): from
    model.parquet's `strategy_share_<name>` columns (every step) in a run whose investors
    switch strategies (docs/model.md, 7.17), else from agents.parquet's `strategy` of the
    investors at its collected steps (constant: nobody switches). Empty without investors."""
    columns = [c for c in run.model.columns if c.startswith(SHARE_PREFIX)]
    if columns:
        shares = run.model.sort_values("step").set_index("step")[columns]
        return shares.rename(columns=lambda c: c[len(SHARE_PREFIX):])
    investors = run.agents[run.agents["agent_type"] == "investor"]
    if investors.empty:
        return pd.DataFrame()
    counts = (investors.groupby(["step", "strategy"], observed=True).size()
              .unstack(fill_value=0).sort_index())
    return counts.div(counts.sum(axis=1), axis=0)


def plot_strategy_shares(run: Run, ax: Axes) -> None:
    """The share of all investors using each strategy at the end of each step (%), one line
    per strategy: where investors switch strategies (docs/model.md, 7.17) the shares move;
    otherwise they are flat at the scenario's groups."""
    shares = strategy_shares(run)
    ax.set_xlabel("Step")
    ax.set_ylabel("Share of investors using the strategy (%)")
    ax.set_title("Strategy shares over time (share of all investors)")
    if shares.empty:
        _no_data(ax, "no investors in this run")
        return
    for name in shares.columns:
        ax.plot(shares.index, shares[name].to_numpy() * 100.0, label=name, linewidth=1.2)
    ax.set_ylim(0, 100)
    ax.legend(title="Strategy", loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)


def plot_wealth_by_type(run: Run, ax: Axes) -> None:
    """Total wealth (USD) summed over the agents of each type (the federation included), over
    steps: solid at spot (cash plus tokens and liquidity marked at spot), dashed if sold
    (what each agent would hold after selling everything alone)."""
    table = (run.agents.groupby(["step", "agent_type"], as_index=False)
             [["wealth", "wealth_if_sold"]].sum()
             .melt(id_vars=["step", "agent_type"], var_name="valuation", value_name="usd"))
    table["valuation"] = table["valuation"].map({"wealth": "at spot",
                                                 "wealth_if_sold": "if each sold alone"})
    # Legend names and colours are the browser app's (`abm.collect.AGENT_TYPE_LABELS`,
    # `AGENT_TYPE_COLOURS`), not the table's codes.
    present = [k for k in AGENT_TYPES if k in set(table["agent_type"].astype(str))]
    table["agent type"] = table["agent_type"].astype(str).map(AGENT_TYPE_LABELS)
    sns.lineplot(data=table, x="step", y="usd", hue="agent type", style="valuation",
                 hue_order=[AGENT_TYPE_LABELS[k] for k in present],
                 palette={AGENT_TYPE_LABELS[k]: AGENT_TYPE_COLOURS[k] for k in present},
                 style_order=["at spot", "if each sold alone"], estimator=None, sort=False,
                 linewidth=1.4, ax=ax)
    _legend_outside(ax, "Agent type / valuation")
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.set_xlabel("Step")
    ax.set_ylabel("Sum over the type's agents (USD)")
    # Each agent's sale alone, summed: not what the type would fetch selling together (the
    # same pool USD backs every holder), which the report's holder table gives.
    ax.set_title("Wealth by agent type: at spot, and if each agent sold alone (USD)")


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
        # Fees are often a hundredth of the price effect: a bar too short to see, so each
        # fee bar carries its amount.
        ax.bar_label(ax.containers[0], labels=[f"fees {v:,.2f}" for v in
                                               table["fees_earned_usd"]],
                     fontsize=7, padding=2, color="#4c9a2a")
        ax.scatter(np.arange(len(table)), table["pnl_usd"], marker="D", color="black",
                   zorder=3, label="total PnL")
        _legend_outside(ax, "Component")
        _rotate_if_crowded(ax, len(table))
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("Liquidity provider (exit rule)")
    ax.set_ylabel("PnL (USD)")
    ax.set_title("Liquidity providers: PnL decomposition")


def plot_money(run: Run, ax: Axes) -> None:
    """Where the money went (USD, run totals), a stacked bar per holder type and the pools:
    the net change of the USD it holds, split into what the reward budget paid it
    (`rewards`: cash, dividends, buyback or mint USD into pools, the treasury's kept part)
    and net USD from trading (swaps, deposits, genesis token sales). Trading sums to zero
    across the bars: it only moves USD between holders."""
    table = money_by_holder(run)
    if table.empty:
        _no_data(ax, "this run has no money table (written before the books existed)")
        ax.set_title("Where the money went (USD)")
        return
    x = np.arange(len(table))
    rewards = table["rewards_usd"].to_numpy(dtype=float)
    trading = table["trading_usd"].to_numpy(dtype=float)
    # Stack each part away from 0 on its own side, so a negative part is never hidden.
    base_pos = np.where(rewards > 0, rewards, 0.0)
    base_neg = np.where(rewards < 0, rewards, 0.0)
    ax.bar(x, rewards, color="#2e86c1", label="from the reward budget")
    ax.bar(x, trading, bottom=np.where(trading >= 0, base_pos, base_neg), color="#e67e22",
           label="net from trading and liquidity")
    total = rewards + trading
    if "training_costs_usd" in table.columns:  # clients paid for training (7.13)
        costs = table["training_costs_usd"].to_numpy(dtype=float)
        base_pos = base_pos + np.where(trading > 0, trading, 0.0)
        base_neg = base_neg + np.where(trading < 0, trading, 0.0)
        ax.bar(x, costs, bottom=np.where(costs >= 0, base_pos, base_neg), color="#7d3c98",
               label="training costs")
        total = total + costs
    ax.scatter(x, total, marker="D", color="black", zorder=3,
               label="net change of USD held")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, table["holder"], rotation=20)
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    budget = money_flows(run).set_index("flow")["usd"].iloc[0]
    ax.set_xlabel("Holder of the USD")
    ax.set_ylabel("Change of USD held, genesis to end (USD)")
    ax.set_title(f"Where the money went: USD held, genesis to end\n({budget:,.0f} USD of "
                 "reward budgets paid in)")
    _legend_outside(ax, "Part")


def plot_autocorrelation(run: Run, fig: Figure) -> None:
    """Two panels, lags 1..20 steps: the autocorrelation of each token's per-step log returns
    (left) and of their absolute values (right), one thin line per token and the median
    across tokens in black, with the band of an i.i.d. series (+- z / sqrt(T), 95 %) shaded
    around 0 and the FL-round lag (`round_every`) marked. Per token, not pooled: tokens'
    volatilities differ by orders of magnitude (analysis.market_stats)."""
    table = acf_table(run, ACF_LAGS)
    lag = round_every(run)
    axes = fig.subplots(1, 2, sharey=True)
    n = len(run.client_ids)
    for ax, series in zip(axes, ("returns", "absolute returns"), strict=True):
        part = table.loc[table["series"] == series]
        if part["acf"].notna().any():
            for _, token in part.groupby("client", sort=False):
                ax.plot(token["lag"], token["acf"], color="#7fa7c9", linewidth=0.7, alpha=0.7)
            median = part.groupby("lag")["acf"].median()
            ax.plot(median.index, median.to_numpy(), color="black", marker="o", markersize=3,
                    linewidth=1.6, label=f"median across the {n} tokens")
            band = float(part["band"].dropna().iloc[0]) if part["band"].notna().any() else 0
            ax.axhspan(-band, band, color="grey", alpha=0.2,
                       label=f"i.i.d. band ({ACF_CONFIDENCE:.0%})")
        else:
            _no_data(ax, "no price moved: no autocorrelation")
        ax.plot([], [], color="#7fa7c9", linewidth=0.7, label="one token")
        if lag and lag <= ACF_LAGS:
            ax.axvline(lag, color="#c0392b", linestyle=":", linewidth=1.0,
                       label=f"FL round lag ({lag} steps)")
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xlabel("Lag (steps)")
        ax.set_title(f"ACF of {'|log return|' if series != 'returns' else 'log return'}")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_ylabel("Autocorrelation")
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False,
               fontsize="small")
    fig.suptitle("Autocorrelation of each token's per-step log price returns, lags 1-"
                 f"{ACF_LAGS} steps\n(per token, and the median across tokens)")


def _client_labels(run: Run) -> list[str]:
    """`"c00 (honest)"` per client, in client order."""
    clients = run.agents.loc[run.agents["agent_type"] == "client"]
    behaviour = clients.drop_duplicates("client").set_index("client")["strategy"]
    return [f"{c} ({behaviour[c]})" if c in behaviour.index else c for c in run.client_ids]


def _stacked_bars(ax: Axes, table: pd.DataFrame, palette: Mapping[str, Any]) -> None:
    """One bar per row of `table` (x: its index), its columns stacked in order, each
    coloured by `palette` and labelled by its name."""
    bottom = np.zeros(len(table))
    for column in table.columns:
        values = table[column].to_numpy(dtype=float)
        ax.bar(table.index, values, bottom=bottom, color=palette[column], width=0.85,
               label=column)
        bottom += values


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
