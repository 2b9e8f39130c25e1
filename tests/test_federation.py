"""FedAvg rounds, behaviours and determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abm import registry
from abm.fl import (
    Federation,
    RoundResult,
    load_dataset,
    make_behaviour,
    partition,
    size_weights,
    split_validation,
)
from abm.fl.behaviours import Behaviour


def setup_digits(n_clients=4, seed=0, n_samples=600, scheme="iid", weights=None):
    rng = np.random.default_rng(seed)
    ds = load_dataset("digits", rng=rng, n_samples=n_samples)
    train, val = split_validation(ds, 0.2, rng)
    parts = partition(train.y, n_clients, scheme=scheme, rng=rng, size_weights=weights)
    return train, val, parts


def make_fed(behaviours, seed=0, **kw):
    train, val, parts = setup_digits(len(behaviours), seed=seed)
    return Federation(train, parts, val, behaviours, seed=seed, **kw)


def test_round_result_contract():
    fed = make_fed(["honest", "honest", "free_rider"], lr=0.5)
    assert fed.n_clients == 3 and fed.round == 0
    acc0, loss0 = fed.accuracy, fed.loss
    res = fed.run_round()
    assert isinstance(res, RoundResult)
    assert res.round == 1 == fed.round
    assert isinstance(res.updates, torch.Tensor) and res.updates.shape == (3, fed.n_params)
    assert res.updates.dtype == torch.float32
    assert res.weights.shape == (3,) and res.weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(res.weights, fed.client_sizes / fed.client_sizes.sum())
    assert (res.prev_accuracy, res.prev_loss) == (acc0, loss0)
    assert (res.accuracy, res.loss) == (fed.accuracy, fed.loss)
    assert res.n_samples.tolist() == fed.client_sizes.tolist()
    assert res.behaviours == ("honest", "honest", "free_rider")
    # the grand coalition is the new global model, the empty coalition the previous one
    assert res.game(np.ones((1, 3), bool))[0] == res.accuracy
    assert res.game(np.zeros((1, 3), bool))[0] == res.prev_accuracy
    expected = res.prev_params.double() + torch.from_numpy(res.weights) @ res.updates.double()
    torch.testing.assert_close(res.params.double(), expected, atol=1e-6, rtol=0)


def test_training_improves_accuracy():
    fed = make_fed(["honest"] * 3, lr=0.5, local_epochs=2)
    start = fed.loss
    for _ in range(4):
        res = fed.run_round()
    assert res.loss < start
    assert res.accuracy > 0.5


def _run(fed, rounds=2):
    return [fed.run_round() for _ in range(rounds)]


def test_same_seed_same_rounds_and_no_global_rng_interference():
    names = ["honest", "noisy_labels", "label_flip", "free_rider"]
    a = make_fed(names, seed=3)
    torch.manual_seed(123)
    _ = torch.rand(100)  # global torch state must not matter
    np.random.seed(5)
    b = make_fed(names, seed=3)
    ra = _run(a)
    torch.manual_seed(999)
    rb = []
    for _ in range(2):
        torch.rand(7)
        rb.append(b.run_round())
    for x, y in zip(ra, rb, strict=True):
        assert torch.equal(x.updates, y.updates)
        assert (x.accuracy, x.loss) == (y.accuracy, y.loss)
    c = make_fed(names, seed=4)
    assert not torch.equal(_run(c)[0].updates, ra[0].updates)


def test_interleaved_federations_do_not_interfere():
    names = ["honest", "honest", "free_rider"]
    solo = _run(make_fed(names, seed=1), 2)
    f1, f2 = make_fed(names, seed=1), make_fed(names, seed=2)
    inter = []
    for _ in range(2):
        inter.append(f1.run_round())
        f2.run_round()
    for x, y in zip(solo, inter, strict=True):
        assert torch.equal(x.updates, y.updates)


def test_client_training_does_not_depend_on_other_clients():
    """Swapping another client's behaviour leaves an honest client's update unchanged."""
    a = make_fed(["honest", "honest", "honest"], seed=2).run_round()
    b = make_fed(["honest", "free_rider", "label_flip"], seed=2).run_round()
    assert torch.equal(a.updates[0], b.updates[0])


def test_free_rider_modes():
    fed = make_fed([
        "honest",
        make_behaviour("free_rider", mode="zero"),
        make_behaviour("free_rider", mode="global"),
        make_behaviour("free_rider", mode="noise", noise_scale=0.01),
    ])
    res = fed.run_round()
    assert torch.all(res.updates[1] == 0) and torch.all(res.updates[2] == 0)
    noise = res.updates[3]
    assert 0.005 < float(noise.std()) < 0.02
    assert float(res.updates[0].abs().sum()) > 0


def test_label_behaviours_corrupt_labels_once():
    train, val, parts = setup_digits(4)
    fed = Federation(
        train, parts, val,
        ["honest", make_behaviour("label_flip"), make_behaviour("noisy_labels", fraction=0.5),
         make_behaviour("label_flip", permutation=[1, 0, 2, 3, 4, 5, 6, 7, 8, 9])],
        seed=0,
    )
    y = [train.y[p] for p in parts]
    assert np.array_equal(fed._y[0].numpy(), y[0])
    assert np.array_equal(fed._y[1].numpy(), 9 - y[1])
    changed = np.mean(fed._y[2].numpy() != y[2])
    assert 0.3 < changed < 0.55  # half redrawn uniformly over 10 classes: ~45% differ
    swapped = np.where(y[3] == 0, 1, np.where(y[3] == 1, 0, y[3]))
    assert np.array_equal(fed._y[3].numpy(), swapped)
    fed2 = Federation(train, parts, val, ["honest", "label_flip", "noisy_labels", "honest"],
                      seed=0)
    assert np.array_equal(fed2._y[2].numpy(), Federation(
        train, parts, val, ["honest", "label_flip", "noisy_labels", "honest"], seed=0
    )._y[2].numpy())
    with pytest.raises(ValueError, match="permutation has 3 entries"):
        Federation(train, parts, val,
                   ["honest", make_behaviour("label_flip", permutation=[2, 1, 0]), "honest",
                    "honest"], seed=0)


def test_small_data_gets_a_smaller_share():
    names = ["honest", "honest", make_behaviour("small_data", size_weight=0.2)]
    w = size_weights(names)
    assert w == [1.0, 1.0, 0.2]
    train, val, parts = setup_digits(3, weights=w)
    fed = Federation(train, parts, val, names, seed=0)
    sizes = fed.client_sizes
    assert sizes[2] < 0.3 * sizes[0]
    res = fed.run_round()
    assert res.weights[2] < 0.15


def test_behaviour_registry_and_validation():
    for name, cls in registry.components("behaviour").items():
        assert issubclass(cls, Behaviour) and cls.name == name
        assert isinstance(make_behaviour(name), cls)
    assert make_behaviour("free_rider").params.model_dump() == {"mode": "zero",
                                                                "noise_scale": 0.01}
    with pytest.raises(ValueError, match="behaviour = 'lazy': allowed values are 'honest'"):
        make_behaviour("lazy")
    with pytest.raises(ValueError, match=r"fraction = 2: input should be less than or equal"):
        make_behaviour("noisy_labels", fraction=2)
    with pytest.raises(ValueError, match=r"mode = 'sleep': allowed values are 'zero', 'global' "):
        make_behaviour("free_rider", mode="sleep")
    with pytest.raises(ValueError, match=r"size_weight = 0: input should be greater than 0"):
        make_behaviour("small_data", size_weight=0)
    with pytest.raises(ValueError, match="unknown parameter"):
        make_behaviour("honest", fraction=0.1)
    with pytest.raises(ValueError, match=r"permutation of 0\.\.n_classes-1"):
        make_behaviour("label_flip", permutation=[0, 0, 1])


def test_federation_validation():
    train, val, parts = setup_digits(2)
    with pytest.raises(ValueError, match="model must be one of"):
        Federation(train, parts, val, ["honest"] * 2, model="resnet", seed=0)
    with pytest.raises(ValueError, match="one each per client"):
        Federation(train, parts, val, ["honest"] * 3, seed=0)
    with pytest.raises(ValueError, match="lr must be a number > 0"):
        Federation(train, parts, val, ["honest"] * 2, lr=0, seed=0)
    with pytest.raises(ValueError, match="local_epochs must be an integer >= 1"):
        Federation(train, parts, val, ["honest"] * 2, local_epochs=0, seed=0)
    with pytest.raises(ValueError, match="metric must be one of"):
        Federation(train, parts, val, ["honest"] * 2, metric="f1", seed=0)
    with pytest.raises(ValueError, match="client 1 has no samples"):
        Federation(train, [parts[0], np.array([], np.int64)], val, ["honest"] * 2, seed=0)


@pytest.mark.parametrize(("model", "metric"), [("logreg", "loss"), ("mlp", "neg_loss")])
def test_models_and_loss_metric(model, metric):
    fed = make_fed(["honest", "honest"], model=model, metric=metric, lr=0.5)
    res = fed.run_round()
    assert res.game(np.ones((1, 2), bool))[0] == pytest.approx(-res.loss)
    assert res.game(np.zeros((1, 2), bool))[0] == pytest.approx(-res.prev_loss)
    assert res.loss < res.prev_loss


def test_cnn_on_digit_images():
    rng = np.random.default_rng(0)
    ds = load_dataset("digits", rng=rng, n_samples=200, image=True)
    train, val = split_validation(ds, 0.2, rng)
    parts = partition(train.y, 2, scheme="iid", rng=rng)
    fed = Federation(train, parts, val, ["honest", "honest"], model="cnn", hidden=8, seed=0)
    res = fed.run_round()
    assert res.updates.shape == (2, fed.n_params)
    with pytest.raises(ValueError, match="image input"):
        tr, va, pa = setup_digits(2)
        Federation(tr, pa, va, ["honest"] * 2, model="cnn", seed=0)


def test_utility_subset_is_stratified_fixed_by_seed_and_used_by_the_game():
    train, val, parts = setup_digits(4, n_samples=1000)
    kw = {"metric": "loss", "utility_samples": 60, "seed": 5}
    fed = Federation(train, parts, val, ["honest"] * 4, **kw)
    again = Federation(train, parts, val, ["honest"] * 4, **kw)
    idx = fed.utility_index
    np.testing.assert_array_equal(idx, again.utility_index)
    assert idx.size == 60 and np.unique(idx).size == 60
    share = np.bincount(val.y[idx], minlength=10) / 60
    np.testing.assert_allclose(share, np.bincount(val.y, minlength=10) / len(val), atol=1 / 60)
    res = fed.run_round()
    assert res.game.y_val.shape == (60,)
    # the coalition utilities use the subset, the global model's loss the whole split
    assert res.game(res.game.grand_mask)[0] == pytest.approx(
        -fed.net.evaluate(res.params, fed.X_utility, fed.y_utility)[1], abs=1e-6)
    assert res.loss == pytest.approx(fed.net.evaluate(res.params, fed.X_val, fed.y_val)[1],
                                     abs=1e-6)
    other = Federation(train, parts, val, ["honest"] * 4, **{**kw, "seed": 6})
    assert not np.array_equal(other.utility_index, idx)


def test_utility_subset_bounds():
    train, val, parts = setup_digits(2)
    whole = Federation(train, parts, val, ["honest"] * 2, utility_samples=len(val), seed=0)
    assert whole.utility_index is None and whole.X_utility is whole.X_val
    with pytest.raises(ValueError, match="smaller than the 10 classes"):
        Federation(train, parts, val, ["honest"] * 2, utility_samples=5, seed=0)


def test_a_round_among_participants_trains_only_them_and_plays_their_game():
    full = make_fed(["honest", "honest", "free_rider", "honest"], lr=0.5)
    part = make_fed(["honest", "honest", "free_rider", "honest"], lr=0.5)
    everyone = full.run_round()
    mask = np.array([True, False, True, True])
    res = part.run_round(mask)
    assert res.participants.tolist() == [0, 2, 3]
    assert res.updates.shape == (3, part.n_params) and res.game.n_players == 3
    # a participant's update does not depend on who else trains
    torch.testing.assert_close(res.updates, everyone.updates[[0, 2, 3]], rtol=0, atol=0)
    sizes = part.client_sizes[[0, 2, 3]]
    np.testing.assert_allclose(res.weights, sizes / sizes.sum())
    assert res.n_samples.tolist() == sizes.tolist()
    assert res.behaviours == ("honest", "free_rider", "honest")
    expected = res.prev_params.double() + torch.from_numpy(res.weights) @ res.updates.double()
    torch.testing.assert_close(res.params.double(), expected, atol=1e-6, rtol=0)
    assert res.game(np.ones((1, 3), bool))[0] == res.accuracy != everyone.accuracy
    # an all-True mask is the plain round
    again = make_fed(["honest", "honest", "free_rider", "honest"], lr=0.5)
    same = again.run_round(np.ones(4, bool))
    torch.testing.assert_close(same.params, everyone.params, rtol=0, atol=0)
    assert same.participants.tolist() == [0, 1, 2, 3]


def test_a_round_without_participants_leaves_the_model_unchanged():
    fed = make_fed(["honest", "honest"], lr=0.5)
    before = fed.params.clone()
    acc, loss = fed.accuracy, fed.loss
    res = fed.run_round(np.zeros(2, bool))
    assert res.game is None and res.updates.shape == (0, fed.n_params)
    assert res.round == fed.round == 1
    assert (res.accuracy, res.loss, res.prev_accuracy) == (acc, loss, acc)
    torch.testing.assert_close(fed.params, before, rtol=0, atol=0)
    # the next round is round 2 for every client's generator, as if round 1 had trained
    nxt = fed.run_round()
    ref = make_fed(["honest", "honest"], lr=0.5)
    ref.round = 1
    torch.testing.assert_close(nxt.updates[0], ref.client_update(0), rtol=0, atol=0)


@pytest.mark.parametrize("mask", [np.ones(3, bool), [1, 0], np.ones(2, int)])
def test_a_participants_mask_of_the_wrong_shape_or_type_is_refused(mask):
    fed = make_fed(["honest", "honest"])
    with pytest.raises(ValueError, match="participants must be a bool array of shape"):
        fed.run_round(mask)
