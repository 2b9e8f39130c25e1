"""Mechanism search: an Optuna study over scenario parameters, each trial a mean over seeds.

A study file is YAML data like a sweep file, with objectives instead of a grid::

    name: fair_and_cheap
    base: ../baseline.yaml
    overrides: {steps: 300}
    parameters:                                  # as a design's (abm.sweep.design)
      market.fee_bps: {low: 5, high: 100}
      rewards.policy: {values: [buyback, dividend, mint]}
    objectives:                                  # run outputs (analysis.metrics.RUN_OUTPUTS)
      - {output: execution_cost_usd, direction: minimize}
      - {output: reward_contribution_rho, direction: maximize}
    seeds: 3
    sampler: {kind: tpe, seed: 0}                # optional: tpe (default), random, nsga2

`run_study` runs trials until the study holds `trials` finished ones. Each trial draws a
point from Optuna's sampler, resolves one scenario per seed (`base.with_overrides({**overrides,
**point, "seed": s})`), runs those the output folder does not hold yet (the runs are stored
exactly as a sweep's: `runs/<run_id>/`, atomic, shared by trials that land on the same
configuration) and reports each objective's mean over the seeds. Several objectives make a
multi-objective study whose result is the Pareto front.

Output folder (default `studies-out/<name>`)::

    optimize.yaml        the resolved study file (fingerprint, parameters, objectives, seeds)
    study.journal        Optuna's journal storage: every trial, appended as it happens
    runs/<run_id>/       the runs (params.json names the trial that first asked for it)
    tmp/, errors/, .lock as a sweep folder's
    trials.parquet       one row per trial: number, state, parameters, objectives, run ids
    pareto.csv, .tex     the Pareto front (the best trial with one objective)
    scenarios/*.yaml     the Pareto (or best) settings as scenario files for `wsf run`

Resume: a study killed at any moment leaves its journal and its finished runs. Run the same
command again: trials a dead driver left running (and trials whose runs raised) are marked
failed and asked again with the same parameters, so their finished runs are reused, and new
trials are drawn until `trials` have finished. `--trials` is the total wanted, not more.
A finished trial is one that completed, or failed for a reason retrying cannot change (an
invalid parameter combination, an objective undefined on every seed).

Trials run in parallel: up to one per worker at a time, their runs on local worker processes
or an existing Dask cluster (the same machinery as `wsf sweep`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm import tqdm

from abm.errors import ScenarioError, shown
from abm.scenario import Scenario, read_yaml
from abm.sweep import store
from abm.sweep.design import Parameter, ParamRange, resolve_parameters
from abm.sweep.executor import (
    CONNECT_TIMEOUT_S,
    Executor,
    RunTask,
    SweepRunError,
    dask_client,
    exception_of,
    worker_count,
)
from abm.sweep.spec import (
    RunsFile,
    canonical_json,
    load_base,
    read_file,
    run_id,
    with_settings,
)

__all__ = [
    "DEFAULT_ROOT",
    "Objective",
    "OptimizeFile",
    "Study",
    "load_study",
    "run_study",
    "trials_table",
]

DEFAULT_ROOT = Path("studies-out")
SPEC_FILE = "optimize.yaml"
JOURNAL_FILE = "study.journal"
TRIALS_FILE = "trials.parquet"
SCENARIOS_DIR = "scenarios"
#: Trial user attributes: why a trial failed. Retried on resume: killed, runs_failed.
RETRY_REASONS = ("killed", "runs_failed")
FINAL_REASONS = ("invalid", "undefined")


class Objective(BaseModel):
    """One objective: a run output (mean over the seeds) and whether to minimise it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    output: str = Field(min_length=1, description="a run output (`analysis.metrics`)")
    direction: Literal["minimize", "maximize"] = Field(description="minimize or maximize")


class SamplerSpec(BaseModel):
    """Optuna's sampler: TPE (default; multi-objective with several objectives), random
    search, or NSGA-II; seeded from the file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal["tpe", "random", "nsga2"] = Field("tpe", description="the sampler")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed of the sampler")


class OptimizeFile(RunsFile):
    """Schema of a study file, as written: the search space (`parameters`, required), the
    objectives and the sampler; the fields it shares with a sweep file are `RunsFile`'s."""

    parameters: dict[str, ParamRange] = Field(min_length=1, description="the search space")
    objectives: list[Objective] = Field(min_length=1, max_length=8,
                                        description="run outputs to minimise or maximise")
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)

    @field_validator("parameters")
    @classmethod
    def _categoricals(cls, value: dict[str, ParamRange]) -> dict[str, ParamRange]:
        for key, spec in value.items():
            if isinstance(spec.values, list):
                for v in spec.values:
                    if not isinstance(v, str | int | float | bool):
                        raise ValueError(
                            f"'{key}': Optuna's categorical choices must be plain values; "
                            f"give structured values a label ({{values: {{label: value}}}})")
        return value

    @field_validator("objectives")
    @classmethod
    def _distinct(cls, value: list[Objective]) -> list[Objective]:
        names = [o.output for o in value]
        if len(set(names)) != len(names):
            raise ValueError("an output is listed twice among the objectives")
        return value


@dataclass(frozen=True)
class Study:
    """A loaded, validated study file."""

    name: str
    source: Path
    base_path: Path
    base: Scenario = field(repr=False)
    overrides: dict[str, Any]
    parameters: list[Parameter]
    objectives: list[Objective]
    seeds: list[int]
    counterfactual: bool  # resolved: the study file's, else its overrides', else the base's
    sampler: SamplerSpec

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def scenario(self, labels: dict[str, Any], seed: int) -> Scenario:
        """The run of point `labels` (parameter -> value or categorical label) and `seed`."""
        values = {}
        for p in self.parameters:
            label = labels[p.path]
            values[p.path] = (p.values[p.labels.index(label)] if p.kind == "categorical"
                              else label)
        overrides = {**self.overrides, "counterfactual": self.counterfactual}
        return self.base.with_overrides({**overrides, **values, "seed": seed},
                                        source=f"{self.source} (point {shown(labels, 200)})")

    def record(self) -> dict[str, Any]:
        """The resolved study written to `optimize.yaml`."""
        return {
            "name": self.name, "fingerprint": self.fingerprint(), "source": str(self.source),
            "base": str(self.base_path), "overrides": self.overrides,
            "parameters": {p.path: p.record() for p in self.parameters},
            "objectives": [o.model_dump() for o in self.objectives], "seeds": self.seeds,
            "counterfactual": self.counterfactual, "sampler": self.sampler.model_dump(),
            "base_config": self.base.to_dict(),
        }

    def fingerprint(self) -> str:
        """Identity of the search: same base content, overrides, space, objectives, seeds and
        sampler. Paths and the name are left out."""
        identity = {"base": self.base.to_dict(), "overrides": self.overrides,
                    "parameters": {p.path: p.record() for p in self.parameters},
                    "objectives": [o.model_dump() for o in self.objectives],
                    "seeds": self.seeds, "counterfactual": self.counterfactual,
                    "sampler": self.sampler.model_dump()}
        return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]


def load_study(path: str | Path, *, outputs: Sequence[str],
               settings: dict[str, Any] | None = None) -> Study:
    """Load and validate a study file; `outputs` are the run outputs objectives may name;
    `settings` (`wsf optimize --set`) are merged over the file's `overrides`.

    Every parameter is checked against the base scenario's declared ranges, and the scenario
    at each end of every range (each categorical value) is resolved, before anything runs.
    Raises ScenarioError with the usual one-paragraph message.
    """
    source, spec = read_file(path, "study", OptimizeFile)
    for i, objective in enumerate(spec.objectives):
        if objective.output not in outputs:
            raise ScenarioError(
                f"{source}: objectives[{i}].output = {objective.output!r}: not a run output; "
                f"allowed: {', '.join(outputs)}.")
    base_path, base = load_base(source, spec.base, "study")
    spec = with_settings(source, spec, base, settings or {})
    counterfactual = (spec.counterfactual if spec.counterfactual is not None
                      else bool(spec.overrides.get("counterfactual", base.counterfactual)))
    parameters = resolve_parameters(str(source), base, spec.parameters)
    study = Study(name=spec.name or source.stem, source=source, base_path=base_path,
                  base=base, overrides=dict(spec.overrides), parameters=parameters,
                  objectives=list(spec.objectives), seeds=spec.seed_list(),
                  counterfactual=counterfactual, sampler=spec.sampler)
    try:
        base.with_overrides(spec.overrides, source=f"{source}, field 'overrides'")
    except ScenarioError as exc:
        raise ScenarioError(str(exc)) from None
    middle = {p.path: (p.labels[0] if p.kind == "categorical" else p.value(0.5)[0])
              for p in parameters}
    for p in parameters:
        ends = p.labels if p.kind == "categorical" else (p.value(0.0)[0], p.value(1.0)[0])
        for end in ends:
            try:
                study.scenario({**middle, p.path: end}, study.seeds[0])
            except ScenarioError as exc:
                raise ScenarioError(
                    f"{source}: parameters.{p.path} = {shown(end)} makes an invalid "
                    f"scenario (the other parameters mid-range): {exc}") from None
    return study


# -- the driver -------------------------------------------------------------------------------


@dataclass
class _Trial:
    trial: Any  # optuna.Trial
    labels: dict[str, Any]
    run_ids: list[str]
    waiting: set[str]


def default_out(study: Study) -> Path:
    return DEFAULT_ROOT / study.name


def _warn(text: str) -> None:
    """A warning on stderr that does not break the progress bar (as `wsf sweep`'s)."""
    tqdm.write(f"wsf optimize: warning: {text}", file=sys.stderr)


def run_study(
    path: str | Path,
    *,
    trials: int,
    outputs: Callable[[Path], dict[str, float]],
    output_names: Sequence[str],
    workers: int | None = None,
    scheduler: str | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    settings: dict[str, Any] | None = None,
) -> Path:
    """Run (or resume) the study of a study file until it holds `trials` finished trials.

    `outputs(run_dir)` returns a run folder's scalar outputs (the CLI passes
    `analysis.metrics.run_outputs`; `abm` never imports `analysis`), `output_names` the
    outputs objectives may name. `workers`, `scheduler`, `out`, `progress` and
    `connect_timeout` and `settings` are as `run_sweep`'s. Returns the output folder, with
    `trials.parquet`, the Pareto table and the scenario files written.

    Raises ScenarioError for a bad file, SweepError for an unusable folder or scheduler,
    SweepRunError when trials failed because runs raised (the others are stored; running
    again retries them). Ctrl-C stops the workers; the journal and finished runs are kept.
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    study_spec = load_study(path, outputs=output_names, settings=settings)
    folder = (Path(out) if out is not None else default_out(study_spec)).expanduser().resolve()
    failed_runs: dict[str, str] = {}
    with dask_client(scheduler, connect_timeout) as client, _open_folder(study_spec, folder):
        study = _optuna_study(study_spec, folder)
        _requeue(study)
        finished = _finished(study)
        todo = trials - finished
        bar = tqdm(total=trials, initial=min(finished, trials),
                   desc=f"study {study_spec.name}", unit="trial", disable=not progress,
                   dynamic_ncols=True)
        try:
            if todo > 0:
                n_workers = worker_count(client, workers)
                with Executor(n_workers, client, f"wsf-opt-{study_spec.name}",
                              notice=_warn) as executor:
                    _drive(study_spec, study, folder, executor, todo, n_workers, outputs,
                           bar, failed_runs)
        finally:
            bar.close()
        store.clean_staging(folder)
        write_results(study_spec, study, folder)
    if failed_runs:
        first = next(iter(failed_runs.items()))
        raise SweepRunError(
            f"{len(failed_runs)} runs of study '{study_spec.name}' failed (first: run "
            f"{first[0]}: {first[1]}); their trials are marked failed and are retried when "
            f"the same command runs again. Tracebacks are in {folder / store.ERRORS_DIR}.",
            failed_runs)
    return folder


@contextlib.contextmanager
def _open_folder(study: Study, folder: Path) -> Iterator[None]:
    """Create the study folder or check it holds this study; hold its lock."""
    spec_path = folder / SPEC_FILE
    if folder.exists() and not folder.is_dir():
        raise store.SweepError(f"{folder}: exists and is not a folder; choose another --out.")
    if folder.is_dir() and not spec_path.exists():
        foreign = sorted(p.name for p in folder.iterdir() if p.name != store.LOCK_FILE)
        if foreign:
            raise store.SweepError(
                f"{folder}: the folder is not empty and holds no {SPEC_FILE} (found "
                f"{', '.join(foreign[:5])}), so it is not a study folder; it is left "
                "untouched. Choose another --out or an empty folder.")
    folder.mkdir(parents=True, exist_ok=True)
    with store.exclusive_lock(folder / store.LOCK_FILE):
        if spec_path.exists():
            old = read_yaml(spec_path, kind="study spec", max_bytes=store.SPEC_MAX_BYTES)
            if old.get("fingerprint") != study.fingerprint():
                raise store.SweepError(
                    f"{folder}: the folder holds a different study ('{old.get('name')}' from "
                    f"{old.get('source')}). A folder resumes only the study it was started "
                    "with (same base scenario content, overrides, parameters, objectives, "
                    "seeds and sampler). Choose another --out, or delete the folder.")
        else:
            store.write_text_atomic(spec_path, yaml.safe_dump(study.record(), sort_keys=False))
        store.clean_staging(folder)
        yield


class JournalError(store.SweepError):
    """A study journal damaged beyond its last line: bad input (exit 2), named with the line."""


def _journal_line_ok(line: bytes) -> bool:
    """Whether `line` is one whole record of Optuna's journal: a JSON object with a known
    `op_code`, ending in a newline."""
    from optuna.storages.journal._storage import JournalOperation

    if not line.endswith(b"\n"):
        return False
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        return False
    return (isinstance(record, dict) and isinstance(record.get("op_code"), int)
            and record["op_code"] in {op.value for op in JournalOperation})


def repair_journal(path: Path) -> int:
    """Make the journal at `path` one Optuna can read and append to; return the bytes dropped.

    A torn last record (what a crash or power cut during an append leaves: no newline, or
    cut JSON) is dropped by truncating the file to the end of the last whole record, and
    reported by the caller. Optuna's `JournalFileBackend.read_logs` skips such a tail while
    reading but appends after it, which glues the torn bytes to the next record and makes
    the journal unreadable from then on. Anything else (a bad record followed by good ones,
    binary content) raises JournalError naming the file and the line: trials after it cannot
    be trusted, and the file is left as it is.
    """
    if not path.is_file():
        return 0
    with open(path, "rb") as handle:
        lines = handle.readlines()
    good = 0
    for number, line in enumerate(lines, start=1):
        if _journal_line_ok(line):
            good += len(line)
            continue
        if number < len(lines):
            raise JournalError(
                f"{path}: line {number} of {len(lines)} is not a record of Optuna's journal "
                f"({shown(line[:40], 60)}); the journal is damaged "
                "before its end, so the trials after it cannot be trusted. Move the file "
                "away to start the study afresh (finished runs in runs/ are reused), or "
                "restore it from a copy.")
        os.truncate(path, good)
        return len(line)
    return 0


def _optuna_study(spec: Study, folder: Path) -> Any:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    # Optuna logs every trial at INFO through a handler bound to the stderr of the moment:
    # quiet it wherever a study is opened, not only in `run_study`.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = folder / JOURNAL_FILE
    dropped = repair_journal(journal)
    if dropped:
        tqdm.write(f"wsf optimize: warning: {journal}: its last record was torn ({dropped} "
                   "bytes, what a crash while writing leaves); it was dropped and the study "
                   "resumes from the trials before it.", file=sys.stderr)
    try:
        storage = JournalStorage(JournalFileBackend(str(journal)))
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        # Whole records Optuna cannot replay (hand-edited, or from another Optuna version).
        raise JournalError(
            f"{journal}: Optuna cannot replay the journal ({type(exc).__name__}: "
            f"{shown(str(exc), 120)}). Move the file away to start the study afresh "
            "(finished runs in runs/ are reused), or restore it from a copy.") from None
    # The sampler's random stream restarts with each driver: seeded with the file's seed
    # alone, a resumed study would draw the same first points again. Offsetting it by the
    # trials the study already holds keeps it deterministic for a given history.
    held = 0
    with contextlib.suppress(KeyError):  # KeyError: no such study yet
        held = len(optuna.load_study(study_name=spec.name, storage=storage).trials)
    seed = spec.sampler.seed + held
    sampler = {"tpe": lambda: optuna.samplers.TPESampler(seed=seed),
               "random": lambda: optuna.samplers.RandomSampler(seed=seed),
               "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed)}[spec.sampler.kind]()
    return optuna.create_study(study_name=spec.name, storage=storage, sampler=sampler,
                               directions=spec.directions, load_if_exists=True)


def _requeue(study: Any) -> None:
    """Trials a dead driver left running, and trials whose runs raised: mark them failed
    (reason `killed`) and ask their parameters again, so their finished runs are reused."""
    from optuna.trial import TrialState

    retried = {t.user_attrs.get("retry_of") for t in study.get_trials(deepcopy=False)}
    for t in study.get_trials(deepcopy=False):
        stale = t.state == TrialState.RUNNING
        again = t.state == TrialState.FAIL and t.user_attrs.get("reason") in RETRY_REASONS
        if stale:
            study._storage.set_trial_user_attr(t._trial_id, "reason", "killed")
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        if (stale or again) and t.number not in retried and t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number},
                                skip_if_exists=False)


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state == TrialState.COMPLETE
               or (t.state == TrialState.FAIL and t.user_attrs.get("reason") in FINAL_REASONS))


def _suggest(trial: Any, parameters: list[Parameter]) -> dict[str, Any]:
    labels = {}
    for p in parameters:
        if p.kind == "categorical":
            labels[p.path] = trial.suggest_categorical(p.path, list(p.labels))
        elif p.kind == "int":
            labels[p.path] = trial.suggest_int(p.path, int(p.low), int(p.high))
        else:
            labels[p.path] = trial.suggest_float(p.path, p.low, p.high)
    return labels


def _drive(spec: Study, study: Any, folder: Path, executor: Executor, todo: int, parallel: int,
           outputs: Callable[[Path], dict[str, float]], bar: tqdm,
           failed_runs: dict[str, str]) -> None:
    """Ask trials (up to `parallel` at once), run their missing runs, tell their values."""
    from optuna.trial import TrialState

    in_flight: dict[int, _Trial] = {}
    futures: dict[Any, str] = {}  # future -> run id
    submitted: dict[str, Any] = {}  # run id -> future (runs shared between trials)
    done_here = 0
    asked = 0
    # Trials that fail for good still count; a bound stops a space where nothing ever
    # completes from drawing forever.
    limit = todo + max(10, todo)

    def finish(entry: _Trial) -> None:
        nonlocal done_here
        del in_flight[entry.trial.number]
        trial = entry.trial
        broken = [rid for rid in entry.run_ids if rid in failed_runs]
        if broken:  # counted as done for this session; retried by the next one
            trial.set_user_attr("reason", "runs_failed")
            study.tell(trial, state=TrialState.FAIL)
            done_here += 1
            bar.set_postfix(failed=len(failed_runs))
            bar.update(1)
            return
        values, per_seed = [], {}
        for objective in spec.objectives:
            seen = [outputs(store.run_folder(folder, rid)).get(objective.output, math.nan)
                    for rid in entry.run_ids]
            per_seed[objective.output] = seen
            finite = [v for v in seen if math.isfinite(v)]
            values.append(sum(finite) / len(finite) if finite else math.nan)
        trial.set_user_attr("per_seed", per_seed)
        done_here += 1
        bar.update(1)
        if any(not math.isfinite(v) for v in values):
            trial.set_user_attr("reason", "undefined")
            study.tell(trial, state=TrialState.FAIL)
            return
        study.tell(trial, values if len(values) > 1 else values[0])

    while done_here < todo:
        while len(in_flight) < parallel and done_here + len(in_flight) < todo and asked < limit:
            trial = study.ask()
            asked += 1
            labels = _suggest(trial, spec.parameters)
            try:
                scenarios = [spec.scenario(labels, seed) for seed in spec.seeds]
            except ScenarioError as exc:
                trial.set_user_attr("reason", "invalid")
                trial.set_user_attr("error", str(exc)[:2000])
                study.tell(trial, state=TrialState.FAIL)
                done_here += 1
                bar.update(1)
                continue
            ids = [run_id(s) for s in scenarios]
            trial.set_user_attr("run_ids", ids)
            entry = _Trial(trial, labels, ids, set())
            have = store.finished_run_ids(folder)
            for scenario, rid, seed in zip(scenarios, ids, spec.seeds, strict=True):
                if rid in have:
                    continue
                entry.waiting.add(rid)
                if rid not in submitted:
                    record = {"run_id": rid, "params": labels, "seed": seed,
                              "trial": trial.number}
                    task = RunTask(sweep_dir=str(folder), record=record, scenario=scenario)
                    future = executor.submit(task)
                    submitted[rid] = future
                    futures[future] = rid
            in_flight[trial.number] = entry
            if not entry.waiting:
                finish(entry)
        if not in_flight:
            if done_here < todo and asked >= limit:
                raise ScenarioError(
                    f"{spec.source}: {asked} trials were asked and too few could finish "
                    f"({done_here} of {todo}); check the parameters' ranges and objectives "
                    "(see trials.parquet's `reason` and `error`).")
            continue
        pending = [f for f, rid in futures.items() if any(rid in e.waiting
                                                          for e in in_flight.values())]
        for future in executor.first_completed(pending):
            rid = futures.pop(future)
            error = exception_of(future)
            if error is not None:
                failed_runs[rid] = f"{type(error).__name__}: {error}"
                store.write_error(folder, rid, "".join(traceback.format_exception(error)))
            else:
                store.clear_error(folder, rid)
            for entry in list(in_flight.values()):
                entry.waiting.discard(rid)
                if not entry.waiting:
                    finish(entry)


# -- results ----------------------------------------------------------------------------------


def trials_table(spec: Study, study: Any) -> Any:
    """One row per trial: `trial`, `state`, `reason`, each parameter (its value, or a
    categorical's label), each objective (mean over seeds; NaN unless complete) and
    `<objective>_per_seed` (JSON list of the values averaged, in seed order), `run_ids`
    (JSON list, one per seed), `retry_of`, `pareto` (on the Pareto front / the best trial),
    `seconds` (wall time of the trial)."""
    import pandas as pd
    from optuna.trial import TrialState

    front = {t.number for t in _front(spec, study)}
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name,
                               "reason": t.user_attrs.get("reason", "")}
        for p in spec.parameters:
            row[p.path] = t.params.get(p.path)
        values = t.values if t.state == TrialState.COMPLETE and t.values else None
        per_seed = t.user_attrs.get("per_seed") or {}
        for i, objective in enumerate(spec.objectives):
            row[objective.output] = float(values[i]) if values else math.nan
        for objective in spec.objectives:  # the values the mean is over, seeds in order
            row[f"{objective.output}_per_seed"] = json.dumps(per_seed.get(objective.output, []))
        row["run_ids"] = json.dumps(t.user_attrs.get("run_ids", []))
        row["retry_of"] = t.user_attrs.get("retry_of", -1)
        row["pareto"] = t.number in front
        row["seconds"] = (t.duration.total_seconds() if t.duration is not None else math.nan)
        rows.append(row)
    frame = pd.DataFrame(rows)
    for p in spec.parameters:  # categoricals of mixed kinds as text, so parquet can hold them
        if p.kind == "categorical" and frame[p.path].map(type).nunique() > 1:
            frame[p.path] = frame[p.path].astype(str)
    return frame


def _front(spec: Study, study: Any) -> list[Any]:
    from optuna.trial import TrialState

    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return []
    return list(study.best_trials) if len(spec.objectives) > 1 else [study.best_trial]


def write_results(spec: Study, study: Any, folder: Path) -> None:
    """`trials.parquet`, `pareto.csv`/`.tex` and the scenario files of the front."""
    frame = trials_table(spec, study)
    tmp = folder / f".{TRIALS_FILE}.{os.getpid()}.tmp"
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, folder / TRIALS_FILE)
    front = frame[frame["pareto"]] if len(frame) else frame
    front = front.drop(columns=["pareto", "state", "reason", "retry_of"], errors="ignore")
    for name, write in (
            ("pareto.csv", lambda path: front.to_csv(path, index=False)),
            ("pareto.tex", lambda path: front.to_latex(
                path, index=False, float_format="%.4g",
                caption=f"Pareto front of study {spec.name}", label=f"tab:{spec.name}"))):
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        write(tmp)
        os.replace(tmp, folder / name)  # a reader never sees half a table
    target = folder / SCENARIOS_DIR
    staging = folder / f".{SCENARIOS_DIR}.{os.getpid()}.tmp"
    if staging.exists():
        import shutil

        shutil.rmtree(staging)
    staging.mkdir()
    for t in _front(spec, study):
        write_scenario(spec, t, staging)
    if target.exists():
        import shutil

        old = folder / f".{SCENARIOS_DIR}.{os.getpid()}.old"
        os.rename(target, old)
        os.rename(staging, target)
        shutil.rmtree(old)
    else:
        os.rename(staging, target)


def write_scenario(spec: Study, trial: Any, folder: Path) -> Path:
    """The scenario of a trial's point (first seed) as a file `wsf run` takes."""
    name = f"{spec.base.name}-{spec.name}-t{trial.number}"[:100]
    scenario = spec.scenario(dict(trial.params), spec.seeds[0]).with_overrides(
        {"name": name}, source=str(spec.source))
    objectives = ", ".join(f"{o.output} = {v:.6g} ({o.direction})"
                           for o, v in zip(spec.objectives, trial.values, strict=True))
    header = (f"# Trial {trial.number} of study '{spec.name}' ({spec.source.name}): "
              f"{'on the Pareto front' if len(spec.objectives) > 1 else 'the best trial'}.\n"
              f"# Means over seeds {spec.seeds}: {objectives}.\n"
              f"# Parameters: {canonical_json(dict(trial.params))}\n"
              f"# Resolved scenario (seed {spec.seeds[0]}); run it with `wsf run {name}.yaml`.\n")
    path = folder / f"{name}.yaml"
    path.write_text(header + yaml.safe_dump(scenario.to_dict(), sort_keys=False),
                    encoding="utf-8")
    return path

