"""The component registry: every pluggable part of a scenario, declared once.

A *component* is one class: a subclass of one kind's base class (below) with

- ``name``: the word a scenario file uses (``rewards.policy: buyback``);
- a docstring whose first paragraph is its one-paragraph description (the scenario reference
  prints it);
- ``Params``: a pydantic model of its parameters, each declared with :func:`param` (default,
  allowed range, unit and a one-line meaning); ``Params`` may add cross-parameter checks as
  pydantic validators;
- ``check_in``: what makes its parameters impossible in a given scenario (the schema asks
  every component a scenario names, whatever its kind);
- ``events``: the event kinds it may record (events.parquet), so that a run knows every kind
  before it starts (`event_kinds`).

Defining the class registers it (``__init_subclass__``): nothing else names it. The scenario
schema (`abm.scenario`), `wsf validate`, a sweep's up-front check, the browser app's controls
and `docs/scenario-reference.md` all read this registry, so none of them can drift from the
components.

Why pydantic for the parameters: the scenario schema is pydantic already, so a component's
parameters are checked, defaulted, serialised into the resolved config and described in the
reference by the very machinery that handles the rest of the file; one mechanism, with the
same error paths (``clients[0].behaviour_params.mode``) and strict types everywhere.

Kinds (base class, module, where a scenario names the component):

=============  ==========================================  =======================================
kind           base class                                  scenario field
=============  ==========================================  =======================================
policy         abm.rewards.RewardPolicy                    rewards.policy + rewards.params
budget         abm.rewards.Budget                          rewards.budget.kind (flat)
strategy       abm.agents.strategies.Strategy              investors[i].strategy + params
behaviour      abm.fl.behaviours.Behaviour                 clients[i].behaviour + behaviour_params
cash_out       abm.agents.cash_out.CashOutRule             clients[i].cash_out.kind (flat)
method         abm.fl.contribution.ContributionMethod      contribution.method + params
dataset        abm.fl.data.DatasetSource                   fl.dataset.name (flat)
lp_exit        abm.agents.lp_exit.ExitRule                 liquidity_providers[i].exit.kind (flat)
participation  abm.agents.participation.ParticipationRule  clients[i].participation.kind (flat)
issuance       abm.agents.issuance.IssuanceRule            market.issuance.kind (flat)
conduct        abm.agents.conduct.ConductRule              clients[i].conduct.kind (flat)
switching      abm.agents.switching.SwitchingRule          investors[i].switching.kind (flat)
=============  ==========================================  =======================================

"Flat" components take their parameters next to the naming key (``cash_out: {kind:
sell_fraction, fraction: 0.05}``), or are named alone when their defaults do
(``participation: net_payoff``); the others in a separate mapping.

This module imports neither torch nor mesa (`wsf validate` must stay fast). The modules that
declare the built-in components import torch only where they compute, never at import time
(tests/test_registry.py checks it in a fresh interpreter).
"""

from __future__ import annotations

import importlib
import inspect
import re
from abc import ABC
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from abm.errors import FieldProblem, allowed_text, join_path

__all__ = [
    "BUILTIN_MODULES",
    "EVENT_NAME",
    "KINDS",
    "Component",
    "ComponentError",
    "Kind",
    "Params",
    "Spread",
    "build",
    "component_of",
    "components",
    "create",
    "event_kinds",
    "get",
    "is_builtin",
    "load_builtins",
    "names",
    "or_list",
    "param",
    "spread",
    "spread_value",
]


class Params(BaseModel):
    """Base of every component's parameters: unknown keys are errors, types are strict
    (``"0.3"`` is not a number, ``true`` is not 1), NaN and infinities are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def param(default: Any, doc: str, *, unit: str = "", **constraints: Any) -> Any:
    """Declare one parameter: default, one-line meaning, unit and range (pydantic's ``ge``,
    ``gt``, ``le``, ``lt``, ``min_length``...). ``default=...`` makes it required."""
    extra = {"unit": unit} if unit else None
    return Field(default, description=doc, json_schema_extra=extra, **constraints)


@dataclass(frozen=True)
class Spread:
    """Marks a parameter that may vary across a group's agents (see `spread`); its ends lie
    in [ge, le]."""

    ge: float
    le: float

    def __call__(self, value: float | list[float] | None) -> float | list[float] | None:
        ends = value if isinstance(value, list) else [] if value is None else [value]
        if isinstance(value, list) and (len(value) != 2 or value[0] > value[1]):
            raise ValueError("expected a number or a range [low, high] with low <= high")
        for end in ends:
            if not self.ge <= end <= self.le:
                raise ValueError(f"every value must lie in [{self.ge:g}, {self.le:g}]")
        return value


def spread(ge: float, le: float) -> Any:
    """The type of a parameter that may vary across a group's agents: a number (every agent
    of the group gets it) or ``[low, high]`` (each agent draws its own value uniformly in
    that range when it is created, from its own random stream; docs/model.md, section 4.9),
    both ends in [ge, le]. Declare it ``x: spread(0, 1) = param(0.8, ...)`` (``| None``
    when null is allowed, with the meaning of null in the doc); `spread_value` gives an
    agent's own value."""
    marker = Spread(ge, le)
    return Annotated[float | list[float], marker, AfterValidator(marker)]


def spread_value(value: float | list[float], u: float) -> float:
    """An agent's own value of a `param_range` parameter, given a uniform draw `u` in
    [0, 1): the number itself, or ``low + u (high - low)`` for a range. The caller draws `u`
    whether or not the value is a range, so that turning a number into a range (a sweep)
    never shifts the agent's other draws."""
    if isinstance(value, list):
        low, high = value
        return low + u * (high - low)
    return float(value)


@dataclass(frozen=True)
class Kind:
    """One pluggable kind: how a scenario names its components and passes their parameters."""

    name: str  # registry key
    title: str  # for the reference and messages
    section: str  # the scenario field holding the component, e.g. "clients[i]"
    tag: str  # the key naming the component inside `section`
    params_key: str | None  # key of the parameter mapping; None: flat, next to `tag`
    default: str | None  # the component used when `tag` is omitted (None: required)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("policy", "Reward policy", "rewards", "policy", "params", "buyback"),
        Kind("budget", "Budget", "rewards.budget", "kind", None, "constant"),
        Kind("method", "Contribution method", "contribution", "method", "params", "gtg_shapley"),
        Kind("dataset", "Dataset", "fl.dataset", "name", None, "digits"),
        Kind("behaviour", "Client behaviour", "clients[i]", "behaviour", "behaviour_params",
             "honest"),
        Kind("cash_out", "Cash-out rule", "clients[i].cash_out", "kind", None, "hold"),
        Kind("strategy", "Investor strategy", "investors[i]", "strategy", "params", None),
        Kind("lp_exit", "Liquidity-provider exit rule", "liquidity_providers[i].exit", "kind",
             None, "hold"),
        Kind("participation", "Participation rule", "clients[i].participation", "kind", None,
             "always"),
        Kind("issuance", "Issuance", "market.issuance", "kind", None, "none"),
        Kind("conduct", "Client conduct", "clients[i].conduct", "kind", None, "fixed"),
        Kind("switching", "Strategy switching", "investors[i].switching", "kind", None,
             "none"),
    )
}

#: The modules that declare the built-in components (imported by `load_builtins`).
BUILTIN_MODULES = (
    "abm.rewards",
    "abm.fl.contribution",
    "abm.fl.data",
    "abm.fl.behaviours",
    "abm.agents.cash_out",
    "abm.agents.strategies",
    "abm.agents.lp_exit",
    "abm.agents.participation",
    "abm.agents.issuance",
    "abm.agents.conduct",
    "abm.agents.switching",
)

#: What an event kind may be called (events.parquet's `kind`, the price chart's legend).
EVENT_NAME = re.compile(r"[a-z][a-z0-9_]*")

_COMPONENTS: dict[str, dict[str, type[Component]]] = {kind: {} for kind in KINDS}
_OWNERS: dict[type[Params], type[Component]] = {}


class ComponentError(FieldProblem):
    """An unknown component name, or parameters its `Params` refuses.

    `problems` lists ``(path, value, allowed)`` with paths relative to where the component is
    named (``"behaviour"``, ``"behaviour_params.mode"``), so that the scenario's formatter can
    prefix the section's path.
    """

    def __init__(self, problems: list[tuple[str, Any, str]]) -> None:
        super().__init__("", problems=problems)

    def __str__(self) -> str:
        return "; ".join(f"{p or '(parameters)'}{'' if v is ... else f' = {v!r}'}: {a}"
                         for p, v, a in self.problems)


class Component(ABC):
    """Base of every kind's base class. Subclasses with a `name` register themselves.

    Build one with ``Cls(**values)`` (checked against `Params`; `ComponentError` naming the
    parameter otherwise) or ``Cls(params)`` with an already validated `Params` instance; the
    parameters are then ``self.params`` (frozen).
    """

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params
    #: The event kinds this component may record (events.parquet's `kind`; a strategy
    #: records them with `Strategy._event`), each matching `EVENT_NAME`. Declared so that a
    #: run knows every kind before it starts (`event_kinds`) and a kind nobody declared is
    #: refused where it is recorded, naming the component.
    events: ClassVar[tuple[str, ...]] = ()
    #: Flat kinds only (set on registration): `Params` plus the naming key, e.g.
    #: ``kind: Literal["sell_fraction"]``, which is what the scenario holds.
    Spec: ClassVar[type[Params]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and cls.name:
            _register(cls)

    def __init__(self, params: Params | None = None, /, **values: Any) -> None:
        if params is None:
            params = self.validate(values)
        elif values or not isinstance(params, self.Params):
            raise TypeError(f"{self.name}: pass either a {self.Params.__name__} or keywords")
        self.params = params

    @classmethod
    def validate(cls, values: Mapping[str, Any] | None = None, *, prefix: str = "",
                 spec: bool = False) -> Params:
        """The complete parameters (defaults filled in) or `ComponentError`; paths in its
        problems start with `prefix` (e.g. ``"params."``). `spec`: validate the flat form
        (`Spec`, the naming key included)."""
        values = {} if values is None else values
        if not isinstance(values, Mapping):
            raise ComponentError([(prefix.rstrip("."), values,
                                   "expected a mapping of parameter names to values")])
        try:
            return (cls.Spec if spec else cls.Params).model_validate(dict(values))
        except ValidationError as exc:
            raise ComponentError(_problems(cls, exc, prefix)) from None

    @classmethod
    def check_in(cls, params: Params, scenario: Any) -> str | None:
        """What makes `params` impossible in `scenario` (a `abm.scenario.Scenario`), or None.

        For checks a parameter cannot make alone (a client index against the number of
        clients, a label map against the dataset's classes); the schema calls it, so that a
        scenario is never valid and then fails at run time. Override where needed.
        """
        return None

    @classmethod
    def describe(cls) -> str:
        """The one-paragraph description: the first paragraph of the docstring."""
        doc = inspect.getdoc(cls) or ""
        return " ".join(doc.split("\n\n")[0].split())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({args})"


def _register(cls: type[Component]) -> None:
    if cls.kind not in KINDS:
        raise TypeError(f"{cls.__name__}: kind {cls.kind!r} is not one of {sorted(KINDS)}")
    events = cls.events
    if not isinstance(events, tuple) or not all(
            isinstance(e, str) and EVENT_NAME.fullmatch(e) for e in events):
        raise TypeError(f"{cls.__name__}: events must be a tuple of event kinds, each a "
                        f"lower-case word (letters, digits and _, a letter first); got "
                        f"{events!r}")
    taken = _COMPONENTS[cls.kind].get(cls.name)
    if taken is not None and _where(taken) != _where(cls):  # the same class again: a reload
        raise TypeError(f"{cls.__name__}: the {KINDS[cls.kind].title.lower()} name "
                        f"{cls.name!r} is taken by {_where(taken)}; a scenario could not tell "
                        f"the two apart")
    if cls.Params in _OWNERS or "Params" not in cls.__dict__:
        # Inherited parameters: give the class its own Params so that a parameter set always
        # tells which component it belongs to (the resolved config names it).
        cls.Params = type("Params", (cls.Params,), {
            "__doc__": cls.Params.__doc__, "__module__": cls.__module__,
            "__qualname__": f"{cls.__qualname__}.Params",  # so that pickle finds it
        })
    _COMPONENTS[cls.kind][cls.name] = cls
    _OWNERS[cls.Params] = cls
    tag = KINDS[cls.kind].tag
    if KINDS[cls.kind].params_key is None:
        cls.Spec = create_model("Spec", __base__=cls.Params, __module__=cls.__module__,
                                **{tag: (Literal[cls.name], cls.name)})
        cls.Spec.__qualname__ = f"{cls.__qualname__}.Spec"
        _OWNERS[cls.Spec] = cls


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _problems(cls: type[Component], exc: ValidationError, prefix: str) -> list[tuple]:
    out = []
    for err in exc.errors(include_url=False):
        path = prefix + join_path(*err["loc"])
        if err["type"] == "missing":
            out.append((path, ..., "required"))
            continue
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(cls.Params.model_fields) or "none"
            out.append((path, err.get("input"),
                        f"unknown parameter of {cls.kind} {cls.name!r} (allowed: {allowed})"))
            continue
        out.append((path.rstrip("."), err.get("input"), allowed_text(err)))
    return out


def load_builtins() -> None:
    """Import the modules declaring the built-in components (idempotent, torch-free)."""
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def components(kind: str) -> dict[str, type[Component]]:
    """Name -> class of every registered component of `kind`, in registration order."""
    load_builtins()
    return dict(_COMPONENTS[kind])


def names(kind: str) -> tuple[str, ...]:
    return tuple(components(kind))


def get(kind: str, name: Any) -> type[Component]:
    """The class registered as `name`, or `ComponentError` listing the allowed names."""
    found = components(kind)
    if isinstance(name, str) and name in found:
        return found[name]
    raise ComponentError([(KINDS[kind].tag, name, "allowed values are " + or_list(found))])


def create(kind: str, name: Any, **values: Any) -> Any:
    """Build the `kind` component registered as `name` with parameter `values`
    (`ComponentError` for an unknown name or refused parameters)."""
    return get(kind, name)(**values)


def component_of(params: Params) -> type[Component]:
    """The component a validated parameter set belongs to."""
    return _OWNERS[type(params)]


def build(params: Params, **extra: Any) -> Any:
    """An instance of the component that `params` belongs to (``extra``: constructor
    arguments beyond the parameters, e.g. ``rng``)."""
    return component_of(params)(params, **extra)


def is_builtin(component: type[Component]) -> bool:
    """Whether `component` is one of the project's own (declared in `BUILTIN_MODULES`)."""
    return component.__module__ in BUILTIN_MODULES


def event_kinds(used: Iterable[type[Component]] = ()) -> tuple[str, ...]:
    """The event kinds the built-in components declare, then those the `used` components
    add (each once, in order).

    A run's events table lists these as its `kind` categories (after the model's own,
    `abm.model.MODEL_EVENTS`). The built-ins' kinds are listed whether the scenario uses
    them or not, in the order of `BUILTIN_MODULES` and of declaration, so that the table of
    a scenario made of built-in components never changes when another component is
    registered; a component from elsewhere adds its kinds only to the runs that use it.
    """
    load_builtins()
    rank = {module: i for i, module in enumerate(BUILTIN_MODULES)}
    builtin = sorted((cls for found in _COMPONENTS.values() for cls in found.values()
                      if is_builtin(cls)), key=lambda cls: rank[cls.__module__])
    return tuple(dict.fromkeys(e for cls in (*builtin, *used) for e in cls.events))


def or_list(values: Any) -> str:
    """``'a', 'b' or 'c'``: how messages list allowed values."""
    quoted = [repr(v) for v in values]
    if len(quoted) < 2:
        return "".join(quoted) or "none"
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]
