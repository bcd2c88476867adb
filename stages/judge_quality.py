"""Stage judge_quality: the pipeline's judge (prompt_labels.judge) measured on the judge-evaluation
set's `judge_quality.split` (eval; data/judge_eval, issue #15) -> reports/judge.json (a DVC metric)."""

from cosalign.core import paths
from cosalign.core.io import write_json
from cosalign.core.stage import run_stage, stage_params
from cosalign.data.judging import PromptLabelsParams, with_fit_data
from cosalign.judges.base import make_judge
from cosalign.judges.quality import JudgeQualityParams, judge_quality


def main() -> None:
    judge = stage_params("prompt_labels", PromptLabelsParams).judge
    split = stage_params("judge_quality", JudgeQualityParams).split
    report = judge_quality(make_judge(with_fit_data(judge, paths.PROMPTS)), split=split,
                           root=paths.JUDGE_EVAL)
    write_json(report, paths.JUDGE_QUALITY)
    pr = report["prompts"]
    print(f"judge_quality: {report['judge']}: prompt exact-set match {pr['exact_set_match']['value']}, "
          f"risky recall {pr['risky_recall']['value']}, benign flag rate "
          f"{pr['benign_flag_rate']['value']}; meets targets: {report['meets_targets']}")


if __name__ == "__main__":
    run_stage(main)
