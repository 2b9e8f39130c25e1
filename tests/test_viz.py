"""The browser app without a browser: controls, per-session models and charts (`solara.render`),
the chart data (pure functions) and the launcher's safety settings."""

from __future__ import annotations

import io
import itertools
import json
import math
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import ipyvuetify as v
import numpy as np
import pandas as pd
import pytest
import solara

from abm import registry
from abm.cli import main as wsf
from abm.scenario import Scenario, load_scenario
from abm.viz import SCENARIO_ENV, agents, app, charts, downloads, echarts, panels, server, twin
from abm.viz.events import event_markers

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
    """The text of the app's one step counter ("Step 3 of 6")."""
    return rc.find(v.Html, class_="wsf-step-counter").widget.children[0]


def texts(rc) -> list[str]:
    """Every text shown (Solara's Text widgets), to check what is not on the page."""
    return [str(w.children[0]) for w in rc.find(v.Html).widgets if w.children]


def open_page(rc, name: str) -> None:
    rc.find(v.Tabs, class_="wsf-pages").widget.v_model = list(app.PAGES).index(name)


def click(rc, label: str) -> None:
    rc.find(v.Btn, children=[label]).widget.click()


def chart_titles(rc) -> list[str]:
    return [w.option.value["title"]["text"] for w in rc.find(panels.ChartWidget).widgets]


def chart(rc, title_start: str) -> dict:
    """The option of the chart whose title starts with `title_start`."""
    (option,) = [w.option.value for w in rc.find(panels.ChartWidget).widgets
                 if w.option.value["title"]["text"].startswith(title_start)]
    return option


def price_rows(rc) -> int:
    """Rows of data (steps) in the price chart, header excluded."""
    return len(chart(rc, "Token price")["dataset"]["source"]) - 1


def html_of(rc, css_class: str) -> str:
    (table,) = [w.unsafe_innerHTML for w in rc.find(solara.widgets.HTML).widgets
                if css_class in (w.unsafe_innerHTML or "")]
    return table


def slider_labels(rc) -> list[str]:
    return [w.label for w in rc.find(v.Slider).widgets]


# -- controls -----------------------------------------------------------------------------------


def test_controls_start_at_the_scenario_values(scenario: Scenario) -> None:
    knobs = {k.name: k for k in app.knobs(scenario)}
    assert knobs["policy"].value == "buyback"
    assert knobs["policy"].values == registry.names("policy")
    assert knobs["method"].value == "leave_one_out"
    counts = {s: knobs[app.investor_knob(s)].value for s in STRATEGIES}
    assert counts == {**dict.fromkeys(STRATEGIES, 0), "fundamental": 2, "noise": 1}
    assert knobs["budget"].value == 400.0
    assert knobs["fee_bps"].value == 30
    assert knobs["seed"].value == 5
    assert app.knob_values(scenario)["base"] is scenario


def test_a_control_shows_its_value_with_its_unit(scenario: Scenario) -> None:
    knobs = {k.name: k for k in app.knobs(scenario)}
    assert knobs["fee_bps"].shown(30) == "Swap fee: 30 bps"
    assert knobs["budget"].shown(400.0) == "Reward budget: 400 USD per round"
    assert knobs["budget"].shown(12_500.0) == "Reward budget: 12,500 USD per round"
    assert knobs["investors_noise"].shown(7) == "Investors: noise: 7 investors"
    assert knobs["seed"].shown(9) == "Seed: 9"
    schedule = scenario.with_overrides({"rewards.budget.kind": "schedule",
                                        "rewards.budget.schedule": [100.0, 50.0]})
    budget = next(k for k in app.knobs(schedule) if k.name == "budget")
    assert budget.shown(1.5) == "Reward schedule: 1.5 × file values"


def test_every_control_is_a_keyword_of_the_viz_model(scenario: Scenario) -> None:
    # One control per registered strategy, policy and method: derived from the registry.
    names = {k.name for k in app.knobs(scenario)}
    assert {app.investor_knob(s) for s in STRATEGIES} <= names
    knobs = dict.fromkeys(names)
    assert isinstance(app.VizModel(scenario, **knobs), app.VizModel)
    with pytest.raises(TypeError, match="unknown control"):
        app.VizModel(scenario, investors_astrologer=3)


def test_exact_shapley_is_offered_only_up_to_16_clients(scenario: Scenario) -> None:
    def methods(s: Scenario) -> tuple[str, ...]:
        return next(k.values for k in app.knobs(s) if k.name == "method")

    assert "shapley_exact" in methods(scenario)
    many = scenario.with_overrides({"clients": [{"count": 17}],
                                    "fl.dataset.n_samples": 1000})
    methods = methods(many)
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
    assert next(k for k in app.knobs(schedule) if k.name == "budget").value == 1.0
    assert app.apply_knobs(schedule, budget=2.0).rewards.budget.schedule == [200.0, 100.0]


def test_the_viz_model_stops_at_the_scenario_end(scenario: Scenario) -> None:
    model = app.VizModel(scenario, seed=3)
    assert model.config.seed == 3
    for _ in range(scenario.steps):
        assert model.running
        model.step()
    assert not model.running


# -- the app, rendered --------------------------------------------------------------------------


def test_page_shows_named_pages_one_step_counter_and_the_controls_values(render, scenario):
    rc = render(app.ScenarioApp(scenario))
    assert [w.children for w in rc.find(v.Tab).widgets] == [
        ["Market"], ["Agents"], ["Counterfactual twin"]]
    labels = {w.label for w in rc.find(v.Select).widgets} | set(slider_labels(rc))
    assert {"Reward policy", "Contribution method", "Investors: fundamental: 2 investors",
            "Investors: mean reversion: 0 investors", "Reward budget: 400 USD per round",
            "Swap fee: 30 bps", "Seed: 5", "Play interval: 100 ms between steps",
            "Redraw every: 1 step"} <= labels
    for button in ("Reset", "Step", "▶"):
        rc.find(v.Btn, children=[button]).assert_single()
    assert chart_titles(rc) == [
        "Token price per client", "Contribution signal per client",
        "Pool liquidity (USD reserve per pool)", "Global model accuracy",
        "Wealth change by agent type since step 0, at spot and if sold"]
    assert step_counter(rc) == "Step 0 of 6"
    shown = texts(rc)
    assert not [t for t in shown if t.startswith(("Time:", "Page "))]


def test_moving_a_control_changes_the_value_it_shows(render, scenario: Scenario) -> None:
    rc = render(app.ScenarioApp(scenario))
    rc.find(v.Slider, label="Swap fee: 30 bps").widget.v_model = 45
    rc.find(v.Slider, label="Investors: momentum: 0 investors").widget.v_model = 4
    rc.find(v.Slider, label="Reward budget: 400 USD per round").widget.v_model = 1000.0
    rc.find(v.Slider, label="Play interval: 100 ms between steps").widget.v_model = 300
    labels = slider_labels(rc)
    assert {"Swap fee: 45 bps", "Investors: momentum: 4 investors",
            "Reward budget: 1,000 USD per round", "Play interval: 300 ms between steps"
            } <= set(labels)
    rc.find(v.Select, label="Reward policy").widget.v_model = "mint"
    assert rc.find(v.Select, label="Reward policy").widget.v_model == "mint"


def test_charts_show_the_genesis_state_at_step_0(render, scenario: Scenario) -> None:
    rc = render(app.ScenarioApp(scenario))
    for option in (w.option.value for w in rc.find(panels.ChartWidget).widgets):
        source = option["dataset"]["source"]
        assert len(source) == 2 and source[1][0] == 0  # the header and step 0
        assert all(s["showSymbol"] for s in option["series"] if s.get("encode"))
    table = html_of(rc, "wsf-round-table")
    assert table.count("<tr>") == 1 + len(CLIENTS)
    assert "<td>free_rider</td>" in table and "<td>—</td>" in table


def test_step_advances_the_model_and_redraws_charts_and_table(render, scenario) -> None:
    rc = render(app.ScenarioApp(scenario))
    assert price_rows(rc) == 1  # genesis only
    for _ in range(3):
        click(rc, "Step")
    assert step_counter(rc) == "Step 3 of 6"
    assert price_rows(rc) == 4
    price = chart(rc, "Token price")
    markers = price["series"][len(CLIENTS)]
    assert markers["name"] == echarts.ROUND_MARKER_NAME
    (marker,) = markers["markLine"]["data"]
    assert marker["xAxis"] == 2  # the round that ran in step 2, with its event's text
    assert marker["name"].startswith("step 2: FL round 1: 400 USD budget")
    table = html_of(rc, "wsf-round-table")
    assert table.count("<tr>") == 1 + len(CLIENTS)  # header + one row per client
    assert all(f"<td>{c}</td>" in table for c in CLIENTS)
    caption = rc.find(v.Html, class_="wsf-round-caption").widget.children[0]
    assert caption.startswith("Step 3 of 6 · round 1 ran at step 2 · accuracy ")


def test_a_step_redraws_each_chart_of_the_open_page_once(render, scenario) -> None:
    """Behaviour behind the redraw budget (`make bench`, bench/viz.py): one Step sends each
    chart of the open page one new option, and draws nothing of the other pages."""
    rc = render(app.ScenarioApp(scenario))
    widgets = rc.find(panels.ChartWidget).widgets
    sent = [0] * len(widgets)

    def counter(i: int):
        return lambda change: sent.__setitem__(i, sent[i] + 1)

    for i, w in enumerate(widgets):
        w.observe(counter(i), "option")
    click(rc, "Step")
    assert sent == [1] * len(widgets)
    assert len(rc.find(panels.ChartWidget).widgets) == len(widgets)  # no other page drawn
    assert not rc.find(v.Html, class_="wsf-twin-caption").widgets


def test_reset_builds_a_new_model_from_the_controls(render, scenario: Scenario) -> None:
    rc = render(app.ScenarioApp(scenario))
    click(rc, "Step")
    assert step_counter(rc) == "Step 1 of 6"
    rc.find(v.Select, label="Reward policy").widget.v_model = "mint"
    rc.find(v.Slider, label="Seed: 5").widget.v_model = 42
    rc.find(v.Slider, label="Investors: momentum: 0 investors").widget.v_model = 4
    click(rc, "Reset")
    assert step_counter(rc) == "Step 0 of 6"
    settings = rc.find(v.Html, class_="wsf-settings-caption").widget.children[0]
    assert "mint rewards" in settings
    assert "seed 42" in settings
    assert "4 momentum" in settings
    assert price_rows(rc) == 1
    click(rc, "Step")
    assert step_counter(rc) == "Step 1 of 6"


def test_each_session_gets_its_own_model(render, scenario: Scenario) -> None:
    first = render(app.ScenarioApp(scenario))
    second = render(app.ScenarioApp(scenario))
    click(first, "Step")
    click(first, "Step")
    assert step_counter(first) == "Step 2 of 6"
    assert step_counter(second) == "Step 0 of 6"
    assert price_rows(second) == 1


def test_step_is_disabled_at_the_scenario_end(render, scenario: Scenario) -> None:
    rc = render(app.ScenarioApp(scenario))
    for _ in range(scenario.steps):
        click(rc, "Step")
    assert rc.find(v.Btn, children=["Step"]).widget.disabled


def test_page_loads_the_scenario_named_by_the_environment(render, scenario_file, monkeypatch):
    monkeypatch.setenv(SCENARIO_ENV, str(scenario_file))
    rc = render(app.Page())
    assert step_counter(rc) == "Step 0 of 6"
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


def test_the_wealth_toggle_shows_spot_if_sold_or_both(render, scenario: Scenario) -> None:
    rc = render(app.ScenarioApp(scenario))
    click(rc, "Step")
    names = [s["name"] for s in chart(rc, "Wealth change")["series"]]
    assert "federation at spot" in names and "federation if sold" in names
    toggle = rc.find(v.BtnToggle, class_="wsf-valuation").widget
    toggle.v_model = list(charts.VALUATIONS).index("if sold")
    option = chart(rc, "Wealth change")
    assert option["title"]["text"].endswith("if sold")
    lines = [s["name"] for s in option["series"] if s.get("encode")]
    assert lines == ["clients if sold", "investors if sold", "liquidity providers if sold",
                     "federation if sold"]


# -- the pages' charts -------------------------------------------------------------------------

#: Every line chart of the pages, in page order, as (title, y axis): the title and the axis
#: say exactly what is plotted and in which unit, so a change here changes what a page claims.
PAGE_CHARTS = {
    "Market": [
        ("Token price per client", "USD per token"),
        ("Contribution signal per client", "score (latest round)"),
        ("Pool liquidity (USD reserve per pool)", "USD"),
        ("Wealth change by agent type since step 0, at spot and if sold", "USD"),
        ("Global model accuracy", "validation accuracy"),
    ],
    "Counterfactual twin": [
        ("Attributable wealth per client: run minus zero-budget twin, if sold (USD)",
         "USD (run − twin)"),
        ("By holder type: run minus twin, if sold (USD)", "USD (run − twin)"),
    ],
}
#: The page lists of panels that hold those charts.
PAGE_PANELS = {"Market": charts.MARKET, "Counterfactual twin": twin.TWIN}


@pytest.fixture
def default_valuation() -> Iterator[None]:
    """The wealth toggle at the page's default ("both"): outside a browser session a
    `solara.reactive` is one global value, which a test that moves the toggle leaves moved."""
    charts.valuation.set("both")
    yield
    charts.valuation.set("both")


def listed_charts(page: list) -> list[panels.LineChart]:
    """The line charts a page's list of panels shows now (of a toggle: the one picked)."""
    shown = []
    for panel in page:
        if isinstance(panel, panels.Toggle):
            shown.append(panel.charts[panel.choice.value])
        elif isinstance(panel, panels.LineChart):
            shown.append(panel)
    return shown


def page_chart_titles(rc) -> list[str]:
    """Titles of the open page's charts in the page's order (panel by panel)."""
    def walk(widget) -> Iterator[str]:
        if isinstance(widget, panels.ChartWidget):
            yield widget.option.value["title"]["text"]
        for child in getattr(widget, "children", None) or []:
            if not isinstance(child, str):
                yield from walk(child)

    return list(walk(rc.find(v.Html, class_="wsf-grid").widget))


def test_each_listed_chart_plots_its_columns_under_its_title_and_unit(
        scenario: Scenario, default_valuation: None) -> None:
    """Every line chart of the page lists, built on a short real run: its option carries the
    title and y axis it declares, one line per column it picks (under its legend label, with
    the column's values rounded for the browser) and the run's FL rounds marked."""
    for page, expected in PAGE_CHARTS.items():
        assert [(c.title, c.y_name) for c in listed_charts(PAGE_PANELS[page])] == expected
    assert {name: c.title for name, c in charts.WEALTH_CHARTS.items()} == {
        "at spot": "Wealth change by agent type since step 0, at spot",
        "if sold": "Wealth change by agent type since step 0, if sold",
        "both": "Wealth change by agent type since step 0, at spot and if sold"}
    model = app.VizModel(scenario)
    model.start_twin()
    for _ in range(4):
        model.step()
    every = [*listed_charts(charts.MARKET), *charts.WEALTH_CHARTS.values(),
             *listed_charts(twin.TWIN)]
    for listed in every:
        option, lines = listed.option(model), listed.lines(model)
        assert option["title"]["text"] == listed.title
        assert (option["yAxis"]["name"], option["xAxis"]["name"]) == (listed.y_name, "step")
        labels = list(lines.series)
        assert labels, listed.title
        names = [s["name"] for s in option["series"]]
        assert names[:len(labels) + 1] == [*labels, echarts.ROUND_MARKER_NAME]
        rounds = option["series"][len(labels)]["markLine"]["data"]
        assert [r["xAxis"] for r in rounds] == [2, 4]  # round_every: 2
        source = option["dataset"]["source"]
        assert source[0] == ["step", *labels]
        assert [row[0] for row in source[1:]] == [0, 1, 2, 3, 4]
        plotted = lines.frame[[lines.series[label] for label in labels]]
        assert [row[1:] for row in source[1:]] == plotted.round(echarts.DECIMALS).values.tolist()


def test_each_page_shows_its_listed_charts_in_order(render, scenario: Scenario,
                                                   default_valuation: None) -> None:
    rc = render(app.ScenarioApp(scenario))
    click(rc, "Step")
    for page, expected in PAGE_CHARTS.items():
        open_page(rc, page)
        assert page_chart_titles(rc) == [title for title, _ in expected]


def test_market_page_shows_strategy_shares_where_investors_switch(render, scenario: Scenario,
                                                                  default_valuation: None):
    """With switching investors the market page adds the strategies' shares (one line per
    strategy, the model table's `strategy_share_*` columns) after the listed charts; without,
    it shows only the listed charts (the test above)."""
    groups = scenario.to_dict()["investors"]
    for group in groups:
        group["switching"] = {"kind": "discrete_choice", "strategies": ["fundamental", "noise"],
                              "rate": 0.5, "herding": 0.5}
    switching = scenario.with_overrides({"investors": groups})
    rc = render(app.ScenarioApp(switching))
    click(rc, "Step")
    listed = [title for title, _ in PAGE_CHARTS["Market"]]
    assert page_chart_titles(rc) == [*listed, charts.strategy_chart.title]
    option = chart(rc, charts.strategy_chart.title)
    assert [s["name"] for s in option["series"][:2]] == ["fundamental", "noise"]
    source = option["dataset"]["source"]
    assert source[0] == ["step", "fundamental", "noise"]
    assert [row[1] + row[2] for row in source[1:]] == pytest.approx([1.0] * (len(source) - 1))
    # Step 0: the groups as the scenario starts them (values rounded for the browser).
    assert source[1][1:] == pytest.approx([2 / 3, 1 / 3], abs=10.0**-echarts.DECIMALS)


# -- agents page --------------------------------------------------------------------------------


def test_agents_page_renders_and_follows_the_steps(render, scenario: Scenario) -> None:
    rc = render(app.ScenarioApp(scenario))
    open_page(rc, "Agents")
    assert sorted(chart_titles(rc)) == [
        "Investors' holdings at spot, step 0 (USD; click a client)",
        "Wealth distribution of the investors at step 0 (USD)",
        "c00: contribution and reward per round"]
    for _ in range(3):
        click(rc, "Step")
    histogram = chart(rc, "Wealth distribution")
    assert histogram["title"]["text"].endswith("at step 3 (USD)")
    assert [sum(s["data"]) for s in histogram["series"]] == [3, 3]  # 3 investors, twice
    history = chart(rc, "c00: contribution")
    assert history["xAxis"]["data"] == [1]  # round 1 ran at step 2
    assert "wsf-holders-table" in html_of(rc, "wsf-holders-table")
    # Clicking the heatmap's column of c02 opens c02 in the client panels.
    heatmap = next(w for w in rc.find(panels.ChartWidget).widgets
                   if w.option.value["title"]["text"].startswith("Investors' holdings"))
    heatmap.vue_on_click({"data": {"value": [2, 0, 1.0]}, "seriesName": "holdings"})
    assert rc.find(v.Html, class_="wsf-client-title").widget.children[0].startswith("c02")
    assert chart(rc, "c02: contribution")["series"][0]["data"]


def test_holdings_and_the_histogram_count_every_agent_and_token(scenario: Scenario) -> None:
    model = app.VizModel(scenario)
    for _ in range(4):
        model.step()
    investors, amounts = agents.holdings(model)
    assert [i.agent_type for i in investors] == ["investor"] * 3
    for i, inv in enumerate(investors):
        for j, c in enumerate(model.client_ids):
            assert amounts[i, j] == model.ledger.balance(inv.account, c) / 10**18
    heat = agents.holdings_heatmap_option(model)
    prices = [model.market.pools[c].spot_price() for c in model.client_ids]
    for cell in heat["series"][0]["data"]:
        j, i, value = cell["value"]
        assert value == pytest.approx(amounts[i, j] * prices[j], abs=0.01)
    for kind, n in (("client", 3), ("investor", 3), ("lp", 1), ("federation", 1)):
        option = agents.wealth_histogram_option(model, kind)
        assert [sum(s["data"]) for s in option["series"]] == [n, n]
    holders = agents.token_holders(model, "c00")
    shares = [share for *_, share in holders]
    assert shares == sorted(shares, reverse=True)
    assert sum(tokens for _, _, tokens, _ in holders) == pytest.approx(
        model.ledger.supply("c00") / 10**18)


# -- counterfactual twin -------------------------------------------------------------------------


def test_twin_page_starts_the_twin_and_follows_the_steps(render, scenario: Scenario) -> None:
    rc = render(app.ScenarioApp(scenario))
    click(rc, "Step")
    open_page(rc, "Counterfactual twin")
    assert chart_titles(rc)[0].startswith("Attributable wealth per client")
    caption = rc.find(v.Html, class_="wsf-twin-caption").widget.children[0]
    assert "started when this page was opened at step 1" in caption and "at step 1." in caption
    for _ in range(3):
        click(rc, "Step")
    source = chart(rc, "Attributable wealth")["dataset"]["source"]
    assert [row[0] for row in source[1:]] == [0, 1, 2, 3, 4]
    assert source[1][1:] == [0.0, 0.0, 0.0]  # the same genesis
    assert html_of(rc, "wsf-twin-table").count("<tr>") == 1 + len(CLIENTS)
    # Back on the market page the twin keeps stepping with the run (no catching up later).
    open_page(rc, "Market")
    click(rc, "Step")
    open_page(rc, "Counterfactual twin")
    caption = rc.find(v.Html, class_="wsf-twin-caption").widget.children[0]
    assert "opened at step 1" in caption and "at step 5." in caption


def test_under_cash_rewards_the_twin_difference_is_the_cash_paid(scenario: Scenario) -> None:
    """Under `equal` (cash to every client) the rewards reach nothing else: run and twin
    trade alike, and each client's run-minus-twin wealth is the cash it was paid."""
    model = app.VizModel(scenario, policy="equal")
    model.start_twin()
    for _ in range(scenario.steps):
        model.step()
    frame = twin.attributable_frame(model)
    paid = pd.DataFrame(model.round_rows).groupby("client")["reward_usd"].sum()
    assert frame.iloc[-1].to_dict() == pytest.approx(paid.to_dict(), abs=1e-6)
    assert (frame.iloc[0] == 0).all()


def test_the_twin_replays_the_runs_learning_rounds(scenario: Scenario) -> None:
    """The twin opened mid-run takes the run's rounds from its learning log (it trains
    none of them) and still gets the tables of a twin that learns every round itself."""
    from abm.model import WallStreetFedsModel

    model = app.VizModel(scenario)
    for _ in range(3):
        model.step()
    model.start_twin()
    for _ in range(3):
        model.step()
    assert model.twin.federation.replayed_rounds == model.federation.rounds_done == 3
    alone = WallStreetFedsModel(model.config.twin())
    alone.run_for(model.steps)
    pd.testing.assert_frame_equal(pd.DataFrame(model.twin.round_rows),
                                  pd.DataFrame(alone.round_rows), check_exact=True)
    pd.testing.assert_frame_equal(model.twin.agents_dataframe(), alone.agents_dataframe(),
                                  check_exact=True)


# -- downloads ----------------------------------------------------------------------------------


def test_downloads_are_the_run_tables_so_far(scenario: Scenario) -> None:
    model = app.VizModel(scenario)
    for _ in range(4):
        model.step()
    for fmt, read in (("parquet", pd.read_parquet), ("csv", pd.read_csv)):
        tables = {name: read(io.BytesIO(downloads.table_bytes(model, name, fmt)))
                  for name in ("model", "agents", "rounds")}
        assert len(tables["model"]) == 5  # genesis + 4 steps
        assert tables["model"]["step"].tolist() == [0, 1, 2, 3, 4]
        assert len(tables["agents"]) == 5 * len(model.agents)
        assert len(tables["rounds"]) == 2 * len(CLIENTS)  # rounds at steps 2 and 4
    with pytest.raises(ValueError, match="no download"):
        downloads.table_bytes(model, "model", "xlsx")


def test_the_downloaded_scenario_reproduces_the_browser_run(scenario, tmp_path) -> None:
    model = app.VizModel(scenario, policy="mint", seed=8, investors_momentum=2)
    for _ in range(3):
        model.step()
    path = tmp_path / "from-viz.yaml"
    path.write_text(downloads.scenario_yaml(model, source="viz.yaml", controls="policy=mint"))
    assert load_scenario(path).to_dict() == model.config.to_dict()
    assert wsf(["run", str(path), "--steps", "3", "--out", str(tmp_path / "run"),
                "--no-report"]) == 0
    for name in ("model", "agents", "rounds"):
        downloaded = pd.read_parquet(io.BytesIO(downloads.table_bytes(model, name, "parquet")))
        pd.testing.assert_frame_equal(downloaded,
                                      pd.read_parquet(tmp_path / "run" / f"{name}.parquet"))


# -- chart data ---------------------------------------------------------------------------------


def table(rounds: list[int], **columns: list[float]) -> pd.DataFrame:
    frame = pd.DataFrame({"round": rounds, **columns})
    frame.index.name = "step"
    return frame


class Observed:
    """A model as the market charts read it (`echarts.ObservedModel`): its table (a
    collector's lists, one value per step), its clients and its events."""

    def __init__(self, frame: pd.DataFrame, clients: Sequence[str] = (),
                 events: Sequence[dict] = ()) -> None:
        self.datacollector = SimpleNamespace(
            model_vars={name: frame[name].tolist() for name in frame.columns})
        self.client_ids = list(clients)
        self.events = list(events)


def test_round_markers_sit_where_the_round_counter_went_up() -> None:
    frame = table([0, 0, 1, 1, 2, 2, 3])
    assert echarts.round_steps(frame) == [2, 4, 6]
    assert echarts.round_steps(table([0])) == []


def test_at_most_max_markers_rounds_are_marked_always_the_latest() -> None:
    rounds = list(range(1001))  # a round in every step
    option = charts.accuracy_chart.option(Observed(table(rounds, accuracy=[0.5] * 1001)))
    marked = [m["xAxis"] for m in option["series"][-1]["markLine"]["data"]]
    assert len(marked) == echarts.MAX_MARKERS
    assert marked[0] == 1 and marked[-1] == 1000


def test_price_chart_has_one_series_per_client_and_a_marker_series() -> None:
    frame = table([0, 1, 1], **{"price/c00": [1.0, 1.1, 1.2], "price/c01": [1.0, 0.9, 0.8]})
    option = charts.price_chart.option(Observed(frame, ["c00", "c01"]))
    assert [s["name"] for s in option["series"]] == ["c00", "c01", echarts.ROUND_MARKER_NAME]
    assert option["dataset"]["source"] == [["step", "c00", "c01"], [0, 1.0, 1.0],
                                           [1, 1.1, 0.9], [2, 1.2, 0.8]]
    assert option["series"][-1]["markLine"]["data"] == [{"xAxis": 1,
                                                          "name": "FL round at step 1"}]
    assert option["series"][-1]["markLine"]["tooltip"] == {"trigger": "item",
                                                           "formatter": "{b}"}
    assert option["animation"] is False
    assert [s["lineStyle"]["color"] for s in option["series"][:2]] == list(
        echarts.CLIENT_COLOURS[:2])


def test_long_runs_are_drawn_at_evenly_spaced_steps_ending_at_the_current_one() -> None:
    assert echarts.drawn_rows(5, limit=10).tolist() == [0, 1, 2, 3, 4]
    rows = echarts.drawn_rows(1001, limit=11)
    assert rows.tolist() == [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
    frame = table([0] * 1001, accuracy=[0.5] * 1001)
    source = echarts.line_option(frame, {"a": "accuracy"}, title="t", y_name="y")
    steps = [row[0] for row in source["dataset"]["source"][1:]]
    assert len(steps) <= echarts.MAX_POINTS and steps[0] == 0 and steps[-1] == 1000


def test_chart_data_reaches_the_browser_as_plain_json() -> None:
    widget = panels.ChartWidget(option=panels.Opaque({"series": [{"data": [1, 2]}]}))
    assert widget.get_state()["option"] == {"series": [{"data": [1, 2]}]}
    widget.close()


def test_missing_values_are_sent_as_gaps_and_numbers_are_rounded() -> None:
    frame = table([0, 0], accuracy=[math.nan, 0.123456789])
    source = charts.accuracy_chart.option(Observed(frame))["dataset"]["source"]
    assert source[1:] == [[0, None], [1, 0.123457]]


def cielab(colour: str) -> np.ndarray:
    """CIE L*a*b* (D65) of an sRGB hex colour."""
    rgb = np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_twenty_clients_get_twenty_distinct_colours() -> None:
    colours = echarts.CLIENT_COLOURS
    assert len(set(colours)) == 20
    distances = [np.linalg.norm(cielab(a) - cielab(b))
                 for a, b in itertools.combinations(colours, 2)]
    # Delta E (CIE 1976) >= 25 between every pair: far apart at a glance (tab20's light
    # half has pairs at 17, which is how c00 and c09 came to share a blue).
    assert min(distances) >= 25
    assert all(cielab(c)[0] <= 90 for c in colours)  # none fades into the white page
    assert echarts.client_colour(20) == colours[0]
    clients = [f"c{i:02d}" for i in range(20)]
    frame = table([0], **{f"{kind}/{c}": [1.0] for c in clients
                          for kind in ("price", "contribution", "reserve_usd")})
    for chart_ in (charts.price_chart, charts.contribution_chart, charts.reserves_chart):
        option = chart_.option(Observed(frame, clients))
        assert [s["lineStyle"]["color"] for s in option["series"][:20]] == list(colours)


def test_legends_wrap_instead_of_paginating() -> None:
    few = table([0], **{"price/c00": [1.0]})
    many_clients = [f"c{i:02d}" for i in range(20)]
    many = table([0], **{f"price/{c}": [1.0] for c in many_clients})
    small = charts.price_chart.option(Observed(few, ["c00"]))
    large = charts.price_chart.option(Observed(many, many_clients))
    assert small["legend"]["type"] == large["legend"]["type"] == "plain"
    assert echarts.legend_lines(many_clients) >= 3
    # The plot starts below the legend's last line.
    assert large["grid"]["top"] - small["grid"]["top"] == echarts.LEGEND_LINE_PX * (
        echarts.legend_lines(many_clients) - 1)


def test_events_are_marked_on_the_price_chart_with_tooltips() -> None:
    frame = table([0, 0, 1, 1, 1, 1, 1, 1], **{"price/c00": [1.0 + i / 10 for i in range(8)],
                              "price/c01": [2.0] * 8})
    events = [
        {"step": 1, "kind": "pump_start", "client": "c00", "agent_id": 7, "text": "pump c00"},
        {"step": 2, "kind": "round", "client": "", "agent_id": -1, "text": "FL round 1"},
        {"step": 3, "kind": "leave", "client": "c01", "agent_id": 2, "text": "c01 leaves"},
        {"step": 4, "kind": "pump_end", "client": "c00", "agent_id": 7, "text": ""},
        {"step": 5, "kind": "dump", "client": "c00", "agent_id": 7, "text": "dumps c00"},
        {"step": 6, "kind": "offering_start", "client": "c01", "agent_id": -1, "text": "IPO"},
        {"step": 6, "kind": "join", "client": "c01", "agent_id": 2, "text": "c01 rejoins"},
    ]
    option = charts.price_chart.option(Observed(frame, ["c00", "c01"], events))
    by_name = {s["name"]: s for s in option["series"]}
    assert option["legend"]["data"] == ["c00", "c01", echarts.ROUND_MARKER_NAME, "pump window",
                                        "offering window", "client left", "dump",
                                        "client (re)joined"]
    pump = by_name["pump window"]["markArea"]
    assert pump["data"] == [[{"name": "step 1 · c00: pump c00 (until step 4)", "xAxis": 1},
                             {"xAxis": 4}]]
    offering = by_name["offering window"]["markArea"]["data"]
    assert offering == [[{"name": "step 6 · c01: IPO (still open)", "xAxis": 6},
                         {"xAxis": 7}]]  # an open window reaches the latest step
    assert by_name["dump"]["markPoint"]["data"] == [
        {"name": "step 5 · c00: dumps c00", "coord": [5, 1.5]}]  # on c00's price line
    assert by_name["client left"]["markPoint"]["data"][0]["coord"] == [3, 2.0]
    rounds = by_name[echarts.ROUND_MARKER_NAME]["markLine"]["data"]
    assert rounds == [{"xAxis": 2, "name": "step 2: FL round 1"}]
    for series in option["series"][2:]:
        for marker in ("markArea", "markPoint", "markLine"):
            if marker in series:
                assert series[marker]["tooltip"]["formatter"] == "{b}"


def test_an_unknown_kind_or_an_end_without_start_is_still_drawn() -> None:
    frame = table([0] * 3, **{"price/c00": [1.0, 1.0, 1.0]})
    events = [{"step": 1, "kind": "pump_end", "client": "c00", "agent_id": 3, "text": "end"},
              {"step": 2, "kind": "halving", "client": "", "agent_id": -1, "text": "halved"}]
    markers = event_markers(events, frame, ["c00"])
    assert [m["name"] for m in markers] == ["pump end", "halving"]
    assert markers[0]["markPoint"]["data"][0]["coord"] == [1, 1.0]
    assert markers[1]["markLine"]["data"] == [{"name": "step 2: halved", "xAxis": 2}]


def test_events_a_model_records_reach_its_price_chart(render, scenario, monkeypatch) -> None:
    original = app.VizModel.step

    def step_with_events(self) -> None:
        original(self)
        if self.steps == 1:
            self.record_event("pump_start", client="c01", agent_id=4, text="pump starts")
        if self.steps == 2:
            self.record_event("leave", client="c02", agent_id=3, text="c02 leaves")

    # Mesa binds `step` when a model is built, so the class is patched before the app is.
    monkeypatch.setattr(app.VizModel, "step", step_with_events)
    rc = render(app.ScenarioApp(scenario))
    for _ in range(3):
        click(rc, "Step")
    price = chart(rc, "Token price")
    names = [s["name"] for s in price["series"]]
    assert names == [*CLIENTS, echarts.ROUND_MARKER_NAME, "pump window", "client left"]
    area = price["series"][-2]["markArea"]["data"]
    assert area == [[{"name": "step 1 · c01: pump starts (still open)", "xAxis": 1},
                     {"xAxis": 3}]]


def test_wealth_chart_shows_each_types_change_since_genesis() -> None:
    frame = table([0, 0], **{"wealth/client": [100.0, 130.0], "wealth/investor": [50.0, 40.0],
                             "wealth/lp": [10.0, 10.0]})
    source = charts.WEALTH_CHARTS["both"].option(Observed(frame))["dataset"]["source"]
    assert source == [["step", "clients at spot", "investors at spot",
                       "liquidity providers at spot"],
                      [0, 0.0, 0.0, 0.0], [1, 30.0, -10.0, 0.0]]


def test_wealth_chart_shows_spot_and_if_sold_beside_each_other() -> None:
    frame = table([0, 0], **{"wealth/client": [100.0, 130.0],
                             "wealth_if_sold/client": [60.0, 70.0],
                             "wealth/federation": [50.0, 80.0],
                             "wealth_if_sold/federation": [40.0, 45.0]})
    source = charts.WEALTH_CHARTS["both"].option(Observed(frame))["dataset"]["source"]
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
    left = {**row, "participating": False}
    assert charts.round_table([left])[0][1] == "honest (not training)"
    # an adaptive client's action is marked where it is not its behaviour (7.16)
    assert charts.round_table([{**row, "action": "honest"}])[0][1] == "honest"
    assert charts.round_table([{**row, "action": "free_ride"}])[0][1] == "honest → free_ride"
    sat = {**row, "action": "sit_out", "participating": False}
    assert charts.round_table([sat])[0][1] == "honest → sit_out (not training)"


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


def test_launch_refuses_a_port_in_use_as_bad_input(scenario_file: Path, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert server.launch(scenario_file, port=port) == 2  # wsf's "bad input"
    assert capsys.readouterr().err.startswith(f"error: --port = {port}: the port on 127.0.0.1 "
                                              "is already in use")


def test_the_app_applies_the_command_lines_settings(scenario_file: Path, monkeypatch) -> None:
    from abm.viz import SCENARIO_ENV, SETTINGS_ENV

    monkeypatch.setenv(SCENARIO_ENV, str(scenario_file))
    monkeypatch.setenv(SETTINGS_ENV, json.dumps({"steps": 4, "rewards.policy": "mint"}))
    loaded = app._load()
    assert (loaded.steps, loaded.rewards.policy) == (4, "mint")
    assert loaded.source == str(scenario_file)
    env = server.solara_environment(scenario_file, {"steps": 4})
    assert json.loads(env[SETTINGS_ENV]) == {"steps": 4}
    assert SETTINGS_ENV not in server.solara_environment(scenario_file)


def test_heatmap_rows_carry_their_strategy_however_many_investors() -> None:
    few = [SimpleNamespace(unique_id=i, strategy=s) for i, s in
           enumerate(["fundamental", "mean_reversion", "mean_reversion"], start=5)]
    assert agents.heatmap_row_labels(few) == ["5 fundamental", "6 mean reversion",
                                              "7 mean reversion"]
    # 100 investors in blocks of 30, 50 and 20 (rows a few pixels high): each block's
    # strategy once, on its middle row, with the block's size.
    many = [SimpleNamespace(unique_id=i, strategy=s) for i, s in enumerate(
        ["fundamental"] * 30 + ["momentum"] * 50 + ["noise"] * 20)]
    labels = agents.heatmap_row_labels(many)
    assert len(labels) == 100
    assert {i: t for i, t in enumerate(labels) if t} == {
        14: "fundamental (30)", 54: "momentum (50)", 89: "noise (20)"}


def test_holder_type_colours_are_one_per_type_on_every_page(scenario: Scenario) -> None:
    from abm.collect import AGENT_TYPE_COLOURS, AGENT_TYPE_LABELS

    model = app.VizModel(scenario)
    model.step()
    wealth = charts.WEALTH_CHARTS["both"].option(model)
    colour_of = {kind: AGENT_TYPE_COLOURS[kind] for kind in AGENT_TYPE_LABELS}
    for line in wealth["series"]:
        name = str(line.get("name", ""))
        kind = next((k for k, label in AGENT_TYPE_LABELS.items()
                     if name.startswith(label + " ")), None)
        if kind is not None:
            assert line["itemStyle"]["color"] == colour_of[kind], name
    for kind in ("client", "investor", "lp", "federation"):
        bars = agents.wealth_histogram_option(model, kind)["series"]
        assert [b["itemStyle"]["color"] for b in bars] == [colour_of[kind]] * 2
    model.start_twin()
    diff = twin.type_difference_chart.option(model)
    named = {s["name"]: s["itemStyle"]["color"] for s in diff["series"] if "itemStyle" in s
             and s["name"] in charts.TYPE_COLOURS}
    assert named == {AGENT_TYPE_LABELS[k]: colour_of[k] for k in colour_of}
