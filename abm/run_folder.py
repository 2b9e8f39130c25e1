"""Write a run folder atomically, and claim or refuse its place before a run.

`write_run` writes a `abm.run.RunResult` into a run folder atomically: everything is written
into a hidden temporary folder beside the target, which is renamed into place only once
complete, so a crash or Ctrl-C never leaves a half-written run. `prepare_output` checks before
a simulation that the folder can be created (minutes of results are never lost to a read-only
disk), and `claim_output` holds it for one `wsf run` from before the run. A temporary folder
left by a process that was killed outright (SIGKILL, power loss) is named for its host and
process, and removed by the next `write_run` into the same parent folder once that process is
gone.

Run folder:
    config.yaml      the resolved scenario (every default filled in), seed, package versions
    model.parquet    one row per step (step 0 is genesis)
    agents.parquet   one row per agent per step
    rounds.parquet   one row per client per round
    events.parquet   one row per event (FL rounds, clients leaving and rejoining, offerings,
                     a manipulator's pump and dump): step, kind, client, agent_id, text
    tokens.parquet,  the model table's per-token and per-holder columns as long tables
    wealth.parquet   (`abm.tidy`)
    summary.json     headline figures, per-client outcome measures, the money table,
                     time by phase
    counterfactual/  with `--counterfactual` (or `counterfactual: true`): the twin's run
                     folder (same seed, reward budget 0)

The figures and `report.md` are derived from these tables by `analysis` (`wsf run` ends by
writing them; `wsf report RUN_DIR` rewrites them). `abm` never imports `analysis`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from abm.scenario import Scenario, ScenarioError
from abm.tidy import long_tables

if TYPE_CHECKING:
    from abm.run import RunResult

TABLES = ("model", "agents", "rounds", "events")
#: The twin's run folder inside its run's (`--counterfactual`).
COUNTERFACTUAL_DIR = "counterfactual"


def default_out_dir(scenario: Scenario, root: Path = Path("runs")) -> Path:
    """`runs/<name>-seed<seed>-<UTC timestamp>`: a new folder name for every run."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out = root / f"{scenario.name}-seed{scenario.seed}-{stamp}"
    n = 1
    while out.exists():
        n += 1
        out = root / f"{scenario.name}-seed{scenario.seed}-{stamp}-{n}"
    return out


class OutputExistsError(FileExistsError):
    """The run folder already exists: runs never overwrite silently."""


def refuse_existing(out: Path) -> None:
    """Raise `OutputExistsError` if `out` exists (checked before a run, and again on write)."""
    if os.path.lexists(out):
        raise OutputExistsError(
            f"{out}: the output folder already exists; runs never overwrite one. Choose another "
            f"--out, or remove it first."
        )


class OutputFolderError(ScenarioError):
    """The run folder cannot be created there (permission, a file in the path, read-only)."""


#: `.<run folder name>.wsf-tmp-<host>-<pid>.<random>`: the random part (`tempfile.mkdtemp`,
#: never a "-") keeps two writers of one process (threads) apart.
_TMP = re.compile(r"^\..+\.wsf-tmp-(?P<host>[^/]+)-(?P<pid>\d+)(?:\.\w+)?$")


def _make_tmp(out: Path) -> Path:
    """Create the temporary folder beside `out` (`tempfile.mkdtemp`: a new name, O_EXCL-like);
    its name fits wherever `out`'s does (a long name is cut, with a digest, to leave room for
    the suffix)."""
    from abm.paths import short_name

    suffix = f".wsf-tmp-{socket.gethostname()}-{os.getpid()}."
    room = 254 - len(os.fsencode(suffix)) - 8  # mkdtemp adds 8 characters
    return Path(tempfile.mkdtemp(prefix=f".{short_name(out.name, room)}{suffix}",
                                 dir=out.parent))


def prepare_output(out: Path) -> None:
    """Check, before a run, that `write_run` will be able to create `out`.

    Refuses an existing folder (`OutputExistsError`) and a place where no folder can be
    made (`OutputFolderError`: permission denied, a path under a file, a read-only file
    system), by creating the temporary folder (and any missing parent) and removing them
    again, so that nothing is left behind if the run fails. Also removes stale temporary
    folders of this tool there.
    """
    from abm.paths import check_path

    out = Path(out)
    check_path(out, "--out")
    refuse_existing(out)
    missing = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _make_tmp(out).rmdir()
    except OSError as exc:
        raise OutputFolderError(
            f"{out}: cannot create the run folder there ({exc.strerror or exc}"
            f"{f': {exc.filename}' if exc.filename else ''}); nothing was run. Choose another "
            f"--out in a writable place."
        ) from None
    finally:
        for folder in missing:  # innermost first; only the empty ones this call created
            with contextlib.suppress(OSError):
                folder.rmdir()
    if out.parent.exists():
        clean_stale_tmp(out.parent)


#: Beside a run folder being made by `wsf run`: `.<run folder name>.wsf-claim/`, holding
#: `owner` ("<host> <pid>"). Made with mkdir(2), which one process wins.
CLAIM_SUFFIX = ".wsf-claim"
#: A claim without its owner file older than this is one whose maker died at once.
CLAIM_GRACE_S = 60.0


@contextlib.contextmanager
def claim_output(out: Path) -> Iterator[None]:
    """Hold `out` for this process from before the run until the block ends.

    Of two `wsf run` started at once into the same new `--out`, the second finds the
    claim (an atomic mkdir beside `out`) and gets `OutputExistsError` naming the other
    process before it simulates anything; `write_run`'s final rename stays the arbiter for
    writers that do not claim. A claim left by a process of this host that is gone is
    removed. The claim is removed when the block ends, however it ends.
    """
    from abm.paths import short_name

    out = Path(out)
    claim = out.parent / f".{short_name(out.name, 254 - len(CLAIM_SUFFIX) - 1)}{CLAIM_SUFFIX}"
    missing = [p for p in (out.parent, *out.parent.parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):
        try:
            claim.mkdir()
            break
        except FileExistsError:
            holder = _claim_holder(claim)
            if holder is not None or attempt:
                raise OutputExistsError(
                    f"{out}: another `wsf run` ({holder or 'a process'}) is writing this "
                    "output folder; runs never overwrite one. Choose another --out, or wait "
                    "for it to finish.") from None
            _remove_stale(claim)
    try:
        (claim / "owner").write_text(f"{socket.gethostname()} {os.getpid()}",
                                     encoding="utf-8")
        refuse_existing(out)  # published by a writer that did not claim
        yield
    finally:
        shutil.rmtree(claim, ignore_errors=True)
        for folder in missing:  # innermost first; only the empty ones made for the claim
            with contextlib.suppress(OSError):
                folder.rmdir()


def _claim_holder(claim: Path) -> str | None:
    """Who holds `claim` ("pid N on HOST"), or None when it is stale (its owner on this
    host is gone, or it never got an owner within CLAIM_GRACE_S)."""
    try:
        host, pid = (claim / "owner").read_text(encoding="utf-8").split()
        holder = f"pid {int(pid)} on {host}"
    except (OSError, ValueError):
        try:
            young = time.time() - claim.stat().st_mtime < CLAIM_GRACE_S
        except OSError:
            return None
        return "a process starting" if young else None
    if host == socket.gethostname() and not _alive(int(pid)):
        return None
    return holder


def _remove_stale(claim: Path) -> None:
    """Rename a stale claim aside (one remover wins) and remove it."""
    aside = claim.with_name(f"{claim.name}.stale.{os.getpid()}.{time.monotonic_ns()}")
    with contextlib.suppress(OSError):
        claim.rename(aside)
        shutil.rmtree(aside, ignore_errors=True)


def clean_stale_tmp(parent: Path) -> list[Path]:
    """Remove temporary run folders in `parent` whose writing process on this host is gone.

    Only folders named by `write_run` are touched, and only those of this host (on a shared
    file system another host's process may still be writing). Returns what was removed.
    """
    host = socket.gethostname()
    removed = []
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TMP.match(entry.name)
        if not match or match["host"] != host or _alive(int(match["pid"])):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to clean
        return True
    return True


def _write_tables(result: RunResult, folder: Path) -> None:
    """config.yaml, the tables and summary.json of `result` into `folder`."""
    (folder / "config.yaml").write_text(
        yaml.safe_dump(result.config, sort_keys=False), encoding="utf-8"
    )
    for name in TABLES:
        getattr(result, name).to_parquet(folder / f"{name}.parquet", index=False)
    for name, table in long_tables(result.model).items():  # tokens, wealth (abm.tidy)
        table.to_parquet(folder / f"{name}.parquet", index=False)
    (folder / "summary.json").write_text(
        json.dumps(result.summary, indent=2) + "\n", encoding="utf-8"
    )


def write_run(result: RunResult, out_dir: str | Path) -> Path:
    """Write the run folder `out_dir` atomically; refuses an existing folder.

    Written into a temporary folder beside `out_dir`, renamed into place when complete; on
    any exception, Ctrl-C or (through the CLI's handler) SIGTERM the temporary folder is
    removed.
    """
    out = Path(out_dir)
    refuse_existing(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(out.parent)
    tmp = _make_tmp(out)
    try:
        _write_tables(result, tmp)
        if result.twin is not None:
            twin_dir = tmp / COUNTERFACTUAL_DIR
            twin_dir.mkdir()
            _write_tables(result.twin, twin_dir)
        try:
            # rename(2) is the one atomic step: of two writers of the same new folder, the
            # first renames; the second's rename finds a non-empty folder there.
            os.rename(tmp, out)
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                raise
            refuse_existing(out)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
