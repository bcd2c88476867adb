"""SFT then DPO with TRL, each writing a standard checkpoint, its resolved arguments and its curves.

`train_sft` fits the chosen answers (one per unique system prompt + prompt, see
`cosalign.data.preferences.pairs_for_sft`) with the loss on the assistant turn only; `train_dpo` trains on all
pairs starting from the SFT checkpoint, which TRL also reloads as the frozen reference. The data
(data/preferences.parquet is already TRL's conversational format) go through
`cosalign.models.chat.training_view`, whose per-row `chat_template_kwargs` make TRL render every
chat with control tokens inside messages sanitised. Distributed runs come from `accelerate launch`
(see configs/accelerate/README.md); this module has no distributed code of its own beyond letting
only the main process write files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path

from cosalign.cosa import schemas
from cosalign.models.chat import training_view
from cosalign.core.io import InputError, file_digest, read_parquet, write_json
from cosalign.training.curves import rows_from_history, write_curves
from cosalign.training.params import TrainingParams
from cosalign.training import resume

CHECKPOINT_FILES = ("config.json", "model.safetensors")
# Left out of the saved trainer_state.json: wall-clock figures, and TRL's token counter, which is
# not part of a checkpoint and restarts on resume (equal runs, resumed or not, give equal files).
UNSAVED_LOG_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "num_tokens")


# --- data ---------------------------------------------------------------------------------------

def load_preferences(path: str | Path, taxonomy=None):
    """Read and validate data/preferences.parquet (schemas.Preferences; category names against
    `taxonomy`, data/taxonomy.json in the pipeline, default the paper's)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "preference file does not exist")
    return schemas.validate(read_parquet(path), "preferences", path, taxonomy=taxonomy)


def sft_dataset(pref_df, max_examples: int | None = None):
    """TRL conversational prompt/completion view of the SFT rows: per conversational prompt (config +
    user turn) the best chosen answer (cosalign.data.preferences.sft_view)."""
    from cosalign.data.preferences import sft_view
    rows = sft_view(pref_df)
    if max_examples is not None:
        rows = rows.head(max_examples)
    return training_view(rows, kind="prompt_completion")


def dpo_dataset(pref_df, max_examples: int | None = None):
    """TRL prompt/chosen/rejected view of every pair, in file order."""
    rows = pref_df.reset_index(drop=True)
    if max_examples is not None:
        rows = rows.head(max_examples)
    return training_view(rows, kind="preference")


# --- arguments ----------------------------------------------------------------------------------

def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def trainer_kwargs(params: TrainingParams, output_dir: str | Path) -> dict:
    """The TrainingArguments/TRL config keywords shared by SFT and DPO, resolved for this machine."""
    import torch

    o, sysp = params.optim, params.system
    use_cpu = sysp.use_cpu if sysp.use_cpu is not None else not torch.cuda.is_available()
    accumulation = o.gradient_accumulation_steps
    if o.global_batch_size is not None:
        per_step = o.per_device_train_batch_size * _world_size()
        if o.global_batch_size % per_step:
            raise InputError("params.yaml", f"{o.global_batch_size} is not divisible by per-device batch "
                                            f"{o.per_device_train_batch_size} x {_world_size()} processes",
                             field=f"{params.stage}.optim.global_batch_size")
        accumulation = o.global_batch_size // per_step
    return dict(
        output_dir=str(output_dir),
        seed=params.seed, data_seed=params.seed,
        learning_rate=o.learning_rate, lr_scheduler_type=o.lr_scheduler_type, warmup_steps=o.warmup_steps,
        optim=o.optimizer, weight_decay=o.weight_decay, max_grad_norm=o.max_grad_norm,
        num_train_epochs=o.num_train_epochs, max_steps=o.max_steps,
        per_device_train_batch_size=o.per_device_train_batch_size, gradient_accumulation_steps=accumulation,
        max_length=params.data.max_length,
        use_cpu=use_cpu, bf16=training_bf16(params, use_cpu), fp16=False,
        # transformers 5 renamed gradient_checkpointing; setting the new name keeps TRL's default (on) out.
        activation_checkpointing=sysp.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if sysp.gradient_checkpointing else None,
        dataloader_num_workers=sysp.dataloader_num_workers,
        model_init_kwargs={"dtype": params.precision.dtype},
        logging_steps=1, logging_first_step=True, save_strategy="no", eval_strategy="no", report_to="none",
    )


def resumable_kwargs(params: TrainingParams, work_dir: Path) -> dict:
    """trainer_kwargs with output_dir = the run's checkpoint folder (cosalign.training.resume)."""
    return {**trainer_kwargs(params, work_dir), **resume.checkpoint_kwargs(params)}
def training_bf16(params: TrainingParams, use_cpu: bool) -> bool:
    """bf16 autocast over float32 master weights: the paper's `precision.bf16` on GPU, else the
    top-level `precision` resolved for this device (cosalign.core.precision; fp32 = as before)."""
    from cosalign.core.precision import resolve
    if params.precision.bf16 and not use_cpu:
        return True
    return resolve(params.compute, "cpu" if use_cpu else "cuda") == "bf16"


def peft_config(params: TrainingParams):
    """A peft LoraConfig when params.lora.enabled, else None."""
    if not params.lora.enabled:
        return None
    from peft import LoraConfig
    lo = params.lora
    return LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=lo.target_modules,
                      task_type="CAUSAL_LM")


# --- training -----------------------------------------------------------------------------------

def train_sft(pref_path, base_dir, out_dir, reports_dir, params: TrainingParams | dict, callbacks=(), *,
              taxonomy=None) -> dict:
    """SFT on the chosen answers from `base_dir`; writes `out_dir` and `<reports_dir>/sft.{csv,png}`.

    A run killed mid-way resumes from its last checkpoint (cosalign.training.resume); `callbacks`
    are extra transformers TrainerCallbacks. Returns: a summary (examples, steps, train_loss,
    seconds, output paths).
    """
    from trl import SFTConfig, SFTTrainer

    params = _as_params(params, "sft")
    df = load_preferences(pref_path, taxonomy)
    dataset = sft_dataset(df, params.data.max_examples)
    work_dir = resume.checkpoint_dir(params, pref_path, base_dir, out_dir)
    kwargs = resumable_kwargs(params, work_dir)
    if params.system.padding_free:  # truncated here, so TRL may drop max_length (training.truncation)
        from transformers import AutoTokenizer
        from cosalign.training.truncation import tokenize_sft
        dataset, _ = tokenize_sft(dataset, AutoTokenizer.from_pretrained(base_dir), params.data.max_length)
        kwargs.update(max_length=None, padding_free=True)
    config = SFTConfig(**kwargs, completion_only_loss=True, assistant_only_loss=False, packing=False)
    return _run(SFTTrainer, config, params, dataset, pref_path, base_dir, out_dir, reports_dir, callbacks)


def train_dpo(pref_path, sft_dir, out_dir, reports_dir, params: TrainingParams | dict, callbacks=(), *,
              taxonomy=None) -> dict:
    """DPO on every pair from `sft_dir` (also the frozen reference); writes `out_dir` and dpo curves."""
    from trl import DPOConfig, DPOTrainer

    params = _as_params(params, "dpo")
    df = load_preferences(pref_path, taxonomy)
    dataset = dpo_dataset(df, params.data.max_examples)
    work_dir = resume.checkpoint_dir(params, pref_path, sft_dir, out_dir)
    config = DPOConfig(**resumable_kwargs(params, work_dir), beta=params.loss.beta, loss_type=[params.loss.type])
    return _run(DPOTrainer, config, params, dataset, pref_path, sft_dir, out_dir, reports_dir, callbacks)


def _run(trainer_cls, config, params, dataset, pref_path, parent_dir, out_dir, reports_dir,
         callbacks=()) -> dict:
    import transformers
    from accelerate import PartialState
    from transformers import AutoTokenizer

    parent_dir, out_dir = Path(parent_dir), Path(out_dir)
    for name in CHECKPOINT_FILES:
        if not (parent_dir / name).exists():
            raise InputError(parent_dir, f"is not a checkpoint ({name} missing)")
    tokenizer = AutoTokenizer.from_pretrained(parent_dir)
    if not tokenizer.chat_template:
        raise InputError(parent_dir, "the tokenizer has no chat template")
    state = PartialState()
    tmp, work_dir = _staging_dir(out_dir), Path(config.output_dir)
    if state.is_main_process and tmp.exists():
        shutil.rmtree(tmp)  # left by a killed run
    state.wait_for_everyone()
    last = resume.last_checkpoint(work_dir)
    if last and state.is_main_process:
        print(f"{params.stage}: resuming from {last}", flush=True)

    transformers.set_seed(params.seed)
    # The model goes in as a path so TRL loads it itself: under ZeRO-3 / FSDP that is what lets
    # accelerate shard it while loading; for DPO the same path is where the reference comes from.
    trainer = trainer_cls(model=str(parent_dir), args=config, train_dataset=dataset, processing_class=tokenizer,
                          peft_config=peft_config(params),
                          callbacks=resume.tracker_callbacks(params, bool(last)) + list(callbacks))
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - started
    # TRL's DPO leaves config.use_cache off after training; a saved checkpoint should generate with the cache.
    trainer.accelerator.unwrap_model(trainer.model).config.use_cache = True
    trainer.save_model(str(tmp))  # every process: gathers sharded weights
    state.wait_for_everyone()
    summary = {"stage": params.stage, "examples": len(dataset), "steps": int(trainer.state.global_step),
               "train_loss": mean_step_loss(trainer.state.log_history, result.training_loss),
               "bf16": bool(config.bf16)}
    if state.is_main_process:
        if params.lora.enabled:
            _merge_adapter(tmp, parent_dir, params)
        (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; training_args.json replaces it
        write_json(_resolved_args(config, out_dir), tmp / "training_args.json")
        write_json(_provenance(params, pref_path, parent_dir, summary), tmp / "cosalign_training.json")
        _save_state(trainer.state, tmp / resume.STATE_FILE)
        _swap_in(tmp, out_dir)
        paths = write_curves(rows_from_history(trainer.state.log_history, params.stage), params.stage, reports_dir)
        resume.clean(work_dir)
        summary.update({k: str(v) for k, v in paths.items()})
    state.wait_for_everyone()
    summary.update({"out_dir": str(out_dir), "seconds": round(seconds, 1),
                    "seconds_per_step": round(seconds / max(1, summary["steps"]), 3)})
    return summary


# --- saving -------------------------------------------------------------------------------------

def _staging_dir(out_dir) -> Path:
    """A fixed sibling name, the same on every process, so sharded saves meet in one place."""
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.staging"


def mean_step_loss(log_history: list[dict], fallback: float) -> float:
    """The mean training loss over every logged step (logging_steps=1), from the log history.

    transformers' own `training_loss` averages only the steps the last process ran, so after a
    resume it would leave out the steps before the checkpoint.
    """
    losses = [row["loss"] for row in log_history if "loss" in row]
    return math.fsum(losses) / len(losses) if losses else float(fallback)


def _save_state(state, path: Path) -> None:
    """trainer_state.json (the full log history) with the model; the summary entry's train_loss is
    the mean over every step (see mean_step_loss)."""
    data = dataclasses.asdict(state)
    history = [{k: v for k, v in row.items() if k not in UNSAVED_LOG_KEYS} for row in data["log_history"]]
    for row in history:
        if "train_loss" in row:
            row["train_loss"] = mean_step_loss(history, row["train_loss"])
    data["log_history"] = history
    write_json(data, path)


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace out_dir by tmp with renames only, so a crash never leaves a half-written checkpoint."""
    old = out_dir.parent / f".{out_dir.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old.exists():
        shutil.rmtree(old)


def _merge_adapter(tmp: Path, parent_dir: Path, params: TrainingParams) -> None:
    """Turn a saved LoRA adapter in tmp into a merged, standard checkpoint in the same place."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(parent_dir, dtype=getattr(torch, params.precision.dtype))
    merged = PeftModel.from_pretrained(base, tmp).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(tmp)
    for path in list(tmp.iterdir()):
        if path.name.startswith("adapter_"):
            path.unlink()
    merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)


def _resolved_args(config, out_dir: Path) -> dict:
    """The trainer's full configuration as JSON; tokens are redacted by transformers' to_dict."""
    args = json.loads(config.to_json_string())
    for key in ("output_dir", "logging_dir"):
        if args.get(key):
            args[key] = str(out_dir) if key == "output_dir" else None
    for key in list(args):
        if any(s in key.lower() for s in ("hub_token", "api_key", "secret", "password")):
            args[key] = "<redacted>"
    return dict(sorted(args.items()))


def _provenance(params: TrainingParams, pref_path, parent_dir: Path, summary: dict) -> dict:
    import accelerate
    import datasets
    import peft
    import torch
    import transformers
    import trl

    return {
        "stage": params.stage, "seed": params.seed, "parent": str(parent_dir),
        "data_file": str(pref_path), "data_md5": file_digest(pref_path, "md5"), "examples": summary["examples"],
        "steps": summary["steps"], "train_loss": summary["train_loss"], "world_size": _world_size(),
        "params": params.to_dict(),
        "precision": {"setting": params.compute, "bf16_autocast": bool(summary.get("bf16")),
                      "master_weights": params.precision.dtype,
                      "cpu_capability": torch.backends.cpu.get_cpu_capability()},
        "versions": {m.__name__: m.__version__ for m in (torch, transformers, trl, datasets, accelerate, peft)},
    }


def _as_params(params, stage: str) -> TrainingParams:
    if isinstance(params, TrainingParams):
        if params.stage != stage:
            raise ValueError(f"params are for stage {params.stage!r}, not {stage!r}")
        return params
    return TrainingParams.from_dict(params, stage)
