"""Benchmark of the learning core (``abm.fl``), run by ``make bench`` (``bench.fl.main()``).

Every row is measured side by side in this run (ratios of two timings taken alternately on the
same machine load, best of several), printed with its target and ``met`` / ``NOT met``. torch
runs on one intra-op thread, as in ``wsf run``.

Rows:

1. Exact Shapley, 10 clients, 1,024 coalitions, MLP on digits, negative-loss utility: the
   coalition game's fast path (first-layer linearity, :mod:`abm.fl.game`) against a naive
   loop that builds and evaluates one coalition model at a time
   (:meth:`~abm.fl.game.CoalitionGame.evaluate_naive`), on 6 rounds of a 50-round run; target
   >= 10x with every value within 1e-6 of the naive loop.
2. GTG-Shapley (default parameters) against exact Shapley on the same rounds and games:
   time ratio <= 0.5 and median Spearman rank correlation with exact >= 0.9.
3. CIFAR-10 CNN with ``scenarios/paper_cifar10.yaml``'s learning settings (read from the
   file) on a CIFAR-shaped stand-in (:mod:`bench.cifar_like`: no CIFAR-10 copy is shipped):
   FL round + GTG per round <= 12 s; and the error the scenario's ``fl.utility_samples``
   subset costs against the whole validation split (same GTG permutations).
4. 30 and 50 clients (digits, MLP, negative loss): GTG's and Monte-Carlo's time per round and
   error against a high-sample reference (plain permutation sampling, no truncation); the
   reference's own error is estimated from its two halves.
5. GTG-Shapley's cap and convergence tolerance, studied on row 2's rounds: for each setting,
   its time against exact (side by side on the real games) and its accuracy against exact
   (Spearman and relative L1 error over 20 permutation seeds per round, on each round's table
   of all 1,024 utilities): what a cheaper setting costs in accuracy.

6. The coalition rule's cost (issue 21): exact Shapley and GTG-Shapley per round under
   ``round_weights`` (the default: a zero update is a null player) against
   ``coalition_fedavg`` (the rule before), on the same rounds' updates, digits MLP (row 1's
   rounds) and the CIFAR CNN (row 3's last round), side by side; and the zero-update probe's
   cost per round. Row 3's CIFAR round includes the probe.

The baseline's end-to-end time and its split by phase are printed by ``bench.model``.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from abm.fl import (
    Federation,
    load_dataset,
    make_behaviour,
    make_contribution_method,
    partition,
    size_weights,
    split_validation,
)
from abm.fl.game import LOSS_TOLERANCE, CoalitionGame
from abm.fl.shapley import (
    all_masks,
    exact_shapley,
    gtg_shapley,
    shapley_from_values,
    tmc_shapley,
    zero_probe,
)
from abm.scenario import parse_scenario, read_yaml
from bench.cifar_like import write_cifar_like
from bench.table import record

SEED = 0
ROUNDS = 50
BEHAVIOURS = ["honest"] * 6 + ["small_data", "free_rider", "label_flip", "noisy_labels"]
EXACT_ROUNDS = (1, 5, 10, 20, 35, 50)
SPEEDUP_TARGET = 10.0
GTG_TIME_TARGET = 0.5
GTG_SPEARMAN_TARGET = 0.9
CIFAR_ROUND_TARGET_S = 12.0
CIFAR_ROUNDS = 3
CIFAR = Path(__file__).resolve().parents[1] / "scenarios" / "paper_cifar10.yaml"
MANY = (30, 50)
REFERENCE_PERMUTATIONS = 2000


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _digits_federation(behaviours: list[str], *, metric: str = "loss") -> Federation:
    rng = np.random.default_rng(SEED)
    ds = load_dataset("digits", rng=rng)
    train, val = split_validation(ds, 0.2, rng)
    bs = [make_behaviour(b) for b in behaviours]
    parts = partition(train.y, len(bs), scheme="dirichlet", rng=rng, alpha=0.5,
                      size_weights=size_weights(bs))
    return Federation(train, parts, val, bs, model="mlp", metric=metric, seed=SEED)


def _interleaved(fa, fb, reps: int) -> tuple[float, Any, float, Any]:
    """Best wall time of ``reps`` runs of each, alternating so both see the same load."""
    ta = tb = float("inf")
    oa = ob = None
    for _ in range(reps):
        t0 = time.perf_counter()
        oa = fa()
        t1 = time.perf_counter()
        ob = fb()
        t2 = time.perf_counter()
        ta, tb = min(ta, t1 - t0), min(tb, t2 - t1)
    return ta, oa, tb, ob


# -- rows 1 and 2 ------------------------------------------------------------------------------
def exact_and_gtg() -> dict[str, Any]:
    fed = _digits_federation(BEHAVIOURS)
    results = {}
    fl_s = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        res = fed.run_round()
        fl_s.append(time.perf_counter() - t0)
        if res.round in EXACT_ROUNDS:
            results[res.round] = res
    n = fed.n_clients
    masks = all_masks(n)
    rows = []
    for r, res in results.items():
        game = res.game

        def fast(game=game):
            game.clear_cache()
            return game(masks)

        t_fast, v_fast, t_naive, v_naive = _interleaved(fast, lambda g=game: g.evaluate_naive(
            masks), reps=3)
        phi = shapley_from_values(v_fast, n)

        def gtg(game=game, r=r, res=res):
            game.clear_cache()
            method = make_contribution_method("gtg_shapley", rng=np.random.default_rng(r))
            return method(res), method

        def exact(game=game):
            game.clear_cache()
            return exact_shapley(game, n)

        t_gtg, (phi_gtg, method), t_exact, _ = _interleaved(gtg, exact, reps=5)
        rows.append({
            "round": r, "fast_s": t_fast, "naive_s": t_naive,
            "max_diff": float(np.abs(v_fast - v_naive).max()),
            "gtg_s": t_gtg, "exact_s": t_exact, "gtg_evals": method.evaluations_last_round,
            "gtg_perms": method.info_last_round.get("permutations", 0),
            "spearman": float(spearmanr(phi, phi_gtg).statistic),
            "rel_l1": float(np.abs(phi - phi_gtg).sum() / np.abs(phi).sum()),
        })
    return {"rows": rows, "fl_s": fl_s, "n_params": fed.n_params,
            "client_sizes": fed.client_sizes.tolist(), "final_loss": fed.loss,
            "games": {r: res.game for r, res in results.items()}}


# -- row 5 ------------------------------------------------------------------------------------
GTG_SETTINGS = (
    ("default (cap 100, tol 0.05)", {}),
    ("cap 80", {"max_permutations": 80}),
    ("cap 60", {"max_permutations": 60}),
    ("cap 50", {"max_permutations": 50}),
    ("convergence_tol 0.1", {"convergence_tol": 0.1}),
    ("convergence_tol 0.2", {"convergence_tol": 0.2}),
)
STUDY_SEEDS = 20


def gtg_study(games: dict[int, CoalitionGame]) -> list[dict[str, Any]]:
    from abm.fl.shapley import gtg_shapley

    n = next(iter(games.values())).n_players
    masks = all_masks(n)
    bits = 1 << np.arange(n, dtype=np.int64)
    tables = {}
    for r, game in games.items():
        game.clear_cache()
        tables[r] = np.asarray(game(masks), dtype=np.float64)
    out = []
    for label, kw in GTG_SETTINGS:
        rho, l1, evals = [], [], []
        for r, v in tables.items():
            phi = shapley_from_values(v, n)

            def lookup(m, v=v):
                return v[(m.astype(np.int64) * bits).sum(1)]

            for seed in range(STUDY_SEEDS):
                est = gtg_shapley(lookup, n, rng=np.random.default_rng(1000 * r + seed), **kw)
                rho.append(float(spearmanr(phi, est.values).statistic))
                l1.append(float(np.abs(est.values - phi).sum() / np.abs(phi).sum()))
                evals.append(est.evaluations)
        t_gtg = t_exact = 0.0
        for r, game in games.items():
            def gtg(game=game, r=r, kw=kw):
                game.clear_cache()
                return gtg_shapley(game, n, rng=np.random.default_rng(r), **kw)

            def exact(game=game):
                game.clear_cache()
                return exact_shapley(game, n)

            a, _, b, _ = _interleaved(gtg, exact, reps=3)
            t_gtg += a
            t_exact += b
        out.append({"setting": label, "ratio": t_gtg / t_exact,
                    "spearman": statistics.median(rho),
                    "spearman_p10": float(np.percentile(rho, 10)),
                    "rel_l1": statistics.median(l1), "evaluations": statistics.fmean(evals)})
    return out


def report_gtg_study(rows: list[dict[str, Any]]) -> None:
    print(f"GTG-Shapley's cap and tolerance (row 2's rounds; accuracy over {STUDY_SEEDS} seeds "
          "per round against exact):")
    print("  setting                       time vs exact  coalitions  median Spearman  "
          "10th pct  median rel L1")
    for x in rows:
        print(f"  {x['setting']:<29} {x['ratio']:8.2f}x    {x['evaluations']:10.0f}  "
              f"{x['spearman']:15.3f}  {x['spearman_p10']:8.3f}  {x['rel_l1']:13.3f}")


def report_exact_and_gtg(f: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    rows = f["rows"]
    print(f"workload: digits, 10 clients {f['client_sizes']} ({', '.join(BEHAVIOURS[6:])} "
          f"among them), MLP ({f['n_params']} params), negative-loss utility, {ROUNDS} rounds; "
          f"FedAvg round mean {1000 * statistics.fmean(f['fl_s']):.1f} ms")
    print("  round  fast path   naive loop  speed-up  max|diff|  |  GTG        exact      "
          "ratio  coalitions  perms  Spearman  rel L1")
    for x in rows:
        print(f"  {x['round']:5d} {1e3 * x['fast_s']:8.1f} ms {1e3 * x['naive_s']:8.1f} ms "
              f"{x['naive_s'] / x['fast_s']:7.1f}x  {x['max_diff']:9.1e}  | "
              f"{1e3 * x['gtg_s']:7.1f} ms {1e3 * x['exact_s']:7.1f} ms "
              f"{x['gtg_s'] / x['exact_s']:6.2f}  {x['gtg_evals']:10d}  {x['gtg_perms']:5d}  "
              f"{x['spearman']:8.3f}  {x['rel_l1']:6.3f}")
    speedup = sum(x["naive_s"] for x in rows) / sum(x["fast_s"] for x in rows)
    max_diff = max(x["max_diff"] for x in rows)
    ratio = sum(x["gtg_s"] for x in rows) / sum(x["exact_s"] for x in rows)
    rho = statistics.median(x["spearman"] for x in rows)
    return [
        ("exact Shapley 10 clients, fast path vs naive loop",
         f"{speedup:.1f}x, max |diff| {max_diff:.1e}",
         f">= {SPEEDUP_TARGET:.0f}x, within {LOSS_TOLERANCE:.0e}",
         speedup >= SPEEDUP_TARGET and max_diff <= LOSS_TOLERANCE),
        ("GTG-Shapley vs exact, same rounds",
         f"{ratio:.2f}x exact's time, median Spearman {rho:.3f}",
         f"<= {GTG_TIME_TARGET}x, >= {GTG_SPEARMAN_TARGET}",
         ratio <= GTG_TIME_TARGET and rho >= GTG_SPEARMAN_TARGET),
    ]


# -- row 3 ------------------------------------------------------------------------------------
def cifar() -> dict[str, Any]:
    data = read_yaml(CIFAR)
    with tempfile.TemporaryDirectory() as tmp:
        # bench.cifar_like's files read as a CIFAR-10 copy (whichever dataset the file names)
        n_samples = data["fl"]["dataset"].get("n_samples", 12_000)
        data["fl"]["dataset"] = {"name": "cifar10", "path": tmp, "n_samples": n_samples}
        write_cifar_like(Path(tmp), n_samples, seed=SEED)
        sc = parse_scenario(data, source=str(CIFAR))
        fl = sc.fl
        n = sc.n_clients
        rng = np.random.default_rng(SEED)
        ds = load_dataset("cifar10", rng=rng, path=tmp, n_samples=fl.dataset.n_samples)
    train, val = split_validation(ds, fl.val_fraction, rng)
    parts = partition(train.y, n, scheme=fl.partition.scheme, rng=rng, alpha=fl.partition.alpha)
    kw = {"model": fl.model, "hidden": fl.hidden, "local_epochs": fl.local_epochs,
          "batch_size": fl.batch_size, "lr": fl.lr, "metric": fl.metric, "seed": SEED}
    fed = Federation(train, parts, val, ["honest"] * n, utility_samples=fl.utility_samples, **kw)
    method = sc.contribution.method
    rows = []
    for r in range(1, CIFAR_ROUNDS + 1):
        m = make_contribution_method(method, rng=np.random.default_rng(r),
                                     **sc.contribution.params.model_dump())
        t0, c0 = time.perf_counter(), time.thread_time()
        res = fed.run_round()
        t1, c1 = time.perf_counter(), time.thread_time()
        phi = m(res)
        zero_probe(res.game, float(np.mean(res.weights)), np.random.default_rng(r))
        t2, c2 = time.perf_counter(), time.thread_time()
        row = {"round": r, "fl_s": t1 - t0, "contribution_s": t2 - t1, "cpu_s": c2 - c0,
               "fl_cpu_s": c1 - c0, "evaluations": m.evaluations_last_round,
               "accuracy": res.accuracy}
        if r == CIFAR_ROUNDS:
            # the same round's game on the whole validation split, same permutations
            g = res.game
            res_full = dataclasses.replace(res, game=CoalitionGame(
                fed.net, g.prev, g.updates, g.weights, fed.X_val, fed.y_val, metric=g.metric))
            c3 = time.thread_time()
            phi_full = make_contribution_method(method, rng=np.random.default_rng(r),
                                                **sc.contribution.params.model_dump())(res_full)
            row["full_contribution_cpu_s"] = time.thread_time() - c3
            scale = float(np.abs(phi_full).sum())
            row["rel_l1_vs_full"] = float(np.abs(phi - phi_full).sum() / scale) if scale else 0.0
            row["spearman_vs_full"] = float(spearmanr(phi, phi_full).statistic)
            probe = all_masks(n)[np.random.default_rng(1).choice(2**n, 64, replace=False)]
            acc_sub, _ = res.game.peek(probe)
            acc_full, _ = res_full.game.peek(probe)
            row["utility_abs_diff"] = float(np.abs(acc_sub - acc_full).mean())
        rows.append(row)
    return {"rows": rows, "n_val": len(val), "utility_samples": fl.utility_samples,
            "n_train": len(train), "method": method, "last": res, "net": fed.net,
            "X": fed.X_utility, "y": fed.y_utility}


def report_cifar(f: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    print(f"CIFAR-10 CNN: {CIFAR.name} settings on a CIFAR-shaped stand-in, {f['n_train']} "
          f"training images, {f['n_val']} validation images, coalition utilities on "
          f"{f['utility_samples'] or f['n_val']}, {f['method']}")
    for x in f["rows"]:
        print(f"  round {x['round']}: wall: FL {x['fl_s']:.2f} s + contributions "
              f"{x['contribution_s']:.2f} s ({x['evaluations']} coalitions, and the "
              "zero-update probe); CPU time of the "
              f"run's one thread: FL {x['fl_cpu_s']:.2f} s + contributions "
              f"{x['cpu_s'] - x['fl_cpu_s']:.2f} s; accuracy {x['accuracy']:.3f}")
    last = f["rows"][-1]
    print(f"  utility subset vs the whole split (round {last['round']}): mean |accuracy diff| "
          f"{last['utility_abs_diff']:.4f} over 64 coalitions; GTG values rel L1 "
          f"{last['rel_l1_vs_full']:.3f}, Spearman {last['spearman_vs_full']:.3f} (GTG on the "
          f"whole split took {last['full_contribution_cpu_s']:.1f} s CPU)")
    wall = statistics.fmean(x["fl_s"] + x["contribution_s"] for x in f["rows"])
    cpu = statistics.fmean(x["cpu_s"] for x in f["rows"])
    # A run uses one core; on a shared machine its wall time includes waiting for the core,
    # its thread's CPU time does not: that is the wall time an unloaded machine shows.
    return [("CIFAR-10 CNN, FL + GTG per round (CPU time)",
             f"{cpu:.1f} s CPU ({wall:.1f} s wall)",
             f"<= {CIFAR_ROUND_TARGET_S:.0f} s", cpu <= CIFAR_ROUND_TARGET_S)]


# -- row 6 ------------------------------------------------------------------------------------
def utility_cost(games: dict[int, CoalitionGame], cifar_round: dict[str, Any]) -> list[dict]:
    """Exact and GTG-Shapley per round under each coalition rule on the same updates (best of
    3, alternating), and the zero-update probe's cost; CIFAR: GTG only (exact is 1,024 CNN
    coalitions)."""
    cases = [(f"digits MLP, round {r}", g.net, g.prev, g.updates, g.weights, g.X_val, g.y_val,
              True) for r, g in games.items()]
    res = cifar_round["last"]
    cases.append(("CIFAR CNN (stand-in), round 3", cifar_round["net"], res.prev_params,
                  res.updates, res.weights, cifar_round["X"], cifar_round["y"], False))
    out = []
    for name, net, prev, U, w, X, y, with_exact in cases:
        games_by = {rule: CoalitionGame(net, prev, U, w, X, y, metric="loss", coalition=rule)
                    for rule in ("round_weights", "coalition_fedavg")}
        n = U.shape[0]
        row = {"case": name}
        for label, run in (("gtg", lambda g, n=n: gtg_shapley(g, n,
                                                               rng=np.random.default_rng(0))),
                           ("exact", lambda g, n=n: exact_shapley(g, n))):
            if label == "exact" and not with_exact:
                continue

            def timed(rule, run=run, games_by=games_by):
                g = games_by[rule]
                g.clear_cache()
                g._first_cache = None  # each measurement pays its first layer
                return run(g)

            t_new, _, t_old, _ = _interleaved(lambda: timed("round_weights"),
                                              lambda: timed("coalition_fedavg"), reps=3)
            row[f"{label}_new_s"], row[f"{label}_old_s"] = t_new, t_old
        g = games_by["round_weights"]
        g.clear_cache()
        gtg_shapley(g, n, rng=np.random.default_rng(0))
        t0 = time.perf_counter()
        zero_probe(g, float(np.mean(w)), np.random.default_rng(0))
        row["probe_s"] = time.perf_counter() - t0
        out.append(row)
    return out


def report_utility_cost(rows: list[dict]) -> None:
    print("coalition rule's cost per round, round_weights (new default) vs coalition_fedavg "
          "(before), same updates, best of 3 alternating; the probe after GTG (its memo "
          "warm):")
    print(f"  {'case':32s} {'GTG new':>9s} {'GTG before':>11s} {'exact new':>10s} "
          f"{'exact before':>13s} {'probe':>8s}")
    for x in rows:
        ex = (f"{1e3 * x['exact_new_s']:8.0f}ms {1e3 * x['exact_old_s']:11.0f}ms"
              if "exact_new_s" in x else f"{'-':>10s} {'-':>13s}")
        print(f"  {x['case']:32s} {1e3 * x['gtg_new_s']:7.0f}ms {1e3 * x['gtg_old_s']:9.0f}ms "
              f"{ex} {1e3 * x['probe_s']:6.0f}ms")


# -- row 4 ------------------------------------------------------------------------------------
def many_clients() -> list[dict[str, Any]]:
    out = []
    for n in MANY:
        fed = _digits_federation(["honest"] * (n - 4) + ["free_rider", "label_flip"] * 2)
        for _ in range(3):
            res = fed.run_round()
        game = res.game
        t0 = time.perf_counter()
        ref = tmc_shapley(game, n, rng=np.random.default_rng(99), truncation_tol=0.0,
                          min_permutations=REFERENCE_PERMUTATIONS,
                          max_permutations=REFERENCE_PERMUTATIONS, batch=200)
        ref_s = time.perf_counter() - t0
        halves = [tmc_shapley(game, n, rng=np.random.default_rng(s), truncation_tol=0.0,
                              min_permutations=REFERENCE_PERMUTATIONS // 2,
                              max_permutations=REFERENCE_PERMUTATIONS // 2, batch=200).values
                  for s in (7, 8)]
        scale = float(np.abs(ref.values).sum())
        # error of a 2000-permutation mean: half-vs-half difference / 2 (variance halves)
        ref_err = float(np.abs(halves[0] - halves[1]).sum() / scale) / 2
        row = {"n": n, "reference_s": ref_s, "reference_error": ref_err}
        for name in ("gtg_shapley", "shapley_mc"):
            m = make_contribution_method(name, rng=np.random.default_rng(1))
            game.clear_cache()
            t0 = time.perf_counter()
            phi = m(res)
            row[name] = {
                "s": time.perf_counter() - t0, "evaluations": m.evaluations_last_round,
                "perms": m.info_last_round.get("permutations", 0),
                "rel_l1": float(np.abs(phi - ref.values).sum() / scale),
                "spearman": float(spearmanr(phi, ref.values).statistic),
            }
        out.append(row)
    return out


def report_many(rows: list[dict[str, Any]]) -> None:
    print("30 and 50 clients (digits, MLP, negative loss, round 3; reference: "
          f"{REFERENCE_PERMUTATIONS} untruncated permutations):")
    print("  n   method        time/round  coalitions  perms  rel L1 vs ref  Spearman")
    for x in rows:
        for name in ("gtg_shapley", "shapley_mc"):
            y = x[name]
            print(f"  {x['n']:2d}  {name:12s} {1e3 * y['s']:8.0f} ms  {y['evaluations']:10d}  "
                  f"{y['perms']:5d}  {y['rel_l1']:13.3f}  {y['spearman']:8.3f}")
        print(f"  {x['n']:2d}  reference    {1e3 * x['reference_s']:8.0f} ms  (its own rel L1 "
              f"error ~{x['reference_error']:.3f})")


def main() -> None:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        measured = exact_and_gtg()
        summary = report_exact_and_gtg(measured)
        measured_games = measured.pop("games")
        report_gtg_study(gtg_study(measured_games))
        report_many(many_clients())
        cifar_measured = cifar()
        summary += report_cifar(cifar_measured)
        report_utility_cost(utility_cost(measured_games, cifar_measured))
    finally:
        torch.set_num_threads(old)
    print("summary (learning rows of issue 13):")
    for (name, got, target, ok), key in zip(summary, ("exact_fast_path", "gtg_vs_exact",
                                                       "cifar_round"), strict=True):
        print(f"  {name:50s} {got:42s} target {target:24s} {_verdict(ok)}")
        record(key, name, got, target, ok)


if __name__ == "__main__":
    main()
