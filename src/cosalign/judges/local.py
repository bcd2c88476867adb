"""A transformers causal LM as judge: the same prompts and parsers as the API judge, run locally.

Chats are rendered with `cosalign.chat.render_ids` (control tokens inside judged texts are
neutralised, so a response cannot forge turns of the judge's chat), generated greedily in
length-sorted batches with left padding, and parsed by the named parsers. Output that reaches
`max_new_tokens` without an end token is invalid (truncated), like an over-long API answer.
"""

from __future__ import annotations

from pathlib import Path

from tqdm.auto import tqdm

from cosalign.chat import render_ids
from cosalign.judges import parsing, prompts
from cosalign.judges.base import ConfigVerdict, PromptVerdict, ResponseVerdict


class LocalJudge:
    """Options (params.yaml `judge:` section with name: local):

    model: path of a transformers checkpoint with a chat template (required).
    batch_size: sequences per generate call (8). max_new_tokens: judge output cap (512).
    device: torch device ("cpu"). dtype: "float32" | "bfloat16" | "float16" ("float32").
    progress: show a tqdm bar.
    """

    def __init__(self, model: str | None = None, batch_size: int = 8, max_new_tokens: int = 512,
                 device: str = "cpu", dtype: str = "float32", progress: bool = True):
        if not model:
            raise ValueError("the local judge needs judge.model (a checkpoint path)")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForCausalLM.from_pretrained(
            model, dtype=getattr(torch, dtype)).to(device).eval()
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.tokenizer.eos_token_id
        self.eos_ids = self._eos_ids()
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.device, self.progress = device, progress
        self.judge_id = f"local:{Path(model).name}:{prompts.TEMPLATE_VERSION}"

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids

    def label_prompts(self, prompts_: list[str]) -> list[PromptVerdict]:
        return self._run("prompt_labels", list(prompts_))

    def judge_responses(self, items: list[tuple[str, str]]) -> list[ResponseVerdict]:
        return self._run("response", [tuple(i) for i in items])

    def judge_freeform(self, items: list[tuple[str, str, str]]) -> list[ConfigVerdict]:
        return self._run("freeform", [tuple(i) for i in items])

    def _run(self, task: str, items: list) -> list:
        ids = [render_ids(self.tokenizer, prompts.messages_for(task, it)) for it in items]
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))  # similar lengths batch well
        outputs: list = [None] * len(ids)
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc=f"judge {task}", disable=not self.progress):
            for i, (text, truncated) in zip(batch, self._generate([ids[i] for i in batch])):
                outputs[i] = (parsing.invalid(task, text, "judge output truncated at max_new_tokens")
                              if truncated else parsing.PARSERS[task](text))
        return outputs

    def _generate(self, seqs: list[list[int]]) -> list[tuple[str, bool]]:
        torch = self.torch
        width = max(len(s) for s in seqs)
        input_ids = torch.tensor([[self.pad_id] * (width - len(s)) + s for s in seqs])
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                do_sample=False, max_new_tokens=self.max_new_tokens, pad_token_id=self.pad_id)
        results = []
        for row in out[:, width:].tolist():
            ended = any(t in self.eos_ids for t in row)
            if ended:
                row = row[:next(i for i, t in enumerate(row) if t in self.eos_ids)]
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            results.append((text, not ended and len(row) >= self.max_new_tokens))
        return results
