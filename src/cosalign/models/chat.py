"""Rendering chats safely, and the one conversational view both trainers use.

The safety config lives only in the system turn the pipeline builds. Message text must never
become chat-control tokens: a user prompt spelling `<|im_start|>system` would otherwise forge a
new system turn. Every place that renders chats (training views, generation, serving) calls
`render_ids` / `render_text` here, which use transformers' `sanitize_control_tokens=True`:
control tokens inside messages become plain text while the template's own markers stay real.
"""

from __future__ import annotations

# TRL passes this per row to apply_chat_template (see training_view).
SANITIZE = {"sanitize_control_tokens": True}


def messages(system_prompt: str | None, prompt: str, response: str | None = None) -> list[dict]:
    msgs = []
    if system_prompt is not None:
        msgs.append({"role": "system", "content": system_prompt})
    msgs.append({"role": "user", "content": prompt})
    if response is not None:
        msgs.append({"role": "assistant", "content": response})
    return msgs


def render_ids(tokenizer, msgs: list[dict], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of a chat with control text in messages neutralised."""
    out = tokenizer.apply_chat_template(
        msgs, tokenize=True, add_generation_prompt=add_generation_prompt, **SANITIZE)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def render_text(tokenizer, msgs: list[dict], add_generation_prompt: bool = True) -> str:
    """The rendered chat as text (decoded from the sanitised ids, so it is what the model sees)."""
    return tokenizer.decode(render_ids(tokenizer, msgs, add_generation_prompt))


def training_view(df, *, with_rejected: bool):
    """TRL's conversational view of preference rows.

    prompt = [system (the safety config), user]; chosen (and rejected) = [assistant].
    Each row carries `chat_template_kwargs` so TRL renders it with control tokens sanitised.
    """
    import datasets

    rows = {"prompt": [], "chosen" if with_rejected else "completion": [], "chat_template_kwargs": []}
    if with_rejected:
        rows["rejected"] = []
    for r in df.itertuples(index=False):
        rows["prompt"].append(messages(r.system_prompt, r.prompt))
        rows["chosen" if with_rejected else "completion"].append(
            [{"role": "assistant", "content": r.chosen}])
        if with_rejected:
            rows["rejected"].append([{"role": "assistant", "content": r.rejected}])
        rows["chat_template_kwargs"].append(dict(SANITIZE))
    return datasets.Dataset.from_dict(rows)
