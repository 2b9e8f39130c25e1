"""Contribution methods: registry, parameter validation, semantics, misbehaving clients,
and the approximations against exact Shapley on real FL rounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abm import registry
from abm.fl import (
    ContributionMethod,
    Federation,
    RoundResult,
    load_dataset,
    make_contribution_method,
    partition,
    split_validation,
)
from abm.fl.shapley import exact_shapley


def federation(names, *, seed=0, metric="accuracy", n_samples=None, **kw):
    rng = np.random.default_rng(seed)
    ds = load_dataset("digits", rng=rng, n_samples=n_samples)
    train, val = split_validation(ds, 0.25, rng)
    parts = partition(train.y, len(names), scheme="iid", rng=rng)
    return Federation(train, parts, val, names, metric=metric, seed=seed, **kw)


def method(name, seed=0, **params):
    return make_contribution_method(name, rng=np.random.default_rng(seed), **params)


MIXED = ["honest", "honest", "honest", "free_rider", "label_flip"]


def test_every_method_builds_with_its_declared_defaults():
    for name, cls in registry.components("method").items():
        assert issubclass(cls, ContributionMethod) and cls.name == name
        m = method(name)
        assert m.params == cls.Params() and m.evaluations_last_round == 0
    assert registry.get("method", "gtg_shapley").Params().model_dump() == {
        "eps_between": 0.001, "eps_within": 0.001, "max_permutations": 100,
        "min_permutations": 30, "convergence_tol": 0.05, "last_k": 10, "prefix_block": 0,
    }
    assert method("shapley_mc", truncation_tol=0).params.truncation_tol == 0.0


@pytest.mark.parametrize(("name", "params", "match"), [
    ("gtg_shapley", {"eps_within": -0.1}, r"eps_within = -0.1: input should be greater than "
     r"or equal to 0"),
    ("gtg_shapley", {"max_permutations": 0}, r"max_permutations = 0: input should be greater"),
    ("shapley_mc", {"convergence_tol": 0}, r"convergence_tol = 0: input should be greater than 0"),
    ("shapley_mc", {"truncation_tol": "big"}, r"truncation_tol = 'big': input should be a "
     r"valid number"),
    ("data_size", {"alpha": 1}, r"alpha = 1: unknown parameter of method 'data_size' "
     r"\(allowed: none\)"),
    ("shapley_mc", {"eps": 1}, r"allowed: min_permutations, convergence_tol, last_k, "
     r"prefix_block, truncation_tol, max_permutations, batch"),
])
def test_bad_params_are_refused_up_front(name, params, match):
    with pytest.raises(ValueError, match=match):
        method(name, **params)


def test_unknown_method():
    with pytest.raises(ValueError, match="method = 'banzhaf': allowed values are 'data_size', "):
        method("banzhaf")


def test_data_size_cosine_and_leave_one_out_semantics():
    fed = federation(MIXED, n_samples=700)
    res = fed.run_round()
    ds = method("data_size")(res)
    np.testing.assert_allclose(ds, fed.client_sizes / fed.client_sizes.sum())
    assert ds.sum() == pytest.approx(1.0)

    cos = method("cosine")(res)
    assert cos.shape == (5,) and cos[3] == 0.0  # zero update
    assert np.all(cos[:3] > 0.3) and cos[4] < cos[:3].min()
    # against the aggregate of the others, never one that contains the update itself
    U, w = res.updates.double(), torch.from_numpy(res.weights)
    u, others = U[0], w[1:] @ U[1:]
    assert cos[0] == pytest.approx(float(u @ others / (u.norm() * others.norm())), abs=1e-12)

    loo = method("leave_one_out")
    vals = loo(res)
    full = res.game(np.ones((1, 5), bool))[0]
    for i in range(5):
        m = np.ones((1, 5), bool)
        m[0, i] = False
        assert vals[i] == pytest.approx(full - res.game(m)[0], abs=0)
    assert loo.evaluations_last_round == 6


def test_exact_shapley_method_is_efficient_and_counts():
    res = federation(MIXED, n_samples=700).run_round()
    m = method("shapley_exact")
    phi = m(res)
    assert m.evaluations_last_round == 32
    assert phi.sum() == pytest.approx(res.accuracy - res.prev_accuracy, abs=1e-12)
    np.testing.assert_array_equal(phi, exact_shapley(res.game, 5))


def test_exact_refuses_more_than_16_clients():
    n, p = 17, 3
    res = RoundResult(round=1, updates=torch.zeros(n, p), weights=np.full(n, 1 / n),
                      game=lambda m: np.zeros(len(m)), accuracy=0.0, loss=0.0,
                      prev_accuracy=0.0, prev_loss=0.0)
    with pytest.raises(ValueError, match=r"17 clients exceed the limit of 16"):
        method("shapley_exact")(res)


def test_gtg_between_round_truncation_on_a_stalled_round():
    res = federation(["free_rider"] * 3, n_samples=400).run_round()  # nothing changes
    m = method("gtg_shapley")
    np.testing.assert_array_equal(m(res), np.zeros(3))
    assert m.evaluations_last_round == 2 and m.info_last_round["truncated_round"]


@pytest.mark.parametrize("name", ["shapley_exact", "gtg_shapley", "shapley_mc", "leave_one_out"])
def test_misbehaving_clients_get_less_than_honest(name):
    """Small seeded run, loss utility: over 3 rounds, the free rider and the label flipper
    each get less than every honest client. (With the accuracy utility and noisy early
    models, a zero update can look useful: averaging it in shrinks a noisy step.)"""
    names = ["honest"] * 4 + ["free_rider", "label_flip"]
    fed = federation(names, seed=3, metric="loss")
    m = method(name, seed=3)
    total = np.zeros(6)
    for _ in range(3):
        total += m(fed.run_round())
    assert total[4] < total[:4].min() and total[5] < total[:4].min(), total


def test_methods_are_deterministic_given_rng():
    fa = federation(MIXED, seed=1, n_samples=600)
    fb = federation(MIXED, seed=1, n_samples=600)
    ra, rb = fa.run_round(), fb.run_round()
    for name in ("gtg_shapley", "shapley_mc"):
        np.testing.assert_array_equal(method(name, seed=9)(ra), method(name, seed=9)(rb))


@pytest.fixture(scope="module")
def eight_client_rounds():
    out = []
    for metric in ("accuracy", "loss"):
        names = ["honest"] * 5 + ["free_rider", "label_flip", "noisy_labels"]
        fed = federation(names, seed=2, metric=metric)
        fed.run_round()
        res = fed.run_round()
        out.append((metric, res, exact_shapley(res.game, 8)))
    return out


def test_approximations_against_exact_default_params(eight_client_rounds):
    """Stated tolerance, default parameters, a seeded 8-client digits round: the largest
    error is at most 35% of the largest exact value, with fewer than 2**8 evaluations."""
    for metric, res, exact in eight_client_rounds:
        scale = np.abs(exact).max()
        for name in ("gtg_shapley", "shapley_mc"):
            m = method(name, seed=2)
            est = m(res)
            err = np.abs(est - exact).max() / scale
            assert err <= 0.35, (metric, name, err)
            assert 0 < m.evaluations_last_round < 256
            assert m.info_last_round["permutations"] >= 30


def test_approximations_converge_with_more_permutations(eight_client_rounds):
    """Stated tolerance: without truncation and with 400 permutations, the largest error is
    at most 10% (GTG, guided) and 20% (MC) of the largest exact value."""
    for metric, res, exact in eight_client_rounds:
        scale = np.abs(exact).max()
        gtg = method("gtg_shapley", seed=2, eps_within=0.0, min_permutations=400,
                     max_permutations=400)(res)
        mc = method("shapley_mc", seed=2, truncation_tol=0.0, min_permutations=400,
                    max_permutations=400)(res)
        assert np.abs(gtg - exact).max() / scale <= 0.10, metric
        assert np.abs(mc - exact).max() / scale <= 0.20, metric
