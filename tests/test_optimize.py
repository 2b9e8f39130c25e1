"""`wsf optimize`: Optuna studies over scenario parameters, stored and resumed like sweeps."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from abm.cli import main
from abm.run import simulate
from abm.scenario import ScenarioError, load_scenario
from abm.sweep import finished_run_ids
from abm.sweep.optimize import JOURNAL_FILE, load_study, run_study
from abm.sweep.store import PARAMS_FILE, STAGING_DIR
from analysis.metrics import RUN_OUTPUTS, run_outputs
from tests.conftest import kill_when, small_scenario, stored_runs
from tests.test_design import TINY

OBJECTIVES = [{"output": "execution_cost_usd", "direction": "minimize"},
              {"output": "rewards_usd", "direction": "maximize"}]
SPACE = {"market.fee_bps": {"low": 5, "high": 100},
         "rewards.budget.amount": {"low": 100, "high": 1000},
         "rewards.policy": {"values": ["buyback", "mint"]}}


def study_file(folder: Path, *, objectives: list | None = None, parameters: dict | None = None,
               seeds: object = 2, name: str = "tiny-study", **extra: object) -> Path:
    base = folder / "small.yaml"
    base.write_text(yaml.safe_dump(small_scenario().to_dict(), sort_keys=False))
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "base": base.name, "overrides": TINY,
        "parameters": parameters or SPACE, "objectives": objectives or OBJECTIVES,
        "seeds": seeds, **extra}, sort_keys=False))
    return path


def optimize(path: Path, out: Path, trials: int, **kwargs: object) -> Path:
    return run_study(path, trials=trials, out=out, outputs=run_outputs,
                     output_names=RUN_OUTPUTS, progress=False, **kwargs)


@pytest.mark.slow
def test_study_runs_trials_and_writes_front_and_scenarios(tmp_path: Path) -> None:
    path = study_file(tmp_path)
    out = optimize(path, tmp_path / "out", 3, workers=2)
    trials = pd.read_parquet(out / "trials.parquet")
    assert len(trials) == 3 and (trials["state"] == "COMPLETE").all()
    assert {"market.fee_bps", "rewards.budget.amount", "rewards.policy"} <= set(trials.columns)
    study = load_study(path, outputs=RUN_OUTPUTS)
    for _, row in trials.iterrows():
        ids = json.loads(row["run_ids"])
        assert len(ids) == 2  # one run per seed, stored like a sweep's
        for seed, rid in zip(study.seeds, ids, strict=True):
            record = json.loads((out / "runs" / rid / PARAMS_FILE).read_text())
            assert record["seed"] == seed
            assert record["params"]["market.fee_bps"] == row["market.fee_bps"]
        for objective in ("execution_cost_usd", "rewards_usd"):
            values = [run_outputs(out / "runs" / rid)[objective] for rid in ids]
            assert row[objective] == pytest.approx(sum(values) / len(values))
        # A one-round run allots the whole budget once: rewards = amount, on every seed.
        assert row["rewards_usd"] == pytest.approx(row["rewards.budget.amount"])
    front = pd.read_csv(out / "pareto.csv")
    assert sorted(front["trial"]) == sorted(trials.loc[trials["pareto"], "trial"])
    assert (out / "pareto.tex").is_file()
    files = sorted((out / "scenarios").glob("*.yaml"))
    assert len(files) == len(front)
    scenario = load_scenario(files[0])  # a file `wsf run` takes
    trial = front.iloc[0]
    assert scenario.market.fee_bps == trial["market.fee_bps"]
    assert scenario.rewards.policy == trial["rewards.policy"]
    result = simulate(scenario)
    assert result.summary["total_reward_usd"] == pytest.approx(
        trial["rewards.budget.amount"])
    assert main(["run", str(files[0]), "--out", str(tmp_path / "run"), "--no-report"]) == 0


@pytest.mark.slow
def test_single_objective_study_writes_the_best_trial(tmp_path: Path) -> None:
    path = study_file(tmp_path, objectives=[OBJECTIVES[1]], seeds=1,
                      sampler={"kind": "random", "seed": 1})
    out = optimize(path, tmp_path / "out", 3, workers=1)
    trials = pd.read_parquet(out / "trials.parquet")
    best = trials.loc[trials["rewards_usd"].idxmax()]
    front = pd.read_csv(out / "pareto.csv")
    assert list(front["trial"]) == [best["trial"]]
    assert len(list((out / "scenarios").glob("*.yaml"))) == 1


@pytest.mark.slow
def test_killed_study_resumes_and_runs_only_missing_trials(tmp_path: Path) -> None:
    path = study_file(tmp_path, seeds=1, sampler={"kind": "random", "seed": 3})
    out = tmp_path / "out"
    kill_when(
        [sys.executable, "-c",
         "import sys; from abm.sweep.optimize import run_study; "
         "from analysis.metrics import RUN_OUTPUTS, run_outputs; "
         "run_study(sys.argv[1], trials=5, out=sys.argv[2], outputs=run_outputs, "
         "output_names=RUN_OUTPUTS, workers=2, progress=False)",
         str(path), str(out)],
        until=lambda: len(finished_run_ids(out)) >= 2)
    survived = stored_runs(out)
    assert len(survived) >= 2 and (out / JOURNAL_FILE).is_file()

    optimize(path, out, 5, workers=2)
    trials = pd.read_parquet(out / "trials.parquet")
    complete = trials[trials["state"] == "COMPLETE"]
    assert len(complete) == 5  # --trials is the total wanted
    killed = trials[trials["reason"] == "killed"]
    assert not killed.empty  # the kill caught trials in flight
    for _, row in killed.iterrows():  # each asked again with its parameters
        retry = trials[trials["retry_of"] == row["trial"]].iloc[0]
        assert retry["market.fee_bps"] == row["market.fee_bps"]
        assert retry["state"] == "COMPLETE"
    # runs of the killed driver were reused, not recomputed
    assert {rid: v for rid, v in stored_runs(out).items() if rid in survived} == survived
    assert not (out / STAGING_DIR).exists()
    # Asking again for the same total runs nothing.
    before = finished_run_ids(out)
    optimize(path, out, 5, workers=2)
    assert finished_run_ids(out) == before
    assert len(pd.read_parquet(out / "trials.parquet")) == len(trials)


@pytest.mark.parametrize(("change", "expected"), [
    ({"objectives": [{"output": "happiness", "direction": "maximize"}]},
     "objectives[0].output = 'happiness': not a run output"),
    ({"parameters": {"market.fee_bps": {"low": 5, "high": 5000}}},
     "high = 5000 is above the declared maximum 1000"),
    ({"parameters": {"market.pool_tokens": {"low": 1, "high": 20000}},
      "overrides": {**TINY, "market": {"seeded_by": "client", "client_cash": 1e6}}},
     "makes an invalid scenario"),
])
def test_bad_study_files_are_refused_with_exit_2(tmp_path: Path, change: dict, expected: str,
                                                 capsys: pytest.CaptureFixture) -> None:
    path = study_file(tmp_path)
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, **change}, sort_keys=False))
    with pytest.raises(ScenarioError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        load_study(path, outputs=RUN_OUTPUTS)
    assert main(["optimize", str(path), "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "never").exists()
    assert main(["validate", str(path)]) == 2


def test_validate_prints_a_valid_study(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["validate", str(study_file(tmp_path))]) == 0
    captured = capsys.readouterr()
    assert "valid study (3 parameters, 2 objective(s), 2 seeds per trial" in captured.err
    assert yaml.safe_load(captured.out)["parameters"]["market.fee_bps"] == {
        "kind": "int", "low": 5, "high": 100}


@pytest.mark.slow
def test_a_folder_of_another_study_is_refused(tmp_path: Path) -> None:
    path = study_file(tmp_path, seeds=1)
    out = optimize(path, tmp_path / "out", 1, workers=1)
    other = study_file(tmp_path, seeds=[5], name="other")
    with pytest.raises(ScenarioError, match="holds a different study"):
        optimize(other, out, 1, workers=1)
    assert math.isfinite(pd.read_parquet(out / "trials.parquet")["rewards_usd"].iloc[0])


def test_shipped_fair_and_cheap_study_is_valid() -> None:
    from tests.conftest import ROOT

    path = ROOT / "scenarios" / "optimize" / "fair_and_cheap.yaml"
    study = load_study(path, outputs=RUN_OUTPUTS)
    assert [o.output for o in study.objectives] == ["reached_clients_pct",
                                                   "attributable_contribution_rho"]
    assert study.counterfactual  # the attributable objective needs the twins
    assert {p.path for p in study.parameters} == {"market.fee_bps", "rewards.policy"}
    text = path.read_text()
    assert text.startswith("# Question:") and "# Answer" in text


# -- a damaged journal (issue 28) --------------------------------------------------------------


def _journal_with_trials(tmp_path: Path, n: int = 3) -> tuple[Path, Path]:
    """A study folder whose journal Optuna wrote with `n` finished trials (a dummy objective,
    no runs); returns (study file, folder)."""
    from abm.sweep.optimize import _open_folder, _optuna_study

    path = study_file(tmp_path, seeds=1, sampler={"kind": "random", "seed": 3})
    folder = tmp_path / "out"
    spec = load_study(path, outputs=RUN_OUTPUTS)
    with _open_folder(spec, folder):
        study = _optuna_study(spec, folder)
        study.optimize(lambda trial: (trial.suggest_float("x", 0, 1), 1.0), n_trials=n)
    return path, folder


def test_a_torn_last_record_is_dropped_reported_and_the_study_appends_cleanly(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from abm.sweep.optimize import _optuna_study

    path, folder = _journal_with_trials(tmp_path)
    journal = folder / JOURNAL_FILE
    for cut in (False, True):  # a cut record appended, the last line cut
        whole = journal.read_bytes()
        torn = whole[-50:-10] if cut else b'{"op_code":4,"worker'
        journal.write_bytes(whole + torn)
        study = _optuna_study(load_study(path, outputs=RUN_OUTPUTS), folder)
        assert f"{journal}: its last record was torn ({len(torn)} bytes" in \
            capsys.readouterr().err
        assert journal.read_bytes().startswith(whole) and len(study.trials) == 3
        assert all(json.loads(line) for line in journal.read_bytes().splitlines())
    study.optimize(lambda trial: (trial.suggest_float("x", 0, 1), 1.0), n_trials=1)
    again = _optuna_study(load_study(path, outputs=RUN_OUTPUTS), folder)
    assert len(again.trials) == 4 and "torn" not in capsys.readouterr().err


def test_half_a_journal_resumes_from_the_trials_in_the_first_half(tmp_path: Path) -> None:
    import os

    from abm.sweep.optimize import _optuna_study

    path, folder = _journal_with_trials(tmp_path, n=4)
    journal = folder / JOURNAL_FILE
    os.truncate(journal, journal.stat().st_size // 2)
    study = _optuna_study(load_study(path, outputs=RUN_OUTPUTS), folder)
    assert 1 <= len(study.trials) < 4 and journal.read_bytes().endswith(b"\n")


@pytest.mark.parametrize("damage", ["garbage in the middle", "binary", "unknown operation"])
def test_a_journal_damaged_before_its_end_stops_with_exit_2_and_is_kept(
        tmp_path: Path, capsys: pytest.CaptureFixture, damage: str) -> None:
    path, folder = _journal_with_trials(tmp_path)
    journal = folder / JOURNAL_FILE
    lines = journal.read_bytes().splitlines(keepends=True)
    bad = {"garbage in the middle": b"garbage here\n", "binary": bytes(range(11, 256)) + b"\n",
           "unknown operation": b'{"op_code": 99}\n'}[damage]
    journal.write_bytes(b"".join([*lines[:2], bad, *lines[2:]]))
    before = journal.read_bytes()
    assert main(["optimize", str(path), "--trials", "4", "--out", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"wsf optimize: {journal}: line 3 of {len(lines) + 1} is not a "
                          "record of Optuna's journal"), err
    assert "Traceback" not in err and journal.read_bytes() == before


def test_study_axes_are_labelled_in_words_with_units() -> None:
    from analysis.optimize import output_label

    assert output_label("execution_cost_usd") == "execution cost (USD)"
    assert output_label("attributable_contribution_rho") == (
        "attributable contribution Spearman ρ")
    assert output_label("allotted_vs_equal_pct") == "allotted vs equal (%)"
    assert output_label("reward_gini") == "reward Gini"


def test_pareto_figure_title_and_axis_labels_fit_inside_the_figure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import analysis.optimize as study_figures

    (tmp_path / "optimize.yaml").write_text(yaml.safe_dump({
        "name": "fair_and_cheap", "seeds": [1, 2],
        "objectives": [{"output": "execution_cost_usd", "direction": "minimize"},
                       {"output": "attributable_contribution_rho", "direction": "maximize"}]}))
    pd.DataFrame({"trial": [0, 1, 2], "state": ["COMPLETE"] * 3, "pareto": [True, True, False],
                  "execution_cost_usd": [10.0, 20.0, 30.0],
                  "attributable_contribution_rho": [0.2, 0.5, 0.1]}).to_parquet(
        tmp_path / "trials.parquet")
    drawn = []
    monkeypatch.setattr(study_figures, "save_figure",
                        lambda figure, *args: drawn.append(figure) or [])
    study_figures.write_study_figures(tmp_path)
    (figure,) = drawn
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    box = figure.bbox
    texts = [figure._suptitle, *(a.xaxis.label for a in figure.axes),
             *(a.yaxis.label for a in figure.axes)]
    for text in texts:
        extent = text.get_window_extent(renderer)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1, text.get_text()
    assert figure.axes[0].get_xlabel() == "execution cost (USD), ↓ better"
    assert figure.axes[0].get_ylabel() == "attributable contribution Spearman ρ, ↑ better"


# -- wsf report on a study folder with damaged trials (issue 28) --------------------------------


def _study_folder(tmp_path: Path, objective=(0.5, 0.2, 0.9), states=("COMPLETE",) * 3) -> Path:
    """A study folder as `wsf report` reads it: `optimize.yaml` and `trials.parquet` (the
    columns `trials_table` writes that the figure uses)."""
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "optimize.yaml").write_text(yaml.safe_dump(
        {"name": "s", "seeds": [1, 2], "objectives": OBJECTIVES}, sort_keys=False))
    pd.DataFrame({"trial": range(len(states)), "state": list(states),
                  "execution_cost_usd": list(objective), "rewards_usd": [1.0, 2.0, 3.0],
                  "pareto": [True, False, True]}).to_parquet(folder / "trials.parquet")
    return folder


def _report(folder: Path, capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    code = main(["report", str(folder)])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_report_on_a_study_folder_draws_its_figure(tmp_path, capsys) -> None:
    folder = _study_folder(tmp_path)
    assert _report(folder, capsys) == (0, [])
    assert (folder / "pareto.png").is_file()


def test_report_on_a_study_leaves_out_and_names_trials_it_cannot_draw(tmp_path, capsys) -> None:
    folder = _study_folder(tmp_path, objective=[0.5, math.nan, 0.9])
    code, err = _report(folder, capsys)
    assert code == 0 and len(err) == 1, err
    assert err[0].startswith("wsf report: warning: trial 1 left out of the figure: ")
    assert "column 'execution_cost_usd' = nan: not a finite number" in err[0]


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda f: (f / "trials.parquet").write_bytes(b"PAR1garbage"), "unreadable Parquet table"),
    (lambda f: pd.read_parquet(f / "trials.parquet").drop(columns=["state"])
     .to_parquet(f / "trials.parquet"), "missing column(s) state"),
    (lambda f: pd.read_parquet(f / "trials.parquet").assign(rewards_usd="x")
     .to_parquet(f / "trials.parquet"), "no completed trial with finite objective values"),
    (lambda f: pd.read_parquet(f / "trials.parquet").iloc[:0]
     .to_parquet(f / "trials.parquet"), "no completed trial"),
    (lambda f: (f / "optimize.yaml").write_text("name: s\nseeds: [1]\nobjectives: 3\n"),
     "not a study spec written by `wsf optimize`"),
], ids=["garbage", "no state", "text objective", "no rows", "spec"])
def test_report_on_an_unusable_study_folder_exits_2_naming_the_file(tmp_path, capsys, damage,
                                                                    expected) -> None:
    folder = _study_folder(tmp_path)
    damage(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, err = _report(folder, capsys)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"wsf report: {folder}/") and expected in err[0], err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
