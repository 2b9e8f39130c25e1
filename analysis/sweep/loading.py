"""The sweep's combined tables: built once from the finished runs, read by the report.

`combine(sweep_dir)` (re)builds `<sweep>/combined/`: one row per (run, step) in
`model.parquet`, per (run, client, round) in `rounds.parquet`, per run in `runs.parquet`
(parameters and the `summarise_run` headline figures), per (run, client) in
`clients.parquet` (`client_rewards`, with `data_seed` and `contribution_rank`: what tells
whether a client is the same client across seeds; and `dataset`, the data it learned), per
(run, strategy) in `investors.parquet` (`investor_performance`) and per (run, holder type)
in `holders.parquet` (`holder_outcomes`: run minus its counterfactual twin when the sweep
ran twins); the runs' long tables (`abm.tidy`) per (run, step, client) in `tokens.parquet` and
per (run, step, holder type) in `wealth.parquet`, with `client` and `agent_type` as
categoricals. Each row starts with `run_id`,
one column per grid key (named values by their label), `seed`, `policy` and `method` (from
each run's resolved config). A grid key's column is its dotted path, or `grid:<path>` when a
run table already has a column of that name.
`load_sweep_tables` reads them back, rebuilding first when they do not hold exactly the
finished runs. This is the only place that aggregates runs; `abm` never imports `analysis`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from abm.errors import shown
from abm.sweep.store import (
    COMBINED_DIR,
    RUNS_DIR,
    SPEC_FILE,
    SweepError,
    finished_run_ids,
    read_spec,
    run_folder,
    write_text_atomic,
)
from abm.tidy import LONG_TABLES, long_tables
from analysis.metrics import client_rewards, holder_outcomes, investor_performance, summarise_run
from analysis.runs import RunFolderError, load_run
from analysis.sweep.labels import design_cells, label_names, param_cell, sweep_parameters

__all__ = ["SKIPPED_FILE", "TABLES", "SweepTables", "combine", "combined_is_current",
           "load_sweep_tables", "skipped_runs"]

TABLES = ("model", "rounds", "runs", "clients", "investors", "holders", *LONG_TABLES)


@dataclass(frozen=True)
class SweepTables:
    """Per-run metrics of a sweep's finished runs (the combined tables).

    Every table starts with the label columns `run_id`, the grid parameters (`params`, one
    column per dotted path), `seed`, `policy` and `method`.
    """

    path: Path
    name: str
    params: list[str]  # grid parameter columns (dotted paths; `grid:<path>` on a clash)
    confidence: float
    formats: list[str]
    figures: bool
    n_planned: int  # runs in the sweep spec, finished or not
    runs: pd.DataFrame  # one row per run: `summarise_run` headline figures
    clients: pd.DataFrame  # one row per run x client: `client_rewards`
    investors: pd.DataFrame  # one row per run x strategy: `investor_performance`
    holders: pd.DataFrame  # one row per run x holder type: `holder_outcomes`
    #: A design sweep's stored design (`sweep.yaml` `design`: kind, sizes, seed, parameters,
    #: every point with its runs); None for a grid sweep.
    design: dict[str, Any] | None = None
    seeds: tuple[int, ...] = ()  # the sweep's seeds, in file order
    #: Finished runs left out because they cannot be read or are no longer points of the
    #: sweep: {run id: why} (`combine`; the report lists them).
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """The label columns that start every table."""
        return ["run_id", *self.params, "seed", "policy", "method"]


def combine(sweep_dir: str | Path) -> dict[str, Path]:
    """(Re)build `combined/*.parquet` from the finished runs (see the module docstring).
    Idempotent; rows in the order of the runs in `sweep.yaml`. Returns {table: path}, empty
    when no run could be read. Runs that cannot be read or placed are left out and listed
    in `combined/skipped.json` (`skipped_runs`)."""
    return _combine(Path(sweep_dir))[0]


#: The runs `combine` left out, with why: {run id: one-line reason}, beside the tables.
SKIPPED_FILE = "skipped.json"


def skipped_runs(sweep_dir: str | Path) -> dict[str, str]:
    """The finished runs the latest `combine` could not use, with why (empty if none)."""
    try:
        data = json.loads((Path(sweep_dir) / COMBINED_DIR / SKIPPED_FILE)
                          .read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _records(spec: dict[str, Any], path: Path, skipped: dict[str, str]) -> list[dict[str, Any]]:
    """The run records of `sweep.yaml` that are well formed; the others go to `skipped`."""
    records = []
    for i, record in enumerate(spec["runs"]):
        if (isinstance(record, dict) and isinstance(record.get("run_id"), str)
                and isinstance(record.get("params"), dict)
                and isinstance(record.get("seed"), int) and not isinstance(record["seed"], bool)):
            records.append(record)
        else:
            name = record.get("run_id") if isinstance(record, dict) else None
            skipped[str(name) if isinstance(name, str) else f"runs[{i}]"] = (
                f"{path / SPEC_FILE}: runs[{i}] = {shown(record, 120)} is not a run record "
                "(run_id, params, seed); the sweep spec is damaged")
    return records


def _combine(sweep_dir: Path) -> tuple[dict[str, Path], dict[str, str]]:
    spec = read_spec(sweep_dir)
    skipped: dict[str, str] = {}
    try:
        grid = sweep_parameters(spec)
        cells = design_cells(spec)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise SweepError(
            f"{sweep_dir / SPEC_FILE}: the sweep's {'design' if spec.get('design') else 'grid'} "
            f"cannot be read ({type(exc).__name__}: {shown(str(exc), 200)}); the sweep spec is "
            "damaged: restore it or run `wsf sweep` into a new folder.") from None
    done = finished_run_ids(sweep_dir)
    records = [record for record in _records(spec, sweep_dir, skipped)
               if record["run_id"] in done]
    planned = {record["run_id"] for record in records}
    for name in sorted(done - planned - set(skipped)):
        skipped[name] = (f"{run_folder(sweep_dir, name)}: not a run of the sweep in "
                         f"{SPEC_FILE} (a point no longer in the spec, or a folder put there); "
                         "ignored")
    per_run = []
    for record in records:
        problem = _point_problem(spec, cells, grid, record)
        if problem is not None:
            skipped[record["run_id"]] = problem
            continue
        folder = run_folder(sweep_dir, record["run_id"])
        try:
            run = load_run(folder)
        except RunFolderError as exc:
            skipped[record["run_id"]] = str(exc)
            continue
        try:  # what passed load_run's checks but still cannot be analysed (summary.json)
            per_run.append((record, run, client_rewards(run), investor_performance(run),
                            holder_outcomes(run), _flatten(summarise_run(run))))
        except (ArithmeticError, AttributeError, IndexError, KeyError, LookupError,
                TypeError, ValueError) as exc:
            skipped[record["run_id"]] = (f"{folder}: cannot be analysed "
                                         f"({type(exc).__name__}: {shown(str(exc), 200)}); "
                                         "the run folder is damaged")
    out = sweep_dir / COMBINED_DIR
    out.mkdir(exist_ok=True)
    write_text_atomic(out / SKIPPED_FILE, json.dumps(skipped, indent=1))
    if not per_run:
        return {}, skipped
    taken = {"run_id", "seed", "policy", "method", "facet"}
    for _, run, per_client, per_strategy, per_holder, _ in per_run:
        taken |= {*run.model.columns, *run.rounds.columns, *per_client.columns,
                  *per_strategy.columns, *per_holder.columns}
    names = label_names(grid, taken)
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES if name != "runs"}
    rows: list[dict[str, Any]] = []
    for record, run, per_client, per_strategy, per_holder, figures in per_run:
        labels: dict[str, Any] = {"run_id": record["run_id"]}
        for key in grid:
            labels[names[key]] = param_cell(spec, cells, key, record["params"][key])
        labels["seed"] = record["seed"]
        labels["policy"] = run.policy
        labels["method"] = _config_value(run.config, "contribution", "method")
        frames["model"].append(_labelled(run.model, labels))
        frames["rounds"].append(_labelled(run.rounds, labels))
        frames["clients"].append(_labelled(_identified(per_client, run), labels))
        frames["investors"].append(_labelled(per_strategy, labels))
        frames["holders"].append(_labelled(per_holder, labels))
        for name, table in long_tables(run.model).items():
            frames[name].append(_labelled(table, labels))
        rows.append({**labels, **{k: v for k, v in figures.items() if k not in labels}})
    written = {name: _write_parquet_atomic(_concat(parts), out / f"{name}.parquet")
               for name, parts in frames.items()}
    written["runs"] = _write_parquet_atomic(pd.DataFrame(rows), out / "runs.parquet")
    return written, skipped


def _point_problem(spec: dict[str, Any], cells: dict[str, dict[str, Any]], grid: list[str],
                   record: dict[str, Any]) -> str | None:
    """Why a run record is not a point of the sweep's grid or design as `sweep.yaml` states
    it now (edited after the run), or None when it is one."""
    missing = [key for key in grid if key not in record["params"]]
    if missing:
        return (f"run {record['run_id']}: its parameters {shown(record['params'], 160)} lack "
                f"{', '.join(missing)} of the sweep in {SPEC_FILE}; a point no longer in the "
                "spec (edited after the run); left out")
    for key in grid:
        try:
            param_cell(spec, cells, key, record["params"][key])
        except (KeyError, TypeError, ValueError):
            return (f"run {record['run_id']}: {key} = {shown(record['params'][key], 80)} is "
                    f"no longer a value of the sweep's {key} in {SPEC_FILE} (edited after the "
                    "run); left out")
    return None


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The runs' rows in one table; a categorical column stays one (runs whose categories
    differ, e.g. clients, get the union in first-seen order)."""
    table = pd.concat(parts, ignore_index=True)
    for column in parts[0].columns:
        if isinstance(parts[0][column].dtype, pd.CategoricalDtype) and \
                not isinstance(table[column].dtype, pd.CategoricalDtype):
            # a damaged run's column may have lost its categories: take its values then
            seen = dict.fromkeys(
                c for part in parts if column in part.columns
                for c in (part[column].cat.categories
                          if isinstance(part[column].dtype, pd.CategoricalDtype)
                          else part[column].dropna().unique()))
            table[column] = pd.Categorical(table[column], categories=list(seen))
    return table


def combined_is_current(sweep_dir: str | Path) -> bool:
    """True when `combined/` holds exactly the finished runs (nothing to rebuild)."""
    sweep_dir = Path(sweep_dir)
    files = [sweep_dir / COMBINED_DIR / f"{name}.parquet" for name in TABLES]
    if not all(file.is_file() for file in files) or skipped_runs(sweep_dir):
        return False
    try:
        ids = pd.read_parquet(sweep_dir / COMBINED_DIR / "runs.parquet",
                              columns=["run_id"])["run_id"]
    except (OSError, ValueError, KeyError):
        return False
    if not {"data_seed", "dataset"} <= set(
            _parquet_columns(sweep_dir / COMBINED_DIR / "clients.parquet")):
        return False  # written before clients carried what identifies them and their data
    return len(ids) == len(set(ids)) and set(ids) == finished_run_ids(sweep_dir)


def _parquet_columns(path: Path) -> list[str]:
    """The column names of a Parquet file (its schema only; [] when unreadable)."""
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except (OSError, ValueError):
        return []


def load_sweep_tables(sweep_dir: str | Path) -> SweepTables:
    """The combined tables of a sweep folder (rebuilt first if stale).

    Raises SweepError when the folder is not a sweep folder or no run has finished.
    """
    path = Path(sweep_dir)
    spec = read_spec(path)
    skipped: dict[str, str] = {}
    if not combined_is_current(path):
        written, skipped = _combine(path)
        if not written:
            raise SweepError(_nothing_usable(path, spec, skipped))
    tables = {name: pd.read_parquet(path / COMBINED_DIR / f"{name}.parquet")
              for name in ("runs", "clients", "investors", "holders")}
    # The grid columns `combine` wrote: each key's dotted path, or `grid:<path>`.
    params = [f"grid:{key}" if f"grid:{key}" in tables["runs"].columns else key
              for key in sweep_parameters(spec)]
    report = spec.get("report") or {}
    return SweepTables(
        path=path,
        name=str(spec.get("name", path.name)),
        params=params,
        confidence=float(report.get("confidence", 0.95)),
        formats=list(report.get("formats", ["png", "pdf"])),
        figures=bool(report.get("figures", True)),
        n_planned=len(spec["runs"]),
        runs=tables["runs"],
        clients=tables["clients"],
        investors=tables["investors"],
        holders=tables["holders"],
        design=spec.get("design") or None,
        seeds=tuple(spec.get("seeds") or ()),
        skipped=skipped,
    )


def _nothing_usable(path: Path, spec: dict[str, Any], skipped: dict[str, str]) -> str:
    """The one paragraph of a sweep folder without a run the report can use."""
    planned = len(spec["runs"])
    if not skipped:
        return (f"{path}: no finished run under {RUNS_DIR}/ (of {planned} planned); run "
                "`wsf sweep` on it first.")
    (first, why), more = next(iter(skipped.items())), len(skipped) - 1
    return (f"{path}: none of its {len(skipped)} run folder(s) under {RUNS_DIR}/ can be "
            f"used (of {planned} planned); run {first}: {why}"
            + (f"; and {more} more (each in the same way or as damaged)" if more else "")
            + f". Remove the damaged run folders under {path / RUNS_DIR} and run `wsf sweep` "
            "again to redo them.")


def _identified(per_client: pd.DataFrame, run: Any) -> pd.DataFrame:
    """`client_rewards` of one run with what identifies a client across seeds:
    `data_seed` (the seed its data was drawn from: `fl.partition.seed`, else the run seed),
    `dataset` (`fl.dataset.name`) and `contribution_rank` (1 = the largest cumulative
    contribution of the run; ties in table order)."""
    partition = ((run.config.get("fl") or {}).get("partition") or {}).get("seed")
    out = per_client.copy()
    seed = run.seed if partition is None else partition
    out["data_seed"] = -1 if seed is None else int(seed)
    out["dataset"] = _config_value(run.config, "fl", "dataset", "name")
    out["contribution_rank"] = (out["contribution"].rank(ascending=False, method="first")
                                .astype("int64"))
    return out


def _config_value(config: dict[str, Any], *path: str) -> str:
    node: Any = config
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return "unknown"
        node = node[key]
    return str(node)


def _labelled(table: pd.DataFrame, labels: dict[str, Any]) -> pd.DataFrame:
    """`labels` as leading columns; they replace a table column of the same name."""
    frame = table.drop(columns=[c for c in table.columns if c in labels]).reset_index(drop=True)
    front = pd.DataFrame({key: [value] * len(frame) for key, value in labels.items()},
                         index=frame.index)
    return pd.concat([front, frame], axis=1)


def _flatten(summary: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested headline figures as flat columns (`a/b`); lists become JSON text."""
    flat: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def _write_parquet_atomic(frame: pd.DataFrame, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path
