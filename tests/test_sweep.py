"""Sweeps: sweep-file validation, grid expansion, run ids, local execution, resume, storage.

Runs are the real simulation, shrunk by the sweep's overrides to a few steps on small data so
that the whole file stays within a minute on two shared cores.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from abm import registry
from abm.run import simulate
from abm.scenario import ScenarioError
from abm.sweep import SweepError, SweepRunError, finished_run_ids, load_sweep, run_id, run_sweep
from abm.sweep.spec import canonical_json
from abm.sweep.store import PARAMS_FILE, STAGING_DIR, open_folder
from analysis.sweep import combine
from tests.conftest import ROOT, kill_sweep_when, small_scenario, stored_runs

# Two rounds of FL on 3 clients and a handful of agents: about a second per run.
TINY = {
    "steps": 12,
    "round_every": 6,
    "clients": [{"count": 3, "behaviour": "honest"}],
    "investors": [
        {"strategy": "fundamental", "count": 2, "cash": 500},
        {"strategy": "momentum", "count": 2, "cash": 500},
    ],
    "liquidity_providers": [{"count": 1, "cash": 2000}],
}


@pytest.fixture
def base_file(tmp_path: Path) -> Path:
    """The shared small test scenario, written as a scenario file."""
    path = tmp_path / "scenarios" / "small.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(small_scenario().to_dict(), sort_keys=False))
    return path


def sweep_and_combine(*args, **kwargs) -> Path:
    """`wsf sweep` in two calls: the runs (abm), then the combined tables (analysis)."""
    out = run_sweep(*args, **kwargs)
    combine(out)
    return out


def write_sweep(folder: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def tiny_sweep(base_file: Path, *, grid: dict, seeds: object, name: str = "tiny") -> Path:
    spec = {"name": name, "base": f"scenarios/{base_file.name}", "overrides": TINY,
            "grid": grid, "seeds": seeds}
    path = base_file.parent.parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


# -- sweep files ------------------------------------------------------------------------------


def test_grid_is_the_cartesian_product_of_values_times_seeds(base_file: Path) -> None:
    path = tiny_sweep(base_file, grid={"rewards.policy": ["equal", "mint", "buyback"],
                                       "contribution.method": ["leave_one_out", "data_size"]},
                      seeds=[7, 3])
    sweep = load_sweep(path)
    assert len(sweep.runs) == 3 * 2 * 2
    points = [(r.params["rewards.policy"], r.params["contribution.method"], r.seed)
              for r in sweep.runs]
    assert points[:4] == [("equal", "leave_one_out", 7), ("equal", "leave_one_out", 3),
                          ("equal", "data_size", 7), ("equal", "data_size", 3)]
    assert len(set(points)) == 12
    for run in sweep.runs:
        assert run.scenario.rewards.policy == run.params["rewards.policy"]
        assert run.scenario.contribution.method == run.params["contribution.method"]
        assert run.scenario.seed == run.seed
        assert run.scenario.steps == TINY["steps"]  # overrides apply to every run


@pytest.mark.parametrize("written", [False, True, None])
def test_a_sweep_files_counterfactual_wins_over_the_base(base_file: Path, written: bool | None,
                                                         capsys: pytest.CaptureFixture) -> None:
    """The base turns the twin on (as the shipped baseline does); the sweep file's own
    `counterfactual: false` turns it off for every run, and `wsf validate` prints the
    resolved value. Left out, the base's value holds."""
    from abm.cli import main

    twin_base = base_file.with_name("twin.yaml")
    twin_base.write_text(yaml.safe_dump({**small_scenario().to_dict(), "counterfactual": True},
                                        sort_keys=False))
    spec = {"base": f"scenarios/{twin_base.name}", "overrides": TINY, "seeds": [0, 1],
            "grid": {"rewards.policy": ["equal", "mint"]}}
    if written is not None:
        spec["counterfactual"] = written
    path = base_file.parent.parent / "cf.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    expected = True if written is None else written
    sweep = load_sweep(path)
    assert [r.scenario.counterfactual for r in sweep.runs] == [expected] * 4
    assert sweep.counterfactual is expected
    assert main(["validate", str(path)]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["counterfactual"] is expected


def test_counterfactual_set_twice_in_a_sweep_file_is_refused(base_file: Path) -> None:
    spec = {"base": f"scenarios/{base_file.name}", "seeds": 1, "counterfactual": False,
            "overrides": {**TINY, "counterfactual": True}}
    path = base_file.parent.parent / "twice.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    with pytest.raises(ScenarioError, match="set it in one place"):
        load_sweep(path)


#: Both kinds of file, valid, over the same space: a design sweep and a study.
SHARED = {"base": "scenarios/small.yaml", "seeds": 1, "overrides": {"steps": 12},
          "parameters": {"market.fee_bps": {"low": 5, "high": 10}}}
SWEEP_ONLY = {"design": {"kind": "lhs", "samples": 4}}
STUDY_ONLY = {"objectives": [{"output": "execution_cost_usd", "direction": "minimize"}]}


def _refusal(path: Path, kind: str, load) -> str:
    """The message `load` raises for the file at `path`, with the file and its kind taken
    out (the header reads "<path>: invalid <kind> file: ...")."""
    with pytest.raises(ScenarioError) as err:
        load(path)
    message = str(err.value)
    assert message.startswith(f"{path}: invalid {kind} file: "), message
    return message.removeprefix(f"{path}: invalid {kind} file: ")


@pytest.mark.parametrize(("change", "where"), [
    ({"seeds": 0}, "seeds = 0"),
    ({"seeds": [3, 3]}, "seeds = [3, 3]"),
    ({"seeds": True}, "seeds = True"),
    ({"overrides": {"seed": 3}}, "overrides = "),
    ({"overrides": {"rewards..policy": "mint"}}, "overrides = "),
    ({"parameters": {"run_id": {"low": 1, "high": 2}}}, "parameters = "),
    ({"parameters": {"seed": {"low": 1, "high": 2}}}, "parameters = "),
    ({"parameters": {"market.fee_bps": {"low": 5, "hi": 10}}}, 'parameters["market.fee_bps"].hi'),
    ({"name": "two words"}, "name = 'two words'"),
    ({"name": "n" * 81}, "name = "),
    ({"base": ""}, "base = ''"),
    ({"counterfactual": "yes"}, "counterfactual = 'yes'"),
    ({"counterfactual": True, "overrides": {"counterfactual": False}}, "set it in one place"),
    ({"counterfactual": True, "parameters": {"counterfactual": {"values": [True, False]}}},
     "set it in one place"),
])
def test_a_bad_shared_field_is_refused_alike_in_sweep_and_study_files(
    base_file: Path, change: dict, where: str
) -> None:
    """Sweep and study files share their base schema (`abm.sweep.spec.RunsFile`): the same
    bad value of a shared field gets the same message at the same path in both."""
    from abm.sweep.optimize import load_study
    from analysis.metrics import RUN_OUTPUTS

    folder = base_file.parent.parent
    sweep = folder / "bad-sweep.yaml"
    sweep.write_text(yaml.safe_dump({**SHARED, **SWEEP_ONLY, **change}, sort_keys=False))
    study = folder / "bad-study.yaml"
    study.write_text(yaml.safe_dump({**SHARED, **STUDY_ONLY, **change}, sort_keys=False))
    refused_sweep = _refusal(sweep, "sweep", load_sweep)
    refused_study = _refusal(study, "study",
                             lambda path: load_study(path, outputs=RUN_OUTPUTS))
    assert refused_sweep == refused_study
    assert where in refused_sweep


def test_the_files_of_the_shared_field_test_are_valid(base_file: Path) -> None:
    """The files of the test above, unchanged, load (so each refusal is the change's)."""
    from abm.sweep.optimize import load_study
    from analysis.metrics import RUN_OUTPUTS

    folder = base_file.parent.parent
    (folder / "sweep.yaml").write_text(yaml.safe_dump({**SHARED, **SWEEP_ONLY}))
    (folder / "study.yaml").write_text(yaml.safe_dump({**SHARED, **STUDY_ONLY}))
    assert len(load_sweep(folder / "sweep.yaml").runs) == 4
    assert load_study(folder / "study.yaml", outputs=RUN_OUTPUTS).seeds == [0]


def test_set_of_a_field_the_file_fixes_is_refused_for_sweeps_and_studies(
    base_file: Path,
) -> None:
    """`--set` may not change what the file varies (a grid key, a design's or a study's
    parameter) nor a `counterfactual` the file sets at its top: the file's value would win
    on every run and the setting would do nothing."""
    from abm.sweep.optimize import load_study
    from analysis.metrics import RUN_OUTPUTS

    folder = base_file.parent.parent
    (folder / "sweep.yaml").write_text(yaml.safe_dump(
        {**SHARED, **SWEEP_ONLY, "counterfactual": True}))
    (folder / "study.yaml").write_text(yaml.safe_dump(
        {**SHARED, **STUDY_ONLY, "counterfactual": True}))
    loads = (load_sweep, lambda path, settings: load_study(path, outputs=RUN_OUTPUTS,
                                                           settings=settings))
    for load, name in zip(loads, ("sweep.yaml", "study.yaml"), strict=True):
        for setting, expected in (({"counterfactual": False}, "set it in one place"),
                                  ({"market.fee_bps": 7}, "swept by the file")):
            with pytest.raises(ScenarioError, match=expected) as err:
                load(folder / name, settings=setting)
            assert "(--set)" in str(err.value)
        load(folder / name, settings={"market.pool_tokens": 5000})  # anything else is fine


def test_a_study_files_counterfactual_wins_over_the_base(base_file: Path) -> None:
    from abm.sweep.optimize import load_study
    from analysis.metrics import RUN_OUTPUTS

    twin_base = base_file.with_name("twin.yaml")
    twin_base.write_text(yaml.safe_dump({**small_scenario().to_dict(), "counterfactual": True},
                                        sort_keys=False))
    spec = {"base": f"scenarios/{twin_base.name}", "overrides": TINY, "seeds": 1,
            "counterfactual": False, "parameters": {"market.fee_bps": {"low": 5, "high": 50}},
            "objectives": [{"output": "execution_cost_usd", "direction": "minimize"}]}
    path = base_file.parent.parent / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    study = load_study(path, outputs=RUN_OUTPUTS)
    assert study.counterfactual is False
    assert study.scenario({"market.fee_bps": 10}, 0).counterfactual is False
    del spec["counterfactual"]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert load_study(path, outputs=RUN_OUTPUTS).scenario({"market.fee_bps": 10},
                                                           0).counterfactual is True


def test_seed_count_means_seeds_zero_to_count_minus_one(base_file: Path) -> None:
    sweep = load_sweep(tiny_sweep(base_file, grid={}, seeds=4))
    assert sweep.seeds == [0, 1, 2, 3]
    assert [r.seed for r in sweep.runs] == [0, 1, 2, 3]
    assert [r.scenario.seed for r in sweep.runs] == [0, 1, 2, 3]


def test_run_id_is_short_sha256_of_canonical_resolved_scenario(base_file: Path) -> None:
    sweep = load_sweep(tiny_sweep(base_file, grid={"rewards.policy": ["equal", "mint"]},
                                  seeds=2))
    for run in sweep.runs:
        text = json.dumps(run.scenario.to_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)
        assert run.run_id == hashlib.sha256(text.encode()).hexdigest()[:16]
    assert len({r.run_id for r in sweep.runs}) == 4  # seeds and grid values give new ids


def test_run_ids_do_not_depend_on_grid_order_file_place_or_name(base_file: Path,
                                                                tmp_path: Path) -> None:
    one = load_sweep(tiny_sweep(base_file, grid={"rewards.policy": ["equal", "mint"],
                                                 "contribution.method": ["data_size"]},
                                seeds=2, name="one"))
    elsewhere = tmp_path / "deeper" / "folder"
    elsewhere.mkdir(parents=True)
    two = load_sweep(write_sweep(elsewhere, f"""
        name: two
        base: {base_file}
        overrides: {json.dumps(TINY)}
        grid:
          contribution.method: [data_size]
          rewards.policy: [mint, equal]
        seeds: [1, 0]
    """))
    assert {r.run_id for r in one.runs} == {r.run_id for r in two.runs}
    assert one.fingerprint() != two.fingerprint()  # grid order changes the table layout


def test_named_grid_values_show_their_label_and_apply_their_value(base_file: Path) -> None:
    path = write_sweep(base_file.parent.parent, f"""
        base: scenarios/{base_file.name}
        overrides: {{steps: 12, round_every: 6}}
        grid:
          investors:
            chartists: [{{strategy: momentum, count: 3, cash: 500}}]
            value: [{{strategy: fundamental, count: 2, cash: 800}}]
        seeds: 1
    """, name="named.yaml")
    sweep = load_sweep(path)
    assert sweep.name == "named"  # the file's stem when no name is given
    assert [r.params["investors"] for r in sweep.runs] == ["chartists", "value"]
    assert [(g.strategy, g.count, g.cash) for g in sweep.runs[1].scenario.investors] == [
        ("fundamental", 2, 800.0)]


def test_bad_grid_value_fails_before_any_run_naming_file_and_key(base_file: Path,
                                                                 tmp_path: Path) -> None:
    path = tiny_sweep(base_file, grid={"rewards.policy": ["mint", "airdrop"]}, seeds=2)
    out = tmp_path / "out"
    with pytest.raises(ScenarioError) as err:
        sweep_and_combine(path, workers=1, out=out, progress=False)
    message = str(err.value)
    assert str(path) in message
    assert "grid key 'rewards.policy'" in message
    assert "'airdrop'" in message and "'buyback'" in message  # the value and what is allowed
    assert "\n" not in message
    assert not out.exists()  # nothing ran, nothing was created


def test_value_valid_alone_but_not_in_combination_names_the_grid_point(base_file: Path) -> None:
    path = tiny_sweep(base_file, grid={"contribution.method": ["shapley_exact", "data_size"],
                                       "clients.0.count": [3, 20]}, seeds=1)
    with pytest.raises(ScenarioError) as err:
        load_sweep(path)
    message = str(err.value)
    assert str(path) in message and "shapley_exact" in message
    assert '"clients.0.count": 20' in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("base: scenarios/small.yaml\nseeds: 2\ngird: {rewards.policy: [mint]}\n",
         "gird: unknown field (allowed here: base, counterfactual, design, grid, name, overrides, "
         "parameters, report, "
         "seeds"),
        ("base: scenarios/small.yaml\nseeds: 0\n", "seed count must be at least 1"),
        ("base: scenarios/small.yaml\nseeds: [1, 1]\n", "repeats a seed"),
        ("base: scenarios/small.yaml\nseeds: 2\ngrid: {seed: [1, 2]}\n", "`seeds:` field"),
        ("base: scenarios/small.yaml\nseeds: 2\ngrid: {rewards.policy: []}\n",
         "lists no values"),
        ("base: scenarios/small.yaml\nseeds: 2\ngrid: {rewards.policy: [mint, mint]}\n",
         "twice"),
        ("base: scenarios/small.yaml\nseeds: 2\nseeds: 3\n", "duplicate key 'seeds'"),
        ("base: !!python/object/apply:os.getcwd []\nseeds: 1\n", "object tags"),
        ("base: scenarios/missing.yaml\nseeds: 1\n", "no scenario file"),
        ("seeds: 1\n", "base: required"),
        ("base: scenarios/small.yaml\nseeds: 1\nreport: {confidence: 2}\n",
         "report.confidence = 2: input should be less than 1"),
        ("base: scenarios/small.yaml\nseeds: two\n", "seeds = 'two': give a seed count"),
        ("base: scenarios/small.yaml\nseeds: 1\ngrid: {rewards.policy: mint}\n",
         "grid key 'rewards.policy' = 'mint': give a list of values"),
    ],
)
def test_malformed_sweep_files_are_refused_with_one_paragraph(
    base_file: Path, text: str, expected: str
) -> None:
    path = write_sweep(base_file.parent.parent, text, name="bad.yaml")
    with pytest.raises(ScenarioError) as err:
        load_sweep(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_grid_values_that_resolve_to_one_scenario_are_refused(base_file: Path) -> None:
    path = tiny_sweep(base_file, grid={"rewards.budget.amount": [500, 500.0]}, seeds=1)
    with pytest.raises(ScenarioError, match="resolve to the same scenario"):
        load_sweep(path)


# -- running ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_local_sweep_stores_each_run_once_and_combines_tables(base_file: Path,
                                                              tmp_path: Path) -> None:
    path = tiny_sweep(base_file, grid={"rewards.policy": ["direct", "mint"]}, seeds=2)
    sweep = load_sweep(path)
    out = sweep_and_combine(path, workers=2, out=tmp_path / "out", progress=False)

    assert out == (tmp_path / "out").resolve()
    assert finished_run_ids(out) == {r.run_id for r in sweep.runs}
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(r.run_id for r in sweep.runs)
    assert not (out / STAGING_DIR).exists()
    for run in sweep.runs:
        params = json.loads((out / "runs" / run.run_id / PARAMS_FILE).read_text())
        assert params == {"run_id": run.run_id, "params": run.params, "seed": run.seed}
    spec = yaml.safe_load((out / "sweep.yaml").read_text())
    assert spec["fingerprint"] == sweep.fingerprint()
    assert [r["run_id"] for r in spec["runs"]] == [r.run_id for r in sweep.runs]

    model = pd.read_parquet(out / "combined" / "model.parquet")
    rounds = pd.read_parquet(out / "combined" / "rounds.parquet")
    runs = pd.read_parquet(out / "combined" / "runs.parquet")
    steps, n_rounds, n_clients = TINY["steps"], TINY["steps"] // TINY["round_every"], 3
    assert list(model.columns[:3]) == ["run_id", "rewards.policy", "seed"]
    assert len(model) == 4 * (steps + 1)
    assert model.groupby("run_id").size().eq(steps + 1).all()
    assert len(rounds) == 4 * n_clients * n_rounds
    assert not rounds.duplicated(["run_id", "client", "round"]).any()
    assert sorted(runs["run_id"]) == sorted(r.run_id for r in sweep.runs)
    for run in sweep.runs:
        row = runs.set_index("run_id").loc[run.run_id]
        assert row["rewards.policy"] == run.params["rewards.policy"]
        assert row["seed"] == run.seed
        assert row["policy"] == run.params["rewards.policy"]  # from summarise_run
        assert row["rounds"] == n_rounds


def test_sweep_runs_equal_running_each_config_alone(base_file: Path, tmp_path: Path) -> None:
    path = tiny_sweep(base_file, grid={"rewards.policy": ["buyback", "dividend"]}, seeds=[5])
    sweep = load_sweep(path)
    out = sweep_and_combine(path, workers=2, out=tmp_path / "out", progress=False)
    combined = pd.read_parquet(out / "combined" / "model.parquet")
    base = small_scenario().with_overrides(TINY)
    for run in sweep.runs:
        alone = simulate(base.with_overrides({**run.params, "seed": run.seed}))
        folder = out / "runs" / run.run_id
        for table in ("model", "agents", "rounds"):
            pd.testing.assert_frame_equal(pd.read_parquet(folder / f"{table}.parquet"),
                                          getattr(alone, table))
        mine = combined[combined["run_id"] == run.run_id].drop(
            columns=["run_id", "rewards.policy", "seed", "policy", "method"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, alone.model)


def test_a_worker_learns_once_for_runs_that_learn_the_same(base_file: Path,
                                                           tmp_path: Path) -> None:
    # One worker: the second policy's run replays the first's learning rounds (the same
    # seed, fl, contribution and behaviours) and stores the tables of learning them itself.
    path = tiny_sweep(base_file, grid={"rewards.policy": ["buyback", "dividend"]}, seeds=[5])
    sweep = load_sweep(path)
    out = run_sweep(path, workers=1, out=tmp_path / "out", progress=False)
    base = small_scenario().with_overrides(TINY)
    replayed = []
    for run in sweep.runs:
        folder = out / "runs" / run.run_id
        replayed.append(json.loads((folder / "summary.json").read_text())
                        ["learning_rounds_replayed"])
        alone = simulate(base.with_overrides({**run.params, "seed": run.seed}))
        for table in ("model", "agents", "rounds"):
            pd.testing.assert_frame_equal(pd.read_parquet(folder / f"{table}.parquet"),
                                          getattr(alone, table))
    assert sorted(replayed) == [0, TINY["steps"] // TINY["round_every"]]


def test_rerun_on_same_folder_skips_finished_runs(base_file: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_sweep(base_file, grid={"rewards.policy": ["equal"]}, seeds=2)
    out = sweep_and_combine(path, workers=1, out=tmp_path / "out", progress=False)
    before = stored_runs(out)
    combined_before = pd.read_parquet(out / "combined" / "model.parquet")

    def no_pool(*args, **kwargs):
        raise AssertionError("a finished sweep started a worker pool")

    # Nothing is left to run, so the rerun must not even start workers.
    monkeypatch.setattr("abm.sweep.executor.ProcessPoolExecutor", no_pool)
    again = sweep_and_combine(path, workers=1, out=tmp_path / "out", progress=True)

    assert again == out
    assert stored_runs(out) == before  # not one run rewritten
    assert "2/2" in capsys.readouterr().err  # skipped runs count as done in the progress bar
    pd.testing.assert_frame_equal(pd.read_parquet(out / "combined" / "model.parquet"),
                                  combined_before)


def test_folder_of_another_sweep_is_refused_and_left_untouched(base_file: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "out"
    sweep_and_combine(tiny_sweep(base_file, grid={}, seeds=1), workers=1, out=out, progress=False)
    before = stored_runs(out)
    other = tiny_sweep(base_file, grid={}, seeds=2, name="other")
    with pytest.raises(SweepError) as err:
        sweep_and_combine(other, workers=1, out=out, progress=False)
    assert str(out) in str(err.value) and "different sweep" in str(err.value)
    assert stored_runs(out) == before


def test_non_empty_folder_without_sweep_spec_is_refused(base_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(SweepError, match="not a sweep folder"):
        run_sweep(tiny_sweep(base_file, grid={}, seeds=1), workers=1, out=out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_second_driver_on_a_folder_in_use_is_refused(base_file: Path, tmp_path: Path) -> None:
    path = tiny_sweep(base_file, grid={}, seeds=1)
    out = tmp_path / "out"
    # A live driver holds the folder while the second one starts.
    with open_folder(load_sweep(path), out), pytest.raises(
        SweepError, match="another `wsf sweep` driver is running"
    ):
        sweep_and_combine(path, workers=1, out=out, progress=False)
    assert finished_run_ids(out) == set()
    run_sweep(path, workers=1, out=out, progress=False)  # free again once that driver is gone
    assert len(finished_run_ids(out)) == 1


def test_default_folder_is_sweeps_out_slash_name(base_file: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = sweep_and_combine(tiny_sweep(base_file, grid={}, seeds=1, name="named-sweep"), workers=1,
                    progress=False)
    assert out == (tmp_path / "sweeps-out" / "named-sweep").resolve()
    assert len(finished_run_ids(out)) == 1


def test_failing_runs_are_reported_and_the_others_kept(base_file: Path, tmp_path: Path) -> None:
    # A CIFAR-10 folder whose batch file is garbage passes the schema (only reading the data
    # finds out) and fails when the model loads it: a real run-time failure in a worker.
    garbage = tmp_path / "cifar"
    garbage.mkdir()
    (garbage / "data_batch_1.bin").write_bytes(bytes(range(256)) * 20)
    path = tiny_sweep(base_file, grid={"fl.dataset": {
        "digits": {"name": "digits", "n_samples": 400},
        "broken": {"name": "cifar10", "path": str(garbage)}}}, seeds=1, name="failing")
    good, bad = (run.run_id for run in load_sweep(path).runs)
    out = tmp_path / "out"
    with pytest.raises(SweepRunError) as err:
        run_sweep(path, workers=2, out=out, progress=False)
    assert bad in str(err.value) and "3073-byte CIFAR-10 binary record" in str(err.value)
    assert set(err.value.failed) == {bad}
    assert "3073-byte" in (out / "errors" / f"{bad}.txt").read_text()
    assert finished_run_ids(out) == {good}
    combine(out)
    runs = pd.read_parquet(out / "combined" / "runs.parquet")
    assert list(runs["run_id"]) == [good]
    assert list(runs["fl.dataset"]) == ["digits"]


def test_combine_is_idempotent(base_file: Path, tmp_path: Path) -> None:
    path = tiny_sweep(base_file, grid={"rewards.policy": ["equal", "mint"]}, seeds=1)
    out = sweep_and_combine(path, workers=2, out=tmp_path / "out", progress=False)
    first = {n: pd.read_parquet(out / "combined" / f"{n}.parquet")
             for n in ("model", "rounds", "runs")}
    combine(out)
    for name, frame in first.items():
        pd.testing.assert_frame_equal(pd.read_parquet(out / "combined" / f"{name}.parquet"),
                                      frame)


@pytest.mark.slow
def test_interrupted_sweep_resumes_without_redoing_or_losing_runs(base_file: Path,
                                                                  tmp_path: Path) -> None:
    path = tiny_sweep(base_file, grid={"rewards.policy": ["direct", "mint", "buyback"]},
                      seeds=2)
    sweep = load_sweep(path)
    out = tmp_path / "out"
    kill_sweep_when(path, out, until=lambda: len(finished_run_ids(out)) >= 1)
    survived = stored_runs(out)
    assert 1 <= len(survived) < len(sweep.runs)

    sweep_and_combine(path, workers=2, out=out, progress=False)

    after = stored_runs(out)
    assert set(after) == {r.run_id for r in sweep.runs}
    assert {run: after[run] for run in survived} == survived  # finished runs kept as they were
    assert not (out / STAGING_DIR).exists()  # half-written runs of the dead driver are gone
    runs = pd.read_parquet(out / "combined" / "runs.parquet")
    assert sorted(runs["run_id"]) == sorted(r.run_id for r in sweep.runs)


def test_shipped_policy_by_method_covers_every_policy_and_method() -> None:
    sweep = load_sweep(ROOT / "scenarios" / "sweeps" / "policy_by_method.yaml")
    points = {(r.scenario.rewards.policy, r.scenario.contribution.method) for r in sweep.runs}
    # Every built-in one (the toy components of tests/toy_components.py are registered too).
    policies, methods = ([n for n, c in registry.components(kind).items()
                          if registry.is_builtin(c)] for kind in ("policy", "method"))
    assert points == {(p, m) for p in policies for m in methods}
    assert len(sweep.runs) == len(policies) * len(methods) * len(sweep.seeds)
    assert len(sweep.seeds) >= 3  # enough seeds for a confidence interval


def test_shipped_investor_mix_varies_the_investor_population() -> None:
    sweep = load_sweep(ROOT / "scenarios" / "sweeps" / "investor_mix.yaml")
    mixes = {r.params["investors"]: tuple(sorted({g.strategy for g in r.scenario.investors}))
             for r in sweep.runs}
    assert len(mixes) >= 4
    assert len(set(mixes.values())) == len(mixes)  # every mix differs in its strategies
    assert {s for strategies in mixes.values() for s in strategies} >= {
        "fundamental", "momentum", "mean_reversion", "noise", "manipulator"}


def test_canonical_json_ignores_key_order() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == \
        canonical_json({"a": [1, {"c": 3, "d": 2}], "b": 1}) == '{"a":[1,{"c":3,"d":2}],"b":1}'


def test_run_id_changes_with_any_resolved_field() -> None:
    base = small_scenario()
    assert run_id(base) == run_id(small_scenario())
    assert run_id(base) != run_id(base.with_overrides({"market.fee_bps": 31}))
    assert run_id(base) != run_id(base.with_overrides({"seed": base.seed + 1}))


def test_runs_that_learn_the_same_are_handed_out_together(base_file: Path) -> None:
    from abm.learning_log import learning_key
    from abm.sweep.execute import _by_learning

    path = tiny_sweep(base_file, grid={"rewards.policy": ["buyback", "dividend", "mint"]},
                      seeds=[1, 2])
    runs = load_sweep(path).runs
    ordered = _by_learning(runs)
    assert sorted(r.run_id for r in ordered) == sorted(r.run_id for r in runs)
    keys = [learning_key(r.scenario) for r in ordered]
    assert [keys[0]] * 3 + [keys[3]] * 3 == keys and keys[0] != keys[3]
    # within a key, and across keys, the sweep's own order is kept
    index = {r.run_id: i for i, r in enumerate(runs)}
    for a, b in itertools.pairwise(ordered):
        if learning_key(a.scenario) == learning_key(b.scenario):
            assert index[a.run_id] < index[b.run_id]
    assert learning_key(ordered[0].scenario) == learning_key(runs[0].scenario)
