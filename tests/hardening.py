"""Running `wsf` as a hostile user would: in its own session, with a memory limit, a deadline
and its resource usage measured, and never leaving a process behind.

Bounds on time are on the command's CPU time (user + system, from `os.wait4`), not on wall
time: a machine busy with other work (CI, parallel test runs) stretches wall time but not the
work a command does, and the work is what a regression (an expanded alias bomb, a recursive
walk) multiplies. Wall time is only guarded by `timeout`, against a hang.

`run_wsf(...)` starts `python -m abm.cli ARGS` in a new session (so that every process it
starts, workers included, can be found and killed), under an address-space limit
(`RLIMIT_AS`, so that a regression fails the test with a MemoryError instead of swapping
the machine), and reads its peak RSS with `os.wait4`. Whatever happens, the session is
killed before returning.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

WSF = [sys.executable, "-m", "abm.cli"]
#: Address space a command importing torch needs (the CPU wheel maps ~3 GB of libraries).
TORCH_AS_MB = 4096
#: Address space of the commands that import no torch (validate, sweep's up-front checks).
LIGHT_AS_MB = 1536


@dataclass
class Outcome:
    """How a `wsf` command ended: exit code, output, wall time (s), CPU time (user +
    system, s), peak RSS (MiB)."""

    code: int
    stdout: str
    stderr: str
    seconds: float
    cpu_seconds: float
    peak_mb: float


#: Runs CMD under an address-space limit and writes "<peak RSS KiB> <exit code> <CPU s>" of it to
#: REPORT. A small process of its own, so that the peak measured is the command's: a child
#: forked from pytest itself would report pytest's resident pages as its own (ru_maxrss keeps
#: the high-water mark from before exec).
_LAUNCHER = """
import os, resource, sys
limit, report, *cmd = sys.argv[1:]
if int(limit):
    resource.setrlimit(resource.RLIMIT_AS, (int(limit) << 20, int(limit) << 20))
pid = os.fork()
if pid == 0:
    os.execv(cmd[0], cmd)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as out:
    out.write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)} "
              f"{usage.ru_utime + usage.ru_stime}")
"""


def run_wsf(*args: str, timeout: float = 120, memory_mb: int | None = LIGHT_AS_MB,
            cwd: Path = ROOT, env: dict[str, str] | None = None) -> Outcome:
    """Run `wsf ARGS` (see the module docstring); fails the test on timeout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "usage"
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(memory_mb or 0), str(report), *WSF, *args],
            stdout=out, stderr=err, cwd=cwd, env=env, start_new_session=True,
        )
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"wsf {' '.join(args)} did not finish within {timeout} s") \
                from None
        finally:
            kill_session(proc.pid)
        seconds = time.perf_counter() - start
        peak_kb, code, cpu = report.read_text().split()
        out.seek(0)
        err.seek(0)
        return Outcome(int(code), out.read().decode(errors="replace"),
                       err.read().decode(errors="replace"), seconds, float(cpu),
                       int(peak_kb) / 1024)


def kill_session(sid: int) -> None:
    """SIGKILL every process left in session `sid` (a started command's process group)."""
    for pid in session_members(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, signal.SIGKILL)


def session_members(sid: int) -> list[int]:
    """Live (not zombie) processes whose session id is `sid`, from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(entry))
    return members


def assert_refused(outcome: Outcome, *fragments: str, seconds: float = 60,
                   peak_mb: float | None = None) -> None:
    """Exit 2, one paragraph on stderr naming `fragments`, no traceback, within bounds
    (`seconds` of CPU time, `peak_mb` of resident memory)."""
    assert outcome.code == 2, (outcome.code, outcome.stderr[-2000:])
    assert "Traceback" not in outcome.stderr, outcome.stderr[-2000:]
    assert "internal error" not in outcome.stderr, outcome.stderr
    lines = [line for line in outcome.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, outcome.stderr
    for fragment in fragments:
        assert fragment in outcome.stderr, (fragment, outcome.stderr)
    assert outcome.cpu_seconds < seconds, (outcome.cpu_seconds, outcome.seconds)
    if peak_mb is not None:
        assert outcome.peak_mb < peak_mb, outcome.peak_mb
