"""The sweep report's tables: means over seeds with confidence intervals, per grid point."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.markdown import markdown_table
from analysis.market_stats import MARKET_STAT_KEYS
from analysis.metrics import BUDGET_DESTINATIONS, RUN_OUTPUTS
from analysis.sweep.loading import SweepTables
from analysis.sweep.statistics import summarise_over_seeds

__all__ = ["HEADLINE", "METHOD_PATH", "POLICY_PATH", "SummaryTable", "client_keys",
           "clients_identified", "dataset_label", "summary_tables", "sweep_summary_tables"]

# Grid keys that the policy and method columns (read from each run's config) already show.
POLICY_PATH = "rewards.policy"
METHOD_PATH = "contribution.method"

#: The runs table's market statistics (analysis.market_stats.market_statistics).
MARKET_METRICS = (*MARKET_STAT_KEYS, "price_contribution_spearman")
#: The headline figures per grid point: every run output but those that only restate
#: another (the budget paid in, investors' PnL at spot beside its if-sold value) and those
#: with a table of their own (participation; market statistics but the price-contribution
#: correlation).
HEADLINE = tuple(o for o in RUN_OUTPUTS if o not in (
    "total_reward_usd", "investor_pnl_usd", "mean_participation", "final_participating",
    "ir_violations", "training_costs_usd",
    *(m for m in MARKET_METRICS if m != "price_contribution_spearman")))
#: How reports name a dataset (`fl.dataset.name`) whose name alone could mislead.
DATASET_LABELS = {
    "cifar10": "CIFAR-10 (a local copy)",
    "cifar10_standin": "the CIFAR-shaped synthetic stand-in (not CIFAR-10)",
}
CLIENT_METRICS = (
    "contribution",
    "allotted_usd",
    "equal_split_usd",
    "allotted_vs_equal_pct",
    "attributable_usd",
    "attributable_vs_equal_pct",
    "mtm_change_usd",
)
HOLDER_METRICS = ("attributable_usd", "mtm_change_usd", "if_sold_change_usd",
                  "final_if_all_sold_usd")
COST_METRICS = ("rewards_usd", "execution_cost_usd", "execution_cost_pct")
#: What reached the clients and where the rest of the budget went (% of the budget paid in).
BUDGET_METRICS = ("reached_clients_pct", "reached_clients_usd",
                  *(f"budget_to_{k}_pct" for k in BUDGET_DESTINATIONS))
INFORMATIVENESS_METRICS = ("price_contribution_spearman", "mcap_contribution_rho")
INVESTOR_METRICS = (
    "mean_return_pct",
    "mean_return_if_sold_pct",
    "mean_pnl_usd",
    "mean_pnl_if_sold_usd",
    "sharpe",
    "sharpe_if_sold",
    "profitable_share",
)


@dataclass(frozen=True)
class SummaryTable:
    name: str
    title: str
    note: str
    frame: pd.DataFrame  # summarise_over_seeds output
    by: list[str]
    values: tuple[str, ...]
    #: Also show the median over seeds (`<v>_median` columns of `frame`) beside the mean.
    medians: bool = False


def sweep_summary_tables(tables: SweepTables) -> dict[str, pd.DataFrame]:
    """The report's tables ({name: summarise_over_seeds frame}), grouped by grid parameters."""
    return {t.name: t.frame for t in summary_tables(tables)}


def _participation_table(tables: SweepTables) -> list[SummaryTable]:
    """The participation table (docs/model.md, 7.13), when some client paid for training or
    sat a round out in some run (otherwise every cell would read "everyone, always")."""
    runs, by = tables.runs, tables.params
    if "mean_participation" not in runs.columns or not (
            (runs["mean_participation"] < 1).any() or (runs["training_costs_usd"] > 0).any()):
        return []
    values = ("final_accuracy", "mean_participation", "final_participating",
              *sorted(c for c in runs.columns if c.startswith("participation_")),
              "ir_violations", "training_costs_usd")
    values = tuple(v for v in values if v in runs.columns)
    group = [*by, *_unless(by, "policy")]
    return [SummaryTable(
        "participation",
        "Participation: who kept training, and the accuracy it led to",
        "Per run (`analysis.metrics.participation_summary`): final accuracy of the global "
        "model; mean share of clients training per round; clients training in the last "
        "round; per behaviour, the share of client-rounds its clients trained in; clients "
        "whose rewards, valued at what they would fetch sold, fell short of the training "
        "costs they paid (individual rationality failed); all training costs paid (USD).",
        summarise_over_seeds(runs, group, values, tables.confidence),
        group,
        values,
    )]


def clients_identified(tables: SweepTables) -> bool:
    """Is a client id the same client (the same data) in every seed of a grid point?

    True when every run of a point drew its data from one seed (`data_seed` of the combined
    clients table: `fl.partition.seed`, or the run seed when the scenario leaves it out; a
    point with a single seed is identified trivially). Combined tables written before the
    column existed count the run seed."""
    clients = tables.clients
    if clients.empty:
        return True
    column = "data_seed" if "data_seed" in clients.columns else "seed"
    if not tables.params:
        return clients[column].nunique(dropna=False) <= 1
    counts = clients.groupby(tables.params, sort=False, dropna=False)[column].nunique(
        dropna=False)
    return bool((counts <= 1).all())


def dataset_label(tables: SweepTables) -> str:
    """The data the sweep's clients learned, in words (`DATASET_LABELS`; several joined by
    " and "; "unknown data" for combined tables written before the column existed)."""
    if "dataset" not in tables.clients.columns or tables.clients.empty:
        return "unknown data"
    names = [str(n) for n in dict.fromkeys(tables.clients["dataset"])]
    return " and ".join(DATASET_LABELS.get(n, n) for n in names)


def client_keys(tables: SweepTables) -> list[str]:
    """The columns that tell clients apart in the per-client table: `client` when clients are
    identified across seeds (`clients_identified`), otherwise `behaviour` and
    `contribution_rank` (1 = the largest cumulative contribution of its run)."""
    if clients_identified(tables) or "contribution_rank" not in tables.clients.columns:
        return ["client"]
    return ["behaviour", "contribution_rank"]


def _settings(by: Sequence[str]) -> list[str]:
    """The grid parameters, then policy and method unless the grid varies them: what a
    figure's bars, colours and panels are read from."""
    return [*by, *_unless(by, "policy"), *_unless(by, "method")]


def summary_tables(tables: SweepTables) -> list[SummaryTable]:
    by, c = tables.params, tables.confidence
    keys = client_keys(tables)
    identity = (
        "Clients are identified across seeds: every seed of a point drew the data from the "
        "same seed (`fl.partition.seed`, or one seed per point), so a row is one client."
        if keys == ["client"] else
        "Clients are **not** identified across seeds (each seed redraws the data partition, "
        "so client c00 holds other samples in each): rows aggregate by behaviour and by "
        "contribution rank within the run (1 = the largest cumulative contribution). Set "
        "`fl.partition.seed` in the scenario to keep each client's data fixed and get one "
        "row per client.")
    headline = [v for v in HEADLINE if v in tables.runs.columns]
    market = [v for v in MARKET_METRICS if v in tables.runs.columns]
    return [
        SummaryTable(
            "runs_by_point",
            "Headline figures per grid point",
            "Per run: `analysis.metrics.summarise_run` (accuracy of the global model, Spearman "
            "rho of final price vs cumulative contribution, Gini of the allotments, rewards "
            "and execution cost in USD and % of rewards, extremes of allotted and "
            "attributable vs the equal split in %, rounds the method could not rank, Spearman "
            "rho of allotted and of attributable reward vs contribution, normalised mean "
            "absolute difference of the attributable rewards (`attributable_nmad`: they can "
            "be negative, so no Gini; it equals the Gini when none is), investors' total PnL "
            "if sold). Correlations are averaged in Fisher z space (interval inside [-1, 1]), "
            "Gini coefficients and NMADs get a bootstrap interval.",
            summarise_over_seeds(tables.runs, by, headline, c),
            by,
            tuple(headline),
        ),
        *_participation_table(tables),
        SummaryTable(
            "client_rewards",
            "Reward per client: allotted, attributable, spot-marked",
            "*allotted* = what the policy allotted (USD); *equal split* = what `equal` would "
            "have allotted; *vs equal* = 100 × (amount / equal split − 1), in %; "
            "*attributable* = realisable final wealth of the run minus its counterfactual "
            "twin's (same seed, budget 0; n/a when the sweep ran no twins), i.e. the paired "
            "difference per seed; *mtm change* = final − initial wealth at spot "
            "(speculation included, no measure of reward). Centres are means over seeds, "
            "intervals Student t. Data: " + dataset_label(tables) + ". " + identity,
            summarise_over_seeds(tables.clients, [*_settings(by), *keys], CLIENT_METRICS, c),
            [*_settings(by), *keys],
            CLIENT_METRICS,
        ),
        SummaryTable(
            "paired_differences",
            "Run minus twin per holder type (paired differences across seeds)",
            "Per seed, the run and its counterfactual twin (same seed, reward budget 0) share "
            "their random numbers; *attributable* = final wealth if sold, run − twin (USD). "
            "Mean over seeds and its Student-t interval: what the reward mechanism caused per "
            "holder type. Beside it, each run's own change at spot and if sold.",
            summarise_over_seeds(tables.holders, [*by, "holder"], HOLDER_METRICS, c),
            [*by, "holder"],
            HOLDER_METRICS,
        ),
        SummaryTable(
            "budget_reached",
            "What reached the clients, and where the rest of the budget went",
            "Per run, with its twin: the clients' attributable total when every agent sells "
            "at once (joint liquidation), % of the budget paid in and USD; and the budget's "
            "other destinations (% of the budget: investors, LPs, federation, extra training "
            "costs, left in pools), which sum to 100 with the clients'. NaN without a twin.",
            summarise_over_seeds(tables.runs, [*by, *_unless(by, "policy")], BUDGET_METRICS,
                                 c),
            [*by, *_unless(by, "policy")],
            BUDGET_METRICS,
        ),
        SummaryTable(
            "execution_cost",
            "Execution cost",
            "Fees and slippage the federation paid to distribute the rewards (USD, and % of "
            "the rewards distributed).",
            summarise_over_seeds(tables.runs, _settings(by), COST_METRICS, c),
            _settings(by),
            COST_METRICS,
        ),
        SummaryTable(
            "investor_returns",
            "Investor returns per strategy",
            "Per run and strategy: mean return (%) and mean PnL (USD) at spot and if sold "
            "(everything sold alone, fees and impact included), mean run-horizon Sharpe ratio "
            "on each, and the share of investors profitable at spot (0..1). Where investors "
            "switch strategies, a strategy's row is the investors that started in it, and "
            "`in_strategy_share` the mean share of their collected steps spent in it.",
            summarise_over_seeds(tables.investors, [*_settings(by), "strategy"],
                                 INVESTOR_METRICS, c, count="n"),
            [*_settings(by), "strategy"],
            INVESTOR_METRICS,
        ),
        SummaryTable(
            "price_contribution_correlation",
            "Price-contribution correlation",
            "Spearman rho across clients of the final token price, and of the final market "
            "capitalisation (price x supply), against the cumulative contribution (+1: the "
            "market ranks clients as the contribution method does). Under `mint` they "
            "differ: new supply dilutes the best-paid clients' price, not their value.",
            summarise_over_seeds(
                tables.runs,
                _settings(by),
                INFORMATIVENESS_METRICS,
                c,
            ),
            _settings(by),
            INFORMATIVENESS_METRICS,
        ),
        SummaryTable(
            "market_statistics",
            "Market statistics",
            "Per run (`analysis.market_stats`): each token's per-step log returns; per token "
            "the excess kurtosis, the Hill tail index (top 5 % of |r|), the lag-1 "
            "autocorrelation of returns and of |returns|, and both at lag `round_every` (the "
            "FL-round clock's footprint); a run's figure is the median across its tokens. "
            "*max peak multiple*: the largest peak / typical price (the larger of opening and "
            "median) of any token; *bubbles*: tokens whose multiple is 5 or more. Beside the "
            "mean over seeds and its interval, the median over seeds.",
            _with_medians(summarise_over_seeds(tables.runs, by, market, c), tables.runs, by,
                          market),
            by,
            tuple(market),
            medians=True,
        ),
    ]


def _with_medians(frame: pd.DataFrame, runs: pd.DataFrame, by: Sequence[str],
                  values: Sequence[str]) -> pd.DataFrame:
    """`frame` (one row per group of `by`, in order of first appearance) with a
    `<v>_median` column per value: the median over the group's runs (NaN runs left out)."""
    if by:
        medians = runs.groupby(list(by), sort=False, dropna=False)[list(values)].median()
        medians = medians.reset_index(drop=True)
    else:
        medians = runs[list(values)].median().to_frame().T
    out = frame.copy()
    for value in values:
        out[f"{value}_median"] = medians[value].to_numpy(dtype=float)
    return out


def _unless(by: Sequence[str], column: str) -> list[str]:
    """`column` as an extra grouping column unless the grid already varies it."""
    path = {"policy": POLICY_PATH, "method": METHOD_PATH}[column]
    return [] if path in by else [column]


def markdown(table: SummaryTable, confidence: float) -> str:
    """Markdown of a summary table: one 'mean [low, high]' cell per metric."""
    shown = table.frame[[*table.by, "n_runs"]].copy()
    for value in table.values:
        spec = _format_of(value)
        shown[value] = [
            _interval_text(m, lo, hi, spec)
            for m, lo, hi in zip(
                table.frame[f"{value}_mean"],
                table.frame[f"{value}_ci_low"],
                table.frame[f"{value}_ci_high"],
                strict=True,
            )
        ]
        if table.medians:
            shown[f"{value} (median)"] = [
                "n/a" if not np.isfinite(m) else format(m, spec)
                for m in table.frame[f"{value}_median"]
            ]
    return markdown_table(shown.rename(columns={"n_runs": "seeds"}))


def _format_of(metric: str) -> str:
    if metric.endswith(("_usd", "_pct")):
        return ",.2f"
    if metric in ("ret_excess_kurtosis", "bubbles"):
        return ".1f"
    if metric in ("final_accuracy", "contribution"):
        return ".4f"
    return ".3f"


def _interval_text(mean: float, low: float, high: float, spec: str) -> str:
    if not np.isfinite(mean):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return format(mean, spec)
    return f"{format(mean, spec)} [{format(low, spec)}, {format(high, spec)}]"
