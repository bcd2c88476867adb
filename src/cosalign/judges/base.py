"""The one judge interface: verdict records, the `Judge` protocol and `make_judge`.

Every backend returns one verdict per input item, in input order. A verdict the judge could not
produce (unparseable output, API failure) is kept with valid=False, empty categories,
addressed=False, helpfulness=0 and the raw text (or error) preserved; nothing is dropped.
`transport_error` marks the invalid verdicts whose judge never answered (connection refused or
dropped, timeouts, 429/5xx after every retry, a 200 that is not a completion): a re-run may
succeed, so they are neither cached nor checkpointed. Backends subclass `BaseJudge` and implement
only `_run(task, items)`.
"""

from __future__ import annotations

import inspect
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from cosalign.core.io import InputError
from cosalign.core.io import DryRun, JudgeError  # noqa: F401  (defined in core, raised and caught as the judges' errors)
from cosalign.cosa.taxonomy import PAPER, Taxonomy


@dataclass
class PromptVerdict:
    risk_categories: list[str]
    valid: bool
    raw: str
    error: str = ""  # why the verdict is invalid ("" when valid)
    transport_error: bool = False  # invalid because the judge never answered (see module doc)

    @classmethod
    def invalid(cls, raw: str, error: str, transport_error: bool = False) -> "PromptVerdict":
        return cls([], False, raw, error, transport_error)


@dataclass
class ResponseVerdict:
    risk_categories: list[str]
    addressed: bool
    helpfulness: int  # 0..5; 0 for refusals
    valid: bool
    raw: str
    error: str = ""
    transport_error: bool = False

    @classmethod
    def invalid(cls, raw: str, error: str, transport_error: bool = False) -> "ResponseVerdict":
        return cls([], False, 0, False, raw, error, transport_error)


@dataclass
class ConfigVerdict:
    """Free-form configs: does the response follow the config text (s_i), and how helpful is it."""
    follows: bool
    helpfulness: int
    valid: bool
    raw: str
    error: str = ""
    risk_categories: list[str] = field(default_factory=list)  # what the judge saw, when it says
    transport_error: bool = False

    @classmethod
    def invalid(cls, raw: str, error: str, transport_error: bool = False) -> "ConfigVerdict":
        return cls(False, 0, False, raw, error, transport_error=transport_error)


class CallBudgetExceeded(JudgeError):
    pass


@runtime_checkable
class Judge(Protocol):
    judge_id: str

    def label_prompts(self, prompts: list[str]) -> list[PromptVerdict]: ...

    def judge_responses(self, items: list[tuple[str, str]]) -> list[ResponseVerdict]: ...

    def judge_freeform(self, items: list[tuple[str, str, str]]) -> list[ConfigVerdict]: ...


class BaseJudge(ABC):
    """The Judge interface over one method: every task's items go to `_run(task, items)`.

    `taxonomy` is the label space: the category names a verdict may carry and the descriptions
    the judge is shown (data/taxonomy.json in the pipeline; see make_judge).

    Tasks are `prompts.TASKS`: "prompt_labels" (items are prompt strings), "response" ((prompt,
    response) tuples) and "freeform" ((config, prompt, response) tuples). The items arrive as a
    list (of tuples, whatever sequences the caller passed), and `_run` returns one verdict per
    item in the same order.
    """

    judge_id: str
    taxonomy: Taxonomy = PAPER

    def label_prompts(self, prompts: list[str]) -> list[PromptVerdict]:
        return self._run("prompt_labels", list(prompts))

    def judge_responses(self, items: list[tuple[str, str]]) -> list[ResponseVerdict]:
        return self._run("response", [tuple(i) for i in items])

    def judge_freeform(self, items: list[tuple[str, str, str]]) -> list[ConfigVerdict]:
        return self._run("freeform", [tuple(i) for i in items])

    @abstractmethod
    def _run(self, task: str, items: list) -> list: ...


BACKENDS = {
    "rules": "cosalign.judges.rules:RulesJudge",
    "openai": "cosalign.judges.openai_judge:OpenAIJudge",
    "local": "cosalign.judges.local:LocalJudge",
}


def backend_class(name: str):
    if name not in BACKENDS:
        raise ValueError(f"unknown judge {name!r}; choose one of {sorted(BACKENDS)}")
    import importlib
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def judge_fingerprint(params: dict) -> str:
    """A hash of what a judge's verdicts depend on, known before the judge is built: its params,
    plus (for a backend that defines `fingerprint(params)`, like the rules judge) its fitting
    data and code. Resumable work keys on it, so a changed judge never reuses old verdicts."""
    import hashlib
    import json
    params = dict(params or {})
    own = (getattr(backend_class(params["name"]), "fingerprint", None)
           if params.get("name") in BACKENDS else None)  # an unknown name fails in make_judge
    payload = json.dumps(params, sort_keys=True, default=str) + "\n" + (own(params) if own else "")
    return hashlib.sha256(payload.encode()).hexdigest()


# Passed by the stage, never set under `judge:`: the taxonomy (data/taxonomy.json), the top-level
# `protocol` and the pipeline phase.
CONTEXT_ARGS = ("taxonomy", "protocol", "phase")


def accepted_options(cls) -> list[str]:
    """The `judge:` options a backend takes (its __init__ arguments less CONTEXT_ARGS)."""
    return [p for p in inspect.signature(cls.__init__).parameters
            if p != "self" and p not in CONTEXT_ARGS]


def check_judge_params(judge, where: str, path="params.yaml") -> dict:
    """A params `judge:` mapping's name and options, checked before any input is read (make_judge
    would fail later): InputError naming `where` (`judgments.judge`)."""
    if not isinstance(judge, dict):
        raise InputError(path, f"expected dict, got {type(judge).__name__} {judge!r}", field=where)
    if judge.get("name") not in BACKENDS:
        raise InputError(path, f"unknown judge {judge.get('name')!r} (one of {sorted(BACKENDS)})",
                         field=f"{where}.name")
    accepted = accepted_options(backend_class(judge["name"]))
    unknown = sorted(set(judge) - {"name"} - set(accepted))
    if unknown:
        raise InputError(path, f"unknown option(s) {unknown}; accepted: {accepted}", field=where)
    return judge


def make_judge(params: dict, taxonomy: Taxonomy = PAPER, protocol: str = "cosalign",
               phase: str = "training") -> Judge:
    """Build a judge from {"name": "rules"|"openai"|"local", **options} over `taxonomy`'s labels.

    Unknown options fail with the accepted ones listed (a typo must not silently fall back to a
    default). The heavy imports of a backend happen only when it is chosen. `protocol` (the
    params' top-level key) and `phase` ('training' for the data stages, 'evaluation' for
    evaluate) reach the backends that take them (the OpenAI judge: docs/paper-fidelity.md §1);
    for the others they change nothing.
    """
    params = dict(params or {})
    name = params.pop("name", None)
    if name is None:
        raise ValueError("judge params need a 'name' (rules, openai or local)")
    cls = backend_class(name)
    accepted = accepted_options(cls)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"judge {name!r}: unknown option(s) {unknown}; accepted: {accepted}")
    takes = inspect.signature(cls.__init__).parameters
    context = {k: v for k, v in (("taxonomy", taxonomy), ("protocol", protocol), ("phase", phase)) if k in takes}
    return cls(**params, **context)


def default_cache_dir(kind: str) -> Path:
    """$COSALIGN_CACHE/<kind>, else $XDG_CACHE_HOME/cosalign/<kind>, else ~/.cache/cosalign/<kind>."""
    root = os.environ.get("COSALIGN_CACHE")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(xdg, "cosalign")
    return Path(root) / kind
