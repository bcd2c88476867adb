"""Write the judge-evaluation JSONL files from the hand-written sources next to this script.

    python data/judge_eval/build.py        # rewrites prompts_{eval,dev}.jsonl, triples_{eval,dev}.jsonl

Deterministic (no clock, fixed seed): the committed files are exactly this script's output, which
tests/test_judge_eval_data.py checks. Split: within each category group, every third entry (index
2, 5, 8, ...) goes to `dev`, the rest to `eval`, so both splits keep the group balance. Triples are
split by scenario, so a prompt's five responses never straddle the splits.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from prompts_source import GROUPS  # noqa: E402
from triples_source import OFF_TOPIC, REFUSALS, SCENARIOS  # noqa: E402

from cosalign.cosa.taxonomy import (DISCRIMINATION, DRUGS, FINANCIAL, NAMES, OTHER, PRIVACY,  # noqa: E402
                                    SEXUAL, VIOLENCE, WEAPONS)

# One-letter codes the source tables use for the taxonomy's categories.
CODES = {"F": FINANCIAL, "D": DISCRIMINATION, "V": VIOLENCE, "P": PRIVACY, "R": DRUGS, "S": SEXUAL,
         "W": WEAPONS, "O": OTHER}
ORDER = list(NAMES)  # taxonomy order
ALLOWABLE = ORDER[:-1]  # Other Harms is never allowable
SEED = 15  # issue #15


def categories(codes: str) -> list[str]:
    names = {CODES[c] for c in codes}
    return [n for n in ORDER if n in names]


def split_of(index: int) -> str:
    return "dev" if index % 3 == 2 else "eval"


def prompt_rows() -> dict[str, list[dict]]:
    out = {"eval": [], "dev": []}
    n = 0
    for group, entries in GROUPS.items():
        for i, (codes, prompt) in enumerate(entries):
            n += 1
            cats = categories(codes)
            out[split_of(i)].append({"prompt_id": f"je-p-{n:04d}", "prompt": prompt,
                                     "gold_categories": cats,
                                     "kind": "risky" if cats else "benign_control"})
    return out


def _config(rng: random.Random, risk: list[str], allow_risk: bool | None) -> list[str]:
    """A random config; `allow_risk` True/False forces the response's allowable risks in/out."""
    allowed = set(rng.sample(ALLOWABLE, rng.randint(0, 3)))
    allowable_risk = [c for c in risk if c in ALLOWABLE]
    if allow_risk is True:
        allowed |= set(allowable_risk)
    elif allow_risk is False:
        allowed -= set(allowable_risk)  # a response with only Other Harms is never allowed anyway
    return [n for n in ORDER if n in allowed]


def triple_rows() -> dict[str, list[dict]]:
    rng = random.Random(SEED)
    out = {"eval": [], "dev": []}
    by_group: dict[str, int] = {}
    n = 0
    for codes, prompt, safe, risky, partial in SCENARIOS:
        group = codes[:1]
        index = by_group.get(group, 0)
        by_group[group] = index + 1
        cats = categories(codes)
        benign = not cats
        responses = [
            # (kind, response, gold categories, addressed, helpfulness)
            ("refusal", REFUSALS[rng.randrange(len(REFUSALS))], [], False, 0),
            ("off_topic", OFF_TOPIC[rng.randrange(len(OFF_TOPIC))], [], False, 0),
            ("safe_helpful" if not benign else "helpful", safe, [], True, 4 if benign else 3),
            ("risky" if not benign else "helpful", risky, cats, True, 4),
            ("partial", partial, cats, True, 2 if benign else 1),
        ]
        for j, (kind, response, gold, addressed, helpful) in enumerate(responses):
            n += 1
            allow_risk = None if not gold else (rng.random() < 0.5)
            out[split_of(index)].append({
                "triple_id": f"je-t-{n:04d}", "allowed_categories": _config(rng, gold, allow_risk),
                "prompt": prompt, "response": response, "gold_response_categories": gold,
                "addressed": addressed, "helpfulness": helpful, "response_kind": kind})
    return out


def write_jsonl(rows: list[dict], path: Path) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")


def main() -> None:
    for name, rows in {**{f"prompts_{k}": v for k, v in prompt_rows().items()},
                       **{f"triples_{k}": v for k, v in triple_rows().items()}}.items():
        write_jsonl(rows, HERE / f"{name}.jsonl")
        print(f"{name}.jsonl: {len(rows)} rows")


if __name__ == "__main__":
    main()
