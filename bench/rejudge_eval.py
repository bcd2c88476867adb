"""Re-judge stored evaluation responses with another judge: CoSA-Score before and after (issue #15).

    python bench/rejudge_eval.py [--eval-dir reports/eval] [--judge rules] [--json OUT]

Reads every reports/eval/MODEL.parquet (the evaluate stage's items, with each model's responses),
keeps the responses, judges them again with the judge built from params.yaml's `evaluate.judge`
(the rules judge fitting on data/prompts.parquet and data/judge_train, as the stage does), and
prints each model's CoSA-Score per benchmark/config set under the stored verdicts ("before") and
the new ones ("after"). No generation and no retraining: only the judge changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

VERDICT_COLUMNS = ["helpfulness", "response_categories", "safe", "valid", "judge", "judge_raw"]


def rejudge(path: Path, judge):
    from cosalign.cosa import cosa_score
    from cosalign.evaluation.evaluate import judge_items
    from cosalign.core.io import read_parquet

    items = read_parquet(path)
    before = cosa_score.aggregate(items)
    judged = judge_items(items.drop(columns=[c for c in VERDICT_COLUMNS + ["response"] if c in items]),
                         items["response"].astype(str).tolist(), judge)
    return before, cosa_score.aggregate(judged), str(items["judge"].iloc[0])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval-dir", default="reports/eval")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--json", default=None, help="also write the table as JSON here")
    args = ap.parse_args(argv)
    from cosalign.judges import make_judge
    from cosalign.data.judging import with_fit_data
    from cosalign.core.params import load_params

    files = sorted(Path(args.eval_dir).glob("*.parquet"))
    if not files:
        print(f"error: no evaluation items in {args.eval_dir} (run the evaluate stages first)", file=sys.stderr)
        return 2
    p = load_params(args.params)["evaluate"]
    judge = make_judge(with_fit_data({**p["judge"], "progress": False}, p.get("prompts", "data/prompts.parquet")))
    rows = []
    for path in files:
        before, after, old_judge = rejudge(path, judge)
        for model, groups in before.items():
            for key, g in groups.items():
                rows.append({"model": model, "set": key, "judge_before": old_judge,
                             "judge_after": judge.judge_id, "cosa_before": g["cosa_score"],
                             "cosa_after": after[model][key]["cosa_score"],
                             "helpful_safe_before": g["helpful_safe"],
                             "helpful_safe_after": after[model][key]["helpful_safe"]})
    print(f"{'model':<18} {'benchmark/set':<26} {'CoSA before':>12} {'CoSA after':>11}")
    for r in rows:
        f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{r['model']:<18} {r['set']:<26} {f(r['cosa_before']):>12} {f(r['cosa_after']):>11}")
    print(f"before: {rows[0]['judge_before']}\nafter:  {rows[0]['judge_after']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
