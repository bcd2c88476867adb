"""`preferences.source: cosalign_train`: the stage writes the authors' released pairs, decoded and
re-checked, through the same writer as the pipeline's pairs (docs/paper-fidelity.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).parent))  # tests/ is not a package
from test_benchmarks import write_hub_layout  # noqa: E402
from test_pairing import release_row  # noqa: E402

from cosalign.core.io import read_parquet  # noqa: E402
from cosalign.cosa import schemas  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def released() -> pd.DataFrame:
    return pd.DataFrame([
        release_row(),
        release_row(prompt="Steal?", spec_i="--", spec_j="-Financial_Crime_and_Theft-", mode="not_superset",
                    chosen_cat="(-None-, 0)", rejected_cat="(-Financial Crime and Theft-, 1)",
                    chosen_category_error_score=1, rejected_category_error_score=3),
    ])


def run_stage(tmp_path: Path, options: dict, max_pairs=None) -> subprocess.CompletedProcess:
    params = {"protocol": "paper", "preferences": {
        "source": "cosalign_train", "seed": 0, "max_pairs": max_pairs, "cosalign_train": options}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    return subprocess.run([sys.executable, str(ROOT / "stages/preferences.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_stage_imports_a_released_parquet_file(tmp_path):
    released().to_parquet(tmp_path / "released.parquet", index=False)
    proc = run_stage(tmp_path, {"path_or_id": "released.parquet"})
    assert proc.returncode == 0, proc.stderr
    out = read_parquet(tmp_path / "data/preferences.parquet")
    schemas.validate(out, "preferences")
    assert len(out) == 2 and out["chosen_error"].tolist() == [0.1, 1.0]
    assert out["allowed_categories"].map(list).tolist()[1] == []
    assert "'kept': 2" in proc.stdout


def test_stage_imports_a_dataset_folder_with_a_split(tmp_path):
    write_hub_layout(tmp_path / "CoSAlign-Train", {None: {"train": released(), "test": released().head(1)}})
    proc = run_stage(tmp_path, {"path_or_id": str(tmp_path / "CoSAlign-Train"), "split": "test"})
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_parquet(tmp_path / "data/preferences.parquet")) == 1


def test_inconsistent_released_error_stops_with_row_and_field(tmp_path):
    bad = released()
    bad.loc[1, "rejected_category_error_score"] = 2.5
    bad.to_parquet(tmp_path / "released.parquet", index=False)
    proc = run_stage(tmp_path, {"path_or_id": "released.parquet"})
    assert proc.returncode == 2
    assert "row 2" in proc.stderr and "rejected_category_error_score" in proc.stderr  # 1-based
    assert not (tmp_path / "data/preferences.parquet").exists()
    # recompute: the formula's error is kept instead
    proc = run_stage(tmp_path, {"path_or_id": "released.parquet", "on_mismatch": "recompute"})
    assert proc.returncode == 0, proc.stderr
    assert pd.read_parquet(tmp_path / "data/preferences.parquet")["rejected_error"].tolist() == [1.0, 3.0]


def test_unknown_option_is_named(tmp_path):
    proc = run_stage(tmp_path, {"path": "x"})
    assert proc.returncode == 2 and "preferences.cosalign_train" in proc.stderr
