"""A client that sends nothing is worth nothing (docs/model.md, sections 7.4 and 7.5).

Under the default coalition rule (`round_weights`: a coalition's model is the round's
aggregate with only its members' updates, each at its weight in the round) a zero update is
a null player of the coalition game: exact Shapley gives it 0 and leaves everyone else's
value unchanged, whatever data size it claims, and the samplers give it exactly 0 too. A
noise update is worth nothing in expectation. The phantom probe reports 0 under this rule and
the damping the old rule rewarded under `coalition_fedavg`; cosine scores an update against
the others' aggregate, never one containing itself. The reduced contribution grid
(bench.contribution_grid) holds the issue's targets on the cells it covers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from abm.fl import load_dataset, make_contribution_method
from abm.fl.game import CoalitionGame
from abm.fl.nets import MLP
from abm.fl.shapley import exact_shapley, gtg_shapley, tmc_shapley, zero_probe

DIGITS = load_dataset("digits", rng=np.random.default_rng(0), n_samples=240)
X = torch.as_tensor(DIGITS.X, dtype=torch.float32)
Y = torch.as_tensor(DIGITS.y, dtype=torch.int64)
NET = MLP((64,), 10, 8)


def updates(seed: int, n: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A previous model and ``n`` updates: a shared direction (so coalitions interact, as
    real updates do) plus each its own part."""
    gen = torch.Generator().manual_seed(seed)
    prev = NET.init_params(gen)
    shared = torch.randn(NET.n_params, generator=gen)
    own = torch.randn(n, NET.n_params, generator=gen)
    return prev, scale * (shared + own)


def game(prev, U, weights, coalition="round_weights") -> CoalitionGame:
    return CoalitionGame(NET, prev, U, np.asarray(weights, dtype=np.float64), X, Y,
                         metric="loss", coalition=coalition)


def with_zero(U, weights, at: int, weight: float):
    """``U`` and ``weights`` with a zero update of weight ``weight`` inserted at ``at``."""
    U2 = torch.cat([U[:at], torch.zeros(1, U.shape[1]), U[at:]])
    return U2, np.insert(np.asarray(weights, dtype=np.float64), at, weight)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), n=st.integers(1, 5),
       scale=st.floats(0.01, 1.0), data=st.data())
def test_a_zero_update_is_a_null_player_of_exact_shapley(seed, n, scale, data):
    """For random updates and weights (not normalised: any claim), adding a zero update
    leaves the others' exact Shapley values unchanged and gives it 0."""
    weights = data.draw(st.lists(st.floats(0.0, 100.0), min_size=n, max_size=n))
    at = data.draw(st.integers(0, n))
    claim = data.draw(st.floats(0.0, 1e6))
    prev, U = updates(seed, n, scale)
    alone = exact_shapley(game(prev, U, weights), n)
    U2, w2 = with_zero(U, weights, at, claim)
    joined = exact_shapley(game(prev, U2, w2), n + 1)
    assert abs(joined[at]) <= 1e-9
    np.testing.assert_allclose(np.delete(joined, at), alone, rtol=0, atol=1e-9)


def test_the_zero_update_changes_no_coalition_model():
    """The property above is not a bookkeeping shortcut: with the zero update in, every
    coalition's parameter vector is bitwise the one without it."""
    prev, U = updates(3, 4, 0.2)
    U2, w2 = with_zero(U, [1.0, 2.0, 3.0, 4.0], 2, 50.0)
    g = game(prev, U2, w2)
    from abm.fl.shapley import all_masks

    masks = all_masks(5)
    without = masks.copy()
    without[:, 2] = False
    assert torch.equal(g.coalition_params(masks), g.coalition_params(without))


def test_under_coalition_fedavg_a_zero_update_is_paid_for_damping():
    """The rule the project used before: a zero update shrinks the others' step, and where
    the full step overshoots (a large learning rate here) that is worth something."""
    prev, U = updates(5, 4, 1.0)
    U2, w2 = with_zero(U, [1.0, 1.0, 1.0, 1.0], 0, 1.0)
    phi = exact_shapley(game(prev, U2, w2, "coalition_fedavg"), 5)
    assert phi[0] > 1e-3
    assert exact_shapley(game(prev, U2, w2), 5)[0] == 0.0


@pytest.mark.parametrize("sampler", ["gtg", "mc"])
def test_the_samplers_give_a_zero_update_exactly_zero(sampler):
    """Its marginal is exactly 0 in every permutation; the others are estimated within the
    samplers' usual error of the exact values."""
    prev, U = updates(11, 5, 0.3)
    U2, w2 = with_zero(U, [0.2, 0.1, 0.3, 0.15, 0.25], 3, 0.5)
    g = game(prev, U2, w2)
    exact = exact_shapley(g, 6)
    rng = np.random.default_rng(0)
    if sampler == "gtg":
        est = gtg_shapley(g, 6, rng=rng, eps_between=0, eps_within=0, max_permutations=300,
                          convergence_tol=0.01)
    else:
        est = tmc_shapley(g, 6, rng=rng, truncation_tol=0, max_permutations=300,
                          convergence_tol=0.01)
    assert est.values[3] == 0.0
    assert np.abs(est.values - exact).sum() <= 0.1 * np.abs(exact).sum()


@pytest.mark.parametrize("sd", [0.01, 0.05])
def test_a_noise_update_is_worth_nothing_in_expectation(sd):
    """Over noise draws beside honest-like updates, its exact Shapley value is negative on
    average: noise moves the model off its path. Antithetic pairs (a draw and its negative)
    cancel the first-order term, whose mean is 0 anyway, so that 20 pairs resolve the sign of
    what is left."""
    prev, U = updates(7, 4, 0.1)
    weights = [0.2, 0.2, 0.2, 0.2, 0.2]
    pairs = []
    for draw in range(20):
        noise = sd * torch.randn(1, U.shape[1], generator=torch.Generator().manual_seed(draw))
        pairs.append(sum(exact_shapley(game(prev, torch.cat([U, sign * noise]), weights), 5)[4]
                         for sign in (1, -1)) / 2)
    pairs = np.array(pairs)
    assert pairs.mean() + 2 * pairs.std(ddof=1) / np.sqrt(len(pairs)) < 0


def test_the_probe_reports_zero_under_round_weights_and_damping_otherwise():
    prev, U = updates(5, 4, 1.0)
    w = np.full(4, 0.25)
    value, evaluations = zero_probe(game(prev, U, w), 0.25, np.random.default_rng(0))
    assert value == 0.0 and evaluations > 0  # the plain coalitions were evaluated
    paid, _ = zero_probe(game(prev, U, w, "coalition_fedavg"), 0.25, np.random.default_rng(0))
    # the same as a real zero player's exact Shapley value in the 5-player game
    U2, w2 = with_zero(U, w, 4, 0.25)
    exact = exact_shapley(game(prev, U2, w2, "coalition_fedavg"), 5)[4]
    assert paid == pytest.approx(exact, rel=1e-6) and paid > 0


def test_the_probe_samples_by_shapley_weights_beyond_its_budget():
    """With more sizes than its budget it draws sizes uniformly: unbiased, and its draws
    depend on the number of players only."""
    prev, U = updates(2, 40, 0.02)
    g = game(prev, U, np.full(40, 1 / 40), "coalition_fedavg")
    a = zero_probe(g, 1 / 40, np.random.default_rng(1), coalitions=16)
    b = zero_probe(g, 1 / 40, np.random.default_rng(1), coalitions=16)
    assert a[0] == b[0] and a[1] <= 32


def test_cosine_scores_noise_near_zero_and_a_zero_update_zero():
    """Against the others' aggregate a noise update is uncorrelated (its own weight no longer
    lends it a positive score); honest-like updates agree with each other."""
    from abm.fl.federation import RoundResult

    _, U = updates(9, 4, 0.1)
    noise = 0.2 * torch.randn(1, U.shape[1], generator=torch.Generator().manual_seed(0))
    allU = torch.cat([U, noise, torch.zeros(1, U.shape[1])])
    weights = np.array([0.2, 0.2, 0.2, 0.2, 0.1, 0.1])
    result = RoundResult(round=1, updates=allU, weights=weights, game=None, accuracy=0,
                         loss=0, prev_accuracy=0, prev_loss=0)
    cos = make_contribution_method("cosine", rng=np.random.default_rng(0))(result)
    assert cos[5] == 0.0 and abs(cos[4]) < 0.05 and np.all(cos[:4] > 0.3)


@pytest.mark.parametrize("dataset,partition", [("digits", "dirichlet_0.3"),
                                               ("breast_cancer", "quantity_skew")])
def test_reduced_grid_the_default_pays_misbehaving_clients_almost_nothing(dataset, partition):
    """The reduced contribution grid (bench.contribution_grid, docs/model.md 7.5): with the
    default game (GTG-Shapley, round_weights, carry) the four misbehaving clients of 10 get
    under 5 % of the rewards, the zero-update free rider exactly nothing, the probe 0, and
    on a quantity-skewed split the ranking follows data quality; the utility it replaced
    (coalition_fedavg, clip) pays the zero update on the non-IID split."""
    from bench.contribution_grid import cell_scenario, measure_cell

    rows = measure_cell(cell_scenario(dataset, partition, 1, 8),
                        rules=("round_weights", "coalition_fedavg"), methods=("gtg_shapley",))
    by = {(r["rule"], r["negative"]): r for r in rows}
    after, before = by["round_weights", "carry"], by["coalition_fedavg", "clip"]
    assert after["misbehaving_pct"] < 5
    assert after["pay_free_rider_zero_6"] == 0.0 and after["probe_pct"] == 0.0
    if partition == "quantity_skew":
        assert after["quality_rho"] >= 0.8
    else:
        assert before["pay_free_rider_zero_6"] > 0.01 and before["probe_pct"] > 0
