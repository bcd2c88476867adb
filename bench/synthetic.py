"""Deterministic synthetic inputs for the benchmarks, built from the project's seed prompts.

`prompts_frame(scale)` repeats the seed prompts `scale` times, each copy made distinct by a
paraphrasing suffix, so a 10x run has 10x as many different prompts. Labels take the gold
categories; responses are a refusal, a long compliance and a short safe answer per prompt, judged
the obvious way, so `build_pairs` finds real error-ordered pairs. Same arguments, same frames.
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from common import SEED_PROMPTS

SUFFIXES = ["", " Please answer briefly.", " Explain it step by step.", " Give me the short version.",
            " Assume I am a beginner.", " Answer as a numbered list.", " Keep it under 100 words.",
            " Be as specific as you can.", " What would an expert say?", " Explain it to a friend.",
            " Why does it work?", " Include one example."]
REFUSAL = "I'm sorry, but I can't help with that request."
FILLER = ["First, gather what you need and check that it is all there.",
          "Next, work through the main part carefully and in order.",
          "Then look at the result and compare it with what you expected.",
          "If something is off, go back one step and try a small change.",
          "Finally, write down what worked so the next attempt is faster."]


def seed_rows(limit: int | None = None) -> list[dict]:
    rows = [json.loads(line) for line in SEED_PROMPTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def _split(prompt_id: str) -> str:
    return "train" if int(hashlib.sha256(prompt_id.encode()).hexdigest(), 16) % 10 < 7 else "test"


def prompts_frame(scale: int = 1, limit: int | None = None) -> pd.DataFrame:
    """data/prompts.parquet-shaped: the seed prompts (first `limit`) times `scale` distinct copies."""
    if scale > len(SUFFIXES):
        raise ValueError(f"scale at most {len(SUFFIXES)}")
    rows = []
    for k in range(scale):
        for r in seed_rows(limit):
            pid = r["prompt_id"] if k == 0 else f"{r['prompt_id']}-x{k}"
            rows.append({"prompt_id": pid, "prompt": r["prompt"] + SUFFIXES[k], "source": "bench",
                         "split": _split(pid), "gold_categories": list(r.get("gold_categories") or [])})
    return pd.DataFrame(rows)


def labels_frame(prompts: pd.DataFrame) -> pd.DataFrame:
    """data/prompt_labels.parquet-shaped, with the gold categories as the judge's labels."""
    return pd.DataFrame({"prompt_id": prompts["prompt_id"], "split": prompts["split"],
                         "risk_categories": prompts["gold_categories"].map(list),
                         "gold_categories": prompts["gold_categories"], "valid": True, "judge": "gold",
                         "raw": ""})


def answer(prompt: str, words: int) -> str:
    """A compliance of at least `words` words that restates the prompt."""
    parts = [f"Sure. Here is a complete answer to your request: {prompt}"]
    i = 0
    while sum(len(p.split()) for p in parts) < words:
        parts.append(FILLER[i % len(FILLER)])
        i += 1
    return " ".join(parts)


KINDS = ("refusal", "comply", "safe")


def responses_frame(prompts: pd.DataFrame, words: int = 80, kinds=KINDS) -> pd.DataFrame:
    """data/responses.parquet-shaped: per prompt a refusal, a long compliance and a short safe answer
    (or the `kinds` chosen of them)."""
    texts = {"refusal": lambda p: REFUSAL, "comply": lambda p: answer(p, words),
             "safe": lambda p: "Here is some general, safe background on this topic."}
    rows = []
    for pid, prompt in zip(prompts["prompt_id"], prompts["prompt"]):
        for s, kind in enumerate(kinds):
            text = texts[kind](prompt)
            rows.append({"response_id": f"{pid}-{kind}", "prompt_id": pid, "config_id": f"{pid}-bench",
                         "sample": s, "response": text, "generator": "bench", "source": "template"})
    return pd.DataFrame(rows)


def pool_frame(responses: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Responses joined with the obvious verdicts (what stages/preferences.py merges)."""
    risks = dict(zip(labels["prompt_id"], labels["risk_categories"]))
    kind = responses["response_id"].str.rsplit("-", n=1).str[-1]
    pool = responses.copy()
    pool["risk_categories"] = [list(risks[p]) if k == "comply" else []
                               for p, k in zip(pool["prompt_id"], kind)]
    pool["addressed"] = (kind != "refusal").tolist()
    pool["helpfulness"] = [0 if k == "refusal" else 3 for k in kind]
    pool["valid"] = True
    return pool


def preferences_frame(n_prompts: int, words: int = 80, seed: int = 0) -> pd.DataFrame:
    """A schemas.Preferences frame from the first `n_prompts` training seed prompts (real build_pairs)."""
    from cosalign.data.configs import sample_configs
    from cosalign.data.preferences import build_pairs

    prompts = prompts_frame(1)
    prompts = prompts[prompts["split"] == "train"].head(n_prompts).reset_index(drop=True)
    labels = labels_frame(prompts)
    configs = sample_configs(prompts, labels, modes=["exact_match", "superset", "safe", "not_superset"],
                             configs_per_mode=1, seed=seed)
    pool = pool_frame(responses_frame(prompts, words), labels)
    return build_pairs(pool, configs, prompts, labels_df=labels, seed=seed)
