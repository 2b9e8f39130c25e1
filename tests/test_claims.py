"""Stated answers that re-measure themselves (`analysis.claims`, `wsf check-claims`).

Every shipped single-run scenario with a `claims:` block is re-run and its claims must hold
(the sweeps and the study are re-measured by `make claims`: minutes each); a copy with another
seed fails; malformed blocks are exit 2 with a message naming the file and the field.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from abm.cli import main
from analysis.claims import file_kind, read_claims, reduce

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted(p for p in (ROOT / "scenarios").glob("*.yaml")
                   if "claims" in yaml.safe_load(p.read_text()))
#: Shipped files that state no answer, and why: their numbers are benchmark timings
#: (`make bench`), or the answer lives in another file.
WITHOUT_CLAIMS = {
    "paper_cifar10.yaml": "states costs only (`make bench` rows); its figure is the "
                          "paper-figure sweeps'",
    "paper_figure.yaml": "3-4 h on 2 cores; its answer is paper_figure_small.yaml's, measured",
    "policy_by_method.yaml": "a grid whose report is the answer; it quotes no figure",
}


def test_every_shipped_file_states_its_answer_in_a_claims_block():
    files = [*(ROOT / "scenarios").glob("*.yaml"), *(ROOT / "scenarios/sweeps").glob("*.yaml"),
             *(ROOT / "scenarios/optimize").glob("*.yaml")]
    missing = [p.name for p in files
               if "claims" not in yaml.safe_load(p.read_text()) and p.name not in WITHOUT_CLAIMS]
    assert missing == []
    for path in files:
        if path.name not in WITHOUT_CLAIMS:
            read_claims(path)  # valid, with figures its kind of file can measure


@pytest.mark.slow
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_a_shipped_scenarios_claims_hold(path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["check-claims", str(path)]) == 0, capsys.readouterr().out


@pytest.mark.slow
def test_check_claims_fails_on_a_copy_with_another_seed(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    source = ROOT / "scenarios" / "free_riders.yaml"
    data = yaml.safe_load(source.read_text())
    data["seed"] = data["seed"] + 1
    copy = tmp_path / "free_riders_seed.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["check-claims", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "FAILS" in out and "claimed" in out and "measured" in out


def test_a_claims_block_never_changes_what_runs(tmp_path: Path) -> None:
    from abm.scenario import load_scenario

    source = ROOT / "scenarios" / "free_riders.yaml"
    data = yaml.safe_load(source.read_text())
    data.pop("claims")
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_scenario(bare).to_dict() == load_scenario(source).to_dict()


@pytest.mark.parametrize("block,message", [
    (None, "has no `claims:` block"),
    ([{"figures": [{"figure": "runs.price", "value": 1, "tolerance": 0}]}],
     "is not a figure of a scenario file"),
    ([{"figures": [{"figure": "metrics.x", "value": 1, "tolerance": -1}]}],
     "tolerance"),
    ([{"figures": []}], "figures"),
])
def test_a_malformed_claims_block_is_exit_2_with_a_message(tmp_path: Path, block, message,
                                                           capsys: pytest.CaptureFixture):
    data = yaml.safe_load((ROOT / "scenarios" / "free_riders.yaml").read_text())
    data.pop("claims")
    if block is not None:
        data["claims"] = block
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["check-claims", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wsf check-claims: ") and str(path) in err and message in err


def test_reductions_and_kinds():
    assert reduce([1.0, -3.0, 2.0], "abs_median") == 2.0
    assert reduce([1.0, float("nan"), 3.0], "mean") == 2.0
    assert reduce([1.0, 2.0], "count") == 2.0
    assert math.isnan(reduce([], "max"))
    assert file_kind({"base": "x", "objectives": []}) == "study"
    assert file_kind({"base": "x", "grid": {}}) == "sweep"
    assert file_kind({"name": "s"}) == "scenario"
