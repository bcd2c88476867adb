"""The local transformers judge on a tiny random Llama built here (real generate, real template).

A random model cannot write a verdict, so every item must come back invalid with its raw text
kept; the test checks the plumbing: one verdict per item in input order, left-padded batches,
greedy determinism and the truncation rule.
"""

from __future__ import annotations

import pytest

from cosalign.judges import make_judge

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    corpus = ["risk categories violence privacy JSON helpfulness addressed request response",
              '{"risk_categories": [], "addressed": true, "helpfulness": 3}'] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>",
                                   additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHATML
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=fast.vocab_size, hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=4096, pad_token_id=fast.pad_token_id,
                         eos_token_id=fast.eos_token_id)
    path = tmp_path_factory.mktemp("tiny-judge")
    LlamaForCausalLM(config).save_pretrained(path)
    fast.save_pretrained(path)
    return str(path)


def test_local_judge_keeps_every_item_and_flags_invalid(tiny_model):
    judge = make_judge({"name": "local", "model": tiny_model, "batch_size": 2,
                        "max_new_tokens": 6, "progress": False})
    items = [("short q", "a"), ("a much longer question " * 5, "answer " * 10), ("q3", "r3")]
    first = judge.judge_responses(items)
    assert len(first) == 3 and all(not v.valid for v in first)
    assert all(v.helpfulness == 0 and v.risk_categories == [] for v in first)
    assert all(v.error for v in first)
    assert judge.judge_responses(items) == first  # greedy: deterministic
    labels = judge.label_prompts(["one", "two"])
    assert [v.valid for v in labels] == [False, False]
    assert judge.judge_id.startswith("local:")


def test_local_judge_needs_a_model_path():
    with pytest.raises(ValueError, match="judge.model"):
        make_judge({"name": "local"})


def test_truncation_rule(tiny_model):
    judge = make_judge({"name": "local", "model": tiny_model, "max_new_tokens": 3, "progress": False})
    [v] = judge.judge_responses([("q", "r")])
    # three random tokens without an end token: truncated, and the text is kept
    assert not v.valid and v.error == "judge output truncated at max_new_tokens" and v.raw
