"""The judge-evaluation set (data/judge_eval, issue #15) is pinned, well formed, balanced, and
written apart from the seed prompts (no paraphrase, by MiniLM cosine)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from cosalign.cosa.taxonomy import ALLOWABLE, NAMES, canonical_order

REPO = Path(__file__).resolve().parents[1]
HERE = REPO / "data" / "judge_eval"
SHA256 = {  # change only together with the README's counts, never after a judge was tuned on it
    "prompts_eval.jsonl": "2b14798ee7ca93a87f8d6c711d9f165fe9a844f5ade39b67f0051846645f09d8",
    "prompts_dev.jsonl": "fb81dcd9898bcd6b75b64675f1b909f4a3f70249f56f262c5f4e49f4264cc2ae",
    "triples_eval.jsonl": "fe60a145d5bc05cded57b98e973fed642515f5b92f05e354cbc3faf98a891b75",
    "triples_dev.jsonl": "4e02190f0982bf568216ace70c5d74a21564af486d4945a363768da34a00aa11",
}
PARAPHRASE_COSINE = 0.80  # see README "No paraphrase of the seed prompts"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _rows(name: str) -> list[dict]:
    return _jsonl(HERE / name)


def test_files_pinned():
    for name, digest in SHA256.items():
        assert hashlib.sha256((HERE / name).read_bytes()).hexdigest() == digest, name


def test_build_reproduces_the_files(tmp_path):
    """build.py is the files' only source: running it on a copy gives the same bytes."""
    copy = tmp_path / "judge_eval"
    copy.mkdir()
    for src in ("build.py", "prompts_source.py", "triples_source.py"):
        (copy / src).write_bytes((HERE / src).read_bytes())
    subprocess.run([sys.executable, str(copy / "build.py")], check=True, capture_output=True)
    for name in SHA256:
        assert (copy / name).read_bytes() == (HERE / name).read_bytes(), name


def _check_categories(cats, where):
    assert isinstance(cats, list) and cats == canonical_order(cats), where
    assert len(cats) == len(set(cats)), where


def test_prompt_schema_counts_and_balance():
    ids = set()
    for split, minimum in (("eval", 300), ("dev", 140)):
        rows = _rows(f"prompts_{split}.jsonl")
        assert len(rows) >= minimum, split
        for r in rows:
            assert set(r) == {"prompt_id", "prompt", "gold_categories", "kind"}, r
            assert r["prompt"].strip() and r["prompt_id"] not in ids
            ids.add(r["prompt_id"])
            _check_categories(r["gold_categories"], r["prompt_id"])
            assert r["kind"] == ("risky" if r["gold_categories"] else "benign_control"), r["prompt_id"]
        counts = Counter(c for r in rows for c in r["gold_categories"])
        per_cat = [counts[n] for n in NAMES]
        assert min(per_cat) >= (25 if split == "eval" else 12), (split, counts)
        assert max(per_cat) <= 1.4 * min(per_cat), (split, counts)  # balanced across categories
        benign = sum(r["kind"] == "benign_control" for r in rows)
        assert 0.2 <= benign / len(rows) <= 0.35, (split, benign)
        multi = sum(len(r["gold_categories"]) > 1 for r in rows)
        assert multi >= 0.05 * len(rows), (split, multi)


def test_triple_schema_counts_and_labels():
    ids = set()
    for split, minimum in (("eval", 300), ("dev", 140)):
        rows = _rows(f"triples_{split}.jsonl")
        assert len(rows) >= minimum, split
        for r in rows:
            assert set(r) == {"triple_id", "allowed_categories", "prompt", "response",
                              "gold_response_categories", "addressed", "helpfulness",
                              "response_kind"}, r
            assert r["triple_id"] not in ids and r["prompt"].strip() and r["response"].strip()
            ids.add(r["triple_id"])
            _check_categories(r["allowed_categories"], r["triple_id"])
            assert set(r["allowed_categories"]) <= ALLOWABLE, r["triple_id"]
            _check_categories(r["gold_response_categories"], r["triple_id"])
            assert isinstance(r["addressed"], bool) and r["helpfulness"] in range(6), r["triple_id"]
            if not r["addressed"]:  # refusals and off-topic answers carry nothing and help nothing
                assert r["helpfulness"] == 0 and r["gold_response_categories"] == [], r["triple_id"]
        kinds = Counter(r["response_kind"] for r in rows)
        assert {"refusal", "off_topic", "safe_helpful", "risky", "partial", "helpful"} == set(kinds)
        risky = [r for r in rows if r["gold_response_categories"]]
        allowed = [set(r["gold_response_categories"]) <= set(r["allowed_categories"]) for r in risky]
        assert 0.25 <= sum(allowed) / len(risky) <= 0.75, split  # allowed and disallowed risk both occur
        assert len({c for r in risky for c in r["gold_response_categories"]}) == len(NAMES)


def test_splits_do_not_share_prompts():
    for kind in ("prompts", "triples"):
        ev = {r["prompt"] for r in _rows(f"{kind}_eval.jsonl")}
        dev = {r["prompt"] for r in _rows(f"{kind}_dev.jsonl")}
        assert not ev & dev, kind


def _all_prompts() -> list[str]:
    texts = []
    for name in SHA256:
        texts += [r["prompt"] for r in _rows(name)]
    return list(dict.fromkeys(texts))


def test_no_exact_duplicates():
    prompts = [r["prompt"] for n in ("prompts_eval.jsonl", "prompts_dev.jsonl") for r in _rows(n)]
    norm = Counter(" ".join(p.casefold().split()) for p in prompts)
    assert [p for p, n in norm.items() if n > 1] == []


@pytest.fixture(scope="module")
def embeddings():
    from cosalign.models.embedding import embed
    seed = [r["prompt"] for r in _jsonl(REPO / "data" / "seed" / "prompts.jsonl")]
    ours = _all_prompts()
    return ours, embed(ours), seed, embed(seed)


def test_no_paraphrase_of_seed_prompts(embeddings):
    ours, X, seed, S = embeddings
    sim = X @ S.T
    worst = [(round(float(sim[i].max()), 3), ours[i], seed[int(sim[i].argmax())])
             for i in range(len(ours)) if sim[i].max() >= PARAPHRASE_COSINE]
    assert worst == []


def test_no_near_duplicates_within_set(embeddings):
    ours, X, _, _ = embeddings
    sim = X @ X.T
    close = [(ours[i], ours[j]) for i in range(len(ours)) for j in range(i + 1, len(ours))
             if sim[i, j] >= PARAPHRASE_COSINE]
    assert close == []
