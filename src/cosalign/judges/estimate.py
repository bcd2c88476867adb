"""What a run of an API judge would cost, worked out before anything is generated or sent.

A dry run (`dry_run: true` in a judge section, `cosalign eval --dry-run`) counts the calls that are
not yet cached, the input tokens they would send and the most output tokens they could get back
(`max_tokens` per call), and prices them when a price per million tokens is given. Input tokens
are counted at OpenAI's rule of thumb of ~4 characters per token plus a few tokens of message
framing (https://help.openai.com/en/articles/4936856): an estimate, not the tokenizer's count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4  # role and separators around each chat message


def message_tokens(messages: list[dict]) -> int:
    """Estimated input tokens of one chat request."""
    return sum(TOKENS_PER_MESSAGE + math.ceil(len(str(m.get("content") or "")) / CHARS_PER_TOKEN)
               for m in messages)


@dataclass(frozen=True)
class Estimate:
    """Calls, tokens and (with prices, in currency units per million tokens) cost of one run."""
    judge_id: str
    task: str
    calls: int
    cached: int
    total: int
    input_tokens: int
    max_output_tokens: int
    input_price_per_mtok: float | None = None
    output_price_per_mtok: float | None = None

    @property
    def max_cost(self) -> float | None:
        if self.input_price_per_mtok is None or self.output_price_per_mtok is None:
            return None
        return (self.input_tokens * self.input_price_per_mtok
                + self.max_output_tokens * self.output_price_per_mtok) / 1e6

    def line(self) -> str:
        cost = self.max_cost
        price = ("no price given (input_price_per_mtok, output_price_per_mtok)" if cost is None
                 else f"cost <= {cost:.4f} at {self.input_price_per_mtok:g}/{self.output_price_per_mtok:g} "
                      "per million input/output tokens")
        return (f"dry run: {self.judge_id} {self.task}: {self.calls} call(s) to make "
                f"({self.cached} of {self.total} item(s) cached), ~{self.input_tokens:,} input tokens, "
                f"<= {self.max_output_tokens:,} output tokens, {price}; nothing was sent")


def combine(parts: list[Estimate]) -> Estimate:
    """One estimate for several tasks of the same judge (e.g. seen + free-form configs)."""
    first = parts[0]
    return Estimate(first.judge_id, "+".join(dict.fromkeys(p.task for p in parts)),
                    sum(p.calls for p in parts), sum(p.cached for p in parts), sum(p.total for p in parts),
                    sum(p.input_tokens for p in parts), sum(p.max_output_tokens for p in parts),
                    first.input_price_per_mtok, first.output_price_per_mtok)
