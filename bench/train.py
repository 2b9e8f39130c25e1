"""Benchmark: one FedAvg round's local training, lockstep against one client at a time.

The setting is `scenarios/baseline.yaml`'s learning (10 clients on scikit-learn digits,
Dirichlet 0.5, MLP with 32 hidden units, batch 32, 1 local epoch, lr 0.1), plus the same
with 3 local epochs and with logistic regression. For each, the honest updates of every
client from the same global model are computed by the lockstep path (`Federation._train`:
every client's SGD steps batched with `bmm`, analytic gradients) and by the reference path
(`Federation._local_sgd`: a Python loop over clients and batches with autograd),
alternately, `REPS` times; printed are the best CPU times (`time.process_time`, one torch
thread) per round, their ratio, and the largest difference of the two paths' updates
relative to the largest update (float rounding of a different summation order).

No target in issue 13's table: the baseline row (`bench.model`) is the end-to-end figure
this serves; this row says where the `fl` phase's time went.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from abm.fl import Federation, load_dataset, partition, split_validation

SEED = 42
N_CLIENTS = 10
REPS = 7
SETTINGS = (  # label, model, local epochs
    ("baseline (mlp, 1 epoch)", "mlp", 1),
    ("mlp, 3 epochs", "mlp", 3),
    ("logreg, 1 epoch", "logreg", 1),
)


def _federation(model: str, epochs: int) -> Federation:
    rng = np.random.default_rng(SEED)
    ds = load_dataset("digits", rng=rng)
    train, val = split_validation(ds, 0.2, rng)
    parts = partition(train.y, N_CLIENTS, scheme="dirichlet", rng=rng, alpha=0.5)
    return Federation(train, parts, val, ["honest"] * N_CLIENTS, model=model, hidden=32,
                      local_epochs=epochs, batch_size=32, lr=0.1, seed=SEED)


def measure(model: str, epochs: int) -> dict[str, float]:
    fed = _federation(model, epochs)
    clients = list(range(fed.n_clients))
    start = fed.params

    def train(reference: bool) -> torch.Tensor:
        fed._reference_training = reference
        return fed._train(clients, start, [fed._generator(i) for i in clients])

    best = {False: float("inf"), True: float("inf")}
    out = {}
    for _ in range(REPS):
        for reference in (False, True):
            t0 = time.process_time()
            out[reference] = train(reference)
            best[reference] = min(best[reference], time.process_time() - t0)
    diff = float((out[False] - out[True]).abs().max() / out[True].abs().max())
    steps = int(epochs * (-(-fed.client_sizes // fed.batch_size)).sum())
    return {"lockstep_s": best[False], "reference_s": best[True], "rel_diff": diff,
            "steps": steps}


def main() -> None:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = [(label, measure(model, epochs)) for label, model, epochs in SETTINGS]
    finally:
        torch.set_num_threads(old)
    print(f"one round's local training, {N_CLIENTS} clients on digits, best CPU time of {REPS}"
          " (alternating):")
    print(f"  {'setting':26s} {'SGD steps':>9s} {'lockstep':>10s} {'reference':>10s} "
          f"{'speed-up':>8s}  max |diff| / max |update|")
    for label, r in rows:
        print(f"  {label:26s} {r['steps']:9d} {1e3 * r['lockstep_s']:8.2f} ms "
              f"{1e3 * r['reference_s']:8.2f} ms {r['reference_s'] / r['lockstep_s']:7.1f}x  "
              f"{r['rel_diff']:.1e}")


if __name__ == "__main__":
    main()
