"""Run folders as `wsf report` reads them (`analysis.runs.load_run`): a damaged table (no
rows, a column of the wrong type, NaN or infinite values) is a RunFolderError naming the file
and the column, never an internal error; a fuzz target damages tables at random. A sweep
report leaves out and lists the runs it cannot read (or that are no longer points of the
sweep), and exits 2 with one paragraph only when none is usable; a fuzz target damages the
runs of a sweep folder at random."""

from __future__ import annotations

import contextlib
import io
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from abm.cli import main
from abm.run import simulate
from abm.run_folder import write_run
from analysis.runs import (
    AGENTS_COLUMNS,
    AGENTS_FILE,
    MODEL_COLUMNS,
    MODEL_FILE,
    ROUNDS_COLUMNS,
    ROUNDS_FILE,
    RunFolderError,
    load_run,
)
from analysis.sweep.loading import skipped_runs
from tests.conftest import small_scenario

COLUMNS = {MODEL_FILE: MODEL_COLUMNS, AGENTS_FILE: AGENTS_COLUMNS, ROUNDS_FILE: ROUNDS_COLUMNS}


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(simulate(small_scenario(steps=20)),
                     tmp_path_factory.mktemp("runs") / "good")


def _damaged(good: Path, folder: Path, file: str, change) -> Path:
    shutil.copytree(good, folder)
    change(pd.read_parquet(good / file)).to_parquet(folder / file, index=False)
    return folder


@pytest.mark.parametrize(("file", "change", "expected"), [
    (MODEL_FILE, lambda t: t.iloc[:0], "the table has no rows"),
    (AGENTS_FILE, lambda t: t.assign(wealth=t["wealth"].astype(str)),
     "column 'wealth' holds "),
    (AGENTS_FILE, lambda t: t.assign(wealth=np.where(t.index == 3, np.nan, t["wealth"])),
     "column 'wealth' = nan in row 3: not a finite number"),
    (MODEL_FILE, lambda t: t.assign(reward_usd=np.inf), "column 'reward_usd' = inf in row 0"),
    (ROUNDS_FILE, lambda t: t.assign(contribution=-np.inf), "column 'contribution' = -inf"),
])
def test_a_damaged_table_is_named_with_its_column(good, tmp_path, file, change, expected):
    folder = _damaged(good, tmp_path / "run", file, change)
    with pytest.raises(RunFolderError, match=str(folder / file)) as info:
        load_run(folder)
    assert expected in str(info.value), str(info.value)


@pytest.mark.slow
def test_report_over_a_folder_named_report_md_exits_2_naming_it(good, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(good, folder)
    (folder / "report.md").mkdir()
    (folder / "report.md" / "mine.txt").write_text("mine")
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"wsf report: {folder / 'report.md'}: cannot write the report"), err
    assert (folder / "report.md" / "mine.txt").read_text() == "mine"


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(file=st.sampled_from(sorted(COLUMNS)), data=st.data())
def test_fuzz_a_randomly_damaged_table_loads_or_is_refused_naming_the_file(
        good, tmp_path_factory, file, data):
    """Drop rows, retype or poison a column the analysis reads: `load_run` either loads the
    run or raises RunFolderError naming the file; never another exception."""
    column = data.draw(st.sampled_from(COLUMNS[file]))
    how = data.draw(st.sampled_from(["rows", "text", "nan", "inf", "none", "drop"]))
    n = data.draw(st.integers(0, 5))

    def change(t: pd.DataFrame) -> pd.DataFrame:
        if how == "rows":
            return t.iloc[:n]
        if how == "drop":
            return t.drop(columns=[column])
        values = {"text": "x", "nan": np.nan, "inf": np.inf, "none": None}[how]
        t = t.astype({column: object})
        t.loc[t.index[: n + 1], column] = values
        return t

    folder = tmp_path_factory.mktemp("fuzz") / "run"
    try:
        _damaged(good, folder, file, change)
    except (TypeError, ValueError, OverflowError):  # pyarrow refuses to write that mix
        return
    try:
        load_run(folder)
    except RunFolderError as exc:
        assert str(folder / file) in str(exc)


# -- sweep folders: runs that cannot be read are left out and listed ------------------------

TINY_SWEEP = {"name": "tiny", "base": "scenarios/small.yaml", "seeds": 2,
              "overrides": {"steps": 12, "round_every": 6},
              "grid": {"rewards.policy": ["equal", "mint"]}, "report": {"figures": False}}


@pytest.fixture(scope="module")
def good_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished sweep folder of 4 tiny runs, its runs simulated in this process (what a
    worker does, without starting a pool)."""
    from abm.sweep import load_sweep
    from abm.sweep.store import begin_run, discard, open_folder, publish_run

    root = tmp_path_factory.mktemp("sweep")
    (root / "scenarios").mkdir()
    (root / "scenarios" / "small.yaml").write_text(
        yaml.safe_dump(small_scenario().to_dict(), sort_keys=False))
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY_SWEEP, sort_keys=False))
    sweep = load_sweep(root / "tiny.yaml")
    out = root / "sw"
    with open_folder(sweep, out):
        for run in sweep.runs:
            staging = begin_run(out, run.run_id)
            try:
                publish_run(simulate(run.scenario), out, staging, run.record())
            finally:
                discard(staging)
    return out


def _sweep_copy(good_sweep: Path, folder: Path) -> tuple[Path, list[str]]:
    shutil.copytree(good_sweep, folder)
    return folder, sorted(p.name for p in (folder / "runs").iterdir())


def _files(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `folder` with its inode and content: what a report must not touch."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _edit_spec(folder: Path, change) -> None:
    spec = yaml.safe_load((folder / "sweep.yaml").read_text())
    change(spec)
    (folder / "sweep.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


SWEEP_DAMAGE = {
    "corrupt table": (lambda d, r: (d / "runs" / r / MODEL_FILE).write_text("garbage"),
                      "unreadable Parquet table"),
    "missing table": (lambda d, r: (d / "runs" / r / AGENTS_FILE).unlink(),
                      "missing agents.parquet"),
    "zero rows": (lambda d, r: pd.read_parquet(d / "runs" / r / MODEL_FILE).iloc[:0]
                  .to_parquet(d / "runs" / r / MODEL_FILE), "the table has no rows"),
    "nan wealth": (lambda d, r: pd.read_parquet(d / "runs" / r / AGENTS_FILE)
                   .assign(wealth=np.nan).to_parquet(d / "runs" / r / AGENTS_FILE),
                   "column 'wealth' = nan"),
    "summary not a mapping": (lambda d, r: (d / "runs" / r / "summary.json").write_text("[1]"),
                              "expected a mapping"),
    "folder not in the spec": (lambda d, r: shutil.copytree(d / "runs" / r,
                                                            d / "runs" / "ffffffffffffffff"),
                               "not a run of the sweep in sweep.yaml"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(SWEEP_DAMAGE))
def test_a_sweep_report_leaves_out_and_lists_the_runs_it_cannot_read(good_sweep, tmp_path,
                                                                     capsys, case):
    folder, runs = _sweep_copy(good_sweep, tmp_path / "sw")
    damage, expected = SWEEP_DAMAGE[case]
    damage(folder, runs[0])
    assert main(["report", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "1 run folder(s) left out of this report" in err and expected in err, err
    report = (folder / "report" / "report.md").read_text()
    assert "## Runs left out" in report and expected in report
    finished = 4 if case == "folder not in the spec" else 3
    assert f"{finished} of 4 runs finished" in report


@pytest.mark.slow
def test_a_sweep_report_leaves_out_points_no_longer_in_the_spec(good_sweep, tmp_path, capsys):
    folder, _ = _sweep_copy(good_sweep, tmp_path / "sw")
    _edit_spec(folder, lambda spec: spec["grid"].update({"rewards.policy": ["equal"]}))
    assert main(["report", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "2 run folder(s) left out" in err
    assert "rewards.policy = 'mint' is no longer a value of the sweep's rewards.policy" in err


@pytest.mark.slow
def test_a_sweep_report_with_no_usable_run_exits_2_naming_the_file(good_sweep, tmp_path,
                                                                   capsys):
    folder, runs = _sweep_copy(good_sweep, tmp_path / "sw")
    for run in runs:
        (folder / "runs" / run / MODEL_FILE).write_text("garbage")
    before = _files(folder / "runs")
    assert main(["report", str(folder)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith(f"wsf report: {folder}: none of its 4 run"), err
    assert f"{folder / 'runs'}/" in err[0] and "unreadable Parquet table" in err[0]
    assert _files(folder / "runs") == before
    assert not (folder / "report").exists()


@pytest.mark.slow
def test_a_sweep_report_that_cannot_be_written_exits_2_naming_it(good_sweep, tmp_path, capsys):
    folder, _ = _sweep_copy(good_sweep, tmp_path / "sw")
    (folder / "report" / "report.md").mkdir(parents=True)
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"wsf report: {folder / 'report' / 'report.md'}: cannot write"), err


@pytest.mark.slow
@settings(max_examples=12, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_a_sweep_with_randomly_damaged_runs_reports_or_is_refused(good_sweep,
                                                                       tmp_path_factory, data):
    """Damage each run's tables at random (or not): `wsf report` exits 0 and lists every run
    it left out, or exits 2 with one paragraph when none is usable; never 70, never a hang,
    and not a byte of the runs changed."""
    folder, runs = _sweep_copy(good_sweep, tmp_path_factory.mktemp("fuzz") / "sw")
    damaged = set()
    for run in runs:
        file = data.draw(st.sampled_from([None, *sorted(COLUMNS)]))
        if file is None:
            continue
        column = data.draw(st.sampled_from(COLUMNS[file]))
        how = data.draw(st.sampled_from(["rows", "text", "nan", "none", "drop", "bytes"]))
        path = folder / "runs" / run / file
        if how == "bytes":
            raw = path.read_bytes()
            cut = data.draw(st.integers(0, len(raw)))
            path.write_bytes(raw[:cut] + data.draw(st.binary(max_size=16)))
            damaged.add(run)
            continue
        t = pd.read_parquet(path)
        if how == "rows":
            t = t.iloc[:data.draw(st.integers(0, 3))]
        elif how == "drop":
            t = t.drop(columns=[column])
        else:
            t = t.astype({column: object})
            t.loc[t.index[:2], column] = {"text": "x", "nan": np.nan, "none": None}[how]
        try:
            t.to_parquet(path, index=False)
        except (TypeError, ValueError, OverflowError):  # pyarrow refuses to write that mix
            continue
        damaged.add(run)
    unreadable = set()
    for run in runs:
        try:
            load_run(folder / "runs" / run)
        except RunFolderError:
            unreadable.add(run)
    before = _files(folder / "runs")
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.alarm(120)
    try:
        with contextlib.redirect_stderr(io.StringIO()) as err:
            code = main(["report", str(folder)])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert code in (0, 2), err.getvalue()
    assert _files(folder / "runs") == before
    left_out = skipped_runs(folder)
    assert unreadable <= set(left_out), (unreadable, left_out)
    if code == 2:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"wsf report: {folder}"), lines
        assert set(left_out) == set(runs), (left_out, lines)
    else:
        report = (folder / "report" / "report.md").read_text()
        assert all(f"`{run}`" in report for run in left_out), (left_out, report[:2000])
        assert f"{len(runs) - len(left_out)} of 4 runs finished" in report


def _hung(signum, frame):
    raise AssertionError("wsf report did not finish within 120 s")
