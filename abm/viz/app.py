"""The browser app: one scenario file, its main knobs as controls, three pages.

Launch it with `wsf viz FILE` (`abm.viz.server.launch`); Solara imports this module by name and
finds the scenario path in the environment variable `WSF_VIZ_SCENARIO`.

Each browser session builds its own model in `ScenarioApp` (`solara.use_memo`): a model built
at module level would be one object shared, and stepped, by every open tab. Mesa's
`ModelController` (Reset, play/pause, Step) rebuilds the model as `VizModel(**values)` on
Reset, so the knobs are keyword arguments of `VizModel`, applied to the scenario as
dotted-path overrides.

The page is laid out here rather than by `SolaraViz`, whose frame numbers its tabs "Page 0",
shows a second step counter ("Time: 3.0") and draws sliders without their values; the
controller, the model's step loop and Reset are Mesa's own.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import solara
from mesa.visualization.solara_viz import ModelController

from abm import registry
from abm.model import WallStreetFedsModel
from abm.scenario import Scenario, ScenarioError, load_scenario
from abm.viz import SCENARIO_ENV, SETTINGS_ENV, agents, assets, charts, downloads, panels, twin

assets.serve_offline()  # the asset route serves installed files only (abm.viz.assets)

#: Slider maxima never go below these, so a scenario with few investors can still add some.
MIN_MAX_INVESTORS = 50
MIN_MAX_BUDGET_USD = 10_000.0
MIN_MAX_FEE_BPS = 100
MIN_MAX_SEED = 999


def investor_knob(strategy: str) -> str:
    """Keyword (and control) name of the number of investors following `strategy`."""
    return f"investors_{strategy}"


def investor_counts(scenario: Scenario) -> dict[str, int]:
    """Number of investors per strategy (0 for strategies the scenario does not use)."""
    counts = dict.fromkeys(registry.names("strategy"), 0)
    for group in scenario.investors:
        counts[group.strategy] += group.count
    return counts


def budget_knob(scenario: Scenario) -> tuple[str, str, float]:
    """(scenario field, control label, current value) of the reward-budget control.

    The knob is the budget's first parameter, whatever its kind (a registered component):
    its value for a number (`constant`: USD per round; `accuracy_gain`: USD per percentage
    point), a multiplier of the whole list for a list of amounts (`schedule`).
    """
    budget = scenario.rewards.budget
    name, info = next((n, i) for n, i in type(budget).model_fields.items() if n != "kind")
    path = f"rewards.budget.{name}"
    if isinstance(getattr(budget, name), list):
        return path, f"Reward {name} (× file values)", 1.0
    unit = (info.json_schema_extra or {}).get("unit", "USD")  # type: ignore[union-attr]
    return path, f"Reward budget ({unit})", float(getattr(budget, name))


def knob_overrides(scenario: Scenario, knobs: dict[str, Any]) -> dict[str, Any]:
    """Dotted-path overrides (`Scenario.with_overrides`) for the controls' values.

    `knobs` holds any of the `knobs` names; `None` keeps the scenario's value. An
    investor count is spread over that strategy's groups in proportion to their sizes (largest
    remainder); a strategy the scenario lacks gets a new group with the schema's defaults.
    """
    out: dict[str, Any] = {}
    simple = {"policy": "rewards.policy", "method": "contribution.method",
              "fee_bps": "market.fee_bps", "seed": "seed"}
    for knob, path in simple.items():
        if knobs.get(knob) is not None:
            out[path] = knobs[knob]
    if knobs.get("budget") is not None:
        path, _, _ = budget_knob(scenario)
        value = float(knobs["budget"])
        current = getattr(scenario.rewards.budget, path.rsplit(".", 1)[1])
        out[path] = [x * value for x in current] if isinstance(current, list) else value
    wanted = {s: knobs.get(investor_knob(s)) for s in registry.names("strategy")}
    if any(n is not None and n != have
           for n, have in zip(wanted.values(), investor_counts(scenario).values(), strict=True)):
        out["investors"] = _investor_groups(scenario, wanted)
    return out


def _investor_groups(scenario: Scenario, wanted: dict[str, int | None]) -> list[dict[str, Any]]:
    groups = [g.model_dump(mode="json") for g in scenario.investors]
    for strategy, target in wanted.items():
        if target is None:
            continue
        mine = [g for g in groups if g["strategy"] == strategy]
        if not mine:
            if target > 0:
                groups.append({"strategy": strategy, "count": int(target)})
            continue
        total = sum(g["count"] for g in mine)
        weights = [g["count"] / total if total else 1 / len(mine) for g in mine]
        exact = [w * int(target) for w in weights]
        counts = [int(x) for x in exact]
        by_remainder = sorted(range(len(mine)), key=lambda i: exact[i] - counts[i], reverse=True)
        for i in by_remainder[: int(target) - sum(counts)]:
            counts[i] += 1
        for group, count in zip(mine, counts, strict=True):
            group["count"] = count
    return groups


def apply_knobs(scenario: Scenario, **knobs: Any) -> Scenario:
    """The scenario with the controls' values applied (revalidated; `ScenarioError` if not)."""
    overrides = knob_overrides(scenario, knobs)
    return scenario.with_overrides(overrides, source="viz controls") if overrides else scenario


@dataclass(frozen=True)
class Knob:
    """One control of the sidebar: a keyword of `VizModel`, shown as "label: value unit".

    A slider has `min`, `max` and `step`; a choice has `values`.
    """

    name: str
    label: str
    value: Any
    unit: str = ""
    min: float | None = None
    max: float | None = None
    step: float | None = None
    values: tuple[str, ...] = ()

    @property
    def is_float(self) -> bool:
        return isinstance(self.value, float)

    def shown(self, value: Any) -> str:
        """The control's label with `value` and its unit ("Swap fee: 30 bps")."""
        if isinstance(value, float):
            text = f"{value:,.2f}".rstrip("0").rstrip(".") if abs(value) < 100 else \
                f"{value:,.0f}"
        else:
            text = str(value)
        return f"{self.label}: {text}{f' {self.unit}' if self.unit else ''}"


def knobs(scenario: Scenario) -> list[Knob]:
    """The scenario's main knobs, starting at the file's values, in sidebar order.

    Policies, methods and strategies are the registered components; a method is offered only
    when the scenario's clients are within its limit (exact Shapley: 16; the schema refuses it
    otherwise). The seed is a slider (whole numbers, no parsing of typed text).
    """
    counts = investor_counts(scenario)
    methods = tuple(name for name, cls in registry.components("method").items()
                    if cls.max_clients is None or scenario.n_clients <= cls.max_clients)
    _, budget_label, budget_value = budget_knob(scenario)
    label, _, unit = budget_label.partition(" (")
    unit = unit.rstrip(")")
    if unit == "× file values":
        budget = Knob("budget", label, 1.0, "× file values", 0.0, 5.0, 0.1)
    else:
        top = max(MIN_MAX_BUDGET_USD, 4 * budget_value)
        budget = Knob("budget", label, float(budget_value), unit, 0.0, top, top / 100)
    fee = scenario.market.fee_bps
    out = [
        Knob("policy", "Reward policy", scenario.rewards.policy,
             values=tuple(registry.names("policy"))),
        Knob("method", "Contribution method", scenario.contribution.method, values=methods),
    ]
    for strategy in registry.names("strategy"):
        out.append(Knob(investor_knob(strategy), f"Investors: {strategy.replace('_', ' ')}",
                        counts[strategy], "investors", 0,
                        max(MIN_MAX_INVESTORS, 2 * counts[strategy]), 1))
    out.append(budget)
    out.append(Knob("fee_bps", "Swap fee", fee, "bps", 0, max(MIN_MAX_FEE_BPS, 2 * fee), 1))
    out.append(Knob("seed", "Seed", scenario.seed, "", 0, max(MIN_MAX_SEED, scenario.seed), 1))
    return out


def knob_values(scenario: Scenario) -> dict[str, Any]:
    """`VizModel`'s keyword arguments at the file's values: `base` and every knob."""
    return {"base": scenario, **{k.name: k.value for k in knobs(scenario)}}


def controls_text(scenario: Scenario, values: dict[str, Any]) -> str:
    """The knobs that differ from the file, as "name=value" (for the scenario download)."""
    changed = [f"{k.name}={values[k.name]}" for k in knobs(scenario)
               if values.get(k.name, k.value) != k.value]
    return ", ".join(changed) or "the file's values"


def clients_if_sold(model: WallStreetFedsModel) -> np.ndarray:
    """Each client's wealth if sold now (USD, display units), shape (n_clients,)."""
    return np.array([c.wealth_if_sold for c in model.clients])


class VizModel(WallStreetFedsModel):
    """The model one browser session watches: the scenario with the controls' values applied.

    Keyword arguments are the `knobs` (`policy`, `method`, `budget`, `fee_bps`, `seed` and
    one `investors_<strategy>` per registered strategy); `None` keeps the scenario's value.
    It stops after the scenario's `steps`, like every model.

    The counterfactual twin (`start_twin`: the same scenario and seed, reward budget 0) is
    built when first asked for, catches up with the run, and from then on steps with it.
    `client_if_sold[t]` and `twin_if_sold[t]` hold each client's wealth if sold after step
    `t` (USD, shape (n_clients,)); `lock` is held for a whole step (and the twin's catch-up)
    so that downloads never read half a step.
    """

    def __init__(self, base: Scenario, scenario: Any = None, **knobs: Any) -> None:
        # `scenario` is Mesa's own experiment object, which Mesa's Reset passes to a model
        # that takes keyword arguments; the scenario here is `base`.
        known = {"policy", "method", "budget", "fee_bps", "seed",
                 *(investor_knob(s) for s in registry.names("strategy"))}
        unknown = sorted(set(knobs) - known)
        if unknown:
            raise TypeError(f"VizModel: unknown control(s) {', '.join(unknown)}")
        self.lock = threading.RLock()
        self.twin: WallStreetFedsModel | None = None
        #: Step of the run at which the twin was started (it then caught up from step 0).
        self.twin_started_at: int | None = None
        self.twin_if_sold: list[np.ndarray] = []
        super().__init__(apply_knobs(base, **knobs))
        self.client_if_sold: list[np.ndarray] = [clients_if_sold(self)]

    def step(self) -> None:
        with self.lock:
            super().step()
            self.client_if_sold.append(clients_if_sold(self))
            self._catch_up_twin()

    def start_twin(self) -> WallStreetFedsModel:
        """The counterfactual twin, built on first call and stepped to the run's step. It
        replays the run's learning rounds (`abm.agents.replay`): the run is always ahead."""
        with self.lock:
            if self.twin is None:
                self.twin = WallStreetFedsModel(self.config.twin(), replay=self.federation.log)
                self.twin_if_sold = [clients_if_sold(self.twin)]
                self.twin_started_at = int(self.steps)
            self._catch_up_twin()
            return self.twin

    def _catch_up_twin(self) -> None:
        twin = self.twin
        while twin is not None and twin.steps < self.steps:
            twin.step()
            self.twin_if_sold.append(clients_if_sold(twin))


def scenario_path() -> Path:
    """The scenario file named by `WSF_VIZ_SCENARIO` (`ScenarioError` if unset)."""
    value = os.environ.get(SCENARIO_ENV)
    if not value:
        raise ScenarioError(
            f"{SCENARIO_ENV} is not set: start the app with `wsf viz FILE`, which names the "
            f"scenario file for it."
        )
    return Path(value)


# -- the page -----------------------------------------------------------------------------------

#: The app's pages (tabs), in order: name -> the component drawing it for a model.
PAGES: dict[str, Any] = {
    "Market": charts.MarketPage,
    "Agents": agents.AgentsPage,
    "Counterfactual twin": twin.TwinPage,
}
#: Play speed slider (ms between steps while playing) and redraw interval (steps per redraw).
PLAY_INTERVAL_MS = 100


@solara.component
def KnobControl(knob: Knob, values: solara.Reactive[dict[str, Any]]):
    """One knob: a slider or a choice whose label shows the current value with its unit."""
    value = values.value.get(knob.name, knob.value)

    def set_value(new: Any) -> None:
        values.value = {**values.value, knob.name: new}

    if knob.values:
        return solara.Select(knob.label, value=value, values=list(knob.values),
                             on_value=set_value)
    slider = solara.SliderFloat if knob.is_float else solara.SliderInt
    return slider(knob.shown(value), value=value, on_value=set_value, min=knob.min,
                  max=knob.max, step=knob.step, thumb_label=False)


@solara.component
def RunControls(model: solara.Reactive[VizModel], values: solara.Reactive[dict[str, Any]]):
    """Reset / play / Step (Mesa's `ModelController`), the play speed and the step counter."""
    play_interval = solara.use_reactive(PLAY_INTERVAL_MS)
    render_interval = solara.use_reactive(1)
    use_threads = solara.use_reactive(False)
    ModelController(model, model_parameters=values, play_interval=play_interval,
                    render_interval=render_interval, use_threads=use_threads)
    solara.SliderInt(f"Play interval: {play_interval.value} ms between steps",
                     value=play_interval, min=0, max=1000, step=50, thumb_label=False)
    solara.SliderInt(f"Redraw every: {render_interval.value} step"
                     f"{'s' if render_interval.value != 1 else ''}",
                     value=render_interval, min=1, max=50, step=1, thumb_label=False)
    StepCounter(model.value)


@solara.component
def StepCounter(model: VizModel):
    """Where the run is: "Step 3 of 40" (the one step counter of the page)."""
    return panels.LiveText(lambda: f"Step {model.steps} of {model.config.steps}", [model],
                           "wsf-step-counter", "font-weight: bold; font-size: 15px;")


@solara.component
def Downloads(model: VizModel, scenario: Scenario, values: dict[str, Any]):
    """Download buttons: the run tables so far (Parquet, CSV) and the running scenario.

    Not redrawn per step (the tables are read when a button is clicked), so the file names
    carry no step number."""
    stem = f"{model.config.name}-seed{model.config.seed}"
    with solara.Column(gap="0px", classes=["wsf-downloads"]):
        for name in ("model", "agents", "rounds"):
            with solara.Row(gap="4px", style={"align-items": "center"}):
                solara.Text(f"{name} table", style={"min-width": "110px"})
                for fmt in downloads.FORMATS:
                    with solara.FileDownload(
                            lambda name=name, fmt=fmt: downloads.table_bytes(model, name, fmt),
                            filename=f"{stem}-{name}.{fmt}", mime_type=downloads.MIME[fmt]):
                        solara.Button(fmt.capitalize() if fmt == "parquet" else fmt.upper(),
                                      icon_name="mdi-download", text=True, small=True,
                                      classes=[f"wsf-download-{name}-{fmt}"])
        with solara.Row(gap="4px", style={"align-items": "center"}):
            solara.Text("scenario", style={"min-width": "110px"})
            with solara.FileDownload(
                    lambda: downloads.scenario_yaml(model, source=str(scenario.source),
                                                    controls=controls_text(scenario, values)),
                    filename=f"{model.config.name}-seed{model.config.seed}-scenario.yaml",
                    mime_type=downloads.MIME["yaml"]):
                solara.Button("YAML", icon_name="mdi-download", text=True, small=True,
                              classes=["wsf-download-scenario-yaml"])
        solara.Text("Tables as after the current step; the scenario the running model was "
                    "built from (knobs apply on Reset): wsf run FILE --steps N re-runs it.",
                    style={"font-size": "12px", "color": "#616161"})


@solara.component
def Pages(model: VizModel):
    """The page tabs; only the open page is drawn (and redrawn on every step)."""
    current, set_current = solara.use_state(0)
    names = list(PAGES)
    with solara.v.Tabs(v_model=current, on_v_model=set_current, class_="wsf-pages"):
        for name in names:
            solara.v.Tab(children=[name])
    PAGES[names[current]](model)


@solara.component
def ScenarioApp(scenario: Scenario):
    """The app for one scenario, with a model owned by this browser session."""
    first = solara.use_memo(lambda: _build(scenario), [scenario])
    model = solara.use_reactive(first)
    values = solara.use_reactive(knob_values(scenario))
    if isinstance(model.value, str):
        return solara.Error(model.value)
    with solara.AppBar():
        solara.AppBarTitle(f"WallStreetFeds · {scenario.name}")
    with solara.Sidebar(), solara.Column():
        with solara.Card("Run"):
            RunControls(model, values)
        with solara.Card("Scenario knobs (applied on Reset)"):
            for knob in knobs(scenario):
                KnobControl(knob, values)
        with solara.Card("Download"):
            Downloads(model.value, scenario, values.value)
    Pages(model.value)


@solara.component
def Page():
    """Solara's entry point: load the scenario file (per session, so edits show on reload)."""
    loaded = solara.use_memo(_load, [])
    if isinstance(loaded, str):
        return solara.Error(loaded)
    return ScenarioApp(loaded)


def _build(scenario: Scenario) -> VizModel | str:
    """The session's model, or the message of a scenario the model refuses (e.g. a missing
    CIFAR-10 copy), shown on the page instead of a traceback."""
    try:
        return VizModel(scenario)
    except ScenarioError as exc:
        return str(exc)


def _load() -> Scenario | str:
    try:
        path = scenario_path()
        scenario = load_scenario(path)
        settings = os.environ.get(SETTINGS_ENV)
        if settings:  # `wsf viz --set KEY=VALUE`
            scenario = scenario.with_overrides(json.loads(settings),
                                               source=f"{path} (command line)")
            scenario._source = str(path)
        return scenario
    except ScenarioError as exc:
        return str(exc)
