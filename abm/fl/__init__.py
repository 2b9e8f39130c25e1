"""The learning core: federated training (FedAvg, PyTorch on CPU or CUDA) and per-round
contribution measurement. A plain library: it imports neither mesa nor ``abm.amm``.

Contract (docs/architecture.md)::

    from abm.fl import (Dataset, load_dataset, split_validation, partition, apply_label_noise,
                        Federation, RoundResult, CoalitionGame, make_behaviour,
                        make_contribution_method, ContributionMethod)
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

Datasets, behaviours and contribution methods are components of `abm.registry` (one class
each, with a pydantic ``Params`` model). Their modules import torch only where they compute;
the torch-bound names (``Federation``, ``RoundResult``, ``CoalitionGame``, ``MODELS``) are
imported on first use (PEP 562), so that `wsf validate` reads the parameters without torch.
"""

from importlib import import_module
from typing import Any

from abm.fl.behaviours import Behaviour, make_behaviour, size_weights
from abm.fl.contribution import ContributionMethod, make_contribution_method
from abm.fl.data import Dataset, DatasetSource, load_dataset, split_validation
from abm.fl.partition import SCHEMES, apply_label_noise, partition

_WHERE = {
    "Federation": "abm.fl.federation",
    "RoundResult": "abm.fl.federation",
    "CoalitionGame": "abm.fl.game",
    "MODELS": "abm.fl.nets",
}

__all__ = [
    "Behaviour", "make_behaviour", "size_weights",
    "ContributionMethod", "make_contribution_method",
    "Dataset", "DatasetSource", "load_dataset", "split_validation",
    "SCHEMES", "apply_label_noise", "partition",
    *_WHERE,
]


def __getattr__(name: str) -> Any:
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'abm.fl' has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
