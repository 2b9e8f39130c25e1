"""Where the learning core runs: ``cpu`` or ``cuda``.

``resolve_device(name)`` turns a scenario's ``fl.device`` (``auto`` | ``cpu`` | ``cuda``) into
the device that will actually run: ``auto`` is ``cuda`` when torch sees a CUDA device and
``cpu`` otherwise; ``cuda`` without a device is an error (``ValueError`` saying so), never a
silent fallback, so a run's recorded device is always the one that ran.

Reproducibility: on the CPU a seed reproduces a run bit for bit. On CUDA,
:func:`make_deterministic` (called by :class:`~abm.fl.federation.Federation` for a CUDA
device) selects deterministic cuDNN convolutions and a fixed cuBLAS workspace, so a seed
reproduces a run on the same GPU model, driver and torch build; CPU and GPU runs of one seed
differ in float rounding (different kernels), which is why the device is recorded with the run.
All random draws (initial weights, batch order, noise) use CPU generators and are moved to the
device, so they are the same on every device.
"""

from __future__ import annotations

import os

import torch

__all__ = ["DEVICES", "cuda_available", "make_deterministic", "resolve_device"]

DEVICES = ("auto", "cpu", "cuda")


def cuda_available() -> bool:
    """Whether torch sees a usable CUDA device (a seam the tests replace)."""
    return bool(torch.cuda.is_available())


def resolve_device(name: str) -> str:
    """``"cpu"`` or ``"cuda"``: the device ``name`` (``auto`` | ``cpu`` | ``cuda``) runs on."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    if name == "cuda" and not cuda_available():
        raise ValueError(
            "device 'cuda' was asked for but torch sees no CUDA device "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}); "
            "use 'cpu' or 'auto'"
        )
    return name


def make_deterministic() -> None:
    """Deterministic CUDA kernels for the learning core (global torch state)."""
    # cuBLAS needs a fixed workspace for deterministic GEMMs; only effective before the first
    # cuBLAS call, so a caller that already used CUDA should set it in the environment.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
