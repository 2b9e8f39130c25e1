"""The agents page: who holds what, and what each client's token and rewards did.

- `wealth_histogram_option`: the distribution of one agent type's wealth, at spot and if sold
  (what each agent would have in USD after selling everything alone), the Boltzmann-style
  view of who is rich.
- `holdings_heatmap_option`: investors x tokens, each cell the investor's tokens of that
  client valued at spot (USD); clicking a cell opens that client below.
- `largest_holders`: per token, its largest direct holders (pools included) with their share
  of the supply.
- the client panel: the selected client's token holders, and its contribution and reward in
  every round so far.

Everything is read from the live model (ledger balances, agents' latest marks, the rounds so
far), so the page shows the current step, genesis included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import solara

from abm.amm import ONE
from abm.collect import AGENT_TYPE_COLOURS, AGENT_TYPE_LABELS
from abm.viz.echarts import DECIMALS, axis, base_option, client_colours
from abm.viz.panels import (
    CHART_HEIGHT_PX,
    TOGGLE_HEIGHT_PX,
    EChart,
    Grid,
    LiveHTML,
    LiveText,
    html_table,
)

#: Agent types, in the order of the histogram's toggle, with their display names.
AGENT_TYPE_NAMES = {k: AGENT_TYPE_LABELS[k] for k in ("investor", "client", "lp", "federation")}
#: Heatmap rows up to which every row is labelled with its investor and strategy; beyond, only
#: the middle row of each strategy's block is (with the tooltip naming every cell's investor).
LABELLED_HEATMAP_ROWS = 40
#: Bins of the wealth histogram (fewer when there are fewer agents).
HISTOGRAM_BINS = 12
#: Holders listed per token in the largest-holders table, and in the client panel.
TOP_HOLDERS = 3
CLIENT_HOLDERS = 10
#: Most investors drawn as heatmap rows (the largest holders first beyond that).
MAX_HEATMAP_ROWS = 200


def wealth_histogram_option(model: Any, agent_type: str) -> dict[str, Any]:
    """Histogram of the wealth of every `agent_type` agent now (USD), at spot and if sold.

    Both valuations share the bins (equal widths from the lowest to the highest value of
    either), so the if-sold bars sit left of the spot bars by what selling would cost.
    """
    members = [a for a in model.agents if a.agent_type == agent_type]
    spot = np.array([a.wealth for a in members], dtype=float)
    sold = np.array([a.wealth_if_sold for a in members], dtype=float)
    name = AGENT_TYPE_NAMES.get(agent_type, agent_type)
    colour = AGENT_TYPE_COLOURS.get(agent_type, "#1f77b4")
    option = base_option(f"Wealth distribution of the {name} at step {model.steps} (USD)")
    if not members:
        option["title"]["subtext"] = f"no {name} in this scenario"
        return option
    bins = max(1, min(HISTOGRAM_BINS, 2 * math.ceil(math.sqrt(len(members)))))
    low, high = float(min(spot.min(), sold.min())), float(max(spot.max(), sold.max()))
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    labels = [f"{edges[i]:,.0f}–{edges[i + 1]:,.0f}" for i in range(bins)]
    option.update({
        "tooltip": {"trigger": "axis"},
        "legend": {"data": ["at spot", "if sold"], "top": 28, "left": 8},
        "grid": {"top": 64, "left": 52, "right": 16, "bottom": 64},
        "xAxis": axis("wealth (USD)", type="category", data=labels, nameGap=48,
                       axisLabel={"rotate": 30, "fontSize": 10}),
        "yAxis": axis("agents", type="value", minInterval=1, nameGap=32),
        "series": [
            {"type": "bar", "name": "at spot", "data": np.histogram(spot, edges)[0].tolist(),
             "itemStyle": {"color": colour}},
            # The type's colour throughout (as in every chart and report figure), if sold
            # paler.
            {"type": "bar", "name": "if sold", "data": np.histogram(sold, edges)[0].tolist(),
             "itemStyle": {"color": colour, "opacity": 0.45}},
        ],
    })
    return option


def holdings(model: Any) -> tuple[list[Any], np.ndarray]:
    """Investors (by strategy, then id) and their token holdings, shape (investors, clients),
    whole tokens."""
    investors = sorted((a for a in model.agents if a.agent_type == "investor"),
                       key=lambda a: (a.strategy, a.unique_id))
    ledger = model.ledger
    amounts = np.array([[ledger.balance(a.account, c) / ONE for c in model.client_ids]
                        for a in investors], dtype=float).reshape(len(investors),
                                                                  len(model.client_ids))
    return investors, amounts


def holdings_heatmap_option(model: Any) -> dict[str, Any]:
    """Investors x tokens: each cell the investor's tokens of that client at spot (USD).

    Rows are investors grouped by strategy (at most `MAX_HEATMAP_ROWS`, the largest holders
    if there are more); the tooltip gives the tokens, their spot value and their share of
    the token's supply. Empty cells are left blank.
    """
    investors, amounts = holdings(model)
    clients = model.client_ids
    prices = np.array([model.market.pools[c].spot_price() for c in clients])
    supply = np.array([model.ledger.supply(c) / ONE for c in clients])
    values = amounts * prices
    if len(investors) > MAX_HEATMAP_ROWS:
        keep = np.sort(np.argsort(-values.sum(axis=1), kind="stable")[:MAX_HEATMAP_ROWS])
        investors, amounts, values = [investors[i] for i in keep], amounts[keep], values[keep]
    data = []
    for i, inv in enumerate(investors):
        for j, c in enumerate(clients):
            if amounts[i, j] <= 0:
                continue
            data.append({
                "value": [j, i, round(float(values[i, j]), 2)],
                "name": (f"investor {inv.unique_id} ({inv.strategy}) · {c}: "
                         f"{amounts[i, j]:,.2f} tokens = {values[i, j]:,.2f} USD at spot "
                         f"({amounts[i, j] / supply[j]:.2%} of supply)"),
            })
    option = base_option(f"Investors' holdings at spot, step {model.steps} (USD; click a client)")
    top = float(values.max()) if values.size else 0.0
    option.update({
        "tooltip": {"trigger": "item", "formatter": "{b}"},
        "grid": {"top": 40, "left": 120, "right": 80, "bottom": 40},
        "xAxis": axis("client token", type="category", data=list(clients), nameGap=24,
                       splitArea={"show": True}),
        "yAxis": {"type": "category", "inverse": True, "data": heatmap_row_labels(investors),
                  "axisTick": {"show": False},
                  "axisLabel": {"interval": 0, "fontSize": 10}},
        "visualMap": {"min": 0, "max": max(top, 1e-6), "calculable": True, "orient": "vertical",
                      "right": 4, "top": "middle", "itemHeight": 160,
                      "text": ["USD", ""], "inRange": {"color": ["#e3f2fd", "#0d47a1"]}},
        "series": [{"type": "heatmap", "name": "holdings (USD at spot)", "data": data,
                    "emphasis": {"itemStyle": {"borderColor": "#000", "borderWidth": 1}}}],
    })
    if not investors:
        option["title"]["subtext"] = "no investors in this scenario"
    return option


def heatmap_row_labels(investors: Sequence[Any]) -> list[str]:
    """The heatmap's row labels: "12 momentum" (investor id, strategy) for every row up to
    `LABELLED_HEATMAP_ROWS` rows; beyond that (rows a few pixels high) the strategy once, on
    the middle row of its block (rows are grouped by strategy), and the other rows blank."""
    if len(investors) <= LABELLED_HEATMAP_ROWS:
        return [f"{inv.unique_id} {inv.strategy.replace('_', ' ')}" for inv in investors]
    labels = [""] * len(investors)
    start = 0
    for i in range(1, len(investors) + 1):
        if i == len(investors) or investors[i].strategy != investors[start].strategy:
            labels[(start + i - 1) // 2] = (f"{investors[start].strategy.replace('_', ' ')} "
                                            f"({i - start})")
            start = i
    return labels


def token_holders(model: Any, client: str, limit: int | None = None
                  ) -> list[tuple[str, str, float, float]]:
    """Direct holders of `client`'s token, largest first: (holder, type, tokens, share of
    supply). The type is `client`, `investor`, `lp`, `federation` or `pool` (a pool's tokens
    belong to its liquidity-share holders)."""
    supply = model.ledger.supply(client)
    by_account = {a.account: a for a in model.agents}
    rows = []
    for account, amount in sorted(model.ledger.holders(client).items(),
                                  key=lambda kv: (-kv[1], kv[0])):
        if amount <= 0:
            continue
        agent = by_account.get(account)
        kind = model.holder_type(account)
        who = account if agent is None else (
            f"{account} ({agent.strategy})" if kind in ("investor", "lp") else account)
        rows.append((who, kind, amount / ONE, amount / supply if supply else math.nan))
    return rows[:limit] if limit else rows


def largest_holders_html(model: Any) -> str:
    """Per token, its `TOP_HOLDERS` largest holders with their share of the supply."""
    rows = []
    for c in model.client_ids:
        top = token_holders(model, c, TOP_HOLDERS)
        rows.append([c, *(f"{who} {share:.1%}" for who, _, _, share in top),
                     *([""] * (TOP_HOLDERS - len(top)))])
    headers = ["token", *(f"#{i + 1} holder (share of supply)" for i in range(TOP_HOLDERS))]
    return html_table(headers, rows, "wsf-holders-table")


def client_history_option(model: Any, client: str) -> dict[str, Any]:
    """`client`'s contribution (bars, method units) and allotted reward (line, USD) per round."""
    rows = [r for r in model.round_rows if r["client"] == client]
    colour = client_colours(model.client_ids).get(client, "#1f77b4")
    option = base_option(f"{client}: contribution and reward per round")
    option.update({
        "tooltip": {"trigger": "axis"},
        "legend": {"data": ["contribution", "reward allotted (USD)"], "top": 28, "left": 8},
        "grid": {"top": 64, "left": 56, "right": 64, "bottom": 36},
        "xAxis": axis("round", type="category", data=[int(r["round"]) for r in rows],
                       nameGap=22),
        "yAxis": [axis("contribution", type="value", nameGap=40),
                  axis("USD", type="value", nameGap=44)],
        "series": [
            {"type": "bar", "name": "contribution", "itemStyle": {"color": colour},
             "data": [round(float(r["contribution"]), DECIMALS) for r in rows]},
            {"type": "line", "name": "reward allotted (USD)", "yAxisIndex": 1,
             "itemStyle": {"color": "#424242"},
             "data": [round(float(r["reward_usd"]), 2) for r in rows]},
        ],
    })
    if not rows:
        option["title"]["subtext"] = "no FL round yet"
    return option


def client_holders_html(model: Any, client: str) -> str:
    """The `CLIENT_HOLDERS` largest holders of `client`'s token, with value at spot."""
    price = model.market.pools[client].spot_price()
    rows = [[who, kind, f"{tokens:,.2f}", f"{share:.2%}", f"{tokens * price:,.2f}"]
            for who, kind, tokens, share in token_holders(model, client, CLIENT_HOLDERS)]
    return html_table(["holder", "type", "tokens", "share of supply", "USD at spot"], rows,
                      "wsf-client-holders")


#: The agents page's state, per browser session: the histogram's agent type and the client
#: shown in the client panel ("" = the first client).
histogram_type = solara.reactive("investor")
selected_client = solara.reactive("")


TITLE_STYLE = "font-weight: bold; font-size: 14px;"


@solara.component
def WealthHistogram(model: Any):
    present = [t for t in AGENT_TYPE_NAMES if any(a.agent_type == t for a in model.agents)]
    kind = histogram_type.value if histogram_type.value in present else present[0]
    with solara.Column(gap="0px") as main:
        solara.ToggleButtonsSingle(value=kind, values=present, on_value=histogram_type.set,
                                   dense=True, classes=["wsf-agent-type"])
        EChart(lambda: wealth_histogram_option(model, kind), [model, kind],
               height_px=CHART_HEIGHT_PX - TOGGLE_HEIGHT_PX)
    return main


def _client_of(model: Any) -> str:
    chosen = selected_client.value
    return chosen if chosen in model.client_ids else model.client_ids[0]


@solara.component
def HoldingsHeatmap(model: Any):
    def clicked(event: dict[str, Any]) -> None:
        data = event.get("data")
        value = data.get("value") if isinstance(data, dict) else None
        if value is not None and 0 <= int(value[0]) < len(model.client_ids):
            selected_client.set(model.client_ids[int(value[0])])

    return EChart(lambda: holdings_heatmap_option(model), [model], on_click=clicked)


@solara.component
def LargestHolders(model: Any):
    with solara.Column(gap="4px", style={"padding": "4px 8px"}) as main:
        LiveText(lambda: f"Largest holders per token, step {model.steps}", [model],
                 "wsf-holders-title", TITLE_STYLE)
        solara.Text("Direct balances; a pool's tokens belong to its liquidity-share holders.",
                    style={"font-size": "12px", "color": "#616161"})
        LiveHTML(lambda: largest_holders_html(model), [model])
    return main


@solara.component
def ClientPanel(model: Any):
    client = _client_of(model)
    with solara.Column(gap="4px", style={"padding": "4px 8px"}) as main:
        LiveText(lambda: f"{client}'s token: its largest holders at step {model.steps}",
                 [model, client], "wsf-client-title", TITLE_STYLE)
        solara.Select("Client (or click a column of the heatmap)", value=client,
                      values=list(model.client_ids), on_value=selected_client.set,
                      classes=["wsf-client-select"])
        LiveHTML(lambda: client_holders_html(model, client), [model, client],
                 style="max-height: 220px;")
    return main


@solara.component
def ClientHistory(model: Any):
    client = _client_of(model)
    return EChart(lambda: client_history_option(model, client), [model, client])


#: The agents page's panels, in order.
AGENTS: list[Any] = [WealthHistogram, HoldingsHeatmap, ClientPanel, ClientHistory,
                     LargestHolders]


@solara.component
def AgentsPage(model: Any):
    """Wealth distribution, holdings heatmap, largest holders, and the selected client's
    holders and round history (`AGENTS`)."""
    return Grid(children=[panel(model) for panel in AGENTS])
