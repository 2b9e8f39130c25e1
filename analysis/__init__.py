"""Analysis of run folders: loading, metrics, seaborn figures and the Markdown report.

`analysis.runs` and `analysis.metrics` are re-exported here; `analysis.figures` and
`analysis.report` are imported on demand, since they pull in matplotlib and seaborn, which a
sweep worker that only tabulates metrics does not need.
"""

from analysis.metrics import (
    client_rewards,
    execution_cost,
    gini,
    investor_performance,
    investor_pnl,
    lp_decomposition,
    mcap_contribution_correlation,
    nmad,
    price_contribution_correlation,
    price_contribution_correlation_by_round,
    reward_gini,
    summarise_run,
)
from analysis.runs import Run, RunFolderError, load_run

__all__ = [
    "Run",
    "RunFolderError",
    "client_rewards",
    "execution_cost",
    "gini",
    "investor_performance",
    "investor_pnl",
    "load_run",
    "lp_decomposition",
    "mcap_contribution_correlation",
    "nmad",
    "price_contribution_correlation",
    "price_contribution_correlation_by_round",
    "reward_gini",
    "summarise_run",
]
