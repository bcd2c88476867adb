"""Issue #20: no test-split prompt reaches training.

The heldout benchmark samples the prompts stage's test split (data/prompts.parquet, split == "test").
None of those prompts, by id or by text, may appear in configs, responses, judgments, preferences or
the SFT rows. Checked on the shared tiny `dvc repro`, and on this checkout's own default-run outputs
when they are present (after `make run` or `dvc pull`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cosalign.core.io import read_parquet

REPO = Path(__file__).resolve().parent.parent


def _user_texts(messages) -> set[str]:
    return {m["content"] for m in messages if m["role"] == "user"}


def training_leaks(root: Path) -> list[str]:
    """Every place a test-split prompt appears in the training artifacts under root, as text."""
    from cosalign.training.trainers import sft_dataset

    prompts = read_parquet(root / "data/prompts.parquet")
    test = prompts[prompts["split"] == "test"]
    test_ids, test_texts = set(test["prompt_id"]), set(test["prompt"])
    assert test_ids, "the prompts stage wrote no test split: nothing to hold out"

    configs = read_parquet(root / "data/configs.parquet")
    responses = read_parquet(root / "data/responses.parquet")
    judgments = read_parquet(root / "data/judgments.parquet")
    pref = read_parquet(root / "data/preferences.parquet")
    judged_prompt = dict(zip(responses["response_id"], responses["prompt_id"]))

    leaks = [f"configs.parquet: {p}" for p in set(configs["prompt_id"]) & test_ids]
    leaks += [f"responses.parquet: {p}" for p in set(responses["prompt_id"]) & test_ids]
    leaks += [f"judgments.parquet: {p}" for p in {judged_prompt[r] for r in judgments["response_id"]} & test_ids]
    leaks += [f"preferences.parquet: {p}" for p in set(pref["prompt_id"]) & test_ids]
    pref_texts = set().union(*(_user_texts(m) for m in pref["prompt"]))
    leaks += [f"preferences.parquet text: {t[:60]!r}" for t in pref_texts & test_texts]
    sft = sft_dataset(pref)
    sft_texts = set().union(*(_user_texts(m) for m in sft["prompt"]))
    leaks += [f"SFT rows text: {t[:60]!r}" for t in sft_texts & test_texts]
    assert len(pref) > 0 and len(sft) > 0, "no training rows to check"
    return leaks


def test_tiny_run_trains_on_no_test_prompt(tiny_pipeline):
    assert training_leaks(tiny_pipeline) == []


def test_leak_check_finds_a_planted_test_prompt(tiny_pipeline, tmp_path):
    """The check itself can fail: a preferences file with one test prompt's text is reported."""
    import shutil

    root = tmp_path / "copy"
    (root / "data").mkdir(parents=True)
    for name in ("prompts", "configs", "responses", "judgments", "preferences"):
        shutil.copy(tiny_pipeline / f"data/{name}.parquet", root / f"data/{name}.parquet")
    prompts = read_parquet(root / "data/prompts.parquet")
    planted = prompts[prompts["split"] == "test"]["prompt"].iloc[0]
    pref = read_parquet(root / "data/preferences.parquet")
    pref.at[0, "prompt"] = [dict(m, content=planted) if m["role"] == "user" else m for m in pref.at[0, "prompt"]]
    pref.to_parquet(root / "data/preferences.parquet")
    leaks = training_leaks(root)
    assert any("preferences.parquet text" in x for x in leaks) and any("SFT rows" in x for x in leaks)


@pytest.mark.skipif(not (REPO / "data/preferences.parquet").exists(),
                    reason="no default-run outputs in this checkout (make run or dvc pull)")
def test_default_run_trains_on_no_test_prompt():
    assert training_leaks(REPO) == []
