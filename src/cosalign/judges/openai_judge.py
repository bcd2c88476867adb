"""A judge behind any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server, ...).

Calls go through the official `openai` client at temperature 0 with the project's prompt
templates; tenacity owns retries (exponential backoff on 429, 5xx, timeouts and connection
errors; the client's own retries are off so attempts are counted in one place). Outputs are
cached on disk per request, so a re-run spends no calls. An item whose retries run out is
recorded invalid with the error text in `raw` (and `transport_error` set when the endpoint never
produced a completion: a re-run may succeed); authentication, permission and unknown-model
errors stop the run instead, since every item would fail the same way.

The API key is read from the environment variable named by `api_key_env`; it is never a
parameter. Every text the endpoint sends back (completions, error messages, a body that is not a
completion) goes through `core.redact.redact` before it is cached, recorded in `raw` or printed,
since an endpoint may echo the request's Authorization header.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed

import openai
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from tqdm.auto import tqdm

from cosalign.cosa.taxonomy import PAPER, Taxonomy
from cosalign.judges import paper, parsing, prompts
from cosalign.judges.base import BaseJudge, CallBudgetExceeded, DryRun, JudgeError, default_cache_dir
from cosalign.judges.cache import JsonCache, cache_key
from cosalign.core.redact import redact

_FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: rate limits, server errors, timeouts, dropped connections."""
    if isinstance(exc, (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)):
        return True  # APITimeoutError is an APIConnectionError
    return isinstance(exc, openai.APIStatusError) and (
        exc.status_code in (408, 409, 429) or exc.status_code >= 500)


class OpenAIJudge(BaseJudge):
    """Options (params.yaml `judge:` section with name: openai):

    model: model name sent to the endpoint (default "gpt-4o").
    base_url: endpoint root ending in /v1 (default None = api.openai.com).
    api_key_env: NAME of the environment variable holding the key (default "OPENAI_API_KEY");
        null for endpoints that need no key.
    concurrency: parallel requests (default 16).
    max_retries: retries per item after the first attempt (default 5).
    backoff_s / backoff_max_s: exponential backoff start and cap in seconds (1.0 / 60.0).
    timeout_s: per-request timeout (default 60). max_tokens: judge output cap (default 1024).
    cache_dir: where outputs are cached (default $COSALIGN_CACHE/judge-openai, see
        base.default_cache_dir). The cache is keyed by model NAME, not URL: use separate
        cache_dirs for different endpoints that serve different weights under one name.
    dry_run: count the calls a run would make (uncached requests), their tokens and cost, and raise
        DryRun, calling nothing (cosalign.judges.estimate).
    input_price_per_mtok / output_price_per_mtok: prices per million tokens, for the dry run's cost.
    max_calls: refuse (CallBudgetExceeded) before any call when more uncached requests remain.
    progress: show a tqdm bar.
    templates_dir: under `protocol: paper`, the authors' prompt_templates/ folder, to ask their
        exact wording (cosalign.judges.paper); default None = our wording of their questions.

    `protocol` and `phase` are not options: the stage passes them (the top-level `protocol` key;
    'training' for the data stages, 'evaluation' for evaluate). Under `paper` every item costs
    several calls (cosalign.judges.paper.CALLS); pending_calls and max_calls count every call.
    """

    def __init__(self, model: str = "gpt-4o", base_url: str | None = None,
                 api_key_env: str | None = "OPENAI_API_KEY", concurrency: int = 16,
                 max_retries: int = 5, backoff_s: float = 1.0, backoff_max_s: float = 60.0,
                 timeout_s: float = 60.0, max_tokens: int = 1024, cache_dir: str | None = None,
                 dry_run: bool = False, max_calls: int | None = None, progress: bool = True,
                 templates_dir: str | None = None, protocol: str = "cosalign",
                 phase: str = "training", taxonomy: Taxonomy = PAPER,
                 input_price_per_mtok: float | None = None, output_price_per_mtok: float | None = None):
        if concurrency < 1 or max_retries < 0:
            raise ValueError("concurrency must be >= 1 and max_retries >= 0")
        if protocol not in ("cosalign", "paper") or phase not in paper.PHASES:
            raise ValueError(f"protocol must be cosalign or paper and phase one of {paper.PHASES}, "
                             f"got {protocol!r} / {phase!r}")
        self.protocol, self.phase = protocol, phase
        self.templates = paper.Templates(templates_dir) if protocol == "paper" else None
        self.model, self.base_url, self.api_key_env = model, base_url, api_key_env
        self.concurrency, self.max_retries = concurrency, max_retries
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.timeout_s, self.max_tokens = timeout_s, max_tokens
        self.dry_run, self.max_calls, self.progress = dry_run, max_calls, progress
        self.taxonomy = taxonomy  # the system prompt lists it, so it is part of every cache key
        self.prices = (input_price_per_mtok, output_price_per_mtok)
        self.cache = JsonCache(cache_dir or default_cache_dir("judge-openai"))
        # paper verdicts come from other questions: a different id keeps their scores apart
        self.judge_id = f"openai:{model}" + ("/paper" if protocol == "paper" else "")
        self.calls_made = 0  # HTTP requests attempted by this object (including retries)
        self._api_key = None
        self._lock = threading.Lock()

    def pending_calls(self, task: str, items: list) -> int:
        """How many distinct uncached requests judging `items` for `task` would send."""
        keys = [k for it in items for _, k, _, _ in self._requests(task, it)]
        return len({k for k in keys if k not in self.cache})

    def estimate(self, task: str, items: list):
        """Calls, tokens and cost of judging `items` for `task` (cosalign.judges.estimate), sending nothing."""
        from cosalign.judges.estimate import Estimate, message_tokens

        todo, cached = {}, 0
        for it in items:
            for _, key, messages, max_tokens in self._requests(task, it):  # one or more calls per item
                if key in self.cache:
                    cached += 1
                else:
                    todo.setdefault(key, (messages, max_tokens))  # identical requests are sent once
        return Estimate(self.judge_id, task, len(todo), cached, len(items),
                        sum(message_tokens(m) for m, _ in todo.values()),
                        sum(t for _, t in todo.values()), *self.prices)

    # -- internals -----------------------------------------------------------------------
    def _paper(self, task: str) -> bool:
        return self.protocol == "paper" and task != "freeform"  # freeform: one call either way

    def _requests(self, task: str, item) -> list[tuple[str, str, list[dict], int]]:
        """(call, cache key, messages, max_tokens) for every call judging one item."""
        if not self._paper(task):
            calls = [(task, prompts.messages_for(task, item, self.taxonomy), self.max_tokens)]
            version = prompts.TEMPLATE_VERSION
        else:
            calls = paper.requests(task, self.phase, item, self.templates)
            version = self.templates.version
        return [(call, cache_key(self.judge_id, version, self.model, msgs,
                                 {"temperature": 0, "max_tokens": max_tokens}), msgs, max_tokens)
                for call, msgs, max_tokens in calls]

    def _run(self, task: str, items: list) -> list:
        per_item = [self._requests(task, it) for it in items]
        first = {}  # identical requests share a key and are sent once
        for reqs in per_item:
            for _, k, msgs, max_tokens in reqs:
                first.setdefault(k, (msgs, max_tokens))
        records = {k: self.cache.get(k) for k in first}
        todo = {k: first[k] for k in first if records[k] is None}
        cached = sum(1 for reqs in per_item for _, k, _, _ in reqs if records[k] is not None)
        if self.dry_run:
            raise DryRun(len(todo), cached, len(items), estimate=self.estimate(task, items))
        if self.max_calls is not None and len(todo) > self.max_calls:
            raise CallBudgetExceeded(
                f"{self.judge_id} {task}: {len(todo)} uncached judge call(s) are needed but "
                f"max_calls is {self.max_calls}; raise judge.max_calls or judge fewer items "
                "(nothing was sent)")
        if todo:
            records.update(self._call_all(task, todo))
        if not self._paper(task):
            return [self._verdict(task, records[reqs[0][1]], self.taxonomy) for reqs in per_item]
        return [paper.combine(task, self.phase, {call: self._output(records[k]) for call, k, _, _ in reqs})
                for reqs in per_item]

    def _client(self) -> openai.OpenAI:
        key = "unused"
        if self.api_key_env:
            key = os.environ.get(self.api_key_env, "")
            if not key:
                raise JudgeError(f"environment variable {self.api_key_env} (judge.api_key_env) "
                                 "is not set; it must hold the API key")
        self._api_key = key
        return openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0,
                             timeout=self.timeout_s)

    def _call_all(self, task: str, todo: dict[str, tuple[list[dict], int]]) -> dict[str, dict]:
        client = self._client()
        out = {}
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = {pool.submit(self._call, client, k, m, n): k for k, (m, n) in todo.items()}
            bar = tqdm(as_completed(futures), total=len(futures), desc=f"judge {task}",
                       disable=not self.progress, file=sys.stderr)
            for fut in bar:
                out[futures[fut]] = fut.result()  # re-raises a fatal JudgeError
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return out

    def _call(self, client: openai.OpenAI, key: str, messages: list[dict], max_tokens: int) -> dict:
        attempts = 0
        try:
            for attempt in Retrying(stop=stop_after_attempt(self.max_retries + 1),
                                    wait=wait_exponential(multiplier=self.backoff_s,
                                                          max=self.backoff_max_s),
                                    retry=retry_if_exception(is_transient), reraise=True):
                with attempt:
                    attempts += 1
                    with self._lock:
                        self.calls_made += 1
                    resp = client.chat.completions.create(
                        model=self.model, messages=messages, temperature=0,
                        max_tokens=max_tokens)
        except _FATAL as exc:
            raise JudgeError(f"{self.judge_id}: {type(exc).__name__}: {self._redact(exc)}") from None
        except openai.OpenAIError as exc:  # a 400 etc. would fail alike on a re-run: not transport
            return {"error": f"{type(exc).__name__} after {attempts} attempt(s): {self._redact(exc)}",
                    "transport": is_transient(exc)}
        if not hasattr(resp, "choices"):  # a non-JSON 200 (a login page, a proxy): not a completion
            return {"error": f"the endpoint answered with something that is not a chat completion: "
                             f"{self._redact(resp)[:200]!r}", "transport": True}
        if not resp.choices:
            return {"error": "the endpoint returned no choices"}
        choice = resp.choices[0]
        refusal = getattr(choice.message, "refusal", None)
        record = {"content": self._redact(choice.message.content or ""), "finish_reason": choice.finish_reason,
                  "refusal": None if refusal is None else self._redact(refusal),
                  "judge_id": self.judge_id,
                  "template_version": self.templates.version if self.templates else prompts.TEMPLATE_VERSION,
                  "model": self.model}
        self.cache.put(key, record)
        return record

    def _redact(self, text) -> str:
        return redact(text, self._api_key)

    @staticmethod
    def _output(rec: dict) -> tuple[str, str | None, bool]:
        """(text, error or None, transport_error) of one call's record, for paper.combine."""
        if "error" in rec:
            return rec["error"], rec["error"], rec.get("transport", False)
        content = rec.get("content") or ""
        if rec.get("refusal"):
            return rec["refusal"], "the judge refused", False
        if rec.get("finish_reason") == "length":
            return content, "judge output truncated at max_tokens", False
        if rec.get("finish_reason") == "content_filter":
            return content, "judge output stopped by a content filter", False
        return content, None, False

    @staticmethod
    def _verdict(task: str, rec: dict, taxonomy: Taxonomy = PAPER):
        if "error" in rec:  # error records are never cached: a re-run calls again
            return parsing.invalid(task, rec["error"], rec["error"], rec.get("transport", False))
        content = rec.get("content") or ""
        if rec.get("refusal"):
            return parsing.invalid(task, rec["refusal"], "the judge refused")
        if rec.get("finish_reason") == "length":
            return parsing.invalid(task, content, "judge output truncated at max_tokens")
        if rec.get("finish_reason") == "content_filter":
            return parsing.invalid(task, content, "judge output stopped by a content filter")
        return parsing.PARSERS[task](content, taxonomy)
