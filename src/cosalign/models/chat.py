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


def preference_messages(system_prompt: str, prompt: str, chosen: str, rejected: str) -> dict:
    """One pair in TRL's conversational preference format (the columns of data/preferences.parquet).

    prompt = [system (the safety config), user]; chosen / rejected = [assistant]; and the per-row
    `chat_template_kwargs` with which TRL renders the chat with control tokens sanitised.
    """
    return {"prompt": messages(system_prompt, prompt),
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "chat_template_kwargs": dict(SANITIZE)}


def system_text(prompt_msgs) -> str | None:
    """The safety config of a conversational prompt: its system turn's content (None without one)."""
    return next((m["content"] for m in prompt_msgs if m["role"] == "system"), None)


def answer_text(answer_msgs) -> str:
    """The assistant text of a chosen / rejected / completion column value."""
    return "".join(m["content"] for m in answer_msgs if m["role"] == "assistant")


TRL_COLUMNS = {"preference": ("prompt", "chosen", "rejected"), "prompt_completion": ("prompt", "completion")}


def training_view(df, *, kind: str):
    """The TRL columns of conversational rows (data/preferences.parquet, or its SFT view) as a
    datasets.Dataset: kind "preference" (prompt, chosen, rejected) or "prompt_completion" (prompt,
    completion). Every row gets `chat_template_kwargs` = SANITIZE whatever the file says, so the
    training path always renders with control tokens inside messages neutralised.
    """
    import datasets

    rows = {c: [_plain(v) for v in df[c]] for c in TRL_COLUMNS[kind]}
    rows["chat_template_kwargs"] = [dict(SANITIZE) for _ in range(len(df))]
    return datasets.Dataset.from_dict(rows)


def _plain(msgs) -> list[dict]:
    """Messages as plain {role, content} dicts (parquet readers may hand back numpy arrays)."""
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in msgs]
