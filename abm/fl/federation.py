"""FedAvg over simulated clients.

``Federation(train, parts, val, behaviours, *, model="mlp", hidden=32, local_epochs=1,
batch_size=32, lr=0.1, metric="accuracy", utility_samples=None, device="cpu", seed)``

- ``train``/``val``: :class:`~abm.fl.data.Dataset` (the validation split is the
  federation's own, see :func:`~abm.fl.data.split_validation`); ``parts``: one index array
  into ``train`` per client (:func:`~abm.fl.partition.partition`); ``behaviours``: one
  :class:`~abm.fl.behaviours.Behaviour` (or behaviour name) per client.
- ``model``: ``logreg`` | ``mlp`` | ``cnn`` (:mod:`abm.fl.nets`).
- A round: every client starts from the global parameters and sends an update (a delta);
  honest training is ``local_epochs`` epochs of plain minibatch SGD (``batch_size``,
  ``lr``, cross-entropy) over its data in a fresh random order; the server aggregates
  ``new = prev + sum_i w_i U_i`` with data weights ``w_i = n_i / sum_j n_j``, and evaluates
  the new model on the validation split. For ``logreg`` and ``mlp`` the clients' SGD steps
  run in lockstep, batched across clients (``_lockstep_sgd``: the same batches, analytic
  gradients; equal to the per-client autograd loop ``_local_sgd``, the reference path and
  the ``cnn``'s, up to float32 rounding).
- ``run_round(participants=None) -> RoundResult`` with the round's updates and the round's
  :class:`~abm.fl.game.CoalitionGame` (utility ``metric``: ``accuracy``, or ``loss`` /
  its alias ``neg_loss`` for the negative mean validation loss; coalition models by the
  ``coalition`` rule, ``round_weights`` or ``coalition_fedavg``, :mod:`abm.fl.game`).
  ``participants`` (bool ``(n,)``, ``None`` = all) says which clients train: only they send
  updates, the aggregate weighs them by their data among themselves, and the game's players
  are the ``k`` participants only (``RoundResult.participants`` maps player ``j`` to client
  index). With no participant, nobody trains, the global model is unchanged and the round has
  no game. ``behaviours`` (client index -> behaviour) replaces a client's behaviour for
  that round only (a client choosing its conduct each round, ``abm.agents.conduct``): its
  update, and its labels where the behaviour corrupts them (drawn from the client's label
  seed, the same in every round it takes that behaviour).
- ``utility_samples``: the coalition game's utilities are measured on a stratified subset of
  this many validation samples (drawn once, from ``seed``; per class as close to the split's
  class shares as whole samples allow), ``None`` = the whole validation split. The global
  model's ``accuracy``/``loss`` are always measured on the whole split. A smaller subset
  makes every coalition evaluation proportionally cheaper and the utilities noisier (the
  CIFAR-10 scenario's header and ``make bench`` give the measured error).
- ``device``: ``cpu`` | ``cuda`` | ``auto`` (:func:`abm.fl.device.resolve_device`); the
  resolved device is ``federation.device``. Training and coalition evaluation run there.

Determinism: one integer ``seed`` drives everything through private generators (never
global torch/numpy state): the initial model (torch generator from ``seed``), the label
corruption of each client (numpy ``SeedSequence([seed, 1, i])``), and each client's batch
order / noise in round ``r`` (torch generator seeded from ``SeedSequence([seed, 2, r, i])``,
so a client's training does not depend on the other clients), the utility subset
(sklearn's stratified split, seeded from ``SeedSequence([seed, 3])``). Two federations built
with the same arguments on the same device produce identical rounds; random draws use CPU
generators on every device. The library never calls ``torch.set_num_threads``; the caller
decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from abm.fl.behaviours import Behaviour, make_behaviour
from abm.fl.data import Dataset
from abm.fl.device import make_deterministic, resolve_device
from abm.fl.game import COALITION_RULES, METRICS, CoalitionGame, fedavg_weights
from abm.fl.nets import MODELS, TRAIN_ALIGN, make_net

__all__ = ["Federation", "RoundResult"]


@dataclass
class RoundResult:
    """One FedAvg round.

    ``round`` (1-based index of the round just run), ``updates`` (``(n, p)`` float32 tensor of
    client deltas), ``weights`` (``(n,)`` float64 aggregation weights, summing to 1),
    ``game`` (the round's :class:`CoalitionGame`), ``accuracy``/``loss`` (new global model on
    the validation split), ``prev_accuracy``/``prev_loss`` (previous global model), and
    extras: ``n_samples`` (``(n,)`` int), ``behaviours`` (names), ``prev_params`` and
    ``params`` (global parameters before/after), ``aggregate`` (``sum_i w_i U_i``),
    ``train_seconds``, ``participants`` (``(k,)`` int: the client index of each of the
    round's ``k`` players, ascending; all clients unless the round was run with a mask).
    Every per-player array (``updates``, ``weights``, ``n_samples``, ``behaviours``) has
    the ``k`` participants only. A round nobody trained in has ``k = 0`` and ``game=None``.
    """

    round: int
    updates: torch.Tensor
    weights: np.ndarray
    game: CoalitionGame | None
    accuracy: float
    loss: float
    prev_accuracy: float
    prev_loss: float
    n_samples: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    behaviours: tuple[str, ...] = ()
    prev_params: torch.Tensor | None = None
    params: torch.Tensor | None = None
    aggregate: torch.Tensor | None = None
    train_seconds: float = 0.0
    participants: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def n_clients(self) -> int:
        return int(self.updates.shape[0])


def _seed_from(*entropy: int) -> int:
    return int(np.random.SeedSequence(list(entropy)).generate_state(2, np.uint64)[0] >> 1)


def _stratified_subset(y: np.ndarray, size: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of a stratified sample of ``size`` labels from ``y`` (``None``: all)."""
    if size is None or size >= len(y):
        return None
    size = _check_int("utility_samples", size, 1)
    n_classes = np.unique(y).size
    if size < n_classes:
        raise ValueError(
            f"Federation: utility_samples={size} is smaller than the {n_classes} classes of the "
            "validation split (a stratified subset needs one sample of each)"
        )
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    if counts[counts > 0].min() < 2:
        raise ValueError(
            f"Federation: utility_samples={size}: a class has a single validation sample, so "
            "no stratified subset exists; use the whole split (utility_samples=None) or a "
            "larger validation fraction"
        )
    idx = np.arange(len(y))
    keep, _ = train_test_split(idx, train_size=size, stratify=y,
                               random_state=_seed_from(seed, 3) % 2**32)
    return np.sort(keep)


def _check_int(name: str, value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lo:
        raise ValueError(f"Federation: {name} must be an integer >= {lo}, got {value!r}")
    return int(value)


class Federation:
    """FedAvg over clients with behaviours (see the module docstring)."""

    def __init__(
        self,
        train: Dataset,
        parts: Sequence[np.ndarray],
        val: Dataset,
        behaviours: Sequence[Behaviour | str],
        *,
        model: str = "mlp",
        hidden: int = 32,
        local_epochs: int = 1,
        batch_size: int = 32,
        lr: float = 0.1,
        metric: str = "accuracy",
        coalition: str = "round_weights",
        utility_samples: int | None = None,
        device: str = "cpu",
        seed: int,
    ) -> None:
        if model not in MODELS:
            raise ValueError(f"Federation: model must be one of {', '.join(MODELS)}, got {model!r}")
        if metric not in METRICS:
            raise ValueError(
                f"Federation: metric must be one of {', '.join(METRICS)}, got {metric!r}"
            )
        if coalition not in COALITION_RULES:
            raise ValueError(f"Federation: coalition must be one of "
                             f"{', '.join(COALITION_RULES)}, got {coalition!r}")
        self.coalition = coalition
        self.hidden = _check_int("hidden", hidden, 1)
        self.local_epochs = _check_int("local_epochs", local_epochs, 1)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        self.seed = _check_int("seed", seed, 0)
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < float("inf"):
            raise ValueError(f"Federation: lr must be a number > 0, got {lr!r}")
        self.lr = float(lr)
        self.metric = metric
        self.model = model
        if len(parts) != len(behaviours):
            raise ValueError(
                f"Federation: {len(parts)} partitions but {len(behaviours)} behaviours "
                "(one each per client)"
            )
        if len(parts) < 1:
            raise ValueError("Federation: needs at least one client")
        if train.n_classes != val.n_classes or train.input_shape != val.input_shape:
            raise ValueError("Federation: train and val must have the same classes and shape")
        if len(val) < 1:
            raise ValueError("Federation: the validation split is empty")

        self.behaviours: list[Behaviour] = [
            make_behaviour(b) if isinstance(b, str) else b for b in behaviours
        ]
        for b in self.behaviours:
            if not isinstance(b, Behaviour):
                raise TypeError(f"Federation: behaviours must be Behaviour or names, got {b!r}")
        self.device = resolve_device(device)
        if self.device == "cuda":
            make_deterministic()
        dev = torch.device(self.device)
        self.n_classes = train.n_classes
        self.net = make_net(model, train.input_shape, train.n_classes, hidden=self.hidden)

        self._X: list[torch.Tensor] = []
        self._y: list[torch.Tensor] = []
        #: Each client's true labels, for a behaviour that replaces its own for a round
        #: (`run_round(behaviours=...)`) and trains on labels of its own (`_labels`).
        self._true_y: list[np.ndarray] = []
        self._round_labels: dict[tuple[int, str, str], torch.Tensor] = {}
        sizes = []
        for i, (idx, b) in enumerate(zip(parts, self.behaviours, strict=True)):
            idx = np.asarray(idx, dtype=np.int64)
            if idx.ndim != 1 or idx.size == 0:
                raise ValueError(f"Federation: client {i} has no samples")
            if idx.min() < 0 or idx.max() >= len(train):
                raise ValueError(f"Federation: client {i} has indices outside the train set")
            true_y = train.y[idx]
            self._true_y.append(true_y)
            # A behaviour that keeps its labels draws nothing: its generator is not made
            # (a seed sequence per client, 10,000 of them at cross-device scale).
            # (A copy of its own, as `Behaviour.labels` returns what it is given.)
            y = (train.y[idx] if type(b).labels is Behaviour.labels
                 else b.labels(train.y[idx], train.n_classes, self._label_rng(i)))
            self._X.append(torch.from_numpy(np.ascontiguousarray(train.X[idx])).to(dev))
            self._y.append(torch.from_numpy(np.asarray(y, dtype=np.int64)).to(dev))
            sizes.append(idx.size)
        self.client_sizes = np.asarray(sizes, dtype=np.int64)
        self._lockstep_data: tuple[torch.Tensor, torch.Tensor, np.ndarray] | None = None
        self.weights = fedavg_weights(self.client_sizes)

        self.X_val = torch.from_numpy(val.X).to(dev)
        self.y_val = torch.from_numpy(val.y).to(dev)
        self.utility_index = _stratified_subset(val.y, utility_samples, self.seed)
        if self.utility_index is None:
            self.X_utility, self.y_utility = self.X_val, self.y_val
        else:
            where = torch.from_numpy(self.utility_index).to(dev)
            self.X_utility, self.y_utility = self.X_val[where], self.y_val[where]
        gen = torch.Generator().manual_seed(_seed_from(self.seed, 0))
        self.params = self.net.init_params(gen).to(dev)
        self.round = 0
        acc, loss = self.net.evaluate_batched(self.params[None], self.X_val, self.y_val)
        self.accuracy, self.loss = float(acc[0]), float(loss[0])

    @property
    def n_clients(self) -> int:
        return len(self.behaviours)

    @property
    def n_params(self) -> int:
        return self.net.n_params

    # -- training -----------------------------------------------------------------------------
    #: train with the per-client autograd loop (``_local_sgd``) even where the net has a
    #: lockstep step: the reference path the tests compare the lockstep path with
    _reference_training: bool = False

    def _label_rng(self, i: int) -> np.random.Generator:
        """Client ``i``'s generator for its label corruption (the same for any behaviour)."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, 1, i]))

    def _labels(self, i: int, b: Behaviour) -> torch.Tensor:
        """The labels client ``i`` trains on under behaviour ``b``: its own (``self._y[i]``,
        the very tensor) when ``b`` is its behaviour or neither changes labels; else ``b``'s
        labels of its true ones, drawn from the client's label generator and kept for the
        run, so that a behaviour taken in several rounds corrupts the same labels."""
        own = self.behaviours[i]
        if b is own or (type(b).labels is Behaviour.labels
                        and type(own).labels is Behaviour.labels):
            return self._y[i]
        key = (i, b.name, repr(b.params.model_dump()))
        if key not in self._round_labels:
            y = b.labels(self._true_y[i], self.n_classes, self._label_rng(i))
            self._round_labels[key] = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(
                self._y[i].device)
        return self._round_labels[key]

    def _generator(self, i: int) -> torch.Generator:
        """Client ``i``'s generator for the current round (its batch order, its noise)."""
        return torch.Generator().manual_seed(_seed_from(self.seed, 2, self.round + 1, i))

    def _local_sgd(self, i: int, start: torch.Tensor, gen: torch.Generator,
                   y: torch.Tensor | None = None) -> torch.Tensor:
        """Reference: client ``i``'s honest update ``(p,)``, one autograd step per batch, on
        its labels or on ``y`` (a round's behaviour's labels, `_labels`)."""
        X, y = self._X[i], self._y[i] if y is None else y
        n = y.shape[0]
        w = start.clone().requires_grad_(True)
        bs = self.batch_size
        for _ in range(self.local_epochs):
            order = torch.randperm(n, generator=gen).to(X.device)
            for s in range(0, n, bs):
                b = order[s : s + bs]
                loss = F.cross_entropy(self.net.forward(w, X[b]), y[b])
                (g,) = torch.autograd.grad(loss, w)
                with torch.no_grad():
                    w.sub_(g, alpha=self.lr)
        return w.detach() - start

    def _train_inputs(self) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Every client's samples as the lockstep step takes them, stacked once: inputs
        ``(N, d + 1)``, one-hot labels ``(N, C)``, and each client's first row ``(n,)``."""
        if self._lockstep_data is None:  # built at the first lockstep round
            X = torch.cat([self.net.train_inputs(x) for x in self._X])
            Y = F.one_hot(torch.cat(self._y), self.n_classes).to(X.dtype)
            first = np.concatenate([[0], np.cumsum(self.client_sizes)[:-1]])
            self._lockstep_data = (X, Y, first)
        return self._lockstep_data

    def _lockstep_sgd(
        self, clients: Sequence[int], start: torch.Tensor, gens: Sequence[torch.Generator]
    ) -> torch.Tensor:
        """The honest updates ``(k, p)`` of ``clients`` (generator ``gens[j]`` each), all
        trained at once: step ``t`` is one batched SGD step of every client that has a
        ``t``-th batch.

        A client's batches are those of ``_local_sgd`` (the same ``randperm`` draws from its
        generator, epoch by epoch, cut into ``batch_size`` slices), each padded to exactly
        ``batch_size`` rows with zero-weight rows; its real rows weigh ``1/m_real``, so its
        loss is the batch's mean cross-entropy. Shapes per client are thus fixed by its own
        data, and a client whose batches are done drops out: with the clients ordered by
        their number of steps (most first), the clients still training at step ``t`` are a
        prefix of the stack. Each client's arithmetic is its own slice of every batched
        product, so its update does not depend on who else trains (tested)."""
        X, Y, first = self._train_inputs()
        bs, epochs = self.batch_size, self.local_epochs
        # rows per padded batch: a whole number of TRAIN_ALIGN floats per client's matrix
        # in every product (see Net.train_state), more zero-weight rows if need be
        m = -(-bs // TRAIN_ALIGN) * TRAIN_ALIGN
        dev = start.device
        sizes = self.client_sizes[list(clients)]
        batches = -(-sizes // bs)  # per epoch
        steps = epochs * batches
        order = np.argsort(-steps, kind="stable")  # most steps first: active = a prefix
        k, t_max = len(clients), int(steps.max())
        rows = np.zeros((t_max, k, m), np.int64)  # padding rows: row 0, weight 0
        w = np.zeros((t_max, k, m), np.float32)
        for j, c in enumerate(order):
            n, nb, t_c = int(sizes[c]), int(batches[c]), int(steps[c])
            weight = np.zeros((nb, m), np.float32)
            weight[:, :bs] = 1.0 / bs
            last = n - (nb - 1) * bs  # real rows of the last (partial) batch
            weight[-1] = 0.0
            weight[-1, :last] = 1.0 / last
            perms = np.zeros((epochs, nb, m), np.int64)
            for e in range(epochs):  # the reference path's draws, in its order
                perm = torch.randperm(n, generator=gens[c]).numpy() + first[clients[c]]
                perms[e, :-1, :bs] = perm[: (nb - 1) * bs].reshape(nb - 1, bs)
                perms[e, -1, :last] = perm[(nb - 1) * bs :]
            rows[:t_c, j] = perms.reshape(t_c, m)
            w[:t_c, j] = np.tile(weight, (epochs, 1))
        rows_t = torch.from_numpy(rows).to(dev)
        w_t = torch.from_numpy(w).to(dev).unsqueeze(-1)  # (t_max, k, m, 1)
        Yw = Y.index_select(0, rows_t.view(-1)).view(t_max, k, m, -1).mul_(w_t)
        active = (steps[None, :] > np.arange(t_max)[:, None]).sum(1).tolist()
        state = self.net.train_state(start.expand(k, -1))
        for t in range(t_max):
            a = active[t]
            Xb = X.index_select(0, rows_t[t, :a].reshape(-1)).view(a, m, -1)
            self.net.sgd_step_batched([s[:a] for s in state], Xb, w_t[t, :a], Yw[t, :a],
                                      self.lr)
        out = torch.empty((k, start.shape[0]), dtype=start.dtype, device=dev)
        out[torch.from_numpy(order).to(dev)] = self.net.train_params(state) - start
        return out

    def _train(
        self, clients: Sequence[int], start: torch.Tensor, gens: Sequence[torch.Generator]
    ) -> torch.Tensor:
        """Honest updates ``(k, p)`` of ``clients``: in lockstep where the net has a batched
        step (logreg, mlp), else (cnn, or the reference switch) one client at a time."""
        if self.net.batched_sgd and not self._reference_training:
            return self._lockstep_sgd(clients, start, gens)
        return torch.stack([self._local_sgd(int(i), start, g)
                            for i, g in zip(clients, gens, strict=True)])

    def _updates(self, clients: np.ndarray,
                 overrides: Mapping[int, Behaviour] | None = None) -> torch.Tensor:
        """The updates ``(k, p)`` float32 that ``clients`` send this round; ``overrides``:
        the behaviour a client runs this round in place of its own (`run_round`).

        Every behaviour that keeps the base class's ``update`` (``train()`` and nothing else:
        honest, noisy labels, label flip, small data) on the client's own labels is trained
        in one lockstep batch; its ``train`` closure returns the precomputed result. A
        behaviour that overrides ``update`` gets a closure that trains it alone when called,
        from its generator as it is then (a free rider never calls it), so it sees what it
        would on its own; so does a round's behaviour with labels of its own (trained by the
        per-client loop on them, `_local_sgd`)."""
        start = self.params
        overrides = overrides or {}
        gens = {int(i): self._generator(int(i)) for i in clients}
        chosen = {int(i): overrides.get(int(i), self.behaviours[int(i)]) for i in clients}
        labels = {i: self._labels(i, b) for i, b in chosen.items()}
        plain = [i for i, b in chosen.items()
                 if type(b).update is Behaviour.update and labels[i] is self._y[i]]
        trained = {}
        if plain:
            trained = dict(zip(plain, self._train(plain, start, [gens[i] for i in plain]),
                               strict=True))
        out = []
        for i in (int(c) for c in clients):
            b = chosen[i]
            if i in trained:
                train = trained[i].clone
            elif labels[i] is self._y[i]:
                def train(i=i):
                    return self._train([i], start, [gens[i]])[0]
            else:
                def train(i=i):
                    return self._local_sgd(i, start, gens[i], labels[i])
            delta = b.update(train, start, gens[i])
            if delta.shape != start.shape:
                raise ValueError(
                    f"behaviour {b.name!r} returned an update of shape "
                    f"{tuple(delta.shape)}, expected {tuple(start.shape)}"
                )
            out.append(delta.detach().to(torch.float32))
        return torch.stack(out)

    def client_update(self, i: int) -> torch.Tensor:
        """Client ``i``'s update for the current round (deterministic given the seed; the
        same as its row of a round's updates)."""
        return self._updates(np.array([i]))[0]

    def _participants(self, participants: np.ndarray | Sequence[bool] | None) -> np.ndarray:
        if participants is None:
            return np.arange(self.n_clients)
        mask = np.asarray(participants)
        if mask.dtype != bool or mask.shape != (self.n_clients,):
            raise ValueError(
                f"Federation: participants must be a bool array of shape ({self.n_clients},), "
                f"got {mask.dtype} {mask.shape}"
            )
        return np.flatnonzero(mask)

    def run_round(self, participants: np.ndarray | Sequence[bool] | None = None,
                  behaviours: Mapping[int, Behaviour] | None = None) -> RoundResult:
        """Run one FedAvg round among ``participants`` (bool ``(n,)``; ``None``: every
        client) and return its :class:`RoundResult` (see the module docstring).

        ``behaviours``: for this round only, the behaviour a client runs in place of its own
        (client index -> behaviour; a client that chooses its conduct each round,
        `abm.agents.conduct`). Its update comes from that behaviour, and so do its labels
        when the behaviour corrupts them (drawn from the client's label generator, the same
        in every round it takes that behaviour); its data and partition stay its own."""
        import time

        idx = self._participants(participants)
        behaviours = dict(behaviours or {})
        for i, b in behaviours.items():
            if not (isinstance(i, int | np.integer) and 0 <= i < self.n_clients
                    and isinstance(b, Behaviour)):
                raise ValueError(f"Federation: behaviours must map client indices 0 to "
                                 f"{self.n_clients - 1} to Behaviour objects, got {i!r}: {b!r}")
        prev = self.params
        prev_acc, prev_loss = self.accuracy, self.loss
        if idx.size == 0:  # nobody trains: the model stays, there is no game to play
            self.round += 1
            empty = torch.zeros((0, self.n_params), dtype=torch.float32, device=prev.device)
            return RoundResult(
                round=self.round, updates=empty, weights=np.zeros(0), game=None,
                accuracy=prev_acc, loss=prev_loss, prev_accuracy=prev_acc, prev_loss=prev_loss,
                n_samples=np.zeros(0, np.int64), behaviours=(), prev_params=prev,
                params=prev, aggregate=torch.zeros_like(prev), participants=idx,
            )
        # Each client's training depends on the round and its own index only, so whoever
        # else trains, a participant's update is the one it would send in a full round.
        t0 = time.perf_counter()
        updates = self._updates(idx, behaviours)
        t1 = time.perf_counter()
        if idx.size == self.n_clients:
            weights = self.weights
        else:  # FedAvg among the participants: their data shares among themselves
            weights = fedavg_weights(self.client_sizes[idx])
        game = CoalitionGame(
            self.net, prev, updates, weights, self.X_utility, self.y_utility,
            metric=self.metric, coalition=self.coalition,
        )
        # The server's FedAvg step, whatever rule the game measures coalitions by: the
        # measurement never changes what the federation learns.
        new_params = torch.addmm(prev.double(), torch.from_numpy(weights).to(prev.device)[None],
                                 updates.double())[0].to(torch.float32)
        grand = game.grand_mask
        if self.utility_index is None:
            # The empty coalition is the previous model, whose values are already known.
            game.seed_value(game.empty_mask, prev_acc, prev_loss)
        if self.utility_index is None and torch.equal(game.coalition_params(grand)[0],
                                                      new_params):
            acc, loss = game.peek(grand)  # the grand coalition's model is the new model
        else:  # measured on a subset, or renormalised weights that round otherwise
            acc, loss = self.net.evaluate_batched(new_params[None], self.X_val, self.y_val)
        self.params = new_params
        self.round += 1
        self.accuracy, self.loss = float(acc[0]), float(loss[0])
        return RoundResult(
            round=self.round,
            updates=updates,
            weights=weights.copy(),
            game=game,
            accuracy=self.accuracy,
            loss=self.loss,
            prev_accuracy=prev_acc,
            prev_loss=prev_loss,
            n_samples=self.client_sizes[idx].copy(),
            behaviours=tuple(behaviours.get(int(i), self.behaviours[i]).name for i in idx),
            prev_params=prev,
            params=new_params,
            aggregate=(torch.from_numpy(weights).to(updates.device)
                       @ updates.double()).float(),
            train_seconds=t1 - t0,
            participants=idx,
        )
