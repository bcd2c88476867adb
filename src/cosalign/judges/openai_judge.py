"""A judge behind any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server, ...).

Calls go through the official `openai` client at temperature 0 with the project's prompt
templates; tenacity owns retries (exponential backoff on 429, 5xx, timeouts and connection
errors; the client's own retries are off so attempts are counted in one place). Outputs are
cached on disk per request, so a re-run spends no calls. An item whose retries run out is
recorded invalid with the error text in `raw` (and `transport_error` set when the endpoint never
produced a completion: a re-run may succeed); authentication, permission and unknown-model
errors stop the run instead, since every item would fail the same way.

The API key is read from the environment variable named by `api_key_env`; it is never a
parameter, never cached and is redacted from recorded error text.
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
from cosalign.judges import parsing, prompts
from cosalign.judges.base import BaseJudge, CallBudgetExceeded, DryRun, JudgeError, default_cache_dir
from cosalign.judges.cache import JsonCache, cache_key

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
    dry_run: count the calls a run would make (uncached items), their tokens and cost, and raise
        DryRun, calling nothing (cosalign.judges.estimate).
    input_price_per_mtok / output_price_per_mtok: prices per million tokens, for the dry run's cost.
    max_calls: refuse (CallBudgetExceeded) before any call when more uncached items remain.
    progress: show a tqdm bar.
    """

    def __init__(self, model: str = "gpt-4o", base_url: str | None = None,
                 api_key_env: str | None = "OPENAI_API_KEY", concurrency: int = 16,
                 max_retries: int = 5, backoff_s: float = 1.0, backoff_max_s: float = 60.0,
                 timeout_s: float = 60.0, max_tokens: int = 1024, cache_dir: str | None = None,
                 dry_run: bool = False, max_calls: int | None = None, progress: bool = True,
                 taxonomy: Taxonomy = PAPER,
                 input_price_per_mtok: float | None = None, output_price_per_mtok: float | None = None):
        if concurrency < 1 or max_retries < 0:
            raise ValueError("concurrency must be >= 1 and max_retries >= 0")
        self.model, self.base_url, self.api_key_env = model, base_url, api_key_env
        self.concurrency, self.max_retries = concurrency, max_retries
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.timeout_s, self.max_tokens = timeout_s, max_tokens
        self.dry_run, self.max_calls, self.progress = dry_run, max_calls, progress
        self.taxonomy = taxonomy  # the system prompt lists it, so it is part of every cache key
        self.prices = (input_price_per_mtok, output_price_per_mtok)
        self.cache = JsonCache(cache_dir or default_cache_dir("judge-openai"))
        self.judge_id = f"openai:{model}"
        self.calls_made = 0  # HTTP requests attempted by this object (including retries)
        self._api_key = None
        self._lock = threading.Lock()

    def pending_calls(self, task: str, items: list) -> int:
        """How many distinct uncached requests judging `items` for `task` would send."""
        keys = [self._key(prompts.messages_for(task, it, self.taxonomy)) for it in items]
        return len({k for k in keys if k not in self.cache})

    def estimate(self, task: str, items: list):
        """Calls, tokens and cost of judging `items` for `task` (cosalign.judges.estimate), sending nothing."""
        from cosalign.judges.estimate import Estimate, message_tokens

        todo, cached = {}, 0
        for it in items:
            messages = prompts.messages_for(task, it, self.taxonomy)
            key = self._key(messages)
            if key in self.cache:
                cached += 1
            else:
                todo.setdefault(key, messages)  # identical requests are sent once
        return Estimate(self.judge_id, task, len(todo), cached, len(items),
                        sum(message_tokens(m) for m in todo.values()), len(todo) * self.max_tokens, *self.prices)

    # -- internals -----------------------------------------------------------------------
    def _key(self, messages: list[dict]) -> str:
        return cache_key(self.judge_id, prompts.TEMPLATE_VERSION, self.model, messages,
                         {"temperature": 0, "max_tokens": self.max_tokens})

    def _run(self, task: str, items: list) -> list:
        msgs = [prompts.messages_for(task, it, self.taxonomy) for it in items]
        keys = [self._key(m) for m in msgs]
        first = dict(zip(keys, msgs))  # identical requests share a key and are sent once
        records = {k: self.cache.get(k) for k in first}
        todo = {k: first[k] for k in dict.fromkeys(keys) if records[k] is None}
        cached = sum(1 for k in keys if records[k] is not None)
        if self.dry_run:
            raise DryRun(len(todo), cached, len(items), estimate=self.estimate(task, items))
        if self.max_calls is not None and len(todo) > self.max_calls:
            raise CallBudgetExceeded(
                f"{self.judge_id} {task}: {len(todo)} uncached item(s) need judge calls but "
                f"max_calls is {self.max_calls}; raise judge.max_calls or judge fewer items "
                "(nothing was sent)")
        if todo:
            records.update(self._call_all(task, todo))
        return [self._verdict(task, records[k], self.taxonomy) for k in keys]

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

    def _call_all(self, task: str, todo: dict[str, list[dict]]) -> dict[str, dict]:
        client = self._client()
        out = {}
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = {pool.submit(self._call, client, k, m): k for k, m in todo.items()}
            bar = tqdm(as_completed(futures), total=len(futures), desc=f"judge {task}",
                       disable=not self.progress, file=sys.stderr)
            for fut in bar:
                out[futures[fut]] = fut.result()  # re-raises a fatal JudgeError
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return out

    def _call(self, client: openai.OpenAI, key: str, messages: list[dict]) -> dict:
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
                        max_tokens=self.max_tokens)
        except _FATAL as exc:
            raise JudgeError(f"{self.judge_id}: {type(exc).__name__}: {self._redact(exc)}") from None
        except openai.OpenAIError as exc:  # a 400 etc. would fail alike on a re-run: not transport
            return {"error": f"{type(exc).__name__} after {attempts} attempt(s): {self._redact(exc)}",
                    "transport": is_transient(exc)}
        if not hasattr(resp, "choices"):  # a non-JSON 200 (a login page, a proxy): not a completion
            return {"error": f"the endpoint answered with something that is not a chat completion: "
                             f"{str(resp)[:200]!r}", "transport": True}
        if not resp.choices:
            return {"error": "the endpoint returned no choices"}
        choice = resp.choices[0]
        record = {"content": choice.message.content or "", "finish_reason": choice.finish_reason,
                  "refusal": getattr(choice.message, "refusal", None),
                  "judge_id": self.judge_id, "template_version": prompts.TEMPLATE_VERSION,
                  "model": self.model}
        self.cache.put(key, record)
        return record

    def _redact(self, exc: BaseException) -> str:
        text = str(exc)
        if self._api_key and self._api_key != "unused":
            text = text.replace(self._api_key, "[redacted]")
        return text

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
