"""The prompts stage: gather prompts from a source, check them row by row, assign splits.

Sources (params `prompts.source_type`): the project's seed set (`seed`), a local CSV/JSONL/parquet
file (`file`), or a Hub dataset at a pinned revision (`hub`, e.g. BeaverTails 330k_train or
WildGuardMix). Bad rows fail with the file, the row (1-based, as an editor shows it) and the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from cosalign import schemas, taxonomy
from cosalign.io import InputError, read_table
from cosalign.splits import split_of

MAX_PROMPT_CHARS = 4000  # a prompt longer than this is a data error, not a request


def _gold(value, path, row):
    """A gold label cell: a real list of taxonomy names (JSON text only in CSV), or missing."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, str):
        if path.suffix.lower() != ".csv":
            raise InputError(path, "category list given as a string; use a JSON list",
                             row=row, field="gold_categories")
        try:
            value = json.loads(value) if value.strip() else None
        except json.JSONDecodeError:
            raise InputError(path, f"not a JSON list: {value!r}", row=row, field="gold_categories") from None
        if value is None:
            return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(path, f"must be a list of category names, got {value!r}",
                         row=row, field="gold_categories")
    unknown = [v for v in value if v not in taxonomy.BY_NAME]
    if unknown:
        raise InputError(path, f"unknown category {unknown[0]!r}", row=row, field="gold_categories")
    return taxonomy.canonical_order(value)


def check_rows(df: pd.DataFrame, path: Path, *, id_column: str | None, prompt_column: str,
               gold_column: str | None, max_chars: int = MAX_PROMPT_CHARS) -> pd.DataFrame:
    """Normalise raw rows to (prompt_id, prompt, gold_categories), failing on the first bad row."""
    for col in [c for c in (id_column, prompt_column) if c]:
        if col not in df.columns:
            raise InputError(path, f"missing column (has {list(df.columns)})", field=col)
    ids, prompts, golds, seen = [], [], [], {}
    for i, rec in enumerate(df.to_dict("records")):
        row = i + (2 if path.suffix.lower() == ".csv" else 1)  # CSV row 1 is the header
        prompt = rec[prompt_column]
        if not isinstance(prompt, str):
            raise InputError(path, f"must be text, got {type(prompt).__name__}", row=row, field=prompt_column)
        if not prompt.strip():
            raise InputError(path, "empty prompt", row=row, field=prompt_column)
        if len(prompt) > max_chars:
            raise InputError(path, f"prompt has {len(prompt)} characters (limit {max_chars})",
                             row=row, field=prompt_column)
        pid = str(rec[id_column]) if id_column else "p-" + hashlib.sha256(prompt.encode()).hexdigest()[:12]
        if pid in seen:
            raise InputError(path, f"duplicate id {pid!r} (first at row {seen[pid]})",
                             row=row, field=id_column or prompt_column)
        seen[pid] = row
        ids.append(pid)
        prompts.append(prompt.strip())
        golds.append(_gold(rec.get(gold_column), path, row) if gold_column and gold_column in rec else None)
    return pd.DataFrame({"prompt_id": ids, "prompt": prompts, "gold_categories": golds})


def load_hub(dataset_id: str, revision: str, split: str, prompt_column: str,
             filters: dict | None = None) -> pd.DataFrame:
    """A Hub dataset at a pinned revision, filtered (e.g. adversarial: false) and deduplicated."""
    import datasets

    ds = datasets.load_dataset(dataset_id, revision=revision, split=split)
    df = ds.to_pandas()
    for col, value in (filters or {}).items():
        df = df[df[col] == value]
    return df.drop_duplicates(prompt_column)


def build_prompts(p: dict, *, params_path: str = "params.yaml") -> pd.DataFrame:
    """Run the prompts stage from its params section; returns the validated frame."""
    kind = p["source_type"]
    if kind == "seed":
        path = Path(p["seed_file"])
        raw, id_col, prompt_col, gold_col = read_table(path), "prompt_id", "prompt", "gold_categories"
    elif kind == "file":
        path = Path(p["file"])
        cols = p.get("columns", {})
        raw = read_table(path)
        id_col, prompt_col, gold_col = cols.get("id"), cols.get("prompt", "prompt"), cols.get("gold_categories")
    elif kind == "hub":
        path = Path(f"hf://datasets/{p['dataset']}@{p['revision']}")
        cols = p.get("columns", {})
        prompt_col = cols.get("prompt", "prompt")
        raw = load_hub(p["dataset"], p["revision"], p["split"], prompt_col, p.get("filters"))
        id_col, gold_col = None, None
    else:
        raise InputError(params_path, f"unknown source_type {kind!r} (seed, file, hub)",
                         field="prompts.source_type")
    df = check_rows(raw, path, id_column=id_col, prompt_column=prompt_col, gold_column=gold_col,
                    max_chars=p.get("max_chars", MAX_PROMPT_CHARS))
    if p.get("max_words"):
        df = df[df["prompt"].str.split().str.len() <= p["max_words"]]
    df = df.sort_values("prompt_id", kind="stable").reset_index(drop=True)
    if p.get("max_prompts"):
        df = df.head(p["max_prompts"]).reset_index(drop=True)
    df.insert(2, "source", p.get("source_name", kind))
    df.insert(3, "split", [split_of(i, p["seed"], p["test_fraction"]) for i in df["prompt_id"]])
    return schemas.validate(df, "prompts", "data/prompts.parquet")
