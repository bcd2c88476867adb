"""A transformers causal LM as judge: the same prompts and parsers as the API judge, run locally.

Generation is `cosalign.models.generation.TransformersGenerator`'s, greedy: chats rendered with
`cosalign.models.chat.render_ids` (control tokens inside judged texts are neutralised, so a response
cannot forge turns of the judge's chat), length-sorted batches with left padding. Each output is
parsed by the named parsers; output that reaches `max_new_tokens` without an end token is invalid
(truncated), like an over-long API answer.
"""

from __future__ import annotations

from pathlib import Path

from cosalign.cosa.taxonomy import PAPER, Taxonomy
from cosalign.judges import parsing, prompts
from cosalign.judges.base import BaseJudge


class LocalJudge(BaseJudge):
    """Options (params.yaml `judge:` section with name: local):

    model: path of a transformers checkpoint with a chat template (required).
    batch_size: sequences per generate call (8). max_new_tokens: judge output cap (512).
    device: torch device ("cpu"). dtype: "float32" | "bfloat16" | "float16" ("float32").
    progress: show a tqdm bar.
    """

    def __init__(self, model: str | None = None, batch_size: int = 8, max_new_tokens: int = 512,
                 device: str = "cpu", dtype: str = "float32", progress: bool = True,
                 taxonomy: Taxonomy = PAPER):
        if not model:
            raise ValueError("the local judge needs judge.model (a checkpoint path)")
        from cosalign.models.generation import GenerationSettings, TransformersGenerator

        self.generator = TransformersGenerator(model, dtype=dtype, device=device)
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=0,
                                           batch_size=batch_size)
        self.progress, self.taxonomy = progress, taxonomy
        self.judge_id = f"local:{Path(model).name}:{prompts.TEMPLATE_VERSION}"

    def _run(self, task: str, items: list) -> list:
        chats = [prompts.messages_for(task, it, self.taxonomy) for it in items]
        replies = self.generator.generate_ids(chats, self.settings, progress=self.progress)
        return [self._verdict(task, ids) for [ids] in replies]  # greedy: one reply per chat

    def _verdict(self, task: str, ids: list[int]):
        ids, ended = self.generator.until_end(ids)
        text = self.generator.tokenizer.decode(ids, skip_special_tokens=True)
        if not ended and len(ids) >= self.settings.max_new_tokens:
            return parsing.invalid(task, text, "judge output truncated at max_new_tokens")
        return parsing.PARSERS[task](text, self.taxonomy)
