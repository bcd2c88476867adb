"""pytest fixtures for the loopback Hub, and a tiny real chat model for registry tests.

Import the fixtures into a test module (`from hubserver.fixtures import hub, hub_env`). The Hub
clients read HF_ENDPOINT & co. at import time, so client work runs in subprocesses started
with `hub_env` (see `run_py`, `run_cli`): robust when the whole suite shares one pytest process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .server import HubServer, client_env

FAKE_TOKEN = "hf_fake-token-for-tests-0123456789"  # not a real token (dashes keep secret scanners quiet)


@pytest.fixture
def hub(tmp_path_factory):
    """A fresh HubServer on a free 127.0.0.1 port (requires FAKE_TOKEN for writes)."""
    server = HubServer(root=tmp_path_factory.mktemp("hubstore"), token=FAKE_TOKEN).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub_env(hub, tmp_path_factory) -> dict:
    """os.environ plus the client settings for `hub`, with a private HF_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(client_env(hub.endpoint, tmp_path_factory.mktemp("hf_home"), token=FAKE_TOKEN))
    env["TRANSFORMERS_VERBOSITY"] = "error"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_py(code: str, env: dict, cwd=None, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run Python code in a fresh interpreter with `env`; fail the test with its output."""
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def run_cli(args: list[str], env: dict, cwd, check: bool = True,
            timeout: int = 120) -> subprocess.CompletedProcess:
    """Run `cosalign ARGS` in a fresh interpreter in `cwd` with `env`."""
    main = "import sys; from cosalign.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", main, *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"cosalign {args} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def make_tiny_model(out: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer Llama (hidden 32) with a BPE tokenizer trained here."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = ["You are a helpful assistant.", "Safety config: allowed categories are Violence.",
             "How do I pick a lock on my own front door?", "I cannot help with that request.",
             "Here is a short answer to the question you asked."] * 4
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=300, special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<|im_start|>", eos_token="<|im_end|>")
    fast.chat_template = CHATML
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=128, bos_token_id=fast.bos_token_id,
                         eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = fast.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out
