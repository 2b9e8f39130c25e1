"""The browser visualization: Mesa's SolaraViz app for one scenario file.

- `abm.viz.app`: the Solara app (parameter controls, the per-session model, one `SolaraViz`
  call). Solara imports it by module name, so the scenario path reaches it through the
  environment variable `WSF_VIZ_SCENARIO`.
- the chart kit: `abm.viz.echarts` (ECharts options from the model table; ECharts draws
  client-side from the assets bundled with `solara-assets`, so the page works without
  internet), `abm.viz.panels` (the live panels and the chart factory, `line_chart`) and
  `abm.viz.events` (the run's events on a chart).
- the pages, each a list of panels: `abm.viz.charts` (market), `abm.viz.agents`,
  `abm.viz.twin`.
- `abm.viz.server`: `launch(scenario_path, port)`, behind `wsf viz FILE [--port N]`.

Importing this package is cheap (no mesa, no torch); the app modules import them.
"""

from __future__ import annotations

#: Environment variable naming the scenario file the app shows (set by `launch`).
SCENARIO_ENV = "WSF_VIZ_SCENARIO"

#: Environment variable holding the command line's `--set` values (JSON: dotted path ->
#: value), applied to the scenario by the app (set by `launch`).
SETTINGS_ENV = "WSF_VIZ_SET"

__all__ = ["SCENARIO_ENV", "SETTINGS_ENV"]
