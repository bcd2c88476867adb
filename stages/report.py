"""Stage report: merge reports/eval/*.parquet into reports/eval_items.parquet, write metrics.json
(scores, 95% intervals, paired differences to report.baseline), breakdown.json, report.md and plots
(see cosalign.evaluation.report). The models are evaluate.models, in params order; the bootstrap
is seeded with evaluate.seed."""

import argparse
import json

from cosalign.core.params import require, section
from cosalign.cosa.taxonomy import Taxonomy
from cosalign.evaluation.report import run_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--eval-dir", default="reports/eval")
    ap.add_argument("--items-out", default="reports/eval_items.parquet")
    ap.add_argument("--metrics-out", default="reports/metrics.json")
    ap.add_argument("--breakdown-out", default="reports/breakdown.json")
    ap.add_argument("--report-out", default="reports/report.md")
    ap.add_argument("--plots-dir", default="reports/plots")
    ap.add_argument("--taxonomy", default="data/taxonomy.json")
    ap.add_argument("--judge-quality", default="reports/judge.json")
    args = ap.parse_args()
    evaluate = section("evaluate")
    models = list(evaluate.get("models") or {})
    r = section("report")
    seed = require(evaluate, "seed", int, section_name="evaluate")
    baseline = require(r, "baseline", (str, type(None)), section_name="report")
    # Only the configured models: files of models dropped from params may linger in eval-dir.
    metrics = run_report([f"{args.eval_dir}/{m}.parquet" for m in models],
                         items_out=args.items_out, metrics_out=args.metrics_out,
                         report_out=args.report_out, plots_dir=args.plots_dir,
                         breakdown_out=args.breakdown_out, seed=seed, baseline=baseline,
                         pngs=bool(r.get("png", True)), taxonomy=Taxonomy.load(args.taxonomy),
                         judge_quality_path=args.judge_quality)
    print(json.dumps({m: {k: g["cosa_score"] for k, g in v.items()} for m, v in metrics.items()}))


if __name__ == "__main__":
    main()
