"""Figures of a study folder (`wsf optimize`): the Pareto front, or the best value so far.

`write_study_figures(folder)` reads `trials.parquet` and `optimize.yaml` and draws
`pareto.png` / `pareto.pdf`: with two objectives, every completed trial's means over seeds
(one objective per axis, in the objective's units) with the Pareto front highlighted and
joined; with more, one such panel per pair of objectives; with one, each trial's value and
the best value so far against the trial number.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from abm.scenario import read_yaml
from analysis.figures import save_figure

__all__ = ["output_label", "write_study_figures"]

#: How a run output's name ends -> its unit, as an axis shows it.
UNIT_SUFFIXES = {"_usd": "USD", "_pct": "%", "_tokens": "tokens"}
#: Words of output names that read better spelt out.
WORDS = {"rho": "Spearman ρ", "gini": "Gini", "lp": "LP", "fl": "FL", "vs": "vs"}


def output_label(name: str) -> str:
    """A run output's name as an axis label: `distribution_cost_usd` -> "distribution cost
    (USD)", `attributable_contribution_rho` -> "attributable contribution Spearman ρ"."""
    unit = next((u for suffix, u in UNIT_SUFFIXES.items() if name.endswith(suffix)), None)
    stem = name[: -len(next(s for s in UNIT_SUFFIXES if name.endswith(s)))] if unit else name
    words = " ".join(WORDS.get(w, w) for w in stem.split("_") if w)
    return f"{words} ({unit})" if unit else words


def write_study_figures(folder: str | Path, formats: tuple[str, ...] = ("png", "pdf")
                        ) -> list[Path]:
    """Draw the study's figure into the folder; return the written files."""
    folder = Path(folder)
    spec = read_yaml(folder / "optimize.yaml", kind="study spec", max_bytes=256 << 20)
    trials = pd.read_parquet(folder / "trials.parquet")
    objectives = spec["objectives"]
    done = trials[trials["state"] == "COMPLETE"]
    names = [o["output"] for o in objectives]
    arrow = {"minimize": "↓ better", "maximize": "↑ better"}
    seeds = len(spec["seeds"])
    if len(names) == 1:
        figure = Figure(figsize=(6.4, 4.2), layout="constrained")
        FigureCanvasAgg(figure)
        ax = figure.subplots()
        name, direction = names[0], objectives[0]["direction"]
        ordered = done.sort_values("trial")
        best = (ordered[name].cummin() if direction == "minimize" else ordered[name].cummax())
        ax.plot(ordered["trial"], ordered[name], "o", color="#0173b2", markersize=4,
                label="trial (mean over seeds)")
        ax.step(ordered["trial"], best, where="post", color="#de8f05", label="best so far")
        ax.set_xlabel("trial number")
        ax.set_ylabel(f"{output_label(name)}, {arrow[direction]}")
        ax.legend(fontsize=8)
        figure.suptitle(f"Study {spec['name']}: {output_label(name)}\n"
                        f"mean over {seeds} seed(s) per trial", fontsize=11)
    else:
        pairs = list(itertools.combinations(range(len(names)), 2))
        ncols = min(3, len(pairs))
        nrows = math.ceil(len(pairs) / ncols)
        figure = Figure(figsize=(max(6.4, 5.2 * ncols), 4.6 * nrows), layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.subplots(nrows, ncols, squeeze=False)
        front = done[done["pareto"]]
        for ax, (i, j) in zip(axes.flat, pairs, strict=False):
            x, y = names[i], names[j]
            ax.plot(done[x], done[y], "o", color="#9e9e9e", markersize=4, label="trial")
            ordered = front.sort_values(x)
            ax.plot(ordered[x], ordered[y], "o-", color="#d55e00", markersize=6,
                    label="Pareto front")
            for _, row in ordered.iterrows():
                ax.annotate(f"t{int(row['trial'])}", (row[x], row[y]), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
            ax.set_xlabel(f"{output_label(x)}, {arrow[objectives[i]['direction']]}")
            ax.set_ylabel(f"{output_label(y)}, {arrow[objectives[j]['direction']]}")
            ax.legend(fontsize=8)
        for ax in axes.flat[len(pairs):]:
            ax.set_visible(False)
        # Two short lines: one line was wider than a one-panel figure and cut at both edges.
        figure.suptitle(f"Study {spec['name']}: {len(done)} completed trials\n"
                        f"means over {seeds} seed(s); Pareto front in red", fontsize=11)
    return save_figure(figure, folder, "pareto", formats)
