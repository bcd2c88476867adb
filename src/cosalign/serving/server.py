"""An OpenAI-compatible chat endpoint whose system turn is a reviewed safety config.

Each API key (known only by its sha256, see `safety_configs.load_keys`) is bound to one config
version. Per request the server reads the binding and the config file again, so retiring a
config, editing it after approval or revoking a key takes effect at once, and refuses:
401 for an unknown key; 403 for a config that is not approved, was modified after approval, or
cannot be loaded; 400 for a request that sends its own `system`/`developer` message. Otherwise
it puts `system_prompt(config)` in the system turn, renders the chat with control tokens in the
messages neutralised (`cosalign.models.chat.render_ids`), generates with `cosalign.models.generation`, and
answers in the chat.completion format with `system_fingerprint` = `<id>@<version>:<hash12>`
and an `x-cosalign-config` header.

A `passthrough` key (trusted judge or evaluation harnesses) keeps the caller's own system
message; the server honours such keys only when created with allow_passthrough=True.
`debug_echo_prompt=True` adds the rendered prompt (text and token ids) to each response under
the non-standard field `cosalign_debug`, to check what the model saw; it reveals the config
text to callers, so it is for tests and debugging only.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from cosalign.models import chat
from cosalign.serving import lifecycle as sc
from cosalign.models.generation import GenerationSettings, make_generator
from cosalign.core.io import InputError
from cosalign.serving import keys

log = logging.getLogger("cosalign.serving.server")
_FORBIDDEN_ROLES = ("system", "developer")


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
    temperature: float = Field(1.0, ge=0, le=2)  # OpenAI's defaults
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=16)
    seed: int = 0  # fixed by default: the same request gives the same reply
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict | None = None


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


class Server:
    """The model, its lock, and the per-request key and config checks."""

    def __init__(self, model_path: str, keys_file, configs_dir, backend: str, max_new_tokens: int,
                 served_model_name: str | None, allow_passthrough: bool, debug_echo_prompt: bool,
                 generator_options: dict | None):
        self.keys_file, self.configs_dir = Path(keys_file), Path(configs_dir)
        if not self.keys_file.exists():
            raise InputError(self.keys_file, "keys file not found: create keys with "
                                             "`cosalign config keys add --keys FILE --config ID@VER`")
        for digest, binding in keys.load_keys(self.keys_file).items():  # fail fast on a bad file
            if binding != sc.PASSTHROUGH and not sc.path_for(self.configs_dir, *sc.parse_ref(binding)).exists():
                log.warning("key %s... is bound to %s, which is not in %s", digest[:8], binding, configs_dir)
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
        binding = keys.load_keys(self.keys_file).get(keys.hash_key(key))  # re-read: revocations apply now
        if binding is None:
            raise APIError(401, "invalid API key", "authentication_error", "invalid_api_key")
        if binding == sc.PASSTHROUGH:
            if not self.allow_passthrough:
                raise APIError(403, "passthrough keys are disabled on this server (start it with "
                                    "--allow-passthrough)", "permission_error", "passthrough_disabled")
            return binding, None
        try:
            cfg = sc.load(self.configs_dir, binding)
        except InputError as exc:
            log.error("config for %s cannot be loaded: %s", binding, exc)
            raise APIError(403, f"the safety config bound to this key ({binding}) cannot be loaded; "
                                "ask the operator", "permission_error", "config_unavailable") from None
        reason = sc.servable(cfg)
        if reason:
            code = "config_modified" if cfg.state() == "modified-after-approval" else f"config_{cfg.state()}"
            raise APIError(403, reason, "permission_error", code)
        return binding, cfg

    def complete(self, req: ChatRequest, request: Request) -> tuple[dict, str]:
        binding, cfg = self.binding(request)
        if req.model != self.model_id:
            raise APIError(404, f"model {req.model!r} is not served here; this server serves "
                                f"{self.model_id!r}", "invalid_request_error", "model_not_found", "model")
        passthrough = cfg is None
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
            replies = self.generator.generate([msgs], settings, n=req.n, progress=False)[0]
            used = [len(self.tokenizer.encode(t, add_special_tokens=False)) for t in replies]
            shown = chat.render_text(self.tokenizer, msgs) if self.debug_echo_prompt else None
        stops = [req.stop] if isinstance(req.stop, str) else (req.stop or [])
        choices = []
        for i, (text, n_used) in enumerate(zip(replies, used)):
            cut = min((text.find(s) for s in stops if s and s in text), default=-1)
            finish = "stop" if cut >= 0 or n_used < limit else "length"
            choices.append({"index": i, "finish_reason": finish, "logprobs": None,
                            "message": {"role": "assistant", "content": text[:cut] if cut >= 0 else text,
                                        "refusal": None}})
        completion_tokens = sum(used)
        fingerprint = sc.PASSTHROUGH if passthrough else cfg.fingerprint()
        body = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                "created": int(time.time()), "model": self.model_id,
                "system_fingerprint": fingerprint, "choices": choices,
                # completion tokens: the reply text re-tokenized (the generator returns text)
                "usage": {"prompt_tokens": len(ids), "completion_tokens": completion_tokens,
                          "total_tokens": len(ids) + completion_tokens}}
        if self.debug_echo_prompt:
            body["cosalign_debug"] = {"prompt": shown, "prompt_token_ids": ids}
        log.info("completion for %s: %d prompt + %d completion tokens", binding, len(ids), completion_tokens)
        return body, (binding if passthrough else cfg.ref)


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


def create_app(model_path, keys_file, configs_dir="safety_configs", backend: str = "transformers",
               max_new_tokens: int = 256, served_model_name: str | None = None,
               allow_passthrough: bool = False, debug_echo_prompt: bool = False,
               generator_options: dict | None = None) -> FastAPI:
    """The FastAPI app serving `model_path` (loaded now) to the keys in `keys_file`."""
    server = Server(model_path, keys_file, configs_dir, backend, max_new_tokens, served_model_name,
                    allow_passthrough, debug_echo_prompt, generator_options)
    app = FastAPI(title="cosalign serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server

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
        return {"status": "ok", "model": server.model_id}

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
