"""The `sft:` and `dpo:` sections of params.yaml as checked, grouped, documented dataclasses.

A section looks like (every key optional except optim.learning_rate; defaults below):

    sft:
      seed: 0                      # transformers.set_seed, TrainingArguments.seed and data_seed
      accelerate_config: null      # e.g. configs/accelerate/fsdp.yaml: the stage runs under `accelerate launch`
      data:   {max_examples, max_length}
      optim:  {learning_rate, lr_scheduler_type, warmup_steps, optimizer, weight_decay, max_grad_norm,
               num_train_epochs, max_steps, per_device_train_batch_size, gradient_accumulation_steps,
               global_batch_size}
      precision: {dtype, bf16}
      lora:   {enabled, r, alpha, dropout, target_modules}
      system: {use_cpu, gradient_checkpointing, dataloader_num_workers, padding_free, save_steps, report_to}
      loss:   {beta, type}         # dpo section only

The top-level `precision: auto | bf16 | fp32` (cosalign.core.precision, docs/precision.md) reaches
the trainer as `compute`: under bf16 the step runs in bfloat16 autocast over float32 master weights.

Unknown keys, wrong types and out-of-range values fail at construction with an InputError that
names the key (`sft.optim.learning_rate`), before any model is loaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from cosalign.core.params import bad as params_error
from cosalign.core.params import from_section

DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class DataParams:
    """What the trainer sees of the preference file."""
    max_examples: int | None = None  # keep the first N examples (SFT rows / DPO pairs); None = all
    max_length: int = 640  # tokens per example (prompt + answer); longer ones are truncated at the end


@dataclass(frozen=True)
class OptimParams:
    """Optimisation (TrainingArguments names unless noted)."""
    learning_rate: float = 0.0  # required: the TRL defaults are tuned for other models and data
    lr_scheduler_type: str = "constant_with_warmup"  # paper: linear warm-up, then constant
    warmup_steps: int = 0  # paper DPO: 150
    optimizer: str = "adamw_torch"  # TrainingArguments.optim; paper: rmsprop
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0  # the authors' release clips at 10
    num_train_epochs: float = 1.0  # paper DPO: 3
    max_steps: int = -1  # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1  # ignored when global_batch_size is set
    # per_device * processes * accumulation; when set, accumulation is derived from the number of
    # processes at run time (paper: 32 on 4 or 8 GPUs) and must divide evenly.
    global_batch_size: int | None = None


@dataclass(frozen=True)
class PrecisionParams:
    """Weights are loaded in `dtype`; `bf16: true` forces bf16 autocast on GPU (the paper's setting).
    On CPU (and on GPU with `bf16: false`) the top-level `precision` decides (TrainingParams.compute)."""
    dtype: str = "float32"  # keep float32 master weights: lr 5e-7 updates vanish in bfloat16 weights
    bf16: bool = False  # paper: true (ignored on CPU, where the top-level `precision` decides)


@dataclass(frozen=True)
class LoraParams:
    """peft LoRA; the adapter is merged before saving so the output is a plain checkpoint."""
    enabled: bool = False  # paper: full fine-tuning; LoRA is its ablation
    r: int = 32
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str | list = "all-linear"


@dataclass(frozen=True)
class SystemParams:
    """Hardware and speed; none of these change the maths on CPU."""
    use_cpu: bool | None = None  # None: CPU when no CUDA device is visible
    gradient_checkpointing: bool = False  # TRL turns it on by default; it costs ~40% speed on CPU
    dataloader_num_workers: int = 0
    # SFT only: each batch as one flat sequence (no padding; ~1.6x on CPU), the rows truncated
    # to data.max_length in the data step (cosalign.training.truncation). DPO ignores it.
    padding_free: bool = False
    # A resumable checkpoint every save_steps optimizer steps, kept outside the DVC outs under
    # .cache/work/<stage>/<fingerprint>/ and removed after success; 0 = no checkpoints.
    save_steps: int = 50
    # TrainingArguments.report_to: "none", or trackers such as "dvclive", "wandb", "tensorboard".
    report_to: str | list = "none"


@dataclass(frozen=True)
class DpoLossParams:
    """The DPO objective (dpo section only)."""
    beta: float = 0.1  # paper: 0.1
    type: str = "sigmoid"  # DPOConfig.loss_type; sigmoid is the original DPO loss


@dataclass(frozen=True)
class TrainingParams:
    """One training stage's parameters. Build with `TrainingParams.from_dict(section, "sft")`."""
    stage: str = "sft"
    seed: int = 0
    accelerate_config: str | None = None
    data: DataParams = field(default_factory=DataParams)
    optim: OptimParams = field(default_factory=OptimParams)
    precision: PrecisionParams = field(default_factory=PrecisionParams)
    lora: LoraParams = field(default_factory=LoraParams)
    system: SystemParams = field(default_factory=SystemParams)
    loss: DpoLossParams | None = None
    compute: str = "fp32"  # the top-level `precision` (auto | bf16 | fp32), not part of the section

    def __post_init__(self):
        s, o = self.stage, self.optim

        def bad(key, msg):
            raise params_error(f"{s}.{key}", msg)

        if s not in ("sft", "dpo"):
            raise ValueError(f"stage must be 'sft' or 'dpo', got {s!r}")
        if s == "sft" and self.loss is not None:
            bad("loss", "only the dpo section takes a loss group")
        if s == "dpo" and self.loss is None:
            object.__setattr__(self, "loss", DpoLossParams())
        if o.learning_rate <= 0:
            bad("optim.learning_rate", f"must be > 0, got {o.learning_rate!r}")
        for key in ("per_device_train_batch_size", "gradient_accumulation_steps"):
            if getattr(o, key) < 1:
                bad(f"optim.{key}", f"must be >= 1, got {getattr(o, key)!r}")
        if o.global_batch_size is not None and (o.global_batch_size < 1
                                                or o.global_batch_size % o.per_device_train_batch_size):
            bad("optim.global_batch_size", f"must be a positive multiple of per_device_train_batch_size "
                                           f"({o.per_device_train_batch_size}), got {o.global_batch_size!r}")
        if o.max_steps <= 0 and o.num_train_epochs <= 0:
            bad("optim.num_train_epochs", "must be > 0 unless optim.max_steps > 0")
        if o.warmup_steps < 0:
            bad("optim.warmup_steps", f"must be >= 0, got {o.warmup_steps!r}")
        from transformers.trainer_utils import SchedulerType
        from transformers.training_args import OptimizerNames
        if o.lr_scheduler_type not in {t.value for t in SchedulerType}:
            bad("optim.lr_scheduler_type", f"unknown scheduler {o.lr_scheduler_type!r}")
        if o.optimizer not in {t.value for t in OptimizerNames}:
            bad("optim.optimizer", f"unknown optimizer {o.optimizer!r} (TrainingArguments.optim names)")
        if self.system.save_steps < 0:
            bad("system.save_steps", f"must be >= 0, got {self.system.save_steps!r}")
        if isinstance(self.system.report_to, list) and not all(isinstance(r, str) for r in self.system.report_to):
            bad("system.report_to", f"must be a name or a list of names, got {self.system.report_to!r}")
        if self.data.max_length < 8:
            bad("data.max_length", f"must be >= 8, got {self.data.max_length!r}")
        if self.data.max_examples is not None and self.data.max_examples < 1:
            bad("data.max_examples", f"must be >= 1 or null, got {self.data.max_examples!r}")
        if self.precision.dtype not in DTYPES:
            bad("precision.dtype", f"must be one of {DTYPES}, got {self.precision.dtype!r}")
        if self.lora.r < 1 or self.lora.alpha < 1 or not 0 <= self.lora.dropout < 1:
            bad("lora", "needs r >= 1, alpha >= 1 and 0 <= dropout < 1")
        from cosalign.core.precision import check
        check(self.compute)
        if self.loss is not None and self.loss.beta <= 0:
            bad("loss.beta", f"must be > 0, got {self.loss.beta!r}")

    @classmethod
    def from_dict(cls, section: dict, stage: str, compute: str = "fp32") -> "TrainingParams":
        """Build from a params.yaml section; every unknown key or wrong type names `<stage>.<key>`.
        `compute` is the file's top-level `precision` (fp32 where the file has none)."""
        return from_section(cls, section, stage, stage=stage, compute=compute)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
