"""The run's events on a chart: how each kind of `WallStreetFedsModel.events` is drawn.

Windows (a pump, an offering: a start kind closed by its end kind) become shaded bands, point
events (a client leaving or rejoining, a dump) pins on the price line of the client they
concern (or vertical lines), each with its description as tooltip. Built from the events
alone, so a kind any agent records shows without a change here. FL rounds are events too, but
every line chart marks those itself (`abm.viz.echarts.line_option`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import pandas as pd

from abm.viz.echarts import DECIMALS

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
