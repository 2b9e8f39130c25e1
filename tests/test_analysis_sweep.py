"""Sweep analysis: means and t confidence intervals over seeds, tables, figures, report.md."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from abm.sweep import SweepError, load_sweep, run_sweep
from analysis.market_stats import market_statistics
from analysis.metrics import client_rewards, investor_performance, price_contribution_correlation
from analysis.runs import load_run
from analysis.sweep import (
    FIGURE_NAMES,
    client_keys,
    combine,
    figure_data,
    load_sweep_tables,
    make_sweep_figures,
    mean_ci,
    summarise_over_seeds,
    write_sweep_report,
)
from tests.conftest import small_scenario

TINY = {
    "steps": 12,
    "round_every": 6,
    "clients": [{"count": 3, "behaviour": "honest"}],
    "investors": [
        {"strategy": "fundamental", "count": 2, "cash": 500},
        {"strategy": "noise", "count": 2, "cash": 500},
    ],
    "liquidity_providers": [{"count": 1, "cash": 2000}],
    # Each client keeps its data across seeds: the per-client table averages one client.
    "fl.partition.seed": 0,
}
GRID = {"rewards.policy": ["direct", "buyback"], "contribution.method": ["leave_one_out",
                                                                         "data_size"]}
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished real sweep: 2 policies x 2 methods x 3 seeds of a tiny scenario."""
    root = tmp_path_factory.mktemp("analysis-sweep")
    (root / "small.yaml").write_text(yaml.safe_dump(small_scenario().to_dict(), sort_keys=False))
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump({"name": "grid", "base": "small.yaml", "overrides": TINY,
                                    "grid": GRID, "seeds": SEEDS}, sort_keys=False))
    return run_sweep(path, workers=2, out=root / "out", progress=False)


@pytest.fixture(scope="module")
def report(sweep_dir: Path) -> Path:
    return write_sweep_report(sweep_dir)


def runs_of(sweep_dir: Path, **params: str) -> list[Path]:
    """Folders of the runs at one grid point, in seed order."""
    spec = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    return [sweep_dir / "runs" / r["run_id"] for r in spec["runs"]
            if all(r["params"][k] == v for k, v in params.items())]


def t_interval(values: list[float]) -> tuple[float, float, float]:
    x = np.asarray(values, dtype=float)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    return float(x.mean()), float(low), float(high)


# -- statistics -------------------------------------------------------------------------------


def test_mean_ci_is_the_student_t_interval_of_the_mean() -> None:
    values = [0.12, 0.31, 0.25, 0.18, 0.40]
    assert mean_ci(values) == pytest.approx(t_interval(values))
    mean, low, high = mean_ci(values, confidence=0.99)
    wide = stats.t.interval(0.99, 4, loc=np.mean(values), scale=stats.sem(values))
    assert (low, high) == pytest.approx(wide)
    assert mean == pytest.approx(np.mean(values))


def test_mean_ci_skips_nan_and_has_no_interval_for_one_value() -> None:
    assert mean_ci([2.0, float("nan"), 4.0]) == pytest.approx(t_interval([2.0, 4.0]))
    mean, low, high = mean_ci([5.0])
    assert mean == 5.0 and math.isnan(low) and math.isnan(high)
    assert all(math.isnan(v) for v in mean_ci([float("nan")]))


def test_summarise_over_seeds_gives_one_row_per_group_in_order() -> None:
    frame = pd.DataFrame({
        "policy": ["mint", "mint", "mint", "equal", "equal"],
        "seed": [0, 1, 2, 0, 1],
        "cost": [1.0, 2.0, 4.0, 0.0, 0.0],
    })
    table = summarise_over_seeds(frame, ["policy"], ["cost"])
    assert list(table.columns) == ["policy", "n_runs", "cost_mean", "cost_ci_low",
                                   "cost_ci_high"]
    assert list(table["policy"]) == ["mint", "equal"]
    assert list(table["n_runs"]) == [3, 2]
    mint = table.iloc[0]
    assert (mint["cost_mean"], mint["cost_ci_low"], mint["cost_ci_high"]) == pytest.approx(
        t_interval([1.0, 2.0, 4.0]))
    assert table.iloc[1][["cost_mean", "cost_ci_low", "cost_ci_high"]].tolist() == [0, 0, 0]
    overall = summarise_over_seeds(frame, [], ["cost"])
    assert overall["n_runs"].tolist() == [5]
    assert overall["cost_mean"].iloc[0] == pytest.approx(7.0 / 5)


# -- report over a real sweep ------------------------------------------------------------------


@pytest.mark.slow
def test_client_reward_table_is_mean_and_interval_over_seeds(sweep_dir: Path,
                                                             report: Path) -> None:
    table = pd.read_csv(report.parent / "client_rewards.csv")
    assert len(table) == 2 * 2 * 3  # grid points x clients
    assert set(table["n_runs"]) == {len(SEEDS)}
    row = table[(table["rewards.policy"] == "buyback")
                & (table["contribution.method"] == "leave_one_out") & (table["client"] == "c01")]
    allotted = [float(client_rewards(load_run(p)).set_index("client").loc["c01",
                                                                          "allotted_vs_equal_pct"])
                for p in runs_of(sweep_dir, **{"rewards.policy": "buyback",
                                               "contribution.method": "leave_one_out"})]
    assert len(allotted) == len(SEEDS)
    expected = t_interval(allotted)
    got = row[["allotted_vs_equal_pct_mean", "allotted_vs_equal_pct_ci_low",
               "allotted_vs_equal_pct_ci_high"]].iloc[0]
    assert tuple(got) == pytest.approx(expected)


@pytest.mark.slow
def test_execution_cost_is_zero_for_direct_payouts(report: Path) -> None:
    table = pd.read_csv(report.parent / "execution_cost.csv")
    assert list(table.columns[:3]) == ["rewards.policy", "contribution.method", "n_runs"]
    direct = table[table["rewards.policy"] == "direct"]
    assert len(direct) == 2
    assert (direct["execution_cost_usd_mean"] == 0).all()  # `direct` pays USD without trading
    assert (table["rewards_usd_mean"] > 0).all()


@pytest.mark.slow
def test_investor_and_correlation_tables_match_per_run_metrics(sweep_dir: Path,
                                                               report: Path) -> None:
    point = {"rewards.policy": "direct", "contribution.method": "data_size"}
    runs = [load_run(p) for p in runs_of(sweep_dir, **point)]

    investors = pd.read_csv(report.parent / "investor_returns.csv")
    assert set(investors["strategy"]) == {"fundamental", "noise"}
    mine = investors[(investors["rewards.policy"] == "direct")
                     & (investors["contribution.method"] == "data_size")
                     & (investors["strategy"] == "noise")].iloc[0]
    returns = [float(investor_performance(r).set_index("strategy").loc["noise",
                                                                       "mean_return_pct"])
               for r in runs]
    assert mine["mean_return_pct_mean"] == pytest.approx(np.mean(returns))

    correlation = pd.read_csv(report.parent / "price_contribution_correlation.csv")
    row = correlation[(correlation["rewards.policy"] == "direct")
                      & (correlation["contribution.method"] == "data_size")].iloc[0]
    rhos = [price_contribution_correlation(r) for r in runs]
    finite = [v for v in rhos if np.isfinite(v)]
    if finite:  # a correlation is averaged in Fisher z space (analysis.statistics)
        z = np.arctanh(np.clip(finite, -1 + 1e-6, 1 - 1e-6))
        assert row["price_contribution_spearman_mean"] == pytest.approx(np.tanh(z.mean()))
    else:
        assert math.isnan(row["price_contribution_spearman_mean"])


@pytest.mark.slow
def test_market_statistics_table_gives_mean_interval_and_median_over_seeds(
        sweep_dir: Path, report: Path) -> None:
    point = {"rewards.policy": "buyback", "contribution.method": "leave_one_out"}
    stats = [market_statistics(load_run(p)) for p in runs_of(sweep_dir, **point)]
    table = pd.read_csv(report.parent / "market_statistics.csv")
    row = table[(table["rewards.policy"] == "buyback")
                & (table["contribution.method"] == "leave_one_out")].iloc[0]
    for key in ("ret_excess_kurtosis", "ret_acf1", "absret_acf1", "round_clock_acf"):
        values = [s[key] for s in stats]
        assert np.isfinite(values).all(), key
        mean, low, high = t_interval(values)
        assert row[f"{key}_mean"] == pytest.approx(mean)
        assert (row[f"{key}_ci_low"], row[f"{key}_ci_high"]) == pytest.approx((low, high))
        assert row[f"{key}_median"] == pytest.approx(np.median(values))
    text = (report.parent / "report.md").read_text(encoding="utf-8")
    assert "## Market statistics" in text and "ret_acf1 (median)" in text


@pytest.mark.slow
def test_headline_table_has_one_row_per_grid_point(sweep_dir: Path, report: Path) -> None:
    table = pd.read_csv(report.parent / "runs_by_point.csv")
    sweep = load_sweep(sweep_dir / ".." / "grid.yaml")
    points = {tuple(r.params.values()) for r in sweep.runs}
    assert set(zip(table["rewards.policy"], table["contribution.method"], strict=True)) == points
    assert "final_accuracy_mean" in table.columns
    assert (table["final_accuracy_ci_low"] <= table["final_accuracy_mean"]).all()


@pytest.mark.slow
def test_report_writes_every_figure_as_png_and_pdf(report: Path) -> None:
    figures = report.parent / "figures"
    for name in FIGURE_NAMES:
        png = (figures / f"{name}.png").read_bytes()
        pdf = (figures / f"{name}.pdf").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 10_000
        assert pdf.startswith(b"%PDF")


@pytest.mark.slow
def test_report_markdown_links_resolve_and_cells_show_intervals(report: Path) -> None:
    text = report.read_text()
    assert text.startswith("# Sweep report: grid")
    assert f"{2 * 2 * len(SEEDS)} of {2 * 2 * len(SEEDS)} runs finished" in text
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert len(links) >= 5 + 4  # every table's CSV and every figure
    for link in links:
        assert (report.parent / link).is_file(), link
    assert re.search(r"\| -?[\d,]+\.\d+ \[-?[\d,]+\.\d+, -?[\d,]+\.\d+\] \|", text)


@pytest.mark.slow
def test_report_is_rewritten_identically(sweep_dir: Path, report: Path) -> None:
    before = {p.name: p.read_bytes() for p in report.parent.glob("*.csv")}
    write_sweep_report(sweep_dir)
    assert {p.name: p.read_bytes() for p in report.parent.glob("*.csv")} == before


@pytest.mark.slow
def test_figures_follow_requested_formats(sweep_dir: Path, tmp_path: Path) -> None:
    written = make_sweep_figures(load_sweep_tables(sweep_dir), tmp_path, formats=["svg"])
    assert [p.name for p in written] == [f"{n}.svg" for n in FIGURE_NAMES]
    assert all(p.read_text().lstrip().startswith("<?xml") for p in written)


@pytest.mark.slow
def test_figures_are_drawn_when_a_table_is_empty(sweep_dir: Path, tmp_path: Path) -> None:
    tables = load_sweep_tables(sweep_dir)
    no_investors = dataclasses.replace(tables, investors=tables.investors.iloc[0:0])
    written = make_sweep_figures(no_investors, tmp_path, formats=["png"])
    assert (tmp_path / "investor_returns.png").read_bytes().startswith(b"\x89PNG")
    assert len(written) == len(FIGURE_NAMES)


@pytest.mark.slow
def test_grid_key_named_like_a_table_column_gets_a_grid_prefix(tmp_path: Path) -> None:
    # A grid over the whole `contribution` section, next to the per-client `contribution`
    # column of the rounds and client-reward tables.
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(small_scenario().to_dict(),
                                                        sort_keys=False))
    path = tmp_path / "sections.yaml"
    path.write_text(yaml.safe_dump({
        "base": "small.yaml", "overrides": TINY, "seeds": [0],
        "grid": {"contribution": {"loo": {"method": "leave_one_out"},
                                  "size": {"method": "data_size"}}},
    }))
    out = run_sweep(path, workers=2, out=tmp_path / "out", progress=False)
    combine(out)
    rounds = pd.read_parquet(out / "combined" / "rounds.parquet")
    assert list(rounds.columns[:3]) == ["run_id", "grid:contribution", "seed"]
    assert set(rounds["grid:contribution"]) == {"loo", "size"}
    assert rounds["contribution"].dtype.kind == "f"  # the per-client score is still there
    runs = pd.read_parquet(out / "combined" / "runs.parquet")
    assert list(runs["grid:contribution"]) == ["loo", "size"]

    table = pd.read_csv(write_sweep_report(out).parent / "client_rewards.csv")
    assert list(table.columns[:5]) == ["grid:contribution", "policy", "method", "client",
                                       "n_runs"]
    assert "contribution_mean" in table.columns


def test_report_on_folder_without_finished_runs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(
        {"name": "empty", "grid": {}, "runs": [{"run_id": "0123456789abcdef", "params": {},
                                                "seed": 0}]}))
    with pytest.raises(SweepError, match="no finished run"):
        write_sweep_report(tmp_path)
    with pytest.raises(SweepError, match="not a sweep folder"):
        write_sweep_report(tmp_path / "nothing-here")


# -- twins: paired differences across seeds -------------------------------------------------------


@pytest.mark.slow
def test_a_sweep_with_twins_reports_paired_run_minus_twin_differences(tmp_path: Path) -> None:
    (tmp_path / "small.yaml").write_text(
        yaml.safe_dump(small_scenario().to_dict(), sort_keys=False))
    path = tmp_path / "twins.yaml"
    path.write_text(yaml.safe_dump({
        "name": "twins", "base": "small.yaml", "overrides": TINY,
        "grid": {"rewards.policy": ["equal", "buyback"]}, "seeds": [0, 1, 2],
        "counterfactual": True}, sort_keys=False))
    out = run_sweep(path, workers=2, out=tmp_path / "out", progress=False)
    for folder in (out / "runs").iterdir():
        assert (folder / "counterfactual" / "summary.json").is_file()
    report = write_sweep_report(out)
    paired = pd.read_csv(report.parent / "paired_differences.csv")
    # Per grid point and holder type: mean and t interval of (run - twin) over the seeds.
    buyback_lp = paired[(paired["rewards.policy"] == "buyback") & (paired["holder"] == "lp")]
    diffs = [load_run(p).summary["holders"]["lp"]["attributable_usd"]
             for p in runs_of(out, **{"rewards.policy": "buyback"})]
    got = buyback_lp[["attributable_usd_mean", "attributable_usd_ci_low",
                      "attributable_usd_ci_high"]].iloc[0]
    assert tuple(got) == pytest.approx(t_interval(diffs))
    # Under equal, every client's attributable reward is the equal split, in every seed.
    clients = pd.read_csv(report.parent / "client_rewards.csv")
    equal = clients[clients["rewards.policy"] == "equal"]
    assert equal["attributable_vs_equal_pct_mean"].abs().max() < 1e-9
    assert (equal["allotted_vs_equal_pct_mean"] == 0.0).all()
    assert "Run minus twin per holder type" in report.read_text()


@pytest.mark.slow
def test_figures_draw_exactly_what_their_tables_print(sweep_dir: Path, report: Path) -> None:
    """Every bar is its table's centre (the Fisher-z mean for a correlation, not the plain
    mean) and every whisker its table's interval, read from the CSV the report wrote."""
    from analysis.sweep.figures import FIGURE_TABLES, _bars

    tables = load_sweep_tables(sweep_dir)
    data = figure_data(tables)
    assert set(data) == set(FIGURE_NAMES)
    for name, bars in data.items():
        table = pd.read_csv(report.parent / f"{FIGURE_TABLES[name]}.csv")
        for metric, rows in bars.groupby("metric", sort=False):
            assert sorted(rows["row"]) == list(range(len(table)))
            cells = table.iloc[rows["row"].to_numpy()]
            for column, suffix in (("value", "mean"), ("low", "ci_low"), ("high", "ci_high")):
                np.testing.assert_allclose(rows[column].to_numpy(float),
                                           cells[f"{metric}_{suffix}"].to_numpy(float),
                                           rtol=1e-12, equal_nan=True)
    rho = data["price_contribution_correlation"]
    runs = tables.runs
    first = rho.iloc[0]
    values = runs[(runs["rewards.policy"] == first["x"])
                  & (runs["contribution.method"] == first["hue"])]["price_contribution_spearman"]
    z = np.arctanh(np.clip(values.to_numpy(float), -1 + 1e-6, 1 - 1e-6))
    assert first["value"] == pytest.approx(float(np.tanh(z.mean())))
    # The drawn bars are the data's values.
    figure = _bars(data["execution_cost"], hue="method", xlabel="", ylabel="", title="")
    heights = sorted(p.get_height() for ax in figure.axes for p in ax.patches)
    assert heights == pytest.approx(sorted(data["execution_cost"]["value"]))


@pytest.mark.slow
def test_clients_not_identified_across_seeds_aggregate_by_behaviour_and_rank(
        sweep_dir: Path, tmp_path: Path) -> None:
    tables = load_sweep_tables(sweep_dir)
    assert client_keys(tables) == ["client"]
    # As if each seed had redrawn the partition (no fl.partition.seed).
    redrawn = dataclasses.replace(tables, clients=tables.clients.assign(
        data_seed=tables.clients["seed"]))
    assert client_keys(redrawn) == ["behaviour", "contribution_rank"]
    from analysis.sweep.tables import summary_tables

    table = next(t for t in summary_tables(redrawn) if t.name == "client_rewards")
    assert "not** identified" in table.note
    assert set(table.frame["contribution_rank"]) == {1, 2, 3}
    assert (table.frame["n_runs"] == len(SEEDS)).all()
    bars = figure_data(redrawn)["reward_vs_equal"]
    assert set(bars["x"]) == {"honest #1", "honest #2", "honest #3"}
    make_sweep_figures(redrawn, tmp_path, formats=["png"])


@pytest.mark.slow
def test_combined_long_tables_hold_every_runs_tokens_and_holder_types(sweep_dir: Path) -> None:
    from analysis.sweep.loading import load_sweep_tables

    load_sweep_tables(sweep_dir)  # builds combined/
    tokens = pd.read_parquet(sweep_dir / "combined" / "tokens.parquet")
    wealth = pd.read_parquet(sweep_dir / "combined" / "wealth.parquet")
    runs = sorted((sweep_dir / "runs").iterdir())
    assert set(tokens["run_id"]) == {r.name for r in runs} == set(wealth["run_id"])
    for run in runs[:2]:
        own = pd.read_parquet(run / "tokens.parquet")
        mine = tokens[tokens["run_id"] == run.name].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine[own.columns.tolist()], own)
        assert len(wealth[wealth["run_id"] == run.name]) == len(
            pd.read_parquet(run / "wealth.parquet"))
    assert isinstance(tokens["client"].dtype, pd.CategoricalDtype)
    assert isinstance(wealth["agent_type"].dtype, pd.CategoricalDtype)
    assert {"rewards.policy", "contribution.method", "seed"} <= set(tokens.columns)
