"""Paths the file system refuses (`abm.paths.check_path`): every `wsf` command names the path
and the limit, exit 2, before reading or writing anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from abm.cli import main
from abm.paths import PathError, check_path, short_name


def test_a_name_over_name_max_is_refused_with_the_limit(tmp_path):
    with pytest.raises(PathError, match=r"--out .*: the name .* is 300 bytes, more than "
                                        r"the 255 the file system allows"):
        check_path(tmp_path / ("a" * 300) / "run", "--out")


def test_a_path_over_path_max_is_refused(tmp_path):
    deep = tmp_path.joinpath(*(["d" * 200] * 25))
    with pytest.raises(PathError, match=r"the path is .* bytes, more than the 4095"):
        check_path(deep, "--out")


def test_a_symbolic_link_loop_is_refused(tmp_path):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(PathError, match="loop of symbolic links"):
        check_path(tmp_path / "a" / "run", "--out")


def test_names_that_fit_and_absent_paths_pass(tmp_path):
    check_path(tmp_path / ("a" * 255), "--out")
    check_path(tmp_path / "missing" / "deeper", "the file")


def test_a_short_name_fits_its_room_and_keeps_names_apart():
    long_a, long_b = "x" * 250 + "a", "x" * 250 + "b"
    assert short_name("run", 10) == "run"
    assert len(short_name(long_a, 200)) <= 200
    assert short_name(long_a, 200) != short_name(long_b, 200)


@pytest.mark.parametrize("command", [
    ["run", "scenarios/baseline.yaml", "--out"],
    ["sweep", "scenarios/sweeps/policy_by_method.yaml", "--out"],
    ["optimize", "scenarios/optimize/fair_and_cheap.yaml", "--out"],
    ["report"],
    ["validate"],
])
def test_every_command_refuses_a_name_too_long_with_exit_2(tmp_path, capsys, command):
    target = tmp_path / ("n" * 300)
    assert main([*command, str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"wsf {command[0]}: ") and "more than the 255" in err, err
    assert "internal error" not in err and list(tmp_path.iterdir()) == []
    assert not Path("sweeps-out").joinpath("n" * 300).exists()
