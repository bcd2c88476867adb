"""The shipped safety-config templates load, render cleanly and say what a config must say."""

from __future__ import annotations

from importlib.resources import files

import jinja2
import pytest
import yaml

from cosalign.cosa.taxonomy import BY_NAME, DISCRIMINATION, PRIVACY

CONTROL_TEXT = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "</s>", "<s>", "[INST]", "<|eot_id|>")


def _load() -> dict:
    return yaml.safe_load(files("cosalign").joinpath("resources", "config_templates.yaml").read_text(encoding="utf-8"))


DOC = _load()
TEMPLATES = DOC["train"] + DOC["heldout"]


def _render(text: str, names: list[str]) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    allowed = [{"name": n, "description": BY_NAME[n].description} for n in names]
    return env.from_string(text).render(allowed=allowed)


def test_layout_and_ids():
    assert DOC["version"] == 1
    assert [t["id"] for t in DOC["train"]] == [f"train-{i:02d}" for i in range(1, 11)]
    assert [t["id"] for t in DOC["heldout"]] == [f"heldout-{i:02d}" for i in range(1, 5)]
    ids = [t["id"] for t in TEMPLATES]
    assert len(ids) == len(set(ids)) == 14
    # genuinely paraphrased: no two templates share their text
    assert len({t["text"] for t in TEMPLATES}) == 14


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t["id"])
def test_renders_allowed_and_empty(template):
    two = [DISCRIMINATION, PRIVACY]
    full = _render(template["text"], two)
    empty = _render(template["text"], [])
    for name in two:
        assert full.count(name) == 1, f"{template['id']}: {name!r} should appear exactly once"
        assert BY_NAME[name].description in full
    assert "None" in empty, f"{template['id']}: empty config must say no category is allowed"
    assert "None" not in full, f"{template['id']}: the empty-list branch leaked into a non-empty config"
    assert DISCRIMINATION not in empty
    for text in (full, empty):
        assert not any(tok in text for tok in CONTROL_TEXT)
        assert text == text.strip()
        assert "\n\n\n" not in text
    assert 25 <= len(empty.split()) and len(full.split()) <= 160
