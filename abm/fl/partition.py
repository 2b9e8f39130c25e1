"""Partitioners: split the training samples among clients, and per-client label noise.

``partition(y, n_clients, *, scheme, rng, alpha=0.5, size_weights=None, min_size=1)``
returns one sorted index array per client; together they cover every sample exactly once.

- ``iid``: a random permutation cut into sizes proportional to ``size_weights`` (equal by
  default).
- ``quantity_skew``: label-balanced (random) samples, but client sizes proportional to
  ``Dirichlet(alpha) * size_weights`` (small ``alpha`` = very unequal sizes).
- ``dirichlet``: label skew. For each class, the class's samples are divided among the
  clients with proportions ``Dirichlet(alpha)``; with ``size_weights`` those proportions
  are multiplied by the weights and renormalised per class, so a client's expected share of
  every class (hence of the data) scales with its weight while the label skew is kept.

Every client gets at least ``min_size`` samples: for ``iid``/``quantity_skew`` sizes are
proportional (largest remainder method), and clients under ``min_size`` are topped up from
the largest ones; for ``dirichlet``
the draw is repeated (up to 100 times) and, failing that, samples are moved from the
largest clients to the short ones.

``size_weights`` is how ``small_data`` clients get less data: pass e.g.
``[b.size_weight for b in behaviours]`` (see :mod:`abm.fl.behaviours`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SCHEMES", "apply_label_noise", "partition"]

SCHEMES = ("iid", "dirichlet", "quantity_skew")


def _sizes(n: int, weights: np.ndarray, min_size: int) -> np.ndarray:
    """Integer sizes summing to ``n``, proportional to ``weights`` (largest remainder), then
    lifted to ``min_size`` where needed by taking from the largest clients."""
    share = weights / weights.sum() * n
    sizes = np.floor(share).astype(np.int64)
    left = n - int(sizes.sum())
    if left > 0:
        order = np.argsort(-(share - sizes), kind="stable")
        sizes[order[:left]] += 1
    for j in np.flatnonzero(sizes < min_size):
        while sizes[j] < min_size:
            big = int(np.argmax(sizes))
            take = min(min_size - int(sizes[j]), int(sizes[big]) - min_size)
            sizes[big] -= take
            sizes[j] += take
    return sizes


def _check_weights(size_weights: Sequence[float] | None, n_clients: int) -> np.ndarray:
    if size_weights is None:
        return np.ones(n_clients)
    w = np.asarray(size_weights, dtype=np.float64)
    if w.shape != (n_clients,):
        raise ValueError(
            f"partition: size_weights must have one entry per client ({n_clients}), "
            f"got shape {w.shape}"
        )
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError("partition: size_weights must be finite and > 0")
    return w


def partition(
    y: np.ndarray,
    n_clients: int,
    *,
    scheme: str,
    rng: np.random.Generator,
    alpha: float = 0.5,
    size_weights: Sequence[float] | None = None,
    min_size: int = 1,
) -> list[np.ndarray]:
    """Split sample indices ``0..len(y)-1`` among ``n_clients`` (see module docstring)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"partition: y must be 1-D, got shape {y.shape}")
    n = int(y.shape[0])
    if isinstance(n_clients, bool) or not isinstance(n_clients, int | np.integer) or (
        n_clients < 1
    ):
        raise ValueError(f"partition: n_clients must be an integer >= 1, got {n_clients!r}")
    n_clients = int(n_clients)
    if scheme not in SCHEMES:
        raise ValueError(
            f"partition: scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}"
        )
    if not isinstance(alpha, int | float) or not alpha > 0 or not np.isfinite(alpha):
        raise ValueError(f"partition: alpha must be a number > 0, got {alpha!r}")
    if isinstance(min_size, bool) or not isinstance(min_size, int | np.integer) or min_size < 0:
        raise ValueError(f"partition: min_size must be an integer >= 0, got {min_size!r}")
    if n_clients * min_size > n:
        raise ValueError(
            f"partition: {n_clients} clients x min_size {min_size} exceeds the {n} samples"
        )
    w = _check_weights(size_weights, n_clients)

    if scheme in ("iid", "quantity_skew"):
        if scheme == "quantity_skew":
            props = rng.dirichlet(np.full(n_clients, float(alpha))) * w
            props = np.maximum(props, 1e-12)
        else:
            props = w
        sizes = _sizes(n, props, min_size)
        perm = rng.permutation(n)
        cuts = np.cumsum(sizes)[:-1]
        return [np.sort(p) for p in np.split(perm, cuts)]

    # dirichlet label skew: per attempt, each class's shuffled samples are cut into runs
    # by Dirichlet proportions; an attempt is kept once every client reaches `min_size`.
    # Only the sizes are summed per attempt (the arrays are built once, for the attempt
    # kept), so an attempt costs O(classes x clients) in numpy, not in Python.
    classes = np.unique(y)
    by_class = [np.flatnonzero(y == c) for c in classes]
    shuffled: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    for _attempt in range(100):
        shuffled, counts = [], []
        for idx in by_class:
            idx = idx[rng.permutation(idx.size)]
            p = rng.dirichlet(np.full(n_clients, float(alpha))) * w
            p = p / p.sum()
            cuts = (np.cumsum(p)[:-1] * idx.size).astype(np.int64)
            # The runs `np.split(idx, cuts)` makes: client j gets idx[cuts[j-1]:cuts[j]].
            bounds = np.concatenate(([0], np.clip(cuts, 0, idx.size), [idx.size]))
            shuffled.append(idx)
            counts.append(np.diff(bounds))
        sizes = np.sum(counts, axis=0) if counts else np.zeros(n_clients, np.int64)
        if sizes.min() >= min_size:
            break
    out = _runs_by_client(shuffled, counts, n_clients)
    # Repair: move random samples from the largest clients to the short ones (the first
    # largest each time, as `np.argmax` picks it; the sizes kept in an array beside them).
    sizes = np.array([o.size for o in out], dtype=np.int64)
    for j in np.flatnonzero(sizes < min_size).tolist():
        while sizes[j] < min_size:
            big = int(np.argmax(sizes))
            take = int(rng.integers(out[big].size))
            out[j] = np.append(out[j], out[big][take])
            out[big] = np.delete(out[big], take)
            sizes[j] += 1
            sizes[big] -= 1
    return [np.sort(o.astype(np.int64)) for o in out]


def _runs_by_client(shuffled: Sequence[np.ndarray], counts: Sequence[np.ndarray],
                    n_clients: int) -> list[np.ndarray]:
    """Each client's samples: its run of every class (``counts[c][j]`` samples of the
    shuffled indices ``shuffled[c]``, runs in client order), classes in order. The same
    arrays, element for element, as concatenating each client's ``np.split`` chunks, by
    one stable sort of every sample on its client instead of a Python loop over classes x
    clients."""
    if not shuffled:
        return [np.zeros(0, np.int64) for _ in range(n_clients)]
    owner = np.concatenate([np.repeat(np.arange(n_clients), c) for c in counts])
    samples = np.concatenate(shuffled)[np.argsort(owner, kind="stable")]
    return np.split(samples, np.cumsum(np.sum(counts, axis=0))[:-1])


def apply_label_noise(
    y: np.ndarray, fraction: float, n_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """A copy of ``y`` in which ``round(fraction * len(y))`` labels, chosen at random, are
    replaced by labels drawn uniformly from all ``n_classes`` classes (so a replaced label
    may by chance keep its value: the expected share of wrong labels is
    ``fraction * (1 - 1/n_classes)``)."""
    if not isinstance(fraction, int | float) or not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"apply_label_noise: fraction must lie in [0, 1], got {fraction!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or (
        n_classes < 2
    ):
        raise ValueError(f"apply_label_noise: n_classes must be an integer >= 2, got {n_classes!r}")
    y = np.array(y, dtype=np.int64, copy=True)
    k = round(float(fraction) * y.size)
    if k:
        idx = rng.choice(y.size, size=k, replace=False)
        y[idx] = rng.integers(0, int(n_classes), size=k)
    return y
