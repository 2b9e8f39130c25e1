"""`report.md` for one run folder: headline numbers, the metric tables, links to the figures.

`write_report(run_dir)` regenerates the figures into `<run>/figures/` and (re)writes
`<run>/report.md`; it is what `wsf report RUN_DIR` does. The Markdown tables are rendered by
`markdown_table` below rather than `DataFrame.to_markdown`, which needs the optional
`tabulate` package: twenty lines here avoid a dependency and let each column carry its own
number format (contributions need four decimals, USD two, counts none).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.figures import FIGURE_NAMES, make_figures
from analysis.metrics import (
    client_rewards,
    distribution_cost,
    investor_performance,
    lp_decomposition,
    price_contribution_correlation_by_round,
    summarise_run,
)
from analysis.runs import Run, RunFolderError, load_run

REPORT_FILE = "report.md"
MISSING = "n/a"


def markdown_table(frame: pd.DataFrame, formats: Mapping[str, str] | None = None,
                   default_format: str = ",.2f") -> str:
    """A GitHub-flavoured Markdown table of `frame` (index left out).

    Floats use `formats[column]` (a `format()` spec) or `default_format`; integers are
    printed whole, booleans as yes/no, NaN or None as `n/a`. Numeric columns are
    right-aligned. `|` inside text is escaped so that it cannot break the table.
    """
    formats = formats or {}
    columns = [str(c) for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(
        frame[c]) for c in frame.columns]
    lines = [
        "| " + " | ".join(_escape(c) for c in columns) + " |",
        "| " + " | ".join("---:" if n else "---" for n in numeric) + " |",
    ]
    for row in frame.itertuples(index=False, name=None):
        cells = [_cell(v, formats.get(c, default_format)) for c, v in zip(columns, row,
                                                                          strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_report(run: Run, figure_dir: Path, report_dir: Path) -> str:
    """The Markdown text of the report of `run`, linking figures in `figure_dir` relative
    to `report_dir` (where report.md is written)."""
    headline = summarise_run(run)
    cost = distribution_cost(run)
    rewards = client_rewards(run)
    by_round = price_contribution_correlation_by_round(run)
    investors = investor_performance(run)
    lps = lp_decomposition(run)

    def figure(name: str, caption: str) -> str:
        png = Path(os.path.relpath(figure_dir / f"{name}.png", report_dir)).as_posix()
        pdf = Path(os.path.relpath(figure_dir / f"{name}.pdf", report_dir)).as_posix()
        return f"![{caption}]({png})\n\n[{name}.pdf]({pdf})"

    overview = pd.DataFrame([{
        "scenario": run.name, "seed": MISSING if run.seed is None else run.seed,
        "policy": cost["policy"], "steps": run.steps, "FL rounds": cost["rounds"],
        "final accuracy": headline["final_accuracy"],
    }])
    numbers = pd.DataFrame({
        "metric": [
            "Spearman ρ, final token price vs cumulative contribution (across clients)",
            "Gini of rewards received (clients' received USD)",
            "Rewards distributed (USD)",
            "Distribution cost: fees and slippage paid by the federation (USD)",
            "Distribution cost (% of rewards)",
        ],
        "value": [_cell(headline["price_contribution_spearman"], ".3f"),
                  _cell(headline["reward_gini"], ".3f"), _cell(cost["rewards_usd"], ",.2f"),
                  _cell(cost["cost_usd"], ",.2f"), _cell(cost["cost_pct"], ".2f")],
    })
    client_table = rewards.rename(columns={
        "contribution": "cumulative contribution", "reward_usd": "reward allotted (USD)",
        "initial_wealth_usd": "initial wealth (USD)", "final_wealth_usd": "final wealth (USD)",
        "received_usd": "received (USD)", "cash_change_usd": "of which cash (USD)",
        "holdings_change_usd": "of which tokens (USD)", "equal_payout_usd": "equal payout (USD)",
        "vs_equal_pct": "vs equal payout (%)",
    })
    round_table = pd.DataFrame({"FL round": by_round.index.astype(int),
                                "Spearman ρ": by_round.to_numpy()})
    investor_table = investors.rename(columns={
        "mean_pnl_usd": "mean PnL (USD)", "median_pnl_usd": "median PnL (USD)",
        "mean_return_pct": "mean return (%)", "sharpe": "Sharpe (run horizon)",
        "profitable_share": "share profitable",
    })
    lp_table = lps.rename(columns={
        "agent_id": "LP", "strategy": "exit rule", "initial_wealth_usd": "initial wealth (USD)",
        "final_wealth_usd": "final wealth (USD)", "pnl_usd": "PnL (USD)",
        "fees_earned_usd": "fees earned (USD)", "impermanent_loss_usd": "impermanent loss (USD)",
        "price_effect_usd": "price effect (USD)", "measured_step": "measured at step",
    })

    sections = [
        f"# Run report: {run.name}",
        f"Run folder `{run.path}`. All money in USD; wealth is cash plus tokens and "
        "liquidity shares marked to market at the pools' spot prices.",
        markdown_table(overview, {"final accuracy": ".4f"}),
        "## Headline",
        markdown_table(numbers),
        "The Gini uses the mean absolute difference with losses kept (not clipped to 0): "
        "it is the usual Gini when every client gained, and exceeds 1 when some lost.",
        "## Reward received vs equal payout",
        "*received* = the client's final minus initial wealth; *equal payout* = all rewards "
        "distributed / number of clients; *vs equal payout* = 100 × (received − equal) / "
        "equal, so 0 % is exactly an equal split and −100 % is nothing at all. *Of which "
        "cash* is the change of its USD balance (cash rewards, dividends, sales); *of which "
        "tokens* the change of its tokens and liquidity marked to market (minted rewards and "
        "price moves, the genesis supply it still holds included).",
        markdown_table(client_table, {"cumulative contribution": ".4f"}),
        figure("reward_vs_equal", "Reward received vs equal payout per client"),
        "## Token prices and contributions",
        "Spearman ρ across clients of each token's price (at the last step before the next "
        "round) against the cumulative contribution up to that round.",
        markdown_table(round_table, {"Spearman ρ": ".3f"}) if len(round_table)
        else "No FL round in this run.",
        figure("token_prices", "Token prices with FL rounds marked"),
        figure("contributions", "Contribution per client per round"),
        "## Investors by strategy",
        "PnL = final − initial wealth; Sharpe = mean / std of an investor's per-step returns "
        "× √steps (risk-free rate 0), averaged over the strategy's investors.",
        markdown_table(investor_table, {"Sharpe (run horizon)": ".3f",
                                        "share profitable": ".0%"})
        if len(investor_table) else "No investor in this run.",
        figure("wealth_by_type", "Total wealth by agent type"),
        "## Liquidity providers",
        "PnL = fees earned + impermanent loss + price effect; impermanent loss = position "
        "value − value of the deposit had it been held − fees, read at the last step the "
        "LP held a position.",
        markdown_table(lp_table) if len(lp_table) else "No liquidity provider in this run.",
        figure("lp_pnl", "LP PnL decomposition"),
    ]
    return "\n\n".join(sections) + "\n"


def write_report(run_dir: str | Path) -> Path:
    """Regenerate the figures of the run folder `run_dir` (PNG and PDF in
    `<run_dir>/figures/`) and write `<run_dir>/report.md`; return the report's path.

    Raises `RunFolderError` if `run_dir` is not a run folder. The report is written to a
    temporary file and renamed, so a reader never sees half a report.
    """
    run = load_run(run_dir)
    figure_dir = run.path / "figures"
    written = make_figures(run, figure_dir)
    missing = [n for n in FIGURE_NAMES if figure_dir / f"{n}.png" not in written]
    if missing:  # the report links every figure: refuse to write dangling links
        raise RuntimeError(f"figures not written: {', '.join(missing)}")
    text = render_report(run, figure_dir, run.path)
    target = run.path / REPORT_FILE
    partial = target.with_name(f".{REPORT_FILE}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m analysis.report RUN_DIR`: write the report; exit 2 on a bad folder."""
    parser = argparse.ArgumentParser(prog="python -m analysis.report",
                                     description="Regenerate a run folder's figures and "
                                                 "report.md.")
    parser.add_argument("run_dir", type=Path, help="a run folder written by `wsf run`")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.run_dir)
    except RunFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _cell(value: Any, spec: str) -> str:
    if value is None or (not isinstance(value, str) and bool(pd.isna(value))):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        return format(float(value), spec)
    return _escape(str(value))


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


if __name__ == "__main__":
    raise SystemExit(main())
