"""Every shipped scenario loads and runs end to end (shortened to two FL rounds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from abm.model import WallStreetFedsModel
from abm.scenario import load_scenario
from tests.conftest import ROOT

SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))


def fake_cifar10_binary(folder: Path, n: int = 600, seed: int = 0) -> Path:
    """A tiny CIFAR-10 copy in the published binary format: 1 label byte + 3,072 pixel bytes
    per record, in `cifar-10-batches-bin/data_batch_1.bin`."""
    rng = np.random.default_rng(seed)
    root = folder / "cifar-10-batches-bin"
    root.mkdir(parents=True)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    # Class-dependent brightness so that a CNN has something to learn in two rounds.
    pixels = rng.integers(0, 64, (n, 3072), dtype=np.uint8) + (labels[:, None] * 19)
    records = np.concatenate([labels[:, None], pixels.astype(np.uint8)], axis=1)
    (root / "data_batch_1.bin").write_bytes(records.tobytes())
    return folder


def test_every_scenario_file_is_covered():
    names = {p.stem for p in SCENARIOS}
    assert names >= {"baseline", "paper_cifar10", "free_riders", "label_flip_attack",
                     "pump_and_dump", "no_investors"}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_runs_two_rounds_with_the_ledger_checked(path, tmp_path, monkeypatch):
    if path.stem == "paper_cifar10":
        data = fake_cifar10_binary(tmp_path)
        monkeypatch.chdir(tmp_path)
        text = path.read_text().replace("data/cifar-10-python.tar.gz", str(data))
        path = tmp_path / path.name
        path.write_text(text.replace("n_samples: 12000", "n_samples: 600"))
    scenario = load_scenario(path)
    short = scenario.with_overrides({"steps": 2 * scenario.round_every})
    model = WallStreetFedsModel(short, check=True)
    model.run_for(short.steps)
    assert model.federation.rounds_done == 2
    rows = model.round_rows
    assert len(rows) == 2 * scenario.n_clients
    assert all(np.isfinite(r["contribution"]) for r in rows)
    assert sum(r["share"] for r in rows[-scenario.n_clients:]) == pytest.approx(1.0)


def test_calibration_sweep_compares_the_shipped_baseline_with_the_speculative_regime():
    """scenarios/sweeps/calibration.yaml names the two investor populations; they must stay
    those of baseline.yaml and speculative.yaml, which differ in nothing else."""
    import yaml

    sweep = yaml.safe_load((ROOT / "scenarios" / "sweeps" / "calibration.yaml").read_text())
    baseline = load_scenario(ROOT / "scenarios" / "baseline.yaml")
    speculative = load_scenario(ROOT / "scenarios" / "speculative.yaml")
    mixes = sweep["grid"]["investors"]
    for label, scenario in (("calibrated", baseline), ("speculative", speculative)):
        resolved = baseline.with_overrides({"investors": mixes[label]}).to_dict()["investors"]
        assert resolved == scenario.to_dict()["investors"], label
    base, spec = baseline.to_dict(), speculative.to_dict()
    differ = {k for k in base if base[k] != spec[k]}
    assert differ == {"name", "description", "investors"}
