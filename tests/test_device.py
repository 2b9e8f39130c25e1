"""Where the learning core runs: device selection, the device recorded with a run, and (when a
GPU is present) the CUDA path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import abm.fl.device as device_module
from abm.fl import Federation, load_dataset, partition, split_validation
from abm.fl.device import resolve_device
from abm.fl.game import LOSS_TOLERANCE
from abm.fl.shapley import all_masks
from abm.run import simulate
from abm.scenario import ScenarioError
from tests.conftest import small_scenario

NO_CUDA = "no CUDA device: torch.cuda.is_available() is False on this machine"


@pytest.mark.parametrize(("name", "gpu", "expected"), [
    ("auto", False, "cpu"), ("auto", True, "cuda"), ("cpu", True, "cpu"), ("cpu", False, "cpu"),
    ("cuda", True, "cuda"),
])
def test_device_selection(monkeypatch, name, gpu, expected):
    monkeypatch.setattr(device_module, "cuda_available", lambda: gpu)
    assert resolve_device(name) == expected


def test_cuda_without_a_gpu_is_an_error_not_a_fallback(monkeypatch):
    monkeypatch.setattr(device_module, "cuda_available", lambda: False)
    with pytest.raises(ValueError, match="torch sees no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda"):
        resolve_device("tpu")


def test_config_records_the_device_that_ran(monkeypatch):
    monkeypatch.setattr(device_module, "cuda_available", lambda: False)
    scenario = small_scenario(steps=10)
    assert scenario.fl.device == "auto"
    result = simulate(scenario)
    assert result.config["fl"]["device"] == "cpu"


def test_scenario_asking_for_cuda_without_one_names_the_field(monkeypatch):
    monkeypatch.setattr(device_module, "cuda_available", lambda: False)
    from abm.model import WallStreetFedsModel

    with pytest.raises(ScenarioError, match=r"fl\.device = 'cuda'.*no CUDA device"):
        WallStreetFedsModel(small_scenario(**{"fl.device": "cuda"}))


def _federation(device, model="mlp"):
    rng = np.random.default_rng(0)
    image = model == "cnn"
    ds = load_dataset("digits", rng=rng, n_samples=300, image=image)
    train, val = split_validation(ds, 0.3, rng)
    parts = partition(train.y, 4, scheme="iid", rng=rng)
    names = ["honest", "free_rider", "label_flip", "honest"]
    return Federation(train, parts, val, names, model=model, hidden=8, metric="loss", lr=0.3,
                      device=device, seed=3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_cuda_rounds_reproducible_by_seed_and_fast_path_within_tolerance(model):
    a, b = _federation("cuda", model), _federation("cuda", model)
    assert a.device == "cuda" and a.params.is_cuda
    for _ in range(3):
        ra, rb = a.run_round(), b.run_round()
        assert torch.equal(ra.updates, rb.updates)
        masks = all_masks(4)
        va, vb = ra.game(masks), rb.game(masks)
        np.testing.assert_array_equal(va, vb)
        np.testing.assert_allclose(va, ra.game.evaluate_naive(masks), rtol=0,
                                   atol=LOSS_TOLERANCE)
    # CPU and CUDA differ only by float rounding
    c = _federation("cpu", model)
    for _ in range(3):
        c.run_round()
    np.testing.assert_allclose(a.loss, c.loss, rtol=1e-3)
