"""Market statistics of one run: the stylised facts of its token returns, and price run-ups.

Definitions (docs/model.md, section 4.11 (Observation), "Market statistics"):

- **Returns** are per-step log returns of each token's spot price, `r_t = ln(p_t / p_{t-1})`
  for steps `t = 1..T` (`model.parquet` `price/<k>`, USD per token; step 0 is genesis), so a
  run of `T` steps gives `T` returns per token. A step in which nobody traded the token gives
  `r_t = 0`. Every statistic is computed **per token** and then summarised across the run's
  tokens by the **median**: tokens differ in volatility by orders of magnitude (a top
  contributor's pool is bought back every round, a free rider's is not), so pooling their
  returns into one sample would measure the spread between tokens (a variance mixture, which
  alone makes a fat-tailed sample), not the shape of any token's returns.
- **Excess kurtosis**: `scipy.stats.kurtosis(r, fisher=True, bias=False)` (the adjusted
  sample estimator; 0 for a Gaussian, 6 for a Laplace, infinite for a Student t with
  <= 4 degrees of freedom).
- **Hill tail index** `alpha` of the absolute returns (both tails together), from the largest
  `k` of them: `1 / alpha = mean_{i<=k} ln(|r|_(i) / |r|_(k+1))` (Hill 1975), with `k` the
  top `HILL_TAIL_FRACTION` (5 %) of the non-zero absolute returns. For a Pareto tail
  `P(|r| > x) ~ x^-alpha`; real asset returns give about 3 (the "cubic law"), a Gaussian gives
  large values that grow with `n`. Written here (a dozen lines): scipy and statsmodels offer
  no Hill estimator. `NaN` with fewer than `HILL_MIN_TAIL` (10) tail points.
- **Autocorrelation** of returns and of absolute returns at lags 1..`ACF_LAGS` (20), by
  `statsmodels.tsa.stattools.acf` (the standard biased estimator, sums over the overlap
  divided by the full-sample sum of squares), with the band of an i.i.d. series,
  `+-z_{0.975} / sqrt(T)`, and the Ljung-Box test of no autocorrelation up to lag 20. Real
  markets: returns about 0 at every lag, absolute returns positive and slowly decaying
  (volatility clustering). The clustering is summarised by the absolute returns'
  autocorrelation averaged over lags 1-5 (`absacf_1_5`) and over lags 11-19 (`absacf_11_19`,
  the lags between the round clock's 10 and 20 in a run with a round every 10 steps): the
  plain mean of the estimates at those lags.
- **The FL-round clock's footprint**: the same autocorrelations at lag `round_every`. Rewards
  flow into the pools every `round_every` steps (buybacks, mints, dividends) and traders react
  to each published round, so a run whose returns remember the round clock shows a peak there.
- **Bubbles** (`price_runups`, `bubble_flags`): a token is **flagged** when its peak price
  is at least `BUBBLE_MULTIPLE` (5) times its typical price, the larger of its opening and
  its median price over the run, with the agent class that spent the most USD net during
  the run-up (from the last step at or below the typical price to the peak).

Undefined values (a token whose price never moved, too few returns) are `NaN`, never an
exception, as in `analysis.metrics`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.runs import PRICE_PREFIX, Run

__all__ = [
    "ABS_ACF_SPANS",
    "ACF_CONFIDENCE",
    "ACF_LAGS",
    "BUBBLE_MULTIPLE",
    "HILL_MIN_TAIL",
    "HILL_TAIL_FRACTION",
    "MARKET_STAT_KEYS",
    "AcfEstimate",
    "acf_table",
    "autocorrelation",
    "bubble_flags",
    "excess_kurtosis",
    "hill_tail_index",
    "log_returns",
    "market_statistics",
    "price_runups",
    "token_return_stats",
]

NAN = float("nan")
#: Lags of the autocorrelation functions reported (1..ACF_LAGS steps).
ACF_LAGS = 20
#: Two-sided level of the i.i.d. band around 0 drawn with the autocorrelations.
ACF_CONFIDENCE = 0.95
#: Share of the largest non-zero absolute returns the Hill estimator uses.
HILL_TAIL_FRACTION = 0.05
#: Fewest tail points for a Hill estimate (below it the estimate is noise): `NaN`.
HILL_MIN_TAIL = 10
#: A token whose peak price is at least this many times its typical price (the larger of its
#: opening and its median price over the run) is flagged as a bubble in the run report.
BUBBLE_MULTIPLE = 5.0
#: Agent classes whose net buying is reported for a flagged run-up: investors by strategy,
#: then the other agent types (`agents.parquet` `agent_type`).
_OTHER_CLASSES = ("client", "lp", "federation")

#: The scalar market statistics of a run (`market_statistics`), the sweep's runs-table keys.
MARKET_STAT_KEYS = ("ret_excess_kurtosis", "ret_hill_alpha", "ret_acf1", "absret_acf1",
                    "absret_acf_1_5", "absret_acf_11_19", "round_clock_acf",
                    "round_clock_absacf", "max_peak_multiple", "bubbles")
#: The lag ranges (inclusive) over which the absolute returns' autocorrelation is averaged:
#: the short memory of volatility, and the longer one between two round clocks' lags.
ABS_ACF_SPANS = {"absacf_1_5": (1, 5), "absacf_11_19": (11, 19)}


def log_returns(prices: pd.DataFrame) -> pd.DataFrame:
    """Per-step log returns `ln(p_t / p_{t-1})` of each column of a steps x tokens price
    table (USD per token, sorted by step): one row fewer, indexed by the later step."""
    values = prices.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.diff(np.log(values), axis=0)
    return pd.DataFrame(r, index=prices.index[1:], columns=prices.columns)


def excess_kurtosis(returns: Any) -> float:
    """Sample excess kurtosis (Fisher, bias-adjusted: 0 for a Gaussian) of the finite values;
    `NaN` with fewer than 4 values or a constant series (no spread to scale by, up to
    rounding)."""
    x = _finite(returns)
    if len(x) < 4 or _no_spread(x):
        return NAN
    return float(stats.kurtosis(x, fisher=True, bias=False))


def hill_tail_index(returns: Any, tail_fraction: float = HILL_TAIL_FRACTION,
                    k: int | None = None) -> float:
    """Hill (1975) estimate of the tail index alpha of `|returns|` (both tails together).

    With `x_(1) >= x_(2) >= ...` the non-zero absolute values in decreasing order and `k` tail
    points (`k`, or `floor(tail_fraction x n)` of the `n` non-zero values):
    `alpha = k / sum_{i<=k} ln(x_(i) / x_(k+1))`. Exact zeros (steps without a trade) are
    left out: they carry no tail information and their log is undefined. `NaN` when fewer
    than `HILL_MIN_TAIL` tail points are available or the tail is flat (all equal).
    """
    x = np.abs(_finite(returns))
    x = np.sort(x[x > 0])[::-1]
    if k is None:
        k = math.floor(tail_fraction * len(x))
    if k < HILL_MIN_TAIL or k >= len(x):
        return NAN
    logs = np.log(x[:k]) - math.log(x[k])
    total = float(logs.sum())
    return k / total if total > 0 else NAN


class AcfEstimate(dict):
    """`autocorrelation`'s result: keys `acf` ((nlags+1,), lag 0 first, lag 0 == 1), `band`
    (half-width of the i.i.d. band, +- z / sqrt(n)), `ljung_box_p` (p-value of the Ljung-Box
    test of no autocorrelation at lags 1..nlags) and `n` (values used)."""


def autocorrelation(x: Any, nlags: int = ACF_LAGS,
                    confidence: float = ACF_CONFIDENCE) -> AcfEstimate:
    """Autocorrelation function of a series at lags 0..nlags (statsmodels `acf`, FFT).

    The band is statsmodels' interval with `bartlett_confint=False`: +- z_{(1+c)/2} / sqrt(n),
    where an i.i.d. series' autocorrelations fall with probability `confidence` at each lag.
    A series of `n < nlags + 2` values has lags up to `n - 2` only (`NaN` beyond, and no
    Ljung-Box p-value); one of fewer than 3 values, or constant, gives `NaN` everywhere (no
    variance to normalise by).
    """
    values = _finite(x)
    n = len(values)
    out = np.full(nlags + 1, NAN)
    if n < 3 or _no_spread(values):
        return AcfEstimate(acf=out, band=NAN, ljung_box_p=NAN, n=n)
    depth = min(nlags, n - 2)
    # Imported here: statsmodels takes seconds to import, which `import analysis.metrics` (a
    # sweep's tabulation, the browser app) should not pay until a statistic is asked for.
    from statsmodels.tsa.stattools import acf as _statsmodels_acf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # statsmodels' return-type notice
        estimate, interval, _, pvalues = _statsmodels_acf(
            values, nlags=depth, fft=True, alpha=1.0 - confidence, bartlett_confint=False,
            qstat=True)
    out[:depth + 1] = estimate
    band = float(interval[1, 1] - estimate[1])
    return AcfEstimate(acf=out, band=band,
                       ljung_box_p=float(pvalues[-1]) if depth == nlags else NAN, n=n)


def run_returns(run: Run) -> pd.DataFrame:
    """Per-step log returns of every token of a run: steps 1..T x client ids."""
    clients = run.client_ids
    prices = run.model.sort_values("step").set_index("step")[[PRICE_PREFIX + c for c in clients]]
    prices.columns = clients
    return log_returns(prices)


def round_every(run: Run) -> int | None:
    """The run's `round_every` (steps between FL rounds), from config.yaml; `None` if absent."""
    value = run.config.get("round_every")
    return int(value) if isinstance(value, int) and value > 0 else None


def token_return_stats(run: Run, nlags: int = ACF_LAGS) -> pd.DataFrame:
    """One row per token (client order), columns: `client`, `n_returns`, `zero_share` (share
    of steps whose return is exactly 0: nobody traded it), `std` (of the log returns, per
    step), `excess_kurtosis`, `hill_alpha`, `acf1` and `absacf1` (lag-1 autocorrelation of
    returns and of absolute returns), `absacf_1_5` and `absacf_11_19` (the absolute returns'
    autocorrelation averaged over lags 1-5 and 11-19), `round_clock_acf` and
    `round_clock_absacf` (the same at lag `round_every`; `NaN` when the run has no rounds in
    its config), `ljung_box_p` and `absret_ljung_box_p` (Ljung-Box p-values up to lag
    `max(nlags, round_every)`)."""
    returns = run_returns(run)
    lag = round_every(run)
    depth = max(nlags, lag or 0, max(hi for _, hi in ABS_ACF_SPANS.values()))
    rows = []
    for c in returns.columns:
        r = returns[c].to_numpy(dtype=float)
        plain, absolute = autocorrelation(r, depth), autocorrelation(np.abs(r), depth)
        rows.append({
            "client": c,
            "n_returns": int(np.isfinite(r).sum()),
            "zero_share": float(np.mean(r == 0)) if len(r) else NAN,
            "std": float(np.nanstd(r, ddof=1)) if len(r) > 1 else NAN,
            "excess_kurtosis": excess_kurtosis(r),
            "hill_alpha": hill_tail_index(r),
            "acf1": float(plain["acf"][1]),
            "absacf1": float(absolute["acf"][1]),
            **{key: float(np.mean(absolute["acf"][lo:hi + 1]))
               for key, (lo, hi) in ABS_ACF_SPANS.items()},
            "round_clock_acf": float(plain["acf"][lag]) if lag else NAN,
            "round_clock_absacf": float(absolute["acf"][lag]) if lag else NAN,
            "ljung_box_p": plain["ljung_box_p"],
            "absret_ljung_box_p": absolute["ljung_box_p"],
        })
    return pd.DataFrame(rows, columns=[
        "client", "n_returns", "zero_share", "std", "excess_kurtosis", "hill_alpha", "acf1",
        "absacf1", *ABS_ACF_SPANS, "round_clock_acf", "round_clock_absacf", "ljung_box_p",
        "absret_ljung_box_p"])


def acf_table(run: Run, nlags: int = ACF_LAGS) -> pd.DataFrame:
    """The autocorrelation functions of a run, long format: one row per token, series and
    lag 1..nlags, columns `client`, `series` (`returns` or `absolute returns`), `lag`
    (steps), `acf`, `band` (half-width of the i.i.d. band at that length)."""
    returns = run_returns(run)
    rows = []
    for c in returns.columns:
        r = returns[c].to_numpy(dtype=float)
        for series, values in (("returns", r), ("absolute returns", np.abs(r))):
            est = autocorrelation(values, nlags)
            rows.extend({"client": c, "series": series, "lag": lag,
                         "acf": float(est["acf"][lag]), "band": est["band"]}
                        for lag in range(1, nlags + 1))
    return pd.DataFrame(rows, columns=["client", "series", "lag", "acf", "band"])


def price_runups(run: Run) -> pd.DataFrame:
    """Each token's highest price against its typical price, one row per token (client
    order), prices in USD per token:

    - `opening_price` (step 0), `median_price` (over all steps), and `reference_price` =
      the larger of the two: the token's typical level;
    - `peak_step`, `peak_price`: the highest price (first step on ties);
    - `multiple` = peak / reference: how far the peak stood above the typical level;
    - `start_step`, `start_price`: the start of the run-up, the last step before the peak at
      which the price was at or below the reference (step 0 if it never was);
    - `final_price`, `after_peak_pct` = 100 x (final / peak - 1): what the end gave back.

    Why this reference: a token that a reward policy lifts steadily (a buyback's top
    contributor can rise tenfold over a run) spends most of the run near its later level, so
    its median follows the climb and the multiple stays small; a bubble is a transient
    excursion far above both where the token opened and where it usually traded.
    """
    clients = run.client_ids
    model = run.model.sort_values("step")
    steps = model["step"].to_numpy()
    rows = []
    for c in clients:
        p = model[PRICE_PREFIX + c].to_numpy(dtype=float)
        reference = max(float(p[0]), float(np.median(p)))
        peak = int(np.argmax(p))
        below = np.flatnonzero(p[:peak + 1] <= reference)
        start = int(below[-1]) if len(below) else 0
        rows.append({
            "client": c, "opening_price": float(p[0]), "median_price": float(np.median(p)),
            "reference_price": reference, "peak_step": int(steps[peak]),
            "peak_price": float(p[peak]), "multiple": float(p[peak]) / reference,
            "start_step": int(steps[start]), "start_price": float(p[start]),
            "final_price": float(p[-1]),
            "after_peak_pct": 100.0 * (float(p[-1]) / float(p[peak]) - 1.0),
        })
    return pd.DataFrame(rows, columns=[
        "client", "opening_price", "median_price", "reference_price", "peak_step",
        "peak_price", "multiple", "start_step", "start_price", "final_price",
        "after_peak_pct"])


def bubble_flags(run: Run, multiple: float = BUBBLE_MULTIPLE) -> pd.DataFrame:
    """The tokens whose peak price stood at least `multiple` times above their typical price
    (`price_runups`: the larger of the opening and the median price), with who bought
    during the run-up.

    One row per flagged token: the `price_runups` columns, then `net_buyer` (the agent class
    that put the most USD into the market, net, from the run-up's start to the peak step),
    `net_buyer_usd` (that amount), `net_buyer_share` (its share of the USD put in by the
    classes that put USD in), and `net_usd_by_class` (a dict, largest first: USD each class
    spent net, buys minus sales, over the run-up). Classes are the investors by strategy
    (`momentum`, ...) and the agent types `client`, `lp`, `federation`. Net USD spent is the
    drop of the class's cash (`agents.parquet` `usd`) from the start step to the peak step:
    the tables hold cash per agent, not holdings per token, so it counts the class's trades
    in every token over those steps (with one token running up, the class that spent most is
    the one that bought it), and cash the policy paid (cash rewards, dividends) counts as a
    sale. When agent rows were collected only every few steps (`collect.agents_every`), the
    window runs from the last collected step at or before the start to the first at or after
    the peak.
    """
    runups = price_runups(run)
    flagged = runups.loc[runups["multiple"] >= multiple].reset_index(drop=True)
    columns = [*runups.columns, "net_buyer", "net_buyer_usd", "net_buyer_share",
               "net_usd_by_class"]
    if flagged.empty:
        return pd.DataFrame(columns=columns)
    cash = _cash_by_class(run)
    buyers, amounts, shares, by_class = [], [], [], []
    steps = cash.index.to_numpy()
    for row in flagged.itertuples(index=False):
        # Agent rows may be collected every few steps (`collect.agents_every`; step 0 and the
        # last always): widen the window to the collected steps around the run-up.
        start = steps[max(int(np.searchsorted(steps, row.start_step, side="right")) - 1, 0)]
        end = steps[min(int(np.searchsorted(steps, row.peak_step)), len(steps) - 1)]
        spent = (cash.loc[start] - cash.loc[end]).sort_values(ascending=False)
        positive = float(spent[spent > 0].sum())
        buyers.append(str(spent.index[0]) if len(spent) else "")
        amounts.append(float(spent.iloc[0]) if len(spent) else NAN)
        shares.append(float(spent.iloc[0]) / positive if positive > 0 else NAN)
        by_class.append({str(k): float(v) for k, v in spent.items()})
    flagged["net_buyer"] = buyers
    flagged["net_buyer_usd"] = amounts
    flagged["net_buyer_share"] = shares
    flagged["net_usd_by_class"] = by_class
    return flagged[columns]


def market_statistics(run: Run) -> dict[str, float]:
    """The run's market statistics as scalars (`MARKET_STAT_KEYS`), each the median across
    tokens of the per-token figure of `token_return_stats` (NaN tokens left out):
    `ret_excess_kurtosis`, `ret_hill_alpha`, `ret_acf1` (lag-1 autocorrelation of returns),
    `absret_acf1` (of absolute returns), `absret_acf_1_5` and `absret_acf_11_19` (of
    absolute returns averaged over lags 1-5 and 11-19: volatility clustering),
    `round_clock_acf`, `round_clock_absacf` (lag `round_every`); plus `max_peak_multiple`
    (the largest peak / typical price of any token, `price_runups`) and `bubbles` (the
    number of tokens flagged at `BUBBLE_MULTIPLE`)."""
    per_token = token_return_stats(run)
    runups = price_runups(run)

    def median(column: str) -> float:
        values = per_token[column].to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        return float(np.median(values)) if len(values) else NAN

    return {
        "ret_excess_kurtosis": median("excess_kurtosis"),
        "ret_hill_alpha": median("hill_alpha"),
        "ret_acf1": median("acf1"),
        "absret_acf1": median("absacf1"),
        "absret_acf_1_5": median("absacf_1_5"),
        "absret_acf_11_19": median("absacf_11_19"),
        "round_clock_acf": median("round_clock_acf"),
        "round_clock_absacf": median("round_clock_absacf"),
        "max_peak_multiple": float(runups["multiple"].max()) if len(runups) else NAN,
        "bubbles": float((runups["multiple"] >= BUBBLE_MULTIPLE).sum()),
    }


def _cash_by_class(run: Run) -> pd.DataFrame:
    """USD cash held per agent class (investors by strategy, other agents by type), steps x
    classes. Where investors switch strategies (docs/model.md, 7.17) an investor's class
    changes over the run: its cash then counts in the class it starts with at the first
    step, and each change of its cash between two collected steps in the class it used at
    the later one, so that a difference between two steps is what each class spent, not
    the cash investors carried from one strategy to another."""
    agents = run.agents
    label = agents["strategy"].astype(str).where(agents["agent_type"] == "investor",
                                                 agents["agent_type"].astype(str))
    labelled = agents.assign(_class=label)
    if labelled.groupby("agent_id")["_class"].nunique().max() <= 1:
        return (labelled.pivot_table(index="step", columns="_class", values="usd",
                                     aggfunc="sum", observed=True)
                .sort_index())
    labelled = labelled.sort_values(["agent_id", "step"])
    first = labelled.groupby("agent_id").cumcount() == 0
    # Cash at an agent's first row, then its changes, each in the class of its later row.
    flow = labelled["usd"].where(first, labelled.groupby("agent_id")["usd"].diff())
    return (labelled.assign(_flow=flow)
            .pivot_table(index="step", columns="_class", values="_flow", aggfunc="sum",
                         observed=True, fill_value=0.0)
            .sort_index().cumsum())


def _no_spread(x: np.ndarray) -> bool:
    """True when the values are equal up to floating-point rounding (relative 1e-9): the log
    returns of a price growing at a constant rate differ only in their last bits, and scaling
    that rounding noise to unit variance would report its shape as the series'."""
    return bool(np.ptp(x) <= 1e-9 * max(float(np.max(np.abs(x))), np.finfo(float).tiny))


def _finite(x: Any) -> np.ndarray:
    values = np.asarray(x, dtype=float).ravel()
    return values[np.isfinite(values)]
