"""Run folders end to end: loading, figures, report.md; bad folders are refused clearly."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from analysis.figures import FIGURE_NAMES, make_figures
from analysis.markdown import markdown_table
from analysis.metrics import client_rewards, investor_performance
from analysis.report import main, write_report
from analysis.runs import RunFolderError, load_run
from tests.conftest import write_real_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The small test scenario's run, reported once for the tests that read the outcome."""
    run_dir = write_real_run(tmp_path_factory.mktemp("runs") / "small")
    rc_before = dict(matplotlib.rcParams)
    report = write_report(run_dir)
    return {"run_dir": run_dir, "report": report, "text": report.read_text(encoding="utf-8"),
            "rc_before": rc_before, "rc_after": dict(matplotlib.rcParams)}


def test_markdown_table_formats_each_column_and_escapes_pipes() -> None:
    frame = pd.DataFrame({"name": ["a|b", "c"], "n": [1, 20], "usd": [1234.5, np.nan],
                          "ok": [True, False]})
    assert markdown_table(frame, {"usd": ",.1f"}) == (
        "| name | n | usd | ok |\n"
        "| --- | ---: | ---: | --- |\n"
        "| a\\|b | 1 | 1,234.5 | yes |\n"
        "| c | 20 | n/a | no |"
    )


def test_load_run_reads_every_table_and_the_run_identity(tmp_path: Path) -> None:
    run = load_run(write_real_run(tmp_path / "r", **{"rewards.policy": "mint", "seed": 3}))
    assert run.client_ids == ["c00", "c01", "c02", "c03"]
    assert (run.name, run.seed, run.policy, run.steps, run.n_rounds) == (
        "small", 3, "mint", 30, 3)
    assert len(run.agents) == 31 * (1 + 4 + 13 + 2)  # steps 0..30, every agent each step
    assert len(run.rounds) == 3 * 4


def test_report_is_written_with_every_table(reported: dict[str, object]) -> None:
    text = str(reported["text"])
    run = load_run(Path(str(reported["run_dir"])))
    assert reported["report"] == run.path / "report.md"
    assert text.startswith(f"# Run report: {run.name}\n")
    for heading in ("## Headline", "## Reward per client: allotted, attributable, spot-marked",
                    "## Where the money went", "## Wealth by holder type",
                    "## Investors by strategy", "## Liquidity providers"):
        assert heading in text
    assert "| client | behaviour | cumulative contribution |" in text
    rewards = client_rewards(run)
    for client, pct in zip(rewards["client"], rewards["allotted_vs_equal_pct"], strict=True):
        assert re.search(rf"^\| {client} \|.*\| {pct:,.2f} \|", text, re.MULTILINE)
    assert "received" not in text.lower()
    investors = run.agents[(run.agents["agent_type"] == "investor") & (run.agents["step"] == 0)]
    for strategy in investor_performance(run)["strategy"]:
        n = int((investors["strategy"] == strategy).sum())
        assert re.search(rf"^\| {strategy} \| {n} \|", text, re.MULTILINE)
    assert "| LP | exit rule |" in text


def test_report_figures_exist_as_nonempty_png_and_pdf(reported: dict[str, object]) -> None:
    run_dir = Path(str(reported["run_dir"]))
    for name in FIGURE_NAMES:
        png = (run_dir / "figures" / f"{name}.png").read_bytes()
        pdf = (run_dir / "figures" / f"{name}.pdf").read_bytes()
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000
        assert pdf.startswith(b"%PDF") and len(pdf) > 1_000


def test_report_links_resolve_to_the_figures(reported: dict[str, object]) -> None:
    run_dir = Path(str(reported["run_dir"]))
    links = re.findall(r"\]\(([^)]+)\)", str(reported["text"]))
    # `actions` is shown only where some client's conduct is adaptive (tests/test_conduct.py)
    assert {Path(link).stem for link in links} == set(FIGURE_NAMES) - {"actions"}
    assert all((run_dir / link).is_file() for link in links)


def test_making_figures_leaves_matplotlib_state_alone(reported: dict[str, object]) -> None:
    import matplotlib.pyplot as plt  # only to prove no figure was left registered

    assert reported["rc_after"] == reported["rc_before"]
    assert plt.get_fignums() == []


@pytest.mark.slow
def test_report_of_a_run_without_rewards_says_so(tmp_path: Path) -> None:
    report = write_report(write_real_run(tmp_path / "unpaid", **{"rewards.budget.amount": 0}))
    text = report.read_text(encoding="utf-8")
    assert "| n/a |" in text  # vs equal payout is undefined with no reward
    assert (tmp_path / "unpaid" / "figures" / "contributions.png").stat().st_size > 0


@pytest.mark.slow
def test_report_of_a_folder_without_rounds_says_so(tmp_path: Path) -> None:
    # A valid scenario always runs a round; a folder whose rounds table is empty (written by
    # hand, or cut short) is still reported.
    run_dir = write_real_run(tmp_path / "short")
    rounds = pd.read_parquet(run_dir / "rounds.parquet")
    rounds.iloc[:0].to_parquet(run_dir / "rounds.parquet")
    text = write_report(run_dir).read_text(encoding="utf-8")
    assert "No FL round in this run." in text


@pytest.mark.slow
def test_figures_of_a_500_step_run_with_110_agents_are_all_written(tmp_path: Path) -> None:
    # How long they take is a benchmark question (`make bench`), not a test's.
    big = {"steps": 500, "round_every": 50, "fl.dataset": {"name": "wine"},
           "contribution.method": "data_size", "clients": [{"count": 10}],
           "investors": [{"strategy": s, "count": 24, "cash": 500}
                         for s in ("fundamental", "momentum", "mean_reversion", "noise")],
           "liquidity_providers": [{"count": 2, "cash": 2000}]}
    run = load_run(write_real_run(tmp_path / "big", **big))
    assert run.agents["agent_id"].nunique() == 1 + 10 + 96 + 2
    written = make_figures(run, tmp_path / "figs")
    assert len(written) == 2 * len(FIGURE_NAMES)
    assert all(path.stat().st_size > 0 for path in written)
    assert {path.suffix for path in written} == {".png", ".pdf"}


def test_load_run_names_the_missing_file(tmp_path: Path) -> None:
    run_dir = write_real_run(tmp_path / "r")
    (run_dir / "rounds.parquet").unlink()
    with pytest.raises(RunFolderError, match=r"missing rounds\.parquet"):
        load_run(run_dir)


def test_load_run_refuses_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="no such directory"):
        load_run(tmp_path / "nowhere")


def test_load_run_refuses_a_table_without_a_needed_column(tmp_path: Path) -> None:
    run_dir = write_real_run(tmp_path / "r")
    agents = pd.read_parquet(run_dir / "agents.parquet").drop(columns="hodl_value")
    agents.to_parquet(run_dir / "agents.parquet")
    with pytest.raises(RunFolderError, match=r"agents\.parquet: missing column\(s\) hodl_value"):
        load_run(run_dir)


def test_load_run_refuses_config_that_is_not_a_mapping(tmp_path: Path) -> None:
    run_dir = write_real_run(tmp_path / "r")
    (run_dir / "config.yaml").write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(RunFolderError,
                       match=r"config\.yaml: the top level of a run config file must be a map"):
        load_run(run_dir)


def test_load_run_refuses_unsafe_yaml_tags(tmp_path: Path) -> None:
    run_dir = write_real_run(tmp_path / "r")
    (run_dir / "config.yaml").write_text("x: !!python/object/apply:os.system ['true']\n",
                                         encoding="utf-8")
    with pytest.raises(RunFolderError,
                       match=r"config\.yaml: not a valid run config file.*object tags"):
        load_run(run_dir)


def test_report_command_exits_2_with_a_message_on_a_bad_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "config.yaml" in err
    assert not (tmp_path / "report.md").exists()


def _axes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure()
    FigureCanvasAgg(figure)
    return figure.subplots()


def test_wealth_by_type_legend_names_the_types_in_the_apps_colours(
        reported: dict[str, object]) -> None:
    from matplotlib.colors import to_hex

    from abm.collect import AGENT_TYPE_COLOURS, AGENT_TYPE_LABELS
    from abm.viz.charts import TYPE_COLOURS
    from analysis.figures import plot_wealth_by_type

    ax = _axes()
    plot_wealth_by_type(load_run(Path(str(reported["run_dir"]))), ax)
    legend = {t.get_text(): h for t, h in zip(ax.get_legend().get_texts(),
                                               ax.get_legend().legend_handles, strict=True)}
    assert "agent_type" not in legend and "client" not in legend
    for kind in ("client", "investor", "lp", "federation"):
        label = AGENT_TYPE_LABELS[kind]
        assert to_hex(legend[label].get_color()) == AGENT_TYPE_COLOURS[kind]
        assert TYPE_COLOURS[label] == AGENT_TYPE_COLOURS[kind]  # the browser app's colour


def test_lp_pnl_labels_every_fee_bar_with_its_amount(reported: dict[str, object]) -> None:
    from analysis.figures import plot_lp_pnl
    from analysis.metrics import lp_decomposition

    run = load_run(Path(str(reported["run_dir"])))
    ax = _axes()
    plot_lp_pnl(run, ax)
    texts = [t.get_text() for t in ax.texts]
    fees = lp_decomposition(run)["fees_earned_usd"]
    assert len(fees) >= 1
    assert texts == [f"fees {v:,.2f}" for v in fees]
