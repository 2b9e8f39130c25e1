"""The per-round coalition game: batched == one-at-a-time, memoisation, semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abm.fl import CoalitionGame, Federation, load_dataset, partition, split_validation
from abm.fl.game import LOSS_TOLERANCE, coalition_keys, masks_from_keys
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


def image_round_result(names, *, metric="accuracy", seed=0, rounds=1):
    rng = np.random.default_rng(seed)
    ds = load_dataset("digits", rng=rng, n_samples=300, image=True)
    train, val = split_validation(ds, 0.3, rng)
    parts = partition(train.y, len(names), scheme="iid", rng=rng)
    fed = Federation(train, parts, val, names, model="cnn", hidden=8, metric=metric, lr=0.3,
                     seed=seed)
    for _ in range(rounds):
        res = fed.run_round()
    return fed, res


@pytest.mark.parametrize("model", ["logreg", "mlp", "cnn"])
@pytest.mark.parametrize("rounds", [1, 4])
def test_first_layer_fast_path_matches_the_naive_path(model, rounds):
    """Every coalition of free riders, label flippers, noisy and honest clients: the fast path
    (first-layer combination) against building each coalition's model and running the plain
    forward pass, within the stated tolerance."""
    for metric in ("accuracy", "loss"):
        if model == "cnn":
            _, res = image_round_result(NAMES, metric=metric, rounds=rounds)
        else:
            _, res = round_result(NAMES, model=model, metric=metric, rounds=rounds)
        masks = all_masks(len(NAMES))
        fast = res.game(masks)
        naive = res.game.evaluate_naive(masks)
        assert fast.dtype == np.float64 and fast.shape == (64,)
        if metric == "loss":
            np.testing.assert_allclose(fast, naive, rtol=0, atol=LOSS_TOLERANCE)
        else:  # a prediction may flip where two logits tie within float32 rounding
            m = len(res.game.y_val)
            assert np.all(np.abs(fast - naive) <= 1 / m + 1e-12)
            assert np.count_nonzero(fast != naive) <= 2


@pytest.mark.parametrize("model", ["logreg", "mlp", "cnn"])
def test_first_layer_and_head_compose_to_the_forward_pass(model):
    if model == "cnn":
        fed, res = image_round_result(NAMES[:3])
    else:
        fed, res = round_result(NAMES[:3], model=model)
    net, X = fed.net, fed.X_val
    P = torch.stack([res.prev_params, res.params, res.prev_params + res.updates[0]])
    p1 = net.p_first
    Z = net.first_layer_batched(P[:, :p1], X)
    assert Z.shape == (3, X.shape[0] * net.first_layer_width())
    logits = net.head_batched(P[:, p1:], Z, X.shape[0])
    torch.testing.assert_close(logits, net.forward_batched(P, X).transpose(1, 2),
                               rtol=1e-5, atol=1e-5)
    # the first layer is affine in its parameters: the combination trick's premise
    c = torch.tensor([0.25, 0.75], dtype=torch.float64)
    mix = net.first_layer_batched((c @ P[1:, :p1].double())[None], X.double())[0]
    torch.testing.assert_close(mix, c @ net.first_layer_batched(P[1:, :p1].double(), X.double()))


def test_accumulate_breaks_ties_like_argmax():
    from abm.fl.nets import Net

    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.integers(0, 3, size=(5, 4, 200)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 4, size=200))
    correct = torch.zeros(5, dtype=torch.float64)
    loss = torch.zeros(5, dtype=torch.float64)
    Net.accumulate(logits.clone(), y, correct, loss)  # it overwrites the logits
    expected = (logits.argmax(1) == y).sum(-1).double()
    torch.testing.assert_close(correct, expected, rtol=0, atol=0)
    expected_loss = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2).reshape(-1, 4).double(), y.repeat(5), reduction="none"
    ).view(5, 200).sum(-1)
    torch.testing.assert_close(loss, expected_loss, rtol=0, atol=1e-4)


@pytest.mark.parametrize("coalition", ["round_weights", "coalition_fedavg"])
def test_values_do_not_depend_on_the_batch_a_coalition_came_in(coalition):
    """Within the fast path's stated tolerance (a float32 GEMM rounds with the batch's shape),
    and exactly once memoised: a coalition keeps the value it first got for the round."""
    _, res = round_result(NAMES, metric="loss", rounds=2)
    g = res.game

    masks = all_masks(len(NAMES))

    def fresh():
        return CoalitionGame(g.net, g.prev, g.updates, g.weights, g.X_val, g.y_val,
                             metric="loss", coalition=coalition)

    whole = fresh()(masks)
    game = fresh()
    order = np.random.default_rng(0).permutation(64)
    parts = np.empty(64)
    for chunk in np.array_split(order, 7):
        parts[chunk] = game(masks[chunk])
    np.testing.assert_allclose(parts, whole, rtol=0, atol=LOSS_TOLERANCE)
    np.testing.assert_array_equal(game(masks), parts)  # one value per coalition and round


def test_first_layer_outputs_recomputed_when_too_big_to_keep(monkeypatch):
    import abm.fl.game as game_module

    _, res = round_result(NAMES, metric="loss", rounds=2)
    masks = all_masks(len(NAMES))
    g = res.game
    kept = CoalitionGame(g.net, g.prev, g.updates, g.weights, g.X_val, g.y_val,
                         metric="loss")(masks)
    fresh = CoalitionGame(g.net, g.prev, g.updates, g.weights, g.X_val, g.y_val, metric="loss")
    monkeypatch.setattr(game_module, "FIRST_LAYER_CACHE_BYTES", 0)
    np.testing.assert_array_equal(fresh(masks), kept)
    assert fresh._first_cache is None


@pytest.mark.parametrize("coalition", ["round_weights", "coalition_fedavg"])
def test_coalition_model_is_prev_plus_its_members_weighted_updates(coalition):
    """round_weights: each member at its weight in the round; coalition_fedavg: weights
    renormalised within the coalition. Either way the grand coalition is the round's model."""
    fed, res = round_result(NAMES)
    g = CoalitionGame(fed.net, res.prev_params, res.updates, res.weights, fed.X_val, fed.y_val,
                      coalition=coalition)
    torch.testing.assert_close(g.coalition_params(g.grand_mask)[0], res.params, atol=1e-7,
                               rtol=0)
    mask = np.array([[True, False, True, False, False, True]])
    w = res.weights * mask[0]
    if coalition == "coalition_fedavg":
        w = w / w.sum()
    expected = res.prev_params.double() + torch.from_numpy(w) @ res.updates.double()
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


def test_gtg_on_a_fixed_game_reproduces_its_recorded_values():
    """GTG-Shapley on a coalition game that does not depend on training (synthetic updates
    along a shared direction, a free rider, 300 digits): the permutations, coalitions and
    convergence recorded with commit 3c1cc09's game and sampler, and its values within
    LOSS_TOLERANCE (the fast path's stated float tolerance; equal in fact today)."""
    from abm.fl.nets import MLP
    from abm.fl.shapley import gtg_shapley

    ds = load_dataset("digits", rng=np.random.default_rng(0), n_samples=300)
    X = torch.as_tensor(ds.X, dtype=torch.float32)
    y = torch.as_tensor(ds.y, dtype=torch.int64)
    net = MLP((64,), 10, 16)
    gen = torch.Generator().manual_seed(0)
    prev = net.init_params(gen)
    D = torch.randn(net.n_params, generator=gen)
    scale = torch.tensor([0.3, 0.2, 0.0, -0.2, 0.1, 0.3, 0.25, 0.15])[:, None]
    U = scale * D + 0.05 * torch.randn(8, net.n_params, generator=gen)
    U[2] = 0.0  # a free rider
    weights = np.array([3.0, 1, 2, 2, 1, 4, 2, 3])
    # recorded under the coalition rule of the time: the free rider earned 0.038 there
    game = CoalitionGame(net, prev, U, weights, X, y, metric="loss",
                         coalition="coalition_fedavg")
    recorded = {
        0: (64, 184, [-0.05008308364699286, -0.006509115987767801, 0.03839562356472011,
                      0.051265124039103535, 0.0213309363710383, -0.11561761194219197,
                      -0.02823682631676406, 0.028603698071092372]),
        1: (56, 178, [-0.04950927839392711, -0.015384208091667764, 0.05161238200607753,
                      0.043271343388727714, 0.018112543218192563, -0.10204650297051392,
                      -0.03383173414639069, 0.027020865316901843]),
    }
    for seed, (perms, evaluations, values) in recorded.items():
        game.clear_cache()
        est = gtg_shapley(game, 8, rng=np.random.default_rng(seed), eps_within=0.002)
        assert (est.n_permutations, est.evaluations, est.converged) == (perms, evaluations, True)
        np.testing.assert_allclose(est.values, values, rtol=0, atol=LOSS_TOLERANCE)
    # under round_weights the free rider is a null player: 0 in every permutation
    null = CoalitionGame(net, prev, U, weights / weights.sum(), X, y, metric="loss")
    assert gtg_shapley(null, 8, rng=np.random.default_rng(0)).values[2] == 0.0
