"""Hostile files, bad values and killed processes, one test (or family) per defect class, all
through the `wsf` command: exit code 2 and one paragraph, no traceback, bounded time, and for
the classes that could exhaust the machine (alias bombs, deep nesting, data files, sweep
sizes) bounded memory in a subprocess with an address-space limit.

Class numbers are those of the hardening issue: 1 alias bombs, 2 deep nesting, 3 values that
crash a run, 4 validate accepting what run rejects, 5 the per-client sample minimum, 6 data
file errors, 7 output folders and SIGTERM, 8 killed sweep drivers, 9 sweep sizes, 10 silent
coercions, 11 messages, 12 every entry point and internal errors.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import pickle
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from abm.cli import main
from abm.scenario import MIN_SAMPLES_PER_CLIENT
from tests.conftest import small_scenario
from tests.hardening import (
    TORCH_AS_MB,
    WSF,
    assert_refused,
    kill_session,
    run_wsf,
    session_members,
)


def scenario_file(tmp_path: Path, name: str = "s.yaml", **sections) -> Path:
    """The small test scenario with top-level `sections` replaced, written as YAML."""
    data = small_scenario().to_dict()
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sweep_file(tmp_path: Path, base: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"base: {base.name}\n{text}")
    return path


def alias_bomb(levels: int = 9) -> str:
    """A "billion laughs" YAML document: 352 bytes naming 9^9 ~ 387 million strings."""
    names = "abcdefghijklmnop"[:levels]
    lines = [f"{names[0]}: &{names[0]} [" + ",".join(['"lol"'] * 9) + "]"]
    for prev, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


# -- 1. alias bombs ---------------------------------------------------------------------------


@pytest.mark.slow
def test_1_alias_bombs_are_refused_in_bounded_time_and_memory(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb() + "steps: *i\n")
    assert len(bomb.read_bytes()) < 400
    outcome = run_wsf("validate", str(bomb), timeout=30)
    assert_refused(outcome, str(bomb), "expands to more than 100,000 values", seconds=15,
                   peak_mb=200)
    # The same in a sweep file (refused before the base scenario is even read).
    base = scenario_file(tmp_path)
    sweep = sweep_file(tmp_path, base, "seeds: 1\n" + alias_bomb() + "grid: {steps: *i}\n")
    outcome = run_wsf("sweep", str(sweep), "--out", str(tmp_path / "out"), timeout=30)
    assert_refused(outcome, str(sweep), "expands to more than", seconds=15, peak_mb=300)
    assert not (tmp_path / "out").exists()


def test_1_an_alias_cycle_is_refused(tmp_path):
    path = tmp_path / "cycle.yaml"
    path.write_text("clients: &c [*c]\n")
    assert_refused(run_wsf("validate", str(path), timeout=30), "a cycle")


# -- 2. deep nesting --------------------------------------------------------------------------


@pytest.mark.slow
def test_2_deep_nesting_is_refused_in_bounded_time_and_memory(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("steps: " + "[" * 50_000 + "]" * 50_000 + "\n")
    outcome = run_wsf("validate", str(deep), timeout=30)
    assert_refused(outcome, str(deep), "more than 50 levels deep", seconds=15, peak_mb=200)
    flow = tmp_path / "deep-mapping.yaml"
    flow.write_text("description: " + "{a: " * 20_000 + "1" + "}" * 20_000 + "\n")
    assert_refused(run_wsf("validate", str(flow), timeout=30), "levels deep", seconds=15,
                   peak_mb=200)


# -- 3. values that would crash a run ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"rewards": {"policy": "buyback", "budget": {"amount": float("inf")}}},
         "rewards.budget.amount = inf: not a finite number"),
        ({"rewards": {"policy": "mint", "budget": {"amount": 1e300}}},
         "rewards.budget.amount = 1e+300: input should be less than or equal to 1e+12"),
        ({"rewards": {"policy": "mint", "budget": {"kind": "schedule",
                                                    "schedule": [10.0, float("nan")]}}},
         "rewards.budget.schedule[1] = nan: not a finite number"),
        ({"market": {"opening_price": 1e-250}},
         "market.opening_price = 1e-250: input should be greater than or equal to"),
        ({"market": {"opening_price": 1e-6, "pool_tokens": 1e-15}}, "too little to seed it"),
        ({"investors": [{"strategy": "noise", "count": 1, "cash": 1e16}]},
         "investors[0].cash = 1e+16: input should be less than or equal to 1e+15"),
    ],
    ids=["inf-budget", "huge-budget", "nan-schedule", "tiny-price", "unseedable-pool",
         "huge-cash"],
)
def test_3_values_that_cannot_survive_base_units_or_the_amm_are_refused(
    tmp_path, sections, expected
):
    path = scenario_file(tmp_path, **sections)
    assert_refused(run_wsf("validate", str(path), timeout=30), str(path), expected)


@pytest.mark.parametrize(
    "sections",
    [
        {"rewards": {"policy": "buyback", "budget": {"amount": 1e12}},
         "market": {"opening_price": 1e9, "initial_supply": 1e15, "pool_tokens": 1e15}},
        {"rewards": {"policy": "mint", "budget": {"amount": 1e12}},
         "market": {"opening_price": 1e-6, "initial_supply": 1e3, "pool_tokens": 1e3}},
        {"rewards": {"policy": "dividend", "budget": {"amount": 1e12}},
         "market": {"opening_price": 1e-6, "initial_supply": 1e15, "pool_tokens": 1e-3},
         "liquidity_providers": [{"count": 2, "cash": 1e15}]},
    ],
    ids=["max-budget-max-price", "mint-at-min-price", "lps-on-a-dust-pool"],
)
def test_3_the_edges_of_the_allowed_ranges_run_with_the_ledger_checked(
    tmp_path, capsys, sections
):
    path = scenario_file(tmp_path, **sections)
    assert main(["validate", str(path)]) == 0
    code = main(["run", str(path), "--steps", "20", "--check", "--no-report",
                 "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err


# -- 4. validate (and a sweep's up-front check) refuses what run would ------------------------


@pytest.mark.slow
def test_4_validate_refuses_no_clients_and_unusable_cifar_paths(tmp_path):
    path = scenario_file(tmp_path, clients=[])
    assert_refused(run_wsf("validate", str(path)), "clients = []", "at least 1 item")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not CIFAR")
    empty = tmp_path / "empty"
    empty.mkdir()
    for where, expected in ((a_file, "not a tar archive"), (empty, "no CIFAR-10 batch")):
        path = scenario_file(tmp_path, fl={"dataset": {"name": "cifar10", "path": str(where)}})
        assert_refused(run_wsf("validate", str(path)), "fl.dataset.path", expected)


@pytest.mark.slow
def test_4_a_sweep_refuses_the_same_up_front_and_writes_nothing(tmp_path):
    base = scenario_file(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    for n, grid in enumerate(("{clients: [[]]}",
                              f"{{fl.dataset: [{{name: cifar10, path: {empty}}}]}}")):
        sweep = sweep_file(tmp_path, base, f"seeds: 1\ngrid: {grid}\n", name=f"sw{n}.yaml")
        out = tmp_path / f"out{n}"
        outcome = run_wsf("sweep", str(sweep), "--out", str(out))
        assert_refused(outcome, str(sweep))
        assert not out.exists()


@pytest.mark.slow
def test_4_errors_found_while_running_name_the_file(tmp_path):
    folder = tmp_path / "cifar"
    folder.mkdir()
    (folder / "data_batch_1.bin").write_bytes(b"\x00" * 100)  # not a whole record
    path = scenario_file(tmp_path, fl={"dataset": {"name": "cifar10", "path": str(folder)}})
    outcome = run_wsf("run", str(path), "--out", str(tmp_path / "new" / "run"),
                      memory_mb=TORCH_AS_MB)
    assert_refused(outcome, f"wsf run: {path}: a problem: fl.dataset", "3073-byte")
    assert not (tmp_path / "new").exists()  # not even the parent the output check made


# -- 5. the per-client minimum of training samples --------------------------------------------


def test_5_more_clients_than_the_generated_data_can_feed_are_refused(tmp_path):
    path = scenario_file(tmp_path, fl={"dataset": {"name": "synthetic"}},
                         clients=[{"count": 1000}])
    assert_refused(run_wsf("validate", str(path)), "clients = 1000",
                   "need at least 8000 training samples", "synthetic leaves 1600")


@pytest.mark.parametrize(
    "sections",
    [
        {"clients": [{"count": 3}, {"count": 1, "behaviour": "small_data",
                                    "behaviour_params": {"size_weight": 0.001}}],
         "fl": {"partition": {"scheme": "iid"}}},
        {"clients": [{"count": 6}], "fl": {"partition": {"scheme": "dirichlet",
                                                         "alpha": 0.01}}},
        {"clients": [{"count": 6}], "fl": {"partition": {"scheme": "quantity_skew",
                                                         "alpha": 0.01}}},
    ],
    ids=["tiny-size-weight", "dirichlet-0.01", "quantity-skew-0.01"],
)
def test_5_every_client_of_the_partition_actually_produced_has_the_minimum(
    tmp_path, capsys, sections
):
    path = scenario_file(tmp_path, **sections)
    out = tmp_path / "run"
    assert main(["run", str(path), "--steps", "10", "--no-report", "--out", str(out)]) == 0
    sizes = pd.read_parquet(out / "rounds.parquet").groupby("client")["n_samples"].first()
    assert len(sizes) == sum(g["count"] for g in sections["clients"])
    assert sizes.min() >= MIN_SAMPLES_PER_CLIENT, sizes.to_dict()


# -- 6. data-file errors ----------------------------------------------------------------------


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _cifar_python_dir(root: Path, payload: bytes) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "data_batch_1").write_bytes(payload)
    return root


def _archive(path: Path, members: dict[str, bytes | int], level: int = 9) -> Path:
    """A .tar.gz of `members`: bytes, or an int for that many zero bytes (streamed)."""
    with tarfile.open(path, "w:gz", compresslevel=level) as tf:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, int):
                info.size = content
                tf.addfile(info, _Zeros(content))
            else:
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)


def _good_binary_batch(n: int = 60) -> bytes:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=(n, 1), dtype=np.uint8)
    return np.concatenate([labels, rng.integers(0, 256, (n, 3072), dtype=np.uint8)], 1).tobytes()


def _data_cases(root: Path) -> dict[str, tuple[Path, str]]:
    evil = pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2)
    good = _archive(root / "good.tar.gz", {"cifar-10-batches-bin/data_batch_1.bin":
                                           _good_binary_batch(400)})
    blob = good.read_bytes()
    truncated = root / "truncated.tar.gz"
    truncated.write_bytes(blob[: len(blob) // 2])
    bad = root / "bad.tar"
    bad.write_bytes(b"ustar" + bytes(range(256)) * 8)
    return {
        "refused-pickle": (_cifar_python_dir(root / "evil", evil), "refusing to load global"),
        "garbage-pickle": (_cifar_python_dir(root / "garbage", os.urandom(4096)),
                           "not a readable pickle"),
        "truncated-archive": (truncated, "truncated or corrupt"),
        "bad-tar": (bad, "not a tar archive"),
        "archive-bomb": (_archive(root / "bomb.tar.gz",
                                  {"cifar-10-batches-bin/data_batch_1.bin": 300_000_000}),
                         "the archive lists more than CIFAR-10 holds"),
    }


@pytest.fixture(scope="module")
def data_cases(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    return _data_cases(tmp_path_factory.mktemp("cifar"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", ["refused-pickle", "garbage-pickle", "truncated-archive", "bad-tar", "archive-bomb"]
)
def test_6_data_file_errors_through_run_are_one_paragraph_in_bounded_memory(
    tmp_path, data_cases, case
):
    where, expected = data_cases[case]
    if case == "archive-bomb":
        assert where.stat().st_size < 1_000_000  # unpacks to 300 MB
    path = scenario_file(tmp_path, fl={"dataset": {"name": "cifar10", "path": str(where)}})
    outcome = run_wsf("run", str(path), "--out", str(tmp_path / "run"), cwd=tmp_path,
                      memory_mb=TORCH_AS_MB, timeout=180)
    # Torch alone is ~300-400 MiB of RSS; before the size check the archive cost 2.5 GB.
    assert_refused(outcome, str(path), expected, seconds=120, peak_mb=1200)
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "pwned").exists()


# -- 7. output folders ------------------------------------------------------------------------


@pytest.mark.slow
def test_7_an_unusable_output_folder_is_refused_before_simulating(tmp_path):
    path = scenario_file(tmp_path)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    unusable = [a_file / "run"]
    if Path("/sys/kernel").is_dir():  # sysfs refuses new folders, even to root
        unusable.append(Path("/sys/kernel/wsf-run"))
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        unusable.append(locked / "run")
    for out in unusable:
        outcome = run_wsf("run", str(path), "--out", str(out), "--steps", "500",
                          memory_mb=TORCH_AS_MB)
        assert_refused(outcome, str(out), "cannot create the run folder", "nothing was run")
        assert "500/500" not in outcome.stderr  # refused before the progress bar


@pytest.mark.slow
def test_7_sigterm_while_writing_leaves_no_folder_and_stale_ones_are_cleaned(tmp_path):
    path = scenario_file(tmp_path)
    parent = tmp_path / "runs"
    parent.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = parent / f".old.wsf-tmp-{socket.gethostname()}-{dead.pid}"
    stale.mkdir()
    (stale / "model.parquet").write_text("half")
    out = parent / "run"
    # `wsf run` with a slow disk: writing the tables takes a minute, so SIGTERM arrives while
    # the temporary folder is half written.
    code = ("import sys, time, abm.run_folder, abm.cli\n"
            "write = abm.run_folder._write_tables\n"
            "def slow(result, folder):\n"
            "    write(result, folder)\n"
            "    print('writing', flush=True)\n"
            "    time.sleep(60)\n"
            "abm.run_folder._write_tables = slow\n"
            f"sys.exit(abm.cli.main(['run', {str(path)!r}, '--out', {str(out)!r}]))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, text=True,
                            start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == "writing", proc.stderr.read()
        temps = [p.name for p in parent.iterdir() if ".wsf-tmp-" in p.name]
        assert len(temps) == 1 and temps[0].startswith(  # the stale one is gone
            f".run.wsf-tmp-{socket.gethostname()}-{proc.pid}."), temps
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        kill_session(proc.pid)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "terminated (SIGTERM); nothing partial was kept" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in parent.iterdir()) == []  # neither the run nor any temp


def test_7_a_run_into_an_out_another_run_claimed_is_refused_before_simulating(tmp_path):
    path = scenario_file(tmp_path)
    out = tmp_path / "runs" / "run"
    claim = out.parent / ".run.wsf-claim"
    claim.mkdir(parents=True)
    (claim / "owner").write_text(f"{socket.gethostname()} {os.getpid()}")  # alive: this one
    outcome = run_wsf("run", str(path), "--out", str(out), "--steps", "500",
                      memory_mb=TORCH_AS_MB)
    assert_refused(outcome, str(out), f"another `wsf run` (pid {os.getpid()} on",
                   "is writing this output folder")
    assert "500/500" not in outcome.stderr  # refused before the progress bar
    assert not out.exists() and (claim / "owner").is_file()  # the other run's claim is kept


def test_7_a_claim_left_by_a_dead_run_is_taken_over(tmp_path, capsys):
    path = scenario_file(tmp_path)
    out = tmp_path / "run"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim = tmp_path / ".run.wsf-claim"
    claim.mkdir()
    (claim / "owner").write_text(f"{socket.gethostname()} {dead.pid}")
    assert main(["run", str(path), "--out", str(out), "--steps", "10", "--no-report"]) == 0
    assert (out / "summary.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "s.yaml"]  # claim removed


@pytest.mark.slow
def test_7_of_two_runs_into_one_new_out_the_loser_is_told_before_simulating(tmp_path):
    # Were: the loser simulated the whole run, then failed on the final rename (an internal
    # error before the rename check, the "already exists" message after it).
    path = scenario_file(tmp_path)
    out = tmp_path / "run"
    procs = [subprocess.Popen([*WSF, "run", str(path), "--out", str(out), "--steps", "400",
                               "--no-report"], start_new_session=True, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    try:
        outcomes = [(proc.wait(timeout=300), *proc.communicate(timeout=30)) for proc in procs]
    finally:
        for proc in procs:
            kill_session(proc.pid)
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 2], outcomes
    loser = next(err for code, _, err in outcomes if code == 2)
    assert "internal error" not in loser and "Traceback" not in loser, loser
    assert ("is writing this output folder" in loser or "already exists" in loser), loser
    assert "400/400" not in loser  # told before simulating
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "s.yaml"]


# -- 8. a killed sweep driver leaves no process -----------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_8_a_killed_sweep_driver_leaves_no_process_behind(tmp_path, sig):
    base = scenario_file(tmp_path)
    sweep = sweep_file(tmp_path, base, "seeds: 6\noverrides: {steps: 400}\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([*WSF, "sweep", str(sweep), "--workers", "2", "--out", str(out)],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(list((out / "tmp").glob("*"))) < 2:  # both workers are running a run
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        assert len(session_members(proc.pid)) >= 4  # driver, forkserver, 2 workers (+ tracker)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while (left := session_members(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, [Path(f"/proc/{p}/cmdline").read_text() for p in left]
    finally:
        kill_session(proc.pid)
        proc.stderr.close()
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
    # Finished runs were kept, half runs were not, and the sweep resumes.
    assert all((run / "params.json").is_file() for run in (out / "runs").glob("*"))


#: A CPU-burning process that ends by itself after 120 s (a test's cleanup kills it sooner).
_BURNER = "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end:\n    pass\n"


@contextlib.contextmanager
def cpu_load(processes: int) -> Iterator[None]:
    """`processes` CPU-burning processes for the duration of the block, killed on the way out
    whatever happens (load average ~5 on two cores with 4 of them)."""
    burners = [subprocess.Popen([sys.executable, "-c", _BURNER], start_new_session=True)
               for _ in range(processes)]
    try:
        yield
    finally:
        for burner in burners:
            kill_session(burner.pid)
            burner.wait(timeout=30)


def _forkserver_state(sid: int) -> tuple[int | None, int]:
    """(pid of the session's forkserver or None, number of its children)."""
    server, parents = None, []
    for pid in session_members(sid):
        with contextlib.suppress(OSError):
            if b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes():
                server = pid
            stat = Path(f"/proc/{pid}/stat").read_text()
            parents.append(int(stat[stat.rindex(")") + 2:].split()[1]))
    return server, sum(parent == server for parent in parents)


@pytest.mark.slow
@pytest.mark.parametrize("phase", ["importing", "running"])
@pytest.mark.parametrize("command", ["sweep", "optimize"])
def test_8_sigterm_stops_every_worker_within_5_s_under_load(tmp_path, command, phase):
    # The referee's case: SIGTERM to a sweep driver at load average 5 left 2 processes alive
    # 10 s later, the forkserver still importing torch and multiprocessing's resource tracker;
    # the forkserver then forked workers for the dead driver, which printed tracebacks.
    base = scenario_file(tmp_path)
    if command == "sweep":
        spec = sweep_file(tmp_path, base, "seeds: 6\noverrides: {steps: 400}\n")
        extra = []
    else:
        spec = sweep_file(tmp_path, base, "name: st\nseeds: 1\noverrides: {steps: 400}\n"
                          "parameters: {market.fee_bps: {low: 5, high: 100}}\n"
                          "objectives: [{output: execution_cost_usd, direction: minimize}]\n",
                          name="study.yaml")
        extra = ["--trials", "4"]
    out = tmp_path / "out"
    with cpu_load(2 * (os.cpu_count() or 2)):
        proc = subprocess.Popen([*WSF, command, str(spec), "--workers", "2", "--out", str(out),
                                 *extra], start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 180
            while True:
                assert proc.poll() is None, proc.stderr.read()
                assert time.monotonic() < deadline, f"the workers never reached {phase}"
                server, workers = _forkserver_state(proc.pid)
                if phase == "importing" and server is not None:
                    break  # the forkserver is importing the simulation stack: no worker yet
                if phase == "running" and len(list((out / "tmp").glob("*"))) >= 2:
                    break  # both workers are running a run
                time.sleep(0.01)
            if phase == "importing":
                assert workers == 0
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            while (left := session_members(proc.pid)) and time.monotonic() < sent + 5:
                time.sleep(0.05)
            assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:80] for p in left]
            proc.wait(timeout=5)
        finally:
            kill_session(proc.pid)
            proc.wait(timeout=30)
        err = proc.stderr.read()
        proc.stderr.close()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err, err
    assert "terminated (SIGTERM)" in err


# -- 9. sweep sizes ---------------------------------------------------------------------------


@pytest.mark.slow
def test_9_huge_sweeps_are_refused_before_being_built(tmp_path):
    base = scenario_file(tmp_path)
    grid = yaml.safe_dump({"grid": {"rewards.budget.amount": [float(i) for i in range(1000)],
                                    "market.fee_bps": list(range(1000))}})
    for text, expected in (("seeds: 1000000000\n", "1,000,000,000 runs"),
                           ("seeds: 1\n" + grid, "1,000,000 runs")):
        sweep = sweep_file(tmp_path, base, text)
        outcome = run_wsf("sweep", str(sweep), "--out", str(tmp_path / "out"), timeout=60)
        assert_refused(outcome, str(sweep), expected, "ceiling of 10,000", "--max-runs",
                       seconds=30, peak_mb=400)
        assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_9_the_ceiling_is_a_flag(tmp_path):
    base = scenario_file(tmp_path)
    sweep = sweep_file(tmp_path, base, "seeds: 3\n")
    outcome = run_wsf("sweep", str(sweep), "--max-runs", "2", "--out", str(tmp_path / "o"))
    assert_refused(outcome, "3 runs", "ceiling of 2", "--max-runs 3")


@pytest.mark.slow
def test_9_a_long_sweep_warns_with_the_measured_pace(tmp_path, capsys):
    from abm.sweep import run_sweep

    base = scenario_file(tmp_path)
    sweep = sweep_file(tmp_path, base, "seeds: 3\noverrides: {steps: 10}\n")
    run_sweep(sweep, workers=1, out=tmp_path / "out", progress=False, warn_runs=2)
    err = capsys.readouterr().err
    assert "this sweep has 3 runs to do (more than 2) on 1 worker" in err
    assert "the remaining 1 will take about" in err


# -- 10. silent coercions ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"steps": "30"}, "steps = '30': input should be a valid integer"),
        ({"market": {"fee_bps": True}}, "market.fee_bps = True: input should be a valid integer"),
        ({"steps": 30.0}, "steps = 30.0: input should be a valid integer"),
        ({"fl": {"dataset": {"name": "digits", "n_samples": "1e9"}}},
         "fl.dataset.n_samples = '1e9'"),
        ({"fl": {"dataset": {"name": "digits", "n_samples": 100_000}}},
         "digits has 1797 samples"),
        ({"investors": [{"strategy": "noise", "count": 1, "cash": 1e-30}]},
         "would be 0 in the ledger"),
        ({"market": {"client_cash": 1e-19}}, "would be 0 in the ledger"),
    ],
    ids=["string-int", "bool-int", "float-int", "string-n-samples", "n-samples-above-data",
         "cash-below-one-unit", "client-cash-below-one-unit"],
)
def test_10_values_are_never_coerced_silently(tmp_path, sections, expected):
    path = scenario_file(tmp_path, **sections)
    assert_refused(run_wsf("validate", str(path)), expected)


def test_10_the_resolved_config_records_what_ran(tmp_path, capsys):
    path = scenario_file(tmp_path, fl={"dataset": {"name": "digits", "n_samples": 400}},
                         rewards={"budget": {"amount": 500}})
    out = tmp_path / "run"
    assert main(["run", str(path), "--steps", "10", "--no-report", "--out", str(out)]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    rounds = pd.read_parquet(out / "rounds.parquet")
    train = 400 - round(400 * config["fl"]["val_fraction"])
    assert rounds.groupby("client")["n_samples"].first().sum() == train
    assert config["rewards"]["budget"]["amount"] == 500.0
    assert rounds.groupby("round")["reward_usd"].sum().round(6).tolist() == [500.0]


# -- 11. messages -----------------------------------------------------------------------------


def test_11_messages_are_short_and_say_what_is_wrong(tmp_path):
    long = scenario_file(tmp_path, name="long.yaml", rewards={"policy": "x" * 10_000})
    outcome = run_wsf("validate", str(long))
    assert_refused(outcome, "rewards.policy = 'xxxx", "...")
    assert len(outcome.stderr) < 600
    nan = scenario_file(tmp_path, name="nan.yaml", market={"opening_price": float("nan")})
    assert_refused(run_wsf("validate", str(nan)), "opening_price = nan", "not a finite number")
    assert_refused(run_wsf("validate", str(tmp_path)), "is a folder, not a file")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["sweep", "x.yaml", "--workers", "-2"], "--workers: must be an integer >= 1, got '-2'"),
        (["sweep", "x.yaml", "--workers", "0"], "--workers: must be an integer >= 1, got '0'"),
        (["viz", "x.yaml", "--port", "99999"], "--port: must be a TCP port from 1 to 65535"),
        (["sweep", "x.yaml", "--connect-timeout", "nan"], "must be a number > 0"),
        (["run", "x.yaml", "--seed", "-1"], "--seed: must be an integer >= 0"),
    ],
)
def test_11_bad_options_exit_2_with_the_allowed_range(args, expected):
    outcome = run_wsf(*args)
    assert outcome.code == 2 and "Traceback" not in outcome.stderr
    assert expected in outcome.stderr, outcome.stderr


@pytest.mark.slow
def test_11_an_unreachable_scheduler_fails_within_the_connect_timeout(tmp_path):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = scenario_file(tmp_path)
    sweep = sweep_file(tmp_path, base, "seeds: 1\n")
    out = tmp_path / "out"
    outcome = run_wsf("sweep", str(sweep), "--scheduler", f"tcp://127.0.0.1:{port}",
                      "--connect-timeout", "2", "--out", str(out), timeout=60)
    assert_refused(outcome, f"cannot reach the Dask scheduler at 'tcp://127.0.0.1:{port}' "
                   "within 2 s", "--connect-timeout", seconds=20)
    assert not out.exists()  # nothing was written before the scheduler answered


# -- 12. every entry point --------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", ["validate", "run", "viz", "sweep", "report"])
def test_12_every_entry_point_turns_a_user_error_into_exit_2(tmp_path, command):
    missing = tmp_path / "missing"
    outcome = run_wsf(command, str(missing))
    assert_refused(outcome, f"wsf {command}: {missing}", seconds=30)


def test_12_an_internal_error_is_one_line_naming_the_saved_traceback(tmp_path):
    path = scenario_file(tmp_path)
    code = ("import sys, abm.run, abm.cli\n"
            "def broken(*args, **kwargs):\n"
            "    raise ZeroDivisionError('a bug')\n"
            "abm.run.simulate = broken\n"
            f"sys.exit(abm.cli.main(['run', {str(path)!r}, '--out', "
            f"{str(tmp_path / 'run')!r}]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 70
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "internal error (ZeroDivisionError: a bug); this is a bug in wsf" in lines[0]
    reports = list(tmp_path.glob("wsf-run-bug-*.txt"))
    assert len(reports) == 1 and str(reports[0]) in lines[0]
    text = reports[0].read_text()
    assert "Traceback (most recent call last)" in text and "ZeroDivisionError: a bug" in text
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_12_a_hostile_run_folder_is_refused_by_report(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", str(scenario_file(tmp_path)), "--steps", "10", "--no-report",
                 "--out", str(run)]) == 0
    (run / "config.yaml").write_text(alias_bomb() + "name: *i\n")
    outcome = run_wsf("report", str(run), timeout=60)
    assert_refused(outcome, str(run / "config.yaml"), "expands to more than", peak_mb=600)
