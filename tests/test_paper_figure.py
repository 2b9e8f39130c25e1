"""The paper's figure as a shipped sweep (scenarios/sweeps/paper_figure.yaml): run end to end
at a tiny size, its figure draws exactly its table, and says what it plots on which data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from abm.sweep import load_sweep, run_sweep
from analysis.sweep import figure_data, load_sweep_tables, write_sweep_report
from analysis.sweep.figures import ALLOTTED, ATTRIBUTABLE, _reward_title
from tests.conftest import ROOT

SWEEPS = ROOT / "scenarios" / "sweeps"
GAME_METHODS = {"shapley_mc", "gtg_shapley", "leave_one_out"}


@pytest.mark.parametrize("name", ["paper_figure", "paper_figure_small"])
def test_the_shipped_files_ask_for_the_paper_figure(name: str) -> None:
    """Every game-based method and data_size, >= 5 seeds sharing each client's data, twins."""
    sweep = load_sweep(SWEEPS / f"{name}.yaml")
    methods = {run.scenario.contribution.method for run in sweep.runs}
    assert methods >= GAME_METHODS | {"data_size"}
    seeds = {run.scenario.seed for run in sweep.runs}
    assert len(seeds) >= 5
    assert {run.scenario.fl.partition.seed for run in sweep.runs} == {2024}
    assert all(run.scenario.counterfactual for run in sweep.runs)
    assert {run.scenario.fl.dataset.name for run in sweep.runs} == {"cifar10_standin"}
    assert {run.scenario.rewards.policy for run in sweep.runs} == {"buyback"}


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """paper_figure.yaml at a tiny size: 2 FL rounds on 600 stand-in images, 2 seeds, the
    cheap methods (one game-based), with twins."""
    root = tmp_path_factory.mktemp("paper-figure")
    spec = yaml.safe_load((SWEEPS / "paper_figure.yaml").read_text())
    spec["base"] = str(SWEEPS / spec["base"])
    spec["overrides"].update({"steps": 20, "fl.dataset.n_samples": 600,
                              "fl.utility_samples": None})
    spec["grid"] = {"contribution.method": ["data_size", "leave_one_out"]}
    spec["seeds"] = 2
    spec["report"]["formats"] = ["png"]
    path = root / "paper_figure.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return run_sweep(path, workers=1, out=root / "out", progress=False)


@pytest.mark.slow
def test_tiny_paper_figure_draws_exactly_its_table(tiny_sweep: Path) -> None:
    report = write_sweep_report(tiny_sweep)
    assert (report.parent / "figures" / "reward_vs_equal.png").is_file()
    table = pd.read_csv(report.parent / "client_rewards.csv")
    tables = load_sweep_tables(tiny_sweep)
    bars = figure_data(tables)["reward_vs_equal"]
    # One panel per method, allotted and attributable side by side in it.
    assert list(dict.fromkeys(bars["facet"])) == ["method data_size", "method leave_one_out"]
    assert set(bars["hue"]) == {ALLOTTED, ATTRIBUTABLE}
    assert len(bars) == 2 * len(table) == 2 * 2 * 10
    for metric, hue in (("allotted_vs_equal_pct", ALLOTTED),
                        ("attributable_vs_equal_pct", ATTRIBUTABLE)):
        rows = bars[bars["hue"] == hue]
        assert (rows["metric"] == metric).all()
        cells = table.iloc[rows["row"].to_numpy()]
        assert list(rows["x"]) == list(cells["client"])
        assert list(rows["facet"]) == ["method " + m for m in cells["contribution.method"]]
        for column, suffix in (("value", "mean"), ("low", "ci_low"), ("high", "ci_high")):
            np.testing.assert_allclose(rows[column].to_numpy(float),
                                       cells[f"{metric}_{suffix}"].to_numpy(float),
                                       rtol=1e-12)
    # Each client is one client (the same data) in both seeds: 2 runs per row, and the
    # table's centre is the plain mean of the two runs' values.
    assert (table["n_runs"] == 2).all()
    clients = tables.clients
    c03 = clients[(clients["contribution.method"] == "leave_one_out")
                  & (clients["client"] == "c03")]
    assert set(c03["seed"]) == {0, 1} and set(c03["data_seed"]) == {2024}
    row = table[(table["contribution.method"] == "leave_one_out") & (table["client"] == "c03")]
    assert row["attributable_vs_equal_pct_mean"].item() == pytest.approx(
        c03["attributable_vs_equal_pct"].mean(), rel=1e-12)
    # data_size pays every round's budget in shares: its allotments average to 0 % over the
    # clients of each run (less the dust of exact division).
    sized = clients[clients["contribution.method"] == "data_size"]
    assert sized.groupby("run_id")["allotted_vs_equal_pct"].mean().abs().max() < 1e-9
    # What the figure and its table say about the data and the estimator.
    title = _reward_title(tables, by_rank=False)
    assert "the CIFAR-shaped synthetic stand-in (not CIFAR-10)" in title
    assert "Student-t interval (2 seeds, 95%)" in title and "buyback policy" in title
    text = report.read_text()
    assert "Data: the CIFAR-shaped synthetic stand-in (not CIFAR-10)" in text
    # On a local CIFAR-10 copy, the figure says so.
    real = dataclasses.replace(tables, clients=clients.assign(dataset="cifar10"))
    assert "Data: CIFAR-10 (a local copy)" in _reward_title(real, by_rank=False)


def test_the_stand_in_is_cifar_shaped_and_drawn_from_its_seeds() -> None:
    from abm.fl.data import load_dataset

    def load(seed: int, **params) -> object:
        return load_dataset("cifar10_standin", rng=np.random.default_rng(seed), n_samples=1500,
                            **params)

    ds = load(1)
    assert ds.X.shape == (1500, 3, 32, 32) and ds.n_classes == 10
    assert ds.name == "cifar10_standin" and set(np.unique(ds.y)) == set(range(10))
    # standardised per channel, as cifar10 is
    np.testing.assert_allclose(ds.X.mean(axis=(0, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(ds.X.std(axis=(0, 2, 3)), 1.0, atol=1e-3)
    again = load(1)
    assert np.array_equal(ds.X, again.X) and np.array_equal(ds.y, again.y)
    assert not np.array_equal(ds.X, load(2).X)
    assert not np.array_equal(ds.X, load(1, template_seed=1).X)
    # classes differ by their templates: a class's mean image is far from another's
    means = np.stack([ds.X[ds.y == k].mean(axis=0) for k in range(10)])
    assert np.abs(means[0] - means[1]).mean() > 0.2


def test_paper_cifar10_points_at_a_local_copy_by_swapping_its_dataset_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the header of scenarios/paper_cifar10.yaml tells a user with CIFAR-10 to do."""
    from abm.scenario import load_scenario
    from tests.test_shipped_scenarios import fake_cifar10_binary

    copy = fake_cifar10_binary(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "scenarios" / "paper_cifar10.yaml").read_text()
    standin = "  dataset: {name: cifar10_standin, n_samples: 12000}\n"
    real = "  # dataset: {name: cifar10, path: data/cifar-10-python.tar.gz, n_samples: 12000}\n"
    assert standin in text and real in text
    text = text.replace(standin, "").replace(real, real.replace("# ", "", 1))
    text = text.replace("data/cifar-10-python.tar.gz", str(copy)).replace("12000", "600")
    (tmp_path / "paper_cifar10.yaml").write_text(text)
    scenario = load_scenario(tmp_path / "paper_cifar10.yaml")
    assert scenario.fl.dataset.name == "cifar10" and scenario.fl.dataset.n_samples == 600
