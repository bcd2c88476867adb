"""Stage evaluate@MODEL: answer every benchmark item with one model, judge, write reports/eval/MODEL.parquet.

Reads params.yaml `evaluate` (cosalign.evaluation.evaluate.EvaluateParams): models.<MODEL>
(checkpoint, optional fewshot file and cascade), benchmarks, prompts_per_config, seed, prompts,
judge, generation. The sequence itself is cosalign.evaluation.evaluate.run_evaluation, which
`cosalign eval` runs too.
"""

import argparse
import dataclasses
import json

from cosalign.core import paths
from cosalign.core.stage import run_stage, stage_params
from cosalign.cosa.taxonomy import Taxonomy
from cosalign.core import precision
from cosalign.core.params import protocol
from cosalign.data.judging import with_fit_data
from cosalign.evaluation.evaluate import EvaluateParams, run_evaluation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="a key of evaluate.models in params.yaml")
    ap.add_argument("--out", default=None, help="default: reports/eval/MODEL.parquet")
    ap.add_argument("--taxonomy", default=paths.TAXONOMY, help="the taxonomy stage's output")
    args = ap.parse_args()
    p = stage_params("evaluate", EvaluateParams)
    model = p.model(args.model)
    g = p.generation
    options = precision.generator_options(g.backend, g.options, precision.top_level()["resolved"])
    _, metrics = run_evaluation(
        args.model, model, p.benchmarks, judge=with_fit_data(p.judge, p.prompts),
        generation=dataclasses.replace(g, options=options), seed=p.seed,
        prompts_per_config=p.prompts_per_config, prompts_path=p.prompts,
        out=args.out or paths.eval_items(args.model), taxonomy=Taxonomy.load(args.taxonomy),
        protocol=protocol(), preferences_path=paths.PREFERENCES)
    print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    run_stage(main)
