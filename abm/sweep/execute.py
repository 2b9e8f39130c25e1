"""Running a sweep: locally in worker processes, or on an existing Dask cluster.

The driver (`run_sweep`) loads and validates the sweep, takes the sweep folder, skips the
runs already stored there, hands every other run to the workers and records completions.
Each worker simulates its run and stores it itself (`store.publish_run`, atomic), so a dead
driver or worker never costs a finished run; the driver only counts. The combined tables and
the report are then built by `analysis.sweep` (`wsf sweep` does it).

Local workers never outlive their driver: when the driver stops on Ctrl-C, SIGTERM (turned
into KeyboardInterrupt by the CLI) or an error, it terminates them; when it is killed
outright (SIGKILL), each worker notices through a watch on the driver's process (a pidfd on
Linux) and exits at once. The forkserver and multiprocessing's resource tracker exit when
their last user is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from abm.scenario import Scenario
from abm.sweep import store
from abm.sweep.spec import MAX_RUNS, WARN_RUNS, RunSpec, Sweep, load_sweep, run_id

if TYPE_CHECKING:
    from abm.agents.replay import LearningLog

__all__ = ["RunOutcome", "RunTask", "SweepRunError", "execute_run", "run_sweep"]

# Modules the forkserver imports once for all local workers: torch, the model, and what a first
# run would otherwise import lazily in every worker (scikit-learn's datasets and SciPy, ~2 s).
PRELOAD = ("torch", "sklearn.datasets", "abm.fl", "abm.model", "abm.run", "abm.sweep.execute")

# Dask resubmits a task that raised up to this many times (a flaky node, an out-of-memory
# kill); a worker that died mid-task is handled by the scheduler itself.
DASK_RETRIES = 2

#: Seconds to try reaching a Dask scheduler before giving up (`wsf sweep --connect-timeout`).
CONNECT_TIMEOUT_S = 5.0
#: Seconds a terminated local worker gets to exit before it is killed.
STOP_TIMEOUT_S = 5.0
#: Exit status of a worker whose driver died.
ORPHAN_EXIT = 3


class SweepRunError(RuntimeError):
    """Some runs of a sweep raised. The others are stored; re-running retries the failed ones."""

    def __init__(self, message: str, failed: dict[str, str]) -> None:
        super().__init__(message)
        self.failed = failed  # run id -> one-line error


@dataclass(frozen=True)
class RunTask:
    """What a worker needs for one run (pickled to the worker process or Dask worker)."""

    sweep_dir: str  # absolute; on a cluster, the same path must exist on every worker
    record: dict[str, Any]  # RunSpec.record(): run_id, params, seed
    scenario: Scenario


@dataclass(frozen=True)
class RunOutcome:
    """What a worker reports back: the run id, whether it stored it, where and how long."""

    run_id: str
    stored: bool  # False: an identical run was already stored (resumed or duplicate)
    seconds: float  # wall time of simulate + write, seconds
    worker: str  # host:pid


def limit_threads() -> None:
    """One compute thread per worker process: N workers on N cores, no oversubscription.

    Torch's intra-op pool and the BLAS pools would otherwise each start one thread per core
    in every worker.
    """
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


# Read by OpenMP and BLAS libraries when they load; see `_init_local_worker`.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _init_local_worker(driver: int) -> None:
    """Initializer of a local worker process: exit with the driver; one compute thread.

    `driver` is the driver's pid (the worker's parent is the forkserver, not the driver).
    `limit_threads` caps the pools of libraries already loaded (the forkserver preloads
    torch, NumPy and SciPy); the environment caps libraries a run loads later. The process is
    ours, so changing its environment has no effect outside it.
    """
    watch_driver(driver)
    for variable in THREAD_VARIABLES:
        os.environ[variable] = "1"
    limit_threads()


def watch_driver(pid: int) -> threading.Thread:
    """Exit this process (status ORPHAN_EXIT) as soon as process `pid` is gone.

    A daemon thread waits on a pidfd of `pid` (Linux >= 5.3: readable when it exits, immune
    to pid reuse) or, where there is none, polls it once a second. The run in progress is
    abandoned; its staging folder is removed by the next driver. `os._exit`, not `sys.exit`:
    nothing of a half-done run may be flushed or published after the driver is gone.
    """
    fd = None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(ORPHAN_EXIT)
    except (AttributeError, OSError):  # no pidfd (not Linux, or an old kernel)
        fd = None

    def wait() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while _pid_alive(pid):
                time.sleep(1.0)
        os._exit(ORPHAN_EXIT)

    thread = threading.Thread(target=wait, name=f"wsf-watch-driver-{pid}", daemon=True)
    thread.start()
    return thread


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: Learning logs of the runs this worker process simulated, by `learning_key`, the most
#: recently used last: a later run that learns the same replays the latest one.
_LOGS: OrderedDict[str, LearningLog] = OrderedDict()
#: Learning keys kept per worker process (a log is ~1 kB per round).
LOG_CACHE = 32


def _learned(key: str, log: LearningLog) -> None:
    _LOGS[key] = log
    _LOGS.move_to_end(key)
    while len(_LOGS) > LOG_CACHE:
        _LOGS.popitem(last=False)


def execute_run(task: RunTask) -> RunOutcome:
    """Simulate one run and store it under the sweep folder. Runs in a worker process.

    Skips the simulation when the run is already stored (a Dask retry of a task whose first
    attempt finished, or a second driver). Raises whatever the simulation raises. A run whose
    scenario learns as one this process simulated before (same `learning_key`: a sweep over
    market or reward parameters) replays that run's learning rounds while its clients choose
    the same participants (`abm.agents.replay`; the same tables as learning them again).
    """
    from abm.agents.replay import learning_key
    from abm.run import simulate

    start = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    run_dir = store.run_folder(Path(task.sweep_dir), task.record["run_id"])
    if (run_dir / store.PARAMS_FILE).is_file():
        return RunOutcome(task.record["run_id"], False, 0.0, worker)
    if run_id(task.scenario) != task.record["run_id"]:
        # The worker resolves the scenario differently from the driver: different code or
        # package versions on this node. Storing it under the driver's id would be a lie.
        raise RuntimeError(
            f"run {task.record['run_id']}: the scenario resolves to id {run_id(task.scenario)} "
            f"on worker {worker}; driver and workers must run the same version of the code"
        )
    limit_threads()
    staging = store.begin_run(Path(task.sweep_dir), task.record["run_id"])
    key = learning_key(task.scenario)
    try:
        result = simulate(task.scenario, check=False, progress=False, replay=_LOGS.get(key))
        _learned(key, result.learning)
        stored = store.publish_run(result, Path(task.sweep_dir), staging, task.record)
    finally:
        store.discard(staging)
    return RunOutcome(task.record["run_id"], stored, time.perf_counter() - start, worker)


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
    # Reach the scheduler before touching the sweep folder: an unreachable one leaves nothing.
    client = _connect(scheduler, connect_timeout) if scheduler is not None else None
    try:
        with store.open_folder(sweep, sweep_dir):
            done = store.finished_run_ids(sweep_dir)
            todo = [run for run in sweep.runs if run.run_id not in done]
            failed: dict[str, str] = {}
            n_workers = (
                len(client.scheduler_info().get("workers", {})) or 1
                if client is not None else min(workers or os.cpu_count() or 1, len(todo) or 1)
            )
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
                    if client is not None:
                        _run_dask(tasks, client, recorder, sweep.name)
                    else:
                        _run_local(tasks, n_workers, recorder)
            finally:
                bar.close()
            store.clean_staging(sweep_dir)
    finally:
        if client is not None:
            client.close()
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


def _connect(address: str, timeout: float) -> Any:
    """A Dask client of the scheduler at `address`; SweepError within ~`timeout` s if none,
    or if the peer is not a Dask scheduler (`abm.sweep.scheduler.connect`)."""
    from abm.sweep.scheduler import connect

    return connect(address, timeout)


def _by_learning(runs: list[RunSpec]) -> list[RunSpec]:
    """`runs` with those of one `learning_key` next to each other, keys in order of first
    appearance: a worker then runs a key's runs in a row and learns it once (`execute_run`),
    whatever the sweep's size and `LOG_CACHE`."""
    from abm.agents.replay import learning_key

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


def _run_local(tasks: list[RunTask], workers: int, recorder: _Recorder) -> None:
    """Worker processes on this machine (forkserver where available, else spawn).

    Never fork: the driver may hold torch/OpenMP threads, which a forked child inherits in a
    broken state. The forkserver imports the simulation stack once, so each worker starts
    in milliseconds instead of re-importing torch.
    """
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(PRELOAD)
    pool = ProcessPoolExecutor(
        max_workers=min(workers, len(tasks)), mp_context=context,
        initializer=_init_local_worker, initargs=(os.getpid(),),
    )
    futures: dict[Future[RunOutcome], RunTask] = {}
    try:
        futures = {pool.submit(execute_run, task): task for task in tasks}
        _drain(as_completed(futures), futures, recorder)
    except BaseException:
        # Ctrl-C, SIGTERM or a broken pool: drop queued runs and stop the runs in flight
        # (their staging folders are removed on the next start), so that no worker outlives
        # the driver.
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Stop every process of a local pool within `STOP_TIMEOUT_S` (+1 s): cancel the queued
    runs, freeze the forkserver, terminate the workers and whatever the forkserver forked,
    kill those that do not exit, then kill the forkserver.

    The forkserver goes too: stopped while it still imports the simulation stack (seconds
    under load), it would otherwise finish importing after the driver is gone and only then
    notice, forking workers for the driver's pending requests first. It is frozen (SIGSTOP)
    before its children are listed, so that none is forked unseen; processes are watched
    through /proc, not `Process.join`, because a forkserver's child is joined through the
    forkserver. SIGINT and SIGTERM are held off meanwhile (a second Ctrl-C or SIGTERM would
    abort the cleanup half-way) and delivered again after it. ProcessPoolExecutor offers no way to
    stop running workers before Python 3.14 (`terminate_workers`), so its `_processes` map
    is used.
    """
    held = _hold_signals()
    try:
        pids = {p.pid for p in (getattr(pool, "_processes", None) or {}).values()
                if p.pid is not None}
        servers = _forkservers(pool)
        for server in servers:
            _signal(server, signal.SIGSTOP)
        for server in servers:
            pids |= _children(server)
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while (alive := {pid for pid in pids if _running(pid)}) and time.monotonic() < deadline:
            time.sleep(0.02)
        for pid in alive:
            _signal(pid, signal.SIGKILL)
        for server in servers:
            _signal(server, signal.SIGKILL)
        if servers:
            _forget_forkserver(servers)
        deadline = time.monotonic() + 1.0
        while any(_running(pid) for pid in alive) and time.monotonic() < deadline:
            time.sleep(0.02)
        pool.shutdown(wait=False, cancel_futures=True)
    finally:
        _release_signals(held)


#: What the command line of a forkserver started by multiprocessing holds.
_FORKSERVER_MAIN = b"from multiprocessing.forkserver import main"


def _forkservers(pool: ProcessPoolExecutor) -> set[int]:
    """The forkserver this process started, if `pool` uses one: the pid multiprocessing
    recorded, and any child of this process running a forkserver's main (one started just
    as the signal came, before multiprocessing could record its pid)."""
    context = getattr(pool, "_mp_context", None)
    if context is None or context.get_start_method() != "forkserver":
        return set()
    from multiprocessing import forkserver

    recorded = getattr(getattr(forkserver, "_forkserver", None), "_forkserver_pid", None)
    servers = {recorded} if recorded is not None else set()
    for child in _children(os.getpid()):
        with contextlib.suppress(OSError):
            if _FORKSERVER_MAIN in Path(f"/proc/{child}/cmdline").read_bytes():
                servers.add(child)
    return servers


def _forget_forkserver(servers: set[int]) -> None:
    """Reap the killed forkservers and clear multiprocessing's record of one, so that a later
    pool in this process starts a new one (a library caller may run another sweep)."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    recorded = getattr(server, "_forkserver_pid", None)
    lock = getattr(server, "_lock", None)
    if recorded in servers and lock is not None and lock.acquire(timeout=1.0):
        try:
            with contextlib.suppress(OSError, AttributeError, TypeError):
                server._stop_unlocked()  # waits for it, closes its fds, removes its socket
        finally:
            lock.release()
    for pid in servers - {recorded}:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after "pid (comm)", None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()


def _running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (a zombie has stopped running)."""
    if not Path("/proc/self/stat").exists():  # no /proc: ask the kernel
        return _pid_alive(pid)
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _children(parent: int) -> set[int]:
    """Pids of the processes whose parent is `parent` (from /proc; empty without it)."""
    children: set[int] = set()
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (fields := _proc_stat(int(entry))) is not None \
                    and int(fields[1]) == parent:
                children.add(int(entry))
    return children


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class _Held:
    """Handlers replaced while the workers are stopped, and the signals that came meanwhile."""

    handlers: dict[int, Any]
    received: list[int]


def _hold_signals() -> _Held | None:
    """Hold SIGINT and SIGTERM off: their handlers are replaced by one that notes them (a
    signal mask would not do: the kernel hands a blocked signal to another thread, and
    Python runs the handler in the main thread all the same). None outside the main thread,
    where handlers cannot be changed."""
    if threading.current_thread() is not threading.main_thread():
        return None
    held = _Held({}, [])
    for sig in _STOP_SIGNALS:
        held.handlers[sig] = signal.signal(sig, lambda signum, frame: held.received.append(signum))
    return held


def _release_signals(held: _Held | None) -> None:
    """Restore the handlers; deliver again the first signal that came while they were held."""
    if held is None:
        return
    for sig, handler in held.handlers.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    if held.received:
        signal.raise_signal(held.received[0])


#: Dask worker callbacks paused during a sweep: diagnostics only (the statistical profiler,
#: the event-loop latency tick, the system monitor and its counters). The heartbeat, keep-alive,
#: missing-data search and memory monitor (spilling, pausing, memory limits) keep running.
DASK_PAUSED_CALLBACKS = ("profile", "profile-cycle", "tick", "ticks", "monitor",
                         "shift_counters")


#: Told once per sweep when workers run Dask's event-loop profiler (docs/performance.md).
PROFILER_NOTICE = (
    "{n} Dask worker(s) run Dask's event-loop profiler, a thread the sweep cannot pause, which "
    "takes the GIL from the runs every 10 ms (about 1 % of a run's CPU in itself, measured); "
    "for a cluster that runs sweeps, start the workers with "
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False")


def _event_loop_profiled() -> bool:
    """On a worker: whether Dask's profiler thread watches its event loop. It is started with
    the worker when `distributed.worker.profile.enabled` is true (`distributed.core.Server`)
    and stops only with the loop, so `SweepWorkerPlugin` cannot pause it."""
    import threading

    return any(t.name == "Profile" for t in threading.enumerate())


#: mallopt(3) parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: glibc's own mmap threshold when none is set (DEFAULT_MMAP_THRESHOLD_MIN, 128 KiB).
GLIBC_MMAP_THRESHOLD = 128 << 10
#: The thresholds a sweep's runs get on a Dask worker: where glibc's dynamic thresholds end up
#: in a local process (the mmap threshold rises to the largest block freed, at most 32 MiB on
#: 64-bit, DEFAULT_MMAP_THRESHOLD_MAX; the trim threshold follows at twice that).
SWEEP_MMAP_THRESHOLD = 32 << 20
SWEEP_TRIM_THRESHOLD = 64 << 20


def relax_malloc_trim() -> Callable[[], None] | None:
    """Give this process a local process's malloc thresholds; return what restores them.

    Dask's nanny starts every worker with `MALLOC_TRIM_THRESHOLD_=65536`
    (`distributed.nanny.pre-spawn-environ`, so that freed memory goes back to the OS at once).
    Setting it also freezes glibc's thresholds: every block of 128 KiB or more (tensors,
    arrays) is then mmap-ed and unmapped each time, and its pages are faulted in afresh:
    measured, a 300-step baseline run took ~60,000 minor page faults and ~0.2 s of system
    time on a nanny's worker against ~2,000 and ~0.01 s in a local process; the same run in a
    local process with the same setting took the same 60,000 (docs/performance.md, "Dask
    sweeps"). Only a process started with that variable is changed (its thresholds are static
    already, so restoring them restores exactly); on a process without it, or without glibc,
    nothing is done and None is returned. The restore also returns the free memory to the OS
    (`malloc_trim`), as Dask's setting intends; during a sweep a worker keeps up to
    `SWEEP_TRIM_THRESHOLD` bytes of freed heap.
    """
    value = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    if value is None or not sys.platform.startswith("linux"):
        return None
    import ctypes
    import platform

    try:
        trim = int(value)
        mmap = int(os.environ.get("MALLOC_MMAP_THRESHOLD_", GLIBC_MMAP_THRESHOLD))
        if platform.libc_ver()[0] != "glibc":
            return None
        libc = ctypes.CDLL(None)
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (ValueError, OSError, AttributeError):
        return None
    if not (mallopt(M_MMAP_THRESHOLD, SWEEP_MMAP_THRESHOLD)
            and mallopt(M_TRIM_THRESHOLD, SWEEP_TRIM_THRESHOLD)):
        mallopt(M_TRIM_THRESHOLD, trim)
        mallopt(M_MMAP_THRESHOLD, mmap)
        return None

    def restore() -> None:
        mallopt(M_TRIM_THRESHOLD, trim)
        mallopt(M_MMAP_THRESHOLD, mmap)
        malloc_trim(0)

    return restore


class SweepWorkerPlugin:
    """A Dask worker plugin registered for the duration of a sweep (`_run_dask`).

    On each worker (present or joining), for the sweep:
    - the diagnostic periodic callbacks (`DASK_PAUSED_CALLBACKS`) are paused. They run on the
      worker's event loop, under the GIL, every 10 ms (the profiler walks every running
      task's stack), 20 ms (the latency tick) or 500 ms (the system monitor): with Dask's
      defaults the event loop's thread spent ~0.18 s of CPU per 300-step run, ~0.02 s with
      them paused (docs/performance.md);
    - a nanny's worker gets a local process's malloc thresholds back (`relax_malloc_trim`):
      the nanny's `MALLOC_TRIM_THRESHOLD_` made every run fault its large blocks in afresh,
      ~10 % of a run's CPU.
    `teardown` (when the sweep unregisters the plugin) restores both, so a shared cluster
    gets its diagnostics and its memory policy back after the sweep. The event-loop profiler
    thread of a worker started with Dask's profiler on cannot be paused
    (`_event_loop_profiled`).
    """

    name = "wsf-sweep"

    def setup(self, worker: Any) -> None:
        self._paused = []
        for key in DASK_PAUSED_CALLBACKS:
            callback = worker.periodic_callbacks.get(key)
            if callback is not None and callback.is_running():
                callback.stop()
                self._paused.append(callback)
        self._restore_malloc = relax_malloc_trim()

    def teardown(self, worker: Any) -> None:
        for callback in getattr(self, "_paused", []):
            callback.start()
        self._paused = []
        restore = getattr(self, "_restore_malloc", None)
        if restore is not None:
            restore()
        self._restore_malloc = None


def _run_dask(tasks: list[RunTask], client: Any, recorder: _Recorder, name: str) -> None:
    """Submit every run to an existing Dask cluster and collect them as they complete.

    A worker that dies mid-run has its task rescheduled on another worker by the scheduler;
    a run that raised is retried DASK_RETRIES times. Keys carry a per-driver token so that a
    restarted driver never picks up the stale state of a dead driver's task with the same run.
    `SweepWorkerPlugin` is registered on the workers for the sweep and unregistered after it.
    """
    from dask.distributed import WorkerPlugin
    from dask.distributed import as_completed as dask_as_completed

    plugin = type("SweepPlugin", (SweepWorkerPlugin, WorkerPlugin), {})()
    client.register_plugin(plugin, name=SweepWorkerPlugin.name)
    with contextlib.suppress(Exception):  # a notice only: never fail a sweep over it
        profiled = sum(client.run(_event_loop_profiled).values())
        if profiled:
            _warn(PROFILER_NOTICE.format(n=profiled))
    try:
        _submit_and_drain(tasks, client, recorder, name, dask_as_completed)
    finally:
        with contextlib.suppress(Exception):  # a cluster gone away: nothing left to restore
            client.unregister_worker_plugin(SweepWorkerPlugin.name)


def _submit_and_drain(tasks: list[RunTask], client: Any, recorder: _Recorder, name: str,
                      dask_as_completed: Any) -> None:
    token = uuid.uuid4().hex[:8]
    futures = {
        client.submit(
            execute_run,
            task,
            key=f"wsf-{name}-{task.record['run_id']}-{token}",
            pure=False,
            retries=DASK_RETRIES,
        ): task
        for task in tasks
    }
    _drain(dask_as_completed(futures), futures, recorder)


def _drain(completed: Iterable[Any], futures: dict[Any, RunTask], recorder: _Recorder) -> None:
    """Record each future as it completes (concurrent.futures and Dask futures alike)."""
    for future in completed:
        task = futures[future]
        error = _exception(future)
        if error is None:
            recorder.finished(future.result())
        else:
            recorder.raised(task, error)


def _exception(future: Any) -> BaseException | None:
    """The future's exception, None on success; a cancelled future counts as failed."""
    exception: Callable[[], BaseException | None] = future.exception
    try:
        return exception()
    except (CancelledError, asyncio.CancelledError) as cancelled:
        return cancelled


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
