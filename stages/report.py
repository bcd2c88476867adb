"""Stage report: merge reports/eval/*.parquet into reports/eval_items.parquet, write metrics.json
(scores, 95% intervals, paired differences to report.baseline), breakdown.json, report.md and plots
(see cosalign.evaluation.report). The models are evaluate.models, in params order; the bootstrap
is seeded with evaluate.seed."""

import argparse
import json

from cosalign.core import paths
from cosalign.core.params import require, section
from cosalign.core.stage import run_stage, stage_params
from cosalign.cosa.taxonomy import Taxonomy
from cosalign.evaluation.report import ReportParams, run_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--eval-dir", default=paths.EVAL_DIR)
    ap.add_argument("--items-out", default=paths.EVAL_ITEMS)
    ap.add_argument("--metrics-out", default=paths.METRICS)
    ap.add_argument("--breakdown-out", default=paths.BREAKDOWN)
    ap.add_argument("--report-out", default=paths.REPORT)
    ap.add_argument("--plots-dir", default=paths.PLOTS_DIR)
    ap.add_argument("--taxonomy", default=paths.TAXONOMY)
    ap.add_argument("--judge-quality", default=paths.JUDGE_QUALITY)
    args = ap.parse_args()
    # Only the model names and the seed: the report does not depend on how each model was evaluated
    # (dvc.yaml lists those params), and files of models dropped from params may linger in eval-dir.
    evaluate = section("evaluate")
    models = list(evaluate.get("models") or {})
    seed = require(evaluate, "seed", int, section_name="evaluate")
    r = stage_params("report", ReportParams)
    metrics = run_report([f"{args.eval_dir}/{m}.parquet" for m in models],
                         items_out=args.items_out, metrics_out=args.metrics_out,
                         report_out=args.report_out, plots_dir=args.plots_dir,
                         breakdown_out=args.breakdown_out, seed=seed, baseline=r.baseline, pngs=r.png,
                         taxonomy=Taxonomy.load(args.taxonomy), judge_quality_path=args.judge_quality)
    print(json.dumps({m: {k: g["cosa_score"] for k, g in v.items()} for m, v in metrics.items()}))


if __name__ == "__main__":
    run_stage(main)
