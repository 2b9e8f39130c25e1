"""Sweep files: schema, loading, grid expansion and run ids; the schema they share with study
files (`RunsFile`: base, overrides, parameters, seeds, counterfactual; `abm.sweep.optimize`).

A sweep file is YAML data (never code) naming a base scenario file and the parameters to
vary::

    name: policy_by_method          # optional; default: the file's stem
    base: ../baseline.yaml          # scenario file, relative to this file
    overrides:                      # optional: dotted path -> value, applied to every run
      steps: 200
    grid:                           # dotted path -> list of values; cartesian product
      rewards.policy: [equal, direct, mint, buyback, dividend]
      contribution.method: [leave_one_out, shapley_exact]
      investors:                    # or a mapping label -> value (named values)
        chartists: [{strategy: momentum, count: 50}]
        fundamentalists: [{strategy: fundamental, count: 50}]
    seeds: 5                        # a count n (seeds 0 .. n-1) or a list of ints
    counterfactual: true            # optional: also run each run's twin (reward budget 0)
    report:                         # optional settings of `wsf report`
      confidence: 0.95

Instead of a grid, a sweep file may give a sampling design drawn by SALib (Sobol, Latin
hypercube, Morris; see `abm.sweep.design`)::

    design: {kind: sobol, samples: 64, seed: 0}
    parameters:
      rewards.budget.amount: {low: 0, high: 2000}
      market.fee_bps: {low: 5, high: 100}          # integer field: drawn as integers
      rewards.policy: {values: [buyback, dividend, mint]}

Every design point is resolved and validated like a grid point before anything runs, and
stored in `sweep.yaml` (the raw draw and the values that ran), so a resumed sweep redoes only
missing runs. Points that resolve to the same scenario share one run.

Every run is ``base.with_overrides({**overrides, **grid_point, "seed": seed})``, where
`overrides` includes the top-level fields that set a scenario field (`counterfactual`): the
sweep file wins over its base scenario, field by field, whichever way the value goes
(`counterfactual: false` turns off a twin the base turns on). All runs
are built and validated before anything runs, so a bad value stops the sweep up front with
a message naming the sweep file and the grid key. A grid key's values are a list, or a
mapping from labels to values: the label then stands for the value in folders' params.json,
the combined tables and the report (useful for structured values such as an investor mix;
list values that are lists or mappings are shown as JSON text instead).

A run's id is a short SHA-256 of the canonical JSON of its resolved scenario (which includes
the seed): the same configuration always gets the same id, whichever sweep file, grid order
or machine produced it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from abm.errors import MAX_SHOWN, ScenarioError, format_validation_error, problem_text, shown
from abm.scenario import CLAIMS_KEY, Scenario, load_scenario, read_yaml
from abm.sweep.design import (
    DesignSpec,
    Parameter,
    ParamRange,
    draw,
    n_points,
    point_values,
    resolve_parameters,
)

__all__ = [
    "MAX_RUNS",
    "RUN_ID_LENGTH",
    "WARN_RUNS",
    "DesignPoint",
    "ReportSettings",
    "RunSpec",
    "RunsFile",
    "Sweep",
    "SweepFile",
    "canonical_json",
    "load_sweep",
    "run_id",
    "with_settings",
]

# 16 hex digits = 64 bits: the chance of two distinct configurations colliding stays below
# 1e-9 up to ~190,000 runs in one sweep folder, and the id remains short enough to type.
RUN_ID_LENGTH = 16

#: A sweep of more runs is refused unless the user raises the ceiling (`wsf sweep --max-runs`,
#: `run_sweep(max_runs=...)`): every run is resolved and validated up front, and a typo such as
#: `seeds: 1000000000` should cost a message, not the machine's memory. Above WARN_RUNS the
#: driver warns with an estimate of the run time measured on the first runs.
MAX_RUNS = 10_000
WARN_RUNS = 1_000
#: Memory one run takes to build before any run starts (its resolved and validated scenario,
#: its record, its design point): measured 93 KiB per run of `sobol_mechanism` with 2,048
#: points (peak RSS over `load_sweep`). A sweep whose runs would not fit in the memory this
#: process may use is refused before the design is drawn (`check_build_memory`).
BUILD_BYTES_PER_RUN = 100 << 10

# Columns that the combined tables already use; a grid key with one of these names would
# shadow them (`seed` has its own `seeds:` field).
RESERVED_KEYS = frozenset({"run_id", "seed", "step", "round", "client"})


def canonical_json(obj: Any) -> str:
    """The one JSON text of a JSON-safe value: sorted keys, no spaces, no NaN."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def run_id(scenario: Scenario) -> str:
    """Deterministic id of a run: sha256 of the canonical JSON of the resolved scenario.

    `Scenario.to_dict()` includes the seed, so two seeds of one grid point differ, and two
    grid points that resolve to the same configuration share an id.
    """
    digest = hashlib.sha256(canonical_json(scenario.to_dict()).encode("utf-8")).hexdigest()
    return digest[:RUN_ID_LENGTH]


class ReportSettings(BaseModel):
    """Settings of `wsf report` on a sweep folder."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    confidence: float = Field(
        0.95, gt=0.5, lt=1.0, description="level of the confidence intervals over seeds"
    )
    figures: bool = Field(True, description="draw the seaborn figures")
    formats: list[Literal["png", "pdf", "svg"]] = Field(
        default_factory=lambda: ["png", "pdf"], min_length=1, description="figure file formats"
    )


class RunsFile(BaseModel):
    """What sweep and study files share, as written (before the base scenario is applied).

    Each asks for runs of one base scenario: `overrides` on every run, `parameters` varied
    between runs, one run per seed of `seeds`, and the `counterfactual` switch. `SweepFile`
    and `OptimizeFile` (`abm.sweep.optimize`) extend it; each shared field is declared and
    checked here once, so both kinds of file refuse a bad value with the same message at the
    same path (tested).
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    #: Fields whose keys set scenario fields on runs, checked against a top-level
    #: `counterfactual` (a subclass adds its own, such as a sweep's `grid`).
    SETTING_FIELDS: ClassVar[tuple[str, ...]] = ("overrides", "parameters")

    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        max_length=80,
        description="name (default: the file's stem); names the default output folder",
    )
    base: str = Field(min_length=1, description="scenario file, relative to this file")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="dotted path -> value, applied to every run")
    parameters: dict[str, ParamRange] = Field(
        default_factory=dict, description="dotted path -> {low, high} (either may default to "
        "the field's declared range) or {values: [...]}")
    seeds: Any = Field(description="a seed count n (seeds 0..n-1) or a list of distinct seeds")
    counterfactual: bool | None = Field(
        None,
        description="run every run's counterfactual twin (same seed, reward budget 0) into "
        "its counterfactual/ folder, which the attributable outputs and `wsf report`'s run − "
        "twin paired differences need; the twin replays its run's learning, so it adds the "
        "run's market time. `true` or `false` here wins over the base scenario's "
        "`counterfactual`; left out, the base's value holds",
    )

    @model_validator(mode="after")
    def _counterfactual_once(self) -> RunsFile:
        if self.counterfactual is not None:
            for field_name in self.SETTING_FIELDS:
                if "counterfactual" in getattr(self, field_name):
                    raise ValueError(
                        f"`counterfactual` is set both at the top of the file and under "
                        f"`{field_name}`; set it in one place")
        return self

    def varied(self) -> set[str]:
        """The dotted paths whose value differs between runs (besides the seed)."""
        return set(self.parameters)

    def top_level_overrides(self) -> dict[str, Any]:
        """The overrides every run gets: `overrides`, plus the top-level fields that set a
        scenario field (`counterfactual`, when given). They win over the base scenario; grid
        points and design values win over them, the seed over everything."""
        extra = {} if self.counterfactual is None else {"counterfactual": self.counterfactual}
        return {**self.overrides, **extra}

    @field_validator("overrides", "parameters")
    @classmethod
    def _dotted_paths(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _dotted_paths(value)

    @field_validator("overrides")
    @classmethod
    def _override_values(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        for key, value in overrides.items():
            _json_or_raise(key, value)
        return overrides

    @field_validator("parameters")
    @classmethod
    def _parameter_names(cls, parameters: dict[str, ParamRange]) -> dict[str, ParamRange]:
        for key, spec in parameters.items():
            if key in RESERVED_KEYS:
                raise ValueError(
                    f"'{key}' names a column of the result tables; it cannot be a parameter"
                )
            for value in (spec.values.values() if isinstance(spec.values, dict)
                          else spec.values or []):
                _json_or_raise(key, value)
        return parameters

    @field_validator("seeds")
    @classmethod
    def _seed_values(cls, seeds: Any) -> int | list[int]:
        def is_int(x: Any) -> bool:
            return isinstance(x, int) and not isinstance(x, bool)

        if not is_int(seeds) and not (isinstance(seeds, list) and all(map(is_int, seeds))):
            raise ValueError("give a seed count (an integer >= 1, meaning seeds 0..count-1) "
                             "or a list of distinct integer seeds >= 0")
        if isinstance(seeds, int):
            if seeds < 1:
                raise ValueError("a seed count must be at least 1")
            return seeds
        if not seeds:
            raise ValueError("the seed list is empty; give at least one seed")
        if any(seed < 0 for seed in seeds):
            raise ValueError("seeds must be >= 0")
        if len(set(seeds)) != len(seeds):
            raise ValueError("the seed list repeats a seed")
        return seeds

    def seed_list(self) -> list[int]:
        """The seeds to run: a count n means seeds 0, 1, ..., n-1 (deterministic)."""
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


class SweepFile(RunsFile):
    """Schema of a sweep file, as written: a grid, or a sampling design over `parameters`."""

    SETTING_FIELDS: ClassVar[tuple[str, ...]] = ("overrides", "grid", "parameters")

    grid: dict[str, Any] = Field(
        default_factory=dict, description="dotted path -> list of values, or mapping from "
        "labels to values; the runs are the cartesian product")
    design: DesignSpec | None = Field(
        None, description="a sampling design (sobol, lhs, morris) over `parameters`, "
        "instead of a grid")
    parameters: dict[str, ParamRange] = Field(
        default_factory=dict, description="with `design`: dotted path -> {low, high} (either "
        "may default to the field's declared range) or {values: [...]}")
    report: ReportSettings = Field(default_factory=ReportSettings)

    @model_validator(mode="after")
    def _design_or_grid(self) -> SweepFile:
        if self.design is not None:
            if self.grid:
                raise ValueError("give either `grid` or `design` with `parameters`, not both")
            if not self.parameters:
                raise ValueError("a design needs `parameters` (dotted path -> {low, high} or "
                                 "{values: [...]})")
        elif self.parameters:
            raise ValueError("`parameters` needs a `design` (kind sobol, lhs or morris); a "
                             "grid lists its values under `grid`")
        return self

    @field_validator("grid")
    @classmethod
    def _grid_values(
        cls, grid: dict[str, list[Any] | dict[str, Any]]
    ) -> dict[str, list[Any] | dict[str, Any]]:
        _dotted_paths(grid)
        for key, values in grid.items():
            if not isinstance(values, list | dict):
                raise ValueError(f"grid key '{key}' = {shown(values)}: give a list of values, "
                                 "or a mapping from labels to values")
            if key in RESERVED_KEYS:
                raise ValueError(
                    f"'{key}' names a column of the result tables; it cannot be a grid key"
                )
            if not values:
                raise ValueError(f"grid key '{key}' lists no values; give at least one")
            seen: set[str] = set()
            for value in values.values() if isinstance(values, dict) else values:
                text = _json_or_raise(key, value)
                if text in seen:
                    raise ValueError(f"grid key '{key}' lists the value {value!r} twice")
                seen.add(text)
        return grid

    def varied(self) -> set[str]:
        """The grid keys, or the design's parameters."""
        return set(self.grid) | set(self.parameters)

    def grid_points(self) -> dict[str, list[tuple[Any, Any]]]:
        """Per grid key, its (label, value) pairs in file order; a plain value is its own label."""
        return {key: grid_items(values) for key, values in self.grid.items()}

    def n_runs(self) -> int:
        """Runs of the sweep (grid points x seeds), counted without expanding anything."""
        n = len(self.seeds) if isinstance(self.seeds, list) else self.seeds
        if self.design is not None:
            return n * n_points(self.design, len(self.parameters))
        for values in self.grid.values():
            n *= len(values)
        return n


def _dotted_paths(value: dict[str, Any]) -> dict[str, Any]:
    """Refuse a key of `overrides`, `grid` or `parameters` that is not a dotted path, or that
    sets the seed (one run per seed of `seeds:`)."""
    for key in value:
        if not key or any(not part for part in key.split(".")):
            raise ValueError(f"'{key}' is not a dotted parameter path (like 'rewards.policy')")
        if key == "seed":
            raise ValueError("the seed is set by the `seeds:` field, one run per seed; it "
                             "cannot be set here")
    return value


def grid_items(values: list[Any] | dict[str, Any]) -> list[tuple[Any, Any]]:
    """(label, value) pairs of one grid key as written in a sweep file or sweep.yaml."""
    if isinstance(values, dict):
        return list(values.items())
    return [(value, value) for value in values]


def _json_or_raise(key: str, value: Any) -> str:
    try:
        return canonical_json(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"the value {value!r} of '{key}' is not plain data (number, string, list, mapping)"
        ) from None


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: a grid point, a seed and the resolved scenario."""

    run_id: str
    params: dict[str, Any]  # grid point: dotted path -> label (the value unless named)
    seed: int
    scenario: Scenario = field(repr=False, compare=False)

    def record(self) -> dict[str, Any]:
        """JSON-safe description (stored in params.json and sweep.yaml)."""
        return {"run_id": self.run_id, "params": dict(self.params), "seed": self.seed}


@dataclass(frozen=True)
class DesignPoint:
    """One row of a sampling design: the draw, the values that ran, the run of each seed."""

    index: int  # row of the design, in SALib's order
    unit: list[float]  # the row as SALib drew it, on the unit hypercube
    sample: list[float]  # the draw on each parameter's scale, before rounding (unit for
    #                      categoricals)
    params: dict[str, Any]  # dotted path -> the value that ran (a categorical's label)
    runs: list[str]  # run id per seed, in `Sweep.seeds` order

    def record(self) -> dict[str, Any]:
        return {"index": self.index, "unit": list(self.unit), "sample": list(self.sample),
                "params": dict(self.params), "runs": list(self.runs)}


@dataclass(frozen=True)
class Sweep:
    """A loaded, fully validated sweep: every run resolved."""

    name: str
    source: Path  # the sweep file (absolute)
    base: Path  # the base scenario file (absolute)
    base_config: dict[str, Any]  # the base scenario resolved, before overrides
    overrides: dict[str, Any]
    grid: dict[str, list[Any] | dict[str, Any]]  # as written: values or {label: value}
    seeds: list[int]
    report: ReportSettings
    runs: list[RunSpec]
    design: DesignSpec | None = None
    parameters: list[Parameter] = field(default_factory=list)
    points: list[DesignPoint] = field(default_factory=list)

    @property
    def counterfactual(self) -> bool | None:
        """Whether the runs get their twin, as resolved (sweep file over base scenario):
        True or False for every run, None when grid points differ."""
        values = {run.scenario.counterfactual for run in self.runs}
        return values.pop() if len(values) == 1 else None

    @property
    def param_names(self) -> list[str]:
        """Grid keys or design parameters, in file order: the columns that tell runs apart
        besides the seed."""
        return [p.path for p in self.parameters] if self.design is not None else list(self.grid)

    def design_record(self) -> dict[str, Any] | None:
        """The design as stored in sweep.yaml: spec, parameters and every point."""
        if self.design is None:
            return None
        return {**self.design.model_dump(mode="json"),
                "parameters": {p.path: p.record() for p in self.parameters},
                "points": [point.record() for point in self.points]}

    def fingerprint(self) -> str:
        """Identity of what the sweep computes: same fingerprint, same runs, same columns.

        Paths, the name and report settings are left out: moving or renaming the sweep file,
        or changing how it is reported, does not change its results. The run ids carry the
        content of the base scenario.
        """
        identity: dict[str, Any] = {
            "overrides": self.overrides,
            "grid": self.grid,
            "seeds": self.seeds,
            "runs": [run.run_id for run in self.runs],
        }
        if self.design is not None:  # the same runs in another design order are another
            identity["design"] = self.design_record()  # design (the estimators need order)
        return hashlib.sha256(canonical_json(identity).encode("utf-8")).hexdigest()[:RUN_ID_LENGTH]

    def to_record(self) -> dict[str, Any]:
        """The resolved sweep spec written to `<sweep folder>/sweep.yaml`."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint(),
            "source": str(self.source),
            "base": str(self.base),
            "overrides": self.overrides,
            "grid": self.grid,
            "seeds": self.seeds,
            "counterfactual": self.counterfactual,
            "report": self.report.model_dump(mode="json"),
            **({"design": self.design_record()} if self.design is not None else {}),
            "n_runs": len(self.runs),
            "runs": [run.record() for run in self.runs],
            "base_config": self.base_config,
        }


def memory_room() -> int:
    """Bytes this process can still allocate: the memory available on the machine (psutil,
    Dask's own dependency), or less under an address-space limit (`RLIMIT_AS`)."""
    import resource

    import psutil

    room = psutil.virtual_memory().available
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        room = min(room, max(0, soft - psutil.Process().memory_info().vms))
    return room


def check_build_memory(source: Path, n_runs: int) -> None:
    """Refuse (ScenarioError) a sweep whose runs cannot be built in the memory this process
    can use, before anything is drawn or resolved: `--max-runs` lets a user ask for a large
    sweep, not for one that ends in a MemoryError half-way through building it."""
    need = n_runs * BUILD_BYTES_PER_RUN
    if need < 64 << 20:  # small sweeps: not worth asking the system
        return
    room = memory_room()
    if need > room:
        raise ScenarioError(
            f"{source}: the sweep has {n_runs:,} runs; building them before the first starts "
            f"takes about {need / 2**30:.1f} GiB ({BUILD_BYTES_PER_RUN >> 10} KiB per run), "
            f"more than the {room / 2**30:.1f} GiB this process can use. Make it smaller "
            "(a design's `samples` or `trajectories`, the grid, `seeds:`) or split it into "
            "several sweeps.")


def load_sweep(path: str | Path, *, max_runs: int = MAX_RUNS,
               settings: dict[str, Any] | None = None) -> Sweep:
    """Load a sweep file, resolve and validate every run.

    `settings`: dotted path -> value set on every run (`wsf sweep --set`), merged over the
    file's `overrides` (`with_settings`).

    Raises ScenarioError (one paragraph naming the sweep file, the field or grid key, the
    value and what is allowed) for a malformed file, a missing base scenario, a sweep of
    more than `max_runs` runs (counted before any run is built), or any grid point that the
    scenario schema refuses, before anything runs.
    """
    source, spec = read_file(path, "sweep", SweepFile)
    n_runs = spec.n_runs()
    if n_runs > max_runs:
        sizes = " x ".join(
            ([f"{n_points(spec.design, len(spec.parameters))} ({spec.design.kind} design "
              "points)"] if spec.design is not None else [])
            + [f"{len(v)} ({k})" for k, v in spec.grid.items()]
            + [f"{len(spec.seeds) if isinstance(spec.seeds, list) else spec.seeds:,} (seeds)"]
        )
        raise ScenarioError(
            f"{source}: the sweep has {n_runs:,} runs ({sizes}), more than the ceiling of "
            f"{max_runs:,}. Check the grid and `seeds:` for a typo; to run it anyway, raise "
            f"the ceiling with `wsf sweep --max-runs {n_runs}`."
        )

    check_build_memory(source, n_runs)
    base_path, base = load_base(source, spec.base, "sweep")
    spec = with_settings(source, spec, base, settings or {})
    seeds = spec.seed_list()
    if spec.design is not None:
        parameters = resolve_parameters(str(source), base, spec.parameters)
        runs, points = _expand_design(source, base_path, base, spec, parameters, seeds)
        return Sweep(
            name=spec.name or source.stem, source=source, base=base_path,
            base_config=base.to_dict(), overrides=dict(spec.overrides), grid={}, seeds=seeds,
            report=spec.report, runs=runs, design=spec.design, parameters=parameters,
            points=points,
        )
    runs = _expand(source, base_path, base, spec, seeds)
    return Sweep(
        name=spec.name or source.stem,
        source=source,
        base=base_path,
        base_config=base.to_dict(),
        overrides=dict(spec.overrides),
        grid={key: values.copy() for key, values in spec.grid.items()},
        seeds=seeds,
        report=spec.report,
        runs=runs,
    )


def with_settings[F: RunsFile](source: Path, spec: F, base: Scenario,
                               settings: dict[str, Any]) -> F:
    """`spec` (a sweep or study file) with the command line's `--set` values merged over its
    `overrides`: each is set on every run, as if the file's `overrides` said it. A setting of
    the seed (set by `seeds:`), of a swept field or of a `counterfactual` the file sets at its
    top, and any value the scenario refuses, is refused with the usual paragraph naming
    `--set`."""
    if not settings:
        return spec
    where = f"{source} (--set)"
    for key, value in settings.items():
        if key == "seed":
            raise ScenarioError(problem_text(where, key, value, "a field other than the seed, "
                                             "which the file's `seeds:` field sets"))
        if key in spec.varied():
            raise ScenarioError(problem_text(where, key, value, "a field the file does not "
                                             "vary; this one is swept by the file"))
        if key == "counterfactual" and spec.counterfactual is not None:
            raise ScenarioError(problem_text(where, key, value, "a field other than "
                                             "`counterfactual`, which the file sets at its "
                                             "top; set it in one place"))
        try:
            _json_or_raise(key, value)
        except ValueError:
            raise ScenarioError(problem_text(where, key, value, "plain data (a number, "
                                             "string, list or mapping)")) from None
    merged = {**spec.overrides, **settings}
    base.with_overrides(merged, source=where)  # the usual paragraph for a bad value
    return spec.model_copy(update={"overrides": merged})


def read_file(path: str | Path, kind: str, schema: type[BaseModel]) -> tuple[Path, Any]:
    """(absolute path, validated `schema` instance) of a sweep or study file; ScenarioError
    with the usual paragraph otherwise. `kind` names the file in messages."""
    source = Path(path).expanduser().resolve()
    raw = read_yaml(source, kind=kind)
    raw.pop(CLAIMS_KEY, None)  # the file's stated answers (`analysis.claims`), not its spec
    try:
        return source, schema.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(
            format_validation_error(exc, f"{source}: invalid {kind} file", schema)
        ) from None


def load_base(source: Path, base: str, kind: str) -> tuple[Path, Scenario]:
    """The base scenario a sweep or study file names (`base`, relative to the file)."""
    base_path = (source.parent / base).resolve()
    if not base_path.is_file():
        raise ScenarioError(
            f"{source}: field 'base' = {base!r}: no scenario file at {base_path} "
            f"(the path is relative to the {kind} file's folder)."
        )
    try:
        return base_path, load_scenario(base_path)
    except ScenarioError as exc:
        raise ScenarioError(f"{source}: the base scenario is invalid: {exc}") from None


@dataclass(frozen=True)
class _Where:
    """The sweep file and its base scenario file, for messages."""

    source: Path
    base: Path

    def __str__(self) -> str:
        return str(self.source)

    def at(self, part: str) -> str:
        return f"{self.source}, {part} (base scenario {self.base.name})"


def _expand(
    source: Path, base_path: Path, base: Scenario, spec: SweepFile, seeds: list[int]
) -> list[RunSpec]:
    """All runs, grid points in file order (last key fastest), seeds innermost."""
    points = spec.grid_points()
    keys = list(points)
    where = _Where(source, base_path)
    runs: list[RunSpec] = []
    by_id: dict[str, RunSpec] = {}
    for combo in itertools.product(*(points[key] for key in keys)):
        labels = {key: label for key, (label, _) in zip(keys, combo, strict=True)}
        values = {key: value for key, (_, value) in zip(keys, combo, strict=True)}
        overrides = spec.top_level_overrides()
        for seed in seeds:
            scenario = _resolve(where, base, overrides, labels, values, seed)
            run = RunSpec(run_id=run_id(scenario), params=labels, seed=seed, scenario=scenario)
            if run.run_id in by_id:
                other = by_id[run.run_id]
                raise ScenarioError(
                    f"{source}: grid points {_short(other.params, 200)} and {_short(labels, 200)} "
                    f"(seed {seed}) resolve "
                    "to the same scenario, so they would be one run; list each value once, in "
                    "the form the scenario uses."
                )
            by_id[run.run_id] = run
            runs.append(run)
    return runs


def _expand_design(
    source: Path, base_path: Path, base: Scenario, spec: SweepFile,
    parameters: list[Parameter], seeds: list[int],
) -> tuple[list[RunSpec], list[DesignPoint]]:
    """Runs and points of a design: rows in SALib's order, seeds innermost. Rows that resolve
    to the same scenario (integer rounding, categoricals) share a run: `runs` lists each run
    once, each point names the run of every seed."""
    assert spec.design is not None
    where = _Where(source, base_path)
    overrides = spec.top_level_overrides()
    runs: list[RunSpec] = []
    seen: set[str] = set()
    points: list[DesignPoint] = []
    for index, row in enumerate(draw(spec.design, parameters)):
        labels, values = point_values(parameters, row)
        ids = []
        for seed in seeds:
            scenario = _resolve(where, base, overrides, labels, values, seed,
                                what=f"design point {index}")
            run = RunSpec(run_id=run_id(scenario), params=labels, seed=seed, scenario=scenario)
            ids.append(run.run_id)
            if run.run_id not in seen:
                seen.add(run.run_id)
                runs.append(run)
        points.append(DesignPoint(index=index, unit=[float(u) for u in row],
                                  sample=[p.raw(u) for p, u in zip(parameters, row,
                                                                    strict=True)],
                                  params=labels, runs=ids))
    return runs, points


def _resolve(
    where: _Where,
    base: Scenario,
    overrides: dict[str, Any],
    labels: dict[str, Any],
    values: dict[str, Any],
    seed: int,
    what: str = "grid point",
) -> Scenario:
    """Apply overrides, grid point and seed in one `with_overrides` call.

    One call, not three in a row: an intermediate state may be invalid on its own (say, 40
    clients from the overrides with the base's exact Shapley) although the full combination
    is valid (the grid switches to Monte-Carlo Shapley).
    """
    try:
        return base.with_overrides({**overrides, **values, "seed": seed}, source=str(where))
    except ScenarioError as exc:
        raise ScenarioError(_blame(where, base, overrides, labels, values, seed, exc,
                                   what)) from None


def _blame(
    where: _Where,
    base: Scenario,
    overrides: dict[str, Any],
    labels: dict[str, Any],
    values: dict[str, Any],
    seed: int,
    exc: ScenarioError,
    what: str = "grid point",
) -> str:
    """Name the part of the sweep file that makes a run invalid, in one paragraph."""
    try:
        base.with_overrides({"seed": seed}, source=where.at(f"field 'seeds' ({seed})"))
    except ScenarioError as own:
        return str(own)
    if overrides:
        try:
            base.with_overrides(overrides, source=where.at("field 'overrides'"))
        except ScenarioError as own:
            return str(own)
    kind = "grid key" if what == "grid point" else f"{what}, parameter"
    for key, value in values.items():
        try:
            base.with_overrides(
                {**overrides, key: value},
                source=where.at(f"{kind} '{key}' = {_short(labels[key])}"),
            )
        except ScenarioError as own:
            return str(own)
    return (
        f"{exc} This happens only in the combination of {what} {_short(labels, 200)} "
        "(each value is "
        "valid alone)."
    )


def _short(value: Any, limit: int = MAX_SHOWN) -> str:
    return shown(value, limit)
