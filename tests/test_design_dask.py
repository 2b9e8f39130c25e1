"""Design sweeps and studies on a real Dask cluster (scheduler and two workers on 127.0.0.1).

The cluster is `tests/test_sweep_dask.py`'s fixture: the `dask` command-line tools, loopback
only, every process stopped by its PID when the test ends.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from abm.sweep import finished_run_ids, load_sweep, run_sweep
from abm.sweep.optimize import run_study
from analysis.metrics import RUN_OUTPUTS, run_outputs
from analysis.sweep import write_sweep_report
from tests.conftest import small_scenario
from tests.test_design import KNOWN, TINY
from tests.test_sweep_dask import Cluster, cluster  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.dask, pytest.mark.slow, pytest.mark.timeout(240)]


def test_sobol_sweep_and_study_on_dask(cluster: Cluster, tmp_path: Path,  # noqa: F811
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A Sobol design sweep and a study on the cluster; each tells once that the workers
    run Dask's event-loop profiler (the fixture's workers run Dask's defaults), which
    neither can pause."""
    base = tmp_path / "small.yaml"
    base.write_text(yaml.safe_dump(small_scenario().to_dict(), sort_keys=False))
    sweep_file = tmp_path / "sobol.yaml"
    sweep_file.write_text(yaml.safe_dump({
        "name": "dask-sobol", "base": base.name, "overrides": TINY,
        "design": {"kind": "sobol", "samples": 2, "seed": 1}, "parameters": KNOWN,
        "seeds": 1}))
    sweep = load_sweep(sweep_file)
    out = run_sweep(sweep_file, scheduler=cluster.address, out=tmp_path / "shared" / "sobol",
                    progress=False)
    assert finished_run_ids(out) == {r.run_id for r in sweep.runs}
    table = pd.read_csv(write_sweep_report(out).parent / "sensitivity.csv")
    reward = table[table["output"] == "rewards_usd"].set_index("parameter")
    assert reward.loc["market.fee_bps", "ST"] == 0.0
    err = capsys.readouterr().err
    assert err.count("wsf sweep: warning: 2 Dask worker(s) run Dask's event-loop profiler") == 1

    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump({
        "name": "dask-study", "base": base.name, "overrides": TINY,
        "parameters": {"rewards.budget.amount": {"low": 100, "high": 1000}},
        "objectives": [{"output": "rewards_usd", "direction": "maximize"}],
        "seeds": 2, "sampler": {"kind": "random", "seed": 0}}))
    folder = run_study(study_file, trials=3, scheduler=cluster.address,
                       out=tmp_path / "shared" / "study", outputs=run_outputs,
                       output_names=RUN_OUTPUTS, progress=False)
    trials = pd.read_parquet(folder / "trials.parquet")
    assert len(trials) == 3 and (trials["state"] == "COMPLETE").all()
    assert trials["rewards_usd"].to_numpy() == pytest.approx(
        trials["rewards.budget.amount"].to_numpy())
    ids = {rid for cell in trials["run_ids"] for rid in json.loads(cell)}
    assert ids == finished_run_ids(folder)
    err = capsys.readouterr().err
    assert err.count("wsf optimize: warning: 2 Dask worker(s) run Dask's event-loop "
                     "profiler") == 1, err
