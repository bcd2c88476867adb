"""Compute precision (cosalign.core.precision) and padding-free SFT, with real TRL on the tiny Llama."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from cosalign.core import precision
from cosalign.core.io import InputError, write_parquet
from cosalign.training import TrainingParams, sft_dataset, train_sft
from cosalign.training.trainers import trainer_kwargs
from cosalign.training.truncation import tokenize_sft

from test_training import SFT, preferences

QUICK = {"seed": 3, "optim": {"learning_rate": 5.0e-3, "max_steps": 3, "per_device_train_batch_size": 4}}


def test_auto_follows_the_cpu_flags():
    assert precision.cpu_bf16_supported("flags : fpu avx512f avx512_bf16 amx_tile")
    assert precision.cpu_bf16_supported("flags : fpu amx_bf16")
    assert precision.resolve("fp32") == "fp32" and precision.resolve("bf16") == "bf16"
    assert precision.resolve("auto") == ("bf16" if precision.cpu_bf16_supported() else "fp32")
    with pytest.raises(InputError, match="precision"):
        precision.check("half")
    with pytest.raises(InputError, match="precision"):
        TrainingParams.from_dict(SFT, "sft", compute="bfloat16")


def test_a_params_file_without_the_key_keeps_float32():
    assert precision.from_params({})["resolved"] == "fp32"
    assert precision.generator_options("transformers", {}, "fp32") == {}
    assert precision.generator_options("transformers", None, "bf16") == {"dtype": "bfloat16"}
    assert precision.generator_options("transformers", {"dtype": "float32"}, "bf16") == {"dtype": "float32"}
    assert precision.generator_options("vllm", {"dtype": "bfloat16"}, "bf16") == {"dtype": "bfloat16"}
    assert precision.label({}) == "" and precision.label({"dtype": "bfloat16"}) == "@bf16"


def test_fp32_leaves_the_trainer_arguments_as_before(tmp_path):
    old = trainer_kwargs(TrainingParams.from_dict(SFT, "sft"), tmp_path)
    assert old["bf16"] is False and old["use_cpu"] is True
    assert trainer_kwargs(TrainingParams.from_dict(SFT, "sft", compute="fp32"), tmp_path) == old
    bf16 = trainer_kwargs(TrainingParams.from_dict(SFT, "sft", compute="bf16"), tmp_path)
    assert bf16 == {**old, "bf16": True}
    assert bf16["model_init_kwargs"] == {"dtype": "float32"}  # float32 master weights


def test_bf16_trains_float32_master_weights_and_records_the_choice(tiny_model_dir, tmp_path):
    pref = tmp_path / "preferences.parquet"
    write_parquet(preferences(), pref)
    runs = {}
    for name, compute in (("fp32", "fp32"), ("bf16", "bf16")):
        params = TrainingParams.from_dict(QUICK, "sft", compute=compute)
        summary = train_sft(pref, tiny_model_dir, tmp_path / name, tmp_path / f"r-{name}", params)
        runs[name] = (summary, load_file(tmp_path / name / "model.safetensors"),
                      json.loads((tmp_path / name / "cosalign_training.json").read_text()))
    (s32, w32, m32), (s16, w16, m16) = runs["fp32"], runs["bf16"]
    assert all(t.dtype == torch.float32 for t in w16.values())  # master weights stay float32
    assert s16["bf16"] is True and s32["bf16"] is False
    assert m16["precision"]["setting"] == "bf16" and m16["precision"]["bf16_autocast"] is True
    assert m32["precision"]["bf16_autocast"] is False and m32["precision"]["master_weights"] == "float32"
    # Different arithmetic, same training: the weights differ, the loss stays close.
    assert any(not torch.equal(w32[k], w16[k]) for k in w32)
    assert abs(s16["train_loss"] - s32["train_loss"]) < 0.05 * abs(s32["train_loss"])


def test_truncation_keeps_the_start_and_drops_rows_without_answer(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ds = sft_dataset(preferences())
    full, report = tokenize_sft(ds, tok, None)
    assert report.truncated == report.dropped == 0
    lengths = [len(r) for r in full["input_ids"]]
    starts = [m.index(1) for m in full["completion_mask"]]
    cut = (min(lengths) + max(starts)) // 2 if min(lengths) > max(starts) else max(starts) + 1
    short, report = tokenize_sft(ds, tok, cut)
    assert report.truncated == sum(n > cut for n in lengths) > 0
    assert all(len(r) <= cut for r in short["input_ids"])
    kept = [i for i, s in enumerate(starts) if s < cut]
    assert report.dropped == len(lengths) - len(kept)
    for row, i in zip(short["input_ids"], kept):
        assert row == full["input_ids"][i][:len(row)]  # keep-start: a prefix of the full row
    # A max_length inside every prompt leaves no answer at all.
    with pytest.raises(ValueError, match="max_length"):
        tokenize_sft(ds, tok, min(starts))


def test_padding_free_sft_computes_the_padded_loss_and_truncates(tiny_model_dir, tmp_path):
    pref = tmp_path / "preferences.parquet"
    write_parquet(preferences(), pref)
    one = {"seed": 3, "optim": {"learning_rate": 1.0e-9, "max_steps": 1, "per_device_train_batch_size": 4}}
    losses = {}
    for name, free in (("padded", False), ("free", True)):
        params = TrainingParams.from_dict({**one, "system": {"padding_free": free}}, "sft")
        losses[name] = train_sft(pref, tiny_model_dir, tmp_path / name, tmp_path / f"r-{name}", params)["train_loss"]
    assert losses["free"] > 0
    assert losses["free"] == pytest.approx(losses["padded"], rel=1e-4)  # attention stays within each example
    # Truncation applies: with a max_length inside the answers the loss covers fewer tokens, so it changes.
    from transformers import AutoTokenizer
    full, _ = tokenize_sft(sft_dataset(preferences()), AutoTokenizer.from_pretrained(tiny_model_dir), None)
    cut_at = max(m.index(1) for m in full["completion_mask"]) + 2
    assert cut_at < max(len(r) for r in full["input_ids"])
    short = TrainingParams.from_dict({**one, "data": {"max_length": cut_at}, "system": {"padding_free": True}},
                                     "sft")
    cut = train_sft(pref, tiny_model_dir, tmp_path / "cut", tmp_path / "r-cut", short)
    assert cut["train_loss"] != pytest.approx(losses["free"], rel=1e-4)


def test_bf16_generation_loads_bfloat16_weights_and_labels_its_rows(tiny_model_dir, tmp_path, monkeypatch):
    import pandas as pd

    from cosalign.data.responses import ResponsesParams, generate_responses
    from cosalign.models.generation import GenerationSettings, make_generator

    options = precision.generator_options("transformers", {}, "bf16")
    gen = make_generator("transformers", str(tiny_model_dir), **options)
    assert gen.model.dtype == torch.bfloat16 and gen.name.endswith("@bf16")
    settings = GenerationSettings(max_new_tokens=4, temperature=0.0, batch_size=2)
    assert len(gen.generate([[{"role": "user", "content": "hi"}]] * 2, settings, progress=False)) == 2
    assert make_generator("transformers", str(tiny_model_dir)).name == f"transformers:{tiny_model_dir}"

    prompts = pd.DataFrame({"prompt_id": ["p1"], "prompt": ["How do I bake bread?"]})
    configs = pd.DataFrame({"config_id": ["c1"], "prompt_id": ["p1"], "system_prompt": ["Be safe."]})
    p = ResponsesParams(backend="transformers", model_name="base", seed=0, samples=1, max_new_tokens=4,
                        temperature=0.7, top_p=0.95, batch_size=2, work_batch_size=8,
                        generic_system_prompt=False, template_responses=[])
    monkeypatch.chdir(tmp_path)  # the resumable work queue keeps its checkpoints under the cwd
    rows = generate_responses(prompts, configs, p, str(tiny_model_dir), precision="bf16")
    assert set(rows["generator"]) == {"transformers:base@bf16"}
