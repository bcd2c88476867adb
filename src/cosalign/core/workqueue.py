"""Resumable batched work for the expensive stages (responses, judgments).

DVC deletes a stage's outputs before running it, so progress is checkpointed outside them, under
`.cache/work/<stage>/<fingerprint>/`. The fingerprint hashes the inputs and params, so a change
starts afresh; the work batches are fixed before any work starts (by item order and batch size),
so a re-run after a kill redoes only unfinished batches and produces byte-identical output.

`iter_batches` yields the results batch by batch, so a stage can stream them to its output and
hold one batch at a time; `run_batches` concatenates them for callers that need one frame.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from cosalign.core import paths
from cosalign.core.io import read_parquet, write_parquet

WORK_ROOT = Path(paths.WORK_ROOT)


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")


class Fingerprint:
    """A stable hash of JSON-able parts (params dicts), then of rows fed one frame at a time.

    Each row is hashed as one JSON line of its {column: value} pairs, so memory holds one frame
    (never a JSON of the whole dataset) and the key does not depend on how the rows were chunked.
    `rows` counts what was fed (a streamed input's length, known after the hashing pass).
    """

    def __init__(self, *parts):
        self._hash = hashlib.sha256(_json(parts))
        self.rows = 0

    def update(self, frame: pd.DataFrame) -> None:
        columns = [str(c) for c in frame.columns]
        for row in frame.itertuples(index=False, name=None):
            self._hash.update(b"\n" + _json(dict(zip(columns, row))))
        self.rows += len(frame)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()[:16]


def fingerprint(*parts) -> str:
    """A stable hash of JSON-able parts (params dicts, small item lists)."""
    return Fingerprint(*parts).hexdigest()


@dataclass
class Retry:
    """A work result to use in this run's output but not to checkpoint, so the next run redoes its
    batch (e.g. judge verdicts lost to an endpoint outage). `reason` is printed."""
    frame: pd.DataFrame
    reason: str


def rebatch(frames: Iterable[pd.DataFrame], size: int) -> Iterator[pd.DataFrame]:
    """Cut a stream of frames into frames of exactly `size` rows (the last may be shorter), each
    with a fresh RangeIndex: the work batches depend on row order and `size`, not on how the
    input happened to be chunked."""
    pending: list[pd.DataFrame] = []
    held = 0
    for frame in frames:
        while len(frame):
            part, frame = frame.iloc[:size - held], frame.iloc[size - held:]
            pending.append(part)
            held += len(part)
            if held == size:
                yield pd.concat(pending, ignore_index=True)
                pending, held = [], 0
    if held:
        yield pd.concat(pending, ignore_index=True)


def _open_work_dir(root: Path, stage: str, key: str) -> Path:
    work_dir = root / stage / key
    work_dir.mkdir(parents=True, exist_ok=True)
    for stale in work_dir.glob(".batch-*.tmp"):  # a write cut short by a kill; never a checkpoint
        stale.unlink()
    return work_dir


def iter_batches(items: Iterable[pd.DataFrame], work: Callable[[pd.DataFrame], pd.DataFrame | Retry], *,
                 stage: str, key: str, batch_size: int, total_rows: int, root: Path = WORK_ROOT,
                 desc: str | None = None) -> Iterator[pd.DataFrame]:
    """Apply `work` to fixed batches of `items`, checkpointing each finished batch; yield the results.

    Args: items (frames of rows in their final order, chunked any way; read once), work (batch ->
    result rows, or a Retry that is yielded but not checkpointed), stage and key (where the
    checkpoints live), batch_size (rows per checkpoint), total_rows (for the progress and the
    resume message).
    Yields: each batch's result as read back from its checkpoint (so resumed and fresh runs yield
    equal frames). Once the last batch is yielded, checkpoints of other keys are removed, so the
    cache holds one run per stage.
    """
    work_dir = _open_work_dir(root, stage, key)
    n_batches = -(-total_rows // batch_size)
    done = sum((work_dir / f"batch-{b:05d}.parquet").exists() for b in range(n_batches))
    if done:
        print(f"{stage}: resuming, {done} of {n_batches} batches already checkpointed in {work_dir}",
              file=sys.stderr, flush=True)
    batches = rebatch(items, batch_size)
    for b, batch in enumerate(tqdm(batches, total=n_batches, desc=desc or stage, unit="batch")):
        path = work_dir / f"batch-{b:05d}.parquet"
        if path.exists():
            yield read_parquet(path)
            continue
        result = work(batch)
        if isinstance(result, Retry):
            print(f"{stage}: batch {b} not checkpointed: {result.reason}; a re-run redoes it",
                  file=sys.stderr, flush=True)
            yield result.frame
            continue
        write_parquet(result, path)  # atomic: a kill leaves the batch absent, never half-written
        yield read_parquet(path)
    for other in (root / stage).iterdir():
        if other.name != key and other.is_dir():
            shutil.rmtree(other)


def run_batches(items: pd.DataFrame, work: Callable[[pd.DataFrame], pd.DataFrame | Retry], *, stage: str,
                key: str, batch_size: int, root: Path = WORK_ROOT, desc: str | None = None) -> pd.DataFrame:
    """`iter_batches` over one in-memory frame, concatenated (an empty frame for no items)."""
    parts = list(iter_batches([items], work, stage=stage, key=key, batch_size=batch_size,
                              total_rows=len(items), root=root, desc=desc))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

