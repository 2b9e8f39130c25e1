"""Lockstep local training (all clients' SGD steps batched) against the reference path.

The reference is `Federation._local_sgd`: one client at a time, one autograd step per batch.
The lockstep path computes the same function's gradient analytically and sums it in another
order, so the two agree up to float32 rounding: measured, the largest difference is
5e-7 to 2.6e-6 of the largest update coordinate over the cases below (rounds 1-3), 1.1e-6
to 1.7e-6 in the baseline's setting; the tests allow `TOL = 1e-5`. Where the same
floating-point operations run (a participant with or without the others, two federations
of one seed, the cnn's path) they check bit-identity.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abm.fl import Federation, load_dataset, make_behaviour, partition, split_validation
from abm.fl.behaviours import Behaviour

TOL = 1e-5  # max |lockstep - reference| / max |reference update|


def digits_fed(behaviours, *, scheme="dirichlet", seed=0, n_samples=500, weights=None, **kw):
    rng = np.random.default_rng(seed)
    ds = load_dataset("digits", rng=rng, n_samples=n_samples)
    train, val = split_validation(ds, 0.2, rng)
    extra = {"alpha": 0.5} if scheme == "dirichlet" else {}
    parts = partition(train.y, len(behaviours), scheme=scheme, rng=rng, size_weights=weights,
                      **extra)
    return Federation(train, parts, val, behaviours, seed=seed, **kw)


def both_paths(fed: Federation, clients=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(lockstep, reference) honest updates of ``clients`` from the current global model."""
    clients = list(range(fed.n_clients)) if clients is None else clients
    out = []
    for reference in (False, True):
        fed._reference_training = reference
        out.append(fed._train(clients, fed.params, [fed._generator(i) for i in clients]))
    fed._reference_training = False
    return out[0], out[1]


def rel_diff(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("model", ["logreg", "mlp"])
@pytest.mark.parametrize(("scheme", "epochs", "batch_size"), [
    ("iid", 1, 32),  # equal sizes (80 samples each: a partial last batch of 16)
    ("dirichlet", 1, 32),  # unequal sizes: different numbers of steps, partial batches
    ("dirichlet", 3, 25),  # several epochs; a batch size that is no multiple of 16
])
def test_lockstep_equals_the_reference_over_rounds(model, scheme, epochs, batch_size):
    fed = digits_fed(["honest"] * 5, scheme=scheme, model=model, hidden=16,
                     local_epochs=epochs, batch_size=batch_size, lr=0.3)
    sizes = fed.client_sizes
    if scheme == "iid":
        assert len(set(sizes.tolist())) == 1 and sizes[0] % batch_size
    else:
        assert len(set((-(-sizes // batch_size)).tolist())) > 1  # clients drop out
    for _ in range(3):  # later rounds start from trained models
        fast, ref = both_paths(fed)
        assert fast.shape == ref.shape == (5, fed.n_params)
        assert rel_diff(fast, ref) <= TOL
        res = fed.run_round()
        assert torch.equal(res.updates, fast)  # the round used the lockstep updates


def test_a_client_smaller_than_a_batch_and_a_batch_of_one():
    fed = digits_fed(["honest", make_behaviour("small_data", size_weight=0.02), "honest"],
                     weights=[1.0, 0.02, 1.0], model="mlp", batch_size=32)
    assert fed.client_sizes[1] < 32
    fast, ref = both_paths(fed)
    assert rel_diff(fast, ref) <= TOL
    ones = digits_fed(["honest"] * 2, n_samples=100, model="logreg", batch_size=1)
    fast, ref = both_paths(ones)
    assert rel_diff(fast, ref) <= TOL


@pytest.mark.parametrize("model", ["logreg", "mlp"])
def test_a_participants_update_is_bit_identical_whoever_else_trains(model):
    """Padding fixes each client's shapes, and every per-client matrix is 64-byte aligned
    wherever it sits in the stack, so its floats do not depend on the others."""
    names = ["honest"] * 6
    kw = {"model": model, "hidden": 24, "batch_size": 20, "local_epochs": 2, "lr": 0.3}
    everyone = digits_fed(names, **kw).run_round()
    for mask in ([1, 0, 1, 1, 0, 1], [0, 0, 0, 1, 0, 0], [0, 1, 1, 1, 1, 1],
                 [1, 1, 0, 0, 0, 0]):
        mask = np.array(mask, bool)
        res = digits_fed(names, **kw).run_round(mask)
        assert torch.equal(res.updates, everyone.updates[mask])
    alone = digits_fed(names, **kw)
    for i in range(6):
        assert torch.equal(alone.client_update(i), everyone.updates[i])


class HalfStep(Behaviour):
    """Test behaviour that overrides ``update``: half of its honest update (no ``name``:
    not registered, so the rest of the suite sees the built-in registry)."""

    def update(self, train, global_params, generator):
        return 0.5 * train()


class DrawsFirst(Behaviour):
    """Test behaviour that draws from its generator before it trains (other batches)."""

    def update(self, train, global_params, generator):
        torch.rand(3, generator=generator)
        return train()


def test_behaviours_on_the_lockstep_path():
    names = [
        "honest",
        make_behaviour("label_flip"),
        make_behaviour("noisy_labels", fraction=0.5),
        make_behaviour("free_rider", mode="noise", noise_scale=0.01),
        make_behaviour("free_rider", mode="zero"),
        make_behaviour("small_data", size_weight=0.3),
        HalfStep(),
        DrawsFirst(),
    ]
    weights = [1, 1, 1, 1, 1, 0.3, 1, 1]
    fast = digits_fed(names, weights=weights, model="mlp", lr=0.3)
    ref = digits_fed(names, weights=weights, model="mlp", lr=0.3)
    ref._reference_training = True
    a, b = fast.run_round(), ref.run_round()
    trainers = [0, 1, 2, 5, 6, 7]
    assert rel_diff(a.updates[trainers], b.updates[trainers]) <= TOL
    # free riders never train: their updates are the same floats on both paths
    assert torch.equal(a.updates[3], b.updates[3]) and torch.all(a.updates[4] == 0)
    # the corrupted labels are the training labels of the lockstep path too
    honest_like = digits_fed(["honest"] * 8, weights=weights, model="mlp", lr=0.3).run_round()
    assert not torch.equal(a.updates[1], honest_like.updates[1])
    assert not torch.equal(a.updates[2], honest_like.updates[2])
    # an overriding behaviour's train() is the client's own honest update, bit for bit
    assert torch.equal(a.updates[6], 0.5 * honest_like.updates[6])
    # ... from its generator as it is when it calls train(): other batches than honest
    assert not torch.equal(a.updates[7], honest_like.updates[7])


def test_same_seed_same_updates_and_tables():
    names = ["honest", "label_flip", "honest", make_behaviour("small_data", size_weight=0.2)]
    kw = {"weights": [1, 1, 1, 0.2], "model": "mlp", "local_epochs": 2, "batch_size": 24,
          "seed": 7}
    a, b = digits_fed(names, **kw), digits_fed(names, **kw)
    for _ in range(3):
        ra, rb = a.run_round(), b.run_round()
        assert torch.equal(ra.updates, rb.updates) and torch.equal(ra.params, rb.params)
        assert (ra.accuracy, ra.loss) == (rb.accuracy, rb.loss)
    other = digits_fed(names, **{**kw, "seed": 8}).run_round()
    assert not torch.equal(other.updates, ra.updates)


def test_the_cnn_trains_on_the_reference_path():
    """Measured: a lockstep CNN step (``torch.func.vmap`` of ``grad``, grouped convolutions)
    costs 2-2.7x the per-client loop on CIFAR-shaped batches, so the cnn keeps the loop."""
    rng = np.random.default_rng(0)
    ds = load_dataset("digits", rng=rng, n_samples=120, image=True)
    train, val = split_validation(ds, 0.2, rng)
    parts = partition(train.y, 2, scheme="iid", rng=rng)
    fed = Federation(train, parts, val, ["honest"] * 2, model="cnn", hidden=8, seed=0)
    assert not fed.net.batched_sgd
    fast, ref = both_paths(fed)
    assert torch.equal(fast, ref)


def test_train_state_round_trips_and_pads_to_whole_alignment_units():
    from abm.fl.nets import TRAIN_ALIGN, make_net

    for kind, shape in (("logreg", (64,)), ("mlp", (64,)), ("mlp", (7, 3))):
        net = make_net(kind, shape, 10, hidden=13)
        P = net.init_params(torch.Generator().manual_seed(1)).expand(3, -1).clone()
        state = net.train_state(P)
        assert all(A.is_contiguous() and A[0].numel() % TRAIN_ALIGN == 0 for A in state)
        assert torch.equal(net.train_params(state), P)
        assert net.train_inputs(torch.ones(5, *shape)).shape == (5, state[0].shape[1])
