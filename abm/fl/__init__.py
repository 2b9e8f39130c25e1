"""The learning core: federated training (FedAvg, PyTorch on CPU or CUDA) and per-round
contribution measurement. A plain library: it imports neither mesa nor ``abm.amm``.

Contract (docs/architecture.md)::

    from abm.fl import (Dataset, load_dataset, split_validation, partition, apply_label_noise,
                        Federation, RoundResult, CoalitionGame, make_behaviour, BEHAVIOURS,
                        CONTRIBUTION_METHODS, make_contribution_method, ContributionMethod)
    from abm.fl.shapley import exact_shapley

Typical use::

    rng = np.random.default_rng(seed)
    ds = load_dataset("digits", rng=rng)
    train, val = split_validation(ds, 0.2, rng)
    behaviours = [make_behaviour(b) for b in names]
    parts = partition(train.y, len(behaviours), scheme="iid", rng=rng,
                      size_weights=size_weights(behaviours))
    fed = Federation(train, parts, val, behaviours, model="mlp", seed=seed)
    method = make_contribution_method("gtg_shapley", rng=rng)
    for _ in range(rounds):
        result = fed.run_round()
        contributions = method(result)          # (n,) numpy array
        cost = method.evaluations_last_round

Registries: ``BEHAVIOURS`` and ``CONTRIBUTION_METHODS`` (name -> class). Each class lists its
parameters in ``PARAMS`` (``data.Param``: default, doc, allowed range) and offers the
classmethods ``param_names()``, ``defaults()`` and ``validate_params(params) -> dict``
(``ValueError`` naming the parameter and the allowed range).
"""

from abm.fl.behaviours import BEHAVIOURS, Behaviour, make_behaviour, size_weights
from abm.fl.contribution import (
    CONTRIBUTION_METHODS,
    ContributionMethod,
    make_contribution_method,
)
from abm.fl.data import DATASETS, Dataset, Param, load_dataset, split_validation
from abm.fl.federation import Federation, RoundResult
from abm.fl.game import CoalitionGame
from abm.fl.nets import MODELS
from abm.fl.partition import SCHEMES, apply_label_noise, partition

__all__ = [
    "BEHAVIOURS",
    "CONTRIBUTION_METHODS",
    "DATASETS",
    "MODELS",
    "SCHEMES",
    "Behaviour",
    "CoalitionGame",
    "ContributionMethod",
    "Dataset",
    "Federation",
    "Param",
    "RoundResult",
    "apply_label_noise",
    "load_dataset",
    "make_behaviour",
    "make_contribution_method",
    "partition",
    "size_weights",
    "split_validation",
]
