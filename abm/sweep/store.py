"""Sweep folders: layout, atomic run storage, resume bookkeeping, combined tables.

Layout of a sweep folder::

    sweep.yaml            the resolved sweep spec (grid, seeds, every run id, base config)
    runs/<run_id>/        one finished run: the `abm.run_folder.write_run` folder + params.json
    tmp/                  runs being written (staging); removed when a driver starts/ends
    errors/<run_id>.txt   traceback of a run that failed (removed once it succeeds)
    combined/             the tables over all finished runs, built by `analysis.sweep`
    .lock                 held (flock) by the driver while it runs

A run counts as finished only when `runs/<run_id>/` exists. It appears by a single
`os.rename` of a complete staging folder (the run tables, summary and params.json), so a
process killed at any moment leaves either a finished run or garbage under `tmp/`, never a
half-written run. Renaming onto an existing non-empty folder fails on POSIX, so when a run
is computed twice (a Dask worker presumed dead that was still running) the first copy wins
and the second is discarded: every run is stored exactly once. Runs are deterministic, so
both copies hold the same numbers.

On a cluster every worker writes its run folder itself: the sweep folder must be on a file
system that the driver and all workers share (NFS, Lustre, a mounted volume), at the same
path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from abm.scenario import ScenarioError, read_yaml
from abm.sweep.spec import Sweep

try:  # POSIX advisory locks; released by the OS when the holder dies, so never stale.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "COMBINED_DIR",
    "PARAMS_FILE",
    "RUNS_DIR",
    "SPEC_FILE",
    "STAGING_DIR",
    "SweepError",
    "begin_run",
    "default_out",
    "discard",
    "exclusive_lock",
    "finished_run_ids",
    "open_folder",
    "publish_run",
    "read_spec",
    "run_folder",
    "write_text_atomic",
]

SPEC_FILE = "sweep.yaml"
RUNS_DIR = "runs"
STAGING_DIR = "tmp"
ERRORS_DIR = "errors"
COMBINED_DIR = "combined"
PARAMS_FILE = "params.json"
LOCK_FILE = ".lock"
DEFAULT_ROOT = Path("sweeps-out")
#: Bounds for reading `sweep.yaml` (written by the driver: about 100 values per run, so
#: sweeps far above the default run ceiling fit; a hostile folder still cannot make
#: `wsf report` expand an alias bomb).
SPEC_MAX_BYTES = 256 << 20
SPEC_MAX_NODES = 5_000_000


class SweepError(ScenarioError):
    """A sweep folder that cannot be used as asked (another sweep's results, in use, ...).

    A ScenarioError, so that the CLI reports it like a bad file: one paragraph, exit 2.
    """


def default_out(sweep: Sweep) -> Path:
    """Default sweep folder: `sweeps-out/<sweep name>` under the current directory."""
    return DEFAULT_ROOT / sweep.name


def run_folder(sweep_dir: Path, run_id: str) -> Path:
    """Folder of a finished run."""
    return Path(sweep_dir) / RUNS_DIR / run_id


def read_spec(sweep_dir: str | Path) -> dict[str, Any]:
    """The resolved sweep spec stored in a sweep folder (`sweep.yaml`)."""
    path = Path(sweep_dir) / SPEC_FILE
    if not path.exists():
        raise SweepError(f"{Path(sweep_dir)}: not a sweep folder (no {SPEC_FILE}).")
    try:
        record = read_yaml(path, kind="sweep spec", max_bytes=SPEC_MAX_BYTES,
                           max_nodes=SPEC_MAX_NODES)
    except ScenarioError as exc:
        raise SweepError(str(exc)) from None
    if not isinstance(record.get("runs"), list):
        raise SweepError(f"{path}: not a sweep spec written by `wsf sweep`.")
    return record


def finished_run_ids(sweep_dir: str | Path) -> set[str]:
    """Ids of the runs stored in `runs/` (each folder there is complete by construction)."""
    runs = Path(sweep_dir) / RUNS_DIR
    if not runs.is_dir():
        return set()
    return {entry.name for entry in runs.iterdir() if (entry / PARAMS_FILE).is_file()}


@contextlib.contextmanager
def open_folder(sweep: Sweep, sweep_dir: Path) -> Iterator[Path]:
    """Take a sweep folder for a driver: create it, or check it holds this very sweep.

    Refuses (SweepError) a folder holding another sweep (a different fingerprint), a non-empty
    folder that is not a sweep folder, and a folder another live driver is using. Removes the
    staging folder left by a driver that died. Holds an exclusive lock until the block ends.
    """
    sweep_dir = Path(sweep_dir)
    spec_path = sweep_dir / SPEC_FILE
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise SweepError(f"{sweep_dir}: exists and is not a folder; choose another --out.")
    if sweep_dir.is_dir() and not spec_path.exists():
        foreign = sorted(p.name for p in sweep_dir.iterdir() if p.name != LOCK_FILE)
        if foreign:
            raise SweepError(
                f"{sweep_dir}: the folder is not empty and holds no {SPEC_FILE} (found "
                f"{', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}), so it is not a "
                "sweep folder; it is left untouched. Choose another --out or an empty folder."
            )
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(sweep_dir / LOCK_FILE):
        if spec_path.exists():
            _check_same_sweep(sweep, sweep_dir)
        else:
            write_text_atomic(spec_path, yaml.safe_dump(sweep.to_record(), sort_keys=False))
        clean_staging(sweep_dir)
        yield sweep_dir


def _check_same_sweep(sweep: Sweep, sweep_dir: Path) -> None:
    old = read_spec(sweep_dir)
    if old.get("fingerprint") == sweep.fingerprint():
        return
    old_ids = {run["run_id"] for run in old.get("runs", [])}
    new_ids = {run.run_id for run in sweep.runs}
    raise SweepError(
        f"{sweep_dir}: the folder holds the results of a different sweep ('{old.get('name')}' "
        f"from {old.get('source')}, {len(old_ids)} runs; {len(old_ids & new_ids)} of this "
        f"sweep's {len(new_ids)} runs are among them). A folder resumes only the sweep it was "
        "started with (same base scenario content, overrides, grid and seeds), and finished "
        "results are never overwritten. Choose another --out, or delete the folder to start over."
    )


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold the advisory lock file `path` (a sweep or study folder's `.lock`) for the block,
    writing this driver's pid and host into it; SweepError at once, naming the holder, when
    another driver holds it."""
    if fcntl is None:  # pragma: no cover - no advisory locks on this platform
        yield
        return
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise SweepError(
                f"{path.parent}: another `wsf sweep` driver is running on this folder "
                f"({holder}); wait for it to finish or stop it, then run again to resume."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def clean_staging(sweep_dir: Path) -> None:
    """Remove runs that were being written when their process died (never finished runs)."""
    shutil.rmtree(Path(sweep_dir) / STAGING_DIR, ignore_errors=True)
    combined = Path(sweep_dir) / COMBINED_DIR
    if combined.is_dir():
        for leftover in combined.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)


def begin_run(sweep_dir: Path, run_id: str) -> Path:
    """Create the staging folder of a run about to be computed; runs in the worker.

    Named `<run_id>.<host>.<pid>.<random>`, so `tmp/` shows which runs are in progress and
    where, and two attempts at one run never share a folder.
    """
    staging = (
        Path(sweep_dir)
        / STAGING_DIR
        / f"{run_id}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    )
    staging.mkdir(parents=True)
    return staging


def discard(staging: Path) -> None:
    """Remove a staging folder (after publishing, or when the run failed)."""
    shutil.rmtree(staging, ignore_errors=True)


def publish_run(result: Any, sweep_dir: Path, staging: Path, record: dict[str, Any]) -> bool:
    """Store a run's result as `runs/<run_id>/`, atomically; runs in the worker.

    `result` is an `abm.run.RunResult`, `staging` the folder from `begin_run`, `record` the
    run's `RunSpec.record()`. The run folder is completed inside `staging` and then renamed
    into place. Returns True when this call stored the run, False when an identical run was
    already stored (this copy is then discarded).
    """
    from abm.run_folder import write_run  # only needed where runs execute

    target = run_folder(sweep_dir, record["run_id"])
    if (target / PARAMS_FILE).is_file():
        return False
    folder = staging / record["run_id"]
    write_run(result, folder)
    (folder / PARAMS_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(folder, target)
    except OSError:
        if (target / PARAMS_FILE).is_file():
            return False  # another process stored the same run first
        raise
    return True


def write_text_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: a reader sees the old
    file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_error(sweep_dir: Path, run_id: str, text: str) -> None:
    """Keep a failed run's traceback (errors/<run_id>.txt) for the user to read."""
    folder = Path(sweep_dir) / ERRORS_DIR
    folder.mkdir(exist_ok=True)
    write_text_atomic(folder / f"{run_id}.txt", text)


def clear_error(sweep_dir: Path, run_id: str) -> None:
    """Forget an earlier failure of a run that has now finished."""
    folder = Path(sweep_dir) / ERRORS_DIR
    (folder / f"{run_id}.txt").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()  # only when empty
