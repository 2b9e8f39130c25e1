"""Client behaviours: how a client turns the global model into the update it sends.

``make_behaviour(name, **params)`` builds one. A behaviour is a registered component
(`abm.registry`, kind ``behaviour``): a new one is one :class:`Behaviour` subclass with a
``name`` and a ``Params`` model, nothing else. This module imports torch only when an update
is computed, so the scenario schema can read the parameters without loading torch.

A behaviour acts at two points, both seeded by the :class:`~abm.fl.federation.Federation`:

- ``labels(y, n_classes, rng)``: once, when the federation is built: the labels the client
  trains on (``noisy_labels``, ``label_flip`` corrupt them; fixed for the whole run);
- ``update(train, global_params, generator)``: every round: the update (a delta from the
  global model) it sends; ``train()`` runs honest local SGD on the client's data and returns
  the delta.

The built-in behaviours are the classes below (each docstring is its description in
``docs/scenario-reference.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import field_validator

from abm import registry
from abm.fl.partition import apply_label_noise
from abm.registry import Component, param
from abm.registry import Params as _Params

if TYPE_CHECKING:
    import torch

__all__ = [
    "Behaviour",
    "FreeRider",
    "Honest",
    "LabelFlip",
    "NoisyLabels",
    "SmallData",
    "make_behaviour",
    "size_weights",
]


class Behaviour(Component):
    """Base class: honest training. Subclasses override ``labels`` and/or ``update``."""

    kind = "behaviour"

    @property
    def size_weight(self) -> float:
        """Relative size of this client's data partition (1.0 unless a parameter says)."""
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


class Honest(Behaviour):
    """Trains honestly on its own data with local SGD. No parameters."""

    name = "honest"


class FreeRider(Behaviour):
    """Sends an update without training: a zero update, the global model back unchanged (the
    same zero delta, reported apart), or small Gaussian noise to look like a trainer."""

    name = "free_rider"

    class Params(_Params):
        mode: Literal["zero", "global", "noise"] = param("zero", "what it sends instead of an "
                                                         "update")
        noise_scale: float = param(0.01, "noise standard deviation per coordinate (mode "
                                   "noise)", unit="model parameter units", ge=0, le=1)

    def update(self, train, global_params, generator):
        import torch

        if self.params.mode == "noise":
            return (
                torch.randn(global_params.shape, generator=generator, dtype=global_params.dtype)
                * self.params.noise_scale
            ).to(global_params.device)  # drawn by the CPU generator on every device
        if self.params.mode == "global":
            return global_params - global_params  # the global model unchanged: a zero delta
        return torch.zeros_like(global_params)


class NoisyLabels(Behaviour):
    """Trains on labels of which a fraction were redrawn uniformly at random over all classes
    (once, when the federation is built)."""

    name = "noisy_labels"

    class Params(_Params):
        fraction: float = param(0.5, "share of its labels redrawn", unit="fraction", ge=0,
                                le=1)

    def labels(self, y, n_classes, rng):
        return apply_label_noise(y, self.params.fraction, n_classes, rng)


class LabelFlip(Behaviour):
    """Malicious: trains on flipped labels, y -> n_classes - 1 - y (or a given permutation),
    on a fraction of its samples (all by default)."""

    name = "label_flip"

    class Params(_Params):
        fraction: float = param(1.0, "share of its samples relabelled", unit="fraction", ge=0,
                                le=1)
        permutation: list[int] | None = param(
            None, "label map as a permutation of 0..n_classes-1; none: y -> n_classes - 1 - y"
        )

        @field_validator("permutation")
        @classmethod
        def _is_permutation(cls, value: list[int] | None) -> list[int] | None:
            if value is not None and (len(value) < 2 or sorted(value) != list(range(len(value)))):
                raise ValueError("must be a permutation of 0..n_classes-1 (distinct ints)")
            return value

    @classmethod
    def check_in(cls, params, scenario):
        from abm.registry import build

        classes = build(scenario.fl.dataset).n_classes()
        if params.permutation is not None and classes and len(params.permutation) != classes:
            return (f"the permutation maps {len(params.permutation)} labels but "
                    f"{scenario.fl.dataset.name} has {classes} classes")
        return None

    def labels(self, y, n_classes, rng):
        perm = self.params.permutation
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
        frac = self.params.fraction
        if frac >= 1.0:
            return mapping[y]
        k = round(frac * y.size)
        idx = rng.choice(y.size, size=k, replace=False)
        y[idx] = mapping[y[idx]]
        return y


class SmallData(Behaviour):
    """Trains honestly but holds less data: its partition is `size_weight` times the size an
    honest client gets (the partition scheme spreads the data by these relative sizes)."""

    name = "small_data"

    class Params(_Params):
        size_weight: float = param(0.25, "relative size of its data partition (honest: 1)",
                                   unit="fraction", gt=0, le=1)

    @property
    def size_weight(self) -> float:
        return float(self.params.size_weight)


def make_behaviour(name: str, **params: Any) -> Behaviour:
    """Build a registered behaviour (``ComponentError``, a ``ValueError``, for an unknown name
    or refused params)."""
    return registry.create("behaviour", name, **params)


def size_weights(behaviours: Sequence[Behaviour | str]) -> list[float]:
    """Relative client sizes for ``partition(size_weights=...)``: each behaviour's
    ``size_weight`` (``small_data``: its parameter; all others 1.0)."""
    return [float((make_behaviour(b) if isinstance(b, str) else b).size_weight)
            for b in behaviours]
