"""Where runs execute: the task a worker runs, the local process pool and the Dask path.

Sweeps (`abm.sweep.execute`) and studies (`abm.sweep.optimize`) hand their runs to an
`Executor`: each run is a `RunTask` that a worker simulates and stores itself
(`execute_run`: `store.publish_run`, atomic), so a dead driver or worker never costs a
finished run; the driver only records completions. The workers are local processes
(forkserver where available, else spawn) or the workers of an existing Dask cluster
(`dask_client`, through the bounded handshake of `abm.sweep.scheduler`), on which
`SweepWorkerPlugin` is registered for as long as the executor is open.

Local workers never outlive their driver: when the driver stops on Ctrl-C, SIGTERM (turned
into KeyboardInterrupt by the CLI) or an error, it terminates them (`stop_workers`); when it
is killed outright (SIGKILL), each worker notices through a watch on the driver's process (a
pidfd on Linux) and exits at once. The forkserver and multiprocessing's resource tracker exit
when their last user is gone.

A run's tables do not depend on where it ran or on how many workers there are: each run is
simulated from its own resolved scenario and seed; a worker that replays a learning log
(`abm.learning_log`) replays one it learned itself, and replaying gives the tables of
learning again (tested).
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
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    CancelledError,
    ProcessPoolExecutor,
    as_completed,
    wait,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from abm import learning_log
from abm.scenario import Scenario
from abm.sweep import store
from abm.sweep.spec import run_id

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DASK_RETRIES",
    "PRELOAD",
    "Executor",
    "RunOutcome",
    "RunTask",
    "SweepRunError",
    "SweepWorkerPlugin",
    "dask_client",
    "exception_of",
    "execute_run",
    "limit_threads",
    "stop_workers",
    "worker_count",
    "worker_plugin",
]

# Modules the forkserver imports once for all local workers: torch, the model, and what a first
# run would otherwise import lazily in every worker (scikit-learn's datasets and SciPy, ~2 s).
PRELOAD = ("torch", "sklearn.datasets", "abm.fl", "abm.model", "abm.run", "abm.sweep.executor")

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
    """Some runs of a sweep or study raised. The others are stored; re-running retries the
    failed ones."""

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




def execute_run(task: RunTask) -> RunOutcome:
    """Simulate one run and store it under the sweep (or study) folder. Runs in a worker
    process.

    Skips the simulation when the run is already stored (a Dask retry of a task whose first
    attempt finished, or a second driver). Raises whatever the simulation raises. A run whose
    scenario learns as one this process simulated before (same `learning_key`: a sweep over
    market or reward parameters) replays that run's learning rounds while its clients choose
    the same participants (`abm.learning_log`; the same tables as learning them again).
    """
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
    key = learning_log.learning_key(task.scenario)
    try:
        result = simulate(task.scenario, check=False, progress=False,
                          replay=learning_log.recall(key))
        learning_log.remember(key, result.learning)
        stored = store.publish_run(result, Path(task.sweep_dir), staging, task.record)
    finally:
        store.discard(staging)
    return RunOutcome(task.record["run_id"], stored, time.perf_counter() - start, worker)


# -- the local pool --------------------------------------------------------------------------


def _local_pool(workers: int) -> ProcessPoolExecutor:
    """`workers` worker processes on this machine (forkserver where available, else spawn).

    Never fork: the driver may hold torch/OpenMP threads, which a forked child inherits in a
    broken state. The forkserver imports the simulation stack once (`PRELOAD`), so each
    worker starts in milliseconds instead of re-importing torch.
    """
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(PRELOAD)
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=context,
        initializer=_init_local_worker, initargs=(os.getpid(),),
    )


def stop_workers(pool: ProcessPoolExecutor) -> None:
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


# -- the Dask path -----------------------------------------------------------------------------


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
    """A Dask worker plugin registered for the duration of a sweep or study (`Executor`).

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


def worker_plugin() -> Any:
    """A `SweepWorkerPlugin` that Dask takes as a worker plugin (`distributed.WorkerPlugin`,
    imported only here: local sweeps need no Dask)."""
    from dask.distributed import WorkerPlugin

    return type("SweepPlugin", (SweepWorkerPlugin, WorkerPlugin), {})()


@contextlib.contextmanager
def dask_client(scheduler: str | None, timeout: float) -> Iterator[Any]:
    """A Dask client of the scheduler at `scheduler` for the block (None when `scheduler` is
    None: local workers), closed after it. SweepError within ~`timeout` s if the scheduler is
    unreachable or the peer is not a Dask scheduler (`abm.sweep.scheduler.connect`)."""
    if scheduler is None:
        yield None
        return
    from abm.sweep.scheduler import connect

    client = connect(scheduler, timeout)
    try:
        yield client
    finally:
        client.close()


def worker_count(client: Any, workers: int | None) -> int:
    """The workers runs can go to: the cluster's (at least 1) with a Dask client, else
    `workers` local processes (default: this machine's CPU count)."""
    if client is not None:
        return len(client.scheduler_info().get("workers", {})) or 1
    return workers or os.cpu_count() or 1


def exception_of(future: Any) -> BaseException | None:
    """The future's exception, None on success; a cancelled future counts as failed
    (concurrent.futures and Dask futures alike)."""
    exception: Callable[[], BaseException | None] = future.exception
    try:
        return exception()
    except (CancelledError, asyncio.CancelledError) as cancelled:
        return cancelled


class Executor:
    """Runs `execute_run` tasks on local worker processes, or on a Dask client's workers.

    Local: a pool of `workers` processes (`_local_pool`). Dask: `SweepWorkerPlugin` is
    registered on the workers from the start and unregistered when the executor closes or
    stops; each task is submitted with key `<label>-<run id>-<token>` (a per-driver token, so
    that a restarted driver never picks up the stale state of a dead driver's task with the
    same run) and retried `DASK_RETRIES` times if it raised (a worker that died mid-task is
    rescheduled by the scheduler itself). `notice`, with Dask, is told once when workers run
    Dask's event-loop profiler, which the plugin cannot pause (`PROFILER_NOTICE`).

    Use it as a context manager: leaving the block normally waits for the local workers
    (`close`); leaving it on an exception (Ctrl-C, SIGTERM, an error) drops the queued runs
    and stops the runs in flight at once (`stop`; their staging folders are removed on the
    next start), so that no worker outlives the driver.
    """

    def __init__(self, workers: int, client: Any, label: str, *,
                 notice: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.label = label
        self.token = uuid.uuid4().hex[:8]
        self.pool: ProcessPoolExecutor | None = None
        if client is None:
            self.pool = _local_pool(workers)
            return
        client.register_plugin(worker_plugin(), name=SweepWorkerPlugin.name)
        if notice is not None:
            with contextlib.suppress(Exception):  # a notice only: never fail a run over it
                profiled = sum(client.run(_event_loop_profiled).values())
                if profiled:
                    notice(PROFILER_NOTICE.format(n=profiled))

    def submit(self, task: RunTask) -> Any:
        """Hand `task` to a worker; its future (concurrent.futures or Dask)."""
        if self.client is not None:
            return self.client.submit(
                execute_run, task, key=f"{self.label}-{task.record['run_id']}-{self.token}",
                pure=False, retries=DASK_RETRIES)
        assert self.pool is not None
        return self.pool.submit(execute_run, task)

    def as_completed(self, futures: Iterable[Any]) -> Iterator[Any]:
        """`futures` in the order they complete."""
        if self.client is not None:
            from dask.distributed import as_completed as dask_as_completed

            return iter(dask_as_completed(futures))
        return as_completed(futures)

    def first_completed(self, futures: Sequence[Any]) -> set[Any]:
        """Wait until at least one of `futures` is done; those that are."""
        if self.client is not None:
            from dask.distributed import wait as dask_wait

            return set(dask_wait(list(futures), return_when="FIRST_COMPLETED").done)
        done, _ = wait(futures, return_when=FIRST_COMPLETED)
        return set(done)

    def close(self) -> None:
        """Wait for the local workers to exit; unregister the Dask plugin."""
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self._unplug()

    def stop(self) -> None:
        """Stop the local workers now (`stop_workers`); unregister the Dask plugin."""
        if self.pool is not None:
            stop_workers(self.pool)
        self._unplug()

    def _unplug(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):  # a cluster gone away: nothing to restore
                self.client.unregister_worker_plugin(SweepWorkerPlugin.name)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.close()
        else:
            self.stop()
