"""`cosalign validate` reports every failure with its row and column, and exits non-zero."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd

from cosalign.core.io import write_parquet


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cosalign.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_valid_file_passes(tmp_path):
    df = pd.DataFrame({"prompt_id": ["a", "b"], "prompt": ["hi", "there"], "source": "s",
                       "split": ["train", "test"], "gold_categories": [["Violence"], None]})
    write_parquet(df, tmp_path / "prompts.parquet")
    proc = run_cli("validate", str(tmp_path / "prompts.parquet"))
    assert proc.returncode == 0, proc.stderr
    assert "valid (2 rows)" in proc.stdout


def test_every_failure_is_listed_with_row_and_column(tmp_path):
    df = pd.DataFrame({"prompt_id": ["a", "a", "c"], "prompt": ["hi", "  ", "x"], "source": "s",
                       "split": ["train", "dev", "test"],
                       "gold_categories": [["Violence"], ["Not A Category"], None]})
    path = tmp_path / "prompts.parquet"
    write_parquet(df, path)
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2
    err = proc.stderr
    assert f"{path}: row 2: must be a non-empty string [prompt]: '  '" in err
    assert f"{path}: row 2: isin(['train', 'test']) [split]: 'dev'" in err
    assert f"{path}: row 2: must be a list of distinct category names of the taxonomy [gold_categories]" in err
    assert f"{path}: row 1: field_uniqueness [prompt_id]: 'a'" in err
    assert f"{path}: row 2: field_uniqueness [prompt_id]: 'a'" in err
    assert err.splitlines()[-1] == f"{path}: 2 failing rows (schema prompts)"


def test_schema_flag_and_unknown_name(tmp_path):
    df = pd.DataFrame({"prompt": ["hi"], "risk_categories": [["Violence"]], "valid": [True], "judge": ["rules"]})
    write_parquet(df, tmp_path / "mine.parquet")
    assert run_cli("validate", str(tmp_path / "mine.parquet")).returncode == 2
    assert run_cli("validate", str(tmp_path / "mine.parquet"), "--schema", "labels").returncode == 0


def test_category_list_given_as_a_string_is_refused(tmp_path):
    df = pd.DataFrame({"prompt": ["hi"], "risk_categories": ["Violence"], "valid": [True], "judge": ["rules"]})
    write_parquet(df, tmp_path / "labels.parquet")
    proc = run_cli("validate", str(tmp_path / "labels.parquet"))
    assert proc.returncode != 0 and "risk_categories" in proc.stderr
