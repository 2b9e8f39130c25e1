"""A CIFAR-10-shaped stand-in for benchmarks: no CIFAR-10 copy is shipped or downloaded.

``write_cifar_like(root, n_train, n_test=0, seed=0) -> Path`` writes ``cifar-10-batches-bin/``
(the published binary format: 5 train batches and a test batch of 1-byte label + 3072 pixel
bytes) under ``root`` and returns ``root``. Images are ``3 x 32 x 32`` uint8: each class has a
smooth random colour template (a 4 x 4 pattern upsampled to 32 x 32), each image is its class's
template plus strong pixel noise, so a small CNN learns the task gradually, as on CIFAR-10
(random pixels would leave nothing to learn, and GTG would skip most rounds as unchanged,
understating its cost). Costs per round depend on the data's shape and the learning's
progress, not on what the pictures show.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_cifar_like(root: Path, n_train: int, n_test: int = 0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(90, 165, size=(10, 3, 4, 4))
    templates = np.repeat(np.repeat(coarse, 8, axis=2), 8, axis=3)  # (10, 3, 32, 32)
    folder = Path(root) / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int) -> bytes:
        labels = rng.integers(0, 10, size=n)
        noise = rng.normal(0.0, 90.0, size=(n, 3, 32, 32))
        images = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8).reshape(n, 3072)
        return np.concatenate([labels.astype(np.uint8)[:, None], images], axis=1).tobytes()

    sizes = [n_train // 5 + (1 if i < n_train % 5 else 0) for i in range(5)]
    for i, n in enumerate(sizes, start=1):
        (folder / f"data_batch_{i}.bin").write_bytes(batch(n))
    (folder / "test_batch.bin").write_bytes(batch(max(n_test, 1)))
    return Path(root)
