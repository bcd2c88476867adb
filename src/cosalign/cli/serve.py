"""`cosalign serve`: an OpenAI-compatible endpoint (/v1/chat/completions, /v1/models) for one
checkpoint, each API key bound to one approved safety config version (see cosalign.serving.server and
docs/safety-configs.md)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub model id")
    parser.add_argument("--keys", required=True, help="keys YAML (from `cosalign config keys add`)")
    parser.add_argument("--configs-dir", default="safety_configs", help="safety config registry")
    parser.add_argument("--host", default="127.0.0.1",
                        help="interface to listen on (default loopback; put TLS in front for anything else)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backend", choices=["transformers", "vllm"], default="transformers")
    parser.add_argument("--max-new-tokens", type=int, default=256,
                        help="cap on generated tokens per reply (requests may ask for fewer)")
    parser.add_argument("--served-model-name", help="the model id clients send (default: --model)")
    parser.add_argument("--allow-passthrough", action="store_true",
                        help="honour `passthrough` keys, whose callers send their own system turn")
    parser.add_argument("--debug-echo-prompt", action="store_true",
                        help="add the rendered prompt to each response (reveals configs: tests only)")
    parser.add_argument("--max-body-bytes", type=int, default=None,
                        help="largest request body accepted, else 413 (default 2 MiB)")
    parser.add_argument("--max-prompt-chars", type=int, default=None,
                        help="most characters in a request's messages, else 413 (default 100000)")


def run(args) -> int:
    import uvicorn

    from cosalign.cli.checks import require, require_local_or_hub
    from cosalign.serving import server

    require_local_or_hub(args.model, "--model: checkpoint directory")
    require(args.keys, "--keys: keys file (create keys with `cosalign config keys add`)")
    require(args.configs_dir, "--configs-dir: safety config registry")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.debug_echo_prompt:
        print("warning: --debug-echo-prompt returns each safety config's text to callers",
              file=sys.stderr)
    limits = {"max_body_bytes": args.max_body_bytes or server.MAX_BODY_BYTES,
              "max_prompt_chars": args.max_prompt_chars or server.MAX_PROMPT_CHARS}
    from cosalign.core.io import InputError

    model = Path(args.model)
    if not model.exists() and (model.is_absolute() or args.model.startswith((".", "~"))
                               or len(model.parts) != 2):  # a path, not a Hub id NS/NAME
        raise InputError(args.model, "model folder does not exist (--model: a checkpoint folder "
                                     "or a Hub id NS/NAME)")
    try:
        app = server.create_app(args.model, args.keys, args.configs_dir, backend=args.backend,
                                max_new_tokens=args.max_new_tokens,
                                served_model_name=args.served_model_name,
                                allow_passthrough=args.allow_passthrough,
                                debug_echo_prompt=args.debug_echo_prompt, **limits)
    except ModuleNotFoundError as exc:
        if exc.name != "vllm":
            raise
        print("error: --backend vllm needs vLLM (GPU machines: pip install 'cosalign[paper]')",
              file=sys.stderr)
        return 2
    except OSError as exc:  # transformers: no such folder, not a checkpoint, unknown Hub id
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"error: {args.model}: cannot load the model: {reason}", file=sys.stderr)
        return 2
    # uvicorn's own access log prints the query string, where a careless client puts its key;
    # cosalign.serving.access logs each request's path without it instead.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0
