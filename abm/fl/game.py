"""The per-round coalition game.

For one FedAvg round with previous global parameters ``prev (p,)``, client updates
``U (n, p)`` and data weights ``w (n,)``, the value of a coalition ``S`` is the validation
accuracy (``metric="accuracy"``) or the negative mean validation cross-entropy
(``metric="loss"``) of the model

    prev + sum_{i in S} w_i U_i / sum_{i in S} w_i

(the data-weighted FedAvg aggregate of the coalition's updates); the empty coalition is the
previous global model. The grand coalition is exactly the round's new global model.

``game(masks)`` takes a boolean matrix ``(k, n)`` (row = coalition, column = player) and
returns ``k`` float64 utilities. Evaluation is batched: the coalitions' parameter vectors
are stacked as ``(k, p) = coef @ U + prev`` (``coef`` = masks * weights, row-normalised;
computed in float64 then rounded to float32, so a coalition's parameters do not depend on
which batch it came in) and all ``k`` models are evaluated on the validation set at once
(:meth:`abm.fl.nets.Net.evaluate_batched`). Utilities are memoised within the round, keyed
by the coalition's bit pattern (bit ``i`` = player ``i``).

``evaluations`` counts the distinct coalitions requested through ``game(...)`` so far (each
coalition counts once, however often it is asked for; values the federation already knew,
such as the new global model's, count when first requested, as they would for a caller
computing them itself).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from abm.fl.nets import Net

__all__ = ["METRICS", "CoalitionGame", "coalition_keys", "masks_from_keys"]

#: ``loss`` and ``neg_loss`` are the same utility: the negative mean validation loss.
METRICS = ("accuracy", "loss", "neg_loss")


def coalition_keys(masks: np.ndarray) -> list[int]:
    """One Python int per row: bit ``i`` set iff player ``i`` is in the coalition."""
    masks = np.asarray(masks, dtype=bool)
    n = masks.shape[1]
    if n <= 62:
        return (masks.astype(np.int64) @ (np.int64(1) << np.arange(n, dtype=np.int64))).tolist()
    packed = np.packbits(masks, axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def masks_from_keys(keys: Iterable[int], n: int) -> np.ndarray:
    """Inverse of :func:`coalition_keys`: ``(k, n)`` bool."""
    keys = list(keys)
    if n <= 62:
        arr = np.asarray(keys, dtype=np.int64).reshape(-1, 1)
        return ((arr >> np.arange(n, dtype=np.int64)) & 1).astype(bool)
    return np.array([[(key >> i) & 1 for i in range(n)] for key in keys], dtype=bool).reshape(
        -1, n
    )


class CoalitionGame:
    """Utility of coalitions of one round's client updates (see the module docstring)."""

    def __init__(
        self,
        net: Net,
        prev_params: torch.Tensor,
        updates: torch.Tensor,
        weights: np.ndarray,
        X_val: torch.Tensor,
        y_val: torch.Tensor,
        *,
        metric: str = "accuracy",
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        updates = updates.detach()
        if updates.ndim != 2 or updates.shape[1] != prev_params.shape[0]:
            raise ValueError(
                f"updates must have shape (n, {prev_params.shape[0]}), got {tuple(updates.shape)}"
            )
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (updates.shape[0],) or np.any(w < 0) or not np.all(np.isfinite(w)):
            raise ValueError("weights must be finite, >= 0 and one per player")
        self.net = net
        self.metric = "loss" if metric == "neg_loss" else metric
        self.n_players = int(updates.shape[0])
        self.prev = prev_params.detach().to(torch.float32)
        self.updates = updates.to(torch.float32)
        self.weights = w
        self.X_val = X_val
        self.y_val = y_val
        self._prev64 = self.prev.double()
        self._U64 = self.updates.double()
        self._w64 = torch.from_numpy(w)
        self._acc: dict[int, float] = {}  # coalition key -> validation accuracy
        self._loss: dict[int, float] = {}  # coalition key -> mean validation loss
        self._requested: set[int] = set()
        self.evaluations = 0

    # -- parameters -------------------------------------------------------------------------
    def _masks(self, masks: np.ndarray) -> np.ndarray:
        m = np.asarray(masks)
        if m.ndim == 1:
            m = m[None, :]
        if m.ndim != 2 or m.shape[1] != self.n_players:
            raise ValueError(
                f"masks must be a boolean matrix (k, {self.n_players}), got shape {m.shape}"
            )
        if m.dtype != bool:
            if not np.all((m == 0) | (m == 1)):
                raise ValueError("masks must hold booleans (or 0/1)")
            m = m.astype(bool)
        return m

    def coefficients(self, masks: np.ndarray) -> torch.Tensor:
        """``(k, n)`` float64 aggregation coefficients: masks * weights, rows summing to 1
        (all zero for the empty coalition)."""
        m = torch.from_numpy(self._masks(masks).astype(np.float64))
        w = m * self._w64
        s = w.sum(1, keepdim=True)
        return torch.where(s > 0, w / torch.where(s > 0, s, 1.0), 0.0)

    def coalition_params(self, masks: np.ndarray) -> torch.Tensor:
        """``(k, p)`` float32 parameters of the coalitions' aggregated models."""
        c = self.coefficients(masks)
        return torch.addmm(self._prev64, c, self._U64).to(torch.float32)

    # -- evaluation -------------------------------------------------------------------------
    def _utility(self, key: int) -> float:
        return self._acc[key] if self.metric == "accuracy" else -self._loss[key]

    def _ensure(self, keys: Iterable[int], want_loss: bool) -> None:
        missing = [
            k
            for k in dict.fromkeys(keys)
            if k not in self._acc or (want_loss and k not in self._loss)
        ]
        if not missing:
            return
        P = self.coalition_params(masks_from_keys(missing, self.n_players))
        acc, loss = self.net.evaluate_batched(P, self.X_val, self.y_val, want_loss=want_loss)
        for i, key in enumerate(missing):
            self._acc[key] = float(acc[i])
            if want_loss:
                self._loss[key] = float(loss[i])

    def peek(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(accuracy (k,), loss (k,))`` of coalitions, evaluated (memoised) but not
        counted in ``evaluations``; used by the federation for its own bookkeeping."""
        keys = coalition_keys(self._masks(masks))
        self._ensure(keys, want_loss=True)
        return (
            np.array([self._acc[k] for k in keys], dtype=np.float64),
            np.array([self._loss[k] for k in keys], dtype=np.float64),
        )

    def seed_value(self, mask: np.ndarray, accuracy: float, loss: float) -> None:
        """Record an already known (accuracy, loss) for one coalition (not counted)."""
        (key,) = coalition_keys(self._masks(mask))
        self._acc[key] = float(accuracy)
        self._loss[key] = float(loss)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        """Utilities (float64, ``(k,)``) of the coalitions in ``masks (k, n)``."""
        keys = coalition_keys(self._masks(masks))
        new = [k for k in dict.fromkeys(keys) if k not in self._requested]
        if new:
            self._requested.update(new)
            self.evaluations += len(new)
            self._ensure(new, want_loss=self.metric == "loss")
        return np.array([self._utility(k) for k in keys], dtype=np.float64)

    def evaluate_naive(self, masks: np.ndarray) -> np.ndarray:
        """Reference path: one coalition at a time, unbatched forward, no memo, not counted.
        Returns the same utilities as ``game(masks)``."""
        want_loss = self.metric == "loss"
        out = []
        for row in self._masks(masks):
            p = self.coalition_params(row[None, :])[0]
            acc, loss = self.net.evaluate(p, self.X_val, self.y_val, want_loss=want_loss)
            out.append(acc if self.metric == "accuracy" else -loss)
        return np.array(out, dtype=np.float64)

    def clear_cache(self) -> None:
        """Forget every evaluated coalition and reset ``evaluations`` (for benchmarks)."""
        self._acc.clear()
        self._loss.clear()
        self._requested.clear()
        self.evaluations = 0

    @property
    def grand_mask(self) -> np.ndarray:
        return np.ones((1, self.n_players), dtype=bool)

    @property
    def empty_mask(self) -> np.ndarray:
        return np.zeros((1, self.n_players), dtype=bool)

    def __repr__(self) -> str:
        return (
            f"CoalitionGame(n_players={self.n_players}, metric={self.metric!r}, "
            f"evaluations={self.evaluations})"
        )
