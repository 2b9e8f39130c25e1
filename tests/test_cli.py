"""The `wsf` command as a user meets it: clear one-paragraph errors, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, small_scenario

WSF = [sys.executable, "-m", "abm.cli"]


def wsf(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*WSF, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def _scenario_file(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small_scenario(**overrides).to_dict()))
    return path


def test_help_lists_every_subcommand_and_points_to_the_reference():
    out = wsf("--help").stdout
    for cmd in ("validate", "schema", "run", "report", "viz", "sweep"):
        assert cmd in out
    assert "docs/scenario-reference.md" in out


def test_validate_recognises_a_sweep_file_and_checks_every_run():
    proc = wsf("validate", "scenarios/sweeps/policy_by_method.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "valid sweep (150 runs, each validated" in proc.stderr
    assert yaml.safe_load(proc.stdout)["grid"]["rewards.policy"][0] == "equal"


def test_validate_refuses_a_sweep_whose_grid_breaks_the_scenario(tmp_path):
    base = _scenario_file(tmp_path)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({"base": base.name, "seeds": 1,
                                     "grid": {"contribution.params": [{"eps_betwen": 0.1}]}}))
    proc = wsf("validate", str(sweep))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "contribution.params.eps_betwen = 0.1: unknown parameter" in proc.stderr


def test_bad_file_gets_one_paragraph_and_exit_code_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: -3\nrewards: {policy: airdrop}\n")
    proc = wsf("validate", str(bad))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(bad) in proc.stderr and "rewards.policy = 'airdrop'" in proc.stderr
    assert "steps = -3" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_strategy_parameter_is_caught_by_validate(tmp_path):
    path = _scenario_file(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["investors"][1]["params"] = {"lookbak": 5}
    path.write_text(yaml.safe_dump(data))
    proc = wsf("validate", str(path))
    assert proc.returncode == 2 and "investors[1].params" in proc.stderr
    assert "unknown parameter" in proc.stderr


@pytest.mark.slow
def test_run_writes_a_folder_and_prints_a_summary(tmp_path):
    out = tmp_path / "run"
    proc = wsf("run", str(_scenario_file(tmp_path)), "--out", str(out), "--steps", "10",
               "--check")
    assert proc.returncode == 0, proc.stderr
    assert "run folder:" in proc.stdout and "c00" in proc.stdout
    assert (out / "model.parquet").is_file()
    assert sorted(p.name for p in (out / "figures").glob("*.png"))
    assert f"report: {out / 'report.md'}" in proc.stdout and (out / "report.md").is_file()


@pytest.mark.slow
def test_run_without_report_says_how_to_get_it(tmp_path):
    out = tmp_path / "run"
    proc = wsf("run", str(_scenario_file(tmp_path)), "--out", str(out), "--steps", "10",
               "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert f"`wsf report {out}` writes it" in proc.stdout
    assert not (out / "report.md").exists() and not (out / "figures").exists()


def test_run_refuses_an_existing_output_folder(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    proc = wsf("run", str(_scenario_file(tmp_path)), "--out", str(out))
    assert proc.returncode == 2 and "already exists" in proc.stderr
    assert list(out.iterdir()) == []


def test_bad_file_leaves_no_output_folder(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("clients: [{count: 2, behaviour: honset}]\n")
    proc = wsf("run", str(bad), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2 and not (tmp_path / "run").exists()


def test_report_on_a_missing_folder_is_a_clear_error(tmp_path):
    proc = wsf("report", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "no such folder" in proc.stderr


@pytest.mark.slow
def test_sweep_then_report_through_the_command_line(tmp_path):
    base = _scenario_file(tmp_path, steps=10)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "cli", "base": base.name, "grid": {"rewards.policy": ["equal", "buyback"]},
        "seeds": 1, "overrides": {"investors.0.count": 1}}))
    out = tmp_path / "sweep-out"
    proc = wsf("sweep", str(sweep), "--workers", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert len(list((out / "runs").iterdir())) == 2
    assert f"report: {out / 'report' / 'report.md'}" in proc.stdout
    assert (out / "combined" / "runs.parquet").is_file()
    proc = wsf("report", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "report" / "report.md").is_file()


@pytest.mark.slow
def test_bad_sweep_value_is_refused_before_any_run(tmp_path):
    base = _scenario_file(tmp_path)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "bad", "base": base.name, "grid": {"rewards.policy": ["equal", "airdrop"]},
        "seeds": 2}))
    proc = wsf("sweep", str(sweep), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "rewards.policy" in proc.stderr and "airdrop" in proc.stderr
    assert not (tmp_path / "out").exists()
