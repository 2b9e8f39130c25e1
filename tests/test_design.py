"""Design sweeps (SALib): drawing, validation, storage, resume and the sensitivity report.

The known-answer tests run real (tiny) simulations through the sweep machinery: with a
data-size contribution method every round is ranked, so the total allotted reward is
exactly budget x rounds. It depends on the budget and on nothing else, so its total Sobol
index (and Morris mu*) must be 0 for the other parameters, exactly, and the budget must
explain all of its variance.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from abm.cli import main
from abm.scenario import ScenarioError
from abm.sweep import finished_run_ids, load_sweep, run_sweep
from abm.sweep.store import STAGING_DIR
from analysis.sweep import write_sweep_report
from tests.conftest import kill_sweep_when, small_scenario, stored_runs

# One FL round on 3 clients and a few agents: well under a second per run.
TINY = {
    "steps": 6,
    "round_every": 6,
    "contribution": {"method": "data_size"},
    "clients": [{"count": 3, "behaviour": "honest"}],
    "investors": [{"strategy": "momentum", "count": 2, "cash": 500}],
    "liquidity_providers": [{"count": 1, "cash": 2000}],
}
KNOWN = {
    "rewards.budget.amount": {"low": 100, "high": 1000},
    "market.fee_bps": {"low": 5, "high": 100},
    "investors.0.cash": {"low": 100, "high": 1000},
}


@pytest.fixture
def base_file(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small_scenario().to_dict(), sort_keys=False))
    return path


def design_file(base: Path, design: dict, parameters: dict, seeds: object = 1,
                name: str = "design", **extra: object) -> Path:
    path = base.parent / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": base.name, "overrides": TINY,
                                    "design": design, "parameters": parameters,
                                    "seeds": seeds, **extra}, sort_keys=False))
    return path


# -- drawing and validation -------------------------------------------------------------------


def test_sobol_design_has_saltelli_size_and_is_drawn_from_its_seed(base_file: Path) -> None:
    path = design_file(base_file, {"kind": "sobol", "samples": 8, "seed": 3},
                       {**KNOWN, "rewards.policy": {"values": ["buyback", "mint"]}}, seeds=2)
    sweep = load_sweep(path)
    assert len(sweep.points) == 8 * (4 + 2)  # N (D + 2) without second order
    assert [len(p.runs) for p in sweep.points] == [2] * len(sweep.points)
    again = load_sweep(path)
    assert [p.runs for p in again.points] == [p.runs for p in sweep.points]
    other = load_sweep(design_file(base_file, {"kind": "sobol", "samples": 8, "seed": 4},
                                   {**KNOWN, "rewards.policy": {"values": ["buyback", "mint"]}},
                                   seeds=2, name="other"))
    assert [p.runs for p in other.points] != [p.runs for p in sweep.points]
    for point in sweep.points:
        fee = point.params["market.fee_bps"]
        assert isinstance(fee, int) and 5 <= fee <= 100
        # The rounding is visible: the raw draw beside the integer that ran.
        raw = point.sample[1]
        assert fee == min(math.floor(raw), 100)
        assert point.params["rewards.policy"] in ("buyback", "mint")
        for seed, rid in zip(sweep.seeds, point.runs, strict=True):
            run = next(r for r in sweep.runs if r.run_id == rid)
            assert run.scenario.market.fee_bps == fee
            assert run.scenario.rewards.policy == point.params["rewards.policy"]
            assert run.scenario.seed == seed
    assert len({r.run_id for r in sweep.runs}) == len(sweep.runs)


def test_morris_and_lhs_sizes(base_file: Path) -> None:
    morris = load_sweep(design_file(base_file, {"kind": "morris", "trajectories": 3,
                                                "levels": 4}, KNOWN))
    assert len(morris.points) == 3 * (3 + 1)
    lhs = load_sweep(design_file(base_file, {"kind": "lhs", "samples": 7}, KNOWN, name="l"))
    assert len(lhs.points) == 7
    amounts = sorted(p.params["rewards.budget.amount"] for p in lhs.points)
    # A Latin hypercube puts one point in each of the 7 strata of the range.
    assert [int((a - 100) // (900 / 7)) for a in amounts] == list(range(7))


def test_range_defaults_to_the_declared_bounds(base_file: Path) -> None:
    sweep = load_sweep(design_file(base_file, {"kind": "lhs", "samples": 4},
                                   {"market.fee_bps": {}, "fl.val_fraction": {"high": 0.3}}))
    fee, val = sweep.parameters
    assert (fee.kind, fee.low, fee.high) == ("int", 0, 1000)  # MarketSpec: ge=0, le=1000
    assert (val.kind, val.low, val.high) == ("float", 0.05, 0.3)  # FLSpec: ge=0.05


@pytest.mark.parametrize(("parameters", "expected"), [
    ({"market.fee_bps": {"low": 5, "high": 2000}},
     "parameters.market.fee_bps: high = 2000 is above the declared maximum 1000"),
    ({"investors.0.cash": {"high": 900}}, "give `low`: its declared bound is strict (> 0)"),
    ({"market.fee_bps": {"low": 5.5, "high": 50}}, "must be integers"),
    ({"rewards.policy": {"low": 0, "high": 1}}, "is not a number, so it takes no range"),
    ({"market.nope": {"low": 0, "high": 1}}, "does not exist"),
])
def test_bad_ranges_are_refused_with_one_paragraph_and_exit_2(
        base_file: Path, parameters: dict, expected: str, capsys: pytest.CaptureFixture) -> None:
    path = design_file(base_file, {"kind": "lhs", "samples": 4}, parameters)
    with pytest.raises(ScenarioError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_sweep(path)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.parametrize(("design", "expected"), [
    ({"kind": "sobol", "samples": 12}, "power of 2"),
    ({"kind": "morris", "samples": 4}, "needs `trajectories`"),
    ({"kind": "lhs", "samples": 4, "second_order": True}, "sobol designs only"),
])
def test_bad_designs_are_refused(base_file: Path, design: dict, expected: str) -> None:
    with pytest.raises(ScenarioError, match=expected):
        load_sweep(design_file(base_file, design, KNOWN))


def test_a_point_the_scenario_refuses_names_the_point(base_file: Path) -> None:
    # 40 clients are too many for exact Shapley: every point with count 40 is invalid.
    path = design_file(base_file, {"kind": "lhs", "samples": 4},
                       {"clients.0.count": {"low": 1, "high": 40}},
                       overrides={**TINY, "contribution": {"method": "shapley_exact"}})
    with pytest.raises(ScenarioError, match=r"design point \d+, parameter 'clients.0.count'"):
        load_sweep(path)


# -- known answers through the sweep machinery ------------------------------------------------


@pytest.mark.slow
def test_sobol_indices_of_an_output_of_one_parameter(base_file: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    path = design_file(base_file, {"kind": "sobol", "samples": 4, "seed": 1}, KNOWN)
    out = run_sweep(path, workers=2, out=tmp_path / "out", progress=False)
    report = write_sweep_report(out)
    table = pd.read_csv(report.parent / "sensitivity.csv")
    assert list(table.columns) == ["output", "parameter", "S1", "S1_conf", "ST", "ST_conf",
                                   "flags"]
    reward = table[table["output"] == "rewards_usd"].set_index("parameter")
    # A parameter the output does not depend on gets ST = 0 exactly, and so does its interval:
    # its rows A and AB_j hold the same runs, so every bootstrap resample estimates 0 too.
    for dummy in ("market.fee_bps", "investors.0.cash"):
        assert reward.loc[dummy, "ST"] == 0.0
        assert reward.loc[dummy, "ST_conf"] == 0.0
        assert reward.loc[dummy, "S1"] == 0.0
        assert pd.isna(reward.loc[dummy, "flags"])  # nothing to flag (empty in the CSV)
    assert reward.loc["rewards.budget.amount", "ST"] == pytest.approx(1.0, abs=0.35)
    # The accuracy does not depend on the market at all: constant, listed, not analysed.
    text = report.read_text()
    assert "final_accuracy" not in set(table["output"])
    assert "Constant over the design" in text and "`final_accuracy`" in text
    # One seed per point and a tiny design: the report says so.
    assert "fewer than 5" in text
    assert (report.parent / "sensitivity.tex").read_text().startswith("\\begin{table}")
    for fmt in ("png", "pdf"):
        assert (report.parent / "figures" / f"sobol_indices.{fmt}").stat().st_size > 0
    assert "wsf report: warning" in capsys.readouterr().err


@pytest.mark.slow
def test_morris_screening_of_an_output_of_one_parameter(base_file: Path,
                                                        tmp_path: Path) -> None:
    path = design_file(base_file, {"kind": "morris", "trajectories": 3, "levels": 4, "seed": 2},
                       KNOWN)
    out = run_sweep(path, workers=2, out=tmp_path / "out", progress=False)
    report = write_sweep_report(out)
    table = pd.read_csv(report.parent / "sensitivity.csv")
    assert list(table.columns) == ["output", "parameter", "mu_star", "mu_star_conf", "sigma"]
    reward = table[table["output"] == "rewards_usd"].set_index("parameter")
    assert reward.loc["market.fee_bps", "mu_star"] == 0.0
    assert reward.loc["investors.0.cash", "mu_star"] == 0.0
    # One round: reward = amount. SALib's elementary effect is the change of the output per
    # unit of the normalised range (a step of 2/3 of it with p = 4 levels, divided by 2/3):
    # the 900 USD the reward moves across the whole budget range of 900 USD.
    assert reward.loc["rewards.budget.amount", "mu_star"] == pytest.approx(900.0)
    assert reward.loc["rewards.budget.amount", "sigma"] == pytest.approx(0.0, abs=1e-6)
    assert (report.parent / "figures" / "morris_mu_star_sigma.png").is_file()


@pytest.mark.slow
def test_design_sweep_tables_carry_the_values_that_ran(base_file: Path,
                                                       tmp_path: Path) -> None:
    path = design_file(base_file, {"kind": "lhs", "samples": 4},
                       {"market.fee_bps": {"low": 5, "high": 100},
                        "rewards.policy": {"values": {"bb": "buyback", "mt": "mint"}}})
    sweep = load_sweep(path)
    out = run_sweep(path, workers=2, out=tmp_path / "out", progress=False)
    report = write_sweep_report(out)
    runs = pd.read_parquet(out / "combined" / "runs.parquet")
    for point in sweep.points:
        row = runs[runs["run_id"] == point.runs[0]].iloc[0]
        assert row["market.fee_bps"] == point.params["market.fee_bps"]
        assert row["rewards.policy"] == point.params["rewards.policy"]  # the label
        assert row["policy"] == {"bb": "buyback", "mt": "mint"}[row["rewards.policy"]]
    ranks = pd.read_csv(report.parent / "rank_correlations.csv")
    assert set(ranks["parameter"]) == {"market.fee_bps", "rewards.policy"}
    assert ((ranks["rho_ci_low"].fillna(-1) >= -1) & (ranks["rho_ci_high"].fillna(1) <= 1)).all()


# -- resume -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_killed_sobol_sweep_resumes_and_redoes_only_missing_runs(base_file: Path,
                                                                 tmp_path: Path) -> None:
    path = design_file(base_file, {"kind": "sobol", "samples": 2, "seed": 5},
                       {"rewards.budget.amount": {"low": 100, "high": 1000},
                        "market.fee_bps": {"low": 5, "high": 100}}, seeds=2)
    sweep = load_sweep(path)
    out = tmp_path / "out"
    kill_sweep_when(path, out, until=lambda: len(finished_run_ids(out)) >= 2)
    survived = stored_runs(out)
    assert 2 <= len(survived) < len(sweep.runs)
    stored = yaml.safe_load((out / "sweep.yaml").read_text())
    assert [p["runs"] for p in stored["design"]["points"]] == [p.runs for p in sweep.points]

    run_sweep(path, workers=2, out=out, progress=False)
    after = finished_run_ids(out)
    assert after == {r.run_id for r in sweep.runs}
    assert {rid: v for rid, v in stored_runs(out).items() if rid in survived} == survived
    assert not (out / STAGING_DIR).exists()
    table = pd.read_csv(write_sweep_report(out).parent / "sensitivity.csv")
    assert np.isfinite(table["ST"]).all()


def test_shipped_sobol_mechanism_varies_the_mechanism_parameters() -> None:
    from tests.conftest import ROOT

    sweep = load_sweep(ROOT / "scenarios" / "sweeps" / "sobol_mechanism.yaml")
    assert sweep.design is not None and sweep.design.kind == "sobol"
    paths = {p.path for p in sweep.parameters}
    assert {"rewards.budget.amount", "market.fee_bps", "market.pool_tokens",
            "investors.0.cash", "investors.0.params.signal_noise", "rewards.policy"} <= paths
    assert {r.scenario.rewards.policy for r in sweep.runs} == {"buyback", "dividend", "mint"}
    assert all(r.scenario.counterfactual for r in sweep.runs)  # attributable measures
    text = (ROOT / "scenarios" / "sweeps" / "sobol_mechanism.yaml").read_text()
    assert text.startswith("# Question:") and "# Answer" in text


def test_second_order_indices_of_a_product_are_reported_as_pairs(tmp_path: Path) -> None:
    """y = x1 * x2 + 0 * x3 on [0, 1]^3: S2(x1, x2) > 0, x3 has no index at all."""
    from analysis.sweep.sensitivity import sensitivity

    tables = toy_tables(tmp_path, lambda rows: rows[:, 0] * rows[:, 1], samples=256,
                        second_order=True)
    result = sensitivity(tables)
    table = result.table.set_index("parameter")
    assert list(result.table.columns) == ["output", "parameter", "S1", "S1_conf", "ST",
                                          "ST_conf", "S2", "S2_conf", "flags"]
    # Analytic: Var = 7/144, S1 = S2_first = (1/48) / (7/144) = 3/7 each, S12 = 1/7.
    assert table.loc["x1", "S1"] == pytest.approx(3 / 7, abs=0.08)
    assert table.loc["x1 × x2", "S2"] == pytest.approx(1 / 7, abs=0.12)
    assert table.loc["x3", "ST"] == 0.0
    assert np.isnan(table.loc["x1 × x2", "ST"])


# -- sizes checked before anything is drawn (issue 28) ----------------------------------------


def test_a_design_too_big_for_the_memory_is_refused_before_it_is_drawn(
        base_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--max-runs lets a large design through the count; the memory it takes to build is
    checked before SALib draws it (drawing is made to fail here, to prove it never starts)."""
    import abm.sweep.spec

    def never(*args: object) -> None:
        raise AssertionError("the design was drawn")

    monkeypatch.setattr(abm.sweep.spec, "draw", never)
    monkeypatch.setattr(abm.sweep.spec, "memory_room", lambda: 1 << 30)
    path = design_file(base_file, {"kind": "sobol", "samples": 2**19}, KNOWN)
    with pytest.raises(ScenarioError, match=r"the sweep has 2,621,440 runs; building them "
                       r"before the first starts takes about 250\.0 GiB .* more than the "
                       r"1\.0 GiB this process can use"):
        load_sweep(path, max_runs=10**8)


@pytest.mark.slow
def test_wsf_sweep_of_a_huge_design_under_a_memory_limit_exits_2_at_once(
        base_file: Path) -> None:
    from tests.hardening import assert_refused, run_wsf

    path = design_file(base_file, {"kind": "sobol", "samples": 2**19, "second_order": True},
                       KNOWN)
    outcome = run_wsf("sweep", str(path), "--max-runs", str(10**8), "--out",
                      str(base_file.parent / "out"), timeout=60)
    assert_refused(outcome, "wsf sweep: ", "this process can use", seconds=20, peak_mb=600)
    assert not (base_file.parent / "out").exists()


# -- reproducible and checked indices (issue 23) ----------------------------------------------


def toy_tables(tmp_path: Path, function, *, samples: int, kind: str = "sobol",
               dims: int = 3, seed: int = 0, second_order: bool = False):
    """SweepTables of a design over x1..x_dims on [0, 1] whose one output is `function(rows)`,
    without running anything (one 'run' per point, seed 0)."""
    from abm.sweep.design import DesignSpec, Parameter, draw
    from analysis.sweep.loading import SweepTables

    spec = (DesignSpec(kind="morris", trajectories=samples, levels=4, seed=seed)
            if kind == "morris" else DesignSpec(kind=kind, samples=samples, seed=seed,
                                                second_order=second_order))
    parameters = [Parameter(f"x{i}", "float", low=0.0, high=1.0) for i in range(1, dims + 1)]
    rows = draw(spec, parameters)
    points = [{"index": i, "unit": list(map(float, row)), "sample": list(map(float, row)),
               "params": {}, "runs": [f"r{i}"]} for i, row in enumerate(rows)]
    design = {**spec.model_dump(), "parameters": {p.path: p.record() for p in parameters},
              "points": points}
    runs = pd.DataFrame({"run_id": [f"r{i}" for i in range(len(rows))], "seed": 0,
                         "policy": "equal", "method": "data_size", "y": function(rows)})
    empty = pd.DataFrame()
    return SweepTables(path=tmp_path, name="toy", params=[], confidence=0.95,
                       formats=["png"], figures=False, n_planned=len(rows), runs=runs,
                       clients=empty, investors=empty, holders=empty, design=design,
                       seeds=(0,))


def test_bootstrap_seed_is_derived_from_the_design_seed_and_never_zero() -> None:
    from analysis.sweep.sensitivity import bootstrap_seed

    # SALib's Sobol estimator reads seed=0 as "no seed" (numpy's global state).
    assert bootstrap_seed(0) != 0 and bootstrap_seed(None) == bootstrap_seed(0)
    assert bootstrap_seed(0) == bootstrap_seed(0) != bootstrap_seed(1)


def test_intervals_do_not_depend_on_numpy_global_state(tmp_path: Path) -> None:
    from analysis.sweep.sensitivity import sensitivity

    tables = toy_tables(tmp_path, lambda x: x[:, 0] + 0.3 * x[:, 1] ** 2, samples=16)
    np.random.seed(1)
    first = sensitivity(tables).table
    np.random.seed(2)
    np.random.random(100)
    second = sensitivity(tables).table
    pd.testing.assert_frame_equal(first, second)
    assert (first["ST_conf"] > 0).any()  # real intervals, not zeros


def test_sobol_flags_name_each_failed_check() -> None:
    from analysis.sweep.sensitivity import sobol_flags

    assert sobol_flags({"S1": 0.2, "S1_conf": 0.05, "ST": 0.3, "ST_conf": 0.05}) == ""
    # S1 below 0 beyond its interval, S1 > ST, and ST's interval wider than ST.
    assert sobol_flags({"S1": -0.5, "S1_conf": 0.1, "ST": -0.8, "ST_conf": 0.9}) == \
        "S1<0;S1>ST;ST wide"
    assert sobol_flags({"S1": 0.1, "S1_conf": 0.01, "ST": 1.4, "ST_conf": 0.3}) == "ST>1"
    # Within its interval of [0, 1] is not flagged; a tiny interval wider than a tiny index
    # (below WIDE_MIN) resolves "no effect" and is not flagged either.
    assert sobol_flags({"S1": -0.05, "S1_conf": 0.1, "ST": 0.01, "ST_conf": 0.02}) == \
        "S1 wide"


def test_convergence_compares_half_and_full_design_and_recommends_a_size(
        tmp_path: Path) -> None:
    from analysis.sweep.sensitivity import TARGET_HALF_WIDTH, checks_of, convergence, sensitivity

    # y = 4 x1 + x2 (x3 a dummy): S1 = ST = 16/17 and 1/17, 0 for x3.
    tables = toy_tables(tmp_path, lambda x: 4 * x[:, 0] + x[:, 1], samples=64)
    result = sensitivity(tables)
    converged = convergence(tables, result)
    assert (converged.size, converged.half, converged.index) == (64, 32, "ST")
    table = converged.table.set_index("parameter")
    assert table.loc["x3", "ST"] == table.loc["x3", "ST_half"] == 0.0
    full = result.table.set_index("parameter")
    assert table.loc["x1", "ST"] == full.loc["x1", "ST"]
    assert table.loc["x1", "change"] == pytest.approx(
        abs(table.loc["x1", "ST"] - table.loc["x1", "ST_half"]))
    row = converged.summary.iloc[0]
    assert row["max_conf"] == pytest.approx(full["ST_conf"].max())
    wanted = max(64 * (row["max_conf"] / TARGET_HALF_WIDTH) ** 2, 64)
    if row["max_change"] > TARGET_HALF_WIDTH:
        wanted = max(wanted, 128)
    assert converged.recommended == 2 ** math.ceil(math.log2(wanted))
    assert list(checks_of(result).columns) == ["output", "outside", "S1>ST", "wide"]
    # Too small to halve: said, not computed.
    small = convergence(toy_tables(tmp_path, lambda x: x[:, 0], samples=2),
                        sensitivity(toy_tables(tmp_path, lambda x: x[:, 0], samples=2)))
    assert small.recommended is None and "too small" in small.note


@pytest.mark.slow
def test_sensitivity_table_is_identical_with_one_and_two_workers(base_file: Path,
                                                                 tmp_path: Path) -> None:
    path = design_file(base_file, {"kind": "sobol", "samples": 4, "seed": 0},
                       {"rewards.budget.amount": {"low": 100, "high": 1000},
                        "investors.0.cash": {"low": 100, "high": 1000}})
    texts = []
    for workers in (1, 2):
        out = run_sweep(path, workers=workers, out=tmp_path / f"w{workers}", progress=False)
        report = write_sweep_report(out)
        texts.append({name: (report.parent / name).read_text()
                      for name in ("sensitivity.csv", "convergence.csv")})
        assert "## Convergence" in report.read_text()
    assert texts[0] == texts[1]
    table = pd.read_csv(tmp_path / "w1" / "report" / "sensitivity.csv")
    assert (table["ST_conf"] > 0).any()  # real bootstrap intervals were compared
