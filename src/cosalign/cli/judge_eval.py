"""`cosalign judge-eval --judge NAME [--split eval|dev]`: a judge's measured quality as JSON.

The same record the `judge_quality` stage writes to reports/judge.json (`judges.quality`): the
judge labels the prompts and judges the (prompt, response) triples of data/judge_eval's split,
and its verdicts are compared with the gold labels. Options come from params.yaml's
`prompt_labels.judge` section when it names the same backend (as for `cosalign label`). Tune on
`dev`; `eval` only measures.
"""

from __future__ import annotations

import json
import sys

from cosalign.core import paths


def add_arguments(parser) -> None:
    parser.add_argument("--judge", required=True, choices=["rules", "openai", "local"],
                        help="judge backend")
    parser.add_argument("--split", default="eval", choices=["eval", "dev"],
                        help="judge-evaluation split (default eval; tune only on dev)")
    parser.add_argument("--data", default=paths.JUDGE_EVAL, help="judge-evaluation directory")
    parser.add_argument("--params", default=None,
                        help="params file whose prompt_labels.judge section configures the judge "
                             "(default params.yaml, used when present)")
    parser.add_argument("--out", default=None, help="also write the JSON here")


def run(args) -> int:
    from cosalign.cli.label import judge_params
    from cosalign.core.io import write_json
    from cosalign.judges import JudgeError, make_judge
    from cosalign.judges.quality import judge_quality, load_split

    load_split(args.split, args.data)  # a missing or bad set fails before any model loads
    try:
        judge = make_judge(judge_params(args.judge, args.params or "params.yaml",
                                        explicit=args.params is not None))
        report = judge_quality(judge, args.split, args.data)
    except JudgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out:
        write_json(report, args.out)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0
