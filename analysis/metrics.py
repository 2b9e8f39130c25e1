"""Metrics over one run: who got how much, did prices follow contributions, who made money.

All money is in USD display units (floats, `1.0` == one USD). "Initial" means the first row
of `agents.parquet` (step 0, genesis) and "final" its last step. Wealth is what the table
records in two ways: `wealth`, cash plus tokens plus liquidity shares marked at the pools'
spot prices, and `wealth_if_sold`, what selling everything alone would fetch (fees and price
impact included, `abm.amm.Market.liquidation_value`). Every PnL is given on both ("at spot",
"if sold"); a thin pool's spot mark can be far above what its tokens fetch. Undefined
quantities (a division by zero, a correlation of constant inputs) are `NaN`, never an
exception, so that a sweep over many runs never stops on one degenerate run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analysis.market_stats import MARKET_STAT_KEYS, market_statistics
from analysis.runs import PRICE_PREFIX, Run, load_run

NAN = float("nan")


def client_rewards(run: Run) -> pd.DataFrame:
    """Per-client outcome measures: the paper's figure, defined three ways (docs/model.md,
    section 4.11 (Observation)). Never "received": each measure says what it counts.

    One row per client (table order), columns (money in USD):
    - `client`, `behaviour` (FL behaviour; the client agent's `strategy`);
    - `contribution`: cumulative contribution, the sum over rounds of `rounds.contribution`
      (units of the contribution method, e.g. accuracy or loss points for Shapley values);
    - `allotted_usd`: what the policy allotted the client (sum of s_i R, or R / N), the sum of
      `rounds.reward_usd`; `equal_split_usd`: what `equal` would have allotted the client
      (sum over the rounds it trained of R / k, k clients training: R / N when every client
      trains every round, docs/model.md, 7.13); `allotted_vs_equal_pct` = 100 × (allotted /
      equal − 1): pure allocation, the contribution methods compared (exactly 0 under
      `equal`);
    - `cash_paid_usd`: USD the policy paid the client itself (equal, direct, mint to client);
    - `attributable_usd`: the client's realisable final wealth (if sold) in the run minus in
      its counterfactual twin (same seed, reward budget 0), market effects included, and
      `attributable_vs_equal_pct` = 100 × (attributable / equal − 1); `NaN` without a twin;
    - `mtm_change_usd` = final − initial wealth marked at spot (speculation on its genesis
      tokens included: not a measure of reward), split into `cash_change_usd` (its USD
      balance) and `holdings_change_usd` (tokens and liquidity at spot);
    - `if_sold_change_usd` = final − initial realisable wealth (`wealth_if_sold`);
    - `initial_wealth_usd`, `final_wealth_usd` (spot), `final_wealth_if_sold_usd`.

    The exact figures of `summary.json` (`clients.<id>`) are used where the run wrote them;
    otherwise they are recomputed from the tables. Percentages are `NaN` when nothing was
    budgeted. Raises `ValueError` if a client of `model.parquet` has no client agent rows.
    """
    clients = run.client_ids
    wealth = _client_wealth(run)
    missing = [c for c in clients if c not in wealth.columns]
    if missing:
        raise ValueError(f"{run.path}: no client agent rows in agents.parquet for {missing}")
    wealth = wealth[clients]
    if_sold = _client_series(run, "wealth_if_sold")[clients]
    per_client = run.rounds.groupby("client")[["contribution", "reward_usd"]].sum()
    per_client = per_client.reindex(clients, fill_value=0.0)
    behaviour = (run.agents.loc[run.agents["agent_type"] == "client"]
                 .drop_duplicates("client").set_index("client")["strategy"])
    exact = run.summary.get("clients") or {}

    def from_summary(key: str, fallback: Any) -> list[float]:
        out = []
        for i, c in enumerate(clients):
            value = (exact.get(c) or {}).get(key, "absent")
            if value == "absent":
                value = fallback[i] if not np.isscalar(fallback) else fallback
            out.append(NAN if value is None else float(value))
        return out

    if "equal_split_usd" in run.summary:
        equal = float(run.summary["equal_split_usd"])
    else:
        equal = float(run.model["reward_usd"].sum()) / len(clients) if clients else NAN
    allotted = per_client["reward_usd"].to_numpy(dtype=float)
    pct = (100.0 * (allotted / equal - 1.0)) if equal else np.full(len(clients), NAN)
    cash_paid = (run.rounds.groupby("client")["usd_to_client"].sum().reindex(clients,
                                                                            fill_value=0.0)
                 .to_numpy(dtype=float) if "usd_to_client" in run.rounds.columns
                 else np.full(len(clients), NAN))
    table = pd.DataFrame({
        "client": clients,
        "behaviour": [str(behaviour.get(c, "")) for c in clients],
        "contribution": per_client["contribution"].to_numpy(dtype=float),
        "allotted_usd": from_summary("allotted_usd", allotted),
        "equal_split_usd": from_summary("equal_split_usd", equal),
        "allotted_vs_equal_pct": from_summary("allotted_vs_equal_pct", pct),
        "cash_paid_usd": from_summary("cash_paid_usd", cash_paid),
        "attributable_usd": from_summary("attributable_usd", NAN),
        "attributable_vs_equal_pct": from_summary("attributable_vs_equal_pct", NAN),
        "initial_wealth_usd": wealth.iloc[0].to_numpy(dtype=float),
        "final_wealth_usd": wealth.iloc[-1].to_numpy(dtype=float),
        "final_wealth_if_sold_usd": if_sold.iloc[-1].to_numpy(dtype=float),
    })
    table["mtm_change_usd"] = table["final_wealth_usd"] - table["initial_wealth_usd"]
    cash = _client_series(run, "usd")[clients]
    table["cash_change_usd"] = (cash.iloc[-1] - cash.iloc[0]).to_numpy(dtype=float)
    table["holdings_change_usd"] = table["mtm_change_usd"] - table["cash_change_usd"]
    table["if_sold_change_usd"] = (if_sold.iloc[-1] - if_sold.iloc[0]).to_numpy(dtype=float)
    return table


def final_prices(run: Run) -> pd.Series:
    """Spot price of each client's token at the last step (USD per token), by client id."""
    last = run.model.sort_values("step").iloc[-1]
    return pd.Series({c: float(last[PRICE_PREFIX + c]) for c in run.client_ids}, name="price")


#: Values closer than this, relative to the largest magnitude on their side, rank as ties
#: (`spearman`): float rounding, not an order.
TIE_TOLERANCE = 1e-9


def _rounding_ties(a: np.ndarray) -> np.ndarray:
    """`a` with every run of sorted values whose neighbours differ by at most
    `TIE_TOLERANCE` x max|a| replaced by the run's first value, so that they tie.

    Prices or shares computed by different float paths from equal quantities differ in
    their last bits (two tokens with identical reserve histories in different order of
    operations); ranking those bits would report an order the market does not have."""
    if not len(a):
        return a
    order = np.argsort(a, kind="stable")
    ranked = a[order]
    close = np.diff(ranked) <= TIE_TOLERANCE * float(np.abs(a).max())
    group = np.concatenate([[0], np.cumsum(~close)])  # run index of each sorted value
    first = ranked[np.searchsorted(group, group)]  # each run's first value
    out = np.empty_like(a)
    out[order] = first
    return out


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation of two equal-length sequences; `NaN` when undefined
    (fewer than 3 points, or either side constant, where ranks carry no order). Values
    within float rounding of each other (`TIE_TOLERANCE`) rank as ties."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"spearman: lengths differ ({len(a)} and {len(b)})")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = _rounding_ties(a[keep]), _rounding_ties(b[keep])
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return NAN
    return float(spearmanr(a, b).statistic)


def price_contribution_correlation(run: Run) -> float:
    """Spearman rank correlation, across clients, of the final token price (USD per token,
    last step) with the cumulative contribution (sum over all rounds). +1 means the market
    ranks clients exactly as the contribution method does. `NaN` with fewer than 3 clients,
    no rounds, or constant prices or contributions."""
    clients = run.client_ids
    cumulative = run.rounds.groupby("client")["contribution"].sum().reindex(clients,
                                                                             fill_value=0.0)
    return spearman(final_prices(run)[clients], cumulative)


def mcap_contribution_correlation(run: Run) -> float:
    """Spearman rank correlation, across clients, of the final market capitalisation (price
    x total supply, USD: `price/<client>` x `supply/<client>` at the last step) with the
    cumulative contribution. Where tokens are minted as rewards (`mint`), a well-paid
    client's price is diluted by its own new supply: the price then ranks clients against
    their contribution while the market value ranks them with it (docs/model.md, 4.11).
    `NaN` as `spearman`."""
    clients = run.client_ids
    cumulative = run.rounds.groupby("client")["contribution"].sum().reindex(clients,
                                                                             fill_value=0.0)
    last = run.model.sort_values("step").iloc[-1]
    if any("supply/" + c not in last.index for c in clients):
        return NAN  # a table without supplies (older runs)
    mcap = [float(last[PRICE_PREFIX + c]) * float(last["supply/" + c]) for c in clients]
    return spearman(mcap, cumulative)


def price_contribution_correlation_by_round(run: Run) -> pd.Series:
    """Per-round variant of `price_contribution_correlation` (float Series indexed by round).

    For round r: the cumulative contribution up to and including round r, against the token
    prices at the last step before round r+1 (for the last round: the last step), i.e. the
    prices the market settled on knowing the contributions up to r. The last value therefore
    equals `price_contribution_correlation(run)`.
    """
    if run.rounds.empty:
        return pd.Series(dtype=float, name="spearman")
    clients = run.client_ids
    contrib = (run.rounds.pivot_table(index="round", columns="client", values="contribution",
                                      aggfunc="sum")
               .reindex(columns=clients).fillna(0.0).sort_index().cumsum())
    round_steps = run.rounds.groupby("round")["step"].min().sort_index()
    prices = run.model.set_index("step").sort_index()[[PRICE_PREFIX + c for c in clients]]
    last_step = int(prices.index.max())
    ends = [*(int(s) - 1 for s in round_steps.iloc[1:]), last_step]
    values = {}
    for r, end in zip(round_steps.index, ends, strict=True):
        price_row = prices.loc[:end].iloc[-1].to_numpy()
        values[r] = spearman(price_row, contrib.loc[r].to_numpy())
    return pd.Series(values, dtype=float, name="spearman").rename_axis("round")


def gini(values: Any) -> float:
    """Gini coefficient of non-negative values by the mean-absolute-difference formula
    G = Σ_i Σ_j |x_i − x_j| / (2 n² μ), in [0, (n − 1) / n] (0: all equal).

    Defined for non-negative values only: with negatives the ratio leaves [0, 1] (a spread
    larger than the mean, 1.10 for attributable rewards) and flips sign with the mean. Signed
    values (gains and losses) get `nmad`, which equals the Gini when no value is negative.
    `NaN` when there are no values, a NaN among them, or all are 0. Raises ValueError for a
    negative value.
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0 or np.isnan(x).any():
        return NAN
    if x[0] < 0:
        raise ValueError(f"gini: {int((x < 0).sum())} of {n} values are negative (lowest "
                         f"{x[0]:g}); the Gini is defined for non-negative values only: use "
                         "nmad for signed values")
    mean = x.mean()
    if mean <= 0:
        return NAN
    # Σ_i Σ_j |x_i − x_j| = 2 Σ_i (2i − n − 1) x_(i) over the sorted values (i = 1..n).
    ranks = np.arange(1, n + 1)
    abs_diff_sum = 2.0 * float(np.sum((2 * ranks - n - 1) * x))
    return abs_diff_sum / (2.0 * n * n * float(mean))


def nmad(values: Any) -> float:
    """Normalised mean absolute difference of signed values (gains and losses, e.g. USD):
    NMAD = Σ_i Σ_j |x_i − x_j| / (2 n² mean(|x|)), dimensionless.

    The Gini's numerator over the mean absolute value instead of the mean, so it is defined
    for any signs: |x_i − x_j| <= |x_i| + |x_j| puts it in [0, 1) (0: all equal; a client
    that lost 100 USD stays apart from one that got nothing, unlike clipping at 0), and it
    equals `gini` when no value is negative. `NaN` when there are no values, a NaN among
    them, or all are 0.
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0 or np.isnan(x).any():
        return NAN
    scale = float(np.abs(x).mean())
    if scale == 0:
        return NAN
    ranks = np.arange(1, n + 1)
    abs_diff_sum = 2.0 * float(np.sum((2 * ranks - n - 1) * x))
    return abs_diff_sum / (2.0 * n * n * scale)


def reward_gini(run: Run) -> float:
    """Gini of the clients' `allotted_usd` (see `client_rewards`; formula in `gini`): how
    unequally the policy allotted the rewards (0 under `equal`)."""
    return gini(client_rewards(run)["allotted_usd"])


def _sharpe(wealth: pd.DataFrame) -> pd.Series:
    """Run-horizon Sharpe per column of a steps × agents wealth table (see
    `investor_performance`)."""
    # Per-step simple returns; a non-positive previous wealth has no defined return.
    previous = wealth.shift(1).where(lambda w: w > 0)
    returns = (wealth / previous - 1.0).iloc[1:]
    std = returns.std(ddof=1)
    return (returns.mean() / std.where(std > 0)) * np.sqrt(returns.notna().sum())


def investor_pnl(run: Run) -> pd.DataFrame:
    """One row per investor: `agent_id`, `strategy`, `in_strategy_share`,
    `initial_wealth_usd`, then at spot `final_wealth_usd`, `pnl_usd` (final − initial),
    `return_pct` (100 × pnl / initial), `sharpe`, and if sold `final_wealth_if_sold_usd`,
    `pnl_if_sold_usd`, `return_if_sold_pct`, `sharpe_if_sold` (the same on
    `wealth_if_sold`; see `investor_performance`). Initial wealth is cash, the same on both.

    `strategy` is the investor's strategy at the first collected step: where investors switch
    strategies (docs/model.md, 7.17) it is the one it started with, and `in_strategy_share`
    (0..1) the share of its collected steps it used it (1 for every investor that never
    switches)."""
    investors = run.agents.loc[run.agents["agent_type"] == "investor"]
    columns = ["agent_id", "strategy", "in_strategy_share", "initial_wealth_usd",
               "final_wealth_usd", "pnl_usd", "return_pct", "sharpe",
               "final_wealth_if_sold_usd", "pnl_if_sold_usd", "return_if_sold_pct",
               "sharpe_if_sold"]
    if investors.empty:
        return pd.DataFrame(columns=columns)
    first = investors.sort_values("step", kind="stable").drop_duplicates("agent_id")
    strategy = first.set_index("agent_id")["strategy"]
    labels = investors["strategy"].astype(str)
    started = investors["agent_id"].map(strategy).astype(str)
    in_strategy = (labels == started).groupby(investors["agent_id"]).mean()
    table = None
    for column, suffix in (("wealth", ""), ("wealth_if_sold", "_if_sold")):
        wealth = investors.pivot_table(index="step", columns="agent_id", values=column,
                                       aggfunc="sum").sort_index()
        if table is None:
            table = pd.DataFrame({
                "agent_id": wealth.columns,
                "strategy": strategy.reindex(wealth.columns).astype(str).to_numpy(),
                "in_strategy_share": in_strategy.reindex(wealth.columns).to_numpy(float),
                "initial_wealth_usd": wealth.iloc[0].to_numpy(dtype=float),
            })
        initial = table["initial_wealth_usd"]
        final = wealth.iloc[-1].to_numpy(dtype=float)
        table[f"final_wealth{suffix}_usd"] = final
        table[f"pnl{suffix}_usd"] = final - initial
        table[f"return{suffix}_pct"] = 100.0 * (final - initial) / initial.where(initial > 0)
        table[f"sharpe{suffix}"] = _sharpe(wealth).to_numpy(dtype=float)
    return table[columns]


def investor_performance(run: Run) -> pd.DataFrame:
    """Investor results by strategy, one row per strategy (sorted by name), at spot and if
    sold (suffix `_if_sold`: the same figure on `wealth_if_sold`), columns:
    - `n`: number of investors;
    - `in_strategy_share`: mean over them of the share of their collected steps spent in
      the row's strategy. Investors are grouped by the strategy they started with
      (`investor_pnl`): where they switch, a row is the investors that started there, and
      this share says how much of their results that strategy made (1 without switching);
    - `mean_pnl_usd`, `median_pnl_usd`: PnL = final − initial wealth, USD;
    - `mean_return_pct`: mean of 100 × PnL / initial wealth, percent;
    - `sharpe`: mean over the strategy's investors of each investor's Sharpe ratio
      mean(r) / std(r) × sqrt(T), where r are the per-step simple returns of its wealth
      series (w_t / w_{t−1} − 1), std is the sample std (ddof 1), T the number of per-step
      returns, and the risk-free rate is 0: a run-horizon Sharpe. Investors whose wealth never
      moved (std 0) have no Sharpe and are left out of the mean (`NaN` if none has one);
    - `profitable_share`: fraction (0..1) of the strategy's investors with PnL > 0.
    """
    per_investor = investor_pnl(run)
    columns = ["strategy", "n", "in_strategy_share"]
    for suffix in ("", "_if_sold"):
        columns += [f"mean_pnl{suffix}_usd", f"median_pnl{suffix}_usd",
                    f"mean_return{suffix}_pct", f"sharpe{suffix}", f"profitable{suffix}_share"]
    if per_investor.empty:
        return pd.DataFrame(columns=columns)
    grouped = per_investor.groupby("strategy")
    table = pd.DataFrame({"n": grouped.size(),
                          "in_strategy_share": grouped["in_strategy_share"].mean()})
    for suffix in ("", "_if_sold"):
        pnl = grouped[f"pnl{suffix}_usd"]
        table[f"mean_pnl{suffix}_usd"] = pnl.mean()
        table[f"median_pnl{suffix}_usd"] = pnl.median()
        table[f"mean_return{suffix}_pct"] = grouped[f"return{suffix}_pct"].mean()
        table[f"sharpe{suffix}"] = grouped[f"sharpe{suffix}"].mean()
        table[f"profitable{suffix}_share"] = pnl.apply(lambda x: float((x > 0).mean()))
    return table.reset_index()[columns]


def lp_decomposition(run: Run) -> pd.DataFrame:
    """Liquidity providers' PnL split into fees, impermanent loss and price effect.

    One row per LP, columns:
    - `agent_id`, `strategy` (the LP's exit rule);
    - `initial_wealth_usd`, `final_wealth_usd`, `pnl_usd` = final − initial wealth;
    - `fees_earned_usd`: cumulative share of pool fees (`fees_earned`);
    - `impermanent_loss_usd` = lp_value − hodl_value − fees_earned: the value of the
      liquidity position against simply holding what was deposited, net of the fees it
      earned; <= 0 under constant-product pricing;
    - `price_effect_usd` = pnl − fees − impermanent loss: the rest of the PnL, i.e. what the
      deposited assets would have gained or lost from price moves had they been held, plus
      any change in assets kept outside the pools;
    - `final_wealth_if_sold_usd`, `pnl_if_sold_usd`: the same PnL on `wealth_if_sold`
      (withdrawing everything and selling the tokens alone, fees and impact included);
    - `measured_step`: the step at which fees and impermanent loss are read. It is the last
      step, unless the LP has left the pools by then; then it is the last step at which it
      still held a position (`lp_value > 0`), because after an exit its loss has been
      realised into cash and tokens and `lp_value − hodl_value − fees` no longer measures it.
      Its fees and loss are then as they stood when it left, and later moves of what it took
      out count in the price effect. An LP that never held a position reads 0 for both.
    """
    lps = run.agents.loc[run.agents["agent_type"] == "lp"].sort_values(["agent_id", "step"])
    columns = ["agent_id", "strategy", "initial_wealth_usd", "final_wealth_usd", "pnl_usd",
               "fees_earned_usd", "impermanent_loss_usd", "price_effect_usd",
               "final_wealth_if_sold_usd", "pnl_if_sold_usd", "measured_step"]
    rows = []
    for agent_id, history in lps.groupby("agent_id", sort=True):
        holding = history.loc[history["lp_value"] > 0]
        if holding.empty:
            fees, loss, step = 0.0, 0.0, int(history["step"].iloc[-1])
        else:
            at = holding.iloc[-1]
            fees = float(at["fees_earned"])
            loss = float(at["lp_value"] - at["hodl_value"] - at["fees_earned"])
            step = int(at["step"])
        initial = float(history["wealth"].iloc[0])
        final = float(history["wealth"].iloc[-1])
        pnl = final - initial
        if_sold = float(history["wealth_if_sold"].iloc[-1])
        rows.append({
            "agent_id": agent_id, "strategy": str(history["strategy"].iloc[0]),
            "initial_wealth_usd": initial, "final_wealth_usd": final, "pnl_usd": pnl,
            "fees_earned_usd": fees, "impermanent_loss_usd": loss,
            "price_effect_usd": pnl - fees - loss, "final_wealth_if_sold_usd": if_sold,
            "pnl_if_sold_usd": if_sold - float(history["wealth_if_sold"].iloc[0]),
            "measured_step": step,
        })
    return pd.DataFrame(rows, columns=columns)


HOLDER_TYPES = ("client", "investor", "lp", "federation")
HOLDER_LABELS = {"client": "clients", "investor": "investors", "lp": "liquidity providers",
                 "federation": "federation", "pool": "pools (USD reserves)",
                 "costs": "training costs (sink)"}


def holder_outcomes(run: Run) -> pd.DataFrame:
    """Wealth per holder type (the federation included), at spot and if sold, USD.

    One row per type present in `model.parquet` (`wealth/<type>`), columns: `holder`,
    `initial_wealth_usd`, `final_wealth_usd` (at spot), `final_if_each_sold_alone_usd` (sum
    of each agent's sale alone: not additive, each sale assumes nobody else sells),
    `final_if_all_sold_usd` (the type's part when every agent sells at once,
    `Market.joint_liquidation`: additive across types; from summary.json, NaN if absent),
    `mtm_change_usd` (final − initial at spot), `if_sold_change_usd` (final − initial, each
    alone), `attributable_usd` (all sold at once, run minus twin: these add up to the budget
    paid in, less extra training costs and what the pools keep; NaN without a twin).
    """
    model = run.model.sort_values("step")
    holders = (run.summary.get("holders") or {})
    rows = []
    for kind in HOLDER_TYPES:
        spot, sold = f"wealth/{kind}", f"wealth_if_sold/{kind}"
        if spot not in model.columns:
            continue
        sold_series = model[sold] if sold in model.columns else pd.Series([NAN] * len(model))
        attributable = (holders.get(kind) or {}).get("attributable_usd")
        joint = (holders.get(kind) or {}).get("final_if_all_sold_usd")
        rows.append({
            "holder": kind,
            "initial_wealth_usd": float(model[spot].iloc[0]),
            "final_wealth_usd": float(model[spot].iloc[-1]),
            "final_if_each_sold_alone_usd": float(sold_series.iloc[-1]),
            "final_if_all_sold_usd": NAN if joint is None else float(joint),
            "mtm_change_usd": float(model[spot].iloc[-1] - model[spot].iloc[0]),
            "if_sold_change_usd": float(sold_series.iloc[-1] - sold_series.iloc[0]),
            "attributable_usd": NAN if attributable is None else float(attributable),
        })
    return pd.DataFrame(rows, columns=["holder", "initial_wealth_usd", "final_wealth_usd",
                                       "final_if_each_sold_alone_usd",
                                       "final_if_all_sold_usd", "mtm_change_usd",
                                       "if_sold_change_usd", "attributable_usd"])


def money_flows(run: Run) -> pd.DataFrame:
    """Where the reward money went, from summary.json's exact books (USD, run totals).

    Rows (`flow`, `usd`): budgets paid in by model buyers; to clients as cash; into pools by
    buybacks; into pools as mint liquidity; dividends to each holder type; kept by the
    treasury (these destinations sum to the budgets); then, beside the rewards, USD paid to
    the federation for genesis tokens and the pool fees earned by each holder type of
    liquidity shares (spot value when earned). Empty when the run wrote no money table.
    """
    money = run.summary.get("money")
    if not money:
        return pd.DataFrame(columns=["flow", "usd"])
    rows = [("budgets paid in by model buyers", money["budgets_paid_in_usd"]),
            ("  to clients as cash", money["to_clients_as_cash_usd"]),
            ("  into pools by buybacks", money["into_pools_by_buybacks_usd"]),
            ("  into pools as liquidity (mint)", money["into_pools_as_mint_liquidity_usd"])]
    for kind, usd in money["dividends_to_holders_usd"].items():
        rows.append((f"  to {HOLDER_LABELS[kind]} as dividends", usd))
    rows.append(("  kept by the treasury", money["kept_by_treasury_usd"]))
    rows.append(("genesis tokens sold by the federation to LPs",
                 money["genesis_token_sales_usd"]))
    for kind, usd in money["fees_earned_usd"].items():
        rows.append((f"pool fees earned by {HOLDER_LABELS[kind]}", usd))
    # Participation and offerings (docs/model.md, 7.13-7.14), shown where they happened.
    for key, label in (("training_costs_usd", "training costs paid by clients"),
                       ("offering_usd", "paid into clients by their pools' buyers through "
                                        "offerings"),
                       ("issued_for_costs_usd", "raised by clients issuing tokens for "
                                                "training costs")):
        if money.get(key):
            rows.append((label, money[key]))
    return pd.DataFrame(rows, columns=["flow", "usd"])


def money_by_holder(run: Run) -> pd.DataFrame:
    """USD per holder type and in the pools: `start` (after genesis) + `rewards` (paid by the
    budget) + `training_costs` (paid by clients into the cost sink, a row of its own; the
    column and row appear only when some client paid) + `trading` (net USD from swaps,
    deposits, withdrawals, genesis token sales, offerings) = `end`. The `trading` column
    sums to 0 and `end` to endowments plus budgets (exactly, in the model's base units; here
    rounded to floats). Empty without a money table."""
    money = run.summary.get("money")
    columns = ["holder", "start_usd", "rewards_usd", "training_costs_usd", "trading_usd",
               "end_usd"]
    if not money:
        return pd.DataFrame(columns=columns)
    rows = [{"holder": HOLDER_LABELS[k], "start_usd": v["start"], "rewards_usd": v["rewards"],
             "training_costs_usd": v.get("training_costs", 0.0),
             "trading_usd": v["trading"], "end_usd": v["end"]}
            for k, v in money["usd_by_holder"].items()]
    table = pd.DataFrame(rows, columns=columns)
    if not table["training_costs_usd"].any():  # no client paid for training: nothing to show
        table = table[table["holder"] != HOLDER_LABELS["costs"]]
        table = table.drop(columns="training_costs_usd").reset_index(drop=True)
    return table


def execution_cost(run: Run) -> dict[str, Any]:
    """What distributing the rewards cost the federation.

    Returns a dict:
    - `policy`: the distribution policy (`Run.policy`: from `config.yaml`);
    - `rounds`: number of FL rounds;
    - `rewards_usd`: total reward distributed, sum of `rounds.reward_usd`;
    - `cost_usd`: total fees and slippage the federation paid to distribute it, the sum over
      steps of `model.execution_cost_usd` (a per-step amount; 0 for policies that do not
      trade, such as `equal`, `direct`, `mint`);
    - `cost_pct` = 100 × cost / rewards, percent of the rewards (`NaN` when nothing was
      distributed).
    """
    rewards = float(run.rounds["reward_usd"].sum())
    cost = float(run.model["execution_cost_usd"].sum())
    return {
        "policy": run.policy,
        "rounds": run.n_rounds,
        "rewards_usd": rewards,
        "cost_usd": cost,
        "cost_pct": 100.0 * cost / rewards if rewards != 0 else NAN,
    }


#: Where the budget went (summary.json `budget_went_pct`), in this order.
BUDGET_DESTINATIONS = ("client", "investor", "lp", "federation", "training_costs",
                       "left_in_pools")


def _summary_float(run: Run, key: str) -> float:
    value = run.summary.get(key)
    return NAN if value is None else float(value)


def _budget_went(run: Run) -> dict[str, float]:
    went = run.summary.get("budget_went_pct") or {}
    return {k: float(went[k]) if k in went else NAN for k in BUDGET_DESTINATIONS}


def summarise_run(run: Run) -> dict[str, Any]:
    """Headline figures of one run, flat and JSON-friendly (floats may be `NaN`), for the
    sweep layer to tabulate one row per run.

    Keys: `scenario`, `seed`, `policy`, `steps`, `rounds`, `final_accuracy` (validation
    metric of the global model at the last step, `model.accuracy`), `price_contribution_
    spearman`, `reward_gini` (of the allotments), `rewards_usd`, `execution_cost_usd`,
    `execution_cost_pct`, `min_allotted_vs_equal_pct`, `max_allotted_vs_equal_pct`,
    `min_attributable_vs_equal_pct`, `max_attributable_vs_equal_pct` (the extremes of the
    `client_rewards` columns; NaN without a twin), `unranked_rounds` (rounds the method could
    not rank, from summary.json; NaN if absent), `zero_probe_pct` (the mean share of a
    round's rewards the zero-update probe would be paid, docs/model.md 7.5; NaN if absent),
    `honest_share_last_quarter` (the share of the adaptive clients' actions in the last
    quarter of the rounds that were honest training, docs/model.md 7.16; NaN without
    adaptive clients); participation
    (`participation_summary`: `mean_participation`, `final_participating`,
    `participation_<behaviour>`, `ir_violations`, `training_costs_usd`); and the market
    statistics of `analysis.market_stats.market_statistics` (medians across tokens of
    per-step log returns): `ret_excess_kurtosis`, `ret_hill_alpha`, `ret_acf1`,
    `absret_acf1`, `round_clock_acf`, `round_clock_absacf` (autocorrelations at lag
    `round_every`), `max_peak_multiple` (largest peak / typical price of a token) and
    `bubbles` (tokens flagged by `analysis.market_stats.bubble_flags`).

    For sensitivity analysis and mechanism search (`RUN_OUTPUTS` lists every scalar output):
    `total_reward_usd` (the budgets paid in by the model buyers, summary.json),
    `reward_contribution_rho` (Spearman rho across clients of the allotment with the
    cumulative contribution: does the policy pay by contribution?),
    `attributable_contribution_rho` (the same for the attributable reward, run − twin, if
    sold: does the mechanism, market included, deliver by contribution? NaN without a twin),
    `attributable_nmad` (`nmad` of the attributable rewards, which can be negative, so no
    Gini: the normalised mean absolute difference, in [0, 1); NaN without a twin),
    `mcap_contribution_rho` (the price rho with market capitalisation in place of price),
    `reached_clients_pct` and `reached_clients_usd` (the clients' attributable total when
    every agent sells at once, of the budget paid in: what reached the clients; NaN without a
    twin), `budget_to_<destination>_pct` (where the budget went, summing to 100:
    `BUDGET_DESTINATIONS`; NaN without a twin), `investor_pnl_usd` and
    `investor_pnl_if_sold_usd` (all investors' PnL summed, at spot and if each sold
    everything alone; 0 without investors).
    """
    cost = execution_cost(run)
    rewards = client_rewards(run)
    accuracy = run.model.sort_values("step")["accuracy"]
    unranked = (run.summary.get("unranked_rounds") or {}).get("rounds", NAN)
    investors = investor_pnl(run)
    budgets = run.summary.get("total_reward_usd")
    return {
        "scenario": run.name,
        "seed": run.seed,
        "policy": cost["policy"],
        "steps": run.steps,
        "rounds": cost["rounds"],
        "final_accuracy": float(accuracy.iloc[-1]) if len(accuracy) else NAN,
        "price_contribution_spearman": price_contribution_correlation(run),
        "mcap_contribution_rho": mcap_contribution_correlation(run),
        "reached_clients_pct": _summary_float(run, "reached_clients_pct"),
        "reached_clients_usd": _summary_float(run, "reached_clients_usd"),
        **{f"budget_to_{k}_pct": v for k, v in _budget_went(run).items()},
        "reward_gini": gini(rewards["allotted_usd"]),
        "rewards_usd": cost["rewards_usd"],
        "execution_cost_usd": cost["cost_usd"],
        "execution_cost_pct": cost["cost_pct"],
        "min_allotted_vs_equal_pct": _nan_extreme(rewards["allotted_vs_equal_pct"], min),
        "max_allotted_vs_equal_pct": _nan_extreme(rewards["allotted_vs_equal_pct"], max),
        "min_attributable_vs_equal_pct": _nan_extreme(rewards["attributable_vs_equal_pct"],
                                                      min),
        "max_attributable_vs_equal_pct": _nan_extreme(rewards["attributable_vs_equal_pct"],
                                                      max),
        "unranked_rounds": float(unranked),
        "zero_probe_pct": float((run.summary.get("zero_probe") or {}).get("mean_pct", NAN)),
        "honest_share_last_quarter": _honest_share(run),
        "total_reward_usd": NAN if budgets is None else float(budgets),
        "reward_contribution_rho": spearman(rewards["allotted_usd"], rewards["contribution"]),
        "attributable_contribution_rho": spearman(rewards["attributable_usd"],
                                                  rewards["contribution"]),
        "attributable_nmad": nmad(rewards["attributable_usd"]),
        "investor_pnl_usd": float(investors["pnl_usd"].sum()),
        "investor_pnl_if_sold_usd": float(investors["pnl_if_sold_usd"].sum()),
        **participation_summary(run),
        **market_statistics(run),
    }


def _honest_share(run: Run) -> float:
    """summary.json's `conduct.honest_share_last_quarter`, NaN where null or absent."""
    share = (run.summary.get("conduct") or {}).get("honest_share_last_quarter")
    return NAN if share is None else float(share)


#: The scalar outputs of a run (`summarise_run`'s numeric keys, in its order): what a
#: sensitivity analysis or a mechanism search may take as its output or objective. Labels
#: (`scenario`, `seed`, `policy`) and the run's size (`steps`, `rounds`) are not outputs, nor
#: is `participation_<behaviour>`, whose keys depend on the run's clients. The keys of
#: `summarise_run` are known only from a run, so this list is written out, and a test
#: (tests/test_analysis_metrics.py) holds it equal to `run_outputs` of a real run.
RUN_OUTPUTS = (
    "final_accuracy",
    "price_contribution_spearman",
    "mcap_contribution_rho",
    "reached_clients_pct",
    "reached_clients_usd",
    *(f"budget_to_{k}_pct" for k in BUDGET_DESTINATIONS),
    "reward_gini",
    "rewards_usd",
    "execution_cost_usd",
    "execution_cost_pct",
    "min_allotted_vs_equal_pct",
    "max_allotted_vs_equal_pct",
    "min_attributable_vs_equal_pct",
    "max_attributable_vs_equal_pct",
    "unranked_rounds",
    "zero_probe_pct",
    "honest_share_last_quarter",
    "total_reward_usd",
    "reward_contribution_rho",
    "attributable_contribution_rho",
    "attributable_nmad",
    "investor_pnl_usd",
    "investor_pnl_if_sold_usd",
    "mean_participation",
    "final_participating",
    "ir_violations",
    "training_costs_usd",
    *MARKET_STAT_KEYS,
)
NOT_OUTPUTS = frozenset({"scenario", "seed", "policy", "steps", "rounds"})


def run_outputs(run_dir: Any) -> dict[str, float]:
    """The scalar outputs of the run folder `run_dir` (`summarise_run`'s numeric values,
    every key but `NOT_OUTPUTS`; keys other engineers' measures add are included), floats."""
    out = {}
    for key, value in summarise_run(load_run(run_dir)).items():
        if key in NOT_OUTPUTS or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        out[key] = float(value)
    return out


def participation_summary(run: Run) -> dict[str, float]:
    """Participation of one run (docs/model.md, 7.13), flat, for the sweep's runs table.

    `mean_participation`: mean share of clients training per round (1 when every client
    trains every round); `final_participating`: clients that trained in the last round;
    `participation_<behaviour>`: share of the rounds the clients of that behaviour trained
    in; `ir_violations`: clients whose reward realised if sold fell short of the training
    costs they paid (individual rationality fails); `training_costs_usd`: all they paid.
    NaN where the run's tables predate participation.
    """
    rounds = run.rounds
    if "participating" not in rounds.columns or rounds.empty:
        return {"mean_participation": NAN, "final_participating": NAN, "ir_violations": NAN,
                "training_costs_usd": NAN}
    taking = rounds["participating"].astype(bool)
    last = rounds["round"].max()
    out = {
        "mean_participation": float(taking.groupby(rounds["round"]).mean().mean()),
        "final_participating": float(taking[rounds["round"] == last].sum()),
    }
    for behaviour, share in taking.groupby(rounds["behaviour"]).mean().items():
        out[f"participation_{behaviour}"] = float(share)
    clients = individual_rationality(run)
    out["ir_violations"] = float((~clients["individually_rational"]).sum())
    out["training_costs_usd"] = float(clients["cost_usd"].sum())
    return out


def individual_rationality(run: Run) -> pd.DataFrame:
    """Per client: did training pay? (docs/model.md, 7.13)

    Columns: `client`, `behaviour`, `rounds_participated` (of `rounds`), `cost_usd`
    (training costs paid), `reward_if_sold_usd` (what its rewards added to its holdings if
    sold, summed at each payout), `net_usd` (reward minus cost) and
    `individually_rational` (reward >= cost). From `rounds.parquet`; empty for tables that
    predate participation.
    """
    columns = ["client", "behaviour", "rounds_participated", "rounds", "cost_usd",
               "reward_if_sold_usd", "net_usd", "individually_rational"]
    rounds = run.rounds
    if "participating" not in rounds.columns or rounds.empty:
        return pd.DataFrame(columns=columns)
    grouped = rounds.groupby("client", sort=True)
    table = pd.DataFrame({
        "behaviour": grouped["behaviour"].first(),
        "rounds_participated": grouped["participating"].sum().astype(int),
        "rounds": grouped["round"].nunique(),
        "cost_usd": grouped["training_cost_usd"].sum(),
        "reward_if_sold_usd": grouped["reward_if_sold_usd"].sum(),
    }).reset_index()
    table["net_usd"] = table["reward_if_sold_usd"] - table["cost_usd"]
    # Exact in the model's base units (summary.json); the float sums here can differ by far
    # less than a cent, so a client paying nothing and earning nothing is rational.
    table["individually_rational"] = table["net_usd"] >= -1e-9
    return table[columns]


def adaptive_clients(run: Run) -> list[str]:
    """Ids of the clients whose conduct is adaptive (docs/model.md, 7.16), from summary.json's
    `conduct.actions`; [] for runs without them or tables that predate conduct."""
    return sorted((run.summary.get("conduct") or {}).get("actions") or {})


def adaptive_choices(run: Run) -> pd.DataFrame:
    """The rows of `rounds.parquet` that hold an adaptive client's choice (docs/model.md,
    7.16): its rounds, less those the client sample did not invite it to (action
    `not_drawn`, 7.15: no choice was made). Empty without adaptive clients."""
    from abm.agents.conduct import ACTIONS  # the one list of actions

    adaptive = adaptive_clients(run)
    rounds = run.rounds
    if not adaptive or rounds.empty or "action" not in rounds.columns:
        return rounds.iloc[:0]
    return rounds[rounds["client"].astype(str).isin(adaptive) & rounds["action"].isin(ACTIONS)]


def conduct_actions(run: Run) -> pd.DataFrame:
    """What the adaptive clients chose and what each choice realised (docs/model.md, 7.16).

    One row per action in `abm.agents.conduct.ACTIONS` order that some adaptive client
    took. Columns: `action`; `chosen` (client-rounds, all rounds); `share_pct` (% of the
    adaptive clients' choices, all rounds); `share_last_quarter_pct` (% of their choices in
    the last quarter of the rounds, the last ceil(R / 4), the window of
    `summary.conduct.honest_share_last_quarter`); `mean_payoff_usd` (per choice, USD: the
    round's reward if sold minus the action's cost, what the clients learn from). From
    `rounds.parquet`; empty without adaptive clients. Rounds a client was not invited to by
    the client sample (`fl.clients_per_round`, action `not_drawn`) are no choice: left out.
    """
    from abm.agents.conduct import ACTIONS, last_quarter_start

    columns = ["action", "chosen", "share_pct", "share_last_quarter_pct", "mean_payoff_usd"]
    mine = adaptive_choices(run)
    if mine.empty:
        return pd.DataFrame(columns=columns)
    tail = mine[mine["round"] > last_quarter_start(int(run.rounds["round"].max()))]
    payoff = mine["reward_if_sold_usd"] - mine["training_cost_usd"]
    rows = []
    for action in (a for a in ACTIONS if (mine["action"] == a).any()):
        chosen = mine["action"] == action
        rows.append({
            "action": action,
            "chosen": int(chosen.sum()),
            "share_pct": 100.0 * float(chosen.mean()),
            "share_last_quarter_pct": 100.0 * float((tail["action"] == action).mean()),
            "mean_payoff_usd": float(payoff[chosen].mean()),
        })
    return pd.DataFrame(rows, columns=columns)


def _nan_extreme(values: pd.Series, pick: Any) -> float:
    finite = [float(v) for v in values if not math.isnan(float(v))]
    return float(pick(finite)) if finite else NAN


def _client_wealth(run: Run) -> pd.DataFrame:
    """Client agents' wealth (USD), steps × client ids, sorted by step."""
    return _client_series(run, "wealth")


def _client_series(run: Run, column: str) -> pd.DataFrame:
    """One agents.parquet column of the client agents (USD), steps × client ids, by step."""
    clients = run.agents.loc[run.agents["agent_type"] == "client"]
    return clients.pivot_table(index="step", columns="client", values=column,
                               aggfunc="sum").sort_index()
