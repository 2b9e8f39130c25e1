"""Benchmark of the learning core (``abm.fl``), run by ``make bench`` (``bench.fl.main()``).

Workload: the simulation's default shape: digits (1797 x 64), 20% validation split, 10
clients (6 honest, small_data, free_rider, label_flip, noisy_labels), Dirichlet(0.5) label
skew with size weights, MLP (hidden 32), 1 local epoch, batch 32, lr 0.1, 50 FedAvg rounds,
accuracy utility. torch runs on one intra-op thread (the caller's choice; tiny models gain
nothing from more).

Figures:

1. FedAvg round time (local training of all clients + aggregation + evaluation).
2. GTG-Shapley per round on the same run: time and coalitions evaluated; total time of 50
   rounds of FL + GTG against the simulation's budget (15 s).
3. Exact Shapley for 10 clients (1024 coalitions): the batched game vs a naive loop that
   builds and evaluates one coalition model at a time, in the same run, on the same rounds
   (best of 5 each, alternating, so both see the same machine load); values must be
   identical; target speed-up >= 2.5x.
4. GTG and MC (TMC) Shapley against exact: coalitions evaluated and error.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch

from abm.fl import (
    Federation,
    load_dataset,
    make_behaviour,
    make_contribution_method,
    partition,
    size_weights,
    split_validation,
)
from abm.fl.shapley import all_masks, exact_shapley, shapley_from_values

SEED = 0
ROUNDS = 50
BEHAVIOURS = ["honest"] * 6 + ["small_data", "free_rider", "label_flip", "noisy_labels"]
BUDGET_S = 15.0
SPEEDUP_TARGET = 2.5
EXACT_ROUNDS = (1, 5, 10, 20, 35, 50)  # rounds on which exact Shapley is timed and compared


def _federation() -> Federation:
    rng = np.random.default_rng(SEED)
    ds = load_dataset("digits", rng=rng)
    train, val = split_validation(ds, 0.2, rng)
    behaviours = [make_behaviour(b) for b in BEHAVIOURS]
    parts = partition(train.y, len(behaviours), scheme="dirichlet", rng=rng, alpha=0.5,
                      size_weights=size_weights(behaviours))
    return Federation(train, parts, val, behaviours, model="mlp", seed=SEED)


def _best_of_interleaved(fa, fb, reps: int = 5) -> tuple[float, Any, float, Any]:
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


def run() -> dict[str, Any]:
    """Run the benchmark; returns the figures (also printed by :func:`main`)."""
    fed = _federation()
    gtg = make_contribution_method("gtg_shapley", rng=np.random.default_rng(SEED))
    round_s, gtg_s, gtg_evals, truncated, results = [], [], [], 0, {}
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        res = fed.run_round()
        t1 = time.perf_counter()
        gtg(res)
        t2 = time.perf_counter()
        round_s.append(t1 - t0)
        gtg_s.append(t2 - t1)
        gtg_evals.append(gtg.evaluations_last_round)
        truncated += bool(gtg.info_last_round.get("truncated_round"))
        if res.round in EXACT_ROUNDS:
            results[res.round] = res

    n = fed.n_clients
    masks = all_masks(n)
    exact_rows = []
    approx = {"gtg_shapley": [], "shapley_mc": []}
    for r, res in results.items():
        game = res.game

        def batched(game=game):
            game.clear_cache()
            return exact_shapley(game, n)

        def naive(game=game):
            return shapley_from_values(game.evaluate_naive(masks), n)

        t_b, phi_b, t_n, phi_n = _best_of_interleaved(batched, naive)
        game.clear_cache()
        identical = bool(np.array_equal(game(masks), game.evaluate_naive(masks))) and bool(
            np.array_equal(phi_b, phi_n)
        )
        exact_rows.append((r, t_b, t_n, identical, res.accuracy))
        scale = float(np.abs(phi_b).sum())
        for name in approx:
            m = make_contribution_method(name, rng=np.random.default_rng(SEED + r))
            game.clear_cache()
            est = m(res)
            err = np.abs(est - phi_b)
            approx[name].append({
                "round": r,
                "evaluations": m.evaluations_last_round,
                "max_abs_error": float(err.max()),
                "rel_l1_error": float(err.sum() / scale) if scale > 0 else 0.0,
                "truncated": bool(m.info_last_round.get("truncated_round", False)),
            })

    t_b_all = sum(x[1] for x in exact_rows)
    t_n_all = sum(x[2] for x in exact_rows)
    return {
        "threads": torch.get_num_threads(),
        "n_params": fed.n_params,
        "client_sizes": fed.client_sizes.tolist(),
        "final_accuracy": fed.accuracy,
        "round_s": round_s,
        "gtg_s": gtg_s,
        "gtg_evals": gtg_evals,
        "gtg_truncated_rounds": truncated,
        "exact": exact_rows,
        "speedup": t_n_all / t_b_all,
        "approx": approx,
    }


def _ms(x: float) -> str:
    return f"{1000 * x:7.1f} ms"


def report(f: dict[str, Any]) -> None:
    rs, gs = f["round_s"], f["gtg_s"]
    total = sum(rs) + sum(gs)
    print(f"workload: digits, 10 clients {f['client_sizes']}, MLP ({f['n_params']} params), "
          f"{ROUNDS} rounds, torch threads={f['threads']}, final accuracy "
          f"{f['final_accuracy']:.3f}")
    print("FedAvg round (train 10 clients + aggregate + evaluate):")
    print(f"  mean {_ms(statistics.fmean(rs))}   median {_ms(statistics.median(rs))}   "
          f"max {_ms(max(rs))}")
    print("GTG-Shapley per round (default params):")
    print(f"  mean {_ms(statistics.fmean(gs))}   median {_ms(statistics.median(gs))}   "
          f"max {_ms(max(gs))}   coalitions evaluated: mean "
          f"{statistics.fmean(f['gtg_evals']):.0f} of 1024, "
          f"{f['gtg_truncated_rounds']} rounds truncated (between-round)")
    verdict = "OK" if total <= BUDGET_S else "OVER BUDGET"
    print(f"FL + GTG, {ROUNDS} rounds: {total:.2f} s (budget {BUDGET_S:.0f} s: {verdict})")
    print("Exact Shapley, 10 clients, 1024 coalitions (best of 5, interleaved):")
    print("  round   batched      naive     speed-up  identical")
    for r, tb, tn, same, _acc in f["exact"]:
        print(f"  {r:5d} {_ms(tb)} {_ms(tn)}   {tn / tb:6.2f}x    {same}")
    all_same = all(x[3] for x in f["exact"])
    verdict = "OK" if f["speedup"] >= SPEEDUP_TARGET and all_same else "BELOW TARGET"
    print(f"  overall speed-up {f['speedup']:.2f}x (target >= {SPEEDUP_TARGET}x: {verdict}); "
          f"values identical on every round: {all_same}")
    print("Approximations vs exact (default params; error relative to sum |phi_exact|):")
    print("  method        round  evaluations  max|err|  rel L1")
    for name, rows in f["approx"].items():
        for row in rows:
            trunc = "  (round truncated: all 0)" if row["truncated"] else ""
            print(f"  {name:12s} {row['round']:6d} {row['evaluations']:10d}  "
                  f"{row['max_abs_error']:8.4f}  {row['rel_l1_error']:6.3f}{trunc}")
        ev = statistics.fmean(r["evaluations"] for r in rows)
        l1 = statistics.fmean(r["rel_l1_error"] for r in rows)
        print(f"  {name:12s}   mean {ev:10.0f}            rel L1 {l1:6.3f}")


def main() -> None:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report(run())
    finally:
        torch.set_num_threads(old)


if __name__ == "__main__":
    main()
