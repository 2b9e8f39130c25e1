"""Datasets, the validation split, parameter specs, and the library's import boundary."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from abm.fl import Dataset, load_dataset, split_validation


def rng(seed=0):
    return np.random.default_rng(seed)


def test_digits_default_shape_and_scale():
    ds = load_dataset("digits", rng=rng())
    assert ds.X.shape == (1797, 64) and ds.X.dtype == np.float32
    assert ds.y.shape == (1797,) and ds.y.dtype == np.int64
    assert ds.n_classes == 10 and ds.name == "digits"
    assert ds.X.min() == 0.0 and ds.X.max() == 1.0
    img = load_dataset("digits", rng=rng(), image=True)
    assert img.X.shape == (1797, 1, 8, 8) and img.input_shape == (1, 8, 8)


@pytest.mark.parametrize(("name", "shape", "classes"), [
    ("breast_cancer", (569, 30), 2),
    ("wine", (178, 13), 3),
])
def test_tabular_sets_are_standardised(name, shape, classes):
    ds = load_dataset(name, rng=rng())
    assert ds.X.shape == shape and ds.n_classes == classes
    np.testing.assert_allclose(ds.X.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.X.std(0), 1, atol=1e-4)


def _holdout_accuracy(ds: Dataset) -> float:
    from sklearn.linear_model import LogisticRegression

    half = len(ds) // 2
    clf = LogisticRegression(max_iter=300).fit(ds.X[:half], ds.y[:half])
    return clf.score(ds.X[half:], ds.y[half:])


def test_synthetic_separation_and_flipped_labels_control_difficulty():
    easy = load_dataset("synthetic", rng=rng(1), n_samples=600, class_sep=2.6)
    hard = load_dataset("synthetic", rng=rng(1), n_samples=600, class_sep=0.1, flip_y=0.1)
    assert easy.X.shape == (600, 20) and easy.n_classes == 4
    assert _holdout_accuracy(easy) > _holdout_accuracy(hard) + 0.2
    custom = load_dataset("synthetic", rng=rng(), n_samples=100, n_features=5, n_classes=3)
    assert custom.X.shape == (100, 5) and set(np.unique(custom.y)) == {0, 1, 2}
    sep = load_dataset("synthetic", rng=rng(1), n_samples=600, class_sep=3.0)
    assert _holdout_accuracy(sep) > _holdout_accuracy(hard) + 0.2
    with pytest.raises(ValueError, match="class_sep = 0: input should be greater than 0"):
        load_dataset("synthetic", rng=rng(), class_sep=0)
    a = load_dataset("synthetic", rng=rng(5), n_samples=50)
    b = load_dataset("synthetic", rng=rng(5), n_samples=50)
    np.testing.assert_array_equal(a.X, b.X)


def test_n_samples_subsamples_deterministically():
    a = load_dataset("digits", rng=rng(3), n_samples=300)
    b = load_dataset("digits", rng=rng(3), n_samples=300)
    assert len(a) == 300
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)


def test_dataset_errors_name_the_problem():
    with pytest.raises(ValueError, match="name = 'mnist': allowed values are 'digits'"):
        load_dataset("mnist", rng=rng())
    with pytest.raises(ValueError, match="unknown parameter of dataset 'digits'"):
        load_dataset("digits", rng=rng(), colour=True)
    with pytest.raises(ValueError, match=r"flip_y = 2: input should be less than or equal"):
        load_dataset("synthetic", rng=rng(), flip_y=2)
    with pytest.raises(ValueError, match=r"too small for n_classes=8"):
        load_dataset("synthetic", rng=rng(), n_features=2, n_classes=8)
    with pytest.raises(ValueError, match="n_samples"):
        load_dataset("digits", rng=rng(), n_samples=0)
    with pytest.raises(ValueError, match="labels"):
        Dataset(np.zeros((2, 3)), np.array([0, 5]), 3, "x")


def test_split_validation_is_stratified_disjoint_and_seeded():
    ds = load_dataset("digits", rng=rng())
    train, val = split_validation(ds, 0.2, rng(7))
    assert len(val) == round(0.2 * 1797) and len(train) + len(val) == 1797
    # every sample lands in exactly one split: compare row multisets via a hash
    rows = {r.tobytes() + bytes([c]) for r, c in zip(ds.X, ds.y, strict=True)}
    split_rows = [r.tobytes() + bytes([c]) for r, c in zip(train.X, train.y, strict=True)]
    split_rows += [r.tobytes() + bytes([c]) for r, c in zip(val.X, val.y, strict=True)]
    assert set(split_rows) == rows
    share = val.class_counts() / ds.class_counts()
    assert np.all(np.abs(share - 0.2) < 0.03)
    _, val2 = split_validation(ds, 0.2, rng(7))
    np.testing.assert_array_equal(val.X, val2.X)
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"fraction must lie in \(0, 1\)"):
            split_validation(ds, bad, rng())


@pytest.mark.slow
def test_library_imports_neither_mesa_nor_amm():
    code = (
        "import sys, abm.fl, abm.fl.cifar, abm.fl.shapley, abm.fl.contribution\n"
        "bad = [m for m in sys.modules if m == 'mesa' or m.startswith('mesa.')"
        " or m.startswith('abm.amm')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
