"""The rules judge's own fitting prompts (data/judge_train, issue #15): well formed, reproducible
from build.py, and no paraphrase of the judge-evaluation set (which must stay unseen)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cosalign.cosa.taxonomy import NAMES, canonical_order

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "data" / "judge_train"
PARAPHRASE_COSINE = 0.80  # as in tests/test_judge_eval_data.py


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_rows_well_formed_and_cover_the_taxonomy():
    rows = _jsonl(HERE / "prompts.jsonl")
    assert len(rows) >= 200
    assert len({r["prompt_id"] for r in rows}) == len(rows)
    for r in rows:
        assert set(r) == {"prompt_id", "prompt", "gold_categories"}, r
        assert r["prompt"].strip() and r["gold_categories"] == canonical_order(r["gold_categories"])
    assert {c for r in rows for c in r["gold_categories"]} == set(NAMES)
    assert sum(not r["gold_categories"] for r in rows) >= 100  # benign controls with risky words


def test_build_reproduces_the_file(tmp_path):
    (tmp_path / "build.py").write_bytes((HERE / "build.py").read_bytes())
    subprocess.run([sys.executable, str(tmp_path / "build.py")], check=True, capture_output=True)
    assert (tmp_path / "prompts.jsonl").read_bytes() == (HERE / "prompts.jsonl").read_bytes()


def test_no_paraphrase_of_the_judge_eval_set():
    from cosalign.models.embedding import embed
    ours = [r["prompt"] for r in _jsonl(HERE / "prompts.jsonl")]
    held_out = list(dict.fromkeys(r["prompt"] for f in sorted((REPO / "data" / "judge_eval").glob("*.jsonl"))
                                  for r in _jsonl(f)))
    sim = embed(ours) @ embed(held_out).T
    close = [(ours[i], held_out[int(sim[i].argmax())]) for i in range(len(ours))
             if sim[i].max() >= PARAPHRASE_COSINE]
    assert close == []
