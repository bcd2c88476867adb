"""The profiles are complete params files that agree with each other where they must."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cosalign.training.params import TrainingParams

REPO = Path(__file__).resolve().parent.parent
PROFILES = ("default", "tiny", "paper")


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / f"{name}.yaml").read_text())


def test_shipped_params_is_the_default_profile():
    assert (REPO / "params.yaml").read_bytes() == (REPO / "profiles/default.yaml").read_bytes()


def test_every_profile_has_every_stage_section():
    stages = set(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])
    for name in PROFILES:
        sections = set(load(name))
        assert stages <= sections, f"profiles/{name}.yaml lacks {sorted(stages - sections)}"
        assert sections == set(load("default")), name


@pytest.mark.parametrize("name", PROFILES)
def test_training_sections_validate(name):
    for stage in ("sft", "dpo"):
        TrainingParams.from_dict(load(name)[stage], stage)


@pytest.mark.parametrize("name", PROFILES)
def test_rules_judge_has_no_split_of_its_own(name):
    """The rules judge fits on the prompts stage's train split (data/prompts.parquet, passed in by
    the stages), so no judge section repeats the split settings."""
    p = load(name)
    for section in ("prompt_labels", "judgments", "evaluate"):
        judge = p[section]["judge"]
        assert not {"split_seed", "test_fraction", "seed_path", "train_path"} & set(judge), section


def test_no_secret_in_any_profile():
    for name in PROFILES:
        text = (REPO / "profiles" / f"{name}.yaml").read_text()
        assert "api_key:" not in text and "token:" not in text.lower().replace("max_tokens", "")


def test_paper_profile_is_the_papers_setup():
    p = load("paper")
    assert p["base_model"]["model_id"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert len(p["base_model"]["revision"]) == 40
    assert p["dpo"]["loss"]["beta"] == 0.1 and p["dpo"]["optim"]["learning_rate"] == 5.0e-7
    assert p["dpo"]["optim"]["warmup_steps"] == 150 and p["dpo"]["optim"]["optimizer"] == "rmsprop"
    assert p["dpo"]["optim"]["global_batch_size"] == 32 and p["dpo"]["optim"]["num_train_epochs"] == 3.0
    assert p["dpo"]["data"]["max_length"] == 640 and p["dpo"]["precision"]["bf16"] is True
    assert p["responses"]["backend"] == "vllm" and p["judgments"]["judge"]["name"] == "openai"
