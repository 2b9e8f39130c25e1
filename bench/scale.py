"""Benchmark of cross-device scale (issue 27): many clients, each with its token market, with
client sampling (`fl.clients_per_round`), against the shipped baseline in the same run.

    python -m bench.scale [--clients N] [--per-round K] [--investors N] [--steps N]
                          [--watchlist W | --watchlist none]
    python -m bench.scale --fit [--out abm/cost_model.json]
    python -m bench.scale --fit-learning [--out abm/cost_model.json]
    python -m bench.scale --check FILE... [--check-steps N]

`make bench` runs the first with its defaults, the issue's target row. `--fit` measures the
cost model's grid instead (`FIT_GRID`, `FIT_METHODS`, `HELD_OUT`: one child process per run,
each phase's CPU time; a few minutes on 2 cores, resumable), fits `abm.cost_model` to it and
writes the coefficients, the measurements, the fit's quality and the machine's description
to `--out` (`wsf validate` reads `abm/cost_model.json`), then measures the learning probes
(`measure_learning`: each dataset/model pair's ratios to the fitted learning costs);
`--fit-learning` measures the probes alone into an existing `--out`; `--check` measures
scenario files the same way (`--check-steps N`: their first N steps) and prints them beside
the model's prediction; see docs/performance.md, "Sizing a study".

Workload: `--clients` FL clients on synthetic data (20 features, 4 classes, 40 samples a
client; a tenth of them zero-update free riders), one pool each, `--investors` investors (a
quarter each of `fundamental`, `momentum`, `mean_reversion` and `noise`), each following a
watchlist of `--watchlist` tokens of its own (default 10, at most the clients; `none`: every
token, the scenario default), 20 liquidity providers, `--steps` steps with a round every 10,
`--per-round` clients sampled per round, GTG-Shapley contributions, the `direct` policy,
agent rows every 10 steps, no twin. The reference: `scenarios/baseline.yaml` without its
twin, simulated in the same invocation.

Each runs in its own child process (`python -m bench.scale --one ...`), so that its peak
resident memory (`ru_maxrss`) is its own. Printed: each one's simulation time and phase split
(`summary.json`'s `time_by_phase_s`), its peak RSS, the ratio of the simulation times
(target <= 25 for 1,000 clients, 50 per round, 2,000 investors, 100 steps), the peak RSS
(target <= 4 GiB) and the share of the rewards the free riders were allotted (target < 2 %).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.table import record

TARGET_RATIO = 25.0
TARGET_RSS_GIB = 4.0
TARGET_FREE_RIDER_PCT = 2.0
STRATEGIES = ("fundamental", "momentum", "mean_reversion", "noise")


def workload(clients: int, per_round: int, investors: int, steps: int,
             watchlist: int | None = 10, *, lps: int = 20, method: str = "gtg_shapley",
             agents_every: int = 10, samples_per_client: int = 40,
             counterfactual: bool = False, activation: float = 1.0) -> dict[str, Any]:
    """The cross-device scenario (see the module docstring), as a scenario mapping;
    `watchlist` the tokens each investor follows (None: every token). The keywords are the
    cost model's other sizes (`--fit`): liquidity providers, the contribution method, steps
    between agent rows, training samples per client (a fifth more are drawn: the validation
    split), the counterfactual twin and the investors' activation (probability of acting in
    a step)."""
    riders = max(1, clients // 10)
    watch = None if watchlist is None else min(watchlist, clients)
    drawn = samples_per_client * clients + samples_per_client * clients // 4
    return {
        "name": f"scale_{clients}", "seed": 1, "steps": steps, "round_every": 10,
        "fl": {"dataset": {"name": "synthetic", "n_samples": drawn,
                           "n_features": 20, "n_classes": 4},
               "model": "logreg", "partition": {"scheme": "iid"},
               "clients_per_round": per_round, "utility_samples": 500},
        "contribution": {"method": method},
        "rewards": {"policy": "direct", "budget": {"amount": 1000}},
        "clients": [{"count": clients - riders, "behaviour": "honest"},
                    {"count": riders, "behaviour": "free_rider"}],
        "investors": [{"strategy": s, "count": investors // len(STRATEGIES), "cash": 1000,
                       "watchlist": watch, "activation": activation} for s in STRATEGIES],
        "liquidity_providers": [{"count": lps, "cash": 10_000}],
        "collect": {"agents_every": agents_every},
        "counterfactual": counterfactual,
    }


def _one(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Simulate one workload in this process; its times, peak RSS and free riders' share."""
    # Imported before the clock starts: the figure is the simulation's, not the imports'.
    import torch  # noqa: F401

    from abm.run import simulate
    from abm.scenario import load_scenario, parse_scenario

    if kind == "baseline":
        scenario = load_scenario("scenarios/baseline.yaml").with_overrides(
            {"counterfactual": False})
    else:
        scenario = parse_scenario(workload(args.clients, args.per_round, args.investors,
                                           args.steps, args.watchlist), source="bench/scale.py")
    start = time.perf_counter()
    result = simulate(scenario, counterfactual=False)
    wall = time.perf_counter() - start  # setup, the steps and the tables
    rounds = result.rounds
    allotted = rounds.groupby("behaviour")["reward_usd"].sum()
    total = float(allotted.sum())
    riders = float(allotted.get("free_rider", 0.0))
    return {
        "wall_s": wall,
        "phases": result.summary["time_by_phase_s"],
        "steps": scenario.steps,
        "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "free_rider_pct": 100 * riders / total if total > 0 else 0.0,
        "clients": scenario.n_clients,
    }


def _child(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.scale", "--one", kind, "--clients", str(args.clients),
           "--per-round", str(args.per_round), "--investors", str(args.investors),
           "--steps", str(args.steps), "--watchlist", str(args.watchlist).lower()]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


#: The grid `--fit` measures (see `fit_cost_model`): sizes chosen so that no two terms of a
#: phase move together (clients against LPs x clients, investors against watched
#: holdings, agent rows against steps), small enough for a few minutes on 2 cores. Keys:
#: clients, per_round, investors, watchlist (None: every token), lps, steps, agents_every,
#: samples_per_client, twin, activation; the method is gtg_shapley.
FIT_GRID: tuple[dict[str, Any], ...] = (
    dict(clients=10, per_round=10, investors=200, watchlist=None, lps=5, steps=40),
    dict(clients=100, per_round=20, investors=200, watchlist=10, lps=20, steps=40),
    dict(clients=100, per_round=20, investors=2000, watchlist=10, lps=10, steps=40,
         activation=0.5),
    dict(clients=100, per_round=50, investors=2000, watchlist=5, lps=5, steps=40,
         samples_per_client=160),
    dict(clients=300, per_round=20, investors=1000, watchlist=30, lps=10, steps=60,
         agents_every=1, twin=True),
    dict(clients=1000, per_round=20, investors=200, watchlist=10, lps=20, steps=30),
    dict(clients=1000, per_round=50, investors=2000, watchlist=2, lps=5, steps=30,
         agents_every=50),
    dict(clients=30, per_round=30, investors=3000, watchlist=10, lps=2, steps=60,
         samples_per_client=80, twin=True),
    dict(clients=500, per_round=10, investors=500, watchlist=20, lps=40, steps=30),
    dict(clients=20, per_round=20, investors=3000, watchlist=None, lps=3, steps=40,
         agents_every=1, activation=0.25, twin=True),
    dict(clients=2000, per_round=20, investors=1000, watchlist=10, lps=10, steps=20),
    dict(clients=50, per_round=50, investors=1000, watchlist=None, lps=10, steps=80,
         agents_every=5, twin=True),
    dict(clients=200, per_round=100, investors=400, watchlist=10, lps=20, steps=50),
    dict(clients=1000, per_round=10, investors=4000, watchlist=10, lps=5, steps=20,
         twin=True),
)
#: Contribution methods the fit knows, each measured at four sizes of the game (clients
#: per round; shapley_exact's at most 16 clients), on a small market.
FIT_METHODS: dict[str, tuple[int, ...]] = {
    "gtg_shapley": (5, 10, 20, 40), "leave_one_out": (5, 10, 20, 40),
    "shapley_mc": (5, 10, 20, 40), "cosine": (5, 10, 20, 40), "data_size": (5, 10, 20, 40),
    "shapley_exact": (4, 6, 8, 10),
}
#: Runs kept out of the fit, whose error states the model's (docs/performance.md): the
#: issue's target row, a twin run of sizes between the grid's, and a small leave-one-out run.
HELD_OUT: tuple[dict[str, Any], ...] = (
    dict(clients=1000, per_round=50, investors=2000, watchlist=10, lps=20, steps=100),
    dict(clients=150, per_round=30, investors=800, watchlist=10, lps=10, steps=50,
         activation=0.5, twin=True),
    dict(clients=20, per_round=20, investors=100, watchlist=None, lps=3, steps=40,
         method="leave_one_out"),
)
POINT_DEFAULTS: dict[str, Any] = dict(agents_every=10, samples_per_client=40,
                                      method="gtg_shapley", twin=False, activation=1.0)


def _contribution_points() -> list[dict[str, Any]]:
    return [dict(clients=k, per_round=k, investors=40, watchlist=None, lps=2, steps=30,
                 method=method) for method, ks in FIT_METHODS.items() for k in ks]


def run_point(point: dict[str, Any]) -> dict[str, Any]:
    """Simulate one grid point in this process; its sizes (`abm.cost_model.Sizes`' fields)
    and the CPU seconds of each phase. Every phase timer of the model reads this process's
    CPU clock (`time.perf_counter` is replaced by `time.process_time` here, a child of its
    own), so that a machine's other load does not enter the figures."""
    time.perf_counter = time.process_time
    import torch  # noqa: F401  (imported before the clock starts)

    import abm.run
    from abm.cost_model import sizes_of
    from abm.scenario import load_scenario, parse_scenario

    p = {**POINT_DEFAULTS, **point}
    if "scenario" in p:  # a scenario file (`--check`)
        scenario = load_scenario(p["scenario"])
        if "steps" in point:  # shortened: a long run's rounds all cost alike
            scenario = scenario.with_overrides({"steps": point["steps"]})
    elif "probe" in p:  # a learning probe (`measure_learning`)
        scenario = parse_scenario(probe_workload(**p["probe"]), source="bench/scale.py")
    else:
        scenario = parse_scenario(workload(
            p["clients"], p["per_round"], p["investors"], p["steps"], p["watchlist"],
            lps=p["lps"], method=p["method"], agents_every=p["agents_every"],
            samples_per_client=p["samples_per_client"], counterfactual=p["twin"],
            activation=p["activation"]),
            source="bench/scale.py --fit")
    spent: list[float] = []
    one = abm.run._simulate_one

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        out = one(*args, **kwargs)
        spent.append(time.process_time() - start)
        return out

    abm.run._simulate_one = timed
    result = abm.run.simulate(scenario)
    ph = result.summary["time_by_phase_s"]
    total = result.timings["total"]
    seconds = {"setup": ph["setup"], "market": ph["market"], "collect": ph["collect"],
               "fl": ph["fl"], "contribution": ph["contribution"] + ph["probe"]}
    seconds["other"] = max(total - sum(seconds.values()), 0.0)
    seconds["tables"] = max(spent[0] - total, 0.0)
    if len(spent) > 1:  # the twin, a second run in this process
        seconds["twin"] = spent[1]
    sizes = sizes_of(scenario)
    return {**{k: getattr(sizes, k) for k in sizes.__dataclass_fields__}, "seconds": seconds,
            "cpu_s": sum(spent), "rss_gib": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 2**20}


#: The learning probes (`measure_learning`): each learning pair runs this small federation
#: (clients, all trained every round; rounds; leave-one-out, so K + 1 utility evaluations a
#: round) at two sizes of the utility set, beside the reference pair's workload.
PROBE_CLIENTS = 10
PROBE_ROUNDS = 5
PROBE_SAMPLES = 6000  # drawn per dataset, at most its size: a fifth is validation
PROBE_UTILITY = (60, 300)
#: Contribution methods probed: GTG-Shapley (the default), and leave-one-out, whose ratio
#: stands for every other method (its K + 1 evaluations a round are a plain count of them).
PROBE_METHODS = ("gtg_shapley", "leave_one_out")
#: Mini-batch sizes of the training probes: the cost per sample is a line in 1 / batch size.
PROBE_BATCHES = (32, 128)
MODELS = ("logreg", "mlp", "cnn")


def probe_workload(dataset: str, model: str, utility: int, method: str = "leave_one_out",
                   batch_size: int = 32) -> dict[str, Any]:
    """A learning probe's scenario mapping: `dataset` (registry name; synthetic with its
    defaults unless it is the reference pair, which is the grid's synthetic data) and
    `model`, `PROBE_CLIENTS` clients trained every round (mini-batches of `batch_size`) for
    `PROBE_ROUNDS` rounds, their contributions by `method` on `utility` validation samples, a
    market of four investors."""
    from abm import registry
    from abm.cost_model import REFERENCE_LEARNING

    scenario = workload(PROBE_CLIENTS, PROBE_CLIENTS, 4, 10 * PROBE_ROUNDS, None, lps=1,
                        method=method, samples_per_client=40)
    if f"{dataset}/{model}" == REFERENCE_LEARNING:
        data = {**scenario["fl"]["dataset"]}
    else:
        size = registry.create("dataset", dataset).expected_size()
        data = {"name": dataset, "n_samples": PROBE_SAMPLES if size is None else
                min(PROBE_SAMPLES, size)}
    scenario["fl"] = {**scenario["fl"], "dataset": data, "model": model,
                      "utility_samples": utility, "batch_size": batch_size}
    scenario["clients"] = [{"count": PROBE_CLIENTS}]
    return scenario


def learning_pairs() -> list[tuple[str, str]]:
    """Every (dataset, model) pair the schema accepts, each dataset once per cost
    (`SAME_COST`: CIFAR-10 costs what its stand-in does)."""
    from abm import registry
    from abm.cost_model import SAME_COST
    from abm.scenario import ScenarioError, parse_scenario

    pairs = []
    for dataset in registry.names("dataset"):
        if dataset in SAME_COST:
            continue
        for model in MODELS:
            try:
                parse_scenario(probe_workload(dataset, model, PROBE_UTILITY[0]), source="probe")
            except ScenarioError:
                continue  # e.g. a convolutional network on a table
            pairs.append((dataset, model))
    return pairs


def measure_learning(model: Any, cache: Path | None = None) -> dict[str, Any]:
    """The learning pairs' `abm.cost_model.LearningRatios` against the fitted `model` (a
    `CostModel`): each pair's probes (`PROBE_METHODS` x `PROBE_UTILITY` at mini-batches of
    32, and one at `PROBE_BATCHES`' larger), one child process each (CPU time; run them
    on the machine and the day of the fit, as `--fit` does).

    Data: the pair's `setup` seconds beyond the model's prediction for the reference, per
    sample, over the fitted per-sample setup cost, plus 1 (a pair whose data take no longer
    to make or load costs the reference's), the median over its probes.
    Training: the pair's `fl` seconds less the fitted per-round term, per sample and
    epoch, over the fitted per-sample cost; a line in 1 / batch size through the two batch
    sizes (a mini-batch's fixed cost spread over its samples). Contributions, per probed
    method: the pair's `contribution` seconds at each utility size over the model's
    prediction for the reference pair at the probe's sizes; a line through the two points
    (slope >= 0). (Normalising by a reference probe measured alongside was tried: the
    reference's learning phases take milliseconds a round, so its ratio to the fit moved
    by 2x between invocations and carried that into every pair.)"""
    import dataclasses

    from abm.cost_model import REFERENCE_LEARNING, sizes_from_row

    done: dict[str, Any] = {}
    if cache is not None and cache.exists():
        for line in cache.read_text().splitlines():
            entry = json.loads(line)
            done[entry["key"]] = entry["row"]

    def measured(**probe: Any) -> dict[str, Any]:
        point = {"probe": probe}
        key = json.dumps(point, sort_keys=True)
        if key not in done:
            done[key] = _run_child(point)
            if cache is not None:
                with cache.open("a") as f:
                    f.write(json.dumps({"key": key, "row": done[key]}) + "\n")
        return done[key]

    per_round, per_sample = model.data["fit"]["phases"]["fl"]["coefficients"]

    def train_ratio(r: dict[str, Any]) -> float:
        fl = r["seconds"]["fl"] - per_round * r["rounds"]
        trained = r["rounds"] * r["per_round"] * r["samples_per_client"] * r["local_epochs"]
        return max(fl, 0.0) / trained / per_sample

    setup_terms = model.data["fit"]["phases"]["setup"]
    per_sample_setup = setup_terms["coefficients"][setup_terms["terms"].index("samples")]

    def as_reference(r: dict[str, Any]) -> dict[str, float]:
        """The fitted model's phases for the probe's sizes with the reference pair's
        learning: what the pair's measured phases are divided by."""
        return model.predict(dataclasses.replace(sizes_from_row(r),
                                                 learning=REFERENCE_LEARNING))

    def data_ratio(r: dict[str, Any]) -> float:
        extra = r["seconds"]["setup"] - as_reference(r)["setup"]
        return 1.0 + max(extra, 0.0) / (per_sample_setup * r["clients"] * r["samples_per_client"])

    def contribution_ratio(r: dict[str, Any]) -> float:
        return r["seconds"]["contribution"] / as_reference(r)["contribution"]

    pairs: dict[str, Any] = {}
    rows = []
    for dataset, model_name in learning_pairs():
        name = f"{dataset}/{model_name}"
        if name == REFERENCE_LEARNING:
            continue
        evaluation: dict[str, Any] = {}
        at_small_batch = []
        for m in PROBE_METHODS:
            small, large = (measured(dataset=dataset, model=model_name, utility=u, method=m)
                            for u in PROBE_UTILITY)
            rows += [small, large]
            at_small_batch += [train_ratio(small), train_ratio(large)]
            (u0, c0), (u1, c1) = ((r["utility_samples"], contribution_ratio(r))
                                  for r in (small, large))
            slope = max((c1 - c0) / (u1 - u0), 0.0) if u1 > u0 else 0.0
            evaluation[m] = {"intercept": max((c0 + c1) / 2 - slope * (u0 + u1) / 2, 0.0),
                             "slope": slope}
            print(f"learning {name}, {m}: a round's contributions x{c0:.3g} at {u0:g} and "
                  f"x{c1:.3g} at {u1:g} validation samples", flush=True)
        b0, b1 = PROBE_BATCHES
        big = measured(dataset=dataset, model=model_name, utility=PROBE_UTILITY[0],
                       method="data_size", batch_size=b1)
        rows.append(big)
        t0, t1 = float(np.median(at_small_batch)), train_ratio(big)
        per_inverse_batch = max((t0 - t1) / (1 / b0 - 1 / b1), 0.0)
        own = [r for r in rows if r["learning"] == name]
        pairs[name] = {"train": max(t1 - per_inverse_batch / b1, 0.0),
                       "train_per_inverse_batch": per_inverse_batch, "evaluation": evaluation,
                       "data": float(np.median([data_ratio(r) for r in own]))}
        print(f"learning {name}: training x{t0:.3g} per sample at batch {b0}, x{t1:.3g} at "
              f"{b1}", flush=True)
    return {"reference": REFERENCE_LEARNING, "probe": {
        "clients": PROBE_CLIENTS, "rounds": PROBE_ROUNDS, "methods": list(PROBE_METHODS),
        "utility_samples": list(PROBE_UTILITY), "batch_sizes": list(PROBE_BATCHES)},
        "pairs": pairs, "measurements": rows}


def _run_child(point: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.scale", "--point", json.dumps(point)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _machine() -> dict[str, Any]:
    import os
    import platform

    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):  # noqa: SIM115
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"description": f"{model}, {cores} cores", "cpu": model, "cores": cores,
            "python": platform.python_version(), "system": platform.platform()}


def fit_cost_model(out: str, quick: bool = False) -> dict[str, Any]:
    """Measure `FIT_GRID` and the contribution methods' points, one child process each;
    fit `abm.cost_model` to them; predict `HELD_OUT` runs (measured too) and state the
    errors; write it all to `out` (JSON). `quick`: every third point only (a smoke test
    of the command; not a model to commit)."""
    import datetime

    from abm.cost_model import CostModel, fit, sizes_from_row

    points = [*FIT_GRID, *_contribution_points()]
    if quick:
        points = points[::3]
    # Each measurement is kept as it comes (one JSON line per point), so that a fit that
    # stops part way resumes where it stopped; the file is removed once the fit is written.
    cache = Path(f"{out}.rows.jsonl")
    done = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            entry = json.loads(line)
            done[entry["key"]] = entry
    rows = []
    for i, point in enumerate([*points, *([] if quick else HELD_OUT)], 1):
        key = json.dumps(point, sort_keys=True)
        if key not in done:
            done[key] = {"key": key, "row": _run_child(point)}
            with cache.open("a") as f:
                f.write(json.dumps(done[key]) + "\n")
        row = done[key]["row"]
        if i <= len(points):
            rows.append(row)
        print(f"[{i}/{len(points) + (0 if quick else len(HELD_OUT))}] {point}: "
              f"{row['cpu_s']:.1f} s CPU", flush=True)
    data: dict[str, Any] = {
        "machine": _machine(), "date": datetime.date.today().isoformat(),
        "command": "python -m bench.scale --fit", "unit": "CPU seconds of one process",
        "fit": fit(rows), "measurements": rows,
    }
    model = CostModel(data)  # reads `data`, so it sees the learning ratios added next
    data["learning"] = measure_learning(model, None if quick else Path(f"{out}.probes.jsonl"))
    held = []
    for point in ([] if quick else HELD_OUT):
        row = done[json.dumps(point, sort_keys=True)]["row"]
        sizes = sizes_from_row(row)
        predicted = sum(model.predict(sizes).values())
        measured = sum(row["seconds"].values())
        held.append({**row, "predicted_s": predicted, "measured_s": measured,
                     "error": predicted / measured - 1})
        print(f"held out {point}: predicted {predicted:.1f} s, measured {measured:.1f} s "
              f"({100 * held[-1]['error']:+.0f} %)", flush=True)
    errors = [abs(h["error"]) for h in held]
    data["heldout"] = {"runs": held,
                       "median_abs_error": float(np.median(errors)) if errors else None,
                       "max_abs_error": float(max(errors)) if errors else None}
    _write(out, data)
    cache.unlink()
    Path(f"{out}.probes.jsonl").unlink(missing_ok=True)
    return data


def _write(out: str, data: dict[str, Any]) -> None:
    with open(out, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def fit_learning(out: str) -> dict[str, Any]:
    """Measure the learning probes alone (`measure_learning`) and write them into the model
    file `out`, whose grid fit they scale; the file keeps its grid, date and command, and
    its `learning` section records when and by which command it was measured."""
    import datetime

    data = json.loads(Path(out).read_text())
    cache = Path(f"{out}.probes.jsonl")
    from abm.cost_model import CostModel

    data["learning"] = {**measure_learning(CostModel(data), cache),
                        "date": datetime.date.today().isoformat(),
                        "command": "python -m bench.scale --fit-learning",
                        "machine": _machine()}
    _write(out, data)
    cache.unlink(missing_ok=True)
    return data


def check_files(paths: list[str], steps: int | None = None) -> None:
    """Measure each scenario file as `--fit` measures a run (a child process, CPU time per
    phase) and print it beside the committed model's prediction; `steps`: run only that
    many steps of each (a long run's steps and rounds all cost alike)."""
    from abm.cost_model import CostModel, sizes_from_row

    model = CostModel.load()
    for path in paths:
        row = _run_child({"scenario": path, **({} if steps is None else {"steps": steps})})
        predicted = model.predict(sizes_from_row(row))
        measured, total = row["seconds"], sum(predicted.values())
        print(f"{path}: predicted {total:.1f} s, measured {sum(measured.values()):.1f} s "
              f"({100 * (total / sum(measured.values()) - 1):+.0f} %); by phase, predicted / "
              f"measured: " + ", ".join(f"{k} {predicted[k]:.2f} / {measured.get(k, 0.0):.2f}"
                                        for k in predicted), flush=True)


def _print_fit(data: dict[str, Any]) -> None:
    fitted = data["fit"]
    for name, got in [*fitted["phases"].items(),
                      *((f"contribution/{m}", g) for m, g in fitted["contribution"].items())]:
        terms = ", ".join(f"{c:.3g} s x {t}" for t, c in
                          zip(got["terms"], got["coefficients"], strict=True) if c)
        r2 = "-" if got["r2"] is None else f"{got['r2']:.3f}"
        loo = ("-" if got["loo_median"] is None else
               f"{100 * got['loo_median']:.0f} % (max {100 * got['loo_max']:.0f} %)")
        print(f"{name}: {terms or '0'}; R^2 {r2}; leave-one-out error {loo}; {got['n']} runs")
    if "twin" in fitted:
        print(f"twin: {fitted['twin']['coefficients'][0]:.3f} x (setup + market + collect + "
              f"other + tables, less their fixed part); ratios {fitted['twin']['ratios']}")


def _phases(phases: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in phases.items())


def _watchlist(text: str) -> int | None:
    if text.lower() == "none":
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("a watchlist is at least 1 token (or none)")
    return value


def _watching(watchlist: int | None) -> str:
    return "every token" if watchlist is None else f"{watchlist} tokens"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--per-round", type=int, default=50)
    parser.add_argument("--investors", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--watchlist", type=_watchlist, default=10,
                        help="tokens each investor follows (none: every token)")
    parser.add_argument("--fit", action="store_true",
                        help="measure the cost model's grid, fit it and write --out")
    parser.add_argument("--fit-learning", action="store_true",
                        help="measure the learning probes alone and write them into --out")
    parser.add_argument("--out", default="abm/cost_model.json",
                        help="where --fit writes the fitted model")
    parser.add_argument("--check", nargs="+", metavar="FILE",
                        help="measure scenario files and print them beside the cost model's "
                             "prediction")
    parser.add_argument("--check-steps", type=int, metavar="N",
                        help="with --check: run only the first N steps of each file")
    parser.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one", choices=("baseline", "scale"), help=argparse.SUPPRESS)
    parser.add_argument("--point", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one, args)))
        return
    if args.point:
        print(json.dumps(run_point(json.loads(args.point))))
        return
    if args.fit:
        _print_fit(fit_cost_model(args.out, quick=args.quick))
        return
    if args.fit_learning:
        fit_learning(args.out)
        return
    if args.check:
        check_files(args.check, args.check_steps)
        return
    base = _child("baseline", args)
    scale = _child("scale", args)
    ratio = scale["wall_s"] / base["wall_s"]
    print(f"baseline ({base['clients']} clients, {base['steps']} steps): "
          f"{base['wall_s']:.2f} s ({_phases(base['phases'])}), peak RSS "
          f"{base['rss_gib']:.2f} GiB")
    print(f"scale ({scale['clients']} clients, {args.per_round} per round, {args.investors} "
          f"investors watching {_watching(args.watchlist)}, {scale['steps']} steps): "
          f"{scale['wall_s']:.2f} s "
          f"({_phases(scale['phases'])}), {1000 * scale['wall_s'] / scale['steps']:.0f} ms "
          f"per step, peak RSS {scale['rss_gib']:.2f} GiB")
    print(f"ratio {ratio:.1f}x the baseline (target <= {TARGET_RATIO:g}x); free riders "
          f"allotted {scale['free_rider_pct']:.2f} % of the rewards (target < "
          f"{TARGET_FREE_RIDER_PCT:g} %)")
    size = (f"{scale['clients']} clients, {args.per_round}/round, {args.investors} investors, "
            f"watching {_watching(args.watchlist)}")
    record("scale", f"cross-device run ({size}) / baseline, simulation time",
           f"{ratio:.1f}x", f"<= {TARGET_RATIO:g}x", ratio <= TARGET_RATIO)
    record("scale_rss", f"cross-device run ({size}), peak RSS",
           f"{scale['rss_gib']:.2f} GiB", f"<= {TARGET_RSS_GIB:g} GiB",
           scale["rss_gib"] <= TARGET_RSS_GIB)
    record("scale_free_riders", f"cross-device run ({size}), free riders' share of rewards",
           f"{scale['free_rider_pct']:.2f} %", f"< {TARGET_FREE_RIDER_PCT:g} %",
           scale["free_rider_pct"] < TARGET_FREE_RIDER_PCT)


if __name__ == "__main__":
    main()
