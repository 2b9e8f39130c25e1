"""Metrics over one run: who got how much, did prices follow contributions, who made money.

All money is in USD display units (floats, `1.0` == one USD). "Initial" means the first row
of `agents.parquet` (step 0, genesis) and "final" its last step. Wealth is what the table
records: cash plus tokens plus liquidity shares, marked to market at the pools' spot prices.
Undefined quantities (a division by zero, a correlation of constant inputs) are `NaN`, never
an exception, so that a sweep over many runs never stops on one degenerate run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from analysis.runs import PRICE_PREFIX, Run

NAN = float("nan")


def client_rewards(run: Run) -> pd.DataFrame:
    """Per-client reward received against an equal split (the paper's figure).

    One row per client (table order), columns:
    - `client`, `behaviour` (FL behaviour; the client agent's `strategy`);
    - `contribution`: cumulative contribution, the sum over rounds of `rounds.contribution`
      (units of the contribution method, e.g. accuracy points for Shapley values);
    - `reward_usd`: total reward allotted to the client, sum of `rounds.reward_usd`;
    - `initial_wealth_usd`, `final_wealth_usd`: the client agent's wealth at the first and
      last step (cash plus tokens marked to market at spot);
    - `received_usd` = final − initial wealth: what the client actually ended up with,
      through rewards, token price moves and its own trades;
    - `cash_change_usd`, `holdings_change_usd`: `received_usd` split into the change of its
      USD balance (cash rewards, dividends, sales) and of its tokens and liquidity shares
      marked to market (minted rewards, price moves, including those of the genesis supply
      it still holds). Under `buyback` the reward arrives in the second part, through price;
    - `equal_payout_usd` = total rewards distributed (all clients, all rounds) / number of
      clients: what each would have got under an equal split;
    - `vs_equal_pct` = 100 × (received − equal) / equal, in percent: +50 means 50 % more
      than an equal split, −100 means nothing at all. `NaN` when no reward was distributed.

    Raises `ValueError` if a client of `model.parquet` has no client agent rows.
    """
    clients = run.client_ids
    wealth = _client_wealth(run)
    missing = [c for c in clients if c not in wealth.columns]
    if missing:
        raise ValueError(f"{run.path}: no client agent rows in agents.parquet for {missing}")
    wealth = wealth[clients]
    per_client = run.rounds.groupby("client")[["contribution", "reward_usd"]].sum()
    per_client = per_client.reindex(clients, fill_value=0.0)
    behaviour = (run.agents.loc[run.agents["agent_type"] == "client"]
                 .drop_duplicates("client").set_index("client")["strategy"])

    total_reward = float(run.rounds["reward_usd"].sum())
    equal = total_reward / len(clients) if clients else NAN
    table = pd.DataFrame({
        "client": clients,
        "behaviour": [str(behaviour.get(c, "")) for c in clients],
        "contribution": per_client["contribution"].to_numpy(dtype=float),
        "reward_usd": per_client["reward_usd"].to_numpy(dtype=float),
        "initial_wealth_usd": wealth.iloc[0].to_numpy(dtype=float),
        "final_wealth_usd": wealth.iloc[-1].to_numpy(dtype=float),
    })
    table["received_usd"] = table["final_wealth_usd"] - table["initial_wealth_usd"]
    cash = _client_series(run, "usd")[clients]
    table["cash_change_usd"] = (cash.iloc[-1] - cash.iloc[0]).to_numpy(dtype=float)
    table["holdings_change_usd"] = table["received_usd"] - table["cash_change_usd"]
    table["equal_payout_usd"] = equal
    table["vs_equal_pct"] = (100.0 * (table["received_usd"] - equal) / equal
                             if equal != 0 else NAN)
    return table


def final_prices(run: Run) -> pd.Series:
    """Spot price of each client's token at the last step (USD per token), by client id."""
    last = run.model.sort_values("step").iloc[-1]
    return pd.Series({c: float(last[PRICE_PREFIX + c]) for c in run.client_ids}, name="price")


def spearman(x: Any, y: Any) -> float:
    """Spearman rank correlation of two equal-length sequences; `NaN` when undefined
    (fewer than 3 points, or either side constant, where ranks carry no order)."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"spearman: lengths differ ({len(a)} and {len(b)})")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
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
    """Gini coefficient by the mean-absolute-difference formula
    G = Σ_i Σ_j |x_i − x_j| / (2 n² μ).

    For non-negative values this is the classical Gini in [0, 1] (0: all equal). Negative
    values are kept rather than clipped: clipping would make a client that lost 100 USD look
    the same as one that received nothing, hiding exactly the losses a distribution policy
    can cause. With negatives G may exceed 1 (spread larger than the mean). `NaN` when there
    are no values or the mean is <= 0 (the ratio is then undefined or flips sign).
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0 or np.isnan(x).any():
        return NAN
    mean = x.mean()
    if mean <= 0:
        return NAN
    # Σ_i Σ_j |x_i − x_j| = 2 Σ_i (2i − n − 1) x_(i) over the sorted values (i = 1..n).
    ranks = np.arange(1, n + 1)
    abs_diff_sum = 2.0 * float(np.sum((2 * ranks - n - 1) * x))
    return abs_diff_sum / (2.0 * n * n * float(mean))


def reward_gini(run: Run) -> float:
    """Gini of the clients' `received_usd` (see `client_rewards`; formula in `gini`)."""
    return gini(client_rewards(run)["received_usd"])


def investor_pnl(run: Run) -> pd.DataFrame:
    """One row per investor: `agent_id`, `strategy`, `initial_wealth_usd`,
    `final_wealth_usd`, `pnl_usd` (final − initial), `return_pct` (100 × pnl / initial),
    `sharpe` (see `investor_performance`)."""
    investors = run.agents.loc[run.agents["agent_type"] == "investor"]
    columns = ["agent_id", "strategy", "initial_wealth_usd", "final_wealth_usd", "pnl_usd",
               "return_pct", "sharpe"]
    if investors.empty:
        return pd.DataFrame(columns=columns)
    wealth = investors.pivot_table(index="step", columns="agent_id", values="wealth",
                                   aggfunc="sum").sort_index()
    strategy = investors.drop_duplicates("agent_id").set_index("agent_id")["strategy"]
    initial = wealth.iloc[0]
    final = wealth.iloc[-1]
    # Per-step simple returns; a non-positive previous wealth has no defined return.
    previous = wealth.shift(1).where(lambda w: w > 0)
    returns = (wealth / previous - 1.0).iloc[1:]
    mean = returns.mean()
    std = returns.std(ddof=1)
    periods = returns.notna().sum()
    sharpe = (mean / std.where(std > 0)) * np.sqrt(periods)
    table = pd.DataFrame({
        "agent_id": wealth.columns,
        "strategy": strategy.reindex(wealth.columns).astype(str).to_numpy(),
        "initial_wealth_usd": initial.to_numpy(dtype=float),
        "final_wealth_usd": final.to_numpy(dtype=float),
    })
    table["pnl_usd"] = table["final_wealth_usd"] - table["initial_wealth_usd"]
    initial_pos = table["initial_wealth_usd"].where(table["initial_wealth_usd"] > 0)
    table["return_pct"] = 100.0 * table["pnl_usd"] / initial_pos
    table["sharpe"] = sharpe.to_numpy(dtype=float)
    return table


def investor_performance(run: Run) -> pd.DataFrame:
    """Investor results by strategy, one row per strategy (sorted by name), columns:
    - `n`: number of investors;
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
    columns = ["strategy", "n", "mean_pnl_usd", "median_pnl_usd", "mean_return_pct",
               "sharpe", "profitable_share"]
    if per_investor.empty:
        return pd.DataFrame(columns=columns)
    grouped = per_investor.assign(profitable=per_investor["pnl_usd"] > 0).groupby("strategy")
    table = pd.DataFrame({
        "n": grouped.size(),
        "mean_pnl_usd": grouped["pnl_usd"].mean(),
        "median_pnl_usd": grouped["pnl_usd"].median(),
        "mean_return_pct": grouped["return_pct"].mean(),
        "sharpe": grouped["sharpe"].mean(),
        "profitable_share": grouped["profitable"].mean(),
    })
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
    - `measured_step`: the step at which fees and impermanent loss are read. It is the last
      step, unless the LP has left the pools by then; then it is the last step at which it
      still held a position (`lp_value > 0`), because after an exit its loss has been
      realised into cash and tokens and `lp_value − hodl_value − fees` no longer measures it.
      Its fees and loss are then as they stood when it left, and later moves of what it took
      out count in the price effect. An LP that never held a position reads 0 for both.
    """
    lps = run.agents.loc[run.agents["agent_type"] == "lp"].sort_values(["agent_id", "step"])
    columns = ["agent_id", "strategy", "initial_wealth_usd", "final_wealth_usd", "pnl_usd",
               "fees_earned_usd", "impermanent_loss_usd", "price_effect_usd", "measured_step"]
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
        rows.append({
            "agent_id": agent_id, "strategy": str(history["strategy"].iloc[0]),
            "initial_wealth_usd": initial, "final_wealth_usd": final, "pnl_usd": pnl,
            "fees_earned_usd": fees, "impermanent_loss_usd": loss,
            "price_effect_usd": pnl - fees - loss, "measured_step": step,
        })
    return pd.DataFrame(rows, columns=columns)


def distribution_cost(run: Run) -> dict[str, Any]:
    """What distributing the rewards cost the federation.

    Returns a dict:
    - `policy`: the distribution policy (`Run.policy`: from `config.yaml`);
    - `rounds`: number of FL rounds;
    - `rewards_usd`: total reward distributed, sum of `rounds.reward_usd`;
    - `cost_usd`: total fees and slippage the federation paid to distribute it, the sum over
      steps of `model.distribution_cost_usd` (a per-step amount; 0 for policies that do not
      trade, such as `equal`, `direct`, `mint`);
    - `cost_pct` = 100 × cost / rewards, percent of the rewards (`NaN` when nothing was
      distributed).
    """
    rewards = float(run.rounds["reward_usd"].sum())
    cost = float(run.model["distribution_cost_usd"].sum())
    return {
        "policy": run.policy,
        "rounds": run.n_rounds,
        "rewards_usd": rewards,
        "cost_usd": cost,
        "cost_pct": 100.0 * cost / rewards if rewards != 0 else NAN,
    }


def summarise_run(run: Run) -> dict[str, Any]:
    """Headline figures of one run, flat and JSON-friendly (floats may be `NaN`), for the
    sweep layer to tabulate one row per run.

    Keys: `scenario`, `seed`, `policy`, `steps`, `rounds`, `final_accuracy` (validation
    metric of the global model at the last step, `model.accuracy`), `price_contribution_
    spearman`, `reward_gini`, `rewards_usd`, `distribution_cost_usd`,
    `distribution_cost_pct`, `min_vs_equal_pct`, `max_vs_equal_pct` (the extremes of
    `client_rewards.vs_equal_pct`).
    """
    cost = distribution_cost(run)
    rewards = client_rewards(run)
    accuracy = run.model.sort_values("step")["accuracy"]
    vs_equal = rewards["vs_equal_pct"]
    return {
        "scenario": run.name,
        "seed": run.seed,
        "policy": cost["policy"],
        "steps": run.steps,
        "rounds": cost["rounds"],
        "final_accuracy": float(accuracy.iloc[-1]) if len(accuracy) else NAN,
        "price_contribution_spearman": price_contribution_correlation(run),
        "reward_gini": gini(rewards["received_usd"]),
        "rewards_usd": cost["rewards_usd"],
        "distribution_cost_usd": cost["cost_usd"],
        "distribution_cost_pct": cost["cost_pct"],
        "min_vs_equal_pct": _nan_extreme(vs_equal, min),
        "max_vs_equal_pct": _nan_extreme(vs_equal, max),
    }


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
