"""Client behaviours: how a client turns the global model into the update it sends.

``make_behaviour(name, **params)`` builds one; ``BEHAVIOURS`` maps names to classes. A new
behaviour is one :class:`Behaviour` subclass plus one registry entry. Each class declares its
parameters in ``PARAMS`` (defaults, documented ranges); ``cls.param_names()``,
``cls.defaults()`` and ``cls.validate_params(params)`` let a schema check params without
building anything (``ValueError`` naming the parameter and its allowed range).

A behaviour acts at two points, both seeded by the :class:`~abm.fl.federation.Federation`:

- ``labels(y, n_classes, rng)``: once, when the federation is built: the labels the client
  trains on (``noisy_labels``, ``label_flip`` corrupt them; fixed for the whole run);
- ``update(train, global_params, generator)``: every round: the update (a delta from the
  global model) it sends; ``train()`` runs honest local SGD on the client's data and returns
  the delta.

Names:

- ``honest``: trains on its data.
- ``free_rider``: does not train. ``mode``: ``zero`` sends a zero update; ``global`` sends
  the global model back unchanged, which is the same zero delta (kept separate for
  reporting); ``noise`` sends small Gaussian noise (``noise_scale`` std per coordinate) to
  disguise itself as a trainer.
- ``noisy_labels``: a ``fraction`` of its labels replaced by labels drawn uniformly at random
  (see :func:`abm.fl.partition.apply_label_noise`), then trains honestly.
- ``label_flip`` (malicious): relabels ``y -> n_classes - 1 - y`` (or ``permutation[y]``)
  on a ``fraction`` of its samples (all by default), then trains.
- ``small_data``: trains honestly; it differs only by its share of the data.
  ``size_weight`` (default 0.25) is its relative size for ``partition(size_weights=...)``;
  every other behaviour has ``size_weight == 1.0``. :func:`size_weights` collects them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from abm.fl.data import Param, ParamsMixin
from abm.fl.partition import apply_label_noise

__all__ = [
    "BEHAVIOURS",
    "Behaviour",
    "FreeRider",
    "Honest",
    "LabelFlip",
    "NoisyLabels",
    "SmallData",
    "make_behaviour",
    "size_weights",
]


class Behaviour(ParamsMixin):
    """Base class: honest training. Subclasses override ``labels`` and/or ``update``."""

    name: ClassVar[str] = "honest"
    PARAMS: ClassVar[dict[str, Param]] = {}
    #: whether ``update`` calls ``train`` (False: no local SGD is run for this client)
    trains: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        self.params = self.validate_params(params)

    @property
    def size_weight(self) -> float:
        return 1.0

    def labels(self, y: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
        return y

    def update(
        self,
        train: Callable[[], torch.Tensor],
        global_params: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        return train()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


class Honest(Behaviour):
    """Trains honestly on its own data. No parameters."""

    name = "honest"


class SmallData(Behaviour):
    """Trains honestly; gets less data through the partition.

    Params: ``size_weight`` (float in (0, 1], default 0.25): relative data size, for
    ``partition(size_weights=...)`` (honest clients weigh 1.0).
    """

    name = "small_data"
    PARAMS: ClassVar[dict[str, Param]] = {
        "size_weight": Param(0.25, "relative data size", "float", 0.0, 1.0, lo_open=True),
    }

    @property
    def size_weight(self) -> float:
        return float(self.params["size_weight"])


class FreeRider(Behaviour):
    """Sends an update without training.

    Params: ``mode`` (``zero`` | ``global`` | ``noise``, default ``zero``): zero update; the
    global model back (also a zero delta); or Gaussian noise to look like a trainer.
    ``noise_scale`` (float in [0, 1], default 0.01): the noise's standard deviation per
    coordinate in ``noise`` mode.
    """

    name = "free_rider"
    trains = False
    PARAMS: ClassVar[dict[str, Param]] = {
        "mode": Param("zero", "what is sent", "choice", choices=("zero", "global", "noise")),
        "noise_scale": Param(0.01, "noise std per coordinate", "float", 0.0, 1.0),
    }

    def update(self, train, global_params, generator):
        if self.params["mode"] == "noise":
            return (
                torch.randn(global_params.shape, generator=generator, dtype=global_params.dtype)
                * self.params["noise_scale"]
            ).to(global_params.device)  # drawn by the CPU generator on every device
        if self.params["mode"] == "global":
            return global_params - global_params  # the global model unchanged: a zero delta
        return torch.zeros_like(global_params)


class NoisyLabels(Behaviour):
    """Trains on labels of which a fraction were replaced at random (once, seeded).

    Params: ``fraction`` (float in [0, 1], default 0.5): share of labels redrawn uniformly
    over all classes.
    """

    name = "noisy_labels"
    PARAMS: ClassVar[dict[str, Param]] = {
        "fraction": Param(0.5, "share of labels redrawn", "float", 0.0, 1.0),
    }

    def labels(self, y, n_classes, rng):
        return apply_label_noise(y, self.params["fraction"], n_classes, rng)


def _check_permutation(owner: str, value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        perm = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        perm = ()
    if len(perm) < 2 or sorted(perm) != list(range(len(perm))):
        raise ValueError(
            f"{owner}: parameter 'permutation' must be None or a permutation of "
            f"0..n_classes-1 (a list of distinct ints), got {value!r}"
        )
    return perm


class LabelFlip(Behaviour):
    """Malicious: trains on flipped labels.

    Params: ``fraction`` (float in [0, 1], default 1.0): share of its samples relabelled;
    ``permutation`` (None or a list: a permutation of ``0..n_classes-1``, default None =
    ``y -> n_classes - 1 - y``).
    """

    name = "label_flip"
    PARAMS: ClassVar[dict[str, Param]] = {
        "fraction": Param(1.0, "share of samples relabelled", "float", 0.0, 1.0),
        "permutation": Param(
            None, "None or a permutation of 0..n_classes-1 (list of ints)", "any",
            allow_none=True,
        ),
    }

    @classmethod
    def _check_together(cls, params):
        params["permutation"] = _check_permutation(cls.name, params["permutation"])

    def labels(self, y, n_classes, rng):
        perm = self.params["permutation"]
        if perm is None:
            mapping = np.arange(n_classes - 1, -1, -1, dtype=np.int64)
        else:
            if len(perm) != n_classes:
                raise ValueError(
                    f"label_flip: permutation has {len(perm)} entries but the dataset has "
                    f"{n_classes} classes"
                )
            mapping = np.asarray(perm, dtype=np.int64)
        y = np.array(y, dtype=np.int64, copy=True)
        frac = self.params["fraction"]
        if frac >= 1.0:
            return mapping[y]
        k = round(frac * y.size)
        idx = rng.choice(y.size, size=k, replace=False)
        y[idx] = mapping[y[idx]]
        return y


BEHAVIOURS: dict[str, type[Behaviour]] = {
    cls.name: cls for cls in (Honest, FreeRider, NoisyLabels, LabelFlip, SmallData)
}


def make_behaviour(name: str, **params: Any) -> Behaviour:
    """Build a registered behaviour (``ValueError`` for an unknown name or bad params)."""
    try:
        cls = BEHAVIOURS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown behaviour {name!r}; expected one of {', '.join(BEHAVIOURS)}"
        ) from None
    return cls(**params)


def size_weights(behaviours: Sequence[Behaviour | str]) -> list[float]:
    """Relative client sizes for ``partition(size_weights=...)``: each behaviour's
    ``size_weight`` (``small_data``: its parameter; all others 1.0)."""
    out = []
    for b in behaviours:
        b = make_behaviour(b) if isinstance(b, str) else b
        out.append(float(b.size_weight))
    return out
