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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from abm.sweep.store import (
    COMBINED_DIR,
    RUNS_DIR,
    SweepError,
    design_cells,
    finished_run_ids,
    label_names,
    param_cell,
    read_spec,
    run_folder,
    sweep_parameters,
)
from abm.tidy import LONG_TABLES, long_tables
from analysis.metrics import client_rewards, holder_outcomes, investor_performance, summarise_run
from analysis.runs import load_run

__all__ = ["TABLES", "SweepTables", "combine", "combined_is_current", "load_sweep_tables"]

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

    @property
    def labels(self) -> list[str]:
        """The label columns that start every table."""
        return ["run_id", *self.params, "seed", "policy", "method"]


def combine(sweep_dir: str | Path) -> dict[str, Path]:
    """(Re)build `combined/*.parquet` from the finished runs (see the module docstring).
    Idempotent; rows in the order of the runs in `sweep.yaml`. Returns {table: path}, empty
    when no run finished."""
    sweep_dir = Path(sweep_dir)
    spec = read_spec(sweep_dir)
    grid = sweep_parameters(spec)
    cells = design_cells(spec)
    done = finished_run_ids(sweep_dir)
    records = [record for record in spec["runs"] if record["run_id"] in done]
    if not records:
        return {}
    loaded = [(record, load_run(run_folder(sweep_dir, record["run_id"]))) for record in records]
    per_run = [(record, run, client_rewards(run), investor_performance(run),
                holder_outcomes(run)) for record, run in loaded]
    taken = {"run_id", "seed", "policy", "method", "facet"}
    for _, run, per_client, per_strategy, per_holder in per_run:
        taken |= {*run.model.columns, *run.rounds.columns, *per_client.columns,
                  *per_strategy.columns, *per_holder.columns}
    names = label_names(grid, taken)
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES if name != "runs"}
    rows: list[dict[str, Any]] = []
    for record, run, per_client, per_strategy, per_holder in per_run:
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
        figures = _flatten(summarise_run(run))
        rows.append({**labels, **{k: v for k, v in figures.items() if k not in labels}})
    out = sweep_dir / COMBINED_DIR
    out.mkdir(exist_ok=True)
    written = {name: _write_parquet_atomic(_concat(parts), out / f"{name}.parquet")
               for name, parts in frames.items()}
    written["runs"] = _write_parquet_atomic(pd.DataFrame(rows), out / "runs.parquet")
    return written


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The runs' rows in one table; a categorical column stays one (runs whose categories
    differ, e.g. clients, get the union in first-seen order)."""
    table = pd.concat(parts, ignore_index=True)
    for column in parts[0].columns:
        if isinstance(parts[0][column].dtype, pd.CategoricalDtype) and \
                not isinstance(table[column].dtype, pd.CategoricalDtype):
            seen = dict.fromkeys(c for part in parts for c in part[column].cat.categories)
            table[column] = pd.Categorical(table[column], categories=list(seen))
    return table


def combined_is_current(sweep_dir: str | Path) -> bool:
    """True when `combined/` holds exactly the finished runs (nothing to rebuild)."""
    sweep_dir = Path(sweep_dir)
    files = [sweep_dir / COMBINED_DIR / f"{name}.parquet" for name in TABLES]
    if not all(file.is_file() for file in files):
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
    if not combined_is_current(path) and not combine(path):
        raise SweepError(
            f"{path}: no finished run under {RUNS_DIR}/ (of {len(spec['runs'])} planned); run "
            "`wsf sweep` on it first."
        )
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
    )


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
