"""Chart and table components of the browser app.

Every chart is an ECharts figure (Solara's ECharts widget) built from the model's
DataCollector table (one row per step, display units: USD, tokens, accuracy in [0, 1]).
ECharts draws in the browser, so a step only ships the chart's data to the page; Mesa's
matplotlib plot component instead redraws a PNG on the server for every chart and step.
ECharts rather than Altair: Solara's Altair widget loads `vega@5` by a version *range*,
which the bundled `solara-assets` (exact versions only) cannot serve offline, whereas its
ECharts widget loads the exact bundled `echarts@5.4.0`.

The `*_option` functions are pure (model table in, ECharts option dict out) so that they can
be tested without a browser; the components wrap them and are rendered again after every
step (`use_redraw`: the live panels only, never the page) and on reset (a new model).
"""

from __future__ import annotations

import html
import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol

import colorcet
import ipyvuetify
import numpy as np
import pandas as pd
import reacton.core
import solara
import traitlets
from mesa.visualization.utils import update_counter
from solara.components.echarts import EchartsWidget

from abm.collect import AGENT_TYPE_COLOURS, AGENT_TYPE_LABELS

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
#: One colour per client, in client order: colorcet's Glasbey palette that starts with
#: matplotlib's tab10 (so up to 10 clients look as in the report's figures) and adds the
#: colours most distinct from those; 20 colours, pairwise at least 27 CIELAB units apart
#: (tab20's light half has pairs 17 apart). Beyond 20 clients the colours repeat.
CLIENT_COLOURS: tuple[str, ...] = tuple(colorcet.palette["glasbey_category10"][:20])
#: Width in pixels assumed for a chart's legend when working out how many lines it wraps
#: onto (a chart is about 640 pixels wide in the two-column layout; narrower is safe).
LEGEND_WIDTH_PX = 520
#: Height of one legend line in pixels (ECharts' default item height plus its gap).
LEGEND_LINE_PX = 22
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
    events: list[dict[str, Any]]
    steps: int
    config: Any  # the resolved `abm.scenario.Scenario` the model runs

    @property
    def datacollector(self) -> Any: ...


# -- the model table ---------------------------------------------------------------------------


class _TableCache:
    """A model's table so far as one float array that grows by the new rows only."""

    __slots__ = ("frame", "n", "names", "rows")

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.rows = np.empty((0, len(names)))
        self.n = 0
        self.frame = pd.DataFrame()


#: The table of each model, so that the charts of one step share one table, and a step only
#: converts its own row.
_tables: weakref.WeakKeyDictionary[Any, _TableCache] = weakref.WeakKeyDictionary()


def model_table(model: ObservedModel) -> pd.DataFrame:
    """The model-level table so far: one row per step (row 0 is genesis), display units, one
    float64 block (so that selecting columns and converting to arrays copies nothing).

    Built from the collector's lists directly and cut to the shortest one, so that a render
    that overlaps a step still reads a consistent table (Mesa can step in a thread while
    playing). Only the rows added since the last call are converted.
    """
    columns: dict[str, list[float]] = model.datacollector.model_vars
    if not columns:
        return pd.DataFrame()
    n = min(len(values) for values in columns.values())
    cache = _tables.get(model)
    if cache is None or cache.names != list(columns):
        cache = _tables[model] = _TableCache(list(columns))
    if cache.n != n:
        if n > cache.n:
            new = np.array([columns[name][cache.n:n] for name in cache.names],
                           dtype=float).T.reshape(n - cache.n, len(cache.names))
            cache.rows = np.concatenate([cache.rows[: cache.n], new])
        cache.n = n
        cache.frame = pd.DataFrame(cache.rows[:n], columns=cache.names, copy=False)
        cache.frame.index.name = "step"
    return cache.frame


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
    return frame.index.to_numpy()[1:][rounds[1:] > rounds[:-1]].astype(int).tolist()


# -- ECharts options ---------------------------------------------------------------------------


def client_colour(i: int) -> str:
    """Colour of the `i`-th client (0-based), the same on every chart and page."""
    return CLIENT_COLOURS[i % len(CLIENT_COLOURS)]


def legend_lines(labels: Sequence[str], width_px: int = LEGEND_WIDTH_PX) -> int:
    """Lines a plain (wrapping, never paginated) ECharts legend of `labels` takes.

    Each entry is its 25-pixel symbol, a 5-pixel gap, about 7 pixels per character of its
    label at 12 px and ECharts' 10-pixel item gap; entries wrap like words.
    """
    lines, used = 1, 0
    for label in labels:
        width = 25 + 5 + 7 * len(label) + 10
        if used and used + width > width_px:
            lines, used = lines + 1, 0
        used += width
    return lines


def line_option(
    frame: pd.DataFrame,
    series: dict[str, str],
    *,
    title: str,
    y_name: str,
    markers: Sequence[int] = (),
    marker_labels: dict[int, str] | None = None,
    y_range: tuple[float, float] | None = None,
    steps_shape: bool = False,
    colours: dict[str, str] | None = None,
    extra: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """An ECharts line chart of table columns against the step.

    Args:
        frame: the model table (`model_table`), indexed by step.
        series: legend label -> table column, in legend order.
        title: chart title; `y_name`: the y axis name with its unit.
        markers: steps at which to draw a dashed vertical FL-round marker;
            `marker_labels`: step -> its tooltip (the round's event text).
        y_range: fixed (min, max) of the y axis; `None` lets the axis follow the data.
        steps_shape: draw each series as a step function (values that change once a round).
        colours: legend label -> colour; labels without one take ECharts' palette.
        extra: data-less marker series (events) appended after the lines, each with a legend
            entry of its own name that toggles it.

    A table of one row (genesis, step 0) is drawn as dots, so that no chart is empty at
    step 0; the legend wraps onto as many lines as it needs (never paginated) and the plot
    starts below it.
    """
    labels = list(series)
    colours = colours or {}
    source: list[list[Any]] = [["step", *labels]]
    if not frame.empty and labels:
        drawn = drawn_rows(len(frame))
        where = frame.columns.get_indexer([series[label] for label in labels])
        data = np.round(frame.to_numpy(dtype=float)[np.ix_(drawn, where)], DECIMALS)
        rows = data.tolist()
        if not np.isfinite(data).all():
            rows = [[v if math.isfinite(v) else None for v in row] for row in rows]
        steps = frame.index.to_numpy()[drawn].tolist()
        source.extend([step, *row] for step, row in zip(steps, rows, strict=True))
    single = len(source) == 2
    lines: list[dict[str, Any]] = [
        {"type": "line", "name": label, "showSymbol": single, "encode": {"x": "step", "y": label},
         **({"step": "end"} if steps_shape else {}),
         **({"itemStyle": {"color": colours[label]}, "lineStyle": {"color": colours[label]}}
            if label in colours else {})}
        for label in labels
    ]
    legend = [*labels]
    if len(markers):
        lines.append(_round_markers([markers[i] for i in drawn_rows(len(markers), MAX_MARKERS)],
                                    marker_labels or {}))
        legend.append(ROUND_MARKER_NAME)
    for marker in extra:
        lines.append(marker)
        legend.append(marker["name"])
    y_axis: dict[str, Any] = {"type": "value", "name": y_name, "scale": y_range is None,
                              "nameTextStyle": {"align": "left"}}
    if y_range is not None:
        y_axis["min"], y_axis["max"] = y_range
    last_step = source[-1][0] if len(source) > 1 else 0
    legend_top = 28
    return {
        # Animation off: a redraw per step must be instant, and tweening hides the change.
        "animation": False,
        "title": {"text": title, "left": 8, "top": 4, "textStyle": {"fontSize": 14}},
        "tooltip": {"trigger": "axis"},
        "legend": {"type": "plain", "data": legend, "top": legend_top, "left": 8, "right": 8},
        "grid": {"top": legend_top + LEGEND_LINE_PX * legend_lines(legend) + 34, "left": 64,
                 "right": 20, "bottom": 36},
        "dataset": {"source": source},
        # At genesis the axis spans one step, so that the step-0 dots sit at its left end.
        "xAxis": {"type": "value", "name": "step", "min": 0, "max": max(int(last_step), 1),
                  "nameLocation": "middle", "nameGap": 22, "minInterval": 1,
                  "axisLabel": {"showMaxLabel": False}},
        "yAxis": y_axis,
        "series": lines,
    }


def client_colours(clients: Sequence[str]) -> dict[str, str]:
    """Client id -> its colour (`client_colour` of its position)."""
    return {c: client_colour(i) for i, c in enumerate(clients)}


def price_option(frame: pd.DataFrame, clients: Sequence[str],
                 events: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Spot price of each client's token (USD per token), with the run's events marked:
    FL rounds as dashed lines, windows (a pump, an offering) as shaded bands, and point
    events (a client leaving or rejoining, a dump) as pins on the client's price line; each
    with its description as tooltip (`event_markers`)."""
    rounds = {int(e["step"]): event_label(e) for e in events if e["kind"] == "round"}
    others = [e for e in events if e["kind"] != "round"]
    return line_option(frame, {c: f"price/{c}" for c in clients},
                       title="Token price per client", y_name="USD per token",
                       markers=round_steps(frame), marker_labels=rounds,
                       colours=client_colours(clients),
                       extra=event_markers(others, frame, clients))


def contribution_option(frame: pd.DataFrame, clients: Sequence[str]) -> dict[str, Any]:
    """Each client's contribution score of the latest round (method units; 0 before round 1)."""
    return line_option(frame, {c: f"contribution/{c}" for c in clients},
                       title="Contribution signal per client", y_name="score (latest round)",
                       markers=round_steps(frame), steps_shape=True,
                       colours=client_colours(clients))


def reserves_option(frame: pd.DataFrame, clients: Sequence[str]) -> dict[str, Any]:
    """USD reserve of each client's pool (USD): half the value a V2 pool holds at spot."""
    return line_option(frame, {c: f"reserve_usd/{c}" for c in clients},
                       title="Pool liquidity (USD reserve per pool)", y_name="USD",
                       markers=round_steps(frame), colours=client_colours(clients))


#: The wealth chart's valuations (its toggle), and which `WEALTH_COLUMNS` each shows.
VALUATIONS = {"at spot": (" at spot",), "if sold": (" if sold",),
              "both": (" at spot", " if sold")}
#: Colour per agent type in the wealth charts (spot solid, if sold dashed in the same colour).
TYPE_COLOURS = {AGENT_TYPE_LABELS[k]: colour for k, colour in AGENT_TYPE_COLOURS.items()}


def wealth_option(frame: pd.DataFrame, valuation: str = "both") -> dict[str, Any]:
    """Wealth of each agent type (clients, investors, liquidity providers, the federation) as
    the change since genesis (USD), at spot, if sold, or both (`VALUATIONS`).

    Changes rather than levels: the types start orders of magnitude apart (a few investors'
    cash against every client's whole token supply), and who gains is the question. If sold
    beside spot, because a thin pool's spot mark can be far above what selling would fetch:
    each type keeps its colour, the if-sold line is dashed.
    """
    suffixes = VALUATIONS[valuation]
    present = {label: col for label, col in WEALTH_COLUMNS.items()
               if col in frame and label.endswith(suffixes)}
    levels = frame[list(present.values())]
    change = levels - levels.iloc[0] if not levels.empty else levels
    colours = {label: TYPE_COLOURS[label.rsplit(" ", 2)[0]] for label in present}
    option = line_option(change, present,
                         title=f"Wealth change by agent type since step 0, "
                               f"{'at spot and if sold' if valuation == 'both' else valuation}",
                         y_name="USD", markers=round_steps(frame), colours=colours)
    for line in option["series"]:
        if str(line.get("name", "")).endswith(" if sold"):
            line["lineStyle"] = {**line.get("lineStyle", {}), "type": "dashed"}
    return option


def accuracy_option(frame: pd.DataFrame) -> dict[str, Any]:
    """Validation accuracy of the global FL model (fraction in [0, 1])."""
    return line_option(frame, {"accuracy": "accuracy"}, title="Global model accuracy",
                       y_name="validation accuracy", markers=round_steps(frame),
                       y_range=(0.0, 1.0), steps_shape=True)


#: How each event kind is drawn: legend entry, colour and ECharts marker. A `start` kind opens
#: a window that its `end` kind closes (a shaded band, open windows reach the current step);
#: every other kind is a point: a pin on the price line of the client it concerns, or a
#: vertical line when it concerns no client. A kind not listed here (one a component
#: declares, `abm.registry.Component.events`) is drawn as a point under its own name.
EVENT_STYLES: dict[str, dict[str, str]] = {
    "leave": {"group": "client left", "colour": "#e65100"},
    "join": {"group": "client (re)joined", "colour": "#2e7d32"},
    "dump": {"group": "dump", "colour": "#b71c1c"},
    "pump_start": {"group": "pump window", "colour": "rgba(183, 28, 28, 0.12)",
                   "end": "pump_end"},
    "offering_start": {"group": "offering window", "colour": "rgba(63, 81, 181, 0.12)",
                       "end": "offering_end"},
}
_WINDOW_ENDS = {style["end"]: kind for kind, style in EVENT_STYLES.items() if "end" in style}


class Window(NamedTuple):
    """A window event pair: its start kind, the start event, and its end step (`None`: open,
    drawn to the current step)."""

    kind: str
    start: dict[str, Any]
    end: int | None


def event_windows(events: Sequence[dict[str, Any]]
                  ) -> tuple[list[Window], list[dict[str, Any]]]:
    """Pair window events (`EVENT_STYLES` kinds with an `end`) and return (windows in order
    of start, the remaining point events in order).

    A start is closed by the next end of its kind for the same client and agent; a window
    with no end yet is open. An end without a start stays a point event.
    """
    open_: dict[tuple[str, str, int], dict[str, Any]] = {}
    windows: list[Window] = []
    points: list[dict[str, Any]] = []
    for event in events:
        kind = event["kind"]
        who = (event.get("client", ""), int(event.get("agent_id", -1)))
        if "end" in EVENT_STYLES.get(kind, {}):
            if (kind, *who) in open_:  # a second start before the end: a point of its own
                points.append(event)
            else:
                open_[(kind, *who)] = event
        elif kind in _WINDOW_ENDS and (_WINDOW_ENDS[kind], *who) in open_:
            start = open_.pop((_WINDOW_ENDS[kind], *who))
            windows.append(Window(start["kind"], start, int(event["step"])))
        else:
            points.append(event)
    windows.extend(Window(key[0], start, None) for key, start in open_.items())
    windows.sort(key=lambda w: (int(w.start["step"]), w.kind))
    return windows, points


def event_label(event: dict[str, Any]) -> str:
    """Tooltip text of an event: its step, the client it concerns and its description."""
    who = f" · {event['client']}" if event.get("client") else ""
    text = event.get("text") or event["kind"].replace("_", " ")
    return f"step {event['step']}{who}: {text}"


def event_markers(events: Sequence[dict[str, Any]], frame: pd.DataFrame,
                  clients: Sequence[str]) -> list[dict[str, Any]]:
    """Data-less ECharts series that mark `events` (rows of `WallStreetFedsModel.events`,
    FL rounds excluded: `line_option` draws those) on a price chart, one series per legend
    group of `EVENT_STYLES`, each marker with its description as tooltip.

    Windows become `markArea` bands (an open one reaches the latest step of `frame`); a
    point event on a client becomes a `markPoint` pin at that client's price in that step
    (`price/<client>` of `frame`), one on no client (or outside the table) a `markLine`.
    Built from the events alone, so a kind recorded by any agent shows.
    """
    last_step = int(frame.index[-1]) if not frame.empty else 0
    tooltip = {"trigger": "item", "formatter": "{b}"}
    groups: dict[str, dict[str, Any]] = {}

    def series_for(kind: str) -> dict[str, Any]:
        style = EVENT_STYLES.get(kind, {"group": kind.replace("_", " "), "colour": "#424242"})
        name = style["group"]
        if name not in groups:
            groups[name] = {"type": "line", "name": name, "data": [],
                            "itemStyle": {"color": style["colour"]},
                            "lineStyle": {"color": style["colour"]}}
        return groups[name]

    windows, points = event_windows(events)
    for window in windows:
        area = series_for(window.kind).setdefault("markArea", {
            "silent": False, "tooltip": tooltip, "label": {"show": False},
            "itemStyle": {"color": EVENT_STYLES[window.kind]["colour"]}, "data": []})
        until = f" (until step {window.end})" if window.end is not None else " (still open)"
        end = last_step if window.end is None else window.end
        area["data"].append([{"name": event_label(window.start) + until,
                              "xAxis": int(window.start["step"])}, {"xAxis": end}])
    for event in points:
        series = series_for(event["kind"])
        step = int(event["step"])
        column = f"price/{event.get('client', '')}"
        if event.get("client") in clients and column in frame and step in frame.index:
            pins = series.setdefault("markPoint", {
                "symbol": "pin", "symbolSize": 26, "tooltip": tooltip,
                "label": {"show": False}, "data": []})
            pins["data"].append({"name": event_label(event),
                                 "coord": [step, round(float(frame.at[step, column]), DECIMALS)]})
        else:
            lines = series.setdefault("markLine", {
                "symbol": "none", "silent": False, "tooltip": tooltip, "label": {"show": False},
                "lineStyle": {"type": "solid", "width": 2}, "data": []})
            lines["data"].append({"name": event_label(event), "xAxis": step})
    return list(groups.values())


def _round_markers(steps: Iterable[int], labels: dict[int, str]) -> dict[str, Any]:
    """A data-less series whose mark lines are the FL rounds (its legend entry toggles them);
    hovering a line shows its label (`labels[step]`, else "FL round at step N")."""
    style = {"type": "dashed", "color": ROUND_MARKER_COLOUR, "width": 1}
    return {
        "type": "line", "name": ROUND_MARKER_NAME, "data": [], "lineStyle": style,
        "itemStyle": {"color": ROUND_MARKER_COLOUR},
        "markLine": {"silent": False, "symbol": "none", "animation": False, "lineStyle": style,
                     "tooltip": {"trigger": "item", "formatter": "{b}"},
                     "label": {"show": False},
                     "data": [{"xAxis": s, "name": labels.get(s, f"FL round at step {s}")}
                              for s in steps]},
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
            # A client that left the federation keeps its row (contribution 0, reward 0).
            str(row["behaviour"]) + ("" if row.get("participating", True) else
                                     " (not training)"),
            "—" if math.isnan(row["contribution"]) else f"{row['contribution']:.4f}",
            "—" if math.isnan(row["share"]) else f"{row['share']:.1%}",
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


def html_table(headers: Sequence[str], rows: Iterable[Sequence[str]], css_class: str) -> str:
    """A plain HTML table (every cell escaped) styled like the round table."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
                   for cells in rows)
    return (f'<table class="wsf-round-table {css_class}"><thead><tr>{head}</tr></thead>'
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

class _StepListeners:
    """The live panels of one browser session (one reacton render context): the state
    setters of every panel that calls `use_redraw`, told of a step all at once."""

    __slots__ = ("setters", "unsubscribe")

    def __init__(self) -> None:
        self.setters: dict[int, Callable[[int], None]] = {}
        self.unsubscribe: Callable[[], None] | None = None

    def fire(self, count: int) -> None:
        # One listener of the step signal for the whole session: Solara batches what one
        # listener sets into one render pass (a listener per panel cost a pass per panel).
        for setter in list(self.setters.values()):
            setter(count)


#: Per render context (browser session), its live panels.
_sessions: weakref.WeakKeyDictionary[Any, _StepListeners] = weakref.WeakKeyDictionary()


def use_redraw(dependencies: list[Any]) -> int:
    """Render the calling component again after every step (and reset) of the session's
    model; returns the step signal's count (which the caller may ignore).

    Mesa's controller announces a step by changing `update_counter`. The component keeps the
    latest count in its own state, so that a step re-renders the live panels only (a chart,
    a text, a table), never their parents: the sidebar and the page frame are not rendered
    again for a step, and the panels of a session share one listener, so that a step is one
    render pass (`_StepListeners`). Because the panel is rendered, the element reacton keeps
    for it always holds what its widget shows. (Reacton re-applies an element's arguments to
    its widget whenever it reconciles that part of the page: after Play / Pause, a tab
    switch, a Reset. This app used to write each new option into the widget behind reacton's
    back, and those reconciliations put the panels back to the state of their last render:
    "Step 0 of 500" and empty charts after Play, Pause.)

    `dependencies`: what the panel shows besides the model's state (the model, a toggle);
    the subscription is renewed when they change. Steps taken by Mesa's play thread are
    announced in that thread; reacton serialises render passes.
    """
    count, set_count = solara.use_state(update_counter.peek())  # peek: no auto-subscription
    context = reacton.core.get_render_context()
    key = id(set_count)

    def subscribe() -> Callable[[], None]:
        group = _sessions.get(context)
        if group is None:
            group = _sessions[context] = _StepListeners()
        if group.unsubscribe is None:
            group.unsubscribe = update_counter.subscribe(group.fire)
        group.setters[key] = set_count

        def cleanup() -> None:
            group.setters.pop(key, None)
            if not group.setters and group.unsubscribe is not None:
                group.unsubscribe()
                group.unsubscribe = None

        return cleanup

    solara.use_effect(subscribe, dependencies)
    return count


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
def EChart(build: Callable[[], dict[str, Any]], dependencies: list[Any],
           on_click: Any = None, height_px: int = CHART_HEIGHT_PX):
    """An ECharts figure sized for one panel whose option `build()` makes, again after every
    step (`use_redraw`); `dependencies`: what `build` reads besides the model's state (the
    model itself, a toggle's value). `on_click(event)` receives ECharts' click event
    (`name`, `data`, `seriesName`, ...)."""
    use_redraw(dependencies)
    return ChartWidget.element(
        option=Opaque(build()), responsive=True, maps={}, on_click=on_click,
        attributes={"style": f"height: {height_px}px; width: 100%;", "class": "wsf-chart"},
    )


@solara.component
def LiveText(build: Callable[[], str], dependencies: list[Any], css_class: str = "",
             style: str = "font-size: 12px; color: #616161;"):
    """A line of text that `build()` makes, again after every step (`use_redraw`)."""
    use_redraw(dependencies)
    return ipyvuetify.Html.element(tag="div", children=[build()], class_=css_class,
                                   style_=style)


@solara.component
def LiveHTML(build: Callable[[], str], dependencies: list[Any], css_class: str = "wsf-scroll",
             style: str = ""):
    """An HTML fragment (a table; every cell escaped by its builder) that `build()` makes,
    again after every step (`use_redraw`)."""
    use_redraw(dependencies)
    return solara.widgets.HTML.element(tag="div", unsafe_innerHTML=build(),
                                       attributes={"class": css_class, "style": style})


#: The pages' grid: as many columns of at least 560 pixels as fit (two on a laptop screen);
#: a panel's content scrolls (both ways) instead of being clipped.
PAGE_CSS = f"""
.wsf-grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr));
             gap: 12px; padding: 12px 4px; width: 100%; min-width: 0; box-sizing: border-box; }}
.wsf-panel {{ height: {CHART_HEIGHT_PX + 12}px; overflow: auto; min-width: 0;
              border: 1px solid #e0e0e0; border-radius: 4px; padding: 4px; }}
.wsf-scroll {{ overflow: auto; max-height: {CHART_HEIGHT_PX - 60}px; }}
"""


@solara.component
def Grid(children: list[Any] = []):  # noqa: B006 (solara's children convention)
    """A page: its panels (fixed height, content scrolling) in the grid of `PAGE_CSS`."""
    return solara.Div(classes=["wsf-grid"], children=[
        solara.Style(PAGE_CSS + ROUND_TABLE_CSS),
        *(solara.Div(children=[c], classes=["wsf-panel"]) for c in children)])


@solara.component
def PriceChart(model: ObservedModel):
    """Token price per client (USD per token) with the run's events marked."""
    return EChart(lambda: price_option(model_table(model), model.client_ids,
                                       list(model.events)), [model])


@solara.component
def ContributionChart(model: ObservedModel):
    """Contribution signal per client (latest round's score)."""
    return EChart(lambda: contribution_option(model_table(model), model.client_ids), [model])


@solara.component
def ReservesChart(model: ObservedModel):
    """USD reserve of each client's pool (liquidity depth, USD)."""
    return EChart(lambda: reserves_option(model_table(model), model.client_ids), [model])


#: The wealth chart's valuation, per browser session (Solara keeps a reactive per session).
valuation = solara.reactive("both")


@solara.component
def WealthChart(model: ObservedModel):
    """Wealth change by agent type (USD), at spot, if sold, or both (a toggle)."""
    shown = valuation.value
    with solara.Column(gap="0px") as main:
        solara.ToggleButtonsSingle(value=valuation, values=list(VALUATIONS), dense=True,
                                   classes=["wsf-valuation"])
        EChart(lambda: wealth_option(model_table(model), shown), [model, shown],
               height_px=CHART_HEIGHT_PX - 36)
    return main


@solara.component
def AccuracyChart(model: ObservedModel):
    """Validation accuracy of the global FL model."""
    return EChart(lambda: accuracy_option(model_table(model)), [model])


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


@solara.component
def MarketPage(model: ObservedModel):
    """The market page: prices with events, contributions, liquidity, wealth, accuracy and
    the latest round."""
    return Grid(children=[PriceChart(model), ContributionChart(model), ReservesChart(model),
                          WealthChart(model), AccuracyChart(model), RoundTable(model)])
