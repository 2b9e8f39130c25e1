"""Sampling designs over scenario parameters: Sobol, Latin hypercube and Morris, by SALib.

A sweep file may give a design instead of a grid (`abm.sweep.spec`)::

    design: {kind: sobol, samples: 64, seed: 0}   # or lhs / morris (levels, trajectories)
    parameters:                                   # dotted paths, like grid keys
      rewards.budget.amount: {low: 0, high: 2000}
      market.fee_bps: {low: 5, high: 100}         # an integer field: drawn as integers
      investors.0.cash: {}                        # bounds from the schema's declared range
      rewards.policy: {values: [buyback, dividend, mint]}   # categorical

Every design is drawn on the unit hypercube by SALib from the design's `seed` (so the same
file always gives the same points) and mapped to each parameter:

- a range `{low, high}` of a float field: ``low + u (high - low)``;
- a range of an integer field: ``min(floor(low + u (high - low + 1)), high)``, each integer
  of [low, high] equally likely; the stored point is the integer that ran, beside the raw
  draw (`sample`), so rounding is visible;
- a categorical `{values: [...]}` (a list, or a mapping from labels to values as in a grid):
  the k values split [0, 1) into k equal bins. SALib's Sobol and Morris estimators then
  measure the variance the choice of value explains (the unit coordinate is the input they
  see); a categorical's indices are those of this coding.

A range may leave out `low` or `high`, or both: the missing bound is the field's declared
range (`abm.registry.param(..., ge=, le=)` or the scenario schema's), when it has an
inclusive one. A range reaching outside the declared range is refused before anything is
drawn, with the usual one-paragraph message.

Designs (SALib's samplers, D parameters):

- `sobol`: Saltelli's extension of a scrambled Sobol sequence, `samples` = N a power of 2;
  N (D + 2) points, or N (2 D + 2) with `second_order: true` (then S2 is estimated too);
- `lhs`: `samples` points of a Latin hypercube (no indices; the report gives rank
  correlations of outputs with parameters instead);
- `morris`: `trajectories` = r one-at-a-time trajectories on a `levels`-level grid,
  r (D + 1) points (elementary effects: mu*, sigma).

Points are rows of the design in SALib's order; the estimators need that order, so two rows
that resolve to the same scenario stay two rows but share one run.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

import annotated_types
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from abm.errors import shown
from abm.scenario import Scenario, ScenarioError

__all__ = [
    "DESIGN_KINDS",
    "DesignSpec",
    "ParamRange",
    "Parameter",
    "draw",
    "n_points",
    "resolve_parameters",
]

DESIGN_KINDS = ("sobol", "lhs", "morris")


class DesignSpec(BaseModel):
    """`design:` of a sweep file: which SALib design, how large, and its seed."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    kind: Literal["sobol", "lhs", "morris"] = Field(description="the sampling design")
    samples: int | None = Field(
        None, ge=2, le=1_000_000,
        description="sobol: base sample size N (a power of 2); lhs: number of points")
    second_order: bool = Field(
        False, description="sobol only: also estimate second-order indices S2 "
        "(N (2D + 2) points instead of N (D + 2))")
    trajectories: int | None = Field(
        None, ge=2, le=100_000, description="morris only: number of trajectories r")
    levels: int = Field(4, ge=2, le=1000, description="morris only: grid levels p (even)")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the sampler")

    @model_validator(mode="after")
    def _sizes(self) -> DesignSpec:
        if self.kind in ("sobol", "lhs") and self.samples is None:
            raise ValueError(f"a {self.kind} design needs `samples`")
        if self.kind == "sobol" and self.samples is not None and (
                self.samples & (self.samples - 1)):
            raise ValueError(
                f"a sobol design's `samples` must be a power of 2 (got {self.samples}; "
                f"{_pow2_near(self.samples)}): Sobol sequences are balanced only then")
        if self.kind != "sobol" and self.second_order:
            raise ValueError("`second_order` applies to sobol designs only")
        if self.kind == "morris":
            if self.trajectories is None:
                raise ValueError("a morris design needs `trajectories`")
            if self.samples is not None:
                raise ValueError("a morris design is sized by `trajectories`, not `samples`")
            if self.levels % 2:
                raise ValueError(f"a morris design needs an even number of `levels` (got "
                                 f"{self.levels})")
        elif self.trajectories is not None:
            raise ValueError("`trajectories` applies to morris designs only")
        return self


def _pow2_near(n: int) -> str:
    low = 1 << (n.bit_length() - 1)
    return f"try {low} or {low * 2}"


class ParamRange(BaseModel):
    """One entry of `parameters:`: a range `{low, high}` (either may default to the field's
    declared bound) or a categorical `{values: [...]}`."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    low: float | None = Field(None, description="lower end (default: the declared bound)")
    high: float | None = Field(None, description="upper end (default: the declared bound)")
    values: list[Any] | dict[str, Any] | None = Field(
        None, description="categorical: a list of values, or a mapping label -> value")

    @model_validator(mode="before")
    @classmethod
    def _ints_are_numbers(cls, data: Any) -> Any:
        # `{low: 5, high: 100}` is how anyone writes an integer range: accept ints as floats
        # here (strict mode would refuse them); booleans are not numbers.
        if isinstance(data, dict):
            for key in ("low", "high"):
                value = data.get(key)
                if isinstance(value, bool):
                    raise ValueError(f"`{key}` = {value!r}: give a number")
                if isinstance(value, int):
                    data = {**data, key: float(value)}
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> ParamRange:
        if self.values is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either a range (`low`, `high`) or `values`, not both")
            if len(self.values) < 2:
                raise ValueError("`values` needs at least two values to vary")
        elif self.low is not None and self.high is not None and not self.low < self.high:
            raise ValueError(f"`low` ({self.low:g}) must be below `high` ({self.high:g})")
        return self


@dataclass(frozen=True)
class Parameter:
    """A parameter of a design, resolved against the base scenario's schema."""

    path: str
    kind: Literal["float", "int", "categorical"]
    low: float = math.nan  # range parameters
    high: float = math.nan
    labels: tuple[Any, ...] = ()  # categoricals: labels, in file order
    values: tuple[Any, ...] = ()  # categoricals: the values the labels stand for

    def value(self, u: float) -> tuple[Any, Any]:
        """(label, value) of unit coordinate `u` in [0, 1]: what the point stores and what
        the scenario gets (the same for ranges)."""
        u = min(max(float(u), 0.0), 1.0)
        if self.kind == "categorical":
            k = min(int(u * len(self.values)), len(self.values) - 1)
            return self.labels[k], self.values[k]
        if self.kind == "int":
            lo, hi = int(self.low), int(self.high)
            n = min(math.floor(lo + u * (hi - lo + 1)), hi)
            return n, n
        x = self.low + u * (self.high - self.low)
        return x, x

    def raw(self, u: float) -> float:
        """The draw on the parameter's own scale before rounding (categoricals: `u`)."""
        if self.kind == "categorical":
            return float(u)
        if self.kind == "int":
            return self.low + float(u) * (self.high - self.low + 1)
        return self.low + float(u) * (self.high - self.low)

    def record(self) -> dict[str, Any]:
        """JSON-safe description, stored in sweep.yaml."""
        if self.kind == "categorical":
            return {"kind": "categorical", "labels": list(self.labels),
                    "values": list(self.values)}
        number = int if self.kind == "int" else float
        return {"kind": self.kind, "low": number(self.low), "high": number(self.high)}


def n_points(design: DesignSpec, d: int) -> int:
    """Rows of a design over `d` parameters (counted without drawing anything)."""
    if design.kind == "sobol":
        assert design.samples is not None
        return design.samples * ((2 * d + 2) if design.second_order else (d + 2))
    if design.kind == "lhs":
        assert design.samples is not None
        return design.samples
    assert design.trajectories is not None
    return design.trajectories * (d + 1)


def salib_problem(parameters: list[Parameter]) -> dict[str, Any]:
    """SALib's problem dict over the unit hypercube (the design is mapped afterwards)."""
    return {"num_vars": len(parameters), "names": [p.path for p in parameters],
            "bounds": [[0.0, 1.0]] * len(parameters)}


def draw(design: DesignSpec, parameters: list[Parameter]) -> np.ndarray:
    """The design's unit-hypercube rows, shape (n_points, D), in SALib's order."""
    import warnings

    from SALib.sample import latin, morris, sobol

    problem = salib_problem(parameters)
    with warnings.catch_warnings():
        # SALib warns about its own conventions (sample sizes it already accepted).
        warnings.simplefilter("ignore")
        if design.kind == "sobol":
            rows = sobol.sample(problem, design.samples, calc_second_order=design.second_order,
                                scramble=True, seed=design.seed)
        elif design.kind == "lhs":
            rows = latin.sample(problem, design.samples, seed=design.seed)
        else:
            rows = morris.sample(problem, design.trajectories, num_levels=design.levels,
                                 seed=design.seed)
    return np.asarray(rows, dtype=float)


# -- parameters against the schema ------------------------------------------------------------


@dataclass(frozen=True)
class FieldFacts:
    """What the schema declares of one scenario field: its type and inclusive/strict bounds."""

    annotation: Any
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    @property
    def numeric(self) -> str | None:
        """'int', 'float' or None (not a number field)."""
        kinds = set()
        for arg in _flatten_union(self.annotation):
            if arg is bool:
                return None
            if arg is int:
                kinds.add("int")
            elif arg is float:
                kinds.add("float")
        if kinds == {"int"}:
            return "int"
        return "float" if "float" in kinds else None

    def allowed(self) -> str:
        parts = []
        if self.ge is not None:
            parts.append(f">= {self.ge:g}")
        if self.gt is not None:
            parts.append(f"> {self.gt:g}")
        if self.le is not None:
            parts.append(f"<= {self.le:g}")
        if self.lt is not None:
            parts.append(f"< {self.lt:g}")
        return " and ".join(parts) or "any number"


def _flatten_union(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _flatten_union(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _flatten_union(arg)]
    return [annotation]


def field_facts(scenario: Scenario, path: str) -> FieldFacts | None:
    """The declared type and range of the field at dotted `path` of `scenario` (a validated
    instance, so a component's parameters are its own `Params`), or None when the path does
    not end on a declared field (then the scenario's own check names the problem)."""
    node: Any = scenario
    keys = path.split(".")
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list | tuple):
            if not key.isdigit() or int(key) >= len(node):
                return None
            node = node[int(key)]
            if last:
                return None
            continue
        if not isinstance(node, BaseModel):
            return None
        fields = type(node).model_fields
        if key not in fields:
            return None
        if last:
            info = fields[key]
            bounds: dict[str, float] = {}
            for meta in info.metadata:
                for name, cls in (("ge", annotated_types.Ge), ("gt", annotated_types.Gt),
                                  ("le", annotated_types.Le), ("lt", annotated_types.Lt)):
                    if isinstance(meta, cls):
                        bounds[name] = float(getattr(meta, name))
            return FieldFacts(info.annotation, **bounds)
        node = getattr(node, key)
    return None


def resolve_parameters(
    where: str, base: Scenario, parameters: dict[str, ParamRange]
) -> list[Parameter]:
    """Check every `parameters:` entry against the base scenario's schema; fill in bounds.

    Raises ScenarioError (one paragraph: the file `where`, the parameter, the value and what
    is allowed) for a range over a field that is not a number, a missing bound the field does
    not declare inclusively, or a range reaching outside the declared one.
    """
    out = []
    for path, spec in parameters.items():
        at = f"{where}: parameters.{path}"
        if spec.values is not None:
            items = (list(spec.values.items()) if isinstance(spec.values, dict)
                     else [(v, v) for v in spec.values])
            out.append(Parameter(path, "categorical", labels=tuple(k for k, _ in items),
                                 values=tuple(v for _, v in items)))
            continue
        facts = field_facts(base, path)
        if facts is None:
            # Not a declared field: let the scenario's own path check say why, or accept a
            # free parameter (a component parameter the base leaves to its default) only with
            # both bounds given.
            try:
                base.with_overrides({path: spec.low if spec.low is not None else 0.0},
                                    source=at)
            except ScenarioError as exc:
                if "does not exist" in str(exc):
                    raise
            if spec.low is None or spec.high is None:
                raise ScenarioError(
                    f"{at}: the base scenario declares no range for this path; give both "
                    "`low` and `high`.")
            out.append(Parameter(path, "float", low=spec.low, high=spec.high))
            continue
        kind = facts.numeric
        if kind is None:
            raise ScenarioError(
                f"{at} = {shown(spec.model_dump(exclude_none=True))}: the field is not a "
                "number, so it takes no range; list its choices as `{values: [...]}`.")
        low = spec.low if spec.low is not None else facts.ge
        high = spec.high if spec.high is not None else facts.le
        for name, given, bound in (("low", spec.low, low), ("high", spec.high, high)):
            if given is None and bound is None:
                strict = facts.gt if name == "low" else facts.lt
                why = (f"its declared bound is strict ({'>' if name == 'low' else '<'} "
                       f"{strict:g}), so no value of it can be the end of a range"
                       if strict is not None else "the field declares no such bound")
                raise ScenarioError(f"{at}: give `{name}`: {why}.")
        assert low is not None and high is not None
        problems = []
        if facts.ge is not None and low < facts.ge:
            problems.append(f"low = {low:g} is below the declared minimum {facts.ge:g}")
        if facts.gt is not None and low <= facts.gt:
            problems.append(f"low = {low:g} must be above {facts.gt:g}")
        if facts.le is not None and high > facts.le:
            problems.append(f"high = {high:g} is above the declared maximum {facts.le:g}")
        if facts.lt is not None and high >= facts.lt:
            problems.append(f"high = {high:g} must be below {facts.lt:g}")
        if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
            problems.append(f"the field is an integer, so `low` and `high` must be integers "
                            f"(got {low:g} and {high:g})")
        if not low < high:
            problems.append(f"low = {low:g} must be below high = {high:g}")
        if problems:
            raise ScenarioError(f"{at}: {'; '.join(problems)} (allowed: {facts.allowed()}).")
        out.append(Parameter(path, kind, low=float(low), high=float(high)))
    return out


def point_values(parameters: list[Parameter], row: np.ndarray) -> tuple[dict[str, Any],
                                                                           dict[str, Any]]:
    """(labels, values) of one design row: what the point stores, what the scenario gets."""
    labels, values = {}, {}
    for parameter, u in zip(parameters, row, strict=True):
        labels[parameter.path], values[parameter.path] = parameter.value(u)
    return labels, values
