"""Shared fixtures: small, fast scenarios built from the shipped schema."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import tests.toy_components  # noqa: F401  (one toy component of every kind, registered)
from abm.registry import KINDS
from abm.scenario import Scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[1]
_RUN_CACHE: dict[str, Path] = {}


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models: intra-op threads only add overhead (and stall badly on a busy machine).
    The library leaves the thread count to its caller; the test session is the caller."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def small_scenario(**overrides) -> Scenario:
    """4 clients on 400 digits, logistic regression, 30 steps (3 rounds), a few of each agent.

    Small enough that a run takes well under a second of training, big enough that every
    policy, strategy and agent type acts.
    """
    data = {
        "name": "small",
        "seed": 1,
        "steps": 30,
        "round_every": 10,
        "fl": {"dataset": {"name": "digits", "n_samples": 400}, "model": "logreg",
               "partition": {"scheme": "iid"}},
        "contribution": {"method": "leave_one_out"},
        "rewards": {"policy": "buyback", "budget": {"amount": 500}},
        "market": {"opening_price": 0.25, "initial_supply": 10000, "pool_tokens": 10000},
        "clients": [
            {"count": 3, "behaviour": "honest",
             "cash_out": {"kind": "sell_fraction", "fraction": 0.1}},
            {"count": 1, "behaviour": "free_rider"},
        ],
        "investors": [
            {"strategy": s, "count": 3, "cash": 500}
            for s in ("fundamental", "momentum", "mean_reversion", "noise")
        ] + [{"strategy": "manipulator", "count": 1, "cash": 2000, "max_position": 1.0,
              "params": {"pump_start": 5, "pump_steps": 5, "dump_step": 20}}],
        "liquidity_providers": [
            {"count": 1, "cash": 2000, "exit": {"kind": "horizon", "horizon": 15}},
            {"count": 1, "cash": 2000, "exit": {"kind": "hold"}},
        ],
    }
    scenario = parse_scenario(data, source="tests/conftest.py")
    return scenario.with_overrides(overrides) if overrides else scenario


@pytest.fixture
def small() -> Scenario:
    return small_scenario()


#: Parameters for the components whose defaults do not fit a short test run (a required
#: parameter, a window past its end); every other component runs at its defaults.
EXAMPLE_PARAMS: dict[tuple[str, str], dict] = {
    ("budget", "schedule"): {"schedule": [500.0, 0.0, 250.0]},
    ("issuance", "offering"): {"start_step": 2, "end_step": 8},
}


def with_component(scenario: Scenario, kind: str, name: str, group: int = 0) -> Scenario:
    """`scenario` with its `kind` slot (group `group` of a list section) switched to the
    registered component `name` (its defaults, or its `EXAMPLE_PARAMS`): the override a user
    would write (``rewards.policy``, ``clients.0.cash_out``), found from the kind's `section`
    and `tag` (`abm.registry.Kind`), so that a new component of any kind drops into every
    test parametrised over `registry.names(kind)`."""
    k = KINDS[kind]
    section = k.section.replace("[i]", f".{group}")
    params = EXAMPLE_PARAMS.get((kind, name), {})
    if k.params_key is None:
        return scenario.with_overrides({section: {k.tag: name, **params}})
    return scenario.with_overrides({f"{section}.{k.tag}": name,
                                    f"{section}.{k.params_key}": params})


def write_real_run(folder: Path, **overrides) -> Path:
    """A real run folder (`abm.run_folder.write_run`) of `small_scenario(**overrides)` at `folder`.

    Each configuration is simulated once per test session and copied, so tests may alter
    their copy (drop a file, break a table) without paying for a new run.
    """
    from abm.run import simulate
    from abm.run_folder import write_run

    key = json.dumps(overrides, sort_keys=True, default=str)
    if key not in _RUN_CACHE:
        root = Path(tempfile.mkdtemp(prefix="wsf-runs-"))
        atexit.register(shutil.rmtree, root, True)
        _RUN_CACHE[key] = write_run(simulate(small_scenario(**overrides)), root / "run")
    shutil.copytree(_RUN_CACHE[key], folder)
    return folder


def kill_when(argv: list[str], until: Callable[[], bool], timeout: float = 120.0) -> None:
    """Start `argv` in its own process group (a driver and its workers) and SIGKILL the whole
    group as soon as `until()` holds, as on a power cut of the node. Fails the test if the
    process exits first (showing its stderr) or `until` never holds within `timeout` s."""
    driver = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            assert driver.poll() is None, driver.stderr.read().decode()
            time.sleep(0.05)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)



def kill_sweep_when(sweep_file: Path, out: Path, until: Callable[[], bool]) -> None:
    """`kill_when` on a `run_sweep(sweep_file, workers=2, out=out)` driver of its own."""
    kill_when([sys.executable, "-c",
               "import sys; from abm.sweep import run_sweep; "
               "run_sweep(sys.argv[1], workers=2, out=sys.argv[2], progress=False)",
               str(sweep_file), str(out)], until=until)


def stored_runs(sweep_dir: Path) -> dict[str, tuple[int, int]]:
    """run id -> (inode, mtime_ns) of its params.json: changes if a run is rewritten."""
    from abm.sweep import finished_run_ids
    from abm.sweep.store import PARAMS_FILE

    out = {}
    for run in finished_run_ids(sweep_dir):
        st = (sweep_dir / "runs" / run / PARAMS_FILE).stat()
        out[run] = (st.st_ino, st.st_mtime_ns)
    return out
