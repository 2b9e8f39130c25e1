"""Parameter sweeps: grid × seeds over a base scenario, run locally or on a Dask cluster.

    from abm.sweep import run_sweep, load_sweep
    sweep_dir = run_sweep("scenarios/sweeps/policy_by_method.yaml", workers=2)

Modules: `spec` (sweep- and study-file schemas, grid expansion, run ids), `store` (sweep folder
layout, atomic run storage, resume), `executor` (where runs execute: the worker's task, the
local process pool and the Dask path, for sweeps and studies alike), `execute` (running a
sweep: resume, progress), `optimize` (Optuna studies), `design` (SALib designs),
`scheduler` (reaching a Dask scheduler).
The combined tables and the report over a sweep folder are `analysis.sweep`'s (`wsf sweep`
calls both). See each module's docstring.
"""

from abm.sweep.execute import run_sweep
from abm.sweep.executor import RunOutcome, RunTask, SweepRunError, execute_run
from abm.sweep.spec import ReportSettings, RunSpec, Sweep, SweepFile, load_sweep, run_id
from abm.sweep.store import SweepError, finished_run_ids, read_spec

__all__ = [
    "ReportSettings",
    "RunOutcome",
    "RunSpec",
    "RunTask",
    "Sweep",
    "SweepError",
    "SweepFile",
    "SweepRunError",
    "execute_run",
    "finished_run_ids",
    "load_sweep",
    "read_spec",
    "run_id",
    "run_sweep",
]
