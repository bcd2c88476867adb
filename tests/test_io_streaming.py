"""Chunked parquet writing and reading (io.ParquetSink, io.iter_parquet, schemas.write_dataset)."""

import pandas as pd
import pytest

from cosalign.cosa import schemas
from cosalign.core.io import ParquetSink, iter_parquet, read_parquet, write_parquet


def _configs(n: int, start: int = 0) -> pd.DataFrame:
    ids = [f"p{i:04d}" for i in range(start, start + n)]
    return pd.DataFrame({"config_id": [f"{p}-safe-0" for p in ids], "prompt_id": ids, "mode": "safe",
                         "allowed_categories": [[] for _ in ids], "template_id": "t1",
                         "system_prompt": "Nothing is allowed."})


def test_chunks_read_back_as_one_table_and_bytes_are_deterministic(tmp_path):
    first = pd.DataFrame({"a": ["x", "y"], "cats": [[], []], "note": [None, None]})
    second = pd.DataFrame({"a": ["z"], "cats": [["Violence"]], "note": ["kept"]})
    for name in ("one", "two"):
        with ParquetSink(tmp_path / f"{name}.parquet") as sink:
            sink.write(first)
            sink.write(second)
        assert sink.rows == 3
    # The first chunk's all-empty lists and all-null column were widened to strings, not null types.
    back = read_parquet(tmp_path / "one.parquet")
    assert back["a"].tolist() == ["x", "y", "z"]
    assert back["cats"].tolist() == [[], [], ["Violence"]]
    assert back["note"].tolist()[2] == "kept"
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "two.parquet").read_bytes()


def test_failed_stream_leaves_the_previous_file(tmp_path):
    target = tmp_path / "out.parquet"
    write_parquet(pd.DataFrame({"a": [1]}), target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with ParquetSink(target) as sink:
            sink.write(pd.DataFrame({"a": [2, 3]}))
            raise RuntimeError("killed half way")
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]  # no temporary file left behind
    with pytest.raises(ValueError, match="nothing was written"):
        with ParquetSink(target):
            pass
    assert target.read_bytes() == before


def test_a_chunk_with_other_columns_is_refused(tmp_path):
    with pytest.raises(ValueError, match="row 1"):
        with ParquetSink(tmp_path / "out.parquet") as sink:
            sink.write(pd.DataFrame({"a": [1]}))
            sink.write(pd.DataFrame({"b": [2]}))


def test_iter_parquet_numbers_rows_across_batches(tmp_path):
    write_parquet(_configs(5), tmp_path / "c.parquet")
    batches = list(iter_parquet(tmp_path / "c.parquet", 2, columns=["prompt_id"]))
    assert [len(b) for b in batches] == [2, 2, 1]
    assert list(batches[2].index) == [4]
    assert list(batches[0].columns) == ["prompt_id"]


def test_write_dataset_names_the_file_row_of_a_duplicate_across_chunks(tmp_path):
    target = tmp_path / "configs.parquet"
    assert schemas.write_dataset([_configs(3), _configs(2, start=3)], "configs", target) == 5
    assert read_parquet(target).equals(schemas.validate(_configs(5), "configs"))
    with pytest.raises(schemas.ValidationError) as err:
        schemas.write_dataset([_configs(3), _configs(2, start=2)], "configs", tmp_path / "dup.parquet")
    assert err.value.row == 4 and err.value.field == "config_id"  # 1-based: the file's 4th row
    assert not (tmp_path / "dup.parquet").exists()


def test_write_dataset_reports_the_file_row_of_a_schema_failure(tmp_path):
    bad = _configs(2, start=2)
    bad.loc[1, "mode"] = "sometimes"
    with pytest.raises(schemas.ValidationError) as err:
        schemas.write_dataset([_configs(2), bad], "configs", tmp_path / "c.parquet")
    assert err.value.row == 4 and err.value.field == "mode"  # 1-based: the file's 4th row


def test_the_next_write_removes_a_killed_writes_temporary_file(tmp_path):
    stale = tmp_path / ".out.parquet.k1ll3d.tmp"  # what a SIGKILL during atomic_path leaves behind
    stale.write_bytes(b"half a file")
    other = tmp_path / ".other.parquet.k1ll3d.tmp"  # another artifact's: not this write's business
    other.write_bytes(b"x")
    write_parquet(pd.DataFrame({"a": [1]}), tmp_path / "out.parquet")
    assert not stale.exists() and other.exists()
