"""Datasets for the learning core (offline only).

``load_dataset(name, *, rng, path=None, n_samples=None, **options) -> Dataset``

Names and their options:

- ``digits`` (default in scenarios): scikit-learn's bundled 8x8 digits, 1797 samples, 10
  classes, pixels scaled to [0, 1]. Option ``image`` (bool, default False): shape
  ``(n, 1, 8, 8)`` instead of ``(n, 64)`` (for the CNN).
- ``breast_cancer``: scikit-learn's bundled tabular set, 569 x 30, 2 classes, features
  standardised (z-score over the whole set).
- ``wine``: scikit-learn's bundled tabular set, 178 x 13, 3 classes, standardised.
- ``synthetic``: ``sklearn.datasets.make_classification`` with a controllable difficulty.
  Options: ``n_features`` (int >= 2, default 20), ``n_classes`` (int >= 2, default 4),
  ``difficulty`` (float in [0, 1], default 0.5: 0 = well separated classes, 1 = heavily
  overlapping classes plus 10% flipped labels; sets ``class_sep = 2.5 (1 - d) + 0.1`` and
  ``flip_y = 0.1 d``), or ``class_sep`` (float > 0, larger is easier) to set the separation
  directly (then ``difficulty`` defaults to 0 and only sets the flipped labels).
  ``n_samples`` defaults to 2000 and is the number generated.
- ``cifar10``: a local copy of CIFAR-10 (``path`` required; see :mod:`abm.fl.cifar`).
  Options: ``split`` (``train`` | ``test`` | ``all``, default ``train``), ``standardize``
  (bool, default True: per-channel z-score over the loaded images, else [0, 1]).

``n_samples`` (except for ``synthetic``) draws that many samples without replacement with
``rng``. ``rng`` is a ``numpy.random.Generator``.

This module also holds :class:`Param`, the small parameter-spec helper shared by the
behaviour and contribution-method registries (defaults, documented ranges, up-front
validation with messages naming the parameter and the allowed range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DATASETS",
    "Dataset",
    "Param",
    "load_dataset",
    "split_validation",
]

DATASETS = ("digits", "breast_cancer", "wine", "synthetic", "cifar10")


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


def _check_options(name: str, options: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        allowed_s = ", ".join(sorted(allowed)) or "none"
        raise ValueError(
            f"load_dataset({name!r}): unknown option(s) {', '.join(unknown)}; "
            f"allowed: {allowed_s}"
        )


def _subsample(ds: Dataset, n_samples: int | None, rng: np.random.Generator) -> Dataset:
    if n_samples is None:
        return ds
    if n_samples >= len(ds):
        return ds
    idx = np.sort(rng.choice(len(ds), size=n_samples, replace=False))
    return ds.subset(idx)


def load_dataset(
    name: str,
    *,
    rng: np.random.Generator,
    path: str | None = None,
    n_samples: int | None = None,
    **options: Any,
) -> Dataset:
    """Load a dataset by name (see the module docstring for names and options)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError("load_dataset: rng must be a numpy.random.Generator")
    if n_samples is not None and (
        isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer)
        or n_samples < 2
    ):
        raise ValueError(f"load_dataset: n_samples must be an integer >= 2, got {n_samples!r}")

    if name == "digits":
        from sklearn.datasets import load_digits

        _check_options(name, options, {"image"})
        raw = load_digits()
        X = raw.data.astype(np.float32) / 16.0
        if options.get("image", False):
            X = X.reshape(-1, 1, 8, 8)
        ds = Dataset(X, raw.target, 10, "digits")
        return _subsample(ds, n_samples, rng)

    if name in ("breast_cancer", "wine"):
        from sklearn.datasets import load_breast_cancer, load_wine

        _check_options(name, options, set())
        raw = load_breast_cancer() if name == "breast_cancer" else load_wine()
        X = _standardize(raw.data.astype(np.float64)).astype(np.float32)
        ds = Dataset(X, raw.target, int(raw.target.max()) + 1, name)
        return _subsample(ds, n_samples, rng)

    if name == "synthetic":
        from sklearn.datasets import make_classification

        _check_options(name, options, {"n_features", "n_classes", "difficulty", "class_sep"})
        n = 2000 if n_samples is None else int(n_samples)
        n_features = options.get("n_features", 20)
        n_classes = options.get("n_classes", 4)
        class_sep = options.get("class_sep")
        difficulty = options.get("difficulty", 0.5 if class_sep is None else 0.0)
        if not isinstance(n_features, int | np.integer) or n_features < 2:
            raise ValueError(f"synthetic: n_features must be an integer >= 2, got {n_features!r}")
        if not isinstance(n_classes, int | np.integer) or n_classes < 2:
            raise ValueError(f"synthetic: n_classes must be an integer >= 2, got {n_classes!r}")
        if not isinstance(difficulty, int | float) or not 0.0 <= float(difficulty) <= 1.0:
            raise ValueError(f"synthetic: difficulty must lie in [0, 1], got {difficulty!r}")
        if class_sep is not None and (
            isinstance(class_sep, bool) or not isinstance(class_sep, int | float)
            or not 0 < class_sep < float("inf")
        ):
            raise ValueError(f"synthetic: class_sep must be a number > 0, got {class_sep!r}")
        d = float(difficulty)
        sep = 2.5 * (1.0 - d) + 0.1 if class_sep is None else float(class_sep)
        n_informative = min(
            int(n_features), max(2, int(n_features) // 2, math.ceil(math.log2(n_classes)))
        )
        if 2**n_informative < n_classes:
            raise ValueError(
                f"synthetic: n_features={n_features} is too small for n_classes={n_classes}"
            )
        X, y = make_classification(
            n_samples=n,
            n_features=int(n_features),
            n_informative=int(n_informative),
            n_redundant=0,
            n_classes=int(n_classes),
            n_clusters_per_class=1,
            class_sep=sep,
            flip_y=0.1 * d,
            random_state=int(rng.integers(2**31 - 1)),
        )
        X = _standardize(X).astype(np.float32)
        return Dataset(X, y, int(n_classes), "synthetic")

    # cifar10
    from abm.fl.cifar import load_cifar10

    _check_options(name, options, {"split", "standardize"})
    if path is None:
        raise ValueError(
            "load_dataset('cifar10') needs path=: a directory holding cifar-10-batches-bin/ "
            "or cifar-10-batches-py/ (or their contents), or the .tar.gz archive itself"
        )
    split = options.get("split", "train")
    images, labels = load_cifar10(path, split=split)
    if n_samples is not None and n_samples < len(labels):
        idx = np.sort(rng.choice(len(labels), size=n_samples, replace=False))
        images, labels = images[idx], labels[idx]
    X = images.astype(np.float32) / 255.0
    if options.get("standardize", True):
        mu = X.mean(axis=(0, 2, 3), keepdims=True)
        sd = X.std(axis=(0, 2, 3), keepdims=True)
        sd[sd == 0] = 1.0
        X = (X - mu) / sd
    return Dataset(X, labels, 10, "cifar10")


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


# --------------------------------------------------------------------------------------
# Parameter specs shared by the registries (behaviours, contribution methods)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    """One constructor parameter of a registered class: default, documentation and the
    allowed range. ``kind`` is ``"int"``, ``"float"``, ``"bool"``, ``"choice"`` or
    ``"any"`` (checked by ``check_fn``)."""

    default: Any
    doc: str
    kind: str = "float"
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple[Any, ...] = ()
    allow_none: bool = False

    def describe(self) -> str:
        if self.kind == "bool":
            return "a bool"
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "any":
            return self.doc
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        lb = "(" if self.lo_open or self.lo is None else "["
        rb = ")" if self.hi_open or self.hi is None else "]"
        what = "an integer" if self.kind == "int" else "a number"
        extra = " or None" if self.allow_none else ""
        return f"{what} in {lb}{lo}, {hi}{rb}{extra}"

    def check(self, owner: str, name: str, value: Any) -> Any:
        def bad() -> ValueError:
            return ValueError(
                f"{owner}: parameter {name!r} must be {self.describe()}, got {value!r}"
            )

        if value is None and self.allow_none:
            return None
        if self.kind == "bool":
            if not isinstance(value, bool | np.bool_):
                raise bad()
            return bool(value)
        if self.kind == "choice":
            if value not in self.choices:
                raise bad()
            return value
        if self.kind == "any":
            return value
        if isinstance(value, bool | np.bool_):
            raise bad()
        if self.kind == "int":
            if not isinstance(value, int | np.integer):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise bad()
            value = int(value)
        else:
            if not isinstance(value, int | float | np.integer | np.floating):
                raise bad()
            value = float(value)
            if not math.isfinite(value):
                raise bad()
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            raise bad()
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            raise bad()
        return value


class ParamsMixin:
    """Registry classes declare ``PARAMS: dict[str, Param]``. The scenario schema can
    validate a params mapping without building anything:
    ``cls.param_names()``, ``cls.defaults()``, ``cls.validate_params(params) -> dict``
    (complete, with defaults filled in; raises ``ValueError`` naming the parameter and the
    allowed range)."""

    PARAMS: dict[str, Param] = {}  # noqa: RUF012 (overridden per class, never mutated)
    name: str = ""

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        return tuple(cls.PARAMS)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {k: p.default for k, p in cls.PARAMS.items()}

    @classmethod
    def validate_params(cls, params: dict[str, Any] | None = None) -> dict[str, Any]:
        params = dict(params or {})
        unknown = sorted(set(params) - set(cls.PARAMS))
        if unknown:
            allowed = ", ".join(cls.PARAMS) or "none"
            raise ValueError(
                f"{cls.name or cls.__name__}: unknown parameter(s) {', '.join(unknown)}; "
                f"allowed: {allowed}"
            )
        out = cls.defaults()
        for k, v in params.items():
            out[k] = cls.PARAMS[k].check(cls.name or cls.__name__, k, v)
        cls._check_together(out)
        return out

    @classmethod
    def _check_together(cls, params: dict[str, Any]) -> None:
        """Cross-parameter checks (override)."""
