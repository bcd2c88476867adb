"""Stage report: merge reports/eval/*.parquet into reports/eval_items.parquet, write metrics.json,
report.md and plots (see cosalign.report). The models are evaluate.models, in params order."""

import argparse
import json

from cosalign.params import section
from cosalign.report import run_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--eval-dir", default="reports/eval")
    ap.add_argument("--items-out", default="reports/eval_items.parquet")
    ap.add_argument("--metrics-out", default="reports/metrics.json")
    ap.add_argument("--report-out", default="reports/report.md")
    ap.add_argument("--plots-dir", default="reports/plots")
    ap.add_argument("--judge-quality", default="reports/judge.json")
    args = ap.parse_args()
    models = list(section("evaluate").get("models") or {})
    r = section("report")
    # Only the configured models: files of models dropped from params may linger in eval-dir.
    metrics = run_report([f"{args.eval_dir}/{m}.parquet" for m in models],
                         items_out=args.items_out, metrics_out=args.metrics_out,
                         report_out=args.report_out, plots_dir=args.plots_dir,
                         pngs=bool(r.get("png", True)), judge_quality_path=args.judge_quality)
    print(json.dumps({m: {k: g["cosa_score"] for k, g in v.items()} for m, v in metrics.items()}))


if __name__ == "__main__":
    main()
