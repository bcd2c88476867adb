"""Seeded randomness: one RNG per draw, derived from the run seed and the draw's identity."""

from __future__ import annotations

import hashlib

import numpy as np


def derive_rng(seed: int, *parts) -> np.random.Generator:
    """An RNG for one draw, from the run seed and the draw's identity (strings joined unambiguously).

    Python's hash() is salted per process, so the identity goes through SHA-256 instead.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return np.random.default_rng(np.random.SeedSequence([int(seed), int.from_bytes(digest[:16], "little")]))
