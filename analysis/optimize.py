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
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from abm.errors import shown
from abm.scenario import ScenarioError, read_yaml
from analysis.figures import save_figure
from analysis.runs import RunFolderError

__all__ = ["StudyFolderError", "load_study_trials", "output_label", "write_study_figures"]

#: How a run output's name ends -> its unit, as an axis shows it.
UNIT_SUFFIXES = {"_usd": "USD", "_pct": "%", "_tokens": "tokens"}
#: Words of output names that read better spelt out.
WORDS = {"rho": "Spearman ρ", "gini": "Gini", "lp": "LP", "fl": "FL", "vs": "vs"}


def output_label(name: str) -> str:
    """A run output's name as an axis label: `execution_cost_usd` -> "execution cost
    (USD)", `attributable_contribution_rho` -> "attributable contribution Spearman ρ"."""
    unit = next((u for suffix, u in UNIT_SUFFIXES.items() if name.endswith(suffix)), None)
    stem = name[: -len(next(s for s in UNIT_SUFFIXES if name.endswith(s)))] if unit else name
    words = " ".join(WORDS.get(w, w) for w in stem.split("_") if w)
    return f"{words} ({unit})" if unit else words


class StudyFolderError(RunFolderError):
    """The folder is not a readable study folder; the message names the file and the problem."""


SPEC_FILE = "optimize.yaml"
TRIALS_FILE = "trials.parquet"


def load_study_trials(folder: str | Path) -> tuple[dict[str, Any], pd.DataFrame, dict[str, str]]:
    """`optimize.yaml`, the completed trials of `trials.parquet` that can be drawn, and the
    completed trials left out with why ({"trial N": reason}: an objective that is not a
    finite number). Raises StudyFolderError naming the file when the spec or the table
    cannot be read, lacks what the figures need, or no completed trial is usable."""
    folder = Path(folder)
    spec_file, trials_file = folder / SPEC_FILE, folder / TRIALS_FILE
    try:
        spec = read_yaml(spec_file, kind="study spec", max_bytes=256 << 20)
    except ScenarioError as exc:
        raise StudyFolderError(str(exc)) from None
    objectives = spec.get("objectives")
    if (not isinstance(objectives, list) or not objectives
            or not all(isinstance(o, dict) and isinstance(o.get("output"), str)
                       and o.get("direction") in ("minimize", "maximize") for o in objectives)
            or not isinstance(spec.get("seeds"), list) or not isinstance(spec.get("name"), str)):
        raise StudyFolderError(
            f"{spec_file}: not a study spec written by `wsf optimize` (expected a name, a list "
            "of seeds and objectives, each an output with direction minimize or maximize); "
            "the study folder is damaged")
    if not trials_file.is_file():
        raise StudyFolderError(f"{folder}: a study folder without trials.parquet (no trial "
                               f"finished yet); run `wsf optimize` on its study file first.")
    try:
        trials = pd.read_parquet(trials_file)
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise StudyFolderError(f"{trials_file}: unreadable Parquet table "
                               f"({shown(str(exc), 200)}); run `wsf optimize` on the folder "
                               "again to rewrite it") from None
    names = [o["output"] for o in objectives]
    needed = ["trial", "state", *names, *(["pareto"] if len(names) > 1 else [])]
    absent = [c for c in needed if c not in trials.columns]
    if absent:
        raise StudyFolderError(f"{trials_file}: missing column(s) {', '.join(absent)}; run "
                               "`wsf optimize` on the folder again to rewrite it")
    done = trials[trials["state"].astype(str) == "COMPLETE"].copy()
    skipped: dict[str, str] = {}
    usable = np.ones(len(done), dtype=bool)
    for column in ("trial", *names):
        values = pd.to_numeric(done[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        for i in np.flatnonzero(bad & usable):
            value, trial = done[column].iloc[i], done["trial"].iloc[i]
            value = value.item() if isinstance(value, np.generic) else value
            trial = trial.item() if isinstance(trial, np.generic) else trial
            skipped[f"trial {trial}"] = (f"{trials_file}: column '{column}' = "
                                         f"{shown(value, 40)}: not a finite number")
        usable &= ~bad
        done[column] = values
    done = done[usable]
    if "pareto" in done.columns:
        done["pareto"] = done["pareto"].map(lambda v: v is True or v == 1)
    if done.empty:
        raise StudyFolderError(
            f"{trials_file}: no completed trial with finite objective values (of {len(trials)} "
            "trial(s)) to draw; run `wsf optimize` on the folder to finish trials")
    done["trial"] = done["trial"].astype("int64")
    return spec, done, skipped


def write_study_figures(folder: str | Path, formats: tuple[str, ...] = ("png", "pdf")
                        ) -> list[Path]:
    """Draw the study's figure into the folder; return the written files. Completed trials
    that cannot be drawn are left out (`load_study_trials`)."""
    folder = Path(folder)
    spec, done, _ = load_study_trials(folder)
    objectives = spec["objectives"]
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
