"""Per-round contribution methods.

``make_contribution_method(name, *, rng, **params) -> ContributionMethod``;
``method(result: RoundResult) -> np.ndarray (n,)``; ``method.evaluations_last_round`` is the
number of distinct coalitions the last call requested from the round's game (0 for methods
that need none). A method is a registered component (`abm.registry`, kind ``method``): a new
one is one :class:`ContributionMethod` subclass with a ``name``, a ``Params`` model and
``compute``, nothing else. The numerics (torch, :mod:`abm.fl.shapley`) are imported where a
method computes, so the scenario schema reads the parameters without loading torch. The
methods and their modelling choices are described in docs/model.md, section 7.5.

The utility ``v`` is the round's :class:`~abm.fl.game.CoalitionGame` (validation accuracy of
the aggregated coalition model, or negative loss, as the federation's ``metric`` says).

Notes from the tests and the benchmark (digits, MLP):

- Accuracy is a coarse, jumpy utility while the model is still near-uniform (early rounds
  at ``lr=0.1``): one client's update alone can drop accuracy sharply, and averaging in a
  zero update (a free rider) halves such a step, so a free rider can earn a *positive*
  Shapley value in small coalitions. The negative-loss utility (``metric="loss"`` /
  ``"neg_loss"``) ranks free riders and label flippers below honest clients reliably.
- The samplers' defaults trade accuracy for cost: on 10 clients GTG evaluates ~400-500 of
  the 1024 coalitions per round with a relative L1 error of ~0.1-0.2 against exact values
  (``make bench`` prints the figures).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from abm import registry
from abm.registry import Component, param
from abm.registry import Params as _Params

if TYPE_CHECKING:
    from abm.fl.federation import RoundResult

#: Exact Shapley evaluates all 2^n coalitions; 2^16 = 65,536 models per round is the most
#: that stays practical on a CPU (the scenario schema refuses more clients).
MAX_EXACT_PLAYERS = 16

__all__ = [
    "MAX_EXACT_PLAYERS",
    "ContributionMethod",
    "Cosine",
    "DataSize",
    "GTGShapley",
    "LeaveOneOut",
    "ShapleyExact",
    "ShapleyMC",
    "make_contribution_method",
]


class ContributionMethod(Component):
    """Base class. Subclasses set ``name``, ``Params`` and implement ``compute``."""

    kind = "method"
    #: most clients the method accepts (None: no limit); the scenario schema checks it
    max_clients: ClassVar[int | None] = None

    def __init__(self, params: _Params | None = None, /, *,
                 rng: np.random.Generator | None = None, **values: Any) -> None:
        super().__init__(params, **values)
        if rng is not None and not isinstance(rng, np.random.Generator):
            raise TypeError(f"{self.name}: rng must be a numpy.random.Generator")
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.evaluations_last_round = 0
        #: extra information about the last call (e.g. permutations used, convergence)
        self.info_last_round: dict[str, Any] = {}

    def __call__(self, result: RoundResult) -> np.ndarray:
        self.info_last_round = {}
        values = np.asarray(self.compute(result), dtype=np.float64).reshape(-1)
        if values.shape != (result.n_clients,):
            raise RuntimeError(
                f"{self.name}: computed {values.shape} values for {result.n_clients} clients"
            )
        return values

    def compute(self, result: RoundResult) -> np.ndarray:
        raise NotImplementedError


class DataSize(ContributionMethod):
    """Each client's share of the round's data, n_i / sum_j n_j: no coalition is evaluated,
    and a client is paid for holding data whatever it did with it."""

    name = "data_size"

    def compute(self, result):
        from abm.fl.game import fedavg_weights

        self.evaluations_last_round = 0
        n = np.asarray(result.n_samples, dtype=np.float64)
        if n.size != result.n_clients or n.sum() <= 0:
            n = result.weights
        return fedavg_weights(n)


class LeaveOneOut(ContributionMethod):
    """Leave-one-out: v(N) - v(N minus i), the utility lost without client i; n + 1
    coalitions per round in one batched call."""

    name = "leave_one_out"

    def compute(self, result):
        from abm.fl.shapley import leave_one_out

        est = leave_one_out(result.game, result.n_clients)
        self.evaluations_last_round = est.evaluations
        return est.values


class ShapleyExact(ContributionMethod):
    """Exact Shapley values over all 2^n coalitions of the round's game in one batched call;
    limited to 16 clients (65,536 coalition models per round)."""

    name = "shapley_exact"
    max_clients = MAX_EXACT_PLAYERS

    def compute(self, result):
        from abm.fl.shapley import all_masks, shapley_from_values

        n = result.n_clients
        if n > MAX_EXACT_PLAYERS:
            raise ValueError(
                f"shapley_exact: {n} clients exceed the limit of {MAX_EXACT_PLAYERS} "
                f"({2**n} coalitions per round); use shapley_mc or gtg_shapley"
            )
        v = np.asarray(result.game(all_masks(n)), dtype=np.float64)
        self.evaluations_last_round = 2**n
        return shapley_from_values(v, n)


class _SamplingParams(_Params):
    """Convergence settings shared by the permutation samplers (see :mod:`abm.fl.shapley`)."""

    min_permutations: int = param(30, "permutations sampled before convergence is checked",
                                  ge=1, le=100_000)
    convergence_tol: float = param(
        0.05, "relative change of the running estimate that counts as converged",
        unit="fraction", gt=0, le=1,
    )
    last_k: int = param(10, "permutations over which convergence is judged", ge=1, le=10_000)
    prefix_block: int = param(
        0, "permutation positions evaluated per batched game call; 0: every prefix of the "
        "batch in one call (fastest unless truncation stops most scans early; the values do "
        "not depend on it, see abm.fl.shapley._scan)", ge=0, le=10_000,
    )


class ShapleyMC(ContributionMethod):
    """Truncated Monte Carlo Shapley (Ghorbani & Zou 2019): sampled permutations, each scan
    stopped once the prefix's utility is within a share of the round's gain of the grand
    coalition's, until the estimate converges or a cap is reached."""

    name = "shapley_mc"

    class Params(_SamplingParams):
        truncation_tol: float = param(
            0.01, "a scan stops once |v(N) - v(prefix)| <= truncation_tol x |v(N) - v(empty)| "
            "(a share of the round's gain); 0: never", unit="fraction", ge=0, le=1,
        )
        max_permutations: int = param(200, "cap on sampled permutations per round", ge=1,
                                      le=100_000)
        batch: int = param(0, "permutations scanned in lockstep per batch; 0: the number of "
                           "clients", ge=0, le=10_000)

    def compute(self, result):
        from abm.fl.shapley import tmc_shapley

        # Every declared parameter is the sampler's keyword of the same name (0 batch = auto).
        options = {**self.params.model_dump(), "batch": self.params.batch or None}
        est = tmc_shapley(result.game, result.n_clients, rng=self.rng, **options)
        self.evaluations_last_round = est.evaluations
        self.info_last_round = {"permutations": est.n_permutations, "converged": est.converged}
        return est.values


class GTGShapley(ContributionMethod):
    """GTG-Shapley (Liu et al. 2022): guided permutation sampling with two truncations, a
    round whose model barely moved pays nobody, and a scan stops once the prefix's utility is
    within eps_within of the grand coalition's. Thresholds are in utility units (accuracy, or
    loss for the neg_loss metric)."""

    name = "gtg_shapley"

    class Params(_SamplingParams):
        eps_between: float = param(
            0.001, "if |v(N) - v(empty)| <= eps_between every contribution is 0 this round "
            "(2 coalitions evaluated); 0: never", unit="utility", ge=0, le=1,
        )
        eps_within: float = param(
            0.001, "a scan stops once |v(N) - v(prefix)| <= eps_within; 0: never",
            unit="utility", ge=0, le=1,
        )
        max_permutations: int = param(100, "cap on sampled permutations per round", ge=1,
                                      le=100_000)

    def compute(self, result):
        from abm.fl.shapley import gtg_shapley

        # Every declared parameter is the sampler's keyword of the same name.
        est = gtg_shapley(result.game, result.n_clients, rng=self.rng,
                          **self.params.model_dump())
        self.evaluations_last_round = est.evaluations
        self.info_last_round = {
            "permutations": est.n_permutations,
            "converged": est.converged,
            "truncated_round": est.truncated_round,
        }
        return est.values


class Cosine(ContributionMethod):
    """Cosine similarity between each client's update and the aggregate of the others'
    updates, sum_{j != i} w_j U_j (a zero update, or a zero aggregate, scores 0): no coalition
    is evaluated. Against the others only, because an update always agrees with an aggregate
    that contains it: against the whole aggregate a noise update earned a positive score from
    its own weight. Scale-free: it ranks directions, not data (docs/model.md, section 7.5)."""

    name = "cosine"

    def compute(self, result):
        import torch

        self.evaluations_last_round = 0
        U = result.updates.double()
        w = torch.from_numpy(np.asarray(result.weights, dtype=np.float64)).to(U.device)
        # (n, p): the aggregate without client i, in float64 from the updates
        others = (w @ U)[None, :] - w[:, None] * U
        dots = (U * others).sum(1)
        denom = U.norm(dim=1) * others.norm(dim=1)
        cos = torch.where(denom > 0, dots / torch.where(denom > 0, denom, 1.0), 0.0)
        return cos.clamp(-1.0, 1.0).cpu().numpy()


def make_contribution_method(
    name: str, *, rng: np.random.Generator, **params: Any
) -> ContributionMethod:
    """Build a registered contribution method (``ComponentError``, a ``ValueError``, for an
    unknown name or refused params)."""
    return registry.get("method", name)(rng=rng, **params)
