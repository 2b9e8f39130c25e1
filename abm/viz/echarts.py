"""ECharts options from the model: the chart kit's pure half (no Solara, no browser).

Every chart of the app is an ECharts figure built from the model's DataCollector table (one
row per step, display units: USD, tokens, accuracy in [0, 1]; `model_table`). ECharts draws
in the browser, so a step only ships the chart's data to the page; Mesa's matplotlib plot
component instead redraws a PNG on the server for every chart and step. ECharts rather than
Altair: Solara's Altair widget loads `vega@5` by a version *range*, which the bundled
`solara-assets` (exact versions only) cannot serve offline, whereas its ECharts widget loads
the exact bundled `echarts@5.4.0`.

The builders here are pure (model or table in, ECharts option dict out), so that they can be
tested without a browser: `line_option` draws table columns against the step, `Lines` is what
a line chart of a page picks to plot (`abm.viz.panels.line_chart`, the chart factory, adds its
title and y-axis unit), `base_option` and `axis` start any other chart (bars, a heatmap).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Collection, Iterable, Sequence
from typing import Any, NamedTuple, Protocol

import colorcet
import numpy as np
import pandas as pd

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


def client_colours(clients: Sequence[str]) -> dict[str, str]:
    """Client id -> its colour (`client_colour` of its position)."""
    return {c: client_colour(i) for i, c in enumerate(clients)}


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


def base_option(title: str) -> dict[str, Any]:
    """The start of every chart's option: its title (top left) and no animation."""
    return {
        # Animation off: a redraw per step must be instant, and tweening hides the change.
        "animation": False,
        "title": {"text": title, "left": 8, "top": 4, "textStyle": {"fontSize": 14}},
    }


def axis(name: str, **extra: Any) -> dict[str, Any]:
    """An axis named `name` (its quantity and unit) in the middle of the axis; `extra`: the
    axis' other ECharts settings (`type`, `data`, `nameGap`, ...)."""
    return {"name": name, "nameLocation": "middle", "nameGap": 28, **extra}


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
    dashed: Collection[str] = (),
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
        dashed: legend labels drawn as dashed lines (the others solid).
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
    for line in lines:
        if line["name"] in dashed:
            line["lineStyle"] = {**line.get("lineStyle", {}), "type": "dashed"}
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
        **base_option(title),
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


class Lines(NamedTuple):
    """What a line chart of a page plots (`line_option`'s arguments but its title, y-axis
    name and FL-round markers, which the chart factory adds: `abm.viz.panels.LineChart`).

    `frame`: the table the lines come from, indexed by step (display units); `series`: legend
    label -> column of `frame`, in legend order; the rest as in `line_option`.
    """

    frame: pd.DataFrame
    series: dict[str, str]
    marker_labels: dict[int, str] | None = None
    y_range: tuple[float, float] | None = None
    steps_shape: bool = False
    colours: dict[str, str] | None = None
    dashed: Collection[str] = ()
    extra: Sequence[dict[str, Any]] = ()


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


