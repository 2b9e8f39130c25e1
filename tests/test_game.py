"""The per-round coalition game: batched == one-at-a-time, memoisation, semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abm.fl import CoalitionGame, Federation, load_dataset, partition, split_validation
from abm.fl.game import coalition_keys, masks_from_keys
from abm.fl.shapley import all_masks


def round_result(names, *, model="mlp", metric="accuracy", seed=0, rounds=1):
    rng = np.random.default_rng(seed)
    ds = load_dataset("digits", rng=rng, n_samples=500)
    train, val = split_validation(ds, 0.25, rng)
    parts = partition(train.y, len(names), scheme="iid", rng=rng)
    fed = Federation(train, parts, val, names, model=model, metric=metric, lr=0.3, seed=seed)
    for _ in range(rounds):
        res = fed.run_round()
    return fed, res


NAMES = ["honest", "honest", "free_rider", "label_flip", "noisy_labels", "honest"]


@pytest.mark.parametrize("model", ["logreg", "mlp"])
@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_batched_values_equal_one_at_a_time(model, metric):
    _, res = round_result(NAMES, model=model, metric=metric, rounds=2)
    masks = all_masks(len(NAMES))
    batched = res.game(masks)
    naive = res.game.evaluate_naive(masks)
    if metric == "accuracy":
        np.testing.assert_array_equal(batched, naive)
    else:  # mean cross-entropy: equal up to float32 summation order
        np.testing.assert_allclose(batched, naive, rtol=0, atol=1e-6)
    assert batched.dtype == np.float64 and batched.shape == (64,)


def test_coalition_model_is_prev_plus_weighted_mean_of_members():
    fed, res = round_result(NAMES)
    g = res.game
    mask = np.array([[True, False, True, False, False, True]])
    w = res.weights * mask[0]
    expected = res.prev_params.double() + torch.from_numpy(w / w.sum()) @ res.updates.double()
    torch.testing.assert_close(g.coalition_params(mask)[0].double(), expected, atol=1e-6, rtol=0)
    acc, _ = fed.net.evaluate(expected.float(), g.X_val, g.y_val)
    assert g(mask)[0] == pytest.approx(acc, abs=1 / len(g.y_val) + 1e-12)
    # the empty coalition is the previous model
    torch.testing.assert_close(g.coalition_params(np.zeros((1, 6), bool))[0], res.prev_params)


def test_memo_counts_distinct_coalitions():
    _, res = round_result(NAMES)
    g = res.game
    assert g.evaluations == 0
    m = all_masks(6)[:10]
    v1 = g(m)
    assert g.evaluations == 10
    v2 = g(np.vstack([m, m[:3]]))
    assert g.evaluations == 10
    np.testing.assert_array_equal(v2[:10], v1)
    g(all_masks(6)[5:15])
    assert g.evaluations == 15
    # the round's known values (grand / empty) count once, when first asked for
    g(np.ones((2, 6), bool))
    assert g.evaluations == 16
    assert "evaluations=16" in repr(g)


def test_game_accepts_int_masks_and_rejects_bad_shapes():
    _, res = round_result(NAMES)
    g = res.game
    m = all_masks(6)[:4]
    np.testing.assert_array_equal(g(m.astype(int)), g(m))
    with pytest.raises(ValueError, match=r"\(k, 6\)"):
        g(np.ones((2, 5), bool))
    with pytest.raises(ValueError, match="booleans"):
        g(np.full((1, 6), 2))


def test_keys_roundtrip_small_and_large_n():
    rng = np.random.default_rng(0)
    for n in (1, 7, 62, 63, 100):
        m = rng.random((20, n)) < 0.5
        keys = coalition_keys(m)
        assert len(set(keys)) == len({r.tobytes() for r in m})
        np.testing.assert_array_equal(masks_from_keys(keys, n), m)


def test_game_validation():
    _, res = round_result(NAMES)
    g = res.game
    with pytest.raises(ValueError, match="metric must be one of"):
        CoalitionGame(g.net, g.prev, g.updates, g.weights, g.X_val, g.y_val, metric="f1")
    with pytest.raises(ValueError, match="weights"):
        CoalitionGame(g.net, g.prev, g.updates, -g.weights, g.X_val, g.y_val)
