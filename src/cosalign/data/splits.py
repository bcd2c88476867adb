"""Seeded train/test assignment by prompt id, shared by the prompts stage and the rules judge.

A prompt's split depends only on (seed, prompt_id, test_fraction): adding or removing other
prompts never moves it, and the rules judge can fit on exactly the prompts the pipeline calls
"train" without reading any stage output.
"""

from __future__ import annotations

import hashlib


def split_of(prompt_id: str, seed: int, test_fraction: float) -> str:
    """Return "test" or "train" for `prompt_id`.

    sha256 of f"{seed}:{prompt_id}"; the first 8 bytes read as a big-endian integer, divided by
    2**64, give a uniform number in [0, 1); below `test_fraction` means "test".
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction!r}")
    digest = hashlib.sha256(f"{seed}:{prompt_id}".encode("utf-8")).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "test" if u < test_fraction else "train"
