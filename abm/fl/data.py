"""Datasets for the learning core (offline only).

``load_dataset(name, *, rng, path=None, n_samples=None, **options) -> Dataset``

Each dataset is a registered component (`abm.registry`, kind ``dataset``): a
:class:`DatasetSource` subclass with a ``name``, a ``Params`` model (its options) and
``load(rng)``. The built-in sources are the classes below: ``digits``, ``breast_cancer``,
``wine`` (scikit-learn's bundled sets), ``synthetic`` (``make_classification``) and
``cifar10`` (a local copy, see :mod:`abm.fl.cifar`) and ``cifar10_standin`` (CIFAR-shaped
synthetic images, for when no copy is at hand). ``n_samples`` (every source) draws that
many samples without replacement with ``rng`` (``synthetic`` generates that many instead).
``rng`` is a ``numpy.random.Generator``. Nothing here imports torch.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import field_validator, model_validator

from abm import registry
from abm.registry import Component, param
from abm.registry import Params as _Params

__all__ = [
    "Dataset",
    "DatasetSource",
    "load_dataset",
    "split_validation",
]


@dataclass(frozen=True)
class Dataset:
    """A labelled dataset: ``X`` float32 ``(n, ...)``, ``y`` int64 ``(n,)`` in
    ``[0, n_classes)``."""

    X: np.ndarray
    y: np.ndarray
    n_classes: int
    name: str

    def __post_init__(self) -> None:
        X = np.ascontiguousarray(self.X, dtype=np.float32)
        y = np.ascontiguousarray(self.y, dtype=np.int64)
        if y.ndim != 1:
            raise ValueError(f"Dataset {self.name!r}: y must be 1-D, got shape {y.shape}")
        if X.ndim < 2 or X.shape[0] != y.shape[0]:
            raise ValueError(
                f"Dataset {self.name!r}: X must have shape (n, ...) with n == len(y) "
                f"({y.shape[0]}), got {X.shape}"
            )
        if int(self.n_classes) < 2:
            raise ValueError(f"Dataset {self.name!r}: n_classes must be >= 2")
        if y.size and (y.min() < 0 or y.max() >= self.n_classes):
            raise ValueError(
                f"Dataset {self.name!r}: labels must lie in [0, {self.n_classes - 1}]"
            )
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "n_classes", int(self.n_classes))

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample."""
        return tuple(self.X.shape[1:])

    def subset(self, idx: np.ndarray) -> Dataset:
        """The samples at ``idx`` (a copy)."""
        idx = np.asarray(idx, dtype=np.int64)
        return Dataset(self.X[idx], self.y[idx], self.n_classes, self.name)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=self.n_classes)


def _standardize(X: np.ndarray) -> np.ndarray:
    mu = X.mean(axis=0)
    sd = X.std(axis=0)
    sd[sd == 0] = 1.0
    return (X - mu) / sd


def _subsample(ds: Dataset, n_samples: int | None, rng: np.random.Generator) -> Dataset:
    if n_samples is None or n_samples >= len(ds):
        return ds
    idx = np.sort(rng.choice(len(ds), size=n_samples, replace=False))
    return ds.subset(idx)


class _SourceParams(_Params):
    n_samples: int | None = param(
        None, "use this many samples, drawn at random (synthetic: generate this many); "
        "none: the whole set", unit="samples", ge=10, le=10_000_000,
    )


class DatasetSource(Component):
    """Base class: where a federation's data comes from. ``load(rng) -> Dataset``."""

    kind = "dataset"
    Params = _SourceParams
    #: samples in the whole set (None: set by the parameters or unknown before loading);
    #: the scenario schema checks that every client can get enough of them
    size: ClassVar[int | None] = None
    #: shape of one sample when it is an image the CNN accepts (None: not such an image)
    image_shape: ClassVar[tuple[int, ...] | None] = None
    #: number of classes (None: set by the parameters)
    classes: ClassVar[int | None] = None

    @abstractmethod
    def load(self, rng: np.random.Generator) -> Dataset:
        """The dataset (subsampled to ``n_samples`` with ``rng`` where asked)."""

    def n_classes(self) -> int | None:
        """Classes of the loaded set, when known without loading."""
        return self.classes

    def expected_size(self) -> int | None:
        """Samples the loaded set will hold, when known without loading."""
        n = self.params.n_samples
        return self.size if n is None else (n if self.size is None else min(n, self.size))


def _bundled_table(source: DatasetSource, raw: Any, rng: np.random.Generator) -> Dataset:
    """A scikit-learn bundled table, features standardised, subsampled as asked."""
    X = _standardize(raw.data.astype(np.float64)).astype(np.float32)
    ds = Dataset(X, raw.target, int(raw.target.max()) + 1, source.name)
    return _subsample(ds, source.params.n_samples, rng)


class Digits(DatasetSource):
    """scikit-learn's bundled 8x8 handwritten digits: 1,797 samples, 10 classes, pixels
    scaled to [0, 1]."""

    name = "digits"
    size = 1797
    classes = 10

    class Params(_SourceParams):
        image: bool = param(False, "shape (n, 1, 8, 8) instead of (n, 64)")

    def load(self, rng):
        from sklearn.datasets import load_digits

        raw = load_digits()
        X = raw.data.astype(np.float32) / 16.0
        if self.params.image:
            X = X.reshape(-1, 1, 8, 8)
        return _subsample(Dataset(X, raw.target, 10, "digits"), self.params.n_samples, rng)


class BreastCancer(DatasetSource):
    """scikit-learn's bundled breast-cancer set: 569 samples x 30 features, 2 classes,
    features standardised (z-score over the whole set)."""

    name = "breast_cancer"
    size = 569
    classes = 2

    def load(self, rng):
        from sklearn.datasets import load_breast_cancer

        return _bundled_table(self, load_breast_cancer(), rng)


class Wine(DatasetSource):
    """scikit-learn's bundled wine set: 178 samples x 13 features, 3 classes, features
    standardised."""

    name = "wine"
    size = 178
    classes = 3

    def load(self, rng):
        from sklearn.datasets import load_wine

        return _bundled_table(self, load_wine(), rng)


class Synthetic(DatasetSource):
    """scikit-learn's make_classification with a controllable difficulty: one Gaussian
    cluster per class, half the features informative, class separation `class_sep` and a
    share `flip_y` of labels flipped at random."""

    name = "synthetic"

    class Params(_SourceParams):
        n_features: int = param(20, "features per sample", ge=2, le=4096)
        n_classes: int = param(4, "classes", ge=2, le=100)
        class_sep: float = param(1.0, "distance between class centres; larger is easier",
                                 gt=0, le=10)
        flip_y: float = param(0.0, "share of labels assigned at random", unit="fraction",
                              ge=0, le=0.5)

        @model_validator(mode="after")
        def _enough_features(self):
            if 2 ** _informative(self.n_features, self.n_classes) < self.n_classes:
                raise ValueError(f"n_features={self.n_features} is too small for "
                                 f"n_classes={self.n_classes}")
            return self

    def expected_size(self) -> int:
        return 2000 if self.params.n_samples is None else self.params.n_samples

    def n_classes(self) -> int:
        return self.params.n_classes

    def load(self, rng):
        from sklearn.datasets import make_classification

        p = self.params
        X, y = make_classification(
            n_samples=self.expected_size(),
            n_features=p.n_features,
            n_informative=_informative(p.n_features, p.n_classes),
            n_redundant=0,
            n_classes=p.n_classes,
            n_clusters_per_class=1,
            class_sep=p.class_sep,
            flip_y=p.flip_y,
            random_state=int(rng.integers(2**31 - 1)),
        )
        return Dataset(_standardize(X).astype(np.float32), y, p.n_classes, "synthetic")


def _informative(n_features: int, n_classes: int) -> int:
    return min(n_features, max(2, n_features // 2, math.ceil(math.log2(n_classes))))


class Cifar10(DatasetSource):
    """A local copy of CIFAR-10 (never downloaded): 32x32 colour images, 10 classes, read
    from the python or binary version (the folder or its .tar.gz archive) without unpickling
    code."""

    name = "cifar10"
    image_shape = (3, 32, 32)
    classes = 10

    class Params(_SourceParams):
        path: str = param(..., "the CIFAR-10 folder or .tar.gz archive (relative: from the "
                          "current directory)", min_length=1)
        split: Literal["train", "test", "all"] = param("train", "which images to load")
        standardize: bool = param(True, "per-channel z-score over the loaded images; false: "
                                  "pixels in [0, 1]")

        @field_validator("path")
        @classmethod
        def _usable(cls, value: str) -> str:
            from abm.fl.cifar import path_problem  # numpy only, no torch

            problem = path_problem(value)
            if problem:
                raise ValueError(
                    f"{problem} (a relative path is taken from the current directory); "
                    "CIFAR-10 is never downloaded: point this field to a local copy of the "
                    "python or binary version (the folder or its .tar.gz archive)"
                )
            return value

    def expected_size(self) -> int | None:
        sizes = {"train": 50_000, "test": 10_000, "all": 60_000}
        n, total = self.params.n_samples, sizes[self.params.split]
        return total if n is None else min(n, total)

    def load(self, rng):
        from abm.fl.cifar import load_cifar10

        p = self.params
        images, labels = load_cifar10(p.path, split=p.split)
        if p.n_samples is not None and p.n_samples < len(labels):
            idx = np.sort(rng.choice(len(labels), size=p.n_samples, replace=False))
            images, labels = images[idx], labels[idx]
        X = images.astype(np.float32) / 255.0
        if p.standardize:
            mu = X.mean(axis=(0, 2, 3), keepdims=True)
            sd = X.std(axis=(0, 2, 3), keepdims=True)
            sd[sd == 0] = 1.0
            X = (X - mu) / sd
        return Dataset(X, labels, 10, "cifar10")


class Cifar10StandIn(DatasetSource):
    """A CIFAR-shaped synthetic stand-in, not CIFAR-10: 32x32 colour images in 10 classes,
    each its class's smooth colour template (a random 4x4 pattern upsampled, drawn from
    `template_seed`) plus strong pixel noise, standardised per channel like `cifar10`. A small
    CNN learns it gradually, as it learns CIFAR-10, so the learning's cost and dynamics have
    CIFAR-10's shape; what the pictures show does not. For the paper's setting when no
    CIFAR-10 copy is at hand (`scenarios/sweeps/paper_figure.yaml`); the images are drawn
    with the data stream (`fl.partition.seed`)."""

    name = "cifar10_standin"
    image_shape = (3, 32, 32)
    classes = 10

    class Params(_SourceParams):
        template_seed: int = param(0, "seed of the ten class templates (the 'dataset')",
                                   ge=0, le=2**32 - 1)
        noise: float = param(90.0, "standard deviation of the pixel noise, in pixel levels "
                             "(0-255); larger is harder", ge=0, le=1000)

    def expected_size(self) -> int:
        return 12_000 if self.params.n_samples is None else self.params.n_samples

    def load(self, rng):
        p = self.params
        n = self.expected_size()
        coarse = np.random.default_rng(p.template_seed).uniform(90, 165, size=(10, 3, 4, 4))
        templates = np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3)  # (10, 3, 32, 32)
        labels = rng.integers(0, 10, size=n)
        X = np.empty((n, 3, 32, 32), dtype=np.float32)
        for start in range(0, n, 1000):  # in blocks: the noise of 12,000 images is 295 MB
            block = labels[start:start + 1000]
            noise = rng.normal(0.0, p.noise, size=(len(block), 3, 32, 32))
            # pixel levels, as a copy of CIFAR-10 would hold them (uint8), scaled to [0, 1]
            X[start:start + 1000] = np.floor(np.clip(templates[block] + noise, 0, 255)) / 255.0
        mu = X.mean(axis=(0, 2, 3), keepdims=True)
        sd = X.std(axis=(0, 2, 3), keepdims=True)
        sd[sd == 0] = 1.0
        return Dataset((X - mu) / sd, labels, 10, "cifar10_standin")


def load_dataset(
    name: str,
    *,
    rng: np.random.Generator,
    path: str | None = None,
    n_samples: int | None = None,
    **options: Any,
) -> Dataset:
    """Load a registered dataset by name; `options` are its parameters (``ComponentError``,
    a ``ValueError``, naming a refused one)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError("load_dataset: rng must be a numpy.random.Generator")
    if path is not None:
        options["path"] = str(path)
    source = registry.create("dataset", name, n_samples=n_samples, **options)
    return source.load(rng)


def split_validation(
    ds: Dataset, fraction: float, rng: np.random.Generator
) -> tuple[Dataset, Dataset]:
    """Split ``ds`` into ``(train, val)`` with ``round(fraction * n)`` validation samples,
    stratified by class (each class contributes in proportion; leftovers drawn at random).
    The validation split is owned by the federation."""
    if not isinstance(fraction, int | float) or not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"split_validation: fraction must lie in (0, 1), got {fraction!r}")
    n = len(ds)
    n_val = round(float(fraction) * n)
    if n_val < 1 or n_val > n - 1:
        raise ValueError(
            f"split_validation: fraction {fraction} of {n} samples leaves an empty split"
        )
    # Stratified: floor of the per-class quota first, then the remainder at random.
    val_parts = []
    rest_parts = []
    for c in range(ds.n_classes):
        idx = np.flatnonzero(ds.y == c)
        idx = idx[rng.permutation(idx.size)]
        q = math.floor(float(fraction) * idx.size)
        val_parts.append(idx[:q])
        rest_parts.append(idx[q:])
    val_idx = np.concatenate(val_parts)
    rest = np.concatenate(rest_parts)
    short = n_val - val_idx.size
    if short > 0:
        extra = rest[rng.permutation(rest.size)[:short]]
        val_idx = np.concatenate([val_idx, extra])
    mask = np.zeros(n, dtype=bool)
    mask[val_idx] = True
    return ds.subset(np.flatnonzero(~mask)), ds.subset(np.flatnonzero(mask))
