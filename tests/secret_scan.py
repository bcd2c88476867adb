"""Where a secret sits in files: every parquet column decoded (compression hides raw bytes), every
other file read as bytes. Used by the secret tests of the pipeline run and of `cosalign publish`."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq


def parquet_text(path: Path) -> str:
    """Every value of every column of a parquet file, as text (lists and structs included)."""
    table = pq.read_table(path)
    return "\n".join(repr(v) for name in table.column_names for v in table.column(name).to_pylist())


def leaks(roots, secrets) -> list[str]:
    """'PATH: SECRET' for every file under `roots` (files or folders) that holds one of `secrets`,
    in its bytes or, for parquet, in any decoded column."""
    found = []
    for root in map(Path, roots):
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            data = path.read_bytes()
            text = data.decode("utf-8", errors="replace")
            if data[:4] == b"PAR1" and data[-4:] == b"PAR1":
                try:
                    text += parquet_text(path)
                except (OSError, ValueError):  # a deliberately damaged copy (tamper tests): bytes only
                    pass
            found += [f"{path}: {s[:12]}..." for s in secrets if s in text or s.encode() in data]
    return found
