"""The live panels of the app's pages, and the chart factory: the chart kit's Solara half.

A page is a `Grid` of panels, each a component of the model that draws again after every step
(`use_redraw`: the live panels only, never the page) and on reset (a new model): `EChart`
(an ECharts figure whose option a function builds), `LiveText`, `LiveHTML` (a table).

The chart factory: a line chart of a page is one function of the model that picks its lines
(`abm.viz.echarts.Lines`), declared with its title and y-axis unit by `line_chart`; the
`LineChart` it becomes is the page's panel, so that adding the chart to a page is one entry in
that page's list of panels (`abm.viz.charts.MARKET`, `abm.viz.twin.TWIN`). `Toggle` is one
panel showing one of several charts, picked by a toggle above it.
"""

from __future__ import annotations

import html
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import ipyvuetify
import reacton.core
import solara
import traitlets
from mesa.visualization.utils import update_counter
from solara.components.echarts import EchartsWidget

from abm.viz.echarts import Lines, ObservedModel, line_option, model_table, round_steps

#: Height of every chart in pixels: fits the 390-pixel cells of SolaraViz's grid layout.
CHART_HEIGHT_PX = 370
#: Height of the toggle above a chart that has one (`Toggle`); the chart is that much lower.
TOGGLE_HEIGHT_PX = 36


# -- redrawing on a step -----------------------------------------------------------------------


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


# -- tables ------------------------------------------------------------------------------------


def html_table(headers: Sequence[str], rows: Iterable[Sequence[str]], css_class: str) -> str:
    """A plain HTML table (every cell escaped) in the pages' table style (`TABLE_CSS`),
    with `css_class` beside it."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
                   for cells in rows)
    return (f'<table class="wsf-round-table {css_class}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


#: Style of the pages' HTML tables (class `wsf-round-table`, the round table's first: plain
#: HTML tables with Vuetify's look, compact).
TABLE_CSS = """
.wsf-round-table { border-collapse: collapse; font-size: 12px; width: 100%; }
.wsf-round-table th { text-align: left; font-weight: 600; color: #616161;
                      border-bottom: 1px solid #e0e0e0; padding: 4px 6px; }
.wsf-round-table td { border-bottom: 1px solid #eeeeee; padding: 3px 6px;
                      font-variant-numeric: tabular-nums; white-space: nowrap; }
"""


# -- the page ----------------------------------------------------------------------------------


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
        solara.Style(PAGE_CSS + TABLE_CSS),
        *(solara.Div(children=[c], classes=["wsf-panel"]) for c in children)])


# -- the chart factory -------------------------------------------------------------------------


@dataclass(frozen=True)
class LineChart:
    """A line chart of a page: lines against the step, with the run's FL rounds marked.

    `title` says what is plotted and in which unit where the axis does not; `y_name` is the
    y axis' quantity and unit (the x axis is always the step); `lines(model)` picks the table
    and its columns to plot (`Lines`). Called with a model it is the page's panel (an
    `EChart`), so that it is listed in a page as it is.
    """

    title: str
    y_name: str
    lines: Callable[[ObservedModel], Lines]

    def option(self, model: ObservedModel) -> dict[str, Any]:
        """The chart's ECharts option for `model` now (`line_option`); the FL rounds are the
        steps at which the model's `round` counter went up, whichever table the lines
        come from."""
        lines = self.lines(model)
        return line_option(lines.frame, lines.series, title=self.title, y_name=self.y_name,
                           markers=round_steps(model_table(model)),
                           marker_labels=lines.marker_labels, y_range=lines.y_range,
                           steps_shape=lines.steps_shape, colours=lines.colours,
                           dashed=lines.dashed, extra=lines.extra)

    def __call__(self, model: ObservedModel) -> Any:
        return ChartPanel(self, model, [model])


def line_chart(title: str, y_name: str) -> Callable[[Callable[[ObservedModel], Lines]],
                                                    LineChart]:
    """The chart factory: `@line_chart(title, y_name)` over a function of the model that
    returns its `Lines` makes it a `LineChart` (a page's panel) with that title and y axis."""
    def factory(lines: Callable[[ObservedModel], Lines]) -> LineChart:
        return LineChart(title, y_name, lines)
    return factory


@solara.component
def ChartPanel(chart: LineChart, model: ObservedModel, dependencies: list[Any],
               height_px: int = CHART_HEIGHT_PX):
    """`chart` of `model`, drawn again after every step; `dependencies` as in `EChart`."""
    return EChart(lambda: chart.option(model), dependencies, height_px=height_px)


@dataclass(frozen=True, eq=False)  # one per page entry; holds a dict
class Toggle:
    """One panel showing one of `charts` (toggle value -> chart, in toggle order), picked by
    a toggle above the chart whose value is `choice` (a `solara.reactive`: one per browser
    session); `css_class` names the toggle."""

    choice: solara.Reactive[str]
    charts: dict[str, LineChart]
    css_class: str

    def __call__(self, model: ObservedModel) -> Any:
        return TogglePanel(self, model)


@solara.component
def TogglePanel(toggle: Toggle, model: ObservedModel):
    """`toggle`'s toggle and its chart of the value picked."""
    shown = toggle.choice.value
    with solara.Column(gap="0px") as main:
        solara.ToggleButtonsSingle(value=toggle.choice, values=list(toggle.charts), dense=True,
                                   classes=[toggle.css_class])
        ChartPanel(toggle.charts[shown], model, [model, shown],
                   CHART_HEIGHT_PX - TOGGLE_HEIGHT_PX)
    return main
