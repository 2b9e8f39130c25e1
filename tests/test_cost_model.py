"""The cost model behind `wsf validate`'s expected run time (abm/cost_model.py)."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from abm.cost_model import (
    DEFAULT_PATH,
    FEATURES,
    PHASES,
    REFERENCE_LEARNING,
    TWIN_OF,
    CostModel,
    Sizes,
    design,
    fit,
    sizes_of,
)
from abm.scenario import load_scenario, parse_scenario
from bench.scale import FIT_METHODS, workload

BASE = Sizes(clients=100, per_round=20, investors=500, lps=10, watched=5000, steps=50,
             rounds=5, active=250.0, method="gtg_shapley")


def _grid() -> list[Sizes]:
    rng = np.random.default_rng(0)
    out = []
    for method in ("gtg_shapley", "leave_one_out"):
        for _ in range(14):
            c = int(rng.integers(5, 2000))
            out.append(Sizes(
                clients=c, per_round=int(rng.integers(1, min(c, 60) + 1)),
                investors=int(rng.integers(10, 5000)), lps=int(rng.integers(1, 40)),
                watched=int(rng.integers(10, 50_000)), steps=int(rng.integers(10, 300)),
                active=float(rng.integers(5, 5000)),
                rounds=int(rng.integers(1, 30)), agents_every=int(rng.integers(1, 50)),
                samples_per_client=float(rng.integers(20, 200)), method=method))
    return out


def test_the_fit_recovers_the_costs_that_made_a_synthetic_table():
    """Seconds made exactly from known costs per unit of work: the fit finds those costs,
    R^2 is 1, every held-out (leave-one-out) run is predicted exactly, and a twin's time
    is its measured share of the phases it repeats, less their fixed part."""
    grid = _grid()
    rng = np.random.default_rng(1)
    truth = {phase: rng.uniform(1e-6, 1e-3, len(terms)) for phase, terms in FEATURES.items()}
    truth["contribution/leave_one_out"] = np.array([0.01, 0.002, 0.0])
    rows = []
    for s in grid:
        key = "contribution/leave_one_out" if s.method == "leave_one_out" else "contribution"
        seconds = {p: float(design(p, [s])[0] @ truth[key if p == "contribution" else p])
                   for p in FEATURES}
        # The twin repeats the phases but not their fixed part (`1` terms: setup, tables).
        once = truth["setup"][0] + truth["tables"][0]
        seconds["twin"] = 0.9 * (sum(seconds[p] for p in TWIN_OF) - once)
        rows.append({**dataclasses.asdict(s), "seconds": seconds})
    got = fit(rows)
    for phase, coefficients in truth.items():
        if phase.startswith("contribution"):
            method = "leave_one_out" if "/" in phase else "gtg_shapley"
            fitted = got["contribution"][method]
        else:
            fitted = got["phases"][phase]
        np.testing.assert_allclose(fitted["coefficients"], coefficients, rtol=1e-6,
                                   atol=1e-12)
        assert fitted["r2"] == pytest.approx(1.0)
        assert fitted["loo_max"] == pytest.approx(0.0, abs=1e-6)
        assert fitted["n"] == (14 if phase.startswith("contribution") else 28)
    assert got["twin"]["coefficients"] == [pytest.approx(0.9)]


def test_a_cost_per_unit_of_work_is_never_negative():
    """Noise that a plain least-squares fit would follow below zero: the fit keeps every
    cost >= 0 (so a larger study never predicts a shorter run)."""
    grid = _grid()
    rng = np.random.default_rng(2)
    rows = [{**dataclasses.asdict(s),
             "seconds": {p: float(rng.uniform(0.1, 2.0)) for p in FEATURES}} for s in grid]
    got = fit(rows)
    for fitted in [*got["phases"].values(), *got["contribution"].values()]:
        assert min(fitted["coefficients"]) >= 0


def test_the_committed_model_loads_and_names_its_machine_and_fit():
    model = CostModel.load()
    data = model.data
    assert DEFAULT_PATH.name == "cost_model.json"
    assert data["command"] == "python -m bench.scale --fit"
    assert data["machine"]["cores"] >= 1 and data["machine"]["description"]
    assert set(data["fit"]["phases"]) == set(FEATURES) - {"contribution"}
    assert set(data["fit"]["contribution"]) == set(FIT_METHODS)
    assert data["heldout"]["runs"] and data["heldout"]["median_abs_error"] is not None
    # The fit's own arithmetic on the committed measurements: refitting them gives the
    # committed coefficients.
    again = fit(data["measurements"])
    for phase, fitted in data["fit"]["phases"].items():
        np.testing.assert_allclose(again["phases"][phase]["coefficients"],
                                   fitted["coefficients"], rtol=1e-6, atol=1e-15)
    predicted = model.predict(BASE)
    assert list(predicted) == list(PHASES)
    assert all(v >= 0 and math.isfinite(v) for v in predicted.values())


@pytest.mark.parametrize("field", ["clients", "per_round", "investors", "lps", "watched",
                                   "active", "steps", "rounds", "samples_per_client"])
def test_the_prediction_grows_with_every_size(field):
    model = CostModel.load()
    before = model.predict(BASE)
    for factor in (2, 10):
        value = getattr(BASE, field) * factor
        bigger = dataclasses.replace(BASE, **{field: value})
        if field == "per_round":
            bigger = dataclasses.replace(bigger, clients=max(BASE.clients, value))
        after = model.predict(bigger)
        for phase in PHASES:
            assert after[phase] >= before[phase], (field, phase)
        assert sum(after.values()) >= sum(before.values())
    with_twin = model.predict(dataclasses.replace(BASE, twin=True))
    assert with_twin["twin"] > 0 == model.predict(BASE)["twin"]


def test_the_sizes_of_a_scenario():
    scenario = parse_scenario(workload(200, 20, 400, 30, 10, lps=7, counterfactual=True),
                              source="test")
    s = sizes_of(scenario)
    assert (s.clients, s.per_round, s.investors, s.lps, s.steps, s.rounds) == (
        200, 20, 400, 7, 30, 3)
    assert s.watched == 400 * 10 and s.twin and s.samples_per_client == 40
    assert s.active == 400  # activation 1: every investor acts every step
    every = parse_scenario(workload(50, 50, 40, 20, None), source="test")
    assert sizes_of(every).watched == 40 * 50  # no watchlist: every token
    baseline = sizes_of(load_scenario("scenarios/baseline.yaml"))
    assert baseline.per_round == baseline.clients  # no sampling: every client
    assert baseline.active == 30 * 0.5 + 10 * 0.5 + 25 * 0.5 + 35  # activation per group


def test_the_line_names_machine_fit_and_what_it_cannot_know():
    model = CostModel.load()
    line = model.describe(parse_scenario(workload(100, 20, 400, 30, 10), source="test"))
    assert line.startswith("expected run time on the reference machine (")
    assert "python -m bench.scale --fit" in line and "held-out" in line
    assert "learning phases" not in line  # the fitted learning workload
    other = model.describe(load_scenario("scenarios/baseline.yaml"))
    assert "learning phases scaled to digits/mlp by ratios" in other and "twin" in other
    cuda = load_scenario("scenarios/baseline.yaml").with_overrides({"fl.device": "cuda"})
    assert "device cuda: learning phases at the CPU's rate" in model.describe(cuda)
    unknown = dataclasses.replace(BASE, method="a_method_never_fitted")
    assert math.isnan(model.predict(unknown)["contribution"])


def _with_ratios(pair: str, train: float, per_inverse_batch: float,
                 lines: dict[str, dict[str, float]], data_ratio: float = 1.0) -> CostModel:
    data = copy.deepcopy(CostModel.load().data)
    data["learning"]["pairs"] = {pair: {"train": train,
                                        "train_per_inverse_batch": per_inverse_batch,
                                        "evaluation": lines, "data": data_ratio}}
    return CostModel(data)


def test_a_learning_pair_scales_the_learning_phases_by_its_ratios():
    """Training: the fitted per-sample term x (train + per_inverse_batch / batch) x local
    epochs, the per-round term unchanged; contributions: the method's line in the utility
    samples (leave-one-out's for a method not probed); setup: its per-sample term x the data
    ratio; nothing else moves."""
    model = CostModel.load()
    base = dataclasses.replace(BASE, learning="digits/mlp", utility_samples=200.0,
                               local_epochs=3, batch_size=16)
    scaled = _with_ratios("digits/mlp", 5.0, 32.0, {
        "gtg_shapley": {"intercept": 2.0, "slope": 0.01},
        "leave_one_out": {"intercept": 4.0, "slope": 0.0}}, data_ratio=7.0)
    reference = model.predict(dataclasses.replace(base, learning=REFERENCE_LEARNING,
                                                  local_epochs=1))
    got = scaled.predict(base)
    per_round, per_sample = model.data["fit"]["phases"]["fl"]["coefficients"]
    trained = base.rounds * base.per_round * base.samples_per_client
    assert got["fl"] == pytest.approx(per_round * base.rounds
                                      + per_sample * trained * (5.0 + 32.0 / 16) * 3)
    assert got["contribution"] == pytest.approx(reference["contribution"] * (2.0 + 0.01 * 200))
    cosine = dataclasses.replace(base, method="cosine")
    assert scaled.predict(cosine)["contribution"] == pytest.approx(
        4.0 * model.predict(dataclasses.replace(cosine, learning=REFERENCE_LEARNING))[
            "contribution"])
    setup = model.data["fit"]["phases"]["setup"]
    per_sample_setup = setup["coefficients"][setup["terms"].index("samples")]
    assert got["setup"] == pytest.approx(
        reference["setup"] + 6.0 * per_sample_setup * base.clients * base.samples_per_client)
    for phase in ("market", "collect", "other", "tables"):
        assert got[phase] == reference[phase]


def test_a_learning_pair_without_ratios_is_left_out_and_said():
    model = _with_ratios("digits/logreg", 1.0, 0.0, {"leave_one_out": {"intercept": 1.0,
                                                                       "slope": 0.0}})
    scenario = load_scenario("scenarios/baseline.yaml")  # digits/mlp: no ratios here
    got = model.predict(sizes_of(scenario))
    assert math.isnan(got["fl"]) and math.isnan(got["contribution"])
    line = model.describe(scenario)
    assert "without learning" in line and "fl " not in line.split("[")[0]
    assert ("learning phases (fl, contribution) not modelled for digits/mlp: left out of "
            "the total (pairs with measured ratios: digits/logreg") in line


def test_the_committed_ratios_cover_every_shipped_learning_pair():
    """Every scenario file's learning pair has measured ratios (or is the reference), so
    `wsf validate` leaves no shipped file's learning out; CIFAR-10 read from a file costs
    what its stand-in does."""
    model = CostModel.load()
    learning = model.data["learning"]
    assert learning["reference"] == REFERENCE_LEARNING
    for path in sorted(Path("scenarios").rglob("*.yaml")):
        text = path.read_text()
        if "\nfl:" not in text and not text.startswith("fl:"):
            continue  # sweeps and studies name a base file
        sizes = sizes_of(load_scenario(path))
        assert model.ratios(sizes.learning) is not None, (path, sizes.learning)
    paper = load_scenario("scenarios/paper_cifar10.yaml")
    cifar = paper.fl.model_copy(update={"dataset": paper.fl.dataset.model_copy(
        update={"name": "cifar10"})})  # its path is checked on load: no file here
    assert sizes_of(paper.model_copy(update={"fl": cifar})).learning == "cifar10_standin/cnn"
    cnn = model.ratios("cifar10_standin/cnn")
    assert cnn.training(64) > 10 * model.ratios("digits/mlp").training(64)


def test_validate_prints_the_expected_run_time(capsys):
    from abm.cli import main

    assert main(["validate", "scenarios/baseline.yaml"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("# scenarios/baseline.yaml: valid (")
    assert err[1].startswith("# expected run time on the reference machine (")
    assert "model fitted on" in err[1] or "cost model fitted on" in err[1]


def test_a_scenario_beyond_the_fitted_runs_is_called_an_extrapolation():
    model = CostModel.load()
    most = model.fitted_range()
    inside = parse_scenario(workload(100, 20, 400, 30, 10), source="test")
    assert "extrapolation" not in model.describe(inside)
    big = parse_scenario(workload(most["clients"] + 10, 20, 400, 30, 10), source="test")
    assert f"clients {most['clients'] + 10:,} > {most['clients']:,}" in model.describe(big)
