"""The browser app: one scenario file, its main knobs as controls, one `SolaraViz` call.

Launch it with `wsf viz FILE` (`abm.viz.server.launch`); Solara imports this module by name and
finds the scenario path in the environment variable `WSF_VIZ_SCENARIO`.

Each browser session builds its own model in `ScenarioApp` (`solara.use_memo`): a model built
at module level would be one object shared, and stepped, by every open tab. SolaraViz's Reset
rebuilds the model as `VizModel(**controls)`, so the knobs are keyword arguments of
`VizModel` and are applied to the scenario as dotted-path overrides.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import solara
from mesa.visualization import Slider, SolaraViz

from abm import registry
from abm.model import WallStreetFedsModel
from abm.scenario import Scenario, ScenarioError, load_scenario
from abm.viz import SCENARIO_ENV, charts

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

    `knobs` holds any of the `model_params` names; `None` keeps the scenario's value. An
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


def model_params(scenario: Scenario) -> dict[str, Any]:
    """SolaraViz controls for the scenario's main knobs, starting at the file's values.

    Policies, methods and strategies are the registered components; a method is offered only
    when the scenario's clients are within its limit (exact Shapley: 16; the schema refuses it
    otherwise). The seed is a slider: a text input crashes SolaraViz's Reset (mesa #3516).
    """
    counts = investor_counts(scenario)
    methods = [name for name, cls in registry.components("method").items()
               if cls.max_clients is None or scenario.n_clients <= cls.max_clients]
    _, budget_label, budget_value = budget_knob(scenario)
    if budget_label.endswith("(× file values)"):
        budget = Slider(budget_label, value=1.0, min=0.0, max=5.0, step=0.1)
    else:
        top = max(MIN_MAX_BUDGET_USD, 4 * budget_value)
        budget = Slider(budget_label, value=float(budget_value), min=0.0, max=top,
                        step=top / 100)
    fee = scenario.market.fee_bps
    params: dict[str, Any] = {
        "base": scenario,
        "policy": {"type": "Select", "label": "Reward policy", "value": scenario.rewards.policy,
                   "values": list(registry.names("policy"))},
        "method": {"type": "Select", "label": "Contribution method",
                   "value": scenario.contribution.method, "values": methods},
    }
    for strategy in registry.names("strategy"):
        params[investor_knob(strategy)] = Slider(
            f"Investors: {strategy.replace('_', ' ')}", value=counts[strategy], min=0,
            max=max(MIN_MAX_INVESTORS, 2 * counts[strategy]), step=1)
    params["budget"] = budget
    params["fee_bps"] = Slider("Swap fee (bps)", value=fee, min=0,
                               max=max(MIN_MAX_FEE_BPS, 2 * fee), step=1)
    params["seed"] = Slider("Seed", value=scenario.seed, min=0,
                            max=max(MIN_MAX_SEED, scenario.seed), step=1)
    return params


class VizModel(WallStreetFedsModel):
    """The model one browser session watches: the scenario with the controls' values applied.

    Keyword arguments are the `model_params` controls (`policy`, `method`, `budget`,
    `fee_bps`, `seed` and one `investors_<strategy>` per registered strategy); `None` keeps
    the scenario's value. It stops after the scenario's `steps`, like every model.
    """

    def __init__(self, base: Scenario, scenario: Any = None, **knobs: Any) -> None:
        # `scenario` is Mesa's own experiment object, which SolaraViz's Reset passes to a
        # model that takes keyword arguments; the scenario here is `base`.
        known = {"policy", "method", "budget", "fee_bps", "seed",
                 *(investor_knob(s) for s in registry.names("strategy"))}
        unknown = sorted(set(knobs) - known)
        if unknown:
            raise TypeError(f"VizModel: unknown control(s) {', '.join(unknown)}")
        super().__init__(apply_knobs(base, **knobs))


def scenario_path() -> Path:
    """The scenario file named by `WSF_VIZ_SCENARIO` (`ScenarioError` if unset)."""
    value = os.environ.get(SCENARIO_ENV)
    if not value:
        raise ScenarioError(
            f"{SCENARIO_ENV} is not set: start the app with `wsf viz FILE`, which names the "
            f"scenario file for it."
        )
    return Path(value)


@solara.component
def ScenarioApp(scenario: Scenario):
    """The SolaraViz page for one scenario, with a model owned by this browser session."""
    model = solara.use_memo(lambda: _build(scenario), [scenario])
    if isinstance(model, str):
        return solara.Error(model)
    charts.StepRelay()
    SolaraViz(
        model,
        components=list(charts.COMPONENTS),
        model_params=model_params(scenario),
        name=f"WallStreetFeds · {scenario.name}",
    )


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
        return load_scenario(scenario_path())
    except ScenarioError as exc:
        return str(exc)
