"""The per-round coalition game.

For one FedAvg round with previous global parameters ``prev (p,)``, client updates
``U (n, p)`` and the round's aggregation weights ``w (n,)`` (FedAvg's ``n_i / sum_j n_j``,
summing to 1: :func:`fedavg_weights`), the value of a coalition ``S`` is the validation
accuracy (``metric="accuracy"``) or the negative mean validation cross-entropy
(``metric="loss"``) of the coalition's model, formed by the game's ``coalition`` rule
(docs/model.md, section 7.4):

- ``round_weights`` (the default): ``prev + sum_{i in S} w_i U_i``, the round's aggregate with
  only the coalition's updates in it, each at its weight in the round. A member's weight is
  never redistributed, so a player whose update is zero changes no coalition's model: it is
  a null player (Shapley value exactly 0, whatever weight its data size claims), and the
  others' values do not depend on whether it is there.
- ``coalition_fedavg``: ``prev + sum_{i in S} w_i U_i / sum_{i in S} w_i``, the FedAvg model
  the coalition would aggregate on its own (weights renormalised within it). A zero update
  then shrinks the others' step by its weight: where the full step overshoots (client drift
  on non-IID data), that damping lowers the loss and the zero update earns a positive value.
  Kept for comparison.

Either way the empty coalition is the previous global model and the grand coalition the
round's new global model (``prev + sum_i w_i U_i``).

``game(masks)`` takes a boolean matrix ``(k, n)`` (row = coalition, column = player) and
returns ``k`` float64 utilities. The coefficients (``(k, n)``, :func:`coalition_coefficients`)
are computed in float64.

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
first asked for it; under ``round_weights`` coalitions that differ only by players whose
update is exactly zero share their model, and so one evaluation and one value.

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

__all__ = [
    "COALITION_RULES",
    "LOSS_TOLERANCE",
    "METRICS",
    "CoalitionGame",
    "coalition_coefficients",
    "coalition_keys",
    "fedavg_weights",
    "masks_from_keys",
]

#: ``loss`` and ``neg_loss`` are the same utility: the negative mean validation loss.
METRICS = ("accuracy", "loss", "neg_loss")

#: How a coalition's model is formed from its members' updates (module docstring).
COALITION_RULES = ("round_weights", "coalition_fedavg")

#: Stated agreement of the fast path with :meth:`CoalitionGame.evaluate_naive` on mean
#: validation loss (absolute); tested on several models, rounds and behaviours.
LOSS_TOLERANCE = 1e-6

#: The per-round first-layer outputs are kept for the round when they fit in this many bytes
#: (the CNN's first convolution on a large validation set may not); otherwise each call
#: recomputes them chunk by chunk.
FIRST_LAYER_CACHE_BYTES = 256 << 20


def fedavg_weights(sizes: np.ndarray) -> np.ndarray:
    """FedAvg's aggregation weights ``(k,)`` float64 for the ``k`` clients of a round with
    data sizes ``sizes (k,)``: ``n_i / sum_j n_j`` (McMahan et al. 2017). The one place the
    rule is written: the federation's aggregate, the coalition game and the cosine method all
    take their weights from here."""
    n = np.asarray(sizes, dtype=np.float64)
    return n / n.sum()


def coalition_coefficients(masks: np.ndarray, weights: np.ndarray, rule: str) -> np.ndarray:
    """``(k, n)`` float64 coefficients of the coalitions ``masks (k, n)`` on the updates: the
    coalition's model is ``prev + coef @ U`` (module docstring). ``round_weights``:
    ``masks * weights``; ``coalition_fedavg``: the same, each row divided by its sum (all zero
    for the empty coalition)."""
    w = np.asarray(masks, dtype=bool) * np.asarray(weights, dtype=np.float64)
    if rule == "round_weights":
        return w
    if rule != "coalition_fedavg":
        raise ValueError(f"coalition rule must be one of {', '.join(COALITION_RULES)}, "
                         f"got {rule!r}")
    s = w.sum(1, keepdims=True)
    return np.divide(w, s, out=np.zeros_like(w), where=s > 0)


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
        coalition: str = "round_weights",
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if coalition not in COALITION_RULES:
            raise ValueError(f"coalition must be one of {', '.join(COALITION_RULES)}, "
                             f"got {coalition!r}")
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
        self.coalition = coalition
        self.n_players = int(updates.shape[0])
        self.prev = prev_params.detach().to(torch.float32)
        self.updates = updates.to(torch.float32)
        self.weights = w
        self.X_val = X_val
        self.y_val = y_val
        self._prev64 = self.prev.double()
        self._U64 = self.updates.double()
        self._first_cache: list[tuple[int, int, torch.Tensor]] | None = None
        self._work: tuple[torch.Tensor, torch.Tensor] | None = None
        p1 = net.p_first
        #: prev's and the updates' parameters after the first layer (float64)
        self._rest = (self._prev64[p1:], self._U64[:, p1:])
        # Players whose update is exactly zero (a free rider's). Under `round_weights` a
        # coalition's model does not depend on them, so coalitions that differ only by them
        # are one model, evaluated once: their values are equal, not equal up to the float
        # rounding of two evaluations (a null player's marginal is exactly 0).
        null = ~self.updates.ne(0).any(dim=1).cpu().numpy()
        self._live = None
        if coalition == "round_weights" and null.any():
            (self._live,) = coalition_keys(~null[None, :])
        self._acc: dict[int, float] = {}  # model key -> validation accuracy
        self._loss: dict[int, float] = {}  # model key -> mean validation loss
        self._requested: set[int] = set()
        self.evaluations = 0
        #: coalition models evaluated for diagnostics (`utilities`, `with_zero_player`), not
        #: counted in `evaluations`
        self.probe_evaluations = 0

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

    def _coefficients_np(self, masks: np.ndarray) -> np.ndarray:
        # numpy: these are small, and numpy's per-call cost is a fraction of torch's
        return coalition_coefficients(self._masks(masks), self.weights, self.coalition)

    def coefficients(self, masks: np.ndarray) -> torch.Tensor:
        """``(k, n)`` float64 aggregation coefficients of the coalitions (the game's
        ``coalition`` rule, :func:`coalition_coefficients`)."""
        return torch.from_numpy(self._coefficients_np(masks)).to(self._U64.device)

    def coalition_params(self, masks: np.ndarray) -> torch.Tensor:
        """``(k, p)`` float32 parameters of the coalitions' aggregated models."""
        c = self.coefficients(masks)
        return torch.addmm(self._prev64, c, self._U64).to(torch.float32)

    # -- evaluation -------------------------------------------------------------------------
    def _sample_chunk(self) -> int:
        width = max(1, self.net.coalition_width()) * self.net.coalition_chunk
        return min(int(self.y_val.shape[0]), max(1, self.net.coalition_elems // width))

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

    def _workspace(self, kc: int, f: int, ms: int) -> tuple[torch.Tensor, torch.Tensor]:
        """First-layer ``(kc, f)`` and logits ``(kc, C, ms)`` float32 buffers, kept for the
        round: fresh megabyte-sized tensors per call cost page faults (measured ~4 % of
        GTG-Shapley's time on the MLP)."""
        w = self._work
        if w is None or w[0].shape[0] < kc or w[0].shape[1] != f or w[1].shape[2] != ms:
            dev = self._U64.device
            w = self._work = (torch.empty(kc, f, dtype=torch.float32, device=dev),
                              torch.empty(kc, self.net.n_classes, ms, dtype=torch.float32,
                                          device=dev))
        return w

    def _coalition_chunk(self, k: int, ms: int) -> int:
        """Coalitions per chunk for a call of ``k`` coalitions on ``ms`` samples: at most
        ``net.coalition_elems`` activation elements, in equal chunks (no small remainder
        chunk)."""
        width = max(1, self.net.coalition_width())
        kc = max(1, self.net.coalition_elems // (ms * width))
        return -(-k // -(-k // kc))

    def _evaluate(
        self, masks: np.ndarray, want_acc: bool, want_loss: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(accuracy (k,), mean loss (k,))`` of coalitions ``masks (k, n)`` (see
        :meth:`_evaluate_coefficients`)."""
        return self._evaluate_coefficients(self._coefficients_np(masks), want_acc, want_loss)

    @torch.no_grad()
    def _evaluate_coefficients(
        self, c: np.ndarray, want_acc: bool, want_loss: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(accuracy (k,), mean loss (k,))`` of the models ``prev + c @ U`` for float64
        coefficients ``c (k, n)``, through the first-layer combination (module docstring);
        ``nan`` for what is not wanted.

        A call's fixed cost matters as much as its arithmetic (GTG-Shapley makes ~8 calls of
        ~50 coalitions per round at 10 clients, each torch call costing microseconds): the
        coefficients are built in numpy and copied once, and a call that fits one chunk
        (all of GTG's later calls) runs on whole tensors, without slicing."""
        k, n = c.shape
        dev = self._U64.device
        # [1 | coef] @ [Z(prev); Z(U)]: prev's row rides in the GEMM (no bias broadcast copy)
        ca = np.empty((k, n + 1), dtype=np.float32)
        ca[:, 0] = 1.0
        ca[:, 1:] = c
        CA = torch.as_tensor(ca, device=dev)
        prev2, U2 = self._rest
        P2 = torch.addmm(prev2, torch.as_tensor(c, device=dev), U2).to(torch.float32)
        # one float64 sum per wanted figure: [correct | loss] rows
        sums = torch.zeros(2, k, dtype=torch.float64, device=dev)
        for s, e, ZA in self._first_layer_chunks():
            ms = e - s
            ys = self.y_val if ms == self.y_val.shape[0] else self.y_val[s:e]
            kc = self._coalition_chunk(k, ms)
            Zbuf, Lbuf = self._workspace(kc, ZA.shape[1], ms)
            for a in range(0, k, kc):
                b = min(k, a + kc)
                whole = b - a == k
                q = slice(a, b)
                Z = torch.mm(CA if whole else CA[q], ZA,
                             out=Zbuf if whole and Zbuf.shape[0] == k else Zbuf[: b - a])
                logits = self.net.head_batched(
                    P2 if whole else P2[q], Z, ms,
                    out=Lbuf if whole and Lbuf.shape[0] == k else Lbuf[: b - a])
                part = sums if whole else sums[:, q]
                self.net.accumulate(logits, ys, part[0] if want_acc else None,
                                    part[1] if want_loss else None)
        out = sums.cpu().numpy() / int(self.y_val.shape[0])
        nan = np.full(k, np.nan)
        return (out[0] if want_acc else nan), (out[1] if want_loss else nan)

    # -- memo -------------------------------------------------------------------------------
    def _model_keys(self, keys: list[int]) -> list[int]:
        """The key of each coalition's model: the coalition's own key, without its
        zero-update players under ``round_weights`` (they change no model there)."""
        live = self._live
        return keys if live is None else [k & live for k in keys]

    def _ensure(
        self, keys: list[int], want_acc: bool, want_loss: bool, masks: np.ndarray | None = None
    ) -> None:
        """Evaluate the models of ``keys`` (model keys, :meth:`_model_keys`) not known yet
        (``masks``: the keys' rows, used when every key is missing, so that they need not be
        rebuilt)."""
        missing = [
            k
            for k in dict.fromkeys(keys)
            if (want_acc and k not in self._acc) or (want_loss and k not in self._loss)
        ]
        if not missing:
            return
        if masks is None or len(missing) != len(keys):
            masks = masks_from_keys(missing, self.n_players)
        acc, loss = self._evaluate(masks, want_acc, want_loss)
        if want_acc:
            self._acc.update(zip(missing, acc.tolist(), strict=True))
        if want_loss:
            self._loss.update(zip(missing, loss.tolist(), strict=True))

    def peek(self, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(accuracy (k,), loss (k,))`` of coalitions, evaluated (memoised) but not
        counted in ``evaluations``; used by the federation for its own bookkeeping."""
        keys = self._model_keys(coalition_keys(self._masks(masks)))
        self._ensure(keys, want_acc=True, want_loss=True)
        return (
            np.array([self._acc[k] for k in keys], dtype=np.float64),
            np.array([self._loss[k] for k in keys], dtype=np.float64),
        )

    def seed_value(self, mask: np.ndarray, accuracy: float, loss: float) -> None:
        """Record an already known (accuracy, loss) for one coalition (not counted)."""
        (key,) = self._model_keys(coalition_keys(self._masks(mask)))
        self._acc[key] = float(accuracy)
        self._loss[key] = float(loss)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        """Utilities (float64, ``(k,)``) of the coalitions in ``masks (k, n)``."""
        masks = self._masks(masks)
        keys = coalition_keys(masks)
        new = [k for k in dict.fromkeys(keys) if k not in self._requested]
        loss = self.metric == "loss"
        if new:
            self._requested.update(new)
            self.evaluations += len(new)
            model = self._model_keys(new)
            self._ensure(model, want_acc=not loss, want_loss=loss,
                         masks=masks if len(new) == len(keys) and model is new else None)
        keys = self._model_keys(keys)
        if loss:
            return -np.array([self._loss[k] for k in keys], dtype=np.float64)
        return np.array([self._acc[k] for k in keys], dtype=np.float64)

    def _utility(self, acc: np.ndarray, loss: np.ndarray) -> np.ndarray:
        return -loss if self.metric == "loss" else acc

    def utilities(self, masks: np.ndarray) -> np.ndarray:
        """Utilities ``(k,)`` of coalitions, memoised but not counted in ``evaluations``
        (for diagnostics that must not change what a method is seen to cost: the models
        this evaluates count in ``probe_evaluations``)."""
        known = len(self._acc)
        out = self._utility(*self.peek(masks))
        self.probe_evaluations += len(self._acc) - known
        return out

    def with_zero_player(self, masks: np.ndarray, weight: float) -> np.ndarray:
        """Utilities ``(k,)`` of the coalitions ``masks (k, n)``, each joined by a phantom
        player that sends a zero update and claims the aggregation weight ``weight`` (a
        data size; never a player of the game, never paid). Under ``round_weights`` the
        phantom changes no model; under ``coalition_fedavg`` it dilutes the members' weights.
        Not memoised, not counted in ``evaluations``."""
        m = self._masks(masks)
        if not np.isfinite(weight) or weight < 0:
            raise ValueError(f"the phantom's weight must be finite and >= 0, got {weight!r}")
        if self.coalition == "round_weights":
            # the phantom is a null player: each coalition's model is the coalition's own
            return self.utilities(m)
        k = m.shape[0]
        joined = np.concatenate([m, np.ones((k, 1), dtype=bool)], axis=1)
        c = coalition_coefficients(joined, np.append(self.weights, weight),
                                   self.coalition)[:, :-1]
        want_loss = self.metric == "loss"
        acc, loss = self._evaluate_coefficients(c, not want_loss, want_loss)
        self.probe_evaluations += k
        return self._utility(acc, loss)

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
        self.probe_evaluations = 0

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
