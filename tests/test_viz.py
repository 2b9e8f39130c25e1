"""The browser app without a browser: controls, per-session models and charts (`solara.render`),
the chart data (pure functions) and the launcher's safety settings."""

from __future__ import annotations

import math
import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import ipyvuetify as v
import pandas as pd
import pytest
import solara
from mesa.visualization import Slider

from abm import registry
from abm.scenario import Scenario, load_scenario
from abm.viz import SCENARIO_ENV, app, charts, server

STRATEGIES = registry.names("strategy")

SCENARIO = """\
name: viz-unit
seed: 5
steps: 6
round_every: 2
fl:
  dataset: {name: digits, n_samples: 300}
  model: logreg
contribution: {method: leave_one_out}
rewards:
  policy: buyback
  budget: {amount: 400.0}
clients:
  - {count: 2}
  - {count: 1, behaviour: free_rider}
investors:
  - {strategy: fundamental, count: 2}
  - {strategy: noise, count: 1}
liquidity_providers:
  - {count: 1}
"""
CLIENTS = ["c00", "c01", "c02"]


@pytest.fixture
def scenario_file(tmp_path: Path) -> Path:
    path = tmp_path / "viz.yaml"
    path.write_text(SCENARIO)
    return path


@pytest.fixture
def scenario(scenario_file: Path) -> Scenario:
    return load_scenario(scenario_file)


@pytest.fixture
def render() -> Iterator:
    """`solara.render` inside an AppLayout (SolaraViz puts its controls in the sidebar);
    every render is closed afterwards so that no listener outlives its test."""
    contexts = []

    def _render(element):
        _box, rc = solara.render(solara.AppLayout(children=[element]), handle_error=False)
        contexts.append(rc)
        return rc

    yield _render
    for rc in contexts:
        rc.close()


def step_counter(rc) -> str:
    """The text of SolaraViz's step counter ("Time: 3.0")."""
    texts = [w.children[0] for w in rc.find(v.Html, tag="span").widgets
             if w.children and str(w.children[0]).startswith("Time: ")]
    assert len(texts) == 1, texts
    return texts[0]


def click(rc, label: str) -> None:
    rc.find(v.Btn, children=[label]).widget.click()


def chart_titles(rc) -> list[str]:
    return [w.option.value["title"]["text"] for w in rc.find(charts.ChartWidget).widgets]


def price_rows(rc) -> int:
    """Rows of data (steps) in the price chart, header excluded."""
    price = next(w.option.value for w in rc.find(charts.ChartWidget).widgets
                 if w.option.value["title"]["text"].startswith("Token price"))
    return len(price["dataset"]["source"]) - 1


# -- controls -----------------------------------------------------------------------------------


def test_controls_start_at_the_scenario_values(scenario: Scenario) -> None:
    params = app.model_params(scenario)
    assert params["base"] is scenario
    assert params["policy"]["value"] == "buyback"
    assert params["policy"]["values"] == ["equal", "direct", "mint", "buyback", "dividend"]
    assert params["method"]["value"] == "leave_one_out"
    counts = {s: params[app.investor_knob(s)].value for s in STRATEGIES}
    assert counts == {"fundamental": 2, "momentum": 0, "mean_reversion": 0, "noise": 1,
                      "manipulator": 0}
    assert params["budget"].value == 400.0
    assert params["fee_bps"].value == 30
    assert params["seed"].value == 5
    # The seed is a slider, not a text input (a text seed crashes Reset, mesa #3516).
    assert isinstance(params["seed"], Slider)


def test_every_control_is_a_keyword_of_the_viz_model(scenario: Scenario) -> None:
    # One control per registered strategy, policy and method: derived from the registry.
    params = app.model_params(scenario)
    assert {app.investor_knob(s) for s in STRATEGIES} <= set(params)
    assert params["policy"]["values"] == list(registry.names("policy"))
    knobs = {k: None for k in params if k != "base"}
    assert isinstance(app.VizModel(scenario, **knobs), app.VizModel)
    with pytest.raises(TypeError, match="unknown control"):
        app.VizModel(scenario, investors_astrologer=3)


def test_exact_shapley_is_offered_only_up_to_16_clients(scenario: Scenario) -> None:
    assert "shapley_exact" in app.model_params(scenario)["method"]["values"]
    many = scenario.with_overrides({"clients": [{"count": 17}],
                                    "fl.dataset.n_samples": 1000})
    methods = app.model_params(many)["method"]["values"]
    assert "shapley_exact" not in methods
    assert "gtg_shapley" in methods


def test_unchanged_controls_keep_the_scenario(scenario: Scenario) -> None:
    assert app.apply_knobs(scenario) is scenario
    same = app.apply_knobs(scenario, policy=None, investors_fundamental=2, investors_noise=1)
    assert same is scenario


def test_controls_become_scenario_overrides(scenario: Scenario) -> None:
    changed = app.apply_knobs(scenario, policy="mint", method="cosine", budget=250.0,
                              fee_bps=5, seed=9, investors_momentum=3, investors_noise=0)
    assert changed.rewards.policy == "mint"
    assert changed.contribution.method == "cosine"
    assert changed.rewards.budget.amount == 250.0
    assert changed.market.fee_bps == 5
    assert changed.seed == 9
    by_strategy = {g.strategy: g.count for g in changed.investors}
    assert by_strategy == {"fundamental": 2, "noise": 0, "momentum": 3}


def test_an_investor_count_is_spread_over_that_strategys_groups(scenario: Scenario) -> None:
    two_groups = scenario.with_overrides({"investors": [
        {"strategy": "fundamental", "count": 3, "cash": 500.0},
        {"strategy": "fundamental", "count": 1, "cash": 9000.0},
    ]})
    changed = app.apply_knobs(two_groups, investors_fundamental=9)
    assert [(g.count, g.cash) for g in changed.investors] == [(7, 500.0), (2, 9000.0)]
    assert sum(g.count for g in changed.investors) == 9


def test_the_budget_control_follows_the_budget_kind(scenario: Scenario) -> None:
    gain = scenario.with_overrides({"rewards.budget.kind": "accuracy_gain"})
    assert app.budget_knob(gain)[0] == "rewards.budget.per_point"
    assert app.apply_knobs(gain, budget=42.0).rewards.budget.per_point == 42.0

    schedule = scenario.with_overrides({"rewards.budget.kind": "schedule",
                                        "rewards.budget.schedule": [100.0, 50.0]})
    assert app.model_params(schedule)["budget"].value == 1.0
    assert app.apply_knobs(schedule, budget=2.0).rewards.budget.schedule == [200.0, 100.0]


def test_the_viz_model_stops_at_the_scenario_end(scenario: Scenario) -> None:
    model = app.VizModel(scenario, seed=3)
    assert model.config.seed == 3
    for _ in range(scenario.steps):
        assert model.running
        model.step()
    assert not model.running


# -- the app, rendered --------------------------------------------------------------------------


def test_page_shows_the_controls_and_every_panel(render, scenario: Scenario) -> None:
    rc = render(app.ScenarioApp(scenario))
    labels = {w.label for w in rc.find(v.Select).widgets} | {
        w.label for w in rc.find(v.Slider).widgets}
    assert {"Reward policy", "Contribution method", "Investors: fundamental",
            "Investors: mean reversion", "Reward budget (USD per round)", "Swap fee (bps)",
            "Seed"} <= labels
    for button in ("Reset", "Step", "▶"):
        rc.find(v.Btn, children=[button]).assert_single()
    assert chart_titles(rc) == [
        "Token price per client", "Contribution signal per client",
        "Pool liquidity (USD reserve per pool)",
        "Wealth change by agent type since step 0, at spot and if sold",
        "Global model accuracy"]
    assert step_counter(rc) == "Time: 0.0"


def test_step_advances_the_model_and_redraws_charts_and_table(render, scenario) -> None:
    rc = render(app.ScenarioApp(scenario))
    assert price_rows(rc) == 1  # genesis only
    assert not [w for w in rc.find(solara.widgets.HTML).widgets
                if "wsf-round-table" in (w.unsafe_innerHTML or "")]
    for _ in range(3):
        click(rc, "Step")
    assert step_counter(rc) == "Time: 3.0"
    assert price_rows(rc) == 4
    price = rc.find(charts.ChartWidget).widgets[0].option.value
    markers = price["series"][-1]["markLine"]["data"]
    assert markers == [{"xAxis": 2}]  # the round that ran in step 2
    (table,) = [w.unsafe_innerHTML for w in rc.find(solara.widgets.HTML).widgets
                if "wsf-round-table" in (w.unsafe_innerHTML or "")]
    assert table.count("<tr>") == 1 + len(CLIENTS)  # header + one row per client
    assert all(f"<td>{c}</td>" in table for c in CLIENTS)
    caption = rc.find(v.Html, class_="wsf-round-caption").widget.children[0]
    assert caption.startswith("Step 3 of 6 · round 1 ran at step 2 · accuracy ")


def test_reset_builds_a_new_model_from_the_controls(render, scenario: Scenario) -> None:
    rc = render(app.ScenarioApp(scenario))
    click(rc, "Step")
    assert step_counter(rc) == "Time: 1.0"
    rc.find(v.Select, label="Reward policy").widget.v_model = "mint"
    rc.find(v.Slider, label="Seed").widget.v_model = 42
    rc.find(v.Slider, label="Investors: momentum").widget.v_model = 4
    click(rc, "Reset")
    assert step_counter(rc) == "Time: 0.0"
    settings = rc.find(v.Html, class_="wsf-settings-caption").widget.children[0]
    assert "mint rewards" in settings
    assert "seed 42" in settings
    assert "4 momentum" in settings
    assert price_rows(rc) == 1
    click(rc, "Step")
    assert step_counter(rc) == "Time: 1.0"


def test_each_session_gets_its_own_model(render, scenario: Scenario) -> None:
    first = render(app.ScenarioApp(scenario))
    second = render(app.ScenarioApp(scenario))
    click(first, "Step")
    click(first, "Step")
    assert step_counter(first) == "Time: 2.0"
    assert step_counter(second) == "Time: 0.0"
    assert price_rows(second) == 1


def test_step_is_disabled_at_the_scenario_end(render, scenario: Scenario) -> None:
    rc = render(app.ScenarioApp(scenario))
    for _ in range(scenario.steps):
        click(rc, "Step")
    assert rc.find(v.Btn, children=["Step"]).widget.disabled


def test_page_loads_the_scenario_named_by_the_environment(render, scenario_file, monkeypatch):
    monkeypatch.setenv(SCENARIO_ENV, str(scenario_file))
    rc = render(app.Page())
    assert step_counter(rc) == "Time: 0.0"
    assert len(chart_titles(rc)) == 5


def test_page_without_a_scenario_explains_how_to_start(render, monkeypatch) -> None:
    monkeypatch.delenv(SCENARIO_ENV, raising=False)
    rc = render(app.Page())
    alert = rc.find(v.Alert).widget
    assert SCENARIO_ENV in str(alert.children) and "wsf viz FILE" in str(alert.children)


def test_a_scenario_the_model_refuses_is_explained_on_the_page(render, scenario,
                                                               tmp_path) -> None:
    # A garbage CIFAR-10 batch file is found only when the model reads the data.
    (tmp_path / "data_batch_1.bin").write_bytes(b"not an image" * 100)
    refused = scenario.with_overrides({"fl.dataset": {"name": "cifar10", "path": str(tmp_path)}})
    rc = render(app.ScenarioApp(refused))
    alert = str(rc.find(v.Alert).widget.children)
    assert "fl.dataset" in alert and "CIFAR-10 binary record" in alert
    rc.find(v.Btn, children=["Step"]).assert_empty()


def test_a_step_renders_well_under_a_second(render, scenario: Scenario, monkeypatch) -> None:
    """Server-side cost of redrawing every panel after a step, the model's own step excluded
    (mean over the steps of the scenario)."""
    model_time: list[float] = []
    original = app.VizModel.step

    def timed_step(self) -> None:
        started = time.perf_counter()
        original(self)
        model_time.append(time.perf_counter() - started)

    monkeypatch.setattr(app.VizModel, "step", timed_step)
    rc = render(app.ScenarioApp(scenario))
    redraw = []
    for _ in range(scenario.steps):
        started = time.perf_counter()
        click(rc, "Step")
        redraw.append(time.perf_counter() - started - model_time[-1])
    assert len(model_time) == scenario.steps
    assert statistics.mean(redraw) < 0.25, redraw


# -- chart data ---------------------------------------------------------------------------------


def table(rounds: list[int], **columns: list[float]) -> pd.DataFrame:
    frame = pd.DataFrame({"round": rounds, **columns})
    frame.index.name = "step"
    return frame


def test_round_markers_sit_where_the_round_counter_went_up() -> None:
    frame = table([0, 0, 1, 1, 2, 2, 3])
    assert charts.round_steps(frame) == [2, 4, 6]
    assert charts.round_steps(table([0])) == []


def test_at_most_max_markers_rounds_are_marked_always_the_latest() -> None:
    rounds = list(range(1001))  # a round in every step
    option = charts.accuracy_option(table(rounds, accuracy=[0.5] * 1001))
    marked = [m["xAxis"] for m in option["series"][-1]["markLine"]["data"]]
    assert len(marked) == charts.MAX_MARKERS
    assert marked[0] == 1 and marked[-1] == 1000


def test_price_chart_has_one_series_per_client_and_a_marker_series() -> None:
    frame = table([0, 1, 1], **{"price/c00": [1.0, 1.1, 1.2], "price/c01": [1.0, 0.9, 0.8]})
    option = charts.price_option(frame, ["c00", "c01"])
    assert [s["name"] for s in option["series"]] == ["c00", "c01", charts.ROUND_MARKER_NAME]
    assert option["dataset"]["source"] == [["step", "c00", "c01"], [0, 1.0, 1.0],
                                           [1, 1.1, 0.9], [2, 1.2, 0.8]]
    assert option["series"][-1]["markLine"]["data"] == [{"xAxis": 1}]
    assert option["animation"] is False


def test_long_runs_are_drawn_at_evenly_spaced_steps_ending_at_the_current_one() -> None:
    assert charts.drawn_rows(5, limit=10).tolist() == [0, 1, 2, 3, 4]
    rows = charts.drawn_rows(1001, limit=11)
    assert rows.tolist() == [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
    frame = table([0] * 1001, accuracy=[0.5] * 1001)
    source = charts.line_option(frame, {"a": "accuracy"}, title="t", y_name="y")
    steps = [row[0] for row in source["dataset"]["source"][1:]]
    assert len(steps) <= charts.MAX_POINTS and steps[0] == 0 and steps[-1] == 1000


def test_chart_data_reaches_the_browser_as_plain_json() -> None:
    widget = charts.ChartWidget(option=charts.Opaque({"series": [{"data": [1, 2]}]}))
    assert widget.get_state()["option"] == {"series": [{"data": [1, 2]}]}
    widget.close()


def test_missing_values_are_sent_as_gaps_and_numbers_are_rounded() -> None:
    frame = table([0, 0], accuracy=[math.nan, 0.123456789])
    source = charts.accuracy_option(frame)["dataset"]["source"]
    assert source[1:] == [[0, None], [1, 0.123457]]


def test_wealth_chart_shows_each_types_change_since_genesis() -> None:
    frame = table([0, 0], **{"wealth/client": [100.0, 130.0], "wealth/investor": [50.0, 40.0],
                             "wealth/lp": [10.0, 10.0]})
    source = charts.wealth_option(frame)["dataset"]["source"]
    assert source == [["step", "clients at spot", "investors at spot",
                       "liquidity providers at spot"],
                      [0, 0.0, 0.0, 0.0], [1, 30.0, -10.0, 0.0]]


def test_wealth_chart_shows_spot_and_if_sold_beside_each_other() -> None:
    frame = table([0, 0], **{"wealth/client": [100.0, 130.0],
                             "wealth_if_sold/client": [60.0, 70.0],
                             "wealth/federation": [50.0, 80.0],
                             "wealth_if_sold/federation": [40.0, 45.0]})
    source = charts.wealth_option(frame)["dataset"]["source"]
    assert source == [["step", "clients at spot", "clients if sold", "federation at spot",
                       "federation if sold"], [0, 0.0, 0.0, 0.0, 0.0], [1, 30.0, 10.0, 30.0, 5.0]]


def test_round_table_formats_units_and_escapes_text() -> None:
    row = {"client": "<c00>", "behaviour": "honest", "contribution": 0.25, "share": 0.5,
           "reward_usd": 1234.5, "tokens_minted": 0.0, "tokens_burned": 12.0,
           "price_before": 1.0, "price_after": 1.05}
    assert charts.round_table([row]) == [["<c00>", "honest", "0.2500", "50.0%", "1,234.50",
                                          "-12.00", "1.0000 → 1.0500"]]
    html = charts.round_table_html([row])
    assert "&lt;c00&gt;" in html and "<c00>" not in html


# -- launcher -----------------------------------------------------------------------------------


def test_server_binds_loopback_only_and_never_calls_home(scenario_file: Path) -> None:
    command = server.solara_command(8123)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "8123"
    assert "--no-check-version" in command and "--no-open" in command
    assert command[command.index("run") + 1] == "abm.viz.app"
    env = server.solara_environment(scenario_file)
    assert env[SCENARIO_ENV] == str(scenario_file.resolve())
    assert env["SOLARA_TELEMETRY_MIXPANEL_ENABLE"] == "False"


def test_launch_refuses_a_bad_scenario_with_exit_code_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: -1\n")
    assert server.launch(bad, port=0) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "steps" in err


def test_launch_refuses_a_port_in_use(scenario_file: Path, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert server.launch(scenario_file, port=port) == 1
    assert f"port {port}" in capsys.readouterr().err
