"""The shipped seed prompts and few-shot demonstrations are well formed and cover the taxonomy."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from cosalign.cosa.taxonomy import ALLOWABLE, NAMES, OTHER, canonical_order

SEED = Path(__file__).resolve().parents[1] / "data" / "seed"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


PROMPTS = _jsonl(SEED / "prompts.jsonl")


def test_prompt_rows_well_formed():
    assert len(PROMPTS) >= 560
    assert [r["prompt_id"] for r in PROMPTS] == [f"seed-{i:04d}" for i in range(1, len(PROMPTS) + 1)]
    for r in PROMPTS:
        assert set(r) == {"prompt_id", "prompt", "gold_categories"}, r["prompt_id"]
        assert r["prompt"].strip() and len(r["prompt"]) < 300, r["prompt_id"]
        assert 6 <= len(r["prompt"].split()) <= 30, r["prompt_id"]
        cats = r["gold_categories"]
        assert isinstance(cats, list), r["prompt_id"]
        assert cats == canonical_order(cats) and len(cats) == len(set(cats)), r["prompt_id"]


def test_prompts_unique_case_insensitive():
    texts = Counter(" ".join(r["prompt"].lower().split()) for r in PROMPTS)
    assert [t for t, n in texts.items() if n > 1] == []


def test_category_coverage():
    counts = Counter(c for r in PROMPTS for c in r["gold_categories"])
    for name in NAMES:
        if name != OTHER:
            assert counts[name] >= 60, (name, counts[name])
    assert counts[OTHER] >= 35
    assert sum(1 for r in PROMPTS if not r["gold_categories"]) >= 100
    risky = [r for r in PROMPTS if r["gold_categories"]]
    multi = sum(1 for r in risky if len(r["gold_categories"]) > 1)
    assert 0.10 <= multi / len(risky) <= 0.25


def test_fewshot_demonstrations():
    rows = _jsonl(SEED / "fewshot.jsonl")
    assert len(rows) == 5
    for i, r in enumerate(rows):
        assert set(r) == {"system_prompt_allowed", "prompt", "response"}, i
        allowed = r["system_prompt_allowed"]
        assert set(allowed) <= ALLOWABLE and allowed == canonical_order(allowed), i
        assert r["prompt"].strip() and 0 < len(r["response"].split()) <= 80, i
    # the demonstrations include at least one empty (fully safe) config and one relaxed config
    assert any(not r["system_prompt_allowed"] for r in rows)
    assert any(r["system_prompt_allowed"] for r in rows)
    # no demonstration leaks a seed prompt into the ICA-5shot context
    seed_texts = {r["prompt"].lower() for r in PROMPTS}
    assert not any(r["prompt"].lower() in seed_texts for r in rows)
