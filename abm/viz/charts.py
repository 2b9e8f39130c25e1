"""Chart and table components of the browser app.

Every chart is an ECharts figure (Solara's ECharts widget) built from the model's
DataCollector table (one row per step, display units: USD, tokens, accuracy in [0, 1]).
ECharts draws in the browser, so a step only ships the chart's data to the page; Mesa's
matplotlib plot component instead redraws a PNG on the server for every chart and step.
ECharts rather than Altair: Solara's Altair widget loads `vega@5` by a version *range*,
which the bundled `solara-assets` (exact versions only) cannot serve offline, whereas its
ECharts widget loads the exact bundled `echarts@5.4.0`.

The `*_option` functions are pure (model table in, ECharts option dict out) so that they can
be tested without a browser; the components wrap them and redraw after every step (through
`StepRelay`) and on reset (a new model).
"""

from __future__ import annotations

import html
import math
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import solara
import traitlets
from mesa.visualization.utils import update_counter
from solara.components.echarts import EchartsWidget

#: Height of every chart in pixels: fits the 390-pixel cells of SolaraViz's grid layout.
CHART_HEIGHT_PX = 370
#: Decimal places kept when data is sent to the browser: prices are ~1 USD, so six places
#: keep every visible detail while keeping the page update small.
DECIMALS = 6
#: Most steps drawn per series: a chart is about 600 pixels wide, so more points add transfer
#: and drawing time but no detail. Longer runs are drawn at evenly spaced steps.
MAX_POINTS = 600
#: Most FL round markers drawn: beyond this the dashed lines (a few pixels apart) merge into a
#: grey band, so longer runs mark evenly spaced rounds (always the first and latest).
MAX_MARKERS = 100
#: Colour of the FL round markers (dashed vertical lines).
ROUND_MARKER_COLOUR = "#9e9e9e"
#: Name of the legend entry that toggles the FL round markers.
ROUND_MARKER_NAME = "FL round"
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


class ObservedModel(Protocol):
    """What the charts read from a `WallStreetFedsModel` (docs/architecture.md)."""

    client_ids: list[str]
    last_round_rows: list[dict[str, Any]]
    steps: int
    config: Any  # the resolved `abm.scenario.Scenario` the model runs

    @property
    def datacollector(self) -> Any: ...


# -- the model table ---------------------------------------------------------------------------


#: The latest table of each model, so that the charts of one step share one table.
_tables: weakref.WeakKeyDictionary[Any, tuple[int, pd.DataFrame]] = weakref.WeakKeyDictionary()


def model_table(model: ObservedModel) -> pd.DataFrame:
    """The model-level table so far: one row per step (row 0 is genesis), display units.

    Built from the collector's lists directly and cut to the shortest one, so that a render
    that overlaps a step still reads a consistent table (Mesa can step in a thread while
    playing). Cached per model until the next row arrives.
    """
    columns: dict[str, list[float]] = model.datacollector.model_vars
    if not columns:
        return pd.DataFrame()
    n = min(len(values) for values in columns.values())
    cached = _tables.get(model)
    if cached is not None and cached[0] == n:
        return cached[1]
    frame = pd.DataFrame({name: values[:n] for name, values in columns.items()})
    frame.index.name = "step"
    _tables[model] = (n, frame)
    return frame


def drawn_rows(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Row positions to draw out of `n`: all of them up to `limit`, else `limit` evenly
    spaced ones that always include the first (genesis) and the last (current) step."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


def round_steps(frame: pd.DataFrame) -> list[int]:
    """Steps at which an FL round ran: the `round` counter went up in that step."""
    if "round" not in frame or frame.empty:
        return []
    rounds = frame["round"].to_numpy()
    return [int(step) for step in frame.index[1:][rounds[1:] > rounds[:-1]]]


# -- ECharts options ---------------------------------------------------------------------------


def line_option(
    frame: pd.DataFrame,
    series: dict[str, str],
    *,
    title: str,
    y_name: str,
    markers: Sequence[int] = (),
    y_range: tuple[float, float] | None = None,
    steps_shape: bool = False,
) -> dict[str, Any]:
    """An ECharts line chart of table columns against the step.

    Args:
        frame: the model table (`model_table`), indexed by step.
        series: legend label -> table column, in legend (and colour) order.
        title: chart title; `y_name`: the y axis name with its unit.
        markers: steps at which to draw a dashed vertical FL-round marker.
        y_range: fixed (min, max) of the y axis; `None` lets the axis follow the data.
        steps_shape: draw each series as a step function (values that change once a round).
    """
    labels = list(series)
    source: list[list[Any]] = [["step", *labels]]
    if not frame.empty and labels:
        frame = frame.iloc[drawn_rows(len(frame))]
        data = np.round(frame[[series[label] for label in labels]].to_numpy(dtype=float),
                        DECIMALS)
        rows = data.tolist()
        if not np.isfinite(data).all():
            rows = [[v if math.isfinite(v) else None for v in row] for row in rows]
        source.extend([step, *row] for step, row in zip(frame.index.tolist(), rows, strict=True))
    lines: list[dict[str, Any]] = [
        {"type": "line", "name": label, "showSymbol": False, "encode": {"x": "step", "y": label},
         **({"step": "end"} if steps_shape else {})}
        for label in labels
    ]
    legend = [*labels]
    if len(markers):
        lines.append(_round_markers([markers[i] for i in drawn_rows(len(markers), MAX_MARKERS)]))
        legend.append(ROUND_MARKER_NAME)
    y_axis: dict[str, Any] = {"type": "value", "name": y_name, "scale": y_range is None,
                              "nameTextStyle": {"align": "left"}}
    if y_range is not None:
        y_axis["min"], y_axis["max"] = y_range
    return {
        # Animation off: a redraw per step must be instant, and tweening hides the change.
        "animation": False,
        "title": {"text": title, "left": 8, "top": 4, "textStyle": {"fontSize": 14}},
        "tooltip": {"trigger": "axis"},
        "legend": {"type": "scroll", "data": legend, "top": 28, "left": 8, "right": 8},
        "grid": {"top": 84, "left": 64, "right": 20, "bottom": 36},
        "dataset": {"source": source},
        "xAxis": {"type": "value", "name": "step", "min": 0, "max": "dataMax",
                  "nameLocation": "middle", "nameGap": 22, "minInterval": 1,
                  "axisLabel": {"showMaxLabel": False}},
        "yAxis": y_axis,
        "series": lines,
    }


def price_option(frame: pd.DataFrame, clients: Sequence[str]) -> dict[str, Any]:
    """Spot price of each client's token (USD per token), with FL round markers."""
    return line_option(frame, {c: f"price/{c}" for c in clients},
                       title="Token price per client", y_name="USD per token",
                       markers=round_steps(frame))


def contribution_option(frame: pd.DataFrame, clients: Sequence[str]) -> dict[str, Any]:
    """Each client's contribution score of the latest round (method units; 0 before round 1)."""
    return line_option(frame, {c: f"contribution/{c}" for c in clients},
                       title="Contribution signal per client", y_name="score (latest round)",
                       markers=round_steps(frame), steps_shape=True)


def reserves_option(frame: pd.DataFrame, clients: Sequence[str]) -> dict[str, Any]:
    """USD reserve of each client's pool (USD): half the value a V2 pool holds at spot."""
    return line_option(frame, {c: f"reserve_usd/{c}" for c in clients},
                       title="Pool liquidity (USD reserve per pool)", y_name="USD",
                       markers=round_steps(frame))


def wealth_option(frame: pd.DataFrame) -> dict[str, Any]:
    """Wealth of each agent type as the change since genesis (USD), at spot and if sold.

    Changes rather than levels: the types start orders of magnitude apart (a few investors'
    cash against every client's whole token supply), and who gains is the question. Both
    valuations, because a thin pool's spot mark can be far above what selling would fetch.
    """
    present = {label: col for label, col in WEALTH_COLUMNS.items() if col in frame}
    levels = frame[list(present.values())]
    change = levels - levels.iloc[0] if not levels.empty else levels
    return line_option(change, present,
                       title="Wealth change by agent type since step 0, at spot and if sold",
                       y_name="USD", markers=round_steps(frame))


def accuracy_option(frame: pd.DataFrame) -> dict[str, Any]:
    """Validation accuracy of the global FL model (fraction in [0, 1])."""
    return line_option(frame, {"accuracy": "accuracy"}, title="Global model accuracy",
                       y_name="validation accuracy", markers=round_steps(frame),
                       y_range=(0.0, 1.0), steps_shape=True)


def _round_markers(steps: Iterable[int]) -> dict[str, Any]:
    """A data-less series whose mark lines are the FL rounds (its legend entry toggles them)."""
    style = {"type": "dashed", "color": ROUND_MARKER_COLOUR, "width": 1}
    return {
        "type": "line", "name": ROUND_MARKER_NAME, "data": [], "lineStyle": style,
        "itemStyle": {"color": ROUND_MARKER_COLOUR},
        "markLine": {"silent": True, "symbol": "none", "animation": False, "lineStyle": style,
                     "label": {"show": False}, "data": [{"xAxis": s} for s in steps]},
    }


# -- the latest round's table -----------------------------------------------------------------

#: Headers of the round table, in order (money in USD, tokens in whole tokens).
ROUND_TABLE_HEADERS = ("client", "behaviour", "contribution", "share", "allotted (USD)",
                       "supply change (tokens)", "price (USD/token)")


def round_table(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The latest round's rows (rounds.parquet columns) as display strings.

    One list per client in `ROUND_TABLE_HEADERS` order; the supply change is tokens minted
    minus tokens burned by the reward policy, the price is before -> after the reward flow.
    """
    return [
        [
            str(row["client"]),
            str(row["behaviour"]),
            f"{row['contribution']:.4f}",
            f"{row['share']:.1%}",
            f"{row['reward_usd']:,.2f}",
            f"{row['tokens_minted'] - row['tokens_burned']:+,.2f}",
            f"{row['price_before']:.4f} → {row['price_after']:.4f}",
        ]
        for row in rows
    ]


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


#: Style of the round table (a plain HTML table; Vuetify's look, compact).
ROUND_TABLE_CSS = """
.wsf-round-table { border-collapse: collapse; font-size: 12px; width: 100%; }
.wsf-round-table th { text-align: left; font-weight: 600; color: #616161;
                      border-bottom: 1px solid #e0e0e0; padding: 4px 6px; }
.wsf-round-table td { border-bottom: 1px solid #eeeeee; padding: 3px 6px;
                      font-variant-numeric: tabular-nums; white-space: nowrap; }
"""


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


# -- components --------------------------------------------------------------------------------

#: Per-session copy of Mesa's `update_counter` (Solara keeps a reactive's value per browser
#: session). The panels listen to this instead of `update_counter`: Mesa re-renders the page
#: once per listener of `update_counter`, so six panels listening there cost seven render
#: passes per step; `StepRelay` sets this inside its own listener, which Solara batches into
#: one pass for all panels.
step_signal = solara.reactive(0)


@solara.component
def StepRelay():
    """Forwards each change of Mesa's `update_counter` (a step or reset) to `step_signal`."""

    def relay():
        return update_counter.subscribe(step_signal.set)

    solara.use_effect(relay, [])


class Opaque:
    """A value reacton passes along without looking inside.

    Reacton walks every list and dict given to an element in search of child elements; for a
    chart's data (thousands of numbers per step) that walk cost more than the rest of the
    page's render. Wrapped, the option is only unpacked when it is sent to the browser.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _unwrap(value: Any, widget: Any) -> Any:
    return value.value if isinstance(value, Opaque) else value


class ChartWidget(EchartsWidget):
    """Solara's ECharts widget (same template, bundled `echarts@5.4.0`) taking an `Opaque`
    option."""

    option = traitlets.Any({}).tag(sync=True, to_json=_unwrap)


@solara.component
def EChart(option: Opaque):
    """An ECharts figure sized for one cell of SolaraViz's grid; `option` wraps the ECharts
    option dict."""
    return ChartWidget.element(
        option=option, responsive=True, maps={},
        attributes={"style": f"height: {CHART_HEIGHT_PX}px; width: 100%;",
                    "class": "wsf-chart"},
    )


@solara.component
def PriceChart(model: ObservedModel):
    """Token price per client (USD per token) with FL round markers."""
    step_signal.get()
    return EChart(Opaque(price_option(model_table(model), model.client_ids)))


@solara.component
def ContributionChart(model: ObservedModel):
    """Contribution signal per client (latest round's score)."""
    step_signal.get()
    return EChart(Opaque(contribution_option(model_table(model), model.client_ids)))


@solara.component
def ReservesChart(model: ObservedModel):
    """USD reserve of each client's pool (liquidity depth, USD)."""
    step_signal.get()
    return EChart(Opaque(reserves_option(model_table(model), model.client_ids)))


@solara.component
def WealthChart(model: ObservedModel):
    """Wealth by agent type (USD, marked to market)."""
    step_signal.get()
    return EChart(Opaque(wealth_option(model_table(model))))


@solara.component
def AccuracyChart(model: ObservedModel):
    """Validation accuracy of the global FL model."""
    step_signal.get()
    return EChart(Opaque(accuracy_option(model_table(model))))


@solara.component
def RoundTable(model: ObservedModel):
    """The latest FL round: each client's contribution, reward share and reward."""
    step_signal.get()
    with solara.Column(style={"height": f"{CHART_HEIGHT_PX}px", "overflow": "auto",
                              "padding": "4px 8px"}, gap="4px") as main:
        solara.Style(ROUND_TABLE_CSS)
        solara.Text("Latest FL round: contributions and rewards",
                    style={"font-weight": "bold", "font-size": "14px"})
        solara.Text(round_caption(model), classes=["wsf-round-caption"],
                    style={"font-size": "12px", "color": "#616161"})
        solara.Text(settings_caption(model.config), classes=["wsf-settings-caption"],
                    style={"font-size": "12px", "color": "#616161"})
        if model.last_round_rows:
            solara.HTML(unsafe_innerHTML=round_table_html(model.last_round_rows))
    return main


#: The app's panels, in grid order (two per row). They redraw on `step_signal`, so render
#: `StepRelay()` once beside them.
COMPONENTS = [PriceChart, ContributionChart, ReservesChart, WealthChart, AccuracyChart,
              RoundTable]
