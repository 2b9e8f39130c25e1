"""Tables and figures over a sweep folder: means and confidence intervals over seeds.

`write_sweep_report(sweep_dir)` is what `wsf report SWEEP_DIR` (and the end of `wsf sweep`)
does. It reads the combined tables (`loading`: built once from the finished runs with the
per-run metrics of `analysis.metrics`) and writes into `<sweep>/report/`:

- tables (CSV for analysis, Markdown for reading), each grouped by the grid parameters, with
  the mean over seeds and its confidence interval (Student t, level from the sweep file's
  `report.confidence`, default 95 %):
  `runs_by_point` (headline figures of `summarise_run`), `client_rewards` (per client:
  allotted and attributable vs the equal split), `paired_differences` (per holder type: run
  minus its counterfactual twin, the paired difference of each seed, when the sweep ran
  twins), `execution_cost`, `investor_returns` (per strategy, at spot and if sold),
  `price_contribution_correlation`;
- seaborn figures (PNG and PDF, or the sweep file's `report.formats`), every bar a mean over
  seeds with the same t interval as error bar: allotted and attributable reward vs the equal
  split per client per contribution method (the paper's figure), execution cost per
  policy, investor returns per strategy, price-contribution correlation per policy;
- `report.md` with every table and figure.

Money is in USD display units, returns and shares of rewards in percent, correlations are
Spearman's rho (see `analysis.metrics` for each definition).

CSV columns: the grid parameters (one column per dotted path, named values by their label),
the entity (`client`, `strategy`) where there is one, `n_runs` (runs in the group, i.e. seeds),
then per metric `<metric>_mean`, `<metric>_ci_low`, `<metric>_ci_high` (NaN with one seed).

Modules, split as the single-run analysis is: `loading` (combined tables), `labels` (the
parameter columns of the runs), `statistics` (which interval each metric gets, summaries
over seeds, paired comparisons; the estimators are `analysis.statistics`), `tables`,
`figures`, `sensitivity` (design sweeps), `report`.
"""

from analysis.statistics import mean_ci
from analysis.sweep.figures import FIGURE_NAMES, figure_data, make_sweep_figures
from analysis.sweep.loading import SweepTables, combine, combined_is_current, load_sweep_tables
from analysis.sweep.report import REPORT_DIR, write_sweep_report
from analysis.sweep.statistics import summarise_over_seeds
from analysis.sweep.tables import client_keys, clients_identified, sweep_summary_tables

__all__ = [
    "FIGURE_NAMES",
    "REPORT_DIR",
    "SweepTables",
    "client_keys",
    "clients_identified",
    "combine",
    "combined_is_current",
    "figure_data",
    "load_sweep_tables",
    "make_sweep_figures",
    "mean_ci",
    "summarise_over_seeds",
    "sweep_summary_tables",
    "write_sweep_report",
]
