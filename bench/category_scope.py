"""How many seed labels move under the authors' category scope (docs/paper-fidelity.md §2).

1. The remap table (cosalign.judges.paper.AUTHORS_SCOPE_REMAP) applied to the gold labels.
2. The offline rules judge's classifier refit on the same train split with the authors' scope as
   anchors (paper.PAPER_DESCRIPTIONS) and the remapped gold labels, against the default fit:
   how many of the 618 seed prompts get a different predicted label set (and on the test split).

Usage: python bench/category_scope.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json

from cosalign.judges import classifier, paper
from cosalign.judges.rules import DEFAULT_SEED, resolve_seed

SETTINGS = {"split_seed": 0, "test_fraction": 0.3, "C": 10.0, "threshold": 0.5,
            "fallback_threshold": "cv", "cv_folds": 5, "seed": 0}  # the profiles' judge


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json")
    args = ap.parse_args()
    rows = classifier.read_seed(resolve_seed(DEFAULT_SEED))
    remapped = [dict(r, gold=paper.authors_scope(r["prompt"], r["gold"])) for r in rows]
    moved_gold = [r["prompt_id"] for r, m in zip(rows, remapped) if set(r["gold"]) != set(m["gold"])]
    embed = lambda texts: classifier.embed(texts)  # noqa: E731
    X = embed([r["prompt"] for r in rows])
    test = [classifier.split_of(r["prompt_id"], 0, 0.3) == "test" for r in rows]

    def predict(bundle):
        chosen = classifier.decide(bundle["model"].predict_proba(X), bundle["threshold"],
                                   bundle["fallback_threshold"])
        return [frozenset(n for n, on in zip(bundle["names"], c) if on) for c in chosen]

    own = predict(classifier.fit(rows, embed_fn=embed, **SETTINGS))
    anchors_only = predict(classifier.fit(rows, embed_fn=embed, anchors=paper.PAPER_DESCRIPTIONS, **SETTINGS))
    authors = predict(classifier.fit(remapped, embed_fn=embed, anchors=paper.PAPER_DESCRIPTIONS, **SETTINGS))

    def moved(a, b, only_test=False):
        return sum(x != y for x, y, t in zip(a, b, test) if t or not only_test)

    report = {
        "seed_prompts": len(rows), "test_prompts": sum(test),
        "gold_moved_by_remap": len(moved_gold), "gold_moved_ids": moved_gold,
        "by_rule": {rule[0]: sum(set(paper.authors_scope(r["prompt"], r["gold"], (rule,))) != set(r["gold"])
                                 for r in rows) for rule in paper.AUTHORS_SCOPE_REMAP},
        "predicted_moved_anchors_only": moved(own, anchors_only),
        "predicted_moved_anchors_and_remap": moved(own, authors),
        "predicted_moved_anchors_and_remap_test": moved(own, authors, True),
        "gold_agreement_own_fit_test": sum(set(r["gold"]) == p for r, p, t in zip(rows, own, test) if t),
        "authors_gold_agreement_authors_fit_test": sum(set(r["gold"]) == p for r, p, t in zip(remapped, authors, test) if t),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
