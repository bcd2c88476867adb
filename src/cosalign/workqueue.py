"""Resumable batched work for the expensive stages (responses, judgments).

DVC deletes a stage's outputs before running it, so progress is checkpointed outside them, under
`.cache/work/<stage>/<fingerprint>/`. The fingerprint hashes the inputs and params, so a change
starts afresh; the work batches are fixed before any work starts (by item order and batch size),
so a re-run after a kill redoes only unfinished batches and produces byte-identical output.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from cosalign.io import read_parquet, write_parquet

WORK_ROOT = Path(".cache/work")


def fingerprint(*parts) -> str:
    """A stable hash of JSON-able parts (params dicts, item lists)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def run_batches(items: pd.DataFrame, work: Callable[[pd.DataFrame], pd.DataFrame], *, stage: str,
                key: str, batch_size: int, root: Path = WORK_ROOT, desc: str | None = None) -> pd.DataFrame:
    """Apply `work` to fixed batches of `items`, checkpointing each finished batch.

    Args: items (rows in their final order), work (batch -> result rows), stage and key (where the
    checkpoints live), batch_size (rows per checkpoint).
    Returns: the concatenated results in batch order. Checkpoints of other keys are removed once
    the run completes, so the cache holds one run per stage.
    """
    work_dir = root / stage / key
    work_dir.mkdir(parents=True, exist_ok=True)
    for stale in work_dir.glob(".batch-*.tmp"):  # a write cut short by a kill; never a checkpoint
        stale.unlink()
    starts = list(range(0, len(items), batch_size))
    done = sum((work_dir / f"batch-{b:05d}.parquet").exists() for b in range(len(starts)))
    if done:
        print(f"{stage}: resuming, {done} of {len(starts)} batches already checkpointed in {work_dir}",
              file=sys.stderr, flush=True)
    parts = []
    for b, start in enumerate(tqdm(starts, desc=desc or stage, unit="batch")):
        path = work_dir / f"batch-{b:05d}.parquet"
        if path.exists():
            parts.append(read_parquet(path))
            continue
        result = work(items.iloc[start:start + batch_size].reset_index(drop=True))
        write_parquet(result, path)  # atomic: a kill leaves the batch absent, never half-written
        parts.append(read_parquet(path))  # read back, so resumed and fresh runs see equal frames
    for other in (root / stage).iterdir():
        if other.name != key and other.is_dir():
            shutil.rmtree(other)
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)
