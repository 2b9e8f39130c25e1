"""How long a scenario will take: a cost model fitted to measured runs (issue 27).

A run's time is split into phases (`summary.json`'s `time_by_phase_s`, plus what follows the
steps): `setup` (the model's construction), `market` and `collect` (every step), `fl` and
`contribution` (every round), `other` (the rest of the steps: the view's refresh, the
rounds' bookkeeping), `tables` (the tables, final valuations and summary after the last
step) and `twin` (the counterfactual twin, a second run that replays the learning). Each
phase is a sum of work counts, each a product of the scenario's sizes, times a cost per
unit of work (`FEATURES`): e.g. the collect phase reads every pool's holdings every step
(`abm.amm.market.MarkBook` compares each pool's books, re-marks the holders of the pools
that traded, and every holding when most did), and each LP holds shares of every pool, so
one of its terms is `steps x LPs x clients`. The costs
are fitted by non-negative least squares (`fit`, SciPy's `nnls`) on one-process runs that
`python -m bench.scale --fit` measures on a grid of sizes, and written with the machine's
description, the date, the measurements and the fit's quality to `abm/cost_model.json`.
Non-negative, because a cost per unit of work cannot be negative; and since every feature
grows with each size, so does the prediction (a larger study never predicts shorter).

Rows are weighted by the inverse of the measured time, so the fit minimises relative
errors: a 1 s run counts as much as a 100 s one. A phase's fit quality is stated by its
R^2 and by leave-one-out errors (each run predicted by the model fitted without it), and
the whole model's error by the total of held-out runs that were not in the grid.

What it is: an estimate of the CPU time of one process on the reference machine, which is
the wall time when the run has a core to itself; on a loaded machine a run takes longer. The
learning phases (`fl`, `contribution`) are fitted on the grid's learning workload (synthetic
data, a logistic regression, one local epoch on the CPU). Another dataset and network (a
*learning pair*, `Sizes.learning`) scales them by ratios to the fitted costs, measured by
small probe runs of each pair on the fit's machine (`python -m bench.scale --fit`, or
`--fit-learning` alone): the training time per sample and epoch, a round's contribution
time (GTG-Shapley's, and leave-one-out's for the other methods) as a line in the
validation samples each coalition is evaluated on, and the cost of making the data
(`LearningRatios`). A pair without ratios has its learning phases left out of the total,
and `describe` says so; a GPU's rate is not modelled (the CPU's is used, and said). A
contribution method absent from the fit is said to be unknown.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: The committed coefficients (`python -m bench.scale --fit` writes them).
DEFAULT_PATH = Path(__file__).with_name("cost_model.json")
#: The learning pair the grid's learning phases are fitted on (see the module docstring):
#: `dataset/model` as `Sizes.learning` names it.
REFERENCE_LEARNING = "synthetic/logreg"
#: Datasets whose tensors have another's shapes, so cost the same per sample: CIFAR-10 read
#: from the user's file and its shipped stand-in.
SAME_COST = {"cifar10": "cifar10_standin"}


@dataclass(frozen=True)
class Sizes:
    """A scenario's sizes, as the cost model reads them.

    clients: FL clients (one token and pool each); per_round: clients trained per round
    (`fl.clients_per_round`, or every client); investors, lps: agents; watched: the
    investors' watched tokens added up (`sum(count x watchlist)`, a watchlist of none
    counting every token): the investors' holdings; active: the investors expected to act
    in a step (`sum(count x activation)`); steps, rounds; agents_every: steps between
    agent rows; samples_per_client: training samples of an average client; method: the
    contribution method; twin: whether the counterfactual twin runs; learning: the
    learning pair, `dataset/model`; local_epochs: passes over a client's data per round;
    batch_size: samples per local mini-batch;
    utility_samples: validation samples a utility evaluation reads (None: unknown, the
    dataset's size is not known before loading); device: `cpu` or `cuda`.
    """

    clients: int
    per_round: int
    investors: int
    lps: int
    watched: int
    steps: int
    rounds: int
    active: float | None = None
    agents_every: int = 10
    samples_per_client: float = 40.0
    method: str = "gtg_shapley"
    twin: bool = False
    learning: str = REFERENCE_LEARNING
    local_epochs: int = 1
    batch_size: int = 32
    utility_samples: float | None = None
    device: str = "cpu"

    @property
    def acting(self) -> float:
        """Investors acting per step on average (`active`; every investor when None)."""
        return self.investors if self.active is None else self.active

    @property
    def agent_rows(self) -> float:
        """Agent rows the agents table records (every `agents_every` steps)."""
        return (self.steps / self.agents_every + 1) * (self.clients + self.investors + self.lps)


def sizes_of(scenario) -> Sizes:
    """The `Sizes` of a validated `abm.scenario.Scenario`."""
    from abm import registry

    n = scenario.n_clients
    k = scenario.fl.clients_per_round
    watched = sum(g.count * (n if g.watchlist is None else min(g.watchlist, n))
                  for g in scenario.investors)
    fl = scenario.fl
    size = registry.build(fl.dataset).expected_size()
    val = None if size is None else round(size * fl.val_fraction)
    train = None if size is None else size - val
    utility = (val if fl.utility_samples is None else
               fl.utility_samples if val is None else min(fl.utility_samples, val))
    dataset = SAME_COST.get(fl.dataset.name, fl.dataset.name)
    return Sizes(
        clients=n, per_round=n if k is None else min(k, n),
        investors=sum(g.count for g in scenario.investors),
        lps=sum(g.count for g in scenario.liquidity_providers), watched=watched,
        active=sum(g.count * g.activation for g in scenario.investors),
        steps=scenario.steps, rounds=scenario.n_rounds,
        agents_every=scenario.collect.agents_every,
        samples_per_client=40.0 if train is None else train / max(n, 1),
        method=scenario.contribution.method, twin=bool(scenario.counterfactual),
        learning=f"{dataset}/{fl.model}", local_epochs=fl.local_epochs,
        batch_size=fl.batch_size,
        utility_samples=None if utility is None else float(utility),
        # `auto` is the CPU on a machine without a GPU, as the reference machine is.
        device="cpu" if fl.device == "auto" else fl.device,
    )


def sizes_from_row(row: Mapping[str, Any]) -> Sizes:
    """The `Sizes` of a measurement row (the fields it has; older rows lack the learning
    fields, which then take their defaults: the reference pair)."""
    return Sizes(**{k: row[k] for k in Sizes.__dataclass_fields__ if k in row})


@dataclass(frozen=True)
class LearningRatios:
    """A learning pair's costs relative to the fitted (reference pair's) costs.

    - train, train_per_inverse_batch: training time per sample and local epoch over the
      fitted one, as `train + train_per_inverse_batch / batch size` (a mini-batch's fixed
      cost is spread over its samples); scales the `fl` phase's per-sample term, with the
      local epochs.
    - evaluation: per probed contribution method, `{"intercept": a, "slope": b}`, a round's
      contribution time over the fitted one as `a + b x utility samples` (the validation
      samples each coalition is evaluated on); scales the `contribution` phase. A method
      not probed takes leave-one-out's: its K + 1 evaluations a round are a plain count.
    - data: the cost per sample of making or loading the data and partitioning it over the
      fitted one; scales the `setup` phase's per-sample term.
    """

    train: float
    train_per_inverse_batch: float
    evaluation: Mapping[str, Mapping[str, float]]
    data: float = 1.0

    def training(self, batch_size: int) -> float:
        """The training ratio per sample at mini-batches of `batch_size`."""
        return self.train + self.train_per_inverse_batch / batch_size

    def contribution(self, method: str, utility_samples: float | None) -> float:
        """The contribution ratio of `method` at `utility_samples` (the intercept alone when
        they are unknown)."""
        line = self.evaluation.get(method) or self.evaluation["leave_one_out"]
        return line["intercept"] + line["slope"] * (utility_samples or 0.0)


Feature = Callable[[Sizes], float]

#: Per phase, its terms: a name (the work it counts) and that count from the sizes. Every
#: count grows with each size. Contribution methods share one form, fitted per method.
FEATURES: dict[str, dict[str, Feature]] = {
    "setup": {
        "1": lambda s: 1.0,
        "clients": lambda s: s.clients,
        "samples": lambda s: s.clients * s.samples_per_client,
        "investors": lambda s: s.investors,
        "lps x clients": lambda s: s.lps * s.clients,
        "watched": lambda s: s.watched,
    },
    "market": {
        "steps x acting investors": lambda s: s.steps * s.acting,
        "steps x investors": lambda s: s.steps * s.investors,
        "steps x watched": lambda s: s.steps * s.watched,
        "steps x clients": lambda s: s.steps * s.clients,
        "steps x lps": lambda s: s.steps * s.lps,
    },
    "collect": {
        "steps x lps x clients": lambda s: s.steps * s.lps * s.clients,
        "steps x watched": lambda s: s.steps * s.watched,
        "steps x clients": lambda s: s.steps * s.clients,
        "steps x investors": lambda s: s.steps * s.investors,
        "agent rows": lambda s: s.agent_rows,
    },
    "fl": {
        "rounds": lambda s: s.rounds,
        "rounds x samples trained": lambda s: s.rounds * s.per_round * s.samples_per_client,
    },
    "contribution": {
        "rounds": lambda s: s.rounds,
        "rounds x per_round": lambda s: s.rounds * s.per_round,
        "rounds x per_round^2": lambda s: s.rounds * s.per_round**2,
    },
    "other": {
        "steps": lambda s: s.steps,
        "steps x clients": lambda s: s.steps * s.clients,
        "rounds x investors": lambda s: s.rounds * s.investors,
        "rounds x clients": lambda s: s.rounds * s.clients,
    },
    "tables": {
        "1": lambda s: 1.0,
        "steps x clients": lambda s: s.steps * s.clients,
        "agent rows": lambda s: s.agent_rows,
        "lps x clients": lambda s: s.lps * s.clients,
        "watched": lambda s: s.watched,
    },
}
#: shapley_exact evaluates every coalition: 2^K per round, each an aggregate of K updates.
EXACT_FEATURES: dict[str, Feature] = {
    "rounds": lambda s: s.rounds,
    "rounds x per_round x 2^per_round": lambda s: s.rounds * s.per_round * 2.0**s.per_round,
}
#: The phases a twin repeats (it replays the learning): its time is `twin` x their sum less
#: their fixed part (`_once`).
TWIN_OF = ("setup", "market", "collect", "other", "tables")
#: The order phases are printed in.
PHASES = ("setup", "market", "collect", "fl", "contribution", "other", "tables", "twin")


def features_for(phase: str, method: str | None = None) -> dict[str, Feature]:
    """The terms of `phase` (of the contribution `method` for `contribution`)."""
    if phase == "contribution" and method == "shapley_exact":
        return EXACT_FEATURES
    return FEATURES[phase]


def design(phase: str, sizes: Sequence[Sizes], method: str | None = None) -> np.ndarray:
    """The feature matrix of `phase`, one row per `sizes`, one column per term."""
    terms = features_for(phase, method).values()
    return np.array([[float(f(s)) for f in terms] for s in sizes], dtype=np.float64)


def nnls_relative(X: np.ndarray, y: np.ndarray, floor: float = 0.05) -> np.ndarray:
    """Non-negative coefficients `b` minimising sum(((X b - y) / max(y, floor))^2): least
    squares on relative errors (a phase under `floor` seconds weighs as if it took that).
    Columns are scaled to unit norm first, so that terms of very different magnitudes
    (1 and steps x LPs x clients) are fitted alike."""
    from scipy.optimize import nnls

    w = 1.0 / np.maximum(y, floor)
    A = X * w[:, None]
    norms = np.linalg.norm(A, axis=0)
    norms[norms == 0] = 1.0
    b, _ = nnls(A / norms, y * w)
    return b / norms


@dataclass
class PhaseFit:
    """One phase's fitted costs: `terms` the work counted, `coefficients` the seconds per
    unit of each (same order), over `n` runs, with R^2 (`r2`, on seconds) and the
    leave-one-out relative errors' median and maximum (`loo_median`, `loo_max`,
    fractions; None with fewer than one run more than terms)."""

    terms: list[str]
    coefficients: list[float]
    n: int
    r2: float | None
    loo_median: float | None
    loo_max: float | None


def fit_phase(phase: str, sizes: Sequence[Sizes], seconds: Sequence[float],
              method: str | None = None) -> PhaseFit:
    """Fit `phase` to measured `seconds` of runs of `sizes` (`nnls_relative`), with its R^2
    and leave-one-out errors."""
    X = design(phase, sizes, method)
    y = np.asarray(seconds, dtype=np.float64)
    b = nnls_relative(X, y)
    pred = X @ b
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else None
    loo: list[float] = []
    if len(y) > X.shape[1]:
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            bi = nnls_relative(X[keep], y[keep])
            loo.append(abs(float(X[i] @ bi) - y[i]) / max(y[i], 0.05))
    return PhaseFit(
        terms=list(features_for(phase, method)), coefficients=b.tolist(), n=len(y), r2=r2,
        loo_median=float(np.median(loo)) if loo else None,
        loo_max=float(np.max(loo)) if loo else None)


def fit(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Fit every phase to measured runs. Each row: the `Sizes` fields, and `seconds`, a
    mapping phase -> measured seconds (`twin` only for runs with a twin). Returns
    `{"phases": {phase: PhaseFit as dict}, "contribution": {method: PhaseFit as dict},
    "twin": {...}}`: the twin's one coefficient is the median over the runs with a twin of
    its time over the phases it repeats (`TWIN_OF`), less their fitted fixed part (`_once`)."""
    sizes = [sizes_from_row(r) for r in rows]
    out: dict[str, Any] = {"phases": {}, "contribution": {}}
    for phase in FEATURES:
        if phase == "contribution":
            continue
        out["phases"][phase] = asdict(fit_phase(phase, sizes,
                                                [r["seconds"][phase] for r in rows]))
    for method in sorted({s.method for s in sizes}):
        idx = [i for i, s in enumerate(sizes) if s.method == method]
        out["contribution"][method] = asdict(fit_phase(
            "contribution", [sizes[i] for i in idx],
            [rows[i]["seconds"]["contribution"] for i in idx], method))
    twins = [r for r in rows if "twin" in r["seconds"]]
    if twins:
        once = _once(out["phases"])
        ratios = [r["seconds"]["twin"] / max(sum(r["seconds"][p] for p in TWIN_OF) - once,
                                             0.05) for r in twins]
        out["twin"] = {"terms": ["time of the phases it repeats, less their fixed part"],
                       "coefficients": [float(np.median(ratios))], "n": len(twins),
                       "ratios": [round(x, 3) for x in ratios]}
    return out


def _once(phases: Mapping[str, Any]) -> float:
    """The fixed part of the phases a twin repeats (their `1` terms: the imports and first
    calls of a process), which the twin, in the same process, does not pay again."""
    return sum(got["coefficients"][got["terms"].index("1")] for p, got in phases.items()
               if p in TWIN_OF and "1" in got["terms"])


@dataclass
class CostModel:
    """Fitted costs (`fit`'s result plus `machine`, `date`, `command`, `heldout`)."""

    data: dict[str, Any]

    @classmethod
    def load(cls, path: Path | str = DEFAULT_PATH) -> CostModel:
        return cls(json.loads(Path(path).read_text()))

    def fitted_range(self) -> dict[str, int]:
        """The largest of each size among the fitted runs (clients, per_round, investors,
        lps): a scenario beyond one of them is predicted by extrapolation. (Steps and rounds
        are not: every term is per step or per round, so they only multiply.)"""
        rows = self.data["measurements"]
        return {k: max(r[k] for r in rows) for k in ("clients", "per_round", "investors",
                                                     "lps")}

    def knows(self, method: str) -> bool:
        return method in self.data["fit"]["contribution"]

    def ratios(self, learning: str) -> LearningRatios | None:
        """The learning pair's `LearningRatios` (the reference's are 1); None when the
        model has none for it."""
        if learning == REFERENCE_LEARNING:
            return LearningRatios(1.0, 0.0, {"leave_one_out": {"intercept": 1.0, "slope": 0.0}})
        got = self.data.get("learning", {}).get("pairs", {}).get(learning)
        return None if got is None else LearningRatios(
            got["train"], got["train_per_inverse_batch"], got["evaluation"],
            got.get("data", 1.0))

    def predict(self, sizes: Sizes) -> dict[str, float]:
        """Seconds per phase (`PHASES`; `twin` 0 without one). A method the fit does not
        know contributes NaN to `contribution`; a learning pair without ratios NaN to `fl`
        and `contribution`."""
        fitted = self.data["fit"]
        ratios = self.ratios(sizes.learning)
        out: dict[str, float] = {}
        for phase in PHASES:
            if phase == "twin":
                continue
            if phase == "contribution":
                got = fitted["contribution"].get(sizes.method)
                if got is None:
                    out[phase] = math.nan
                    continue
                terms = features_for(phase, sizes.method)
            else:
                got, terms = fitted["phases"][phase], FEATURES[phase]
            parts = [c * float(f(sizes)) for c, f in
                     zip(got["coefficients"], terms.values(), strict=True)]
            if phase == "setup" and ratios is not None:
                # Making or loading the pair's data: its per-sample term at the pair's rate.
                k = list(terms).index("samples")
                parts[k] *= ratios.data
            elif phase == "fl":
                # The per-sample term trains every sample local_epochs times at the pair's
                # rate; the per-round term (aggregation, bookkeeping) stays.
                scale = (math.nan if ratios is None else
                         ratios.training(sizes.batch_size) * sizes.local_epochs)
                parts = [parts[0], parts[1] * scale]
            elif phase == "contribution":
                scale = (math.nan if ratios is None else
                         ratios.contribution(sizes.method, sizes.utility_samples))
                parts = [p * scale for p in parts]
            out[phase] = sum(parts)
        twin = fitted.get("twin")
        repeated = sum(out[p] for p in TWIN_OF) - _once(fitted["phases"])
        out["twin"] = (twin["coefficients"][0] * max(repeated, 0.0)
                       if sizes.twin and twin else 0.0)
        return out

    def describe(self, scenario) -> str:
        """One line: the scenario's expected run time on the reference machine, by phase,
        what the estimate is and where it comes from."""
        sizes = sizes_of(scenario)
        phases = self.predict(sizes)
        known = {k: v for k, v in phases.items() if not math.isnan(v)}
        total = sum(known.values())
        parts = ", ".join(f"{k} {_secs(v)}" for k, v in known.items() if v >= 0.05 or k in (
            "setup", "market", "collect"))
        machine = self.data["machine"]
        # The largest held-out error, not the median: three runs are too few for a
        # typical figure, and scenarios unlike the grid's stray further (docs/performance.md).
        heldout = self.data.get("heldout", {})
        err, runs = heldout.get("max_abs_error"), len(heldout.get("runs", ()))
        error = (f", within {100 * err:.0f} % on the {runs} held-out runs of the fitted "
                 "workload (more on others)" if err is not None and runs else "")
        notes = []
        beyond = [f"{k} {getattr(sizes, k):,} > {most:,}" for k, most in self.fitted_range().items()
                  if getattr(sizes, k) > most]
        if beyond:
            notes.append(f"beyond the fitted runs ({', '.join(beyond)}): an extrapolation")
        if not self.knows(sizes.method):
            notes.append(f"contribution method {sizes.method} not in the fit: its time is "
                         f"left out")
        ratios = self.ratios(sizes.learning)
        if ratios is None:
            probed = ", ".join(sorted(self.data.get("learning", {}).get("pairs", {})))
            notes.append(f"learning phases (fl, contribution) not modelled for "
                         f"{sizes.learning}: left out of the total (pairs with measured "
                         f"ratios: {probed or 'none'}; `python -m bench.scale --fit-learning` "
                         f"measures them)")
        elif sizes.learning != REFERENCE_LEARNING:
            notes.append(f"learning phases scaled to {sizes.learning} by ratios measured "
                         f"by bench.scale's probes: training x"
                         f"{ratios.training(sizes.batch_size):.3g} per sample, contributions x"
                         f"{ratios.contribution(sizes.method, sizes.utility_samples):.3g}")
        if sizes.device != "cpu":
            notes.append(f"device {sizes.device}: learning phases at the CPU's rate; a "
                         f"GPU's is not modelled")
        note = f" [{'; '.join(notes)}]" if notes else ""
        return (f"expected run time on the reference machine ({machine['description']}): "
                f"~{_secs(total)}{' without learning' if ratios is None else ''} "
                f"({parts}){error}; an estimate of one process's CPU time "
                f"from a cost model fitted on {self.data['date']} by "
                f"`{self.data['command']}`{note}")


def _secs(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f} s"
    if v >= 10:
        return f"{v:.0f} s"
    return f"{v:.1f} s"
