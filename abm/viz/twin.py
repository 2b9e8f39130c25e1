"""The counterfactual twin page: the mechanism's effect on each client, watched as it builds up.

The twin is the same scenario and seed with a reward budget of 0 (`Scenario.twin()`); every
random stream is shared, so the difference between the run and its twin is what the rewards
did, market effects included (docs/model.md, section 4.11 (Observation)). Per client the page
plots the run's wealth if sold minus the twin's (USD, what selling everything alone would
fetch) after every step; the summary's `attributable_usd` is this difference at the last
step. The twin is built when the page is first opened (`VizModel.start_twin`), catches up
with the run, and then steps with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import solara

from abm.viz.charts import TYPE_COLOURS
from abm.viz.echarts import Lines, client_colours, model_table
from abm.viz.panels import Grid, LiveHTML, LiveText, html_table, line_chart


def attributable_frame(model: Any) -> pd.DataFrame:
    """Per client, wealth if sold of the run minus its twin's after every step both have
    run (USD), indexed by step; empty before the twin starts."""
    run, twin = model.client_if_sold, model.twin_if_sold
    n = min(len(run), len(twin))
    if n == 0:
        return pd.DataFrame(columns=model.client_ids)
    diff = np.asarray(run[:n]) - np.asarray(twin[:n])
    frame = pd.DataFrame(diff, columns=model.client_ids)
    frame.index.name = "step"
    return frame


@line_chart("Attributable wealth per client: run minus zero-budget twin, if sold (USD)",
            y_name="USD (run − twin)")
def attributable_chart(model: Any) -> Lines:
    """`attributable_frame`, one line per client (USD), FL rounds marked."""
    return Lines(attributable_frame(model), {c: c for c in model.client_ids},
                 colours=client_colours(model.client_ids))


@line_chart("By holder type: run minus twin, if sold (USD)", y_name="USD (run − twin)")
def type_difference_chart(model: Any) -> Lines:
    """Per holder type, the total wealth if sold of the run minus the twin's (USD)."""
    run = model_table(model)
    twin = model_table(model.twin) if model.twin is not None else pd.DataFrame()
    n = min(len(run), len(twin))
    kinds = {"clients": "client", "investors": "investor", "liquidity providers": "lp",
             "federation": "federation"}
    columns = {label: f"wealth_if_sold/{k}" for label, k in kinds.items()
               if f"wealth_if_sold/{k}" in run}
    diff = (run.iloc[:n][list(columns.values())] - twin.iloc[:n][list(columns.values())]
            if n else pd.DataFrame(columns=list(columns.values())))
    return Lines(diff, columns, colours={label: TYPE_COLOURS[label] for label in columns})


def attributable_rows(model: Any) -> list[list[str]]:
    """Per client now: allotted so far (USD, the policy's allotments), run and twin wealth
    if sold (USD), and their difference (attributable, USD)."""
    frame = attributable_frame(model)
    if frame.empty:
        return []
    step = len(frame) - 1
    allotted = {c: 0.0 for c in model.client_ids}
    for row in model.round_rows:
        if row["step"] <= step:
            allotted[row["client"]] += float(row["reward_usd"])
    run, twin = model.client_if_sold[step], model.twin_if_sold[step]
    return [[c, f"{allotted[c]:,.2f}", f"{run[i]:,.2f}", f"{twin[i]:,.2f}",
             f"{run[i] - twin[i]:+,.2f}"] for i, c in enumerate(model.client_ids)]


ATTRIBUTABLE_HEADERS = ("client", "allotted so far (USD)", "run if sold (USD)",
                        "twin if sold (USD)", "attributable (USD)")


def twin_caption(model: Any) -> str:
    """Where the twin is: when it was started, and its step."""
    return (f"Twin: the same scenario and seed with a reward budget of 0, started when this "
            f"page was opened at step {model.twin_started_at} (caught up from step 0) and "
            f"stepped with the run since; at step {model.twin.steps if model.twin else 0}.")


@solara.component
def AttributableTable(model: Any):
    with solara.Column(gap="4px", style={"padding": "4px 8px"}) as main:
        solara.Text("What the rewards delivered so far, per client",
                    style={"font-weight": "bold", "font-size": "14px"})
        LiveText(lambda: twin_caption(model), [model], "wsf-twin-caption")
        LiveHTML(lambda: html_table(ATTRIBUTABLE_HEADERS, attributable_rows(model),
                                    "wsf-twin-table"), [model])
    return main


#: The twin page's panels, in order (a chart is one entry: `abm.viz.panels.line_chart`).
TWIN: list[Any] = [attributable_chart, type_difference_chart, AttributableTable]


@solara.component
def TwinPage(model: Any):
    """Starts the twin (once per model: it then steps with the run) and shows the
    run-minus-twin differences (`TWIN`)."""
    model.start_twin()
    return Grid(children=[panel(model) for panel in TWIN])
