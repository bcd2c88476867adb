"""SFT rows tokenised and truncated in the data step, so TRL can train them padding-free.

TRL's SFTTrainer refuses `padding_free=True` while `max_length` is set (without packing it would
not truncate), yet padding-free batches (one flat sequence per batch, attention kept within each
example through position_ids) train ~1.6x faster on CPU than padded ones (bench/bench_training.py).
So the rows reach TRL already tokenised, exactly as TRL 1.16's own prompt-completion path does it:
the prompt rendered with the generation prompt, the whole chat rendered, the completion starting
where the two diverge (trl.data_utils.common_prefix_length), with the row's chat_template_kwargs
(control tokens sanitised, cosalign.models.chat). Then TRL's `truncation_mode="keep_start"`: the
first `max_length` tokens are kept, so an over-long answer loses its end and the system turn (the
safety config, arXiv 2410.08968 sec. 3) is never cut; a row left without answer tokens carries no
loss and is dropped, as TRL drops it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TruncationReport:
    rows: int  # rows in
    truncated: int  # rows cut at max_length
    dropped: int  # rows whose answer was cut entirely (no loss left)


def _ids(tokenizer, msgs, **kwargs) -> list[int]:
    out = tokenizer.apply_chat_template(msgs, tokenize=True, **kwargs)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def tokenize_sft(dataset, tokenizer, max_length: int | None):
    """TRL-ready rows (`input_ids`, `completion_mask`) from the prompt/completion view
    (cosalign.models.chat.training_view). Returns (dataset, TruncationReport)."""
    import datasets
    from trl.data_utils import common_prefix_length

    rows = {"input_ids": [], "completion_mask": []}
    truncated = dropped = 0
    for ex in dataset:
        kwargs = dict(ex.get("chat_template_kwargs") or {})
        prompt_ids = _ids(tokenizer, ex["prompt"], add_generation_prompt=True, **kwargs)
        full = _ids(tokenizer, ex["prompt"] + ex["completion"], **kwargs)
        start = common_prefix_length(prompt_ids, full)
        mask = [0] * start + [1] * (len(full) - start)
        if max_length is not None and len(full) > max_length:
            truncated += 1
            full, mask = full[:max_length], mask[:max_length]
        if 1 not in mask:
            dropped += 1
            continue
        rows["input_ids"].append(full)
        rows["completion_mask"].append(mask)
    if not rows["input_ids"]:
        raise ValueError(f"every SFT example's answer lies beyond max_length {max_length}")
    return datasets.Dataset.from_dict(rows), TruncationReport(len(dataset), truncated, dropped)
