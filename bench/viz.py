"""Benchmark: the browser app's server-side redraw per step on `scenarios/baseline.yaml`.

What a click on Step costs the server beyond the model's own step: re-rendering the open page
(building every chart's ECharts option and the tables, and the widget updates Solara sends to
the browser), measured with `solara.render` (no browser; the browser's drawing is on the
user's machine). Target (issue 15): <= 100 ms per step on the baseline, on the Market page
(the one that opens). The Agents and Counterfactual twin pages are reported beside it; the
twin page's figure excludes the twin's own step (a second model step), like the run's.

    python -m bench.viz [--steps N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time
from pathlib import Path

import ipyvuetify as v
import solara
import torch

from abm.scenario import load_scenario
from abm.viz import app
from bench.table import record

BASELINE = Path(__file__).resolve().parents[1] / "scenarios" / "baseline.yaml"
TARGET_MS = 100.0
#: Steps clicked per page: the first rounds' worth, so every chart and table has data.
STEPS = 60


def measure(page: int, steps: int) -> tuple[list[float], list[float]]:
    """(redraw ms per step, model-step ms per step) for `steps` clicks on page `page`."""
    scenario = load_scenario(BASELINE)
    model_ms: list[float] = []
    original = app.VizModel.step

    def timed_step(self) -> None:
        started = time.perf_counter()
        original(self)
        model_ms.append((time.perf_counter() - started) * 1000)

    app.VizModel.step = timed_step  # type: ignore[method-assign]
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # solara.render prints the app bar
            _box, rc = solara.render(
                solara.AppLayout(children=[app.ScenarioApp(scenario)]), handle_error=False)
        rc.find(v.Tabs).widget.v_model = page
        step = rc.find(v.Btn, children=["Step"]).widget
        redraw = []
        for _ in range(steps):
            started = time.perf_counter()
            step.click()
            redraw.append((time.perf_counter() - started) * 1000 - model_ms[-1])
        rc.close()
    finally:
        app.VizModel.step = original  # type: ignore[method-assign]
    return redraw, model_ms


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.viz")
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    scenario = load_scenario(BASELINE)
    print(f"\n== viz: server-side redraw per Step click, {BASELINE.name} "
          f"({scenario.n_clients} clients, {sum(g.count for g in scenario.investors)} "
          f"investors), {args.steps} steps per page, model step excluded; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'page':<22}{'mean ms':>9}{'median':>9}{'max':>9}{'model ms':>10}  target")
    for index, name in enumerate(app.PAGES):
        redraw, model_ms = measure(index, args.steps)
        mean = statistics.mean(redraw)
        verdict = (f"<= {TARGET_MS:.0f} ms: {'met' if mean <= TARGET_MS else 'NOT met'}"
                   if index == 0 else "(reported)")
        print(f"{name:<22}{mean:9.1f}{statistics.median(redraw):9.1f}{max(redraw):9.1f}"
              f"{statistics.mean(model_ms):10.1f}  {verdict}", flush=True)
        if index == 0:
            record("viz_redraw", "viz: server-side redraw per Step, baseline, Market page",
                   f"{mean:.1f} ms (model step {statistics.mean(model_ms):.1f} ms)",
                   f"<= {TARGET_MS:.0f} ms", mean <= TARGET_MS)


if __name__ == "__main__":
    main()
