"""DPO's implicit reward margin per pair, from a separate forward pass (not the trainer's logs).

margin = beta * [(log pi(c) - log ref(c)) - (log pi(r) - log ref(r))], where log p(y) sums the
log-probabilities of the assistant-turn tokens (the answer and its end-of-turn markers) given the
system + user turns. Chats are rendered by `cosalign.models.chat.render_ids`, sanitised exactly as in
training, and the completion is where prompt and prompt+answer ids part, as TRL does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cosalign.models.chat import render_ids


def completion_ids(tokenizer, prompt_msgs: list[dict], answer_msgs: list[dict]) -> tuple[list[int], int]:
    """Ids of the full chat (conversational prompt + answer messages, as in data/preferences.parquet)
    and the index where the assistant answer starts."""
    prompt_msgs, answer_msgs = list(prompt_msgs), list(answer_msgs)
    prompt_ids = render_ids(tokenizer, prompt_msgs, add_generation_prompt=True)
    full = render_ids(tokenizer, prompt_msgs + answer_msgs, add_generation_prompt=False)
    start = 0
    while start < min(len(prompt_ids), len(full)) and prompt_ids[start] == full[start]:
        start += 1
    return full, start


def sequence_logps(model, sequences: list[tuple[list[int], int]], batch_size: int = 8,
                   pad_id: int = 0) -> np.ndarray:
    """Sum of log p(token) over each sequence's completion tokens (right-padded batches, no grad)."""
    import torch

    out = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(sequences), batch_size):
            batch = sequences[i:i + batch_size]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attn = torch.zeros_like(ids)
            mask = torch.zeros((len(batch), width), dtype=torch.bool)
            for row, (seq, start) in enumerate(batch):
                ids[row, :len(seq)] = torch.tensor(seq)
                attn[row, :len(seq)] = 1
                mask[row, start:len(seq)] = True
            logits = model(input_ids=ids.to(model.device), attention_mask=attn.to(model.device)).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            target = ids[:, 1:].to(model.device)
            token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
            out.extend((token_logp * mask[:, 1:].to(model.device)).sum(-1).cpu().tolist())
    return np.asarray(out, dtype=np.float64)


def dpo_reward_margins(policy_dir, reference_dir, pref_df, beta: float, batch_size: int = 8) -> np.ndarray:
    """beta * [(log pi(c) - log ref(c)) - (log pi(r) - log ref(r))] for every row of pref_df."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(Path(policy_dir))
    chosen, rejected = [], []
    for r in pref_df.itertuples(index=False):
        chosen.append(completion_ids(tokenizer, r.prompt, r.chosen))
        rejected.append(completion_ids(tokenizer, r.prompt, r.rejected))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    logps = {}
    for name, path in (("policy", policy_dir), ("reference", reference_dir)):
        model = AutoModelForCausalLM.from_pretrained(Path(path), dtype=torch.float32)
        logps[name] = (sequence_logps(model, chosen, batch_size, pad), sequence_logps(model, rejected, batch_size, pad))
        del model
    (pc, pr), (rc, rr) = logps["policy"], logps["reference"]
    return beta * ((pc - rc) - (pr - rr))
