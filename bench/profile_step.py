"""Where one SFT (or DPO) training step's time goes, by torch.profiler: for when MFU falls short.

Runs the project's trainer settings (cosalign.training.trainers.trainer_kwargs; SFT padding-free
as the stage runs it) for two steps and profiles the second one, together with the collation of
its batch, then splits the wall time into:
- matmul:     aten::mm / addmm / bmm / linear (self time): the part MFU counts;
- attention:  scaled_dot_product_attention, softmax and their backward (self time);
- optimizer:  Optimizer.step / zero_grad (total time, children included);
- collation:  the DataLoader's __next__ (total time: tokenised rows to a batch);
- other ops:  every other aten op's self time (norms, activations, casts, copies, ...);
- python:     the wall time left over: the interpreter, hooks, callbacks, logging.

    python bench/profile_step.py --quick                 # tiny random model, seconds
    python bench/profile_step.py --precision bf16        # SmolLM2, one step under bf16 autocast
Writes bench/results/profile_<stage>_<precision>.json and prints the split and the top ops.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import figure, model_for, scratch_dir, write_result  # noqa: E402

MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::_weight_int8pack_mm")
ATTENTION = ("scaled_dot_product", "attention", "softmax")


def split(events, wall_s: float) -> dict:
    """Seconds per category from profiler key_averages() rows."""
    out = dict.fromkeys(("matmul", "attention", "optimizer", "collation", "other ops"), 0.0)
    for e in events:
        name = e.key
        if name.startswith("Optimizer."):
            out["optimizer"] += e.cpu_time_total / 1e6
        elif "DataLoader" in name and "__next__" in name:
            out["collation"] += e.cpu_time_total / 1e6
        elif name.startswith("aten::"):
            self_s = e.self_cpu_time_total / 1e6
            if name in MATMUL:
                out["matmul"] += self_s
            elif any(k in name.lower() for k in ATTENTION):
                out["attention"] += self_s
            else:
                out["other ops"] += self_s
    # Ops inside the optimizer step are counted there, not again in the op categories.
    opt_ops = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::_foreach")) / 1e6
    out["other ops"] = max(0.0, out["other ops"] - opt_ops)
    out["python"] = max(0.0, wall_s - sum(out.values()))
    return out


def profile(model_dir: Path, data: Path, stage: str, precision: str, batch: int, scratch: Path) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile as torch_profile, schedule
    from transformers import AutoTokenizer, TrainerCallback

    from cosalign.training import TrainingParams, dpo_dataset, load_preferences, sft_dataset
    from cosalign.training.trainers import trainer_kwargs
    from cosalign.training.truncation import tokenize_sft

    params = TrainingParams.from_dict({"optim": {"learning_rate": 1e-5, "max_steps": 2,
                                                 "per_device_train_batch_size": batch},
                                       "system": {"use_cpu": True, "padding_free": stage == "sft"}},
                                      stage, compute=precision)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    df = load_preferences(data)
    kwargs = {**trainer_kwargs(params, scratch / stage), "disable_tqdm": True, "logging_steps": 1}
    if stage == "sft":
        from trl import SFTConfig as Config, SFTTrainer as Trainer
        dataset, _ = tokenize_sft(sft_dataset(df, 2 * batch), tokenizer, params.data.max_length)
        kwargs.update(max_length=None, padding_free=True)
        extra = {"completion_only_loss": True}
    else:
        from trl import DPOConfig as Config, DPOTrainer as Trainer
        dataset, extra = dpo_dataset(df, 2 * batch), {}
    prof = torch_profile(activities=[ProfilerActivity.CPU], schedule=schedule(wait=1, warmup=0, active=1))
    marks = {}

    class Stepper(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            marks.setdefault("ends", []).append(time.perf_counter())
            prof.step()

    trainer = Trainer(model=str(model_dir), args=Config(**kwargs, **extra), train_dataset=dataset,
                      processing_class=tokenizer, callbacks=[Stepper()])
    with prof:
        trainer.train()
    wall = marks["ends"][1] - marks["ends"][0]  # step 2, from the end of step 1: its collation included
    events = prof.key_averages()
    parts = split(events, wall)
    top = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)[:12]
    return {"wall_s": wall, "split_s": parts, "threads": torch.get_num_threads(),
            "top_ops": [{"op": e.key, "self_s": e.self_cpu_time_total / 1e6, "calls": e.count} for e in top]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny random model: a smoke run")
    ap.add_argument("--stage", choices=["sft", "dpo"], default="sft")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--name", default=None)
    args = ap.parse_args(argv)

    from cosalign.core.io import write_parquet
    from synthetic import preferences_frame

    with scratch_dir("profile") as tmp:
        tmp = Path(tmp)
        model_dir, label = (args.model, str(args.model)) if args.model else model_for(args.quick, tmp)
        data = tmp / "preferences.parquet"
        write_parquet(preferences_frame(n_prompts=max(12, 2 * args.batch)), data)
        res = profile(model_dir, data, args.stage, args.precision, args.batch, tmp)
    wall = res["wall_s"]
    figures = [figure("model", label), figure("stage, precision, batch", f"{args.stage}, {args.precision}, {args.batch}"),
               figure("profiled step (with its collation)", round(wall, 3), "s")]
    figures += [figure(f"share: {k}", f"{v / wall:.1%} ({v:.3f} s)") for k, v in res["split_s"].items()]
    for row in res["top_ops"][:6]:
        print(f"  {row['op']:<40} {row['self_s']:.3f} s  x{row['calls']}")
    write_result(args.name or f"profile_{args.stage}_{args.precision}", "One training step, profiled",
                 figures, [], quick=args.quick, details=res,
                 notes=["Self CPU times of multi-threaded ops are wall times of the op; python = the rest."])
    return 0


if __name__ == "__main__":
    sys.exit(main())
