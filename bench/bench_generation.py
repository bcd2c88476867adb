"""Generation tokens/s: the responses/evaluate stages' generator vs one prompt at a time.

Both sides use the same model object, the same chats (seed prompts under config system prompts
from cosalign.data.configs, rendered by cosalign.models.chat.render_ids), greedy decoding and the same
max_new_tokens, and count generated tokens up to and including the first EOS only (a batch keeps
stepping finished rows until its longest row ends; that work is not counted).

- baseline: `model.generate` on one prompt at a time, KV cache on;
- `TransformersGenerator.generate` (sort by length, left-padded batches) at each batch size;
- `--backend vllm` (GPU): also vLLM's offline engine on all prompts at once;
- `--compare-dtype bfloat16`: the generator again with bfloat16 weights (`precision: bf16`) at the
  default profile's batch size, beside the `--dtype` run.

MFU = 2 N FLOPs per prefilled (non-padding prompt) and per generated token over the time, against
the matmul peak (bench/bench_peak.py); N = the model's parameter count. Decoding one token per row
per step is memory-bound, so generation's MFU sits far below training's.

    python bench/bench_generation.py            # SmolLM2, 64 prompts, batch 1..64 (~10 min, 2 cores)
    python bench/bench_generation.py --quick    # tiny random model, seconds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure, model_for, scratch_dir, target, timed, write_result  # noqa: E402

TARGET_SPEEDUP = 4.0


def make_chats(n: int) -> list[list[dict]]:
    """n chats: the first seed prompts, each under one of its sampled configs (as the stage builds)."""
    from cosalign.models.chat import messages
    from cosalign.data.configs import sample_configs
    from synthetic import labels_frame, prompts_frame

    prompts = prompts_frame(1)
    prompts = prompts.assign(split="train")  # every prompt gets configs; the split does not matter here
    configs = sample_configs(prompts, labels_frame(prompts), modes=["exact_match", "superset", "safe",
                                                                    "not_superset"],
                             configs_per_mode=1, seed=0)
    # One config per prompt, the mode rotating, so system prompts of every kind and length appear.
    text = dict(zip(prompts["prompt_id"], prompts["prompt"]))
    chosen = configs.groupby("prompt_id", sort=True).nth(0).reset_index(drop=True)
    rows = [chosen.iloc[i] for i in range(min(n, len(chosen)))]
    return [messages(r["system_prompt"], text[r["prompt_id"]]) for r in rows]


def eos_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def count_to_eos(token_ids, eos: set[int]) -> int:
    """Generated tokens up to and including the first EOS (all of them when none)."""
    for i, t in enumerate(token_ids):
        if int(t) in eos:
            return i + 1
    return len(token_ids)


def baseline(gen, chats, max_new_tokens: int, eos: set[int]) -> tuple[int, list[str]]:
    """One prompt at a time, greedy, KV cache on: (tokens to EOS, replies)."""
    import torch

    from cosalign.models.chat import render_ids

    tokens, replies = 0, []
    for chat in chats:
        ids = torch.tensor([render_ids(gen.tokenizer, chat)], device=gen.device)
        with torch.inference_mode():
            out = gen.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                     max_new_tokens=max_new_tokens, do_sample=False, use_cache=True,
                                     temperature=None, top_p=None, top_k=None, pad_token_id=gen.pad_id)
        new = out[0, ids.shape[1]:].tolist()
        tokens += count_to_eos(new, eos)
        replies.append(gen.tokenizer.decode(new, skip_special_tokens=True).strip())
    return tokens, replies


class TokenCounter:
    """Wraps a model's `generate` to see each batch's output ids (it changes nothing it passes on)."""

    def __init__(self, model, eos: set[int]):
        self.inner, self.eos, self.tokens, self.prefill = model.generate, eos, 0, 0
        model.generate = self

    def __call__(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        width = kwargs["input_ids"].shape[1]
        self.prefill += int(kwargs["attention_mask"].sum()) if "attention_mask" in kwargs else int(kwargs["input_ids"].numel())
        self.tokens += sum(count_to_eos(row, self.eos) for row in out[:, width:].tolist())
        return out


def run_transformers(args, model_dir: Path, chats, results: dict) -> None:
    from cosalign.models.generation import GenerationSettings, TransformersGenerator

    gen = TransformersGenerator(str(model_dir), device=args.device, dtype=args.dtype)
    eos = eos_ids(gen.model, gen.tokenizer)
    baseline(gen, chats[:2], 4, eos)  # warm-up: first-call allocations and kernels
    base_chats = chats[:args.baseline_prompts or len(chats)]  # a rate: a prefix measures it as well
    t = timed(lambda: baseline(gen, base_chats, args.max_new_tokens, eos), args.repeats, args.budget_s)
    tokens, base_replies = t["result"]
    results["one_at_a_time"] = {"tokens": tokens, "median_s": t["median_s"], "runs_s": t["runs_s"],
                                "tokens_per_s": tokens / t["median_s"]}
    print(f"one-at-a-time: {tokens} tokens, {tokens / t['median_s']:.1f} tokens/s")
    counter = TokenCounter(gen.model, eos)
    for bs in args.batch_sizes:
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=0.0, top_p=1.0,
                                      batch_size=bs, seed=0)

        def once():
            counter.tokens = counter.prefill = 0
            replies = gen.generate(chats, settings, n=1, progress=False)
            return counter.tokens, replies

        t = timed(once, args.repeats, args.budget_s)
        tokens, replies = t["result"]
        same = sum(a == [b] for a, b in zip(replies, base_replies)) / len(base_replies)
        results[f"batch_{bs}"] = {"tokens": tokens, "median_s": t["median_s"], "runs_s": t["runs_s"],
                                  "tokens_per_s": tokens / t["median_s"], "same_text_as_baseline": same,
                                  "prefill_tokens": counter.prefill, "dtype": args.dtype}
        print(f"generator batch {bs}: {tokens} tokens, {tokens / t['median_s']:.1f} tokens/s, "
              f"{same:.0%} identical to one-at-a-time")
    gen.model.generate = counter.inner
    results["n_params"] = gen.model.num_parameters()
    if args.compare_dtype not in (None, "none", args.dtype):
        bs = 32 if 32 in args.batch_sizes else max(args.batch_sizes)
        other = TransformersGenerator(str(model_dir), device=args.device, dtype=args.compare_dtype)
        other_counter = TokenCounter(other.model, eos)
        settings = GenerationSettings(max_new_tokens=args.max_new_tokens, temperature=0.0, top_p=1.0,
                                      batch_size=bs, seed=0)
        other.generate(chats[:2], settings, n=1, progress=False)  # warm-up

        def once_other():
            other_counter.tokens = other_counter.prefill = 0
            return other_counter.tokens, other.generate(chats, settings, n=1, progress=False)

        t = timed(once_other, args.repeats, args.budget_s)
        tokens = other_counter.tokens
        results[f"{args.compare_dtype}_batch_{bs}"] = {
            "tokens": tokens, "median_s": t["median_s"], "runs_s": t["runs_s"], "tokens_per_s": tokens / t["median_s"],
            "prefill_tokens": other_counter.prefill, "dtype": args.compare_dtype}
        print(f"generator {args.compare_dtype} batch {bs}: {tokens / t['median_s']:.1f} tokens/s")
        del other
    if args.continuous:
        run_continuous(args, gen, chats, eos, base_replies, results)


def run_continuous(args, gen, chats, eos: set[int], base_replies: list[str], results: dict) -> None:
    """A candidate, not what the stages use: transformers' continuous batching (`generate_batch`),
    which drops finished rows and admits new prompts as it goes."""
    from transformers import GenerationConfig

    from cosalign.models.chat import render_ids

    ids = [render_ids(gen.tokenizer, c) for c in chats]
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=False, eos_token_id=sorted(eos),
                              pad_token_id=gen.pad_id)

    def once():
        # warmup pre-captures CUDA graphs; on CPU it is only a fixed cost
        out = gen.model.generate_batch(inputs=ids, generation_config=config, progress_bar=False,
                                       warmup=str(gen.device).startswith("cuda"))
        ordered = [out[k] for k in sorted(out, key=lambda k: int(k.rsplit("_", 1)[-1]))]
        toks = [list(o.generated_tokens)[:count_to_eos(o.generated_tokens, eos)] for o in ordered]
        return sum(map(len, toks)), [gen.tokenizer.decode(t, skip_special_tokens=True).strip() for t in toks]

    try:
        t = timed(once, args.repeats, args.budget_s)
    except Exception as exc:  # noqa: BLE001 - a candidate that fails is a finding, not a crash
        results["continuous"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(f"continuous batching failed: {results['continuous']['error']}")
        return
    tokens, replies = t["result"]
    same = sum(a == b for a, b in zip(replies, base_replies)) / len(base_replies)
    results["continuous"] = {"tokens": tokens, "median_s": t["median_s"], "runs_s": t["runs_s"],
                             "tokens_per_s": tokens / t["median_s"], "same_text_as_baseline": same}
    print(f"continuous batching: {tokens} tokens, {tokens / t['median_s']:.1f} tokens/s, {same:.0%} identical")


def run_vllm(args, model_dir: Path, chats, results: dict) -> None:
    import gc

    import torch
    from transformers import GenerationConfig
    from vllm import SamplingParams, TokensPrompt

    from cosalign.models.chat import render_ids
    from cosalign.models.generation import VLLMGenerator

    gc.collect()
    torch.cuda.empty_cache()  # the transformers run's cached blocks; vLLM sizes its KV cache from free memory
    gen = VLLMGenerator(str(model_dir), dtype=args.vllm_dtype, seed=0, gpu_memory_utilization=0.5)
    eos = {gen.tokenizer.eos_token_id}
    configured = GenerationConfig.from_pretrained(model_dir).eos_token_id
    eos |= set(configured if isinstance(configured, (list, tuple)) else [configured] if configured is not None else [])
    params = SamplingParams(temperature=0.0, max_tokens=args.max_new_tokens)
    prompts = [TokensPrompt(prompt_token_ids=render_ids(gen.tokenizer, c)) for c in chats]
    gen.llm.generate(prompts[:2], params, use_tqdm=False)  # warm-up

    def once():
        outs = gen.llm.generate(prompts, params, use_tqdm=False)
        return sum(count_to_eos(o.outputs[0].token_ids, eos) for o in outs)

    t = timed(once, args.repeats, args.budget_s)
    results["vllm"] = {"tokens": t["result"], "median_s": t["median_s"], "runs_s": t["runs_s"],
                       "tokens_per_s": t["result"] / t["median_s"]}
    print(f"vLLM: {t['result']} tokens, {t['result'] / t['median_s']:.1f} tokens/s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny random model, 8 prompts: a smoke run")
    ap.add_argument("--n-prompts", type=int, default=None, help="default 64 (quick: 8)")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default 96, the default profile's (quick: 16)")
    ap.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="comma-separated; default 1,8,16,32,64 (quick: 1,4,8)")
    ap.add_argument("--baseline-prompts", type=int, default=None,
                    help="time one-at-a-time on only the first N prompts (default: all; a GPU run uses fewer)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per configuration; the median counts")
    ap.add_argument("--budget-s", type=float, default=60.0,
                    help="stop repeating a configuration once it has used this many seconds")
    ap.add_argument("--backend", choices=["transformers", "vllm"], default="transformers",
                    help="vllm: also time vLLM (GPU), next to transformers on the same device")
    ap.add_argument("--continuous", action="store_true",
                    help="also time transformers' continuous batching (generate_batch), a candidate backend")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", help="transformers weights dtype")
    ap.add_argument("--vllm-dtype", default="bfloat16")
    ap.add_argument("--compare-dtype", default="bfloat16",
                    help="the generator again in this dtype at batch 32 (default bfloat16; 'none' skips)")
    ap.add_argument("--peak-name", default=None, help="bench_peak results file for MFU (default peak / peak_gpu)")
    ap.add_argument("--model", type=Path, default=None, help="a checkpoint directory (default: SmolLM2)")
    ap.add_argument("--name", default=None, help="results file name (default generation[_vllm])")
    args = ap.parse_args(argv)
    args.n_prompts = args.n_prompts or (8 if args.quick else 64)
    args.max_new_tokens = args.max_new_tokens or (16 if args.quick else 96)
    args.batch_sizes = args.batch_sizes or ([1, 4, 8] if args.quick else [1, 8, 16, 32, 64])

    with scratch_dir("generation") as tmp:
        model_dir, label = (args.model, str(args.model)) if args.model else model_for(args.quick, Path(tmp))
        chats = make_chats(args.n_prompts)
        results: dict = {}
        run_transformers(args, model_dir, chats, results)
        if args.backend == "vllm":
            run_vllm(args, model_dir, chats, results)

    base = results["one_at_a_time"]["tokens_per_s"]
    batched = {k: v for k, v in results.items() if k.startswith("batch_")}
    compared = {k: v for k, v in results.items() if "_batch_" in k}
    best_key = max(batched, key=lambda k: batched[k]["tokens_per_s"])
    best = batched[best_key]["tokens_per_s"]
    figures = [figure("model", label), figure("prompts", len(chats)),
               figure("max_new_tokens", args.max_new_tokens),
               figure("one-at-a-time (model.generate, KV cache)", round(base, 1), "tokens/s")]
    figures += [figure(f"TransformersGenerator, batch {k[6:]}", round(v["tokens_per_s"], 1), "tokens/s")
                for k, v in batched.items()]
    figures.append(figure(f"best batch ({best_key[6:]}) / one-at-a-time", round(best / base, 2), "x"))
    if "batch_32" in batched:  # the default profile's batch size
        figures.append(figure("batch 32 / one-at-a-time", round(batched["batch_32"]["tokens_per_s"] / base, 2), "x"))
    from bench_peak import peak
    peaks, n = peak(args.device, name=args.peak_name, quick=args.quick), results["n_params"]
    figures.append(figure("parameters N (2 N FLOPs per prefilled or generated token)", n))
    for key, v in {**batched, **compared}.items():
        flops = 2 * n * (v["tokens"] + v["prefill_tokens"]) / v["median_s"]
        v.update(flops=flops, mfu=flops / peaks["bfloat16"], mfu_own_dtype=flops / peaks[v["dtype"]])
        figures.append(figure(f"{v['dtype']} {key.replace('_', ' ')}: GFLOP/s, MFU of bf16 peak (of {v['dtype']} peak)",
                              f"{flops / 1e9:.1f}, {v['mfu']:.1%} ({v['mfu_own_dtype']:.1%})"))
    for key, v in compared.items():
        bs = key.rsplit("_", 1)[1]
        figures.append(figure(f"{v['dtype']} / {args.dtype} at batch {bs}",
                              round(v["tokens_per_s"] / batched[f"batch_{bs}"]["tokens_per_s"], 2), "x"))
        targets_extra = target(f"generation tokens/s, {v['dtype']} vs {args.dtype} (batch {bs})",
                               round(v["tokens_per_s"] / batched[f"batch_{bs}"]["tokens_per_s"], 2), 2.0, ">=", "x")
        results.setdefault("extra_targets", []).append(targets_extra)
    if "continuous" in results:
        c = results["continuous"]
        figures.append(figure("candidate: transformers continuous batching (generate_batch)",
                              round(c["tokens_per_s"], 1) if "tokens_per_s" in c else f"failed: {c['error']}",
                              "tokens/s" if "tokens_per_s" in c else ""))
    if "vllm" in results:
        figures.append(figure("vLLM", round(results["vllm"]["tokens_per_s"], 1), "tokens/s"))
        figures.append(figure("vLLM / best transformers batch", round(results["vllm"]["tokens_per_s"] / best, 2), "x"))
    targets = [target("generator tokens/s vs one-at-a-time (best batch size)", round(best / base, 2),
                      TARGET_SPEEDUP, ">=", "x")] + results.pop("extra_targets", [])
    write_result(args.name or ("generation_vllm" if args.backend == "vllm" else "generation"),
                 "Generation throughput", figures, targets, quick=args.quick, details=results,
                 notes=["Greedy decoding on both sides; tokens counted up to and including the first EOS.",
                        "The stage samples (temperature 0.7); sampling costs about the same per token."])
    return 0


if __name__ == "__main__":
    sys.exit(main())
