"""Sweeps on a real Dask cluster: a scheduler and two workers on 127.0.0.1, one killed mid-sweep.

The processes are the `dask` command-line tools of this interpreter's environment, as a user
would start them on cluster nodes; every one is stopped by its PID when the test ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import distributed  # the sweep extra, installed by `make test`: fail rather than skip
import pandas as pd
import pytest
import yaml

from abm.run import simulate
from abm.sweep import finished_run_ids, load_sweep, run_sweep
from abm.sweep.store import PARAMS_FILE, STAGING_DIR
from analysis.sweep import combine
from tests.conftest import small_scenario

pytestmark = [pytest.mark.dask, pytest.mark.slow, pytest.mark.timeout(180)]

DASK = Path(sys.executable).parent / "dask"
TINY = {
    "steps": 12,
    "round_every": 6,
    "clients": [{"count": 3, "behaviour": "honest"}],
    "investors": [{"strategy": "fundamental", "count": 2, "cash": 500}],
    "liquidity_providers": [{"count": 1, "cash": 2000}],
}


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _scheduler_address(scheduler: subprocess.Popen[bytes], scheduler_file: Path,
                       log: Path, timeout: float = 60.0) -> str:
    """The address the scheduler bound, read from its scheduler file once it is listening.

    The scheduler picks its own free port (`--port 0`) and writes the file only after it
    listens, so no other process can take the port between choosing and binding it (a port
    chosen here and passed in was taken by another process once under load: the client then
    reached that process, `CommClosedError`). If the scheduler exits first, its log says why.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            raise RuntimeError(f"dask scheduler exited ({scheduler.returncode}):\n"
                               f"{log.read_text(errors='replace')[-2000:]}")
        try:
            return json.loads(scheduler_file.read_text())["address"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            time.sleep(0.05)  # not written yet, or written halfway
    raise RuntimeError(f"dask scheduler wrote no {scheduler_file.name} in {timeout:.0f} s")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """`dask scheduler` and two single-thread `dask worker`s, loopback only, no dashboards,
    with Dask's default worker configuration (`_start_cluster`)."""
    with _start_cluster(tmp_path) as started:
        yield started


@pytest.fixture
def unprofiled_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """The same, with the workers started as README advises for sweeps: without Dask's
    profiler (`DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False`), and with the malloc
    setting Dask's nanny gives every worker it starts (`MALLOC_TRIM_THRESHOLD_=65536`,
    `distributed.nanny.pre-spawn-environ`; these workers run without a nanny)."""
    with _start_cluster(tmp_path, {"DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
                                   "MALLOC_TRIM_THRESHOLD_": "65536"}) as started:
        yield started


@contextlib.contextmanager
def _start_cluster(tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """Start the scheduler and two workers (`env` added to the workers' environment); stop
    them all on exit, also on failure.

    Workers run without a nanny, so the PID started here is the process that executes tasks:
    killing it kills a worker for good (a nanny would restart it). The workers and the
    client find the scheduler through its scheduler file (`_scheduler_address`).
    """
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    scheduler_file = tmp_path / "scheduler.json"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        scheduler = subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--scheduler-file", str(scheduler_file), "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=open(logs / "scheduler.log", "wb"),  # noqa: SIM115
        )
        processes.append(scheduler)
        address = _scheduler_address(scheduler, scheduler_file, logs / "scheduler.log")
        assert address.startswith("tcp://127.0.0.1:"), address  # loopback only
        workers = []
        for i in range(2):
            worker = subprocess.Popen(
                [str(DASK), "worker", "--scheduler-file", str(scheduler_file),
                 "--nworkers", "1", "--nthreads", "1",
                 "--host", "127.0.0.1", "--no-dashboard", "--no-nanny",
                 "--local-directory", str(tmp_path / f"worker-{i}"), "--death-timeout", "60"],
                stdout=subprocess.DEVNULL,
                stderr=open(logs / f"worker-{i}.log", "wb"),  # noqa: SIM115
                env={**os.environ, **(env or {})},
            )
            processes.append(worker)
            workers.append(worker)
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield Cluster(address, scheduler, workers)
    finally:
        for process in reversed(processes):  # workers first, then the scheduler
            _stop(process)


def test_sweep_on_dask_survives_a_killed_worker_with_every_run_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    base = tmp_path / "small.yaml"
    base.write_text(yaml.safe_dump(small_scenario().to_dict(), sort_keys=False))
    path = tmp_path / "dask-sweep.yaml"
    path.write_text(yaml.safe_dump({
        "name": "dask-sweep", "base": "small.yaml", "overrides": TINY,
        "grid": {"rewards.policy": ["direct", "mint", "buyback", "dividend"]}, "seeds": 2,
    }))
    sweep = load_sweep(path)
    out = tmp_path / "shared" / "sweep"
    outcome: dict[str, object] = {}

    def drive() -> None:
        try:
            outcome["dir"] = run_sweep(path, scheduler=cluster.address, out=out, progress=False)
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()

    # Wait until a worker is inside a run (its staging folder, named with its PID, exists)
    # after at least one run has finished, then kill that worker.
    pids = {worker.pid: worker for worker in cluster.workers}
    victim = None
    deadline = time.monotonic() + 90
    while victim is None and time.monotonic() < deadline and driver.is_alive():
        if finished_run_ids(out):
            staging = out / STAGING_DIR
            busy = [int(p.name.split(".")[-2]) for p in staging.iterdir()] if staging.is_dir() \
                else []
            victim = next((pids[pid] for pid in busy if pid in pids), None)
        time.sleep(0.02)
    assert victim is not None, f"no worker was caught mid-run: {outcome}"
    done_before_kill = len(finished_run_ids(out))
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)

    driver.join(timeout=120)
    assert not driver.is_alive(), "the sweep did not complete after the worker was killed"
    assert "error" not in outcome, outcome.get("error")
    assert outcome["dir"] == out.resolve()
    assert done_before_kill < len(sweep.runs)  # the kill happened mid-sweep

    expected = sorted(run.run_id for run in sweep.runs)
    assert sorted(p.name for p in (out / "runs").iterdir()) == expected
    for run in sweep.runs:
        assert (out / "runs" / run.run_id / PARAMS_FILE).is_file()
    assert not (out / STAGING_DIR).exists()
    combine(out)  # what `wsf sweep` does next
    runs = pd.read_parquet(out / "combined" / "runs.parquet")
    assert sorted(runs["run_id"]) == expected  # each run exactly once
    model = pd.read_parquet(out / "combined" / "model.parquet")
    assert len(model) == len(expected) * (TINY["steps"] + 1)
    assert not model.duplicated(["run_id", "step"]).any()
    assert cluster.workers[0].poll() is None or cluster.workers[1].poll() is None

    # A run computed on the cluster holds the same numbers as the configuration run alone.
    first = sweep.runs[0]
    alone = simulate(first.scenario)
    for table in ("model", "rounds"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(out / "runs" / first.run_id / f"{table}.parquet"),
            getattr(alone, table))


def _profiling(dask_worker) -> list[bool]:
    from abm.sweep.executor import DASK_PAUSED_CALLBACKS

    return [dask_worker.periodic_callbacks[key].is_running() for key in DASK_PAUSED_CALLBACKS
            if key in dask_worker.periodic_callbacks]


def test_a_sweep_pauses_the_workers_diagnostics_while_it_runs_and_restores_them(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Dask's profiler callbacks and monitors cost these runs ~0.2 s of CPU per 2 s run
    (docs/performance.md): paused on every worker for the sweep, resumed after it. The
    event-loop profiler thread cannot be paused: the sweep says so, once, naming the
    setting that turns it off (the fixture's workers run Dask's defaults)."""

    base = tmp_path / "small.yaml"
    base.write_text(yaml.safe_dump(small_scenario().to_dict(), sort_keys=False))
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump({"name": "one", "base": "small.yaml", "overrides": TINY,
                                    "seeds": 1}))
    during: dict[str, list[bool]] = {}
    import cloudpickle

    # the workers cannot import this test module: send `_profiling` by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        _check_profiler_paused(cluster, path, tmp_path, monkeypatch, during)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert len(finished_run_ids(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert err.count("event-loop profiler") == 1, err
    assert "2 Dask worker(s)" in err and "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False" in err


def _check_profiler_paused(cluster, path, tmp_path, monkeypatch, during) -> None:
    from abm.sweep import execute

    with distributed.Client(cluster.address, timeout="30s") as client:
        assert all(all(v) for v in client.run(_profiling).values())
        real = execute._submit_and_drain

        def spy(*args, **kwargs):
            during.update(client.run(_profiling))
            return real(*args, **kwargs)

        monkeypatch.setattr(execute, "_submit_and_drain", spy)
        run_sweep(path, scheduler=cluster.address, out=tmp_path / "out", progress=False)
        assert len(during) == 2 and not any(any(v) for v in during.values())
        assert all(all(v) for v in client.run(_profiling).values())


def _faults_per_mib(n: int = 50) -> float:
    """Minor page faults per 1 MiB buffer allocated, zeroed and freed, in this thread: ~256
    (every page faulted in afresh) when malloc maps each such block anew, ~0 when it reuses
    its heap, as a local process does."""
    import resource

    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(n):
        buffer = bytearray(1 << 20)
        del buffer
    return (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / n


def test_readme_workers_get_no_notice_and_a_local_processs_malloc_for_the_sweep(
    unprofiled_cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Workers started as README says: no profiler notice; the nanny's malloc setting (every
    block of 128 KiB or more mapped and faulted in afresh, ~10 % of a run's CPU:
    docs/performance.md) is lifted for the sweep and put back after it; same tables."""
    from abm.sweep import execute

    base = tmp_path / "small.yaml"
    base.write_text(yaml.safe_dump(small_scenario().to_dict(), sort_keys=False))
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump({"name": "one", "base": "small.yaml", "overrides": TINY,
                                    "seeds": 1}))
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        with distributed.Client(unprofiled_cluster.address, timeout="30s") as client:
            before = client.run(_faults_per_mib)
            during: dict[str, float] = {}
            real = execute._submit_and_drain

            def spy(*args, **kwargs):
                during.update(client.run(_faults_per_mib))
                return real(*args, **kwargs)

            monkeypatch.setattr(execute, "_submit_and_drain", spy)
            run_sweep(path, scheduler=unprofiled_cluster.address, out=tmp_path / "out",
                      progress=False)
            after = client.run(_faults_per_mib)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert len(finished_run_ids(tmp_path / "out")) == 1
    assert "profiler" not in capsys.readouterr().err
    assert len(before) == len(during) == len(after) == 2
    assert all(faults > 200 for faults in before.values()), before
    assert all(faults < 32 for faults in during.values()), during
    assert all(faults > 200 for faults in after.values()), after
    # the run computed with the sweep's malloc thresholds holds the numbers of a run alone
    (run,) = load_sweep(path).runs
    alone = simulate(run.scenario)
    for table in ("model", "rounds"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "out" / "runs" / run.run_id / f"{table}.parquet"),
            getattr(alone, table))
