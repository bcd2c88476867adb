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

from cosalign.cosa import schemas
# Gold labels name the paper's categories: this stage runs before the taxonomy stage (which
# clusters its prompts), so no added category can be in them.
from cosalign.cosa.taxonomy import PAPER
from cosalign.core.io import InputError, read_table
from cosalign.core.params import require
from cosalign.data.splits import split_of

MAX_PROMPT_CHARS = 4000  # a prompt longer than this is a data error, not a request


def _gold(value, path, row, field="gold_categories"):
    """A gold label cell: a real list of taxonomy names (JSON text only in CSV), or missing."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, str):
        if path.suffix.lower() != ".csv":
            raise InputError(path, "category list given as a string; use a JSON list",
                             row=row, field=field)
        try:
            value = json.loads(value) if value.strip() else None
        except json.JSONDecodeError:
            raise InputError(path, f"not a JSON list: {value!r}", row=row, field=field) from None
        if value is None:
            return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(path, f"must be a list of category names, got {value!r}",
                         row=row, field=field)
    unknown = [v for v in value if v not in PAPER.by_name]
    if unknown:
        raise InputError(path, f"unknown category {unknown[0]!r}", row=row, field=field)
    return PAPER.canonical_order(value)


def check_rows(df: pd.DataFrame, path: Path, *, id_column: str | None, prompt_column: str,
               gold_column: str | None, max_chars: int = MAX_PROMPT_CHARS, dedupe: bool = False) -> pd.DataFrame:
    """Normalise raw rows to (prompt_id, prompt, gold_categories), failing on the first bad row.

    Without an id column the id is a hash of the text, so `dedupe` drops repeated prompts (the
    paper deduplicated BeaverTails) instead of failing on them.
    """
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
        raw_id = rec[id_column] if id_column else ""
        if id_column and (raw_id is None or (isinstance(raw_id, float) and pd.isna(raw_id))
                          or not str(raw_id).strip()):  # JSONL rows without the key come back NaN
            raise InputError(path, "missing id", row=row, field=id_column)
        pid = str(rec[id_column]) if id_column else "p-" + hashlib.sha256(prompt.encode()).hexdigest()[:12]
        if pid in seen and dedupe and not id_column:
            continue
        if pid in seen:
            raise InputError(path, f"duplicate id {pid!r} (first at row {seen[pid]})",
                             row=row, field=id_column or prompt_column)
        seen[pid] = row
        ids.append(pid)
        prompts.append(prompt.strip())
        golds.append(_gold(rec.get(gold_column), path, row, gold_column)
                     if gold_column and gold_column in rec else None)
    return pd.DataFrame({"prompt_id": ids, "prompt": prompts, "gold_categories": golds})


def load_hub(dataset_id: str, revision: str, split: str, config: str | None = None,
             filters: dict | None = None) -> pd.DataFrame:
    """A Hub dataset at a pinned revision, with equality filters (e.g. adversarial: false)."""
    import datasets

    ds = datasets.load_dataset(dataset_id, config, revision=revision, split=split)
    df = ds.to_pandas()
    for col, value in (filters or {}).items():
        df = df[df[col] == value]
    return df.reset_index(drop=True)


def load_source(src: dict, *, params_path: str = "params.yaml", index: int = 0) -> pd.DataFrame:
    """One entry of `prompts.sources` -> checked (prompt_id, prompt, gold_categories, source)."""
    where = f"prompts.sources[{index}]"
    if not isinstance(src, dict):
        raise InputError(params_path, f"must be a mapping with a type, got {src!r}", field=where)
    kind = src.get("type")
    cols = src.get("columns") or {}
    if not isinstance(cols, dict):
        raise InputError(params_path, f"must map id/prompt/gold_categories to column names, got {cols!r}",
                         field=f"{where}.columns")
    if kind in ("seed", "file"):
        path = Path(require(src, "file", str, section_name=where, path=params_path))
    if kind == "seed":
        raw, id_col, prompt_col, gold_col = read_table(path), "prompt_id", "prompt", "gold_categories"
    elif kind == "file":
        raw = read_table(path)
        id_col, prompt_col, gold_col = cols.get("id"), cols.get("prompt", "prompt"), cols.get("gold_categories")
    elif kind == "hub":
        path = Path(f"hf://datasets/{src['dataset']}@{src['revision']}")
        raw = load_hub(src["dataset"], src["revision"], src["split"], src.get("config"), src.get("filters"))
        id_col, prompt_col, gold_col = None, cols.get("prompt", "prompt"), None
    else:
        raise InputError(params_path, f"unknown source type {kind!r} (seed, file, hub)",
                         field=f"{where}.type")
    df = check_rows(raw, path, id_column=id_col, prompt_column=prompt_col, gold_column=gold_col,
                    max_chars=src.get("max_chars", MAX_PROMPT_CHARS), dedupe=src.get("dedupe", kind == "hub"))
    if src.get("max_words"):  # the paper kept WildGuardMix prompts of at most 64 tokens
        df = df[df["prompt"].str.split().str.len() <= src["max_words"]]
    if src.get("max_prompts"):  # a seeded sample, independent of the source's row order
        df = df.sort_values("prompt_id", kind="stable")
        df = df.sample(n=min(src["max_prompts"], len(df)), random_state=src.get("seed", 0))
    df = df.copy()
    df["source"] = src.get("name", kind)
    return df


def build_prompts(p: dict, *, params_path: str = "params.yaml") -> pd.DataFrame:
    """Run the prompts stage from its params section; returns the validated frame."""
    sources = p.get("sources")
    if not isinstance(sources, list) or not sources:
        raise InputError(params_path, "must be a non-empty list of sources", field="prompts.sources")
    df = pd.concat([load_source(s, params_path=params_path, index=i) for i, s in enumerate(sources)],
                   ignore_index=True)
    df = df.drop_duplicates(["prompt_id", "prompt"])  # the same prompt from two sources: keep the first
    dup = df["prompt_id"].duplicated()
    if dup.any():
        raise InputError(params_path, f"prompt_id {df.loc[dup, 'prompt_id'].iloc[0]!r} occurs in two sources",
                         field="prompts.sources")
    df = df.sort_values("prompt_id", kind="stable").reset_index(drop=True)
    df["split"] = [split_of(i, p["seed"], p["test_fraction"]) for i in df["prompt_id"]]
    df = df[["prompt_id", "prompt", "source", "split", "gold_categories"]]
    return schemas.validate(df, "prompts", "data/prompts.parquet")
