"""Stage evaluate@MODEL: answer every benchmark item with one model, judge, write reports/eval/MODEL.parquet.

Reads params.yaml `evaluate`: models.<MODEL> (checkpoint, optional fewshot file and cascade),
benchmarks (name -> optional path_or_id, revision, prompts_per_config), prompts_per_config,
seed, prompts (data/prompts.parquet), judge, generation. See cosalign.evaluation.
"""

import argparse
import json
from pathlib import Path

import pandas as pd

from cosalign import benchmarks as B
from cosalign import evaluation, metrics, schemas
from cosalign.generation import GenerationSettings
from cosalign.io import InputError, read_parquet, write_parquet
from cosalign.judges.base import make_judge
from cosalign.judging import with_fit_data
from cosalign.params import PARAMS_FILE, section


def load_items(p: dict) -> pd.DataFrame:
    """Every configured benchmark's items, concatenated in the order params lists them."""
    benches = p.get("benchmarks") or {}
    if not benches:
        raise InputError(PARAMS_FILE, "no benchmarks configured", field="evaluate.benchmarks")
    prompts = None
    frames = []
    for name, opts in benches.items():
        opts = opts or {}
        if B.load_spec(name)["loader"] == "heldout" and prompts is None:
            prompts = read_parquet(p.get("prompts", "data/prompts.parquet"))
        frames.append(B.load_benchmark(
            name, path_or_id=opts.get("path_or_id"), revision=opts.get("revision"),
            prompts_per_config=opts.get("prompts_per_config", p["prompts_per_config"]),
            seed=p["seed"], prompts_df=prompts))
    return pd.concat(frames, ignore_index=True)


def settings_from(g: dict, seed: int) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=g["max_new_tokens"], temperature=g["temperature"],
                              top_p=g.get("top_p", 1.0), batch_size=g["batch_size"], seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="a key of evaluate.models in params.yaml")
    ap.add_argument("--out", default=None, help="default: reports/eval/MODEL.parquet")
    args = ap.parse_args()
    p = section("evaluate")
    models = p.get("models") or {}
    if args.model not in models:
        raise SystemExit(f"params.yaml: evaluate.models has no {args.model!r} (known: {list(models)})")
    spec = models[args.model] or {}
    if "checkpoint" not in spec:
        raise SystemExit(f"params.yaml: evaluate.models.{args.model}.checkpoint is missing")
    items = load_items(p)
    fewshot = evaluation.load_fewshot(spec["fewshot"]) if spec.get("fewshot") else None
    g = p["generation"]
    out = evaluation.evaluate_model(
        args.model, spec["checkpoint"], items, make_judge(with_fit_data(p["judge"], p.get("prompts", "data/prompts.parquet"))), settings_from(g, p["seed"]),
        backend=g.get("backend", "transformers"), generator_options=g.get("options") or {},
        fewshot=fewshot, cascade=spec.get("cascade"))
    target = Path(args.out or f"reports/eval/{args.model}.parquet")
    schemas.validate(out, "eval_items", target)
    write_parquet(out, target)
    print(json.dumps(metrics.aggregate(out), indent=1))


if __name__ == "__main__":
    main()
