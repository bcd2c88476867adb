"""Reading inputs with clear errors and writing artifacts atomically.

Every artifact is written to a temporary file in the same directory and renamed over the target,
so a killed stage never leaves a truncated file and the previous version survives a failure.
Parquet files are written without wall-clock metadata so equal data gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class InputError(ValueError):
    """Bad input: the message names the file, and where known the row and the field."""

    def __init__(self, path, message: str, row=None, field: str | None = None):
        where = str(path)
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {message}")
        self.path, self.row, self.field = str(path), row, field


# mkstemp creates files readable by their owner only; artifacts get the usual umask-based mode.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, mode: int | None = None):
    """Yield a temporary path beside `target`; rename it over `target` only if the block succeeds.

    The file gets `mode` (default: what a plain open() would give under the umask), not
    mkstemp's private 0600, unless a caller asks for that (e.g. a keys file).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):
            os.chmod(tmp, (0o666 & ~_UMASK) if mode is None else mode)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_parquet(df: pd.DataFrame, target: str | os.PathLike) -> None:
    """Write `df` deterministically (no index, no pandas metadata timestamps) and atomically."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata(None)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=False)


def write_json(obj, target: str | os.PathLike) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")


def write_text(text: str, target: str | os.PathLike, mode: int | None = None) -> None:
    with atomic_path(target, mode) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_parquet(path: str | os.PathLike) -> pd.DataFrame:
    """Read a parquet artifact; list columns come back as Python lists (not numpy arrays)."""
    if not Path(path).exists():
        raise InputError(path, "file does not exist")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:  # truncated or not parquet at all
        raise InputError(path, f"cannot be read as parquet: {exc}") from None
    df = table.to_pandas(types_mapper=None)
    for name, field in zip(table.column_names, table.schema):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            df[name] = [None if v is None else list(v) for v in table.column(name).to_pylist()]
        elif pa.types.is_integer(field.type) and table.column(name).null_count:
            # pandas would turn an int column with nulls into float64; keep it a nullable Int64
            # (e.g. EvalItems.helpfulness, null for unparsed judge outputs).
            df[name] = pd.array(table.column(name).to_pylist(), dtype="Int64")
    return df


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CSV, JSONL/JSON or parquet file chosen by extension, with errors that name the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = read_parquet(path)
        elif suffix in (".jsonl", ".json"):
            df = _read_jsonl(path)
        elif suffix == ".csv":
            text = _decode(path)
            import io as _io
            df = pd.read_csv(_io.StringIO(text), dtype=str, keep_default_na=False)
        else:
            raise InputError(path, f"unsupported file type {suffix!r} (use .csv, .jsonl or .parquet)")
    except InputError:
        raise
    except Exception as exc:  # parser errors from pandas/pyarrow, reworded with the file name
        raise InputError(path, f"cannot be parsed: {exc}") from exc
    if len(df) == 0:
        raise InputError(path, "has no rows")
    return df


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(path, f"is not valid UTF-8 (byte {exc.start})", row=line) from None


def _read_jsonl(path: Path) -> pd.DataFrame:
    text = _decode(path)
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" and stripped.startswith("["):
        rows = json.loads(text)
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", row=i) from None
            if not isinstance(row, dict):
                raise InputError(path, "each line must be a JSON object", row=i)
            rows.append(row)
    return pd.DataFrame(rows)
