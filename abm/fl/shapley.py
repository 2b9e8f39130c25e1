"""Shapley value algorithms for any batched cooperative game.

A *game* is a callable taking a boolean matrix ``(k, n)`` (rows = coalitions) and returning
``k`` utilities; :class:`abm.fl.game.CoalitionGame` is one, and so is any plain function.

- :func:`exact_shapley` enumerates all ``2**n`` coalitions in one batched call and applies
  the Shapley formula with exactly rounded sums (``math.fsum``), so symmetric players get
  bitwise equal values and null players exactly 0. Refuses ``n > 16``.
- :func:`leave_one_out`: ``v(N) - v(N \\ {i})`` (``n + 1`` coalitions, one call).
- :func:`tmc_shapley`: truncated Monte Carlo permutation sampling (Ghorbani & Zou 2019,
  "Data Shapley"): random permutations; a permutation's scan stops once
  ``|v(N) - v(prefix)| <= truncation_tol * |v(N) - v(empty)|`` (the remaining players get
  marginal 0). Data Shapley scales its tolerance by the full-data score ``|v(N)|``, whose
  baseline is a random model; here the baseline is the previous global model and the
  utility may be a negative loss, so the tolerance is a share of the round's total gain.
- :func:`gtg_shapley`: GTG-Shapley (Liu et al. 2022, "GTG-Shapley: Efficient and Accurate
  Participant Contribution Evaluation in Federated Learning"): between-round truncation
  (``|v(N) - v(empty)| <= eps_between``: every value is 0 and nothing else is evaluated),
  within-round truncation (``|v(N) - v(prefix)| <= eps_within``), and guided sampling:
  permutations come in cycles of ``n``, the ``g``-th of a cycle starting with player ``g``
  (the rest in random order).

Both samplers evaluate a batch of permutations at once: every proper prefix of every
permutation of the batch in one batched game call, the truncation applied per permutation
afterwards (so the values are those of scanning one permutation at a time, while a batch costs
one call instead of one per position). The first batch holds the first ``min_permutations``
(rounded up to whole batches), later batches one cycle each. Coalitions are memoised per call;
``evaluations`` is the number of distinct coalitions requested from the game, including the
prefixes past a truncation point (they are computed in the same call, before the truncation is
known).

Convergence (both samplers): after at least ``min_permutations`` permutations, and after
each batch, the running estimate ``phi_t`` (mean marginal contribution over the first ``t``
permutations) is compared with the latest one ``phi_T`` over the last ``last_k``
permutations: converged when ``max_t sum_i |phi_t,i - phi_T,i| / sum_i |phi_T,i| <
convergence_tol``. (The published code divides per player, ``mean_i |..| / |phi_T,i|``,
which never settles when a player's value is near 0, as a free rider's is; normalising by
the total magnitude is the robust variant.) Sampling stops at ``max_permutations`` in any
case.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from abm.fl.game import coalition_keys, masks_from_keys

__all__ = [
    "MAX_EXACT_PLAYERS",
    "ShapleyEstimate",
    "all_masks",
    "exact_shapley",
    "gtg_shapley",
    "leave_one_out",
    "shapley_from_values",
    "tmc_shapley",
    "zero_probe",
]

MAX_EXACT_PLAYERS = 16

Game = Callable[[np.ndarray], np.ndarray]


@dataclass
class ShapleyEstimate:
    """Values ``(n,)`` and how they were obtained."""

    values: np.ndarray
    evaluations: int
    n_permutations: int = 0
    converged: bool = True
    truncated_round: bool = False


class _Memo:
    """Memoising, counting front of a game (distinct coalitions requested), keyed by the
    coalition's bit pattern (:func:`abm.fl.game.coalition_keys`)."""

    def __init__(self, game: Game, n: int) -> None:
        self.game = game
        self.n = n
        self.cache: dict[int, float] = {}

    @property
    def evaluations(self) -> int:
        return len(self.cache)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        return self.values(coalition_keys(masks), masks)

    def values(self, keys: list[int], masks: np.ndarray | None = None) -> np.ndarray:
        """Utilities ``(len(keys),)`` of the coalitions ``keys``; the ones not known yet go to
        the game in one call, in order of first appearance (``masks``, when given, are the
        keys' rows, so that they need not be rebuilt)."""
        cache = self.cache
        missing = [key for key in dict.fromkeys(keys) if key not in cache]
        if missing:
            if masks is not None and len(missing) == len(keys):
                rows = masks
            else:
                rows = masks_from_keys(missing, self.n)
            vals = np.asarray(self.game(rows), dtype=np.float64).reshape(-1)
            if vals.shape[0] != len(missing):
                raise ValueError(
                    f"the game returned {vals.shape[0]} values for {len(missing)} coalitions"
                )
            cache.update(zip(missing, vals.tolist(), strict=True))
        return np.array([cache[key] for key in keys], dtype=np.float64)


def _check_n(n_players: int) -> int:
    if isinstance(n_players, bool) or not isinstance(n_players, int | np.integer) or (
        n_players < 1
    ):
        raise ValueError(f"n_players must be an integer >= 1, got {n_players!r}")
    return int(n_players)


def all_masks(n: int) -> np.ndarray:
    """All ``2**n`` coalitions as a ``(2**n, n)`` bool matrix; row ``r`` has bit ``i`` of
    ``r`` in column ``i``."""
    r = np.arange(2**n, dtype=np.int64)[:, None]
    return ((r >> np.arange(n, dtype=np.int64)) & 1).astype(bool)


def shapley_from_values(v: np.ndarray, n: int) -> np.ndarray:
    """Shapley values from the utilities of all coalitions (``v[r]`` for the coalition whose
    bit pattern is ``r``): ``phi_i = sum_{S not i} |S|!(n-|S|-1)!/n! (v(S+i) - v(S))``, each
    sum exactly rounded."""
    v = np.asarray(v, dtype=np.float64)
    if v.shape != (2**n,):
        raise ValueError(f"expected {2**n} coalition values, got shape {v.shape}")
    idx = np.arange(2**n, dtype=np.int64)
    sizes = np.zeros(2**n, dtype=np.int64)
    for i in range(n):
        sizes += (idx >> i) & 1
    fact = [math.factorial(s) for s in range(n + 1)]
    w = np.array([fact[s] * fact[n - s - 1] / fact[n] for s in range(n)], dtype=np.float64)
    phi = np.zeros(n, dtype=np.float64)
    for i in range(n):
        without = idx[((idx >> i) & 1) == 0]
        terms = w[sizes[without]] * (v[without | (1 << i)] - v[without])
        phi[i] = math.fsum(terms.tolist())
    return phi


def exact_shapley(game: Game, n_players: int) -> np.ndarray:
    """Exact Shapley values of ``game`` over ``n_players`` players (all ``2**n`` coalitions
    evaluated in one batched call). Raises ``ValueError`` for ``n_players > 16``."""
    n = _check_n(n_players)
    if n > MAX_EXACT_PLAYERS:
        raise ValueError(
            f"exact Shapley needs all 2**n coalitions: n_players={n} exceeds the limit of "
            f"{MAX_EXACT_PLAYERS} ({2**n} coalitions); use shapley_mc or gtg_shapley"
        )
    v = np.asarray(game(all_masks(n)), dtype=np.float64).reshape(-1)
    return shapley_from_values(v, n)


def leave_one_out(game: Game, n_players: int) -> ShapleyEstimate:
    """``v(N) - v(N minus i)`` for every player (``n + 1`` coalitions in one call)."""
    n = _check_n(n_players)
    masks = np.ones((n + 1, n), dtype=bool)
    masks[np.arange(1, n + 1), np.arange(n)] = False
    memo = _Memo(game, n)
    v = memo(masks)
    return ShapleyEstimate(v[0] - v[1:], memo.evaluations)


def _scan(
    memo: _Memo,
    perms: np.ndarray,
    v_all: float,
    v_empty: float,
    threshold: float,
    block: int,
) -> np.ndarray:
    """Marginal contributions ``(b, n)`` of each player in each permutation of ``perms (b, n)``.

    The prefixes are evaluated ``block`` positions at a time: one batched game call holds the
    next ``block`` prefixes of every permutation still being scanned; the truncation is then
    applied per permutation, as a one-at-a-time scan would have: a permutation's scan stops at
    its first prefix with ``|v_all - v(prefix)| <= threshold`` (``threshold < 0``: never), and
    every later player gets marginal 0. Values are those of the sequential scan (tested against
    it). ``block >= n - 1`` evaluates every prefix in one call; prefixes past a truncation point
    inside a block are evaluated (and counted) too."""
    b, n = perms.shape
    rows = np.arange(b)[:, None]
    # keys[:, j - 1] = bit pattern of the prefix of length j: a running sum of player bits
    # (Python ints beyond 62 players, as coalition_keys)
    bits = np.int64(1) << perms if n <= 62 else np.vectorize(lambda i: 1 << int(i),
                                                               otypes=[object])(perms)
    keys = np.cumsum(bits, axis=1)
    # v[:, j] = value of the prefix of length j (0: empty, n: everyone); nan = never evaluated
    v = np.full((b, n + 1), np.nan, dtype=np.float64)
    v[:, 0] = v_empty
    v[:, n] = v_all
    alive = np.ones(b, dtype=bool)  # still scanning before the prefix length `lo`
    lo = 1
    stops_at_once = threshold >= 0 and abs(v_all - v_empty) <= threshold
    if block >= n - 1 and not stops_at_once:
        # every prefix of every permutation in one call (the default): the same values as
        # the loop below, with fewer array operations (they cost as much as the call here)
        v[:, 1:n] = memo.values(keys[:, :-1].ravel().tolist()).reshape(b, n - 1)
        lo = n
    while lo < n:
        if threshold >= 0:
            alive &= np.abs(v_all - v[:, lo - 1]) > threshold
        if not alive.any():
            break
        hi = min(n, lo + max(1, block))  # prefix lengths lo .. hi - 1
        live = np.flatnonzero(alive)
        vals = memo.values(keys[live, lo - 1 : hi - 1].ravel().tolist())
        vals = vals.reshape(live.size, hi - lo)
        v[live, lo:hi] = vals
        if threshold >= 0 and hi - lo > 1:
            # a permutation truncated inside the block stops being scanned after it
            alive[live] &= np.all(np.abs(v_all - vals[:, :-1]) > threshold, axis=1)
        lo = hi
    step = np.diff(v, axis=1)  # (b, n): marginal of the player at position j
    if threshold >= 0:
        # position j is scanned while no prefix of length <= j was within the threshold
        scanned = np.logical_and.accumulate(np.abs(v_all - v[:, :n]) > threshold, axis=1)
    else:
        scanned = np.ones((b, n), dtype=bool)
    marg = np.zeros((b, n), dtype=np.float64)
    marg[rows, perms] = np.where(scanned, step, 0.0)
    return marg


class _Convergence:
    """The convergence test of the module docstring, kept incrementally: the running sums
    of the marginals are carried from batch to batch (the same additions, in the same order,
    as ``np.cumsum`` over every permutation so far)."""

    def __init__(self, n: int, last_k: int, tol: float) -> None:
        self.last_k = last_k
        self.tol = tol
        self.t = 0
        self.cum = np.zeros((0, n))  # running sums at the last last_k permutations

    def add(self, marg: np.ndarray) -> bool:
        """Add a batch's marginals ``(b, n)``; whether the estimate has converged."""
        carry = self.cum[-1:] if self.t else np.zeros((1, marg.shape[1]))
        cum = np.cumsum(np.concatenate([carry, marg]), axis=0)[1:]
        self.cum = np.concatenate([self.cum, cum])[-self.last_k :]
        self.t += marg.shape[0]
        t = self.t
        if t < 2:
            return False
        k = self.cum.shape[0]
        run = self.cum / np.arange(t - k + 1, t + 1)[:, None]
        last = run[-1]
        denom = np.abs(last).sum()
        if denom == 0.0:
            return bool(np.all(run == 0.0))
        err = np.abs(run - last).sum(axis=1) / denom
        return bool(err.max() < self.tol)


def _sample(
    game: Game,
    n: int,
    *,
    rng: np.random.Generator,
    threshold_of: Callable[[float], float],
    guided: bool,
    eps_between: float,
    min_permutations: int,
    max_permutations: int,
    convergence_tol: float,
    last_k: int,
    batch: int,
    prefix_block: int,
) -> ShapleyEstimate:
    memo = _Memo(game, n)
    ends = np.zeros((2, n), dtype=bool)
    ends[0] = True
    v_all, v_empty = memo(ends).tolist()
    if eps_between > 0 and abs(v_all - v_empty) <= eps_between:
        return ShapleyEstimate(np.zeros(n), memo.evaluations, 0, True, True)
    if n == 1:
        return ShapleyEstimate(np.array([v_all - v_empty]), memo.evaluations, 1, True, False)
    threshold = threshold_of(abs(v_all - v_empty))
    records: list[np.ndarray] = []
    convergence = _Convergence(n, last_k, convergence_tol)
    done = 0
    converged = False
    # Convergence is not judged before min_permutations, so those are scanned in one
    # lockstep batch (same permutations and values as batch by batch, fewer game calls).
    first = batch * max(1, math.ceil(min_permutations / batch))
    while done < max_permutations:
        size = min(first if done == 0 else batch, max_permutations - done)
        if guided:
            # the g-th permutation of a cycle starts with player g, the rest in random order
            # (random sort keys; the forced first player's key is below every other)
            firsts = np.arange(done, done + size) % n
            keys = rng.random((size, n))
            keys[np.arange(size), firsts] = -1.0
            perms = np.argsort(keys, axis=1)
        else:
            perms = np.argsort(rng.random((size, n)), axis=1)
        records.append(_scan(memo, perms, v_all, v_empty, threshold, prefix_block))
        done += size
        # the running sums are kept from the first batch on; the test counts from
        # min_permutations
        if convergence.add(records[-1]) and done >= min_permutations:
            converged = True
            break
    values = np.concatenate(records).mean(axis=0)
    return ShapleyEstimate(values, memo.evaluations, done, converged, False)


def tmc_shapley(
    game: Game,
    n_players: int,
    *,
    rng: np.random.Generator,
    truncation_tol: float = 0.01,
    min_permutations: int = 30,
    max_permutations: int = 200,
    convergence_tol: float = 0.05,
    last_k: int = 10,
    batch: int | None = None,
    prefix_block: int = 0,
) -> ShapleyEstimate:
    """Truncated Monte Carlo Shapley (Ghorbani & Zou 2019). A scan stops once
    ``|v(N) - v(prefix)| <= truncation_tol * |v(N) - v(empty)|`` (0 disables truncation);
    ``batch`` permutations are scanned in lockstep (default ``n_players``)."""
    n = _check_n(n_players)
    return _sample(
        game,
        n,
        rng=rng,
        threshold_of=lambda gain: truncation_tol * gain if truncation_tol > 0 else -1.0,
        guided=False,
        eps_between=0.0,
        min_permutations=min_permutations,
        max_permutations=max_permutations,
        convergence_tol=convergence_tol,
        last_k=last_k,
        batch=batch or n,
        prefix_block=prefix_block or n,
    )


def gtg_shapley(
    game: Game,
    n_players: int,
    *,
    rng: np.random.Generator,
    eps_between: float = 0.001,
    eps_within: float = 0.001,
    min_permutations: int = 30,
    max_permutations: int = 100,
    convergence_tol: float = 0.05,
    last_k: int = 10,
    prefix_block: int = 0,
) -> ShapleyEstimate:
    """GTG-Shapley (Liu et al. 2022). ``eps_between``/``eps_within`` are absolute utility
    differences (0 disables that truncation). Permutations are scanned a guided cycle of
    ``n_players`` at a time; at least ``max(min_permutations, n_players)`` are sampled unless
    the round is truncated."""
    n = _check_n(n_players)
    return _sample(
        game,
        n,
        rng=rng,
        threshold_of=lambda gain: eps_within if eps_within > 0 else -1.0,
        guided=True,
        eps_between=eps_between,
        min_permutations=max(min_permutations, n),
        max_permutations=max(max_permutations, 1),
        convergence_tol=convergence_tol,
        last_k=last_k,
        batch=n,
        prefix_block=prefix_block or n,
    )


#: Coalitions the zero-update probe samples per round (:func:`zero_probe`).
PROBE_COALITIONS = 64


def zero_probe(game, weight: float, rng: np.random.Generator,
               coalitions: int = PROBE_COALITIONS) -> tuple[float, int]:
    """The Shapley value a phantom player that sends a zero update and claims the aggregation
    weight ``weight`` would get in ``game`` (a :class:`~abm.fl.game.CoalitionGame`, through
    its ``with_zero_player``), and the coalitions evaluated for it.

    In the game of the ``n`` players and the phantom ``z``, ``phi_z = E[v(S + z) - v(S)]``
    over coalitions ``S`` of the players drawn by Shapley's weights: a size ``s`` uniform in
    ``0..n``, then ``S`` uniform among the subsets of that size. With ``2**n <= coalitions``
    every coalition is taken with its weight (exact, no draw); else with ``2 (n + 1) <=
    coalitions`` every size is drawn twice (stratified: no between-size variance); beyond,
    ``coalitions`` sizes are drawn uniformly. The draws from ``rng`` depend on ``n`` only. A
    utility under which a null contribution is a null player gives exactly 0; a positive
    value is what the game pays a client for sending nothing (docs/model.md, section 7.5)."""
    n = game.n_players
    if 2**n <= coalitions:
        masks = all_masks(n)
        size = masks.sum(1)
        weights = np.array([1.0 / ((n + 1) * math.comb(n, int(s))) for s in size])
    else:
        sizes = (np.repeat(np.arange(n + 1), 2) if 2 * (n + 1) <= coalitions
                 else rng.integers(0, n + 1, size=coalitions))
        order = np.argsort(rng.random((sizes.size, n)), axis=1)
        masks = np.zeros((sizes.size, n), dtype=bool)
        for row, (size, perm) in enumerate(zip(sizes.tolist(), order, strict=True)):
            masks[row, perm[:size]] = True
        weights = np.full(sizes.size, 1.0 / sizes.size)
    before = game.probe_evaluations
    gain = game.with_zero_player(masks, weight) - game.utilities(masks)
    return float(math.fsum((weights * gain).tolist())), game.probe_evaluations - before

