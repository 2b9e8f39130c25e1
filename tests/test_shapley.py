"""Shapley algorithms on cooperative games with known values, against shapiq's exact
computation, and the samplers against exact."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from abm.fl.shapley import (
    all_masks,
    exact_shapley,
    gtg_shapley,
    leave_one_out,
    shapley_from_values,
    tmc_shapley,
)


class CountingGame:
    """Wraps a per-coalition function as a batched game; counts calls and rows."""

    def __init__(self, fn, n):
        self.fn = fn
        self.n = n
        self.calls = 0
        self.rows = 0

    def __call__(self, masks):
        masks = np.asarray(masks, bool)
        assert masks.ndim == 2 and masks.shape[1] == self.n
        self.calls += 1
        self.rows += masks.shape[0]
        return np.array([self.fn(frozenset(np.flatnonzero(r).tolist())) for r in masks], float)


def glove_game():
    """Left gloves {0, 1}, right glove {2}; a pair is worth 1. Shapley: (1/6, 1/6, 2/3)."""
    return CountingGame(lambda S: min(len(S & {0, 1}), len(S & {2})), 3)


def voting_game():
    """Weighted majority [3; 2, 1, 1]: Shapley-Shubik (2/3, 1/6, 1/6)."""
    w = [2, 1, 1]
    return CountingGame(lambda S: float(sum(w[i] for i in S) >= 3), 3)


def additive_game(a):
    return CountingGame(lambda S: float(sum(a[i] for i in S)), len(a))


def brute_force(fn, n):
    """Shapley by averaging marginal contributions over all n! orders."""
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        S = frozenset()
        for p in order:
            phi[p] += fn(S | {p}) - fn(S)
            S = S | {p}
    return phi / math.factorial(n)


@pytest.mark.parametrize(("game", "expected"), [
    (glove_game(), [1 / 6, 1 / 6, 2 / 3]),
    (voting_game(), [2 / 3, 1 / 6, 1 / 6]),
])
def test_known_games(game, expected):
    phi = exact_shapley(game, 3)
    np.testing.assert_allclose(phi, expected, rtol=0, atol=1e-15)
    assert game.calls == 1 and game.rows == 8  # one batched call over all coalitions
    assert phi[0] == phi[1] if expected[0] == expected[1] else phi[1] == phi[2]


def test_additive_game_and_null_player_exact():
    a = [0.5, -0.25, 0.0, 2.0, 0.0]
    phi = exact_shapley(additive_game(a), 5)
    np.testing.assert_array_equal(phi, a)
    assert phi[2] == 0.0 and phi[4] == 0.0


def _random_game(n, seed, null=None, twins=None):
    """A random game with an optional null player and a pair of symmetric players."""
    rng = np.random.default_rng(seed)
    table = {}

    def fn(S):
        S = set(S)
        if null is not None:
            S.discard(null)
        key = S
        if twins is not None:
            a, b = twins
            if (a in S) != (b in S):  # the game only sees how many of the twins are in
                key = (S - {b}) | {a}
        key = frozenset(key)
        if key not in table:
            table[key] = float(rng.normal())
        return table[key]

    return fn


def test_axioms_efficiency_symmetry_null_player():
    n = 7
    fn = _random_game(n, seed=1, null=3, twins=(1, 5))
    phi = exact_shapley(CountingGame(fn, n), n)
    total = fn(frozenset(range(n))) - fn(frozenset())
    assert math.fsum(phi) == pytest.approx(total, abs=1e-12)  # efficiency
    assert phi[3] == 0.0  # null player, exactly
    assert phi[1] == phi[5]  # symmetric players, bitwise
    np.testing.assert_allclose(phi, brute_force(fn, n), rtol=0, atol=1e-12)


def test_against_shapiq_exact_computer():
    # shapiq is a dev dependency (an independent oracle, never a runtime one): import it
    # plainly so that a missing install fails instead of silently skipping.
    import shapiq

    n = 8
    values = np.random.default_rng(4).normal(size=2**n)
    weights = 1 << np.arange(n)

    def game(masks):
        return values[np.asarray(masks, dtype=np.int64) @ weights]

    ours = exact_shapley(game, n)
    theirs = shapiq.ExactComputer(game, n_players=n)("SV").get_n_order_values(1)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)
    np.testing.assert_allclose(shapley_from_values(values, n), ours, rtol=0, atol=0)


def test_exact_refuses_more_than_16_players():
    with pytest.raises(ValueError, match=r"n_players=17 exceeds the limit of 16"):
        exact_shapley(lambda m: np.zeros(len(m)), 17)
    with pytest.raises(ValueError, match="n_players must be an integer >= 1"):
        exact_shapley(lambda m: np.zeros(len(m)), 0)


def test_leave_one_out():
    est = leave_one_out(glove_game(), 3)
    np.testing.assert_array_equal(est.values, [0.0, 0.0, 1.0])
    assert est.evaluations == 4


def test_samplers_are_exact_on_additive_games_without_truncation():
    """Every permutation gives the exact marginals of an additive game."""
    a = np.array([0.3, -0.1, 0.0, 0.7, 0.2, 0.05])
    rng = np.random.default_rng(0)
    mc = tmc_shapley(additive_game(a), 6, rng=rng, truncation_tol=0.0, min_permutations=6,
                     max_permutations=12)
    gtg = gtg_shapley(additive_game(a), 6, rng=rng, eps_between=0.0, eps_within=0.0,
                      min_permutations=6, max_permutations=12)
    np.testing.assert_allclose(mc.values, a, atol=1e-12)
    np.testing.assert_allclose(gtg.values, a, atol=1e-12)
    assert mc.converged and gtg.converged and mc.n_permutations == 6


def test_samplers_match_brute_force_on_random_game():
    """Stated tolerance: with 2000 permutations both samplers are within 0.06 (max abs)
    of the exact values of a random N(0, 1) game of 6 players."""
    n = 6
    fn = _random_game(n, seed=7)
    exact = brute_force(fn, n)
    kw = {"min_permutations": 2000, "max_permutations": 2000}
    mc = tmc_shapley(CountingGame(fn, n), n, rng=np.random.default_rng(1),
                     truncation_tol=0.0, **kw)
    gtg = gtg_shapley(CountingGame(fn, n), n, rng=np.random.default_rng(1),
                      eps_between=0.0, eps_within=0.0, **kw)
    assert np.abs(mc.values - exact).max() < 0.06
    assert np.abs(gtg.values - exact).max() < 0.06
    assert mc.evaluations <= 2**n and gtg.evaluations <= 2**n


def test_gtg_between_round_truncation():
    flat = CountingGame(lambda S: 0.5 + 1e-4 * len(S), 5)
    est = gtg_shapley(flat, 5, rng=np.random.default_rng(0), eps_between=0.001)
    np.testing.assert_array_equal(est.values, np.zeros(5))
    assert est.truncated_round and est.evaluations == 2 and est.n_permutations == 0


def test_within_round_truncation_saves_evaluations():
    """A saturating game: any 2 players reach the full value, so scans stop early. Scanned one
    position per call (``prefix_block=1``) the truncation saves evaluations; all prefixes in
    one call (the default) it saves none, and the values are the same."""
    n = 8

    def fn(S):
        return min(len(S), 2) / 2.0

    full = gtg_shapley(CountingGame(fn, n), n, rng=np.random.default_rng(0), eps_within=0.0,
                       min_permutations=64, max_permutations=64)
    trunc = gtg_shapley(CountingGame(fn, n), n, rng=np.random.default_rng(0),
                        eps_within=0.001, min_permutations=64, max_permutations=64,
                        prefix_block=1)
    assert trunc.evaluations < full.evaluations
    assert trunc.evaluations <= 1 + 1 + n + n * (n - 1) // 2  # empty, full, sizes 1 and 2
    np.testing.assert_allclose(trunc.values, np.full(n, 1 / n), atol=0.08)
    np.testing.assert_allclose(trunc.values.sum(), 1.0, atol=1e-12)  # efficient per permutation
    batched = gtg_shapley(CountingGame(fn, n), n, rng=np.random.default_rng(0),
                          eps_within=0.001, min_permutations=64, max_permutations=64)
    np.testing.assert_array_equal(batched.values, trunc.values)
    assert batched.evaluations == full.evaluations
    mc = tmc_shapley(CountingGame(fn, n), n, rng=np.random.default_rng(0), truncation_tol=0.01,
                     min_permutations=64, max_permutations=64, prefix_block=1)
    assert mc.evaluations < full.evaluations


def _scan_one_at_a_time(fn, perms, v_all, v_empty, threshold):
    """Reference for the batched scan: each permutation alone, prefix by prefix, stopping at
    the first prefix within ``threshold`` of ``v_all``."""
    b, n = perms.shape
    marg = np.zeros((b, n))
    for r, perm in enumerate(perms):
        prev, S = v_empty, frozenset()
        for j, player in enumerate(perm):
            if threshold >= 0 and abs(v_all - prev) <= threshold:
                break
            S = S | {int(player)}
            val = v_all if j == n - 1 else fn(S)
            marg[r, player] = val - prev
            prev = val
    return marg


@pytest.mark.parametrize("threshold", [-1.0, 0.0, 0.05, 0.2])
def test_batched_scan_equals_one_permutation_at_a_time(threshold):
    from abm.fl.shapley import _Memo, _scan

    n = 7
    rng = np.random.default_rng(1)
    for seed in range(4):
        fn = _random_game(n, seed=seed)
        if seed % 2:  # a saturating game, so that truncation fires
            base = fn
            fn = lambda S, base=base: min(base(S), base(frozenset(range(n))))  # noqa: E731
        v_all, v_empty = fn(frozenset(range(n))), fn(frozenset())
        perms = np.argsort(rng.random((12, n)), axis=1)
        expected = _scan_one_at_a_time(fn, perms, v_all, v_empty, threshold)
        for block in (1, 2, 3, n):
            memo = _Memo(CountingGame(fn, n), n)
            got = _scan(memo, perms, v_all, v_empty, threshold, block)
            np.testing.assert_array_equal(got, expected)


def test_gtg_guided_sampling_puts_each_player_first_in_turn():
    n = 5
    firsts = []

    class Spy:
        def __call__(self, masks):
            masks = np.asarray(masks)
            singles = masks[masks.sum(1) == 1]
            firsts.extend(np.flatnonzero(r)[0] for r in singles)
            return masks.sum(1).astype(float) ** 2

    gtg_shapley(Spy(), n, rng=np.random.default_rng(0), eps_within=0.0, min_permutations=5,
                max_permutations=5)
    assert sorted(firsts) == list(range(n))  # each player opened one permutation


def test_samplers_are_deterministic_given_rng():
    n = 6
    fn = _random_game(n, seed=3)
    a = gtg_shapley(CountingGame(fn, n), n, rng=np.random.default_rng(5), eps_within=0.0)
    b = gtg_shapley(CountingGame(fn, n), n, rng=np.random.default_rng(5), eps_within=0.0)
    np.testing.assert_array_equal(a.values, b.values)
    c = tmc_shapley(CountingGame(fn, n), n, rng=np.random.default_rng(5))
    d = tmc_shapley(CountingGame(fn, n), n, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(c.values, d.values)


def test_all_masks_order():
    m = all_masks(3)
    assert m.shape == (8, 3)
    assert m[5].tolist() == [True, False, True]  # row r holds the bits of r


def _table_game(n, seed):
    """log(1 + additive) plus noise, as a lookup table: a deterministic batched game on which
    truncation fires now and then."""
    rng = np.random.default_rng(seed)
    w = rng.random(n)
    members = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
    v = np.log1p(members @ w) + 0.01 * rng.normal(size=2**n)
    bits = 1 << np.arange(n)

    def game(masks):
        return v[(np.asarray(masks).astype(np.int64) * bits).sum(1)]

    return game


# Recorded with the samplers of commit 3c1cc09 (before they worked on coalition keys and kept
# the convergence sums incrementally): (sampler, n, seed, params, evaluations, permutations,
# converged, sum and sum of squares of the requested coalitions' keys, values).
FROZEN = [
    (gtg_shapley, 9, 2, {"eps_within": 0.01}, 189, 36, True, 51568, 18496476,
     [0.11360104773822595, 0.12597990092500405, 0.35414262160779925, 0.04312451774750243,
      0.25726414496775846, 0.31248142399632806, 0.09464482938294812, 0.025989802687277064,
      0.1329784790507671]),
    (tmc_shapley, 10, 3, {"max_permutations": 37, "min_permutations": 12}, 247, 37, False,
     119556, 85768162,
     [0.03525631367564183, 0.09891703327288434, 0.3191171054358592, 0.21997961225587317,
      0.03636749718569117, 0.20230868338579755, 0.21976615787589604, 0.06949577003844669,
      0.3130384826210898, 0.04421485074822282]),
    (gtg_shapley, 12, 4, {"eps_within": 0.005}, 324, 36, True, 645207, 1917111681,
     [0.28301556499324027, 0.16149185398485122, 0.28298240671799535, 0.02131516379449612,
      0.18743255147979196, 0.10969243967239545, 0.2154431660767152, 0.052183816079233517,
      0.24137463542925205, 0.15007559192458358, 0.23732259988069318, 0.15600466624560305]),
    (tmc_shapley, 6, 1, {"truncation_tol": 0.1}, 58, 30, True, 1820, 77682,
     [0.20820663895504396, 0.43343507021519695, 0.07090065667066578, 0.3762286716821883,
      0.14165858676880252, 0.15578497781958028]),
]


@pytest.mark.parametrize("case", FROZEN, ids=lambda c: f"{c[0].__name__}-{c[1]}")
def test_samplers_reproduce_their_recorded_outputs(case):
    """Same seed, same coalitions requested, same permutations and convergence, and the same
    values to 1e-12 (the same float operations in the same order: equal in fact)."""
    sampler, n, seed, params, evaluations, perms, converged, key_sum, key_sq, values = case
    table = _table_game(n, seed)
    requested = set()

    def game(masks):
        requested.update((np.asarray(masks).astype(np.int64) @ (1 << np.arange(n))).tolist())
        return table(masks)

    est = sampler(game, n, rng=np.random.default_rng(seed + 100), **params)
    assert (est.evaluations, est.n_permutations, est.converged) == (evaluations, perms, converged)
    assert len(requested) == evaluations
    assert (sum(requested), sum(k * k for k in requested)) == (key_sum, key_sq)
    np.testing.assert_allclose(est.values, values, rtol=0, atol=1e-12)


def test_incremental_convergence_test_equals_the_direct_formula():
    """The running sums carried batch to batch give the decision of the formula over every
    permutation so far (max_t sum_i |phi_t,i - phi_T,i| / sum_i |phi_T,i| < tol, last_k)."""
    from abm.fl.shapley import _Convergence

    rng = np.random.default_rng(3)
    for last_k, tol in ((10, 0.05), (3, 0.2), (50, 0.01)):
        test = _Convergence(6, last_k, tol)
        rows = []
        for size in (1, 30, 6, 6, 6, 25, 6, 6, 6):
            batch = rng.normal(size=(size, 6)) * np.array([1, 1, 0, 2, 1, 0.5])
            rows.append(batch)
            allm = np.concatenate(rows)
            t = allm.shape[0]
            k = min(last_k, t)
            run = np.cumsum(allm, axis=0)[-k:] / np.arange(t - k + 1, t + 1)[:, None]
            err = np.abs(run - run[-1]).sum(1) / np.abs(run[-1]).sum()
            assert test.add(batch) == (t >= 2 and bool(err.max() < tol))
            np.testing.assert_array_equal(test.cum, np.cumsum(allm, axis=0)[-k:])


def test_samplers_beyond_62_players_use_python_int_keys():
    """Past 62 players a coalition's key is a Python int (no int64 overflow): on an additive
    game every marginal is the player's weight, whatever the permutation."""
    n = 70
    w = np.linspace(0.01, 1.0, n)
    for sampler, kw in ((gtg_shapley, {"eps_within": 0.0}), (tmc_shapley, {"truncation_tol": 0})):
        est = sampler(lambda m: np.asarray(m, float) @ w, n, rng=np.random.default_rng(0),
                      max_permutations=3, min_permutations=1, **kw)
        np.testing.assert_allclose(est.values, w, rtol=0, atol=1e-12)
        assert est.evaluations == 3 * (n - 1) + 2
