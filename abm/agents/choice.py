"""Discrete choice by one uniform draw: the inverse CDF of a probability vector.

Used by every rule that picks one option among several with given probabilities and one
uniform of its own stream (a client's conduct, an investor's strategy switching), so that
the same `u` and probabilities pick the same option everywhere.
"""

from __future__ import annotations

import numpy as np

__all__ = ["choose"]


def choose(probabilities: np.ndarray, u: float) -> int:
    """The index of the option a uniform draw `u` in [0, 1) picks from `probabilities`
    (inverse CDF: the first index whose cumulative probability exceeds `u`; the last option
    if rounding leaves the cumulative sum below `u`)."""
    cumulative = np.cumsum(probabilities)
    return min(int(np.searchsorted(cumulative, u, side="right")), len(probabilities) - 1)
