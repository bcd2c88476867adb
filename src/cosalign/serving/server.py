"""An OpenAI-compatible chat endpoint whose system turn is a reviewed safety config.

Each API key (known only by its sha256, see `cosalign.serving.keys`) is bound to one config
version and the content hash it was issued for. The keys file is re-read when it changes (a bad
edit keeps the last good set, logged once) and the config file on every request, so retiring a
config, editing it or revoking a key takes effect at once. The server refuses: 400 for an
`api_key` query parameter (keys travel only in the Authorization header; query strings are
never logged); 413 for a body over `max_body_bytes` or messages over `max_prompt_chars`, checked
before any tokenizing and outside the model lock; 401 for an unknown key; 403 for a config that
is not approved, was modified after approval, is not the content the key was issued for, or
cannot be loaded; 400 for a request that sends its own `system`/`developer` message or sampling
parameters the model cannot use. Otherwise it puts `system_prompt(config)` in the system turn,
renders the chat with control tokens in the messages neutralised
(`cosalign.models.chat.render_ids`), generates with `cosalign.models.generation`, and answers in
the chat.completion format with `system_fingerprint` = `<id>@<version>:<hash12>`, an
`x-cosalign-config` header, and `usage` counting the tokens the model generated.

A `passthrough` key (trusted judge or evaluation harnesses) keeps the caller's own system
message; the server honours such keys only when created with allow_passthrough=True.
`debug_echo_prompt=True` adds the rendered prompt (text and token ids) to each response under
the non-standard field `cosalign_debug`, to check what the model saw; it reveals the config
text to callers, so it is for tests and debugging only.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException

from cosalign.models import chat
from cosalign.serving import lifecycle as sc
from cosalign.models.generation import GenerationSettings, make_generator
from cosalign.core.io import InputError
from cosalign.serving import keys

log = logging.getLogger("cosalign.serving.server")
access_log = logging.getLogger("cosalign.serving.access")
_FORBIDDEN_ROLES = ("system", "developer")
MAX_BODY_BYTES = 2 * 1024 * 1024  # a full-context prompt of a few thousand tokens is ~100 KB
MAX_PROMPT_CHARS = 100_000  # ~25k tokens of English: over any context this project serves
MIN_TEMPERATURE = 0.01  # below it logits / temperature can overflow half precision (100 / 0.001 > 65504)
SEED_RANGE = (-(2**63), 2**63 - 1)  # int64, as OpenAI's API documents seed
_KEY_QUERY_NAMES = {"api_key", "api-key", "apikey"}
# An oversized body is read and dropped up to this many bytes before the 413 goes out, so that
# clients that send the whole body before reading (urllib, httpx) see the 413 rather than a reset
# connection; past it the server answers and closes.
_DRAIN_LIMIT = 64 * 2**20


class APIError(Exception):
    """An error answered as OpenAI does: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type_: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}
        return JSONResponse(body, status_code=self.status)


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown OpenAI options are accepted and ignored
    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: float = Field(1.0, ge=0, le=2, allow_inf_nan=False)  # OpenAI's defaults
    top_p: float = Field(1.0, gt=0, le=1, allow_inf_nan=False)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=16)
    # fixed by default: the same request gives the same reply
    seed: int = Field(0, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict | None = None

    @field_validator("temperature")
    @classmethod
    def _usable_temperature(cls, value: float) -> float:
        if 0 < value < MIN_TEMPERATURE:
            raise ValueError(f"temperature {value:g} is too small to sample with: use 0 for greedy "
                             f"decoding or a value from {MIN_TEMPERATURE} to 2")
        return value


def _text(msg: Message, i: int) -> str:
    if isinstance(msg.content, str):
        return msg.content
    if isinstance(msg.content, list):
        parts = []
        for part in msg.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise APIError(400, "only text content parts are supported", "invalid_request_error",
                               "unsupported_content", f"messages[{i}].content")
            parts.append(part["text"])
        return "\n".join(parts)
    raise APIError(400, f"messages[{i}] has no text content", "invalid_request_error",
                   "missing_content", f"messages[{i}].content")


def build_messages(system_prompt: str | None, turns: list[dict]) -> list[dict]:
    """[system] + earlier user/assistant turns + the final user turn."""
    *history, last = turns
    msgs = chat.messages(system_prompt, last["content"])
    return msgs[:-1] + history + msgs[-1:]


def check_size(messages: list[Message], max_chars: int) -> None:
    """413 when the messages' text is over `max_chars`: checked before any tokenizing."""
    total = 0
    for msg in messages:
        if isinstance(msg.content, str):
            total += len(msg.content)
        elif isinstance(msg.content, list):
            total += sum(len(p.get("text") or "") for p in msg.content if isinstance(p.get("text"), str))
    if total > max_chars:
        raise APIError(413, f"the messages have {total} characters; this server takes at most "
                            f"{max_chars}", "invalid_request_error", "prompt_too_large", "messages")


def split_request(messages: list[Message], passthrough: bool, bound: str) -> tuple[str | None, list[dict]]:
    """The caller's system text (passthrough keys only) and its user/assistant turns, checked."""
    system, turns = [], []
    for i, msg in enumerate(messages):
        if msg.role in _FORBIDDEN_ROLES:
            if not passthrough:
                raise APIError(400, f"messages[{i}] has role {msg.role!r}: on this endpoint the system "
                                    f"turn is the safety config bound to your API key ({bound}) and "
                                    "cannot be replaced or extended; send only user and assistant "
                                    "messages", "invalid_request_error", "system_message_not_allowed",
                               f"messages[{i}].role")
            system.append(_text(msg, i))
        elif msg.role in ("user", "assistant"):
            turns.append({"role": msg.role, "content": _text(msg, i)})
        else:
            raise APIError(400, f"messages[{i}] has unsupported role {msg.role!r} (user, assistant)",
                           "invalid_request_error", "unsupported_role", f"messages[{i}].role")
    if not turns or turns[-1]["role"] != "user":
        raise APIError(400, "the last message must be a user message", "invalid_request_error",
                       "last_message_not_user", "messages")
    return ("\n\n".join(system) if system else None), turns


class KeyRing:
    """The keys file as last read successfully, re-read whenever the file changes.

    A file that fails to load (a bad hand edit) leaves the last good set in force and is logged
    once per version of the file, instead of failing every request; a missing file means no
    keys (fail closed). Writers replace the file atomically (`keys.save_keys`), so a reader sees
    either the old file or the new one."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self._bad: tuple | None = None
        signature = self._stat()  # before reading: a change in between shows at the next request
        self._bindings = keys.load_bindings(path)  # at startup a bad file is an error
        self._signature = signature

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def bindings(self) -> dict[str, "keys.Binding"]:
        signature = self._stat()
        with self._lock:
            if signature == self._signature or signature == self._bad:
                return self._bindings
            try:
                fresh = keys.load_bindings(self.path)
            except (InputError, OSError, UnicodeDecodeError) as exc:
                self._bad = signature
                log.error("keys file not reloaded, still serving the %d keys read before: %s",
                          len(self._bindings), str(exc).splitlines()[0])
                return self._bindings
            if signature is None:
                log.warning("keys file %s is gone: every key is refused until it is back", self.path)
            self._bindings, self._signature, self._bad = fresh, signature, None
            return fresh


class Server:
    """The model, its lock, and the per-request key and config checks."""

    def __init__(self, model_path: str, keys_file, configs_dir, backend: str, max_new_tokens: int,
                 served_model_name: str | None, allow_passthrough: bool, debug_echo_prompt: bool,
                 generator_options: dict | None, max_prompt_chars: int = MAX_PROMPT_CHARS):
        self.keys_file, self.configs_dir = Path(keys_file), Path(configs_dir)
        if not self.keys_file.exists():
            raise InputError(self.keys_file, "keys file not found: create keys with "
                                             "`cosalign config keys add --keys FILE --config ID@VER`")
        self.keyring = KeyRing(self.keys_file)  # fails fast on a bad file
        for digest, binding in self.keyring.bindings().items():
            if binding.passthrough:
                continue
            if binding.content_hash is None:
                log.warning("key %s... is bound to %s without a content hash: refused until re-pinned "
                            "with `cosalign config keys rebind --from %s --to %s`", digest[:8],
                            binding.ref, binding.ref, binding.ref)
            elif not sc.path_for(self.configs_dir, *sc.parse_ref(binding.ref)).exists():
                log.warning("key %s... is bound to %s, which is not in %s", digest[:8], binding.ref,
                            configs_dir)
        self.max_prompt_chars = max_prompt_chars
        self.model_id = served_model_name or str(model_path)
        self.max_new_tokens = max_new_tokens
        self.allow_passthrough, self.debug_echo_prompt = allow_passthrough, debug_echo_prompt
        self.generator = make_generator(backend, str(model_path), **(generator_options or {}))
        self.tokenizer = self.generator.tokenizer
        model = getattr(self.generator, "model", None)  # the transformers backend exposes it
        self.context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        self.lock = threading.Lock()  # one model, one generation at a time
        self.created = int(time.time())

    def binding(self, request: Request) -> tuple[str, sc.SafetyConfig | None]:
        """Authenticate; return the binding and, for a config key, its servable config."""
        auth = request.headers.get("authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not key:
            raise APIError(401, "missing API key: send `Authorization: Bearer <key>`",
                           "authentication_error", "missing_api_key")
        bound = self.keyring.bindings().get(keys.hash_key(key))  # revocations apply now
        if bound is None:
            raise APIError(401, "invalid API key", "authentication_error", "invalid_api_key")
        binding = bound.ref
        if bound.passthrough:
            if not self.allow_passthrough:
                raise APIError(403, "passthrough keys are disabled on this server (start it with "
                                    "--allow-passthrough)", "permission_error", "passthrough_disabled")
            return binding, None
        if bound.content_hash is None:
            raise APIError(403, f"this key is bound to {binding} without the content hash it was "
                                "issued for (a key from before hashes were pinned); the operator "
                                f"re-pins it with `cosalign config keys rebind --from {binding} --to "
                                f"{binding}` after checking `cosalign config show {binding}`",
                           "permission_error", "key_not_pinned")
        try:
            cfg = sc.load(self.configs_dir, binding)
            reason = sc.servable(cfg, bound.content_hash)
        except InputError as exc:
            log.error("config for %s cannot be loaded: %s", binding, exc)
            raise APIError(403, f"the safety config bound to this key ({binding}) cannot be loaded; "
                                "ask the operator", "permission_error", "config_unavailable") from None
        if reason:
            state = cfg.state()
            code = f"config_{state}" if state in ("draft", "retired") else "config_modified"
            raise APIError(403, reason, "permission_error", code)
        return binding, cfg

    def complete(self, req: ChatRequest, request: Request) -> tuple[dict, str]:
        binding, cfg = self.binding(request)
        if req.model != self.model_id:
            raise APIError(404, f"model {req.model!r} is not served here; this server serves "
                                f"{self.model_id!r}", "invalid_request_error", "model_not_found", "model")
        passthrough = cfg is None
        check_size(req.messages, self.max_prompt_chars)  # before any tokenizing, outside the lock
        client_system, turns = split_request(req.messages, passthrough, binding)
        system = client_system if passthrough else sc.system_prompt(cfg)
        msgs = build_messages(system, turns)
        limit = min(x for x in (req.max_completion_tokens, req.max_tokens, self.max_new_tokens) if x)
        if req.temperature == 0 and req.n != 1:
            raise APIError(400, "n > 1 needs temperature > 0 (greedy decoding gives one reply)",
                           "invalid_request_error", "invalid_n", "n")
        settings = GenerationSettings(max_new_tokens=limit, temperature=req.temperature,
                                      top_p=req.top_p, batch_size=1, seed=req.seed)
        # The tokenizer is shared too (Rust tokenizers can fail with "Already borrowed" when
        # one is used from two threads), so every use of it sits under the lock.
        with self.lock:
            ids = chat.render_ids(self.tokenizer, msgs)
            if self.context and len(ids) + limit > self.context:
                raise APIError(400, f"the prompt ({len(ids)} tokens, safety config included) plus "
                                    f"max_tokens ({limit}) exceeds the model's context of {self.context}",
                               "invalid_request_error", "context_length_exceeded", "messages")
            replies = self._generate(msgs, settings, req.n, limit)
            shown = chat.render_text(self.tokenizer, msgs) if self.debug_echo_prompt else None
        stops = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        choices = []
        used = [n_used for _, n_used, _ in replies]
        for i, (text, n_used, ended) in enumerate(replies):
            cut = min((text.find(s) for s in stops if s and s in text), default=-1)
            finish = "stop" if cut >= 0 or ended else "length"
            choices.append({"index": i, "finish_reason": finish, "logprobs": None,
                            "message": {"role": "assistant", "content": text[:cut] if cut >= 0 else text,
                                        "refusal": None}})
        completion_tokens = sum(used)
        fingerprint = sc.PASSTHROUGH if passthrough else cfg.fingerprint()
        body = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                "created": int(time.time()), "model": self.model_id,
                "system_fingerprint": fingerprint, "choices": choices,
                "usage": {"prompt_tokens": len(ids), "completion_tokens": completion_tokens,
                          "total_tokens": len(ids) + completion_tokens}}
        if self.debug_echo_prompt:
            body["cosalign_debug"] = {"prompt": shown, "prompt_token_ids": ids}
        log.info("completion for %s: %d prompt + %d completion tokens", binding, len(ids), completion_tokens)
        return body, (binding if passthrough else cfg.ref)

    def _generate(self, msgs: list[dict], settings: GenerationSettings, n: int,
                  limit: int) -> list[tuple[str, int, bool]]:
        """`n` replies as (text, tokens generated, ended with an end token); called under the lock.

        Tokens generated are the reply's new ids up to and including its end token (the padding
        a batch adds after it is not generated). A backend that returns text only (vLLM here) is
        counted by re-tokenizing the text, which can differ by a token or two."""
        gen = self.generator
        if hasattr(gen, "generate_ids"):
            out = []
            for ids in gen.generate_ids([msgs], settings, n=n, progress=False)[0]:
                kept, ended = gen.until_end(ids)
                text = self.tokenizer.decode(kept, skip_special_tokens=True).strip()
                out.append((text, len(kept) + int(ended), ended))
            return out
        texts = gen.generate([msgs], settings, n=n, progress=False)[0]
        counts = [len(self.tokenizer.encode(t, add_special_tokens=False)) for t in texts]
        return [(t, c, c < limit) for t, c in zip(texts, counts)]


def _stream(body: dict, include_usage: bool):
    """The finished completion as server-sent chunks (one content delta per choice)."""
    base = {k: body[k] for k in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"
    for c in body["choices"]:
        delta = {"role": "assistant", "content": c["message"]["content"]}
        for d, finish in ((delta, None), ({}, c["finish_reason"])):
            chunk = dict(base, choices=[{"index": c["index"], "delta": d, "finish_reason": finish}])
            yield f"data: {json.dumps(chunk)}\n\n"
    if include_usage:
        yield f"data: {json.dumps(dict(base, choices=[], usage=body['usage']))}\n\n"
    yield "data: [DONE]\n\n"


class RequestGuard:
    """ASGI middleware in front of everything: the access log (path without its query string:
    a key sent as `?api_key=` never reaches a log), 400 for an `api_key` query parameter, and
    413 for a body over `max_body_bytes` (known from Content-Length, or as soon as a chunked body
    passes the limit; the rest is read and dropped, never kept), before the body is parsed or
    any lock is taken."""

    def __init__(self, app, max_body_bytes: int):
        self.app, self.max_body_bytes = app, max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 0}

        async def send_logged(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if scope["method"] in ("POST", "PUT", "PATCH"):
                if refusal is not None:
                    await _drain(receive)  # refused before reading: drop the body
                else:
                    body, refusal = await self._read_body(receive)
                    if body is not None:
                        receive = _replay(body, receive)
            if refusal is not None:
                await refusal.response()(scope, receive, send_logged)
            else:
                await self.app(scope, receive, send_logged)
        finally:
            client = scope.get("client") or ("-", 0)
            access_log.info('%s:%s "%s %s" %s %.3fs', client[0], client[1], scope["method"],
                            scope["path"], status["code"], time.perf_counter() - started)

    def _refusal(self, scope) -> "APIError | None":
        query = scope.get("query_string", b"").decode("latin-1")
        if any(name.lower() in _KEY_QUERY_NAMES for name, _ in parse_qsl(query, keep_blank_values=True)):
            return APIError(400, "API keys are accepted only in the `Authorization: Bearer` header, "
                                 "never in the URL; revoke a key that was sent this way",
                            "invalid_request_error", "api_key_in_query", "api_key")
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return APIError(400, "bad Content-Length", "invalid_request_error", "invalid_request")
                if length > self.max_body_bytes:
                    return self._too_large(length)
        return None

    def _too_large(self, length: int | None) -> "APIError":
        size = f"{length} bytes" if length is not None else "more bytes"
        return APIError(413, f"the request body has {size}; this server takes at most "
                             f"{self.max_body_bytes}", "invalid_request_error", "request_too_large")

    async def _read_body(self, receive) -> tuple[bytes | None, "APIError | None"]:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None, None  # the client went away: let the app see the disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                if not message.get("more_body", False):
                    return None, self._too_large(size)
                await _drain(receive)
                return None, self._too_large(None)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None


async def _drain(receive) -> None:
    """Read and drop the rest of a refused body (up to _DRAIN_LIMIT bytes)."""
    dropped = 0
    while dropped <= _DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        dropped += len(message.get("body", b""))


def _replay(body: bytes, receive):
    """A `receive` that hands the app the body read already, then the client's later messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay():
        return pending.pop() if pending else await receive()
    return replay


def create_app(model_path, keys_file, configs_dir="safety_configs", backend: str = "transformers",
               max_new_tokens: int = 256, served_model_name: str | None = None,
               allow_passthrough: bool = False, debug_echo_prompt: bool = False,
               generator_options: dict | None = None, max_body_bytes: int = MAX_BODY_BYTES,
               max_prompt_chars: int = MAX_PROMPT_CHARS) -> FastAPI:
    """The FastAPI app serving `model_path` (loaded now) to the keys in `keys_file`."""
    server = Server(model_path, keys_file, configs_dir, backend, max_new_tokens, served_model_name,
                    allow_passthrough, debug_echo_prompt, generator_options, max_prompt_chars)
    app = FastAPI(title="cosalign serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"] if p != "body")
        return APIError(400, f"{loc}: {err['msg']}", "invalid_request_error", "invalid_request", loc).response()

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("request failed")  # the traceback stays in the server log
        return APIError(500, "internal server error", "server_error", "internal_error").response()

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return APIError(exc.status_code, str(exc.detail), "invalid_request_error", "not_found").response()

    @app.get("/health")
    def health():
        return {"status": "ok"}  # no model id: it is often a local path

    @app.get("/v1/models")
    def models(request: Request):
        server.binding(request)
        return {"object": "list", "data": [{"id": server.model_id, "object": "model",
                                            "created": server.created, "owned_by": "cosalign"}]}

    @app.post("/v1/chat/completions")
    def completions(req: ChatRequest, request: Request):
        body, bound = server.complete(req, request)
        headers = {"x-cosalign-config": bound}
        if req.stream:
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            return StreamingResponse(_stream(body, include_usage), media_type="text/event-stream",
                                     headers=headers)
        return JSONResponse(body, headers=headers)

    return app
