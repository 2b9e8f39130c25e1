"""Partitioners (iid, dirichlet label skew, quantity skew) and per-client label noise."""

from __future__ import annotations

import numpy as np
import pytest

from abm.fl import apply_label_noise, partition


def _labels(n=1000, classes=10, seed=0):
    return np.random.default_rng(seed).integers(0, classes, size=n)


def _check_cover(parts, n, min_size=1):
    allidx = np.concatenate(parts)
    assert allidx.size == n
    np.testing.assert_array_equal(np.sort(allidx), np.arange(n))
    assert all(p.dtype == np.int64 for p in parts)
    assert min(p.size for p in parts) >= min_size


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "quantity_skew"])
def test_every_scheme_covers_each_sample_once_and_is_seeded(scheme):
    y = _labels()
    a = partition(y, 7, scheme=scheme, rng=np.random.default_rng(1), alpha=0.3, min_size=5)
    b = partition(y, 7, scheme=scheme, rng=np.random.default_rng(1), alpha=0.3, min_size=5)
    c = partition(y, 7, scheme=scheme, rng=np.random.default_rng(2), alpha=0.3, min_size=5)
    _check_cover(a, y.size, 5)
    assert len(a) == 7
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c, strict=True))


def test_iid_sizes_equal_and_size_weights():
    y = _labels(1000)
    sizes = [p.size for p in partition(y, 4, scheme="iid", rng=np.random.default_rng(0))]
    assert sizes == [250, 250, 250, 250]
    parts = partition(
        y, 4, scheme="iid", rng=np.random.default_rng(0), size_weights=[1, 1, 1, 0.25]
    )
    sizes = [p.size for p in parts]
    assert sum(sizes) == 1000
    assert sizes[3] == pytest.approx(1000 * 0.25 / 3.25, abs=1)
    assert sizes[0] == pytest.approx(1000 / 3.25, abs=1)


def test_quantity_skew_unequal_sizes_with_balanced_labels():
    y = _labels(2000)
    parts = partition(y, 5, scheme="quantity_skew", rng=np.random.default_rng(0), alpha=0.5)
    sizes = np.array([p.size for p in parts])
    assert sizes.max() > 2 * sizes.min()
    # size weights scale expected sizes: a small client is small on average
    small = []
    for s in range(20):
        parts = partition(
            y, 5, scheme="quantity_skew", rng=np.random.default_rng(s), alpha=5.0,
            size_weights=[1, 1, 1, 1, 0.2],
        )
        small.append(parts[4].size / np.mean([p.size for p in parts[:4]]))
    assert np.mean(small) < 0.4


def _label_concentration(parts, y, classes=10):
    shares = []
    for p in parts:
        counts = np.bincount(y[p], minlength=classes)
        shares.append(counts.max() / counts.sum())
    return float(np.mean(shares))


def test_dirichlet_skews_labels_more_for_small_alpha():
    y = _labels(3000)
    skewed = partition(y, 10, scheme="dirichlet", rng=np.random.default_rng(0), alpha=0.1)
    mild = partition(y, 10, scheme="dirichlet", rng=np.random.default_rng(0), alpha=100.0)
    iid = partition(y, 10, scheme="iid", rng=np.random.default_rng(0))
    assert _label_concentration(skewed, y) > 0.5
    assert _label_concentration(mild, y) < 0.2
    assert _label_concentration(iid, y) < 0.2


def test_dirichlet_with_size_weights_and_min_size_repair():
    y = _labels(2000)
    ratio = []
    for s in range(10):
        parts = partition(
            y, 4, scheme="dirichlet", rng=np.random.default_rng(s), alpha=1.0,
            size_weights=[1, 1, 1, 0.2],
        )
        ratio.append(parts[3].size / np.mean([p.size for p in parts[:3]]))
    assert np.mean(ratio) < 0.5
    # Very small alpha with many clients: min_size is still met.
    parts = partition(_labels(300), 30, scheme="dirichlet", rng=np.random.default_rng(0),
                      alpha=0.01, min_size=5)
    _check_cover(parts, 300, 5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scheme": "nope"}, "scheme must be one of"),
        ({"scheme": "iid", "alpha": 0}, "alpha must be a number > 0"),
        ({"scheme": "iid", "size_weights": [1, 2]}, "one entry per client"),
        ({"scheme": "iid", "size_weights": [1, 0, 1]}, "finite and > 0"),
        ({"scheme": "iid", "min_size": 500}, "exceeds"),
        ({"scheme": "iid", "min_size": -1}, "min_size must be an integer >= 0"),
    ],
)


def test_partition_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        partition(_labels(100), 3, rng=np.random.default_rng(0), **kwargs)
    with pytest.raises(ValueError, match="n_clients"):
        partition(_labels(100), 0, scheme="iid", rng=np.random.default_rng(0))


def test_label_noise_replaces_a_fraction_uniformly():
    y = np.zeros(1000, dtype=np.int64)
    noisy = apply_label_noise(y, 0.3, 10, np.random.default_rng(0))
    assert y.sum() == 0  # input untouched
    changed = np.count_nonzero(noisy != y)
    # 300 labels redrawn uniformly over 10 classes: about 270 differ
    assert 230 <= changed <= 300
    assert noisy.min() >= 0 and noisy.max() <= 9
    again = apply_label_noise(y, 0.3, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(noisy, again)
    np.testing.assert_array_equal(apply_label_noise(y, 0.0, 10, np.random.default_rng(0)), y)
    with pytest.raises(ValueError, match=r"fraction must lie in \[0, 1\]"):
        apply_label_noise(y, 1.5, 10, np.random.default_rng(0))


def _dirichlet_reference(y, n_clients, rng, alpha, w, min_size):
    """The dirichlet scheme as first written (a Python loop over classes x clients per
    attempt, a list scan per repaired sample): what the vectorised partition must equal."""
    by_class = [np.flatnonzero(y == c) for c in np.unique(y)]
    parts = []
    for _attempt in range(100):
        parts = [[] for _ in range(n_clients)]
        for idx in by_class:
            idx = idx[rng.permutation(idx.size)]
            p = rng.dirichlet(np.full(n_clients, float(alpha))) * w
            p = p / p.sum()
            cuts = (np.cumsum(p)[:-1] * idx.size).astype(np.int64)
            for j, chunk in enumerate(np.split(idx, cuts)):
                parts[j].append(chunk)
        if min(sum(c.size for c in cl) for cl in parts) >= min_size:
            break
    out = [np.concatenate(cl) if cl else np.zeros(0, np.int64) for cl in parts]
    for j in range(n_clients):
        while out[j].size < min_size:
            big = int(np.argmax([o.size for o in out]))
            take = int(rng.integers(out[big].size))
            out[j] = np.append(out[j], out[big][take])
            out[big] = np.delete(out[big], take)
    return [np.sort(o.astype(np.int64)) for o in out]


@pytest.mark.parametrize(("n", "classes", "clients", "alpha", "min_size", "weighted"), [
    (1000, 10, 7, 0.3, 5, False),     # met at the first attempts
    (300, 10, 30, 0.01, 5, False),    # 100 attempts fail: the repair moves samples
    (2000, 4, 200, 0.5, 8, True),     # many clients, size weights
    (4000, 3, 400, 5.0, 8, False),
    (500, 1, 20, 0.5, 2, False),      # one class
])
def test_dirichlet_equals_its_reference(n, classes, clients, alpha, min_size, weighted):
    y = _labels(n, classes, seed=3)
    w = np.linspace(0.2, 1.0, clients) if weighted else np.ones(clients)
    got = partition(y, clients, scheme="dirichlet", rng=np.random.default_rng(11),
                    alpha=alpha, size_weights=w if weighted else None, min_size=min_size)
    want = _dirichlet_reference(y, clients, np.random.default_rng(11), alpha, w, min_size)
    assert len(got) == len(want) == clients
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
