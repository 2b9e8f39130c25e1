"""Run folders as `wsf report` reads them (`analysis.runs.load_run`): a damaged table (no
rows, a column of the wrong type, NaN or infinite values) is a RunFolderError naming the file
and the column, never an internal error; a fuzz target damages tables at random."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abm.cli import main
from abm.run import simulate, write_run
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
