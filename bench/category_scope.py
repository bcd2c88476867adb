"""How many seed labels move under the authors' category scope (docs/paper-fidelity.md §2).

1. The remap table (cosalign.judges.paper.AUTHORS_SCOPE_REMAP) applied to the gold labels.
2. The offline rules judge's classifier refit on the data the pipeline fits it on (the prompts
   stage's train split + data/judge_train) with the authors' scope as anchors
   (paper.PAPER_DESCRIPTIONS) and the remapped gold labels, against the default fit: how many of
   the seed prompts (data/prompts.parquet, both splits) get a different predicted label set.

Needs data/prompts.parquet (`dvc repro prompts`). The judge's settings are RulesJudge's defaults,
the ones every profile uses.

Usage: python bench/category_scope.py [--json bench/results/category_scope.json]
"""

from __future__ import annotations

import argparse
import inspect
import json

from cosalign.core import paths
from cosalign.core.io import read_parquet
from cosalign.judges import classifier, paper
from cosalign.judges.rules import RulesJudge

FIT_OPTIONS = ("C", "gate_C", "threshold", "gate_threshold", "tfidf_weight", "gate_tfidf_weight",
               "cv_folds", "seed")


def judge_settings() -> dict:
    """The fitting settings of RulesJudge's defaults (one source of truth: its signature)."""
    signature = inspect.signature(RulesJudge.__init__).parameters
    return {name: signature[name].default for name in FIT_OPTIONS}


def remapped(rows: list[dict]) -> list[dict]:
    return [dict(r, gold=paper.authors_scope(r["prompt"], r["gold"])) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the report here")
    args = ap.parse_args()
    settings = judge_settings()
    fit_rows = classifier.read_fit_rows(paths.PROMPTS) + classifier.read_fit_rows(paths.JUDGE_TRAIN)
    prompts = read_parquet(paths.PROMPTS)
    rows = [{"prompt_id": r.prompt_id, "prompt": r.prompt, "gold": list(r.gold_categories),
             "test": r.split == "test"} for r in prompts.itertuples() if r.gold_categories is not None]
    moved_gold = [r["prompt_id"] for r, m in zip(rows, remapped(rows)) if set(r["gold"]) != set(m["gold"])]
    texts = [r["prompt"] for r in rows]
    X = classifier.embed(texts)

    def predict(bundle: dict) -> list[frozenset]:
        risky_p, probs = bundle["classifier"].predict(texts, X)
        chosen = classifier.decide(probs, bundle["threshold"]) & (risky_p >= bundle["gate_threshold"])[:, None]
        return [frozenset(n for n, on in zip(bundle["names"], c) if on) for c in chosen]

    own = predict(classifier.fit(fit_rows, embed_fn=classifier.embed, **settings))
    anchors_only = predict(classifier.fit(fit_rows, embed_fn=classifier.embed,
                                          anchors=paper.PAPER_DESCRIPTIONS, **settings))
    authors = predict(classifier.fit(remapped(fit_rows), embed_fn=classifier.embed,
                                     anchors=paper.PAPER_DESCRIPTIONS, **settings))

    def moved(a, b, only_test=False):
        return sum(x != y for x, y, r in zip(a, b, rows) if r["test"] or not only_test)

    def agree(gold_rows, predicted):
        return sum(set(r["gold"]) == p for r, p in zip(gold_rows, predicted) if r["test"])

    report = {
        "seed_prompts": len(rows), "test_prompts": sum(r["test"] for r in rows),
        "fitting_prompts": len(fit_rows), "judge_settings": settings,
        "gold_moved_by_remap": len(moved_gold), "gold_moved_ids": moved_gold,
        "by_rule": {rule[0]: sum(set(paper.authors_scope(r["prompt"], r["gold"], (rule,))) != set(r["gold"])
                                 for r in rows) for rule in paper.AUTHORS_SCOPE_REMAP},
        "predicted_moved_anchors_only": moved(own, anchors_only),
        "predicted_moved_anchors_and_remap": moved(own, authors),
        "predicted_moved_anchors_and_remap_test": moved(own, authors, True),
        "gold_agreement_own_fit_test": agree(rows, own),
        "authors_gold_agreement_authors_fit_test": agree(remapped(rows), authors),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
