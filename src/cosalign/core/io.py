"""Reading inputs with clear errors and writing artifacts atomically.

Every artifact is written to a temporary file in the same directory and renamed over the target,
so a killed stage never leaves a truncated file and the previous version survives a failure.
Parquet files are written without wall-clock metadata so equal data gives byte-identical files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def file_digest(path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in chunks (the one file hash every module uses)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, algorithm).hexdigest()


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


class JudgeError(RuntimeError):
    """A judge cannot run at all (budget exceeded, missing key, bad endpoint); nothing was scored.

    Defined beside InputError because the stage runner (core.stage) reports both as one line, and
    importing the judges there would make every stage depend on every judge backend.
    """


class DryRun(JudgeError):
    """Raised by a judge in dry-run mode instead of calling: `calls` uncached items would be sent.

    `estimate` (cosalign.judges.estimate.Estimate) adds tokens and cost; its line is the message.
    Defined here, beside JudgeError, for the same reason: the stage runner reports it.
    """

    def __init__(self, calls: int, cached: int, total: int, estimate=None):
        super().__init__(estimate.line() if estimate is not None else
                         f"dry run: would make {calls} judge call(s); {cached} of {total} item(s) are cached")
        self.calls, self.cached, self.total, self.estimate = calls, cached, total, estimate


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
    for stale in target.parent.glob(f".{target.name}.*.tmp"):  # left by a killed (SIGKILL) write
        stale.unlink(missing_ok=True)
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


def _arrow_schema(table: pa.Table) -> pa.Schema:
    """The file schema from a first chunk: a column that chunk left all-null or all-empty-list
    (null type) becomes string, the type every such column in these datasets has."""
    fields = []
    for f in table.schema:
        if pa.types.is_null(f.type):
            f = f.with_type(pa.string())
        elif pa.types.is_list(f.type) and pa.types.is_null(f.type.value_type):
            f = f.with_type(pa.list_(pa.string()))
        fields.append(f)
    return pa.schema(fields)


PAGE_BYTES = 64 << 10


class ParquetSink:
    """Write a table chunk by chunk (one row group per chunk) to a temporary file renamed over
    `target` on a clean exit, so a stage's memory holds one chunk, never the whole output.

        with ParquetSink("data/configs.parquet") as sink:
            for chunk in chunks:
                sink.write(chunk)

    The first chunk fixes the columns and types; later chunks are cast to them. Equal chunks give
    byte-identical files (no pandas metadata, no statistics, no timestamps).
    """

    def __init__(self, target: str | os.PathLike):
        self.target, self.rows = Path(target), 0
        self._atomic = self._writer = self._schema = None

    def __enter__(self) -> "ParquetSink":
        self._atomic = atomic_path(self.target)
        self._tmp = self._atomic.__enter__()
        return self

    def write(self, df: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)
        if self._writer is None:
            self._schema = _arrow_schema(table)
            # Small pages: a reader streaming this file holds about one page per column at a time.
            self._writer = pq.ParquetWriter(self._tmp, self._schema, compression="zstd", write_statistics=False,
                                            data_page_size=PAGE_BYTES, dictionary_pagesize_limit=PAGE_BYTES)
        if table.schema != self._schema:
            try:
                table = table.select(self._schema.names).cast(self._schema)
            except (pa.ArrowException, KeyError) as exc:
                raise ValueError(f"{self.target}: chunk at row {self.rows} does not match the first chunk's "
                                 f"columns/types: {exc}") from None
        self._writer.write_table(table)
        self.rows += len(df)

    def __exit__(self, exc_type, exc, tb):
        if self._writer is not None:
            self._writer.close()
        if exc_type is None and self._writer is None:
            exc = ValueError(f"{self.target}: nothing was written (not even an empty chunk)")
            self._atomic.__exit__(ValueError, exc, None)  # removes the temporary file
            raise exc
        return self._atomic.__exit__(exc_type, exc, tb)


def write_parquet(df: pd.DataFrame, target: str | os.PathLike) -> None:
    """Write `df` deterministically (no index, no pandas metadata, no statistics) and atomically."""
    with ParquetSink(target) as sink:
        sink.write(df)


def write_json(obj, target: str | os.PathLike) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")


def write_text(text: str, target: str | os.PathLike, mode: int | None = None) -> None:
    with atomic_path(target, mode) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _open_parquet(path) -> pq.ParquetFile:
    if not Path(path).exists():
        raise InputError(path, "file does not exist")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:  # truncated or not parquet at all
        raise InputError(path, f"cannot be read as parquet: {exc}") from None


def _to_frame(table: pa.Table) -> pd.DataFrame:
    """list columns as Python lists (not numpy arrays); int columns with nulls as nullable Int64."""
    df = table.to_pandas(types_mapper=None)
    for name, field in zip(table.column_names, table.schema):
        if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
            df[name] = [None if v is None else list(v) for v in table.column(name).to_pylist()]
        elif pa.types.is_integer(field.type) and table.column(name).null_count:
            # pandas would turn an int column with nulls into float64; keep it a nullable Int64
            # (e.g. EvalItems.helpfulness, null for unparsed judge outputs).
            df[name] = pd.array(table.column(name).to_pylist(), dtype="Int64")
    return df


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a parquet artifact (only `columns`, when given)."""
    f = _open_parquet(path)
    missing = [c for c in columns or [] if c not in f.schema_arrow.names]
    if missing:
        raise InputError(path, "missing column", field=missing[0])
    try:
        return _to_frame(f.read(columns=columns))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(path, f"cannot be read as parquet: {exc}") from None


def iter_parquet(path: str | os.PathLike, batch_rows: int, columns: list[str] | None = None):
    """Yield `path` as DataFrames of up to `batch_rows` rows, in file order, with a RangeIndex that
    continues across batches (so a row number in an error is the row in the file)."""
    f = _open_parquet(path)
    start = 0
    for batch in f.iter_batches(batch_size=batch_rows, columns=columns):
        df = _to_frame(pa.Table.from_batches([batch]))
        df.index = pd.RangeIndex(start, start + len(df))
        start += len(df)
        yield df


class ParquetCursor:
    """Hand out a parquet file's rows front to back, in pieces, reading `batch_rows` at a time, so a
    stage can walk several files that share an order while holding only the current piece of each.

    With `key`, the file must be sorted by that column (checked as it is read: InputError naming
    the row and field) and `until` / `next_groups` hand out key ranges; `take` hands out a row count.
    Pieces keep the file's row numbers as their index. Opening checks that the file and `columns`
    exist, so a missing input fails before any work.
    """

    def __init__(self, path: str | os.PathLike, batch_rows: int, columns: list[str] | None = None,
                 key: str | None = None):
        f = _open_parquet(path)
        names = f.schema_arrow.names
        missing = [c for c in (columns or []) + ([key] if key else []) if c not in names]
        if missing:
            raise InputError(path, "missing column", field=missing[0])
        self.path, self.key = str(path), key
        self._batches = iter_parquet(path, batch_rows, columns)
        self._buf = _to_frame(f.schema_arrow.empty_table().select(columns or names))
        self._last = None  # the last key read, to check the order across batches
        self._done = False

    def _read(self) -> bool:
        """Append the next batch to the buffer; False at the end of the file."""
        batch = next(self._batches, None)
        if batch is None:
            self._done = True
            return False
        if self.key is not None:
            self._check_order(batch)
        self._buf = pd.concat([self._buf, batch]) if len(self._buf) else batch
        return True

    def _check_order(self, batch: pd.DataFrame) -> None:
        prev = self._last
        for row, value in zip(batch.index, batch[self.key].tolist()):
            if prev is not None and value < prev:
                raise InputError(self.path, f"{value!r} comes after {prev!r}: the file must be sorted "
                                            f"by {self.key} (as the pipeline writes it)",
                                 row=row + 1, field=self.key)
            prev = value
        self._last = prev

    def _split(self, n: int) -> pd.DataFrame:
        out, self._buf = self._buf.iloc[:n], self._buf.iloc[n:]
        return out

    def take(self, n: int) -> pd.DataFrame:
        """The next `n` rows (fewer at the end of the file)."""
        while len(self._buf) < n and self._read():
            pass
        return self._split(n)

    def until(self, last, keep=None) -> pd.DataFrame:
        """The rows not yet handed out whose key is <= `last`; with `keep` (a set of keys), only
        those rows, filtered batch by batch so skipped rows are never held together."""
        parts = []
        while True:
            piece = self._split(int((self._buf[self.key] <= last).sum()))  # sorted: a prefix
            parts.append(piece if keep is None else piece[piece[self.key].isin(keep)])
            if len(self._buf) or self._done or not self._read():
                break  # a row beyond `last` is buffered, or the file is done
        return pd.concat(parts) if len(parts) > 1 else parts[0]

    def drain(self) -> None:
        """Read the rest of the file, checking its order, and drop it: a stage that stopped short
        (or is about to report an id it did not find) then reports a row out of order instead of
        silently missing the rows that came after it."""
        self._buf = self._buf.iloc[:0]
        while self._read():
            self._buf = self._buf.iloc[:0]

    def next_groups(self, n: int) -> pd.DataFrame:
        """The rows of the next `n` distinct keys (fewer at the end; empty when done)."""
        while not self._done and self._buf[self.key].nunique() <= n and self._read():
            pass
        keys = self._buf[self.key].unique()
        if not len(keys):
            return self._buf
        return self.until(keys[min(n, len(keys)) - 1])


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
