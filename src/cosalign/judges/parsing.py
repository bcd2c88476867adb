"""Named parsers for judge output: the LAST JSON object in the text is the verdict.

Each parser takes the judge's raw text and returns a verdict; anything it cannot read exactly
(no JSON object, a missing key, a wrong type, an out-of-range rating, an unknown category name,
an empty or over-long output) gives valid=False with the raw text and the reason kept.
Category names are matched case-insensitively (and ignoring surrounding whitespace) to the
exact names of the judge's taxonomy (the `taxonomy` argument; data/taxonomy.json in the pipeline).
"""

from __future__ import annotations

import functools
import json

from cosalign.cosa.taxonomy import PAPER, Taxonomy
from cosalign.judges.base import ConfigVerdict, PromptVerdict, ResponseVerdict

MAX_OUTPUT_CHARS = 20_000  # longer judge output is treated as runaway generation


@functools.lru_cache(maxsize=16)
def _by_lower(taxonomy: Taxonomy) -> dict[str, str]:
    return {n.casefold(): n for n in taxonomy.names}


class ParseError(ValueError):
    pass


def last_json_object(text: str) -> dict:
    """The JSON object that ends last in `text` (the outermost one if objects nest)."""
    decoder = json.JSONDecoder()
    best = None  # (end, -start, obj)
    start = text.find("{")
    while start != -1:
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and (best is None or (end, -start) > best[:2]):
            best = (end, -start, obj)
        start = text.find("{", start + 1)
    if best is None:
        raise ParseError("no JSON object found")
    return best[2]


def categories(value, taxonomy: Taxonomy = PAPER) -> list[str]:
    """A list of category names -> taxonomy names in taxonomy order; unknown names are an error."""
    if not isinstance(value, list):
        raise ParseError(f"risk_categories must be a list, got {type(value).__name__}")
    by_lower = _by_lower(taxonomy)
    out = []
    for v in value:
        name = by_lower.get(v.strip().casefold()) if isinstance(v, str) else None
        if name is None:
            raise ParseError(f"unknown risk category {v!r}")
        out.append(name)
    return taxonomy.canonical_order(out)


def _bool(obj: dict, key: str) -> bool:
    if key not in obj:
        raise ParseError(f"missing key {key!r}")
    if not isinstance(obj[key], bool):
        raise ParseError(f"{key} must be true or false, got {obj[key]!r}")
    return obj[key]


def _rating(obj: dict, key: str = "helpfulness") -> int:
    if key not in obj:
        raise ParseError(f"missing key {key!r}")
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != int(v) or not 0 <= v <= 5:
        raise ParseError(f"{key} must be an integer 0-5, got {v!r}")
    return int(v)


def _verdict_json(text) -> dict:
    if not isinstance(text, str) or not text.strip():
        raise ParseError("empty judge output")
    if len(text) > MAX_OUTPUT_CHARS:
        raise ParseError(f"judge output too long ({len(text)} > {MAX_OUTPUT_CHARS} chars)")
    return last_json_object(text)


def _cats(obj: dict, taxonomy: Taxonomy) -> list[str]:
    if "risk_categories" not in obj:
        raise ParseError("missing key 'risk_categories'")
    return categories(obj["risk_categories"], taxonomy)


def parse_prompt_labels(text: str, taxonomy: Taxonomy = PAPER) -> PromptVerdict:
    try:
        return PromptVerdict(_cats(_verdict_json(text), taxonomy), True, text)
    except ParseError as exc:
        return PromptVerdict.invalid(text or "", str(exc))


def parse_response(text: str, taxonomy: Taxonomy = PAPER) -> ResponseVerdict:
    try:
        obj = _verdict_json(text)
        return ResponseVerdict(_cats(obj, taxonomy), _bool(obj, "addressed"), _rating(obj), True, text)
    except ParseError as exc:
        return ResponseVerdict.invalid(text or "", str(exc))


def parse_freeform(text: str, taxonomy: Taxonomy = PAPER) -> ConfigVerdict:
    """`follows` and `helpfulness` are required; `risk_categories` is optional extra detail."""
    try:
        obj = _verdict_json(text)
        cats = _cats(obj, taxonomy) if "risk_categories" in obj else []
        return ConfigVerdict(_bool(obj, "follows"), _rating(obj), True, text, "", cats)
    except ParseError as exc:
        return ConfigVerdict.invalid(text or "", str(exc))


PARSERS = {
    "prompt_labels": parse_prompt_labels,
    "response": parse_response,
    "freeform": parse_freeform,
}


def invalid(task: str, raw: str, error: str, transport_error: bool = False):
    """An invalid verdict of the task's kind (API failure, refusal, truncation); `transport_error`
    when the judge never answered (see `base`)."""
    cls = {"prompt_labels": PromptVerdict, "response": ResponseVerdict, "freeform": ConfigVerdict}[task]
    return cls.invalid(raw, error, transport_error)
