"""The market page: which charts it shows, in which order, with which titles and units.

Each chart is one function of the model that picks what it plots (`Lines`), declared with its
title and y-axis unit by the chart factory (`abm.viz.panels.line_chart`), and one entry of
`MARKET`, the page's panels in order; the round table is the page's last panel. The chart kit
(option builders, the model table, the live panels) is `abm.viz.echarts` and
`abm.viz.panels`; the other pages are `abm.viz.agents` and `abm.viz.twin`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import solara

from abm.collect import AGENT_TYPE_COLOURS, AGENT_TYPE_LABELS
from abm.viz.echarts import Lines, ObservedModel, client_colours, model_table
from abm.viz.events import event_label, event_markers
from abm.viz.panels import Grid, LineChart, LiveHTML, LiveText, Toggle, line_chart

#: Agent types shown in the wealth chart, with the table columns that hold their total at
#: spot and if sold (what selling everything alone would fetch).
WEALTH_COLUMNS = {
    "clients at spot": "wealth/client", "clients if sold": "wealth_if_sold/client",
    "investors at spot": "wealth/investor", "investors if sold": "wealth_if_sold/investor",
    "liquidity providers at spot": "wealth/lp", "liquidity providers if sold":
    "wealth_if_sold/lp",
    "federation at spot": "wealth/federation", "federation if sold":
    "wealth_if_sold/federation",
}


# -- the charts --------------------------------------------------------------------------------


@line_chart("Token price per client", y_name="USD per token")
def price_chart(model: ObservedModel) -> Lines:
    """Spot price of each client's token (USD per token), with the run's events marked:
    FL rounds as dashed lines, windows (a pump, an offering) as shaded bands, and point
    events (a client leaving or rejoining, a dump) as pins on the client's price line; each
    with its description as tooltip (`event_markers`)."""
    frame, clients, events = model_table(model), model.client_ids, list(model.events)
    rounds = {int(e["step"]): event_label(e) for e in events if e["kind"] == "round"}
    others = [e for e in events if e["kind"] != "round"]
    return Lines(frame, {c: f"price/{c}" for c in clients}, marker_labels=rounds,
                 colours=client_colours(clients), extra=event_markers(others, frame, clients))


@line_chart("Contribution signal per client", y_name="score (latest round)")
def contribution_chart(model: ObservedModel) -> Lines:
    """Each client's contribution score of the latest round (method units; 0 before round 1)."""
    clients = model.client_ids
    return Lines(model_table(model), {c: f"contribution/{c}" for c in clients},
                 steps_shape=True, colours=client_colours(clients))


@line_chart("Pool liquidity (USD reserve per pool)", y_name="USD")
def reserves_chart(model: ObservedModel) -> Lines:
    """USD reserve of each client's pool (USD): half the value a V2 pool holds at spot."""
    clients = model.client_ids
    return Lines(model_table(model), {c: f"reserve_usd/{c}" for c in clients},
                 colours=client_colours(clients))


#: The wealth chart's valuations (its toggle), and which `WEALTH_COLUMNS` each shows.
VALUATIONS = {"at spot": (" at spot",), "if sold": (" if sold",),
              "both": (" at spot", " if sold")}
#: Colour per agent type in the wealth charts (spot solid, if sold dashed in the same colour).
TYPE_COLOURS = {AGENT_TYPE_LABELS[k]: colour for k, colour in AGENT_TYPE_COLOURS.items()}


def wealth_lines(model: ObservedModel, valuation: str = "both") -> Lines:
    """Wealth of each agent type (clients, investors, liquidity providers, the federation) as
    the change since genesis (USD), at spot, if sold, or both (`VALUATIONS`).

    Changes rather than levels: the types start orders of magnitude apart (a few investors'
    cash against every client's whole token supply), and who gains is the question. If sold
    beside spot, because a thin pool's spot mark can be far above what selling would fetch:
    each type keeps its colour, the if-sold line is dashed.
    """
    frame = model_table(model)
    suffixes = VALUATIONS[valuation]
    present = {label: col for label, col in WEALTH_COLUMNS.items()
               if col in frame and label.endswith(suffixes)}
    levels = frame[list(present.values())]
    change = levels - levels.iloc[0] if not levels.empty else levels
    colours = {label: TYPE_COLOURS[label.rsplit(" ", 2)[0]] for label in present}
    return Lines(change, present, colours=colours,
                 dashed=[label for label in present if label.endswith(" if sold")])


#: The wealth chart of each valuation, in toggle order: the same lines (`wealth_lines`), its
#: title naming the valuation shown.
WEALTH_CHARTS = {
    valuation: LineChart(f"Wealth change by agent type since step 0, "
                         f"{'at spot and if sold' if valuation == 'both' else valuation}",
                         "USD", partial(wealth_lines, valuation=valuation))
    for valuation in VALUATIONS
}


@line_chart("Global model accuracy", y_name="validation accuracy")
def accuracy_chart(model: ObservedModel) -> Lines:
    """Validation accuracy of the global FL model (fraction in [0, 1])."""
    return Lines(model_table(model), {"accuracy": "accuracy"}, y_range=(0.0, 1.0),
                 steps_shape=True)


#: Prefix of the model table's columns holding the share of investors using each strategy,
#: present only where investors switch strategies (docs/model.md, 7.17).
STRATEGY_SHARE = "strategy_share_"


def strategy_columns(frame: Any) -> list[str]:
    """The model table's strategy-share columns, in table order (none without switching)."""
    return [c for c in frame.columns if c.startswith(STRATEGY_SHARE)]


@line_chart("Share of investors using each strategy", y_name="share of investors")
def strategy_chart(model: ObservedModel) -> Lines:
    """Fraction (0..1) of all investors whose active strategy is each one, per step; shown
    only where investors switch (`MarketPage`): elsewhere the shares never move."""
    frame = model_table(model)
    return Lines(frame, {c.removeprefix(STRATEGY_SHARE): c for c in strategy_columns(frame)},
                 y_range=(0.0, 1.0))


# -- the latest round's table -----------------------------------------------------------------

#: Headers of the round table, in order (money in USD, tokens in whole tokens).
ROUND_TABLE_HEADERS = ("client", "behaviour", "contribution", "share", "allotted (USD)",
                       "supply change (tokens)", "price (USD/token)")


def round_table(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The latest round's rows (rounds.parquet columns) as display strings.

    One list per client in `ROUND_TABLE_HEADERS` order; the behaviour is marked with the
    action an adaptive client chose when it is not its behaviour (``honest → free_ride``,
    docs/model.md 7.16); the supply change is tokens minted minus tokens burned by the
    reward policy, the price is before -> after the reward flow.
    """
    return [
        [
            str(row["client"]),
            # A client that left the federation keeps its row (contribution 0, reward 0).
            _behaviour_cell(row) + ("" if row.get("participating", True) else
                                    " (not training)"),
            "—" if math.isnan(row["contribution"]) else f"{row['contribution']:.4f}",
            "—" if math.isnan(row["share"]) else f"{row['share']:.1%}",
            f"{row['reward_usd']:,.2f}",
            f"{row['tokens_minted'] - row['tokens_burned']:+,.2f}",
            f"{row['price_before']:.4f} → {row['price_after']:.4f}",
        ]
        for row in rows
    ]


def _behaviour_cell(row: dict[str, Any]) -> str:
    """The client's behaviour, and the round's action where it chose another one."""
    behaviour = str(row["behaviour"])
    action = str(row.get("action", behaviour))
    return behaviour if action == behaviour else f"{behaviour} → {action}"


def round_table_html(rows: Sequence[dict[str, Any]]) -> str:
    """`round_table` as an HTML table (every cell escaped): one widget instead of one per
    cell, which keeps each re-render of the page cheap."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ROUND_TABLE_HEADERS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>"
        for cells in round_table(rows)
    )
    return (f'<table class="wsf-round-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def round_caption(model: ObservedModel) -> str:
    """Where the run is: step, and when the latest round ran with which accuracy."""
    where = f"Step {model.steps} of {model.config.steps}"
    rows = model.last_round_rows
    if not rows:
        return f"{where} · no FL round yet"
    first = rows[0]
    return (f"{where} · round {first['round']} ran at step {first['step']} · "
            f"accuracy {first['accuracy']:.3f}")


def settings_caption(config: Any) -> str:
    """The knobs the running model was built with (the controls apply on Reset)."""
    budget = config.rewards.budget
    name, info = next((n, i) for n, i in type(budget).model_fields.items() if n != "kind")
    value = getattr(budget, name)
    unit = (info.json_schema_extra or {}).get("unit", "USD")
    paid = (f"{budget.kind} budget ({len(value)} amounts, {unit})" if isinstance(value, list)
            else f"{value:,.0f} {unit}")
    counts: dict[str, int] = {}
    for group in config.investors:
        counts[group.strategy] = counts.get(group.strategy, 0) + group.count
    investors = ", ".join(f"{n} {s.replace('_', ' ')}" for s, n in counts.items() if n) or "none"
    return (f"Running: {config.rewards.policy} rewards, {paid} · "
            f"{config.contribution.method} contributions · investors: {investors} · "
            f"fee {config.market.fee_bps} bps · seed {config.seed}")


def genesis_rows(model: ObservedModel) -> list[dict[str, Any]]:
    """Round-table rows before any round: each client at its genesis price, nothing paid."""
    frame = model_table(model)
    behaviour = {c.token: c.strategy for c in getattr(model, "clients", [])}
    rows = []
    for c in model.client_ids:
        price = float(frame[f"price/{c}"].iloc[-1]) if f"price/{c}" in frame else math.nan
        rows.append({"client": c, "behaviour": behaviour.get(c, ""), "contribution": math.nan,
                     "share": math.nan, "reward_usd": 0.0, "tokens_minted": 0.0,
                     "tokens_burned": 0.0, "price_before": price, "price_after": price})
    return rows


# -- the page ----------------------------------------------------------------------------------


@solara.component
def RoundTable(model: ObservedModel):
    """The latest FL round: each client's contribution, reward share and reward (before the
    first round: the clients with their genesis prices)."""
    with solara.Column(gap="4px", style={"padding": "4px 8px"}) as main:
        solara.Text("Latest FL round: contributions and rewards",
                    style={"font-weight": "bold", "font-size": "14px"})
        LiveText(lambda: round_caption(model), [model], "wsf-round-caption")
        solara.Text(settings_caption(model.config), classes=["wsf-settings-caption"],
                    style={"font-size": "12px", "color": "#616161"})
        LiveHTML(lambda: round_table_html(model.last_round_rows or genesis_rows(model)),
                 [model])
    return main


#: The wealth chart's valuation, per browser session (Solara keeps a reactive per session).
valuation = solara.reactive("both")

#: The market page's panels, in order: a chart is one entry (a `LineChart`, or a `Toggle` of
#: charts), another panel a component of the model.
MARKET: list[Any] = [
    price_chart,
    contribution_chart,
    reserves_chart,
    Toggle(valuation, WEALTH_CHARTS, "wsf-valuation"),
    accuracy_chart,
    RoundTable,
]


@solara.component
def MarketPage(model: ObservedModel):
    """The market page: prices with events, contributions, liquidity, wealth, accuracy and
    the latest round (`MARKET`); where investors switch strategies, their strategies' shares
    before the round table (`strategy_chart`)."""
    shown = list(MARKET)
    if strategy_columns(model_table(model)):
        shown.insert(shown.index(RoundTable), strategy_chart)
    return Grid(children=[panel(model) for panel in shown])
