"""`cosalign eval`: CoSA-Score of any chat model (local path or Hub id) on one benchmark.

Runs the evaluate stage's sequence (cosalign.evaluation.evaluate.run_evaluation) outside DVC: load
the benchmark, generate, judge, print the metrics (a table, or JSON with --json), and optionally
write the judged items.
"""

from __future__ import annotations

import json
import sys

from cosalign.core import paths


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="checkpoint directory or Hub model id")
    p.add_argument("--model-revision", default=None, help="Hub revision of the model")
    p.add_argument("--name", default=None, help="model name recorded in the items (default: --model)")
    p.add_argument("--benchmark", required=True, help="heldout, cosalign_test or cosapien")
    p.add_argument("--benchmark-path", default=None,
                   help="Hub dataset id or local directory (default: the benchmark's Hub id)")
    p.add_argument("--revision", default=None, help="pinned revision of the benchmark dataset")
    p.add_argument("--prompts", default=paths.PROMPTS, help="prompts file (heldout only)")
    p.add_argument("--config-id", action="append", default=None,
                   help="evaluate only this config (repeatable)")
    p.add_argument("--prompts-per-config", type=int, default=20, help="0 = all prompts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--judge", default="rules", help="rules, openai or local")
    p.add_argument("--judge-option", action="append", default=[], metavar="KEY=VALUE",
                   help="judge option (value parsed as JSON when it can be), repeatable")
    p.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--fewshot", default=None, help="JSONL demonstrations (ICA-5shot)")
    p.add_argument("--cascade", default=None, choices=["self", "oracle"])
    p.add_argument("--out", default=None, help="write the judged items here (parquet)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--dry-run", action="store_true",
                   help="print the judge calls, tokens and cost this run would need, then exit; "
                        "nothing is generated or sent (an API judge only)")
    p.add_argument("--input-price", type=float, default=None, metavar="PER_MTOK",
                   help="judge price per million input tokens, for --dry-run's cost")
    p.add_argument("--output-price", type=float, default=None, metavar="PER_MTOK",
                   help="judge price per million output tokens, for --dry-run's cost")
    p.add_argument("--taxonomy", default=None, metavar="PATH",
                   help="taxonomy.json of the categories (default: data/taxonomy.json when present, "
                        "else the paper's)")


def _judge_params(name: str, options: list[str]) -> dict:
    params = {"name": name}
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep:
            raise SystemExit(f"--judge-option {opt!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def metrics_table(metrics: dict) -> str:
    lines = [f"{'model':<20} {'benchmark/set':<24} {'CoSA [95% interval]':>24} "
             f"{'help+safe':>22} {'help+unsafe':>22} {'valid':>7} {'n':>5}"]
    for model, groups in metrics.items():
        for key, g in groups.items():
            def f(k, pct=False):
                def num(v):
                    return f"{100 * v:.1f}%" if pct else f"{v:.3f}"
                v, ci = g.get(k), (g.get("ci") or {}).get(k) or {}
                if v is None:
                    return "n/a"
                return num(v) if ci.get("lo") is None else f"{num(v)} [{num(ci['lo'])}, {num(ci['hi'])}]"
            lines.append(f"{model:<20} {key:<24} {f('cosa_score'):>24} "
                         f"{f('helpful_safe', True):>22} {f('helpful_unsafe', True):>22} "
                         f"{f('valid_rate', True):>7} {g['n']:>5}")
            if g["configs_without_valid_items"]:
                lines.append(f"  left out (no valid item): {', '.join(g['configs_without_valid_items'])}")
    return "\n".join(lines)


def dry_run_estimate(items, judge, max_new_tokens: int):
    """The judge's estimate for every item, each answer taken at its longest (max_new_tokens):
    the answers do not exist yet, so this is an upper bound (cosalign.judges.estimate)."""
    from cosalign.judges.estimate import CHARS_PER_TOKEN, combine

    if not hasattr(judge, "estimate"):
        raise SystemExit(f"error: --dry-run needs an API judge (openai); {judge.judge_id} makes no calls")
    answer = "x" * (max_new_tokens * CHARS_PER_TOKEN)
    free = items["config_set"] == "freeform"
    parts = [judge.estimate("response", [(q, answer) for q in items.loc[~free, "prompt"]]),
             judge.estimate("freeform", [(c, q, answer) for c, q in
                                         zip(items.loc[free, "system_prompt"], items.loc[free, "prompt"])])]
    return combine([p for p in parts if p.total] or parts[:1])


def _check_paths(args) -> None:
    """A missing local file fails here, named as missing, before anything loads."""
    from cosalign.cli.checks import require, require_local_or_hub

    if args.fewshot:
        require(args.fewshot, "--fewshot: demonstrations file")
    require_local_or_hub(args.model, "--model: checkpoint directory")
    require_local_or_hub(args.benchmark_path, "--benchmark-path: benchmark directory")


def run(args) -> int:
    from cosalign.cli.checks import require
    from cosalign.cosa import cosa_score, taxonomy
    from cosalign.evaluation.benchmarks import load_spec
    from cosalign.evaluation.evaluate import (BenchmarkEntry, GenerationParams, ModelEntry, load_items,
                                              run_evaluation)
    from cosalign.judges.base import make_judge

    _check_paths(args)
    tax = taxonomy.for_command(args.taxonomy)
    if load_spec(args.benchmark, taxonomy=tax)["loader"] == "heldout":
        require(args.prompts, "--prompts: prompts file")
    benchmark = {args.benchmark: BenchmarkEntry(path_or_id=args.benchmark_path, revision=args.revision)}
    items = load_items(benchmark, prompts_path=args.prompts, prompts_per_config=args.prompts_per_config,
                       seed=args.seed, config_ids=args.config_id, taxonomy=tax)
    judge_params = _judge_params(args.judge, args.judge_option)
    if args.dry_run or judge_params.get("dry_run"):  # --judge-option dry_run=true means the same
        judge_params.pop("dry_run", None)
        from cosalign.judges.base import backend_class
        if not hasattr(backend_class(judge_params.get("name", "")), "estimate"):  # before it is built
            raise SystemExit(f"error: --dry-run needs an API judge (openai); {judge_params.get('name')!r} "
                             "makes no calls")
        for key, value in (("input_price_per_mtok", args.input_price), ("output_price_per_mtok", args.output_price)):
            if value is not None:
                judge_params[key] = value
        print(dry_run_estimate(items, make_judge(judge_params, tax), args.max_new_tokens).line())
        return 0
    model = ModelEntry(checkpoint=args.model, fewshot=args.fewshot, cascade=args.cascade)
    generation = GenerationParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  batch_size=args.batch_size, top_p=1.0, backend=args.backend,
                                  options={"revision": args.model_revision} if args.model_revision else {})
    out, _ = run_evaluation(
        args.name or args.model, model, benchmark, judge=judge_params, generation=generation,
        seed=args.seed, prompts_per_config=args.prompts_per_config, prompts_path=args.prompts,
        config_ids=args.config_id, out=args.out, taxonomy=tax, items=items)
    # Scores with their 95% intervals (seeded by --seed) and, for one model, no paired differences.
    metrics, breakdown = cosa_score.with_intervals(out, seed=args.seed, baseline=None, taxonomy=tax)
    result = {m: {k: {**g, **breakdown[m][k]} for k, g in per.items()} for m, per in metrics.items()}
    print(json.dumps(result, indent=2) if args.json else metrics_table(result), file=sys.stdout)
    return 0
