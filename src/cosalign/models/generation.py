"""Response generation behind one interface: transformers (default, CPU) or vLLM (paper, GPU).

`Generator.generate(chats, n)` returns, for each chat, `n` sampled assistant replies. Every chat is
rendered through `cosalign.models.chat.render_ids`, so control text in a user prompt can never open a new
turn. The transformers backend sorts prompts by length and batches them with left padding (the
measured 3x over one-at-a-time on CPU comes mostly from batching; sorting keeps padding small).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tqdm.auto import tqdm

from cosalign.models.chat import render_ids


@dataclass
class GenerationSettings:
    """How replies are sampled. Greedy when temperature == 0 (then n must be 1)."""
    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.95
    batch_size: int = 32  # prompts per forward pass; ~32-64 is the CPU sweet spot for SmolLM2
    seed: int = 0
    extra: dict = field(default_factory=dict)  # backend-specific options (e.g. vLLM's dtype)


class TransformersGenerator:
    def __init__(self, model_path: str, *, dtype: str = "float32", device: str = "cpu",
                 revision: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from cosalign.core.precision import label
        self.name = f"transformers:{model_path}{label({'dtype': dtype})}"  # '@bf16' under bfloat16
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, revision=revision)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, revision=revision,
                                                          dtype=getattr(torch, dtype)).to(device)
        self.model.eval()
        self.device = device
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if self.tokenizer.eos_token_id is not None:
            self.eos_ids.add(self.tokenizer.eos_token_id)

    def generate(self, chats: list[list[dict]], settings: GenerationSettings, n: int = 1,
                 progress: bool = True) -> list[list[str]]:
        """For each chat, `n` replies as stripped text (special tokens dropped)."""
        return [[self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in replies]
                for replies in self.generate_ids(chats, settings, n, progress)]

    def until_end(self, ids: list[int]) -> tuple[list[int], bool]:
        """A reply's ids cut before its first end token, and whether it had one (a reply without
        one ran into max_new_tokens, or the batch stopped early for the others)."""
        end = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
        return (ids, False) if end is None else (ids[:end], True)

    def generate_ids(self, chats: list[list[dict]], settings: GenerationSettings, n: int = 1,
                     progress: bool = True) -> list[list[list[int]]]:
        """For each chat, `n` replies as the new token ids: an end token and the padding after it
        included, so callers can tell a finished reply from a truncated one (`until_end`)."""
        import torch

        if settings.temperature == 0 and n != 1:
            raise ValueError("greedy decoding (temperature 0) gives one reply per chat; set n=1")
        encoded = [render_ids(self.tokenizer, c) for c in chats]
        order = sorted(range(len(encoded)), key=lambda i: (len(encoded[i]), i))
        replies: list[list[list[int]]] = [[] for _ in chats]
        batches = [order[i:i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
        for b, batch in enumerate(tqdm(batches, desc="generate", unit="batch", disable=not progress)):
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):  # left padding: every prompt ends where generation starts
                ids[row, width - len(encoded[i]):] = torch.tensor(encoded[i])
                mask[row, width - len(encoded[i]):] = 1
            # One seed per batch, fixed by the batch's position: the same inputs give the same text.
            # Reduced mod 2**64 as torch itself reduces a negative seed, so any int64 seed works.
            torch.manual_seed((settings.seed * 1_000_003 + b) % 2**64)
            sampling = settings.temperature > 0
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                    max_new_tokens=settings.max_new_tokens, do_sample=sampling,
                    temperature=settings.temperature if sampling else None,
                    top_p=settings.top_p if sampling else None, top_k=None,
                    num_return_sequences=n, pad_token_id=self.pad_id)
            new = out[:, width:].tolist()
            for row, i in enumerate(batch):
                replies[i] = new[row * n:(row + 1) * n]
        return replies


class VLLMGenerator:
    """vLLM's offline engine (GPU machines; `pip install cosalign[paper]`)."""

    def __init__(self, model_path: str, *, dtype: str = "bfloat16", tensor_parallel_size: int = 1,
                 revision: str | None = None, **engine_args):
        from vllm import LLM

        self.name = f"vllm:{model_path}"
        self.llm = LLM(model=model_path, revision=revision, dtype=dtype,
                       tensor_parallel_size=tensor_parallel_size, **engine_args)
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, chats, settings: GenerationSettings, n: int = 1, progress: bool = True):
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(n=n, temperature=settings.temperature, top_p=settings.top_p,
                                max_tokens=settings.max_new_tokens, seed=settings.seed)
        prompts = [TokensPrompt(prompt_token_ids=render_ids(self.tokenizer, c)) for c in chats]
        outputs = self.llm.generate(prompts, params, use_tqdm=progress)
        return [[o.text.strip() for o in out.outputs] for out in outputs]


def make_generator(backend: str, model_path: str, **options):
    if backend == "transformers":
        return TransformersGenerator(model_path, **options)
    if backend == "vllm":
        return VLLMGenerator(model_path, **options)
    raise ValueError(f"unknown generation backend {backend!r} (transformers or vllm)")
