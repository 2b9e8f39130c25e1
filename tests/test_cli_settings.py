"""The command line's own settings: `--set KEY=VALUE`, `base:` scenario files, `wsf schema`'s
JSON Schema, and one exit code per meaning (bad input 2, with the command's prefix)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pandas as pd
import pytest
import yaml

from abm import registry
from abm.cli import main
from abm.reference import scenario_reference
from tests.conftest import ROOT, small_scenario


def scenario_file(folder: Path, name: str = "small.yaml", **overrides) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(small_scenario(**overrides).to_dict()))
    return path


def wsf(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# -- --set ---------------------------------------------------------------------------------------

def test_set_changes_fields_by_dotted_path_with_yaml_typed_values(tmp_path, capsys) -> None:
    file = scenario_file(tmp_path)
    code, out, err = wsf(capsys, "validate", file, "--set", "steps=20", "--set",
                         "rewards.policy=mint", "--set", "investors.1.count=7", "--set",
                         "rewards.budget={kind: constant, amount: 7.5}", "--set", "steps=40")
    assert code == 0, err
    resolved = yaml.safe_load(out)
    assert resolved["steps"] == 40  # a key set twice: the last value
    assert resolved["rewards"]["policy"] == "mint"
    assert resolved["rewards"]["budget"] == {"kind": "constant", "amount": 7.5}
    assert resolved["investors"][1]["count"] == 7
    assert resolved["investors"][0]["count"] == 3  # untouched
    assert "valid (4 clients, 40 steps, 4 FL rounds)" in err


@pytest.mark.parametrize(("setting", "expected"), [
    ("steps='20'", "steps = '20': input should be a valid integer"),
    ("rewards.budget.amount=-5", "rewards.budget.amount = -5: input should be greater than "
                                 "or equal to 0"),
    ("rewards.polcy=mint", "rewards.polcy: does not exist in the scenario: 'rewards.polcy' "
                           "is not one of ['budget', 'params', 'policy']"),
    ("investors.9.count=1", "investors.9.count: does not exist: investors.9 needs a list index "
                            "from 0 to 4"),
])
def test_a_bad_set_value_gets_the_one_paragraph_message_and_exit_2(
        tmp_path, capsys, setting: str, expected: str) -> None:
    file = scenario_file(tmp_path)
    for command in ("validate", "run"):
        code, _out, err = wsf(capsys, command, file, "--set", setting,
                             *(["--out", tmp_path / "run"] if command == "run" else []))
        assert code == 2
        assert err.startswith(f"wsf {command}: {file} (command line): a problem: ")
        assert expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_malformed_set_is_refused_by_the_parser_with_exit_2(tmp_path, capsys) -> None:
    file = scenario_file(tmp_path)
    for bad in ("steps", "=3", "rewards..policy=mint", "steps=[1,"):
        with pytest.raises(SystemExit) as stopped:
            main(["validate", str(file), "--set", bad])
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert "wsf validate: error: argument --set" in err, err


def test_run_with_set_writes_the_set_scenario_and_a_run_shorter_than_a_round_says_why(
        tmp_path, capsys) -> None:
    file = scenario_file(tmp_path)
    code, _, err = wsf(capsys, "run", file, "--steps", "5", "--out", tmp_path / "short")
    assert code == 2
    assert "steps = 5: at least one FL round must run, because contributions" in err
    assert "--steps 5 --set round_every=5" in err
    code, _out, err = wsf(capsys, "run", file, "--steps", "5", "--set", "round_every=5",
                         "--set", "rewards.policy=mint", "--no-report",
                         "--out", tmp_path / "short")
    assert code == 0, err
    config = yaml.safe_load((tmp_path / "short" / "config.yaml").read_text())
    scenario = config.get("scenario", config)
    assert (scenario["steps"], scenario["round_every"]) == (5, 5)
    assert scenario["rewards"]["policy"] == "mint"
    assert len(pd.read_parquet(tmp_path / "short" / "model.parquet")) == 6
    assert len(pd.read_parquet(tmp_path / "short" / "rounds.parquet")) == 4  # 1 round x 4


def test_set_on_a_sweep_is_merged_over_its_overrides_but_not_over_the_grid_or_seed(
        tmp_path, capsys) -> None:
    scenario_file(tmp_path)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "s", "base": "small.yaml", "grid": {"rewards.policy": ["equal", "mint"]},
        "seeds": 2, "overrides": {"investors.0.count": 1, "steps": 20}}))
    code, out, err = wsf(capsys, "validate", sweep, "--set", "steps=10",
                         "--set", "market.fee_bps=50")
    assert code == 0, err
    assert yaml.safe_load(out)["overrides"] == {"investors.0.count": 1, "steps": 10,
                                                "market.fee_bps": 50}
    for setting, expected in (
            ("rewards.policy=dividend", "rewards.policy = 'dividend': a field the file does "
                                        "not vary; this one is swept by the file"),
            ("seed=4", "seed = 4: a field other than the seed, which the file's `seeds:` "
                       "field sets"),
            ("steps=-1", "steps = -1: input should be greater than or equal to 1")):
        for command in ("validate", "sweep"):
            code, out, err = wsf(capsys, command, sweep, "--set", setting,
                                 *(["--out", tmp_path / "out"] if command == "sweep" else []))
            assert code == 2 and err.startswith(f"wsf {command}: {sweep} (--set)"), err
            assert expected in err, err
    assert not (tmp_path / "out").exists()


def test_set_on_a_study_is_merged_over_its_overrides(tmp_path, capsys) -> None:
    from tests.test_optimize import study_file

    path = study_file(tmp_path)
    code, out, err = wsf(capsys, "validate", path, "--set", "steps=20")
    assert code == 0, err
    assert yaml.safe_load(out)["overrides"]["steps"] == 20
    code, out, err = wsf(capsys, "optimize", path, "--set", "market.fee_bps=-1",
                         "--out", tmp_path / "out")
    assert code == 2 and "market.fee_bps = -1" in err and err.startswith("wsf optimize: ")


# -- base: ---------------------------------------------------------------------------------------

def test_a_scenario_file_starts_from_its_base_with_the_overrides_merge_rule(
        tmp_path, capsys) -> None:
    (tmp_path / "lib").mkdir()
    scenario_file(tmp_path / "lib", "base.yaml")
    (tmp_path / "mid.yaml").write_text("base: lib/base.yaml\nrewards.policy: mint\n"
                                       "name: mid\n")
    (tmp_path / "top.yaml").write_text("base: mid.yaml\nsteps: 20\n"
                                       "investors.0.count: 5\n")
    (tmp_path / "whole.yaml").write_text("base: lib/base.yaml\nrewards: {policy: mint}\n")
    from abm.scenario import load_scenario

    top = load_scenario(tmp_path / "top.yaml")
    base = small_scenario()
    assert (top.name, top.steps, top.rewards.policy) == ("mid", 20, "mint")
    assert top.investors[0].count == 5 and top.investors[1].count == 3
    # A dotted path keeps the rest of its section; a whole section replaces it.
    assert top.rewards.budget == base.rewards.budget
    whole = load_scenario(tmp_path / "whole.yaml")
    assert whole.rewards.policy == "mint" and whole.rewards.budget.amount == 1000.0
    assert top.source == str(tmp_path / "top.yaml")
    code, _out, err = wsf(capsys, "validate", tmp_path / "top.yaml")
    assert code == 0 and "valid (4 clients, 20 steps, 2 FL rounds)" in err


@pytest.mark.parametrize(("text", "expected"), [
    ("base: nope.yaml\n", "base = 'nope.yaml': an existing scenario file; there is none at "),
    ("base: loop.yaml\nsteps: 20\n", "the chain of base files loops: "),
    ("base: 3\n", "base = 3: a scenario file to start from"),
    ("base: small.yaml\nrewards.policy: airdrop\n",
     "rewards.policy = 'airdrop': allowed values are "
     + registry.or_list(registry.names("policy"))),
    ("base: small.yaml\nrewards.polcy: mint\n", "rewards.polcy: does not exist in the scenario"),
])
def test_a_bad_base_gets_one_paragraph_naming_the_file_and_exit_2(
        tmp_path, capsys, text: str, expected: str) -> None:
    scenario_file(tmp_path)
    bad = tmp_path / "loop.yaml"
    bad.write_text(text)
    code, _out, err = wsf(capsys, "validate", bad)
    assert code == 2 and err.startswith(f"wsf validate: {bad}: ")
    assert expected in err and len(err.strip().splitlines()) == 1


# -- wsf schema ----------------------------------------------------------------------------------

def test_schema_prints_a_json_schema_that_shipped_scenarios_satisfy(capsys) -> None:
    import jsonschema

    code, out, _ = wsf(capsys, "schema")
    assert code == 0
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    rewards = schema["$defs"]["RewardsSpec"]["properties"]
    assert rewards["policy"]["enum"] == list(registry.names("policy"))
    assert rewards["budget"]["properties"]["kind"]["enum"] == list(registry.names("budget"))
    behaviour = schema["$defs"]["ClientGroup"]["properties"]["behaviour"]
    assert behaviour["enum"] == list(registry.names("behaviour"))
    validator = jsonschema.Draft202012Validator(schema)
    for file in sorted((ROOT / "scenarios").glob("*.yaml")):
        assert list(validator.iter_errors(yaml.safe_load(file.read_text()))) == [], file
    bad = yaml.safe_load((ROOT / "scenarios" / "baseline.yaml").read_text())
    bad["rewards"]["policy"] = "airdrop"
    bad["stepz"] = 3
    assert len(list(validator.iter_errors(bad))) == 2
    code, out, _ = wsf(capsys, "schema", "--markdown")
    assert code == 0
    # The committed file is this text from the built-in registry (tests/test_reference.py).
    assert out == scenario_reference()


# -- exit codes ----------------------------------------------------------------------------------

def test_viz_on_a_busy_port_is_bad_input_with_the_commands_prefix(tmp_path, capsys) -> None:
    file = scenario_file(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = wsf(capsys, "viz", file, "--port", port)
    assert code == 2
    assert err.startswith(f"wsf viz: --port = {port}: the port on 127.0.0.1 is already in use")
    code, _out, err = wsf(capsys, "viz", file, "--set", "steps=0")
    assert code == 2 and err.startswith(f"wsf viz: {file} (command line): a problem: steps = 0")


def test_report_on_a_study_folder_draws_its_figures(tmp_path, capsys) -> None:
    (tmp_path / "optimize.yaml").write_text(yaml.safe_dump({
        "name": "s", "seeds": [1],
        "objectives": [{"output": "execution_cost_usd", "direction": "minimize"}]}))
    code, _, err = wsf(capsys, "report", tmp_path)
    assert code == 2 and "a study folder without trials.parquet" in err
    pd.DataFrame({"trial": [0, 1], "state": ["COMPLETE", "COMPLETE"], "pareto": [True, False],
                  "execution_cost_usd": [3.0, 2.0]}).to_parquet(tmp_path / "trials.parquet")
    code, out, err = wsf(capsys, "report", tmp_path)
    assert code == 0, err
    assert out.strip() == f"figures: {tmp_path / 'pareto.png'}, {tmp_path / 'pareto.pdf'}"
    assert (tmp_path / "pareto.png").stat().st_size > 10_000


@pytest.mark.slow
def test_commands_that_do_not_train_never_import_torch(tmp_path) -> None:
    import subprocess
    import sys

    file = scenario_file(tmp_path)
    code = ("import sys; from abm.cli import main; main(sys.argv[1:]); "
            "import sys as s; print('torch' in s.modules, file=s.stderr)")
    for args in (["validate", str(file)], ["schema"], ["viz", str(file), "--set", "steps=0"]):
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                              text=True, cwd=ROOT, timeout=120)
        assert done.stderr.strip().splitlines()[-1] == "False", (args, done.stderr)
    # `wsf report` of a run, a sweep or a study, and the model itself, import it no more.
    done = subprocess.run([sys.executable, "-c", "import sys, abm.model, analysis.report, "
                           "analysis.sweep, analysis.optimize; print('torch' in sys.modules)"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.stdout.strip() == "False", done.stderr
