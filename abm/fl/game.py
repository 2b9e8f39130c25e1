"""The per-round coalition game.

For one FedAvg round with previous global parameters ``prev (p,)``, client updates
``U (n, p)`` and data weights ``w (n,)``, the value of a coalition ``S`` is the validation
accuracy (``metric="accuracy"``) or the negative mean validation cross-entropy
(``metric="loss"``) of the model

    prev + sum_{i in S} w_i U_i / sum_{i in S} w_i

(the data-weighted FedAvg aggregate of the coalition's updates); the empty coalition is the
previous global model. The grand coalition is exactly the round's new global model.

``game(masks)`` takes a boolean matrix ``(k, n)`` (row = coalition, column = player) and
returns ``k`` float64 utilities. Coefficients ``coef`` = masks * weights, row-normalised, are
computed in float64.

Evaluation uses the linearity of the first layer (see :mod:`abm.fl.nets`): the first layer is
affine in its parameters, so for the coalition model ``prev + coef @ U`` its output on the
validation set is ``Z(prev) + coef @ [Z(U_1); ...; Z(U_n)]``, where ``Z(theta)`` is the first
layer (weights and bias) applied with parameters ``theta``. The ``n + 1`` outputs are computed
once per round (in ``net.first_layer_dtype``: float64, float32 for the CNN's convolution) and
stored as float32; a batch of ``k`` coalitions then costs one
``(k, n + 1) @ (n + 1, m * width)`` GEMM (``[1 | coef] @ [Z(prev); Z(U)]``) for its first
layer (``width`` = hidden units for the MLP, classes for logistic regression, ``8 * H * W``
for the CNN's first convolution) instead of ``k`` first layers over the input dimension, and
the rest of each model (its other parameters, ``prev + coef @ U`` in float64 rounded to
float32) runs batched. Tolerance against
the reference path (:meth:`CoalitionGame.evaluate_naive`, which builds every coalition's
parameter vector and runs the plain forward pass): mean losses agree within ``1e-6``
(``LOSS_TOLERANCE``; both paths are float32 with float64 sums, they differ only in rounding
order); accuracies agree exactly except where a validation sample's two best logits are within
float32 rounding of each other, which flips that one prediction (``1/m`` of accuracy; the
tests bound how often). Utilities are memoised within the round, keyed by the coalition's bit
pattern (bit ``i`` = player ``i``), so a coalition has one value per round whichever batch
first asked for it.

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

__all__ = ["LOSS_TOLERANCE", "METRICS", "CoalitionGame", "coalition_keys", "masks_from_keys"]

#: ``loss`` and ``neg_loss`` are the same utility: the negative mean validation loss.
METRICS = ("accuracy", "loss", "neg_loss")

#: Stated agreement of the fast path with :meth:`CoalitionGame.evaluate_naive` on mean
#: validation loss (absolute); tested on several models, rounds and behaviours.
LOSS_TOLERANCE = 1e-6

#: The per-round first-layer outputs are kept for the round when they fit in this many bytes
#: (the CNN's first convolution on a large validation set may not); otherwise each call
#: recomputes them chunk by chunk.
FIRST_LAYER_CACHE_BYTES = 256 << 20


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
        self._first_cache: list[tuple[int, int, torch.Tensor]] | None = None
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
        # numpy: these are small, and numpy's per-call cost is a fraction of torch's
        w = self._masks(masks) * self.weights
        s = w.sum(1, keepdims=True)
        c = np.divide(w, s, out=np.zeros_like(w), where=s > 0)
        return torch.from_numpy(c).to(self._U64.device)

    def coalition_params(self, masks: np.ndarray) -> torch.Tensor:
        """``(k, p)`` float32 parameters of the coalitions' aggregated models."""
        c = self.coefficients(masks)
        return torch.addmm(self._prev64, c, self._U64).to(torch.float32)

    # -- evaluation -------------------------------------------------------------------------
    def _sample_chunk(self) -> int:
        width = max(1, self.net.coalition_width()) * self.net.coalition_chunk
        return min(int(self.y_val.shape[0]), max(1, self.net.chunk_elems // width))

    def _first_layer_chunks(self):
        """Yield ``(s, e, ZA (n + 1, F))`` per chunk of validation samples ``s:e``: the first
        layer's output for ``prev`` (row 0) and for each update (computed in
        ``net.first_layer_dtype``, stored float32)."""
        if self._first_cache is not None:
            yield from self._first_cache
            return
        m = int(self.y_val.shape[0])
        ms = self._sample_chunk()
        p1 = self.net.p_first
        # (n + 1, p_first): prev's first layer, then each update's (an update is a delta, so its
        # "first layer" is the delta's contribution: Z is affine in (W, b) jointly).
        P1 = torch.cat([self._prev64[None, :p1], self._U64[:, :p1]])
        n_bytes = (self.n_players + 1) * m * self.net.first_layer_width() * 4
        keep = [] if n_bytes <= FIRST_LAYER_CACHE_BYTES else None
        for s in range(0, m, ms):
            e = min(m, s + ms)
            dt = self.net.first_layer_dtype
            Z = self.net.first_layer_batched(P1.to(dt), self.X_val[s:e].to(dt))
            item = (s, e, Z.reshape(self.n_players + 1, -1).to(torch.float32))
            if keep is not None:
                keep.append(item)
            yield item
        if keep is not None:
            self._first_cache = keep

    @torch.no_grad()
    def _evaluate(
        self, masks: np.ndarray, want_acc: bool, want_loss: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(accuracy (k,), mean loss (k,))`` of coalitions through the first-layer
        combination (module docstring); ``nan`` for what is not wanted."""
        C = self.coefficients(masks)
        k = C.shape[0]
        p1 = self.net.p_first
        # [1 | coef] @ [Z(prev); Z(U)]: prev's row rides in the GEMM (no bias broadcast copy)
        CA = torch.ones(k, self.n_players + 1, dtype=torch.float32, device=C.device)
        CA[:, 1:] = C
        P2 = torch.addmm(self._prev64[p1:], C, self._U64[:, p1:]).to(torch.float32)
        width = max(1, self.net.coalition_width())
        dev = self._U64.device
        correct = torch.zeros(k, dtype=torch.float64, device=dev) if want_acc else None
        loss = torch.zeros(k, dtype=torch.float64, device=dev) if want_loss else None
        for s, e, ZA in self._first_layer_chunks():
            ms = e - s
            ys = self.y_val[s:e]
            kc = max(1, self.net.chunk_elems // (ms * width))
            kc = -(-k // -(-k // kc))  # equal chunks: no small remainder chunk
            for a in range(0, k, kc):
                b = min(k, a + kc)
                logits = self.net.head_batched(P2[a:b], CA[a:b] @ ZA, ms)  # (kc, C, ms)
                self.net.accumulate(logits, ys, None if correct is None else correct[a:b],
                                    None if loss is None else loss[a:b])
        m = int(self.y_val.shape[0])
        nan = np.full(k, np.nan)
        acc = nan if correct is None else (correct / m).cpu().numpy()
        return acc, (nan if loss is None else (loss / m).cpu().numpy())

    # -- memo -------------------------------------------------------------------------------
    def _utility(self, key: int) -> float:
        return self._acc[key] if self.metric == "accuracy" else -self._loss[key]

    def _ensure(self, keys: Iterable[int], want_acc: bool, want_loss: bool) -> None:
        missing = [
            k
            for k in dict.fromkeys(keys)
            if (want_acc and k not in self._acc) or (want_loss and k not in self._loss)
        ]
        if not missing:
            return
        acc, loss = self._evaluate(masks_from_keys(missing, self.n_players), want_acc, want_loss)
        for i, key in enumerate(missing):
            if want_acc:
                self._acc[key] = float(acc[i])
            if want_loss:
                self._loss[key] = float(loss[i])

    def peek(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(accuracy (k,), loss (k,))`` of coalitions, evaluated (memoised) but not
        counted in ``evaluations``; used by the federation for its own bookkeeping."""
        keys = coalition_keys(self._masks(masks))
        self._ensure(keys, want_acc=True, want_loss=True)
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
            loss = self.metric == "loss"
            self._ensure(new, want_acc=not loss, want_loss=loss)
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
