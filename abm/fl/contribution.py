"""Per-round contribution methods.

``make_contribution_method(name, *, rng, **params) -> ContributionMethod``;
``method(result: RoundResult) -> np.ndarray (n,)``; ``method.evaluations_last_round`` is the
number of distinct coalitions the last call requested from the round's game (0 for methods
that need none). ``CONTRIBUTION_METHODS`` maps names to classes; a new method is one
:class:`ContributionMethod` subclass plus one registry entry.

Parameters: every class declares ``PARAMS: dict[str, Param]`` (default, documentation,
allowed range). A schema validates ``contribution.params`` without building anything with
``CONTRIBUTION_METHODS[name].validate_params(params)`` (returns the complete params with
defaults filled in; ``ValueError`` naming the parameter and its allowed range);
``param_names()`` and ``defaults()`` list them.

Names:

- ``data_size``: each client's share of the round's data (``n_i / sum n``). No params.
- ``cosine``: cosine similarity between each client's update and the aggregate update
  ``sum_i w_i U_i`` (0 for a zero update). No params.
- ``leave_one_out``: ``v(N) - v(N minus i)``. No params.
- ``shapley_exact``: exact Shapley over all ``2**n`` coalitions; refuses ``n > 16``.
- ``shapley_mc``: truncated Monte Carlo (Ghorbani & Zou 2019), see
  :func:`abm.fl.shapley.tmc_shapley`.
- ``gtg_shapley``: GTG-Shapley (Liu et al. 2022), see :func:`abm.fl.shapley.gtg_shapley`.

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

from typing import Any, ClassVar

import numpy as np
import torch

from abm.fl.data import Param, ParamsMixin
from abm.fl.federation import RoundResult
from abm.fl.shapley import (
    MAX_EXACT_PLAYERS,
    all_masks,
    gtg_shapley,
    leave_one_out,
    shapley_from_values,
    tmc_shapley,
)

__all__ = [
    "CONTRIBUTION_METHODS",
    "ContributionMethod",
    "Cosine",
    "DataSize",
    "GTGShapley",
    "LeaveOneOut",
    "ShapleyExact",
    "ShapleyMC",
    "make_contribution_method",
]


class ContributionMethod(ParamsMixin):
    """Base class. Subclasses set ``name``, ``PARAMS`` and implement ``compute``."""

    name: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, Param]] = {}
    #: whether the method evaluates coalitions (uses the round's game)
    uses_game: ClassVar[bool] = False

    def __init__(self, *, rng: np.random.Generator | None = None, **params: Any) -> None:
        self.params = self.validate_params(params)
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

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


class DataSize(ContributionMethod):
    """Each client's share of the data: ``n_i / sum_j n_j``. No params, no evaluations."""

    name = "data_size"

    def compute(self, result):
        self.evaluations_last_round = 0
        n = np.asarray(result.n_samples, dtype=np.float64)
        if n.size != result.n_clients or n.sum() <= 0:
            n = np.asarray(result.weights, dtype=np.float64)
        return n / n.sum()


class Cosine(ContributionMethod):
    """Cosine similarity between each client's update and the aggregate update
    ``sum_i w_i U_i``; a zero update (or a zero aggregate) scores 0. No params, no
    evaluations."""

    name = "cosine"

    def compute(self, result):
        self.evaluations_last_round = 0
        U = result.updates.double()
        if result.aggregate is not None:
            agg = result.aggregate.double()
        else:
            agg = torch.from_numpy(np.asarray(result.weights, dtype=np.float64)) @ U
        un = U.norm(dim=1)
        an = agg.norm()
        dots = U @ agg
        denom = un * an
        cos = torch.where(denom > 0, dots / torch.where(denom > 0, denom, 1.0), 0.0)
        return cos.clamp(-1.0, 1.0).cpu().numpy()


class LeaveOneOut(ContributionMethod):
    """``v(N) - v(N minus i)``: ``n + 1`` coalitions in one batched call. No params."""

    name = "leave_one_out"
    uses_game = True

    def compute(self, result):
        est = leave_one_out(result.game, result.n_clients)
        self.evaluations_last_round = est.evaluations
        return est.values


class ShapleyExact(ContributionMethod):
    """Exact Shapley values over all ``2**n`` coalitions of the round's game (one batched
    call). No params. Raises ``ValueError`` for more than 16 clients."""

    name = "shapley_exact"
    uses_game = True

    def compute(self, result):
        n = result.n_clients
        if n > MAX_EXACT_PLAYERS:
            raise ValueError(
                f"shapley_exact: {n} clients exceed the limit of {MAX_EXACT_PLAYERS} "
                f"({2**n} coalitions per round); use shapley_mc or gtg_shapley"
            )
        v = np.asarray(result.game(all_masks(n)), dtype=np.float64)
        self.evaluations_last_round = 2**n
        return shapley_from_values(v, n)


_COMMON_SAMPLING = {
    "min_permutations": Param(30, "permutations before convergence is checked", "int", 1, 100_000),
    "convergence_tol": Param(
        0.05, "relative change of the running estimate that counts as converged", "float",
        0.0, 1.0, lo_open=True,
    ),
    "last_k": Param(10, "permutations over which convergence is judged", "int", 1, 10_000),
    "prefix_block": Param(
        0, "permutation positions evaluated per batched call (0 = every prefix at once)", "int",
        0, 10_000,
    ),
}


class ShapleyMC(ContributionMethod):
    """Truncated Monte Carlo Shapley (Ghorbani & Zou 2019), permutation sampling.

    Params (defaults):

    - ``truncation_tol`` (0.01, float in [0, 1]): a permutation's scan stops once
      ``|v(N) - v(prefix)| <= truncation_tol * |v(N)|``; 0 disables truncation.
    - ``max_permutations`` (200, int in [1, 100000]).
    - ``min_permutations`` (30, int in [1, 100000]): before convergence is checked.
    - ``convergence_tol`` (0.05, float in (0, 1]), ``last_k`` (10, int in [1, 10000]): see
      :mod:`abm.fl.shapley`.
    - ``batch`` (0, int in [0, 10000]): permutations scanned in lockstep per batch; 0 = the
      number of clients.
    - ``prefix_block`` (0, int in [0, 10000]): permutation positions evaluated per batched
      game call; 0 = every prefix of the batch in one call (fastest unless truncation stops
      most scans early; the values do not depend on it, see :func:`abm.fl.shapley._scan`).
    """

    name = "shapley_mc"
    uses_game = True
    PARAMS: ClassVar[dict[str, Param]] = {
        "truncation_tol": Param(0.01, "relative truncation tolerance", "float", 0.0, 1.0),
        "max_permutations": Param(200, "cap on sampled permutations", "int", 1, 100_000),
        **_COMMON_SAMPLING,
        "batch": Param(0, "permutations per lockstep batch (0 = n clients)", "int", 0, 10_000),
    }

    def compute(self, result):
        p = self.params
        est = tmc_shapley(
            result.game,
            result.n_clients,
            rng=self.rng,
            truncation_tol=p["truncation_tol"],
            min_permutations=p["min_permutations"],
            max_permutations=p["max_permutations"],
            convergence_tol=p["convergence_tol"],
            last_k=p["last_k"],
            batch=p["batch"] or None,
            prefix_block=p["prefix_block"],
        )
        self.evaluations_last_round = est.evaluations
        self.info_last_round = {"permutations": est.n_permutations, "converged": est.converged}
        return est.values


class GTGShapley(ContributionMethod):
    """GTG-Shapley (Liu et al. 2022): guided, truncated permutation sampling.

    Params (defaults):

    - ``eps_between`` (0.001, float in [0, 1]): between-round truncation: if
      ``|v(N) - v(empty)| <= eps_between`` every contribution is 0 this round (only those 2
      coalitions are evaluated); 0 disables.
    - ``eps_within`` (0.001, float in [0, 1]): within-round truncation: a permutation's scan
      stops once ``|v(N) - v(prefix)| <= eps_within``; 0 disables.
    - ``max_permutations`` (100, int in [1, 100000]).
    - ``min_permutations`` (30, int in [1, 100000]): at least ``max(min, n)``.
    - ``convergence_tol`` (0.05, float in (0, 1]), ``last_k`` (10, int in [1, 10000]): see
      :mod:`abm.fl.shapley`.
    - ``prefix_block`` (0, int in [0, 10000]): as for ``shapley_mc``.

    ``eps_*`` are in utility units (accuracy, or loss for ``metric="loss"``).
    """

    name = "gtg_shapley"
    uses_game = True
    PARAMS: ClassVar[dict[str, Param]] = {
        "eps_between": Param(0.001, "between-round truncation threshold", "float", 0.0, 1.0),
        "eps_within": Param(0.001, "within-round truncation threshold", "float", 0.0, 1.0),
        "max_permutations": Param(100, "cap on sampled permutations", "int", 1, 100_000),
        **_COMMON_SAMPLING,
    }

    def compute(self, result):
        p = self.params
        est = gtg_shapley(
            result.game,
            result.n_clients,
            rng=self.rng,
            eps_between=p["eps_between"],
            eps_within=p["eps_within"],
            min_permutations=p["min_permutations"],
            max_permutations=p["max_permutations"],
            convergence_tol=p["convergence_tol"],
            last_k=p["last_k"],
            prefix_block=p["prefix_block"],
        )
        self.evaluations_last_round = est.evaluations
        self.info_last_round = {
            "permutations": est.n_permutations,
            "converged": est.converged,
            "truncated_round": est.truncated_round,
        }
        return est.values


CONTRIBUTION_METHODS: dict[str, type[ContributionMethod]] = {
    cls.name: cls
    for cls in (DataSize, LeaveOneOut, ShapleyExact, ShapleyMC, GTGShapley, Cosine)
}


def make_contribution_method(
    name: str, *, rng: np.random.Generator, **params: Any
) -> ContributionMethod:
    """Build a registered contribution method (``ValueError`` for an unknown name or bad
    params)."""
    try:
        cls = CONTRIBUTION_METHODS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown contribution method {name!r}; expected one of "
            f"{', '.join(CONTRIBUTION_METHODS)}"
        ) from None
    return cls(rng=rng, **params)
