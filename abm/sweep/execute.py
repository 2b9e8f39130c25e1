"""Running a sweep: locally in worker processes, or on an existing Dask cluster.

The driver (`run_sweep`) loads and validates the sweep, takes the sweep folder, skips the
runs already stored there, hands every other run to the workers (`abm.sweep.executor`, as a
study does) and records completions. Each worker simulates its run and stores it itself, so
a dead driver or worker never costs a finished run; the driver only counts. The combined
tables and the report are then built by `analysis.sweep` (`wsf sweep` does it).
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

from tqdm import tqdm

from abm.learning_log import learning_key
from abm.sweep import store
from abm.sweep.executor import (
    CONNECT_TIMEOUT_S,
    Executor,
    RunOutcome,
    RunTask,
    SweepRunError,
    dask_client,
    exception_of,
    worker_count,
)
from abm.sweep.spec import MAX_RUNS, WARN_RUNS, RunSpec, Sweep, load_sweep

__all__ = ["run_sweep"]


def run_sweep(
    path: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    max_runs: int = MAX_RUNS,
    warn_runs: int = WARN_RUNS,
    settings: dict[str, Any] | None = None,
) -> Path:
    """Run (or resume) the sweep of a sweep file and return its folder.

    `workers`: local worker processes (default `os.cpu_count()`), ignored with `scheduler`.
    `scheduler`: address of a running Dask scheduler (`tcp://host:8786`); every Dask worker
    needs this package installed (same version) and the sweep folder at the same path on a
    shared file system. Start workers single-threaded (`--nthreads 1`, one per core). For the
    sweep, `SweepWorkerPlugin` pauses the workers' diagnostic callbacks and gives a nanny's
    workers a local process's malloc thresholds (with Dask's defaults, a run cost ~+34 %
    CPU against a local process, ~+6 % with the plugin on workers started as README says;
    docs/performance.md), and restores both after it.
    `out`: the sweep folder (default `sweeps-out/<sweep name>` under the current directory);
    a folder holding the same sweep is resumed, one holding another sweep is refused.
    `progress`: show a tqdm bar (runs done / total, ETA) on stderr; runs found finished
    count as done.
    `connect_timeout`: seconds to try reaching `scheduler` before giving up (SweepError).
    `max_runs`: refuse (ScenarioError, before anything is built) a sweep of more runs.
    `warn_runs`: above this many runs to do, warn on stderr, and again with the estimated
    run time once the first runs have finished.
    `settings`: dotted path -> value set on every run (`wsf sweep --set`), merged over the
    file's `overrides` (a different sweep: its folder is not the plain file's).

    Local workers are started by multiprocessing (forkserver or spawn), which imports the
    caller's main module in each worker: a script calling this needs the usual
    `if __name__ == "__main__":` guard.

    Raises ScenarioError for a bad sweep file, SweepError (a ScenarioError) for an unusable
    folder or unreachable scheduler, SweepRunError when runs raised (all others are
    stored). Stops with KeyboardInterrupt on Ctrl-C; finished runs are kept.
    """
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    sweep = load_sweep(path, max_runs=max_runs, settings=settings)
    sweep_dir = Path(out) if out is not None else store.default_out(sweep)
    sweep_dir = sweep_dir.expanduser().resolve()
    failed: dict[str, str] = {}
    # Reach the scheduler before touching the sweep folder: an unreachable one leaves nothing.
    with (dask_client(scheduler, connect_timeout) as client,
          store.open_folder(sweep, sweep_dir)):
        done = store.finished_run_ids(sweep_dir)
        todo = [run for run in sweep.runs if run.run_id not in done]
        n_workers = worker_count(client, workers)
        if client is None:  # no idle local workers
            n_workers = min(n_workers, len(todo) or 1)
        bar = tqdm(
            total=len(sweep.runs),
            initial=len(sweep.runs) - len(todo),
            desc=f"sweep {sweep.name}",
            unit="run",
            disable=not progress,
            dynamic_ncols=True,
        )
        try:
            if todo:
                tasks = [_task(sweep_dir, run) for run in _by_learning(todo)]
                recorder = _Recorder(sweep_dir, bar, failed,
                                     _Estimate(len(todo), n_workers, warn_runs))
                with Executor(n_workers, client, f"wsf-{sweep.name}",
                              notice=_warn) as executor:
                    _submit_and_drain(tasks, executor, recorder)
        finally:
            bar.close()
        store.clean_staging(sweep_dir)
    if failed:
        raise _failure(sweep, sweep_dir, failed)
    return sweep_dir


class _Estimate:
    """Warn about a long sweep: at the start, and with the measured pace after the first runs.

    The pace is the median wall time of the first 2 x workers runs (as measured by the
    workers, so the pool's start-up is left out) divided by the number of workers.
    """

    def __init__(self, todo: int, workers: int, warn_runs: int) -> None:
        self.todo, self.workers = todo, workers
        self.active = todo > warn_runs
        self.sample = min(2 * workers, todo)
        self.seconds: list[float] = []
        self.finished = 0
        if self.active:
            _warn(f"this sweep has {todo:,} runs to do (more than {warn_runs:,}) on {workers} "
                  f"worker{'s' if workers > 1 else ''}; an estimate of the time it takes "
                  f"follows after the first {self.sample} runs. Ctrl-C stops it; finished "
                  "runs are kept and the same command resumes.")

    def done(self, seconds: float | None) -> None:
        """One more run finished (`seconds`: its wall time; None if it failed)."""
        self.finished += 1
        if seconds is not None:
            self.seconds.append(seconds)
        if self.active and len(self.seconds) >= self.sample:
            per_run = sorted(self.seconds)[len(self.seconds) // 2]
            left = per_run * (self.todo - self.finished) / self.workers
            _warn(f"the first runs took {per_run:.1f} s each (median); the remaining "
                  f"{self.todo - self.finished:,} will take about {_duration(left)} on "
                  f"{self.workers} worker{'s' if self.workers > 1 else ''}.")
            self.active = False


def _warn(text: str) -> None:
    tqdm.write(f"wsf sweep: warning: {text}", file=sys.stderr)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _by_learning(runs: list[RunSpec]) -> list[RunSpec]:
    """`runs` with those of one `learning_key` next to each other, keys in order of first
    appearance: a worker then runs a key's runs in a row and learns it once (`execute_run`),
    whatever the sweep's size and `abm.learning_log.LOG_CACHE`."""
    first: dict[str, int] = {}
    keys = [first.setdefault(learning_key(run.scenario), len(first)) for run in runs]
    return [run for _, _, run in sorted(zip(keys, range(len(runs)), runs, strict=True))]


def _task(sweep_dir: Path, run: RunSpec) -> RunTask:
    return RunTask(sweep_dir=str(sweep_dir), record=run.record(), scenario=run.scenario)


class _Recorder:
    """Driver-side bookkeeping of completions: progress bar and error files."""

    def __init__(self, sweep_dir: Path, bar: tqdm, failed: dict[str, str],
                 estimate: _Estimate) -> None:
        self.sweep_dir = sweep_dir
        self.bar = bar
        self.failed = failed
        self.estimate = estimate

    def finished(self, outcome: RunOutcome) -> None:
        store.clear_error(self.sweep_dir, outcome.run_id)
        self.bar.update(1)
        self.estimate.done(outcome.seconds if outcome.stored else None)

    def raised(self, task: RunTask, error: BaseException) -> None:
        rid = task.record["run_id"]
        self.failed[rid] = f"{type(error).__name__}: {error}"
        text = "".join(traceback.format_exception(error))
        store.write_error(
            self.sweep_dir,
            rid,
            f"run {rid} params {task.record['params']} seed {task.record['seed']}\n\n{text}",
        )
        self.bar.set_postfix(failed=len(self.failed))
        self.bar.update(1)
        self.estimate.done(None)


def _submit_and_drain(tasks: list[RunTask], executor: Executor, recorder: _Recorder) -> None:
    """Hand every run to the workers; record each as it completes, in the order they do."""
    futures = {executor.submit(task): task for task in tasks}
    for future in executor.as_completed(futures):
        error = exception_of(future)
        if error is None:
            recorder.finished(future.result())
        else:
            recorder.raised(futures[future], error)


def _failure(sweep: Sweep, sweep_dir: Path, failed: dict[str, str]) -> SweepRunError:
    first_id, first_error = next(iter(failed.items()))
    first = next(run for run in sweep.runs if run.run_id == first_id)
    return SweepRunError(
        f"{len(failed)} of {len(sweep.runs)} runs of sweep '{sweep.name}' failed (first: run "
        f"{first_id}, params {first.params}, seed {first.seed}: {first_error}). Tracebacks are "
        f"in {sweep_dir / store.ERRORS_DIR}; the other runs are stored. Run the "
        "same command again to retry the failed runs only.",
        failed,
    )
