"""`report.md` for one run folder: headline numbers, the metric tables, links to the figures.

`write_report(run_dir)` regenerates the figures into `<run>/figures/` and (re)writes
`<run>/report.md`; it is what `wsf report RUN_DIR` does. The Markdown tables are rendered by
`analysis.markdown.markdown_table`, each column with its own number format (contributions
need four decimals, USD two, counts none).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.figures import FIGURE_NAMES, make_figures
from analysis.markdown import MISSING, cell, markdown_table
from analysis.market_stats import (
    ACF_LAGS,
    BUBBLE_MULTIPLE,
    HILL_TAIL_FRACTION,
    bubble_flags,
    price_runups,
    round_every,
    token_return_stats,
)
from analysis.metrics import (
    adaptive_clients,
    client_rewards,
    conduct_actions,
    execution_cost,
    holder_outcomes,
    individual_rationality,
    investor_performance,
    lp_decomposition,
    money_by_holder,
    money_flows,
    price_contribution_correlation_by_round,
    summarise_run,
)
from analysis.runs import Run, RunFolderError, load_run
from analysis.statistics import fisher_z_interval

REPORT_FILE = "report.md"


def _reached_text(summary: dict) -> str:
    """`reached %` (USD) and where the rest went, or n/a without a twin."""
    pct, went = summary.get("reached_clients_pct"), summary.get("budget_went_pct")
    if pct is None or not went:
        return "n/a (no twin)"
    names = {"investor": "investors", "lp": "LPs", "federation": "federation",
             "training_costs": "extra training costs", "left_in_pools": "left in pools"}
    rest = ", ".join(f"{names[k]} {v:.1f} %" for k, v in went.items()
                     if k in names and abs(v) >= 0.05)
    return (f"{pct:.1f} % ({summary['reached_clients_usd']:,.2f} USD); the rest: "
            f"{rest or 'none'}")


def render_report(run: Run, figure_dir: Path, report_dir: Path) -> str:
    """The Markdown text of the report of `run`, linking figures in `figure_dir` relative
    to `report_dir` (where report.md is written)."""
    headline = summarise_run(run)
    cost = execution_cost(run)
    rewards = client_rewards(run)
    by_round = price_contribution_correlation_by_round(run)
    investors = investor_performance(run)
    lps = lp_decomposition(run)

    def figure(name: str, caption: str) -> str:
        png = Path(os.path.relpath(figure_dir / f"{name}.png", report_dir)).as_posix()
        pdf = Path(os.path.relpath(figure_dir / f"{name}.pdf", report_dir)).as_posix()
        return f"![{caption}]({png})\n\n[{name}.pdf]({pdf})"

    holders = holder_outcomes(run)
    ir_table = individual_rationality(run).rename(columns={
        "rounds_participated": "rounds trained", "rounds": "FL rounds",
        "cost_usd": "cost (USD)", "reward_if_sold_usd": "reward if sold (USD)",
        "net_usd": "net (USD)", "individually_rational": "reward >= cost"})
    flows = money_flows(run)
    by_holder = money_by_holder(run)
    twin = bool((run.summary.get("counterfactual") or {}).get("ran"))
    unranked = run.summary.get("unranked_rounds") or {}

    overview = pd.DataFrame([{
        "scenario": run.name, "seed": MISSING if run.seed is None else run.seed,
        "policy": cost["policy"], "steps": run.steps, "FL rounds": cost["rounds"],
        "final accuracy": headline["final_accuracy"],
        "counterfactual twin": "yes" if twin else "no",
    }])
    n_clients = len(run.client_ids)

    def rho(value: float) -> str:
        """rho [95 % Fisher-z interval over the n clients] (Spearman's se)."""
        low, high = fisher_z_interval(value, n_clients)
        if not np.isfinite(low):
            return cell(value, ".3f")
        return f"{cell(value, '.3f')} [{low:.3f}, {high:.3f}]"

    numbers = pd.DataFrame({
        "metric": [
            "What reached the clients: their attributable total if every agent sold at once, "
            "% of the budget paid in (USD; needs the twin)",
            "Spearman ρ, final token price vs cumulative contribution (across clients; "
            "95 % Fisher-z interval)",
            "Spearman ρ, final market capitalisation (price × supply) vs cumulative "
            "contribution (95 % Fisher-z interval)",
            "Spearman ρ, allotted reward vs cumulative contribution (95 % Fisher-z interval)",
            "Spearman ρ, attributable reward vs cumulative contribution (95 % Fisher-z "
            "interval; needs the twin)",
            "Gini of the allotments (clients' allotted USD)",
            "Rewards budgeted (USD)",
            "Execution cost: fees and slippage paid by the federation (USD)",
            "Execution cost (% of rewards)",
            "FL rounds the method could not rank (no positive contribution)",
            "Zero-update probe: what a client sending nothing would be paid (% of a "
            "round's rewards; mean over rounds, max, rounds above 0)",
        ],
        "value": [_reached_text(run.summary),
                  rho(headline["price_contribution_spearman"]),
                  rho(headline["mcap_contribution_rho"]),
                  rho(headline["reward_contribution_rho"]),
                  rho(headline["attributable_contribution_rho"]),
                  cell(headline["reward_gini"], ".3f"), cell(cost["rewards_usd"], ",.2f"),
                  cell(cost["cost_usd"], ",.2f"), cell(cost["cost_pct"], ".2f"),
                  _unranked_text(unranked), _probe_text(run.summary.get("zero_probe"))],
    })
    client_table = rewards[[
        "client", "behaviour", "contribution", "allotted_usd", "allotted_vs_equal_pct",
        "cash_paid_usd", "attributable_usd", "attributable_vs_equal_pct", "mtm_change_usd",
        "if_sold_change_usd"]].rename(columns={
            "contribution": "cumulative contribution", "allotted_usd": "allotted (USD)",
            "allotted_vs_equal_pct": "allotted vs equal (%)",
            "cash_paid_usd": "paid as cash (USD)",
            "attributable_usd": "attributable (USD)",
            "attributable_vs_equal_pct": "attributable vs equal (%)",
            "mtm_change_usd": "spot-marked change (USD)",
            "if_sold_change_usd": "if-sold change (USD)"})
    holder_table = holders.rename(columns={
        "holder": "holder type", "initial_wealth_usd": "initial at spot (USD)",
        "final_wealth_usd": "final at spot (USD)",
        "final_if_each_sold_alone_usd": "final if sold, each alone (USD)",
        "final_if_all_sold_usd": "final if every agent sold at once (USD)",
        "mtm_change_usd": "change at spot (USD)", "if_sold_change_usd": "change if sold (USD)",
        "attributable_usd": "attributable (USD)"})
    round_table = pd.DataFrame({"FL round": by_round.index.astype(int),
                                "Spearman ρ": by_round.to_numpy()})
    # Where investors switch strategies a row groups those that started in its strategy:
    # say so, and how much of their steps they spent in it, instead of implying it made them.
    switched = bool(len(investors)) and bool((investors["in_strategy_share"] < 1).any())
    investor_table = investors[[
        "strategy", "n", *(["in_strategy_share"] if switched else []), "mean_pnl_usd",
        "mean_pnl_if_sold_usd", "mean_return_pct", "mean_return_if_sold_pct", "sharpe",
        "sharpe_if_sold", "profitable_share", "profitable_if_sold_share"]].rename(columns={
            "strategy": "starting strategy" if switched else "strategy",
            "in_strategy_share": "steps in it",
            "mean_pnl_usd": "mean PnL at spot (USD)",
            "mean_pnl_if_sold_usd": "mean PnL if sold (USD)",
            "mean_return_pct": "return at spot (%)", "mean_return_if_sold_pct":
            "return if sold (%)", "sharpe": "Sharpe at spot", "sharpe_if_sold": "Sharpe if sold",
            "profitable_share": "profitable at spot",
            "profitable_if_sold_share": "profitable if sold"})
    lp_table = lps.rename(columns={
        "agent_id": "LP", "strategy": "exit rule", "initial_wealth_usd": "initial wealth (USD)",
        "final_wealth_usd": "final at spot (USD)", "pnl_usd": "PnL at spot (USD)",
        "fees_earned_usd": "fees earned (USD)", "impermanent_loss_usd": "impermanent loss (USD)",
        "price_effect_usd": "price effect (USD)", "final_wealth_if_sold_usd":
        "final if sold (USD)", "pnl_if_sold_usd": "PnL if sold (USD)",
        "measured_step": "measured at step",
    })
    twin_note = (
        "*Attributable* = the client's realisable final wealth (everything sold alone, fees "
        "and price impact included) in this run minus in its counterfactual twin (same "
        "scenario and seed, reward budget 0, under `counterfactual/`): what the reward "
        "mechanism delivered, market effects included."
        if twin else
        "*Attributable* needs the counterfactual twin (`wsf run FILE --counterfactual`, or "
        "`counterfactual: true` in the scenario); this run has none, so it reads n/a."
    )

    sections = [
        f"# Run report: {run.name}",
        f"Run folder `{run.path}`. All money in USD. Every wealth figure is given two ways: "
        "*at spot* (cash plus tokens and liquidity shares marked at the pools' spot prices) "
        "and *if sold* (what the holder would have in USD after selling everything alone, "
        "fees and price impact included).",
        markdown_table(overview, {"final accuracy": ".4f"}),
        "## Headline",
        markdown_table(numbers),
        *_probe_warning(run.summary.get("zero_probe"), run.config),
        "The Gini uses the mean absolute difference with losses kept (not clipped to 0): "
        "it is the usual Gini when every value is non-negative.",
        "## Reward per client: allotted, attributable, spot-marked",
        "*Allotted* = what the policy allotted the client (Σ s_i R, or R / N under `equal`); "
        "*vs equal* = 100 × (amount / equal split − 1) with the equal split = what `equal` "
        "would have allotted (Σ R / N), so 0 % is exactly an equal split and −100 % is "
        "nothing. *Paid as cash* = USD the policy paid the client itself. " + twin_note
        + " *Spot-marked change* = final − initial wealth at spot: it includes speculation "
        "on the client's genesis tokens and measures no reward. *If-sold change* = the same "
        "on realisable wealth.",
        markdown_table(client_table, {"cumulative contribution": ".4f"}),
        figure("reward_vs_equal", "Allotted and attributable reward vs the equal split, per "
               "client (%)"),
        "## Wealth by holder type",
        "Summed over the agents of each type; the federation is the treasury and the "
        "largest liquidity provider (it seeds the pools). *Attributable* = final if sold, "
        "run minus twin. " + _not_additive_note(holders, run.summary.get("money")),
        markdown_table(holder_table),
        "## Where the money went",
        "USD enters only as endowments (genesis) and reward budgets. The budget's "
        "destinations below sum to the budgets paid in; the fees are the spot value of the "
        "pool fees accrued to each holder type's liquidity shares.",
        markdown_table(flows, {"usd": ",.2f"}) if len(flows)
        else "This run has no money table.",
        "USD held per holder type: start (after genesis) + from the reward budget + net "
        "from trading and liquidity = end. Trading only moves USD between holders: its "
        "column sums to 0; the end column sums to endowments plus budgets "
        + ("(checked exactly in base units: balanced)."
           if (run.summary.get("money") or {}).get("balanced") else "."),
        markdown_table(by_holder, {c: ",.2f" for c in by_holder.columns if c != "holder"})
        if len(by_holder) else "",
        figure("money", "Where the money went: change of USD held per holder type (USD)"),
        "## Participation",
        "Clients train in a round only when their participation rule says so and they can "
        "pay their training cost (`clients[].cost_per_round`, paid in USD to the cost sink); "
        "a client that sat out is absent from the round's coalition game and earns nothing "
        "that round. *Reward if sold* = what the round's payouts added to the client's "
        "holdings valued at what they would fetch sold alone, summed over the rounds; the "
        "client is *individually rational* when that covers its training costs. "
        + _participation_text(run.summary),
        markdown_table(ir_table, {"cost (USD)": ",.2f", "reward if sold (USD)": ",.2f",
                                  "net (USD)": ",.2f"})
        if len(ir_table) else "This run's tables predate participation.",
        figure("participation", "Clients training per FL round, by behaviour, and the "
               "validation accuracy after each round (%)"),
        *_conduct_section(run, figure),
        *_sybil_section(run.summary.get("sybil")),
        *_orders_section(run.summary.get("orders")),
        "## Token prices and contributions",
        "Spearman ρ across clients of each token's price (at the last step before the next "
        "round) against the cumulative contribution up to that round.",
        markdown_table(round_table, {"Spearman ρ": ".3f"}) if len(round_table)
        else "No FL round in this run.",
        figure("token_prices", "Token prices with FL rounds marked"),
        figure("contributions", "Contribution per client per round"),
        *_market_section(run, headline, figure),
        "## Investors by starting strategy" if switched else "## Investors by strategy",
        *(["Investors switch strategies in this run (docs/model.md, 7.17): a row groups the "
           "investors that started in its strategy, whatever they used later; *steps in it* "
           "is the mean share of their collected steps spent in it. The strategies' shares "
           "over time are in the figure `strategy_shares`."] if switched else []),
        "PnL = final − initial wealth, at spot and if sold; Sharpe = mean / std of an "
        "investor's per-step returns × √steps (risk-free rate 0), averaged over the "
        "row's investors, on each valuation.",
        markdown_table(investor_table, {"steps in it": ".0%", "Sharpe at spot": ".3f",
                                        "Sharpe if sold": ".3f",
                                        "profitable at spot": ".0%",
                                        "profitable if sold": ".0%"})
        if len(investor_table) else "No investor in this run.",
        figure("wealth_by_type", "Total wealth by agent type, at spot and if sold (USD)"),
        "## Liquidity providers",
        "PnL at spot = fees earned + impermanent loss + price effect; impermanent loss = "
        "position value − value of the deposit had it been held − fees, read at the last "
        "step the LP held a position. PnL if sold = the same on realisable wealth.",
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


def _market_section(run: Run, headline: Mapping[str, Any], figure: Any) -> list[str]:
    """The "Market statistics" section: the stylised facts of the token returns (per token
    and the run's medians), the autocorrelation figure, and the run-up (bubble) flags."""
    per_token = token_return_stats(run)
    lag = round_every(run)
    lag_text = f"lag {lag}" if lag else "lag round_every"
    rename = {"client": "token", "zero_share": "steps without a trade",
              "std": "std of log return", "excess_kurtosis": "excess kurtosis",
              "hill_alpha": "Hill α", "acf1": "ACF(1)", "absacf1": "ACF(1) of |r|",
              "absacf_1_5": "mean ACF(1-5) of |r|", "absacf_11_19": "mean ACF(11-19) of |r|",
              "round_clock_acf": f"ACF({lag_text})",
              "round_clock_absacf": f"ACF({lag_text}) of |r|",
              "ljung_box_p": "Ljung-Box p", "absret_ljung_box_p": "Ljung-Box p of |r|"}
    table = per_token.drop(columns=["n_returns"]).rename(columns=rename)
    medians = {"token": "median across tokens",
               **{rename[k]: headline[v] for k, v in (
                   ("excess_kurtosis", "ret_excess_kurtosis"), ("hill_alpha", "ret_hill_alpha"),
                   ("acf1", "ret_acf1"), ("absacf1", "absret_acf1"),
                   ("absacf_1_5", "absret_acf_1_5"), ("absacf_11_19", "absret_acf_11_19"),
                   ("round_clock_acf", "round_clock_acf"),
                   ("round_clock_absacf", "round_clock_absacf"))}}
    table = pd.concat([table, pd.DataFrame([medians])], ignore_index=True)
    n = int(per_token["n_returns"].max()) if len(per_token) else 0
    runups = price_runups(run)
    flags = bubble_flags(run)
    runup_table = runups.rename(columns={
        "client": "token", "opening_price": "opening price", "median_price": "median price",
        "reference_price": "typical price", "peak_step": "peak step",
        "peak_price": "peak price", "multiple": "peak / typical", "start_step":
        "run-up from step", "start_price": "price then", "final_price": "final price",
        "after_peak_pct": "final vs peak (%)"})
    rule = (f"peak price is at least {BUBBLE_MULTIPLE:g} times its typical price (the larger of "
            "its opening and its median price over the run)")
    if flags.empty:
        verdict = (f"**No bubble flagged**: no token's {rule} (largest peak / typical: "
                   f"{cell(headline['max_peak_multiple'], '.2f')}).")
    else:
        lines = []
        for row in flags.itertuples(index=False):
            spent = ", ".join(f"{k} {v:,.0f}" for k, v in row.net_usd_by_class.items()
                              if round(v) != 0)
            lines.append(
                f"- **{row.client}**: peak {row.peak_price:.4f} USD at step {row.peak_step}, "
                f"{row.multiple:.1f} times its typical {row.reference_price:.4f} USD; run-up "
                f"from step {row.start_step} ({row.start_price:.4f} USD); "
                f"{row.after_peak_pct:+.0f} % from the peak by the end. Net buyer over the "
                f"run-up: **{row.net_buyer}** ({row.net_buyer_usd:,.0f} USD net, "
                f"{cell(row.net_buyer_share, '.0%')} of what the buying classes put in). "
                f"Net USD spent by class (buys − sales, all tokens; classes that did not "
                f"trade left out): {spent}.")
        verdict = (f"**{len(flags)} bubble(s) flagged** (tokens whose {rule}):\n\n"
                   + "\n".join(lines))
    return [
        "## Market statistics",
        f"Per-step log returns r_t = ln(p_t / p_(t−1)) of each token's spot price ({n} per "
        "token); each statistic per token, and the run's figure is the median across "
        "tokens (tokens' volatilities differ too much to pool their returns). *Excess "
        "kurtosis*: 0 for a Gaussian (real daily returns: about 3 to 10). *Hill α*: tail "
        f"index of |r| from its largest {HILL_TAIL_FRACTION:.0%} (real markets: about 3; "
        "smaller is fatter). *ACF(k)*: autocorrelation at lag k steps (real markets: about 0 "
        "for returns, positive and slowly decaying for |r|); *mean ACF(1-5) of |r|* and "
        "*mean ACF(11-19) of |r|*: the absolute returns' autocorrelation averaged over lags "
        "1-5 and 11-19, volatility clustering's short and longer memory; "
        f"*ACF({lag_text})* is the FL-round clock's footprint. *Ljung-Box p*: test of no "
        f"autocorrelation up to lag {max(ACF_LAGS, lag or 0)}. *Steps without a trade*: share "
        "of steps in which nobody traded the token (its return is exactly 0).",
        markdown_table(table, {"steps without a trade": ".0%", "std of log return": ".4f",
                               "excess kurtosis": ".1f", "Hill α": ".2f",
                               "Ljung-Box p": ".3f", "Ljung-Box p of |r|": ".3f"},
                       default_format=".3f"),
        figure("autocorrelation", "Autocorrelation of per-step log returns and of their "
               "absolute values, per token and median, lags 1-20"),
        "The share of investors using each strategy, step by step (it moves only where "
        "investors switch strategies, docs/model.md 7.17):",
        figure("strategy_shares", "Share of all investors using each strategy, per step"),
        "### Price run-ups and bubbles",
        f"Rule: a token is flagged as a bubble when its **{rule}**. A reward policy that lifts "
        "a token steadily lifts its median with it; a bubble is an excursion far above "
        "where the token opened and where it usually traded. The *run-up* starts at the last "
        "step before the peak at which the price was at or below the typical price. The *net "
        "buyer* is the agent class (investors by strategy; clients; LPs; the federation) "
        "whose cash fell most from the run-up's start to the peak: the USD it put into the "
        "market net of sales. The tables hold cash per agent, "
        "not holdings per token, so this counts a class's trades in every token over those "
        "steps, and cash paid by the policy (cash rewards, dividends) counts as a sale.",
        verdict,
        markdown_table(runup_table, {"peak / typical": ".2f", "final vs peak (%)": ".1f"},
                       default_format=".4f"),
    ]


def _conduct_section(run: Run, figure: Any) -> list[str]:
    """What the adaptive clients chose (docs/model.md, 7.16); nothing for a run without
    them (every client then ran its behaviour every round, as the participation table says)."""
    adaptive = adaptive_clients(run)
    if not adaptive:
        return []
    share = (run.summary.get("conduct") or {}).get("honest_share_last_quarter")
    table = conduct_actions(run).rename(columns={
        "share_pct": "share of choices (%)",
        "share_last_quarter_pct": "share in the last quarter (%)",
        "mean_payoff_usd": "mean payoff per choice (USD)"})
    return [
        "## Conduct: what the adaptive clients chose",
        f"{len(adaptive)} client(s) ({', '.join(adaptive)}) choose every round how to behave "
        "by what each action realised for them: the round's reward valued if sold alone "
        "minus the action's cost (the *payoff*, USD). The mechanism is incentive compatible "
        "for them when they end up training honestly. In the last quarter of the rounds "
        + (f"{100.0 * share:.1f} % of their choices were honest training."
           if share is not None else "none of them was invited to a round.")
        + _not_drawn_text(run.summary),
        markdown_table(table, {"share of choices (%)": ".1f",
                               "share in the last quarter (%)": ".1f",
                               "mean payoff per choice (USD)": ",.2f"}),
        figure("actions", "Share of the adaptive clients choosing each action, per FL "
               "round (%)"),
    ]


def _sybil_section(sybil: Mapping[str, Any] | None) -> list[str]:
    """Owners that registered several identities (docs/model.md, 7.18); nothing otherwise."""
    if not sybil or not sybil.get("owners"):
        return []
    table = pd.DataFrame([
        {"owner": owner, "identities": ", ".join(o["identities"]),
         "data share (%)": o["data_share_pct"], "reward if sold (USD)": o["reward_if_sold_usd"],
         "reward share (%)": o["reward_share_pct"], "costs (USD)": o["cost_usd"],
         "net (USD)": o["net_usd"]}
        for owner, o in sybil["owners"].items()])
    mean = sybil.get("one_identity_mean_reward_share_pct")
    return [
        "## Sybil identities",
        "Clients that registered several identities: accounts of their own (token, pool, "
        "cost) training on one owner's data. *Reward if sold* = what the payouts added to "
        "the identities' holdings valued if sold alone, summed; *reward share* = that as % "
        "of every client's; *data share* = the owner's distinct samples as % of all owners'. "
        + (f"The owners with one identity took {mean:.1f} % each on average. "
           if mean is not None else "")
        + "Whether splitting paid needs the same scenario at `identities: 1` (same seed).",
        markdown_table(table, {"data share (%)": ".1f", "reward if sold (USD)": ",.2f",
                               "reward share (%)": ".1f", "costs (USD)": ",.2f",
                               "net (USD)": ",.2f"}),
    ]


def _not_drawn_text(summary: Mapping[str, Any]) -> str:
    """The rounds the client sample left the adaptive clients out of (7.15), if any."""
    missed = sum(((summary.get("conduct") or {}).get("rounds_not_drawn") or {}).values())
    if not missed:
        return ""
    return (f" The client sample (`fl.clients_per_round`) did not invite them in {missed} "
            "client-round(s): those hold no choice and are left out of the shares below.")


def _orders_section(orders: Mapping[str, Any] | None) -> list[str]:
    """"Orders cut by guards": per agent type the orders asked, how many a guard cut, USD
    asked against done and the USD each guard cut; per client its own sales by purpose
    (cash-out, offering, funding), tokens asked against sold (summary.json `orders`)."""
    head = "## Orders cut by guards"
    if not orders:
        return [head, "This run's summary predates the order record."]
    rows = []
    for kind, o in orders["by_type"].items():
        if not o["orders"]:
            continue
        row = {"agent type": kind, "orders": o["orders"], "cut": o["orders_cut"],
               "asked (USD)": o["asked_usd"], "done (USD)": o["done_usd"],
               "done (%)": o["done_pct"]}
        for guard, g in o["by_guard"].items():
            row[f"{guard}: cut / USD"] = (f"{g['orders_cut']:,} / {g['cut_usd']:,.2f}"
                                          if g["orders_cut"] else "0")
        rows.append(row)
    by_type = pd.DataFrame(rows)
    sales = pd.DataFrame([
        {"client": cid, "purpose": purpose, "asked (tokens)": b["asked_tokens"],
         "sold (tokens)": b["sold_tokens"], "sold (%)": b["sold_pct"],
         "asked at spot (USD)": b["asked_usd_at_spot"], "proceeds (USD)": b["proceeds_usd"]}
        for cid, books in orders["clients"].items() for purpose, b in books.items()])
    text = [head,
            "Every order an agent asked for (0.01 USD or token and above) passes its limits "
            "in this order, each of which may cut it: *cash* (an investor's `max_trade` share "
            "of its USD and its USD balance for a buy, the holding for a sale), *position* "
            "(`max_position`), *dilution* (a client's new tokens) and *slippage* (the trade "
            "guard's price-impact cap, and the pool refusing a fill below the minimum out). "
            "Cumulative, over the run; a sale is valued at the spot price just before it. "
            "Per agent and step: `orders`, `orders_cut`, `asked_usd`, `done_usd` in "
            "agents.parquet; per client and round, `cash_out_asked_tokens` and "
            "`cash_out_sold_tokens` in rounds.parquet.",
            markdown_table(by_type, {"asked (USD)": ",.2f", "done (USD)": ",.2f",
                                     "done (%)": ".1f"}) if len(by_type)
            else "No agent asked for an order."]
    if len(sales):
        cash_out = sales[sales["purpose"] == "cash_out"]
        if len(cash_out):
            asked, sold = cash_out["asked (tokens)"].sum(), cash_out["sold (tokens)"].sum()
            text.append(f"Clients' own sales by purpose. Their cash-out rules asked to sell "
                        f"{asked:,.0f} tokens after the rounds and the guards let "
                        f"{sold:,.0f} sell ({100 * sold / asked:.1f} %).")
        else:
            text.append("Clients' own sales by purpose.")
        text.append(markdown_table(sales, {"asked (tokens)": ",.2f", "sold (tokens)": ",.2f",
                                           "sold (%)": ".1f", "asked at spot (USD)": ",.2f",
                                           "proceeds (USD)": ",.2f"}))
    return text


def _not_additive_note(holders: pd.DataFrame, money: Mapping[str, Any] | None) -> str:
    """Why the if-sold column does not add up to the USD that exists (with the numbers)."""
    note = ("Each holder's *if sold, each alone* value is its sale alone into the current "
            "pools; the same pool USD backs every holder's sale, so these values do not add "
            "up: no group of holders could realise the sum at once. *If every agent sold at "
            "once* is the type's part of one joint liquidation of the whole economy (every "
            "pool's tokens sold in one sale, then its liquidity redeemed, each share pro "
            "rata): these add up, and so do the *attributable* figures (run minus twin), to "
            "the budget paid in less extra training costs and what the pools keep.")
    if not money or holders.empty:
        return note
    usd = sum(float(v["end"]) for v in money["usd_by_holder"].values())
    if_sold = float(holders["final_if_each_sold_alone_usd"].sum())
    return note + (f" Here the if-sold values sum to {if_sold:,.2f} USD while {usd:,.2f} USD "
                   "exist in the whole economy.")


def _participation_text(summary: Mapping[str, Any]) -> str:
    """One sentence on participation from summary.json (empty for older runs)."""
    p = summary.get("participation")
    if not p:
        return ""
    empty = (summary.get("empty_rounds") or {}).get("rounds", 0)
    text = (f"On average {p['mean_participating']:.2f} of {p['clients']} clients trained per "
            f"round, {p['final_participating']} in the last; {p['ir_violations']} client(s) "
            "paid more for training than their rewards would fetch.")
    if empty:
        text += (f" In {empty} round(s) nobody trained: the model stayed as it was and the "
                 "round's budget was withheld by the treasury.")
    return text


def _probe_text(probe: Mapping[str, Any] | None) -> str:
    """The zero-update probe's row of the headline (docs/model.md, section 7.5)."""
    if not probe:
        return MISSING
    return (f"{float(probe['mean_pct']):.2f} % (max {float(probe['max_pct']):.2f} %, "
            f"{int(probe['rounds_paid'])} rounds above 0)")


def _probe_warning(probe: Mapping[str, Any] | None, config: Mapping[str, Any]) -> list[str]:
    """A paragraph when the coalition game pays a client for sending nothing."""
    if not probe or not float(probe["rounds_paid"]):
        return []
    rule = (config.get("contribution") or {}).get("coalition", "?")
    return [f"**The coalition game rewards sending nothing.** A phantom client sending a zero "
            f"update would have been paid in {int(probe['rounds_paid'])} rounds "
            f"({float(probe['mean_pct']):.2f} % of a round's rewards on average): under the "
            f"`{rule}` coalition rule a zero update dilutes the others' step, which lowers "
            "the loss where the full step overshoots, so free riders are paid for damping. "
            "`contribution.coalition: round_weights` makes a zero update a null player "
            "(docs/model.md, section 7.5)."]


def _unranked_text(unranked: Mapping[str, Any]) -> str:
    """`"3 (2 truncated; budget 3,000.00 USD withheld by the treasury)"`, or n/a."""
    if not unranked:
        return MISSING
    n = int(unranked.get("rounds", 0))
    if n == 0:
        return "0"
    return (f"{n} ({int(unranked.get('truncated', 0))} truncated, "
            f"{int(unranked.get('all_zero', 0))} all zero; budget "
            f"{float(unranked.get('budget_usd', 0.0)):,.2f} USD {unranked.get('handled', '')})")


if __name__ == "__main__":
    raise SystemExit(main())
