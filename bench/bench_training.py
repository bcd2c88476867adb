"""SFT and DPO training tokens/s: TRL's defaults vs the project's CPU settings, same data and model.

Each variant runs in its own subprocess, because glibc reads its malloc settings (common.MALLOC_ENV)
only when a process starts. A variant trains `--steps` optimizer steps on exactly that many
batches (one epoch, same seed, so every variant sees the same batches in the same order); the
first `--warmup` steps are not timed. Tokens are the batches' non-padding input tokens
(transformers' include_num_input_tokens_seen="non_padding"; for DPO, chosen and rejected).

Variants (fp32 unless --bf16; `use_cpu`/bf16=False are what it takes to run TRL's defaults on CPU;
one max_length, 1024, everywhere; logging every step, to read the losses):
- trl_defaults:     SFTConfig/DPOConfig defaults (gradient checkpointing ON), default malloc;
- project:          cosalign.training.trainers.trainer_kwargs (gradient checkpointing off);
- project_malloc:   the same, with common.MALLOC_ENV (glibc keeps freed memory) - the CPU setup
                    the target is checked on;
- SFT +padding_free: project_malloc with padding_free=True (the batch becomes one sequence; its
                    first loss is compared with project_malloc's to check attention stays per example);
- DPO +precompute:  project_malloc with precompute_ref_log_probs=True; the precompute (done in the
                    trainer's constructor) is charged to the timed steps pro rata;
- *_bf16:           the same under bf16 autocast over float32 master weights (`precision: bf16`,
                    cosalign.core.precision): project_malloc_bf16, and for SFT
                    project_malloc_bf16_padding_free, the default profile's settings on a bf16 CPU.

MFU = achieved FLOP/s / the matmul peak of the variant's compute dtype (bench/bench_peak.py), with
6 N FLOPs per trained token (N = the policy's parameter count; DPO's frozen reference forward,
another 2 N per token, is not counted, so DPO's MFU understates the work done). The physical limit
in tokens/s is the bf16 peak / 6 N.

    python bench/bench_training.py            # SmolLM2, 6 steps of batch 4 per variant (~14 min, 2 cores)
    python bench/bench_training.py --quick    # tiny random model, seconds per variant

With --device cuda the malloc variants give way to trl_defaults, project, project + padding_free /
precompute (bench/gpu.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import MALLOC_ENV, bench_env, figure, model_for, scratch_dir, target, write_result  # noqa: E402

TARGET_SPEEDUP = 1.3
VARIANTS = {
    "sft": ["trl_defaults", "project", "project_malloc", "project_malloc_padding_free", "project_malloc_bf16",
            "project_malloc_bf16_padding_free"],
    "dpo": ["trl_defaults", "project", "project_malloc", "project_malloc_precompute", "project_malloc_bf16"],
}
TODAY = "project_malloc"  # the settings before `precision` and padding-free SFT: float32, padded
NEW = {"sft": "project_malloc_bf16_padding_free", "dpo": "project_malloc_bf16"}
TARGET_BF16_SPEEDUP, TARGET_MFU = 2.0, 0.5
GPU_VARIANTS = {
    "sft": ["trl_defaults", "project", "project_padding_free"],
    "dpo": ["trl_defaults", "project", "project_precompute"],
}
GPU_NEW = {"sft": "project_padding_free", "dpo": "project"}
LEARNING_RATE = {"sft": 1e-5, "dpo": 5e-7}


# --- worker: one variant in this process ------------------------------------------------------------

def worker(args) -> dict:
    import resource

    from transformers import AutoTokenizer, TrainerCallback

    from cosalign.training import TrainingParams, dpo_dataset, load_preferences, sft_dataset
    from cosalign.training.trainers import trainer_kwargs

    stage, variant = args.stage, args.variant
    examples = args.steps * args.batch
    df = load_preferences(args.data)
    dataset = (sft_dataset if stage == "sft" else dpo_dataset)(df, examples)
    if len(dataset) < examples:
        raise SystemExit(f"{args.data}: {len(dataset)} {stage} examples, {examples} needed")
    out_dir = Path(args.scratch) / f"{stage}-{variant}"
    use_cpu = args.device == "cpu"
    # One max_length for all (TRL's default; the project's 640 would truncate the tiny model's long
    # tokenisations differently), so every variant trains on exactly the same tokens.
    common = dict(max_steps=args.steps, per_device_train_batch_size=args.batch, learning_rate=LEARNING_RATE[stage],
                  max_length=1024, include_num_input_tokens_seen="non_padding", disable_tqdm=True,
                  bf16=args.bf16 or "_bf16" in variant)
    if variant == "trl_defaults":
        kwargs = dict(output_dir=str(out_dir), use_cpu=use_cpu, report_to="none",
                      save_strategy="no", logging_steps=1, seed=0, data_seed=0, **common)
    else:
        params = TrainingParams.from_dict({"optim": {"learning_rate": LEARNING_RATE[stage], "max_steps": args.steps,
                                                     "per_device_train_batch_size": args.batch},
                                           "system": {"use_cpu": use_cpu}}, stage)
        kwargs = {**trainer_kwargs(params, out_dir), **common}
        if variant.endswith("padding_free"):
            # TRL refuses padding_free without packing unless max_length is None (it would not
            # truncate); no benchmark example reaches 1024 tokens, so nothing changes.
            kwargs.update(padding_free=True, max_length=None)
        if variant.endswith("precompute"):
            kwargs.update(precompute_ref_log_probs=True)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.rows, self.t0, self.seen = [], 0.0, 0

        def on_step_begin(self, a, state, control, **kw):
            self.t0, self.seen = time.perf_counter(), state.num_input_tokens_seen

        def on_step_end(self, a, state, control, **kw):
            self.rows.append({"seconds": time.perf_counter() - self.t0,
                              "tokens": int(state.num_input_tokens_seen - self.seen)})

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "loss" in logs and self.rows:
                self.rows[-1]["loss"] = float(logs["loss"])

    timer = StepTimer()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if stage == "sft":
        from trl import SFTConfig as Config, SFTTrainer as Trainer
    else:
        from trl import DPOConfig as Config, DPOTrainer as Trainer
    config = Config(**kwargs)
    started = time.perf_counter()
    trainer = Trainer(model=str(args.model), args=config, train_dataset=dataset, processing_class=tokenizer,
                      callbacks=[timer])
    init_s = time.perf_counter() - started
    trainer.train()
    return {"stage": stage, "variant": variant, "init_s": init_s, "steps": timer.rows,
            "bf16": bool(config.bf16), "n_params": int(trainer.accelerator.unwrap_model(trainer.model).num_parameters()),
            "gradient_checkpointing": bool(getattr(config, "gradient_checkpointing", False)
                                           or getattr(config, "activation_checkpointing", False)),
            "malloc_env": {k: os.environ.get(k) for k in MALLOC_ENV},
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


# --- parent: data, model, subprocesses, summary -------------------------------------------------------

def run_variant(args, stage: str, variant: str, model_dir: Path, data: Path, scratch: Path) -> dict:
    env = bench_env()
    for k in MALLOC_ENV:
        env.pop(k, None)
    if "malloc" in variant:
        env.update(MALLOC_ENV)
    out = scratch / f"{stage}-{variant}.json"
    cmd = [sys.executable, __file__, "--worker", "--stage", stage, "--variant", variant, "--model", str(model_dir),
           "--data", str(data), "--steps", str(args.steps), "--batch", str(args.batch), "--device", args.device,
           "--scratch", str(scratch), "--result", str(out)] + (["--bf16"] if args.bf16 else [])
    print(f"{stage} {variant} ...", flush=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", file=sys.stderr)
        return {"stage": stage, "variant": variant, "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(out.read_text())


def summarize(res: dict, warmup: int, precompute_s: float = 0.0) -> dict:
    """tokens/s over the steps after `warmup` (plus their share of a precompute)."""
    steps = res["steps"]
    timed = steps[warmup:] or steps
    tokens = sum(s["tokens"] for s in timed)
    seconds = sum(s["seconds"] for s in timed) + precompute_s * len(timed) / max(1, len(steps))
    return {"tokens_per_s": tokens / seconds if seconds else None, "tokens": tokens, "seconds": seconds,
            "s_per_step": seconds / len(timed), "first_loss": steps[0].get("loss") if steps else None}


def efficiency(summary: dict, results: dict, peaks: dict, device: str) -> list[dict]:
    """MFU per variant (6 N FLOPs per trained token over the matmul peak of its compute dtype), and
    the physical limit in tokens/s (the bf16 peak / 6 N). Adds `mfu` to each summary row."""
    figures = []
    n_params = next((r["n_params"] for r in results.values() if "n_params" in r), None)
    if not n_params:
        return figures
    figures.append(figure("parameters N (6 N FLOPs per trained token)", n_params))
    for dtype in ("float32", "bfloat16"):
        figures.append(figure(f"physical limit at the {dtype} matmul peak ({peaks[dtype] / 1e9:.1f} GFLOP/s, {device})",
                              round(peaks[dtype] / (6 * n_params), 1), "tokens/s"))
    for key, s in summary.items():
        dtype = "bfloat16" if results[key].get("bf16") else "float32"
        flops = s["tokens_per_s"] * 6 * n_params
        s.update(flops=flops, mfu=flops / peaks["bfloat16"], mfu_own_dtype=flops / peaks[dtype])
        figures.append(figure(f"{key.replace('/', ' ').upper().split()[0]} {key.split('/')[1]}: GFLOP/s, MFU of bf16 peak "
                              f"(of {dtype} peak)", f"{flops / 1e9:.1f}, {s['mfu']:.1%} ({s['mfu_own_dtype']:.1%})"))
    return figures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per variant (default 6; quick 3)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 2; quick 1)")
    ap.add_argument("--batch", type=int, default=4, help="per-device batch size (the default profile's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--stages", default="sft,dpo")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast in every variant (GPU; default fp32)")
    ap.add_argument("--model", type=Path, default=None, help="a checkpoint directory (default: SmolLM2)")
    ap.add_argument("--name", default="training")
    ap.add_argument("--variants", default=None, help="comma-separated subset of the variants (default: all)")
    ap.add_argument("--peak-name", default=None, help="bench_peak results file for MFU (default peak / peak_gpu)")
    # worker mode (internal)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--scratch", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        Path(args.result).write_text(json.dumps(worker(args)))
        return 0
    args.steps = args.steps or (3 if args.quick else 6)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    if args.device != "cpu":  # the glibc settings are a CPU matter: on GPU the options go on `project`
        VARIANTS.update(GPU_VARIANTS)
        NEW.update(GPU_NEW)
    from bench_peak import peak
    peaks = peak(args.device, name=args.peak_name, quick=args.quick)
    if args.variants:
        keep = args.variants.split(",")
        for stage in VARIANTS:
            VARIANTS[stage] = [v for v in VARIANTS[stage] if v in keep or v == "trl_defaults"]

    from cosalign.core.io import write_parquet
    from synthetic import preferences_frame

    results: dict = {}
    with scratch_dir("training") as tmp:
        tmp = Path(tmp)
        model_dir, label = (args.model, str(args.model)) if args.model else model_for(args.quick, tmp)
        data = tmp / "preferences.parquet"
        prefs = preferences_frame(n_prompts=max(12, args.steps * args.batch))
        write_parquet(prefs, data)
        for stage in args.stages.split(","):
            for variant in VARIANTS[stage]:
                results[f"{stage}/{variant}"] = run_variant(args, stage, variant, model_dir, data, tmp)

    figures, targets, summary = [figure("model", label), figure("batch size", args.batch),
                                 figure("timed steps per variant", f"{args.steps - args.warmup} of {args.steps}")], [], {}
    for stage in args.stages.split(","):
        for variant in VARIANTS[stage]:
            res = results[f"{stage}/{variant}"]
            if "error" in res:
                figures.append(figure(f"{stage.upper()} {variant}", f"failed: {res['error'][0][:120]}"))
                continue
            pre = 0.0
            plain = results.get(f"{stage}/{variant.rsplit('_', 1)[0]}", {})  # the same without precompute
            if variant.endswith("precompute") and "steps" in plain:
                pre = max(0.0, res["init_s"] - plain["init_s"])
            s = summary[f"{stage}/{variant}"] = {**summarize(res, args.warmup, pre), "precompute_s": pre,
                                                 "peak_rss_gib": res["peak_rss_gib"]}
            figures.append(figure(f"{stage.upper()} {variant}", round(s["tokens_per_s"], 1), "tokens/s"))
            figures.append(figure(f"{stage.upper()} {variant}: s/step, peak RSS",
                                  f"{s['s_per_step']:.2f} s, {s['peak_rss_gib']} GiB"))
        ref = summary.get(f"{stage}/trl_defaults")
        for variant in VARIANTS[stage][1:]:
            s = summary.get(f"{stage}/{variant}")
            if ref and s:
                figures.append(figure(f"{stage.upper()} {variant} / trl_defaults",
                                      round(s["tokens_per_s"] / ref["tokens_per_s"], 2), "x"))
        ours = summary.get(f"{stage}/project_malloc" if args.device == "cpu" else f"{stage}/project")
        targets.append(target(f"{stage.upper()} tokens/s, project CPU settings vs TRL defaults",
                              round(ours["tokens_per_s"] / ref["tokens_per_s"], 2) if ours and ref else None,
                              TARGET_SPEEDUP, ">=", "x"))
    figures += efficiency(summary, results, peaks, args.device)
    for stage in args.stages.split(","):
        today, new = summary.get(f"{stage}/{TODAY if args.device == 'cpu' else 'project'}"), summary.get(f"{stage}/{NEW[stage]}")
        if args.device == "cpu":
            targets.append(target(f"{stage.upper()} tokens/s, {NEW[stage]} vs today's {TODAY} (float32)",
                                  round(new["tokens_per_s"] / today["tokens_per_s"], 2) if new and today else None,
                                  TARGET_BF16_SPEEDUP, ">=", "x"))
        if new and "mfu" in new:
            targets.append(target(f"{stage.upper()} MFU of {NEW[stage]} (of the bf16 peak)", round(new["mfu"], 3),
                                  TARGET_MFU, ">="))
    pf, pm = next(((summary[k], summary[k.rsplit("_padding_free", 1)[0]]) for k in summary
                   if k.endswith("_padding_free") and k.rsplit("_padding_free", 1)[0] in summary), (None, None))
    if pf and pm and pf["first_loss"] is not None and pm["first_loss"] is not None:
        same = abs(pf["first_loss"] - pm["first_loss"]) <= 1e-3 * max(1.0, abs(pm["first_loss"]))
        figures.append(figure("SFT padding_free: first-step loss equals padded loss (attention stays per example)",
                              f"{same} ({pf['first_loss']:.5f} vs {pm['first_loss']:.5f})"))
    for stage in args.stages.split(","):
        totals = {sum(s["tokens"] for s in r["steps"]) for k, r in results.items()
                  if k.startswith(stage + "/") and "steps" in r}
        figures.append(figure(f"{stage.upper()}: every variant trained on the same tokens", len(totals) == 1))
    write_result(args.name, "Training throughput (TRL SFT / DPO)", figures, targets, quick=args.quick,
                 details={"summary": summary, "raw": results},
                 notes=["Data: synthetic error-scored pairs from the seed prompts (bench/synthetic.py), "
                        "config system prompts from cosalign.data.configs.",
                        "The project variants use cosalign.training.trainers.trainer_kwargs, the arguments "
                        "train_sft/train_dpo pass to TRL."])
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
