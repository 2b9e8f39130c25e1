"""Named random streams: common random numbers for a run and its counterfactual twin.

Every stochastic component of a run draws from its own generator, derived from the scenario
seed and a stable name (docs/model.md, section 4.9 (Stochasticity)):

    stream(seed, "fl.data")          dataset subsample, validation split, partition (seeded
                                     by `fl.partition.seed` instead, when a scenario sets it)
    stream(seed, "fl.torch")         the torch seed of the federation (weights, batches)
    stream(seed, "contribution")     the contribution method's sampling (MC / GTG permutations)
    stream(seed, "fl.sample")        each round's client sample (`fl.clients_per_round`)
    activation(seed)                 the order in which market agents act each step
    stream(seed, "agent:<account>")  one per market agent (e.g. a noise trader's coin flips)

A stream is `numpy.random.SeedSequence(seed, spawn_key=(k,))` with `k` the first 64 bits of the
SHA-256 of the name, so a stream depends on nothing but the seed and its name: adding an agent,
or a component drawing more numbers, never shifts another component's numbers. Together with
a fixed number of draws per step for every consumer (independent of prices, balances or
rewards), this makes a run and its twin (same seed, reward budget zero) take the same random
decisions step for step; whatever the rewards cannot influence is then identical in both.

This module imports neither mesa nor torch.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np


def stream_key(name: str) -> int:
    """The 64-bit spawn key of stream `name` (first 8 bytes of its SHA-256, big-endian)."""
    if not name:
        raise ValueError("a random stream needs a non-empty name")
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


def seed_sequence(seed: int, name: str) -> np.random.SeedSequence:
    """The seed sequence of stream `name` under scenario seed `seed` (>= 0)."""
    return np.random.SeedSequence(int(seed), spawn_key=(stream_key(name),))


def stream(seed: int, name: str) -> np.random.Generator:
    """A fresh numpy generator (PCG64) for stream `name` under scenario seed `seed`."""
    return np.random.default_rng(seed_sequence(seed, name))


def stream_int(seed: int, name: str, bits: int = 63) -> int:
    """One integer in [0, 2**bits) from stream `name` (for libraries seeded by an int)."""
    return int(seed_sequence(seed, name).generate_state(1, np.uint64)[0]) >> (64 - bits)


def activation(seed: int) -> random.Random:
    """The stdlib generator Mesa's `AgentSet.shuffle_do` draws the activation order from.

    `random.shuffle` of a list of fixed length consumes a number of draws that depends only
    on the generator's state, never on the agents, so the order of every step is the same in
    a run and its twin.
    """
    return random.Random(stream_int(seed, "activation"))
