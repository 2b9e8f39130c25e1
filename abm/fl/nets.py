"""Small torch models over a flat parameter vector.

Every model is a :class:`Net`: a fixed layout of named tensors inside one flat float32
parameter vector of length ``n_params``. Models are pure functions of that vector:

- ``forward(flat (p,), X (m, ...)) -> logits (m, C)`` (differentiable, used for training);
- ``forward_batched(P (k, p), X) -> logits (k, m, C)``: ``k`` models at once;
- ``evaluate_batched(P, X, y) -> (accuracy (k,), loss (k,))`` (numpy float64), chunked over
  models and samples so memory stays bounded;
- ``evaluate(flat, X, y)``: one model (the reference for the batched path).

Every model also splits into its **first layer** and the rest (the coalition game's fast path,
:mod:`abm.fl.game`). The first layer (``first_layer`` names a prefix of the layout: the
``p_first`` leading entries of the flat vector) is affine in its parameters, with no
non-linearity before it, so its output for a combination of parameter vectors is the same
combination of the outputs:

- ``first_layer_batched(P1 (k, p_first), X (m, ...)) -> Z (k, m * first_layer_width)``: each
  model's first-layer output on the ``m`` samples, flattened in the model's own layout (in
  the dtype of ``P1``; the game uses ``first_layer_dtype``);
- ``head_batched(P2 (k, p - p_first), Z (k, m * first_layer_width), m) -> logits (k, C, m)``:
  everything after the first layer, starting with its non-linearity (which may overwrite
  ``Z``), **class-major** (the reductions over classes then run along a strided axis,
  vectorised over samples: measured several times faster than over a trailing axis of 10
  classes), so that
  ``head_batched(P[:, p_first:], first_layer_batched(P[:, :p_first], X), m)`` equals
  ``forward_batched(P, X).transpose(1, 2)`` up to float rounding.
- ``accumulate(logits (k, C, m), y, correct, loss)``: the evaluation sums of class-major logits
  (accuracy exactly as ``argmax``, first maximum wins on ties).

Lockstep training (``batched_sgd``: ``logreg`` and ``mlp``): ``train_state(P (k, p))`` turns
``k`` models into one contiguous ``[W; b]`` matrix stack per layer (zero-padded to whole
64-byte units), ``train_inputs(X)`` the samples into rows with a bias column, and
``sgd_step_batched(state, Xb, w, Yw, lr)`` takes one SGD step of all ``k`` models on their own
batches (analytic gradients with ``bmm``); ``train_params(state)`` gives the flat vectors back.
The federation's per-client autograd loop is the reference it is tested against.

Kinds (``make_net``):

- ``logreg``: multinomial logistic regression on the flattened input (batched: one GEMM).
- ``mlp``: one hidden ReLU layer of ``hidden`` units. The batched forward computes the first
  layer of a chunk of ``k`` models with one GEMM ``[W1_1 | ... | W1_k]^T X^T`` and the
  second with one ``bmm`` of ``(C, h) @ (h, m)`` products.
- ``cnn``: two 3x3 conv (8 and 16 channels) + ReLU + 2x2 max-pool blocks, then a ReLU
  hidden layer and the output layer; input ``(C, H, W)`` with ``H, W >= 4`` (CIFAR-10:
  ``(3, 32, 32)``), run in channels-last memory. ``forward_batched`` is ``torch.func.vmap``
  over the flat parameters; the coalition game's ``head_batched`` runs the k models' layers
  together instead (grouped second convolution, channels-last pooling, ``bmm``).

Parameters are initialised from a caller-supplied ``torch.Generator`` (never the global
torch RNG): weights and biases ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)), torch's default scale.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MODELS", "TRAIN_ALIGN", "Net", "make_net"]

MODELS = ("logreg", "mlp", "cnn")
#: floats (64 bytes) to which lockstep training pads each model's matrices and batches
TRAIN_ALIGN = 16



class Net:
    """A model over a flat parameter vector (see the module docstring)."""

    kind: str = ""
    #: activation elements (models x samples x width) per evaluation chunk
    chunk_elems: int = 1 << 19
    #: the same for the coalition game's fast path (its chunks of coalitions share one
    #: first-layer GEMM; measured on the MLP at 10 clients: 1 << 20, ~70 coalitions of 360
    #: digits per chunk, is 5-15 % faster than 1 << 19 at every call size from 23 to 1,024
    #: coalitions and level with 1 << 21)
    coalition_elems: int = 1 << 20
    #: names of the first layer's parameters (a prefix of ``layout``), see the module docstring
    first_layer: tuple[str, ...] = ()
    #: dtype in which the coalition game computes the per-round first-layer outputs
    first_layer_dtype: torch.dtype = torch.float64
    #: coalitions per chunk the game aims for on the fast path (sample chunks are sized so
    #: that this many models fit in ``chunk_elems``)
    coalition_chunk: int = 32

    def __init__(self, input_shape: tuple[int, ...], n_classes: int) -> None:
        self.input_shape = tuple(int(s) for s in input_shape)
        self.n_classes = int(n_classes)
        self.layout: list[tuple[str, tuple[int, ...], int]] = []  # name, shape, fan_in
        self._build()
        self.offsets: dict[str, tuple[int, int, tuple[int, ...]]] = {}
        o = 0
        for name, shape, _ in self.layout:
            size = math.prod(shape)
            self.offsets[name] = (o, o + size, shape)
            o += size
        self.n_params = o
        names = [name for name, _, _ in self.layout]
        if tuple(names[: len(self.first_layer)]) != self.first_layer:
            raise AssertionError(f"{self.kind}: first_layer must be a prefix of the layout")
        #: the first layer's parameters are ``flat[:p_first]``
        self.p_first = self.offsets[self.first_layer[-1]][1] if self.first_layer else 0
        self._spans: list[tuple[int, int, int, int, int]] | None = None  # _layer_spans

    # -- subclasses ---------------------------------------------------------------------
    def _build(self) -> None:
        raise NotImplementedError

    def forward(self, flat: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_batched(self, P: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.forward(p, X) for p in P])

    def first_layer_batched(self, P1: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """The first layer's output ``(k, m * first_layer_width)`` for ``P1 (k, p_first)``."""
        raise NotImplementedError

    def head_batched(
        self, P2: torch.Tensor, Z: torch.Tensor, m: int, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Class-major logits ``(k, C, m)`` from the first layer's output ``Z`` (which may be
        overwritten) and the other parameters ``P2 (k, p - p_first)``; written into ``out``
        (contiguous ``(k, C, m)`` float32) where the model's last layer can, else new."""
        raise NotImplementedError

    def _width(self) -> int:
        """Activation elements per sample per model (for chunking)."""
        return self.n_classes

    # -- lockstep training (logreg, mlp) ------------------------------------------------
    #: whether the net has ``sgd_step_batched`` (the federation then trains its clients in
    #: lockstep; otherwise one client at a time with autograd)
    batched_sgd: bool = False

    def train_inputs(self, X: torch.Tensor) -> torch.Tensor:
        """Samples ``X (m, ...)`` as ``sgd_step_batched`` takes them: flattened, then a
        constant-1 column (the bias input), then zero columns up to ``train_state``'s padded
        rows of the first layer: ``(m, r_1)``."""
        X = X.reshape(X.shape[0], -1)
        pad = self._layer_spans()[0][4] - X.shape[1] - 1
        return torch.cat([X, X.new_ones(X.shape[0], 1), X.new_zeros(X.shape[0], pad)], 1)

    def train_state(self, P: torch.Tensor) -> list[torch.Tensor]:
        """Working copies of ``k`` models' parameters ``P (k, p)`` for ``sgd_step_batched``:
        one contiguous ``(k, r, cols)`` tensor ``[W; b; 0]`` per layer (a weight ``W (rows,
        cols)`` immediately followed by its bias ``b (cols,)`` in the layout is, row-major,
        exactly ``[W; b]``, so the bias rides in the GEMM as a constant-1 input column),
        padded with ``r - rows - 1`` zero rows (their inputs are zero columns, so they get
        zero gradients and stay zero) so that every model's matrix is a whole number of
        ``TRAIN_ALIGN`` floats: each model's slice then starts 64-byte aligned wherever it
        sits in the stack, and MKL's GEMM, whose rounding depends on the output's alignment
        (measured), gives a model the same floats at any position."""
        k = P.shape[0]
        state = []
        for a, b, rows, cols, r in self._layer_spans():
            A = P.new_zeros((k, r, cols))
            A[:, : rows + 1] = P[:, a:b].view(k, rows + 1, cols)
            state.append(A)
        return state

    def train_params(self, state: list[torch.Tensor]) -> torch.Tensor:
        """The flat parameters ``(k, p)`` of a ``train_state``."""
        spans = self._layer_spans()
        return torch.cat([A[:, : rows + 1].reshape(A.shape[0], -1)
                          for A, (_, _, rows, _, _) in zip(state, spans, strict=True)], 1)

    def sgd_step_batched(
        self, state: list[torch.Tensor], Xb: torch.Tensor, w: torch.Tensor, Yw: torch.Tensor,
        lr: float,
    ) -> None:
        """One plain SGD step of ``k`` models at once, in place on their ``train_state``.

        Each model's loss is ``L = sum_j w_j CE_j`` over its own ``m`` samples ``Xb (k, m,
        r_1)`` (rows of ``train_inputs``; ``m`` a multiple of ``TRAIN_ALIGN``), with sample
        weights ``w (k, m, 1)`` (``1/m_real`` on a batch's ``m_real`` real rows, 0 on padding
        rows: the mean cross-entropy of the real rows, as ``F.cross_entropy``) and ``Yw (k,
        m, C)`` the weighted one-hot labels ``w_j * onehot(y_j)``; the step is ``theta -= lr *
        grad L``. The gradient is analytic (``dL/dlogits = w * softmax - Yw``, then back
        through the layers with ``bmm``): the function autograd differentiates in
        ``forward``, summed in another order, so equal to the autograd step up to float32
        rounding. Each model's arithmetic is its own slice of every batched product, so a
        model's step does not depend on the other ``k - 1`` (nor on its position)."""
        raise NotImplementedError

    def _layer_spans(self) -> list[tuple[int, int, int, int, int]]:
        """``(start, end, rows, cols, padded rows)`` of each ``[W; b]`` pair of the layout,
        which must be all of it (checked once)."""
        if self._spans is None:
            spans, o = [], 0
            for (wn, wshape, _), (bn, bshape, _) in zip(self.layout[::2], self.layout[1::2],
                                                        strict=True):
                a, b, _ = self.offsets[wn]
                if (len(wshape) != 2 or bshape != wshape[1:] or a != o
                        or self.offsets[bn][0] != b):
                    raise AssertionError(f"{self.kind}: the layout must alternate a weight "
                                         f"(rows, cols) and its bias (cols,), got {wn}, {bn}")
                o = self.offsets[bn][1]
                rows, cols = wshape
                r = rows + 1
                while (r * cols) % TRAIN_ALIGN:
                    r += 1
                spans.append((a, o, rows, cols, r))
            if o != self.n_params:
                raise AssertionError(f"{self.kind}: the layers must cover the parameters")
            self._spans = spans
        return self._spans

    @staticmethod
    def _logit_grad(logits: torch.Tensor, w: torch.Tensor, Yw: torch.Tensor) -> torch.Tensor:
        """``dL/dlogits = w * softmax(logits) - Yw`` for ``L = sum_j w_j CE_j``."""
        return torch.softmax(logits, -1).mul_(w).sub_(Yw)

    def coalition_width(self) -> int:
        """Activation elements per sample per coalition on the fast path (for chunking)."""
        return self._width()

    def first_layer_width(self) -> int:
        """Elements of the first layer's output per sample."""
        return self.n_classes

    # -- shared -------------------------------------------------------------------------
    def init_params(self, generator: torch.Generator) -> torch.Tensor:
        parts = []
        for _name, shape, fan_in in self.layout:
            bound = 1.0 / math.sqrt(fan_in)
            t = torch.rand(math.prod(shape), generator=generator, dtype=torch.float32)
            parts.append((t * 2.0 - 1.0) * bound)
        return torch.cat(parts)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views into ``flat`` (shape ``(p,)``) or ``(k, p)`` -> leading ``k`` kept."""
        lead = flat.shape[:-1]
        return {
            name: flat[..., a:b].reshape(*lead, *shape)
            for name, (a, b, shape) in self.offsets.items()
        }

    def _prepare(self, X: torch.Tensor) -> torch.Tensor:
        return X

    def _views(self, P: torch.Tensor, names: tuple[str, ...], start: int = 0):
        """Views of the named entries of ``P (k, q)`` (a slice of the layout from ``start``)."""
        k = P.shape[0]
        out = []
        for name in names:
            a, b, shape = self.offsets[name]
            out.append(P[:, a - start : b - start].reshape(k, *shape))
        return out

    @staticmethod
    def _loss_sum(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Summed cross-entropy over the sample axis (``-2``) of ``(..., m, C)`` logits,
        float64: per-sample losses in the logits' dtype, their sum in float64 (summing a few
        hundred float32 losses in float32 would cost ~1e-6 of the mean)."""
        picked = logits.gather(-1, y.expand(logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)
        return (torch.logsumexp(logits, -1) - picked).double().sum(-1)

    @staticmethod
    def accumulate(
        logits: torch.Tensor,
        y: torch.Tensor,
        correct: torch.Tensor | None,
        loss: torch.Tensor | None,
    ) -> None:
        """Add the correct predictions and summed cross-entropies of class-major
        ``logits (k, C, m)`` to ``correct (k,)`` and ``loss (k,)`` (float64; ``None``: not
        wanted); ``logits`` is overwritten when the loss is wanted. A prediction is correct
        iff ``argmax == y`` with ``argmax``'s tie-break (the first maximal class wins): ``y``
        reaches the maximum and no class before ``y`` does. Written with ``amax`` because
        ``argmax`` over a strided class axis is ~10x slower."""
        k, C, m = logits.shape
        top = logits.amax(1, keepdim=True)  # (k, 1, m)
        picked = logits.gather(1, y.view(1, 1, m).expand(k, 1, m))  # (k, 1, m)
        if correct is not None:
            before = torch.arange(C, device=y.device).view(1, C, 1) < y.view(1, 1, m)
            top_before = torch.where(before, logits, float("-inf")).amax(1, keepdim=True)
            correct += ((picked == top) & (top_before < top)).sum((1, 2)).to(torch.float64)
        if loss is not None:
            # in place: the same float32 operations as on a copy, one pass less over memory
            lse = logits.sub_(top).exp_().sum(1, keepdim=True).log_().add_(top)
            loss += lse.sub_(picked).sum((1, 2), dtype=torch.float64)

    @torch.no_grad()
    def evaluate(
        self, flat: torch.Tensor, X: torch.Tensor, y: torch.Tensor, *, want_loss: bool = True
    ) -> tuple[float, float]:
        """Accuracy and mean cross-entropy of one model, unbatched (``nan`` loss unless
        ``want_loss``)."""
        logits = self.forward(flat, X)
        m = y.shape[0]
        correct = float((logits.argmax(-1) == y).sum()) / m
        loss = float(self._loss_sum(logits, y)) / m if want_loss else float("nan")
        return correct, loss

    @torch.no_grad()
    def evaluate_batched(
        self, P: torch.Tensor, X: torch.Tensor, y: torch.Tensor, *, want_loss: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Accuracy and mean cross-entropy (float64 arrays ``(k,)``; ``nan`` loss unless
        ``want_loss``) of the ``k`` models in ``P (k, p)``. Models and samples are taken in
        chunks of about ``chunk_elems`` activation elements (cache-sized for the small
        models: faster than one huge batch)."""
        k = P.shape[0]
        m = y.shape[0]
        width = max(1, self._width())
        budget = self.chunk_elems
        m_chunk = min(m, max(1, budget // width))
        k_chunk = max(1, budget // (m_chunk * width))
        correct = torch.zeros(k, dtype=torch.float64, device=P.device)
        loss = torch.zeros(k, dtype=torch.float64, device=P.device)
        for a in range(0, k, k_chunk):
            Pa = P[a : a + k_chunk]
            kc = Pa.shape[0]
            for s in range(0, m, m_chunk):
                Xs, ys = X[s : s + m_chunk], y[s : s + m_chunk]
                logits = self.forward_batched(Pa, Xs).transpose(1, 2)  # (kc, C, ms)
                self.accumulate(logits, ys, correct[a : a + kc],
                                loss[a : a + kc] if want_loss else None)
        acc = (correct / m).cpu().numpy()
        if not want_loss:
            return acc, np.full(k, np.nan)
        return acc, (loss / m).cpu().numpy()


class LogReg(Net):
    kind = "logreg"
    first_layer = ("W", "b")  # the whole model: the head is the identity

    def _build(self) -> None:
        d = math.prod(self.input_shape)
        self.d = d
        self.layout = [("W", (d, self.n_classes), d), ("b", (self.n_classes,), d)]

    def _flat_x(self, X: torch.Tensor) -> torch.Tensor:
        return X.reshape(X.shape[0], self.d)

    def forward(self, flat, X):
        p = self.unflatten(flat)
        return torch.addmm(p["b"], self._flat_x(X), p["W"])

    def forward_batched(self, P, X):
        k, C = P.shape[0], self.n_classes
        p = self.unflatten(P)
        # All k models in one GEMM: (k*C, d) @ (d, m) -> (k, C, m).
        Wt = p["W"].transpose(1, 2).reshape(k * C, self.d)
        L = torch.addmm(p["b"].reshape(k * C, 1), Wt, self._flat_x(X).t())
        return L.view(k, C, -1).transpose(1, 2).contiguous()

    def first_layer_batched(self, P1, X):
        W, b = self._views(P1, self.first_layer)
        k = P1.shape[0]
        Xt = self._flat_x(X).to(P1.dtype).t().expand(k, -1, -1)
        return torch.baddbmm(b.unsqueeze(2), W.transpose(1, 2), Xt).reshape(k, -1)  # (k, C*m)

    def head_batched(self, P2, Z, m, out=None):
        return Z.view(Z.shape[0], self.n_classes, m)

    batched_sgd = True

    def sgd_step_batched(self, state, Xb, w, Yw, lr):
        (A,) = state  # (k, r_1, C) = [W; b; 0]
        G = self._logit_grad(torch.bmm(Xb, A), w, Yw)  # (k, m, C)
        A.baddbmm_(Xb.transpose(1, 2), G, alpha=-lr)  # A -= lr * Xb^T G


class MLP(Net):
    kind = "mlp"
    first_layer = ("W1", "b1")

    def __init__(self, input_shape, n_classes, hidden: int = 32) -> None:
        self.hidden = int(hidden)
        super().__init__(input_shape, n_classes)

    def _build(self) -> None:
        d = math.prod(self.input_shape)
        h, C = self.hidden, self.n_classes
        self.d = d
        self.layout = [
            ("W1", (d, h), d),
            ("b1", (h,), d),
            ("W2", (h, C), h),
            ("b2", (C,), h),
        ]

    def _width(self) -> int:
        return self.hidden + self.n_classes

    def forward(self, flat, X):
        p = self.unflatten(flat)
        H = torch.relu(torch.addmm(p["b1"], X.reshape(X.shape[0], self.d), p["W1"]))
        return torch.addmm(p["b2"], H, p["W2"])

    def forward_batched(self, P, X):
        k, h, C = P.shape[0], self.hidden, self.n_classes
        p = self.unflatten(P)
        Xf = X.reshape(X.shape[0], self.d)
        # First layer of all k models in one GEMM: (k*h, d) @ (d, m) -> (k, h, m).
        W1t = p["W1"].transpose(1, 2).reshape(k * h, self.d)
        H = torch.addmm(p["b1"].reshape(k * h, 1), W1t, Xf.t()).relu_().view(k, h, -1)
        # Second layer as (C, h) @ (h, m) per model (wide, BLAS-friendly) -> (k, C, m).
        L = torch.baddbmm(p["b2"].view(k, C, 1), p["W2"].transpose(1, 2), H)
        return L.transpose(1, 2).contiguous()

    def first_layer_width(self) -> int:
        return self.hidden

    def first_layer_batched(self, P1, X):
        W1, b1 = self._views(P1, self.first_layer)
        k = P1.shape[0]
        Xt = X.reshape(X.shape[0], self.d).to(P1.dtype).t().expand(k, -1, -1)
        # (k, h, m): hidden-major, so the second layer is a wide (C, h) @ (h, m) per model
        return torch.baddbmm(b1.unsqueeze(2), W1.transpose(1, 2), Xt).reshape(k, -1)

    def head_batched(self, P2, Z, m, out=None):
        W2, b2 = self._views(P2, ("W2", "b2"), self.p_first)
        k = Z.shape[0]
        H = Z.relu_().view(k, self.hidden, m)
        return torch.baddbmm(b2.unsqueeze(2), W2.transpose(1, 2), H, out=out)  # (k, C, m)

    batched_sgd = True

    def sgd_step_batched(self, state, Xb, w, Yw, lr):
        A1, A2 = state  # (k, r_1, h) = [W1; b1; 0], (k, r_2, C) = [W2; b2; 0]
        h = self.hidden
        Z = torch.bmm(Xb, A1)  # (k, m, h)
        k, m = Z.shape[:2]
        H = torch.cat([Z.relu(), Z.new_ones(k, m, 1), Z.new_zeros(k, m, A2.shape[1] - h - 1)],
                      2)  # (k, m, r_2): the hidden units, the bias input, zero padding
        G = self._logit_grad(torch.bmm(H, A2), w, Yw)  # (k, m, C)
        # back through the second layer with the old W2, before either layer moves; the
        # ReLU's backward as autograd's (``Z > 0`` then a product is ~8x slower here)
        dZ = torch.ops.aten.threshold_backward(torch.bmm(G, A2[:, :h].transpose(1, 2)), Z, 0)
        A2.baddbmm_(H.transpose(1, 2), G, alpha=-lr)
        A1.baddbmm_(Xb.transpose(1, 2), dZ, alpha=-lr)


class CNN(Net):
    kind = "cnn"
    first_layer = ("conv1.w", "conv1.b")
    # Convolutions are compute-bound on CPU: larger batches of models bring nothing, so
    # chunks stay cache-sized (measured: 1 << 22 beats 1 << 24..26).
    chunk_elems = 1 << 22
    coalition_elems = 1 << 22
    # float64 convolutions have no fast CPU kernel (~20x slower); a first-convolution output
    # sums only 27 products, so float32 rounding there is ~1e-7 relative (within tolerance)
    first_layer_dtype = torch.float32
    coalition_chunk = 8  # measured flat from 4 to 32 (about 50 us per coalition and image)

    def __init__(self, input_shape, n_classes, hidden: int = 32) -> None:
        self.hidden = int(hidden)
        if len(input_shape) != 3 or input_shape[1] < 4 or input_shape[2] < 4:
            raise ValueError(
                f"model 'cnn' needs image input (C, H, W) with H, W >= 4, got {input_shape}"
            )
        super().__init__(input_shape, n_classes)

    def _build(self) -> None:
        c, H, W = self.input_shape
        c1, c2 = 8, 16
        flat = c2 * (H // 4) * (W // 4)
        self.flat = flat
        self.layout = [
            ("conv1.w", (c1, c, 3, 3), c * 9),
            ("conv1.b", (c1,), c * 9),
            ("conv2.w", (c2, c1, 3, 3), c1 * 9),
            ("conv2.b", (c2,), c1 * 9),
            ("fc1.w", (flat, self.hidden), flat),
            ("fc1.b", (self.hidden,), flat),
            ("fc2.w", (self.hidden, self.n_classes), self.hidden),
            ("fc2.b", (self.n_classes,), self.hidden),
        ]

    def _width(self) -> int:
        _, H, W = self.input_shape
        # conv activations dominate (kept alive by vmap until the pooled output)
        return 8 * H * W * 2 + 16 * H * W // 2 + self.hidden + self.n_classes

    def forward(self, flat, X):
        p = self.unflatten(flat)
        # channels last: CPU pooling and convolution kernels are faster so (measured: a
        # training step on 64 CIFAR images ~25 % faster)
        X = X.contiguous(memory_format=torch.channels_last)
        z = F.max_pool2d(torch.relu(F.conv2d(X, p["conv1.w"], p["conv1.b"], padding=1)), 2)
        z = F.max_pool2d(torch.relu(F.conv2d(z, p["conv2.w"], p["conv2.b"], padding=1)), 2)
        z = torch.relu(torch.addmm(p["fc1.b"], z.reshape(z.shape[0], self.flat), p["fc1.w"]))
        return torch.addmm(p["fc2.b"], z, p["fc2.w"])

    def forward_batched(self, P, X):
        return torch.func.vmap(self.forward, in_dims=(0, None))(P, X)

    def first_layer_width(self) -> int:
        _, H, W = self.input_shape
        return 8 * H * W

    def coalition_width(self) -> int:
        """Activation elements per sample per coalition on the fast path (for chunking)."""
        _, H, W = self.input_shape
        return 8 * H * W + 8 * H * W // 2 + 16 * H * W // 4 + 16 * H * W // 16 + 2 * self.hidden

    def first_layer_batched(self, P1, X):
        w, b = self._views(P1, self.first_layer)
        k, m = P1.shape[0], X.shape[0]
        c, H, W = self.input_shape
        # the k first convolutions as one convolution with k * 8 output channels
        z = F.conv2d(X.to(P1.dtype), w.reshape(k * 8, c, 3, 3), b.reshape(k * 8), padding=1)
        # per model, samples x pixels x channels (channels last: pooling is ~7x faster so)
        return z.view(m, k, 8, H, W).permute(1, 0, 3, 4, 2).reshape(k, -1)

    def head_batched(self, P2, Z, m, out=None):
        # Every layer runs once for all k models: pooling on channels-last tensors, the k
        # second convolutions as one grouped convolution, the dense layers as bmm.
        _, H, W = self.input_shape
        k, H2, W2, H4, W4 = Z.shape[0], H // 2, W // 2, H // 4, W // 4
        w2, b2, f1w, f1b, f2w, f2b = self._views(
            P2, ("conv2.w", "conv2.b", "fc1.w", "fc1.b", "fc2.w", "fc2.b"), self.p_first
        )
        z = Z.view(k * m, H, W, 8).permute(0, 3, 1, 2)  # NCHW shape, channels-last memory
        z = F.max_pool2d(z.relu_(), 2)  # (k*m, 8, H2, W2), memory (k*m, H2, W2, 8)
        # regroup: channels of model j become channels 8j..8j+7 of one image per sample
        z = z.permute(0, 2, 3, 1).reshape(k, m, H2, W2, 8).permute(1, 2, 3, 0, 4)
        z = z.reshape(m, H2, W2, k * 8).permute(0, 3, 1, 2)
        z = F.conv2d(z, w2.reshape(k * 16, 8, 3, 3), b2.reshape(k * 16), padding=1, groups=k)
        z = F.max_pool2d(z.relu_(), 2)  # (m, k*16, H4, W4)
        # per model, the (16, H4, W4) flattening that fc1 expects
        z = z.reshape(m, k, 16, H4, W4).transpose(0, 1).reshape(k, m, 16 * H4 * W4)
        h = torch.baddbmm(f1b.unsqueeze(1), z, f1w).relu_()  # (k, m, hidden)
        return torch.baddbmm(f2b.unsqueeze(1), h, f2w).transpose(1, 2)  # (k, C, m)


def make_net(kind: str, input_shape: tuple[int, ...], n_classes: int, *, hidden: int = 32) -> Net:
    """Build a :class:`Net` of the given kind (``logreg``, ``mlp``, ``cnn``)."""
    if kind == "logreg":
        return LogReg(input_shape, n_classes)
    if kind == "mlp":
        return MLP(input_shape, n_classes, hidden)
    if kind == "cnn":
        return CNN(input_shape, n_classes, hidden)
    raise ValueError(f"model must be one of {', '.join(MODELS)}, got {kind!r}")
