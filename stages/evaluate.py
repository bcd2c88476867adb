"""Stage evaluate@MODEL: answer every benchmark item with one model, judge, write reports/eval/MODEL.parquet.

Reads params.yaml `evaluate`: models.<MODEL> (checkpoint, optional fewshot file and cascade),
benchmarks (name -> optional path_or_id, revision, prompts_per_config), prompts_per_config,
seed, prompts (data/prompts.parquet), judge, generation. See cosalign.evaluation.evaluate.
"""

import argparse
import json
from pathlib import Path

import pandas as pd

from cosalign.evaluation import benchmarks as B
from cosalign.evaluation import evaluate
from cosalign.cosa import cosa_score, schemas
from cosalign.cosa.taxonomy import Taxonomy
from cosalign.models.generation import GenerationSettings
from cosalign.core.io import InputError, read_parquet, write_parquet
from cosalign.judges.base import make_judge
from cosalign.core import precision
from cosalign.core.params import PARAMS_FILE, protocol, section
from cosalign.data.judging import with_fit_data


PREFERENCES = "data/preferences.parquet"  # ICA-5shot demos under protocol paper


def load_items(p: dict, taxonomy: Taxonomy) -> pd.DataFrame:
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
            seed=p["seed"], prompts_df=prompts, taxonomy=taxonomy, protocol=protocol()))
    return pd.concat(frames, ignore_index=True)


def settings_from(g: dict, seed: int) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=g["max_new_tokens"], temperature=g["temperature"],
                              top_p=g.get("top_p", 1.0), batch_size=g["batch_size"], seed=seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", required=True, help="a key of evaluate.models in params.yaml")
    ap.add_argument("--out", default=None, help="default: reports/eval/MODEL.parquet")
    ap.add_argument("--taxonomy", default="data/taxonomy.json", help="the taxonomy stage's output")
    args = ap.parse_args()
    p = section("evaluate")
    models = p.get("models") or {}
    if args.model not in models:
        raise SystemExit(f"params.yaml: evaluate.models has no {args.model!r} (known: {list(models)})")
    spec = models[args.model] or {}
    if "checkpoint" not in spec:
        raise SystemExit(f"params.yaml: evaluate.models.{args.model}.checkpoint is missing")
    tax = Taxonomy.load(args.taxonomy)
    items = load_items(p, tax)
    fewshot = evaluate.load_fewshot(spec["fewshot"], tax) if spec.get("fewshot") else None
    proto = protocol()
    demos = None
    hub_categorical = ((items["benchmark"] != "heldout") & (items["config_set"] != "freeform")).any()
    if fewshot and proto == "paper" and hub_categorical:  # docs/paper-fidelity.md §5
        demos = evaluate.paper_demos(items, evaluate.demo_pool(read_parquet(PREFERENCES), tax), p["seed"], tax)
    g = p["generation"]
    backend = g.get("backend", "transformers")
    options = precision.generator_options(backend, g.get("options"), precision.top_level()["resolved"])
    judge = make_judge(with_fit_data(p["judge"], p.get("prompts", "data/prompts.parquet")), tax,
                       protocol=proto, phase="evaluation")
    out = evaluate.evaluate_model(
        args.model, spec["checkpoint"], items, judge,
        settings_from(g, p["seed"]), backend=backend, generator_options=options,
        fewshot=fewshot, cascade=spec.get("cascade"),
        taxonomy=tax, protocol=proto, demos_per_item=demos)
    target = Path(args.out or f"reports/eval/{args.model}.parquet")
    schemas.validate(out, "eval_items", target)
    write_parquet(out, target)
    print(json.dumps(cosa_score.aggregate(out, tax), indent=1))


if __name__ == "__main__":
    main()
