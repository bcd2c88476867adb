"""Config sampling: allowed sets per mode, templates, and the seeded, order-independent sampler."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cosalign.data import configs
from cosalign.cosa import schemas, taxonomy
from cosalign.core.io import InputError
from cosalign.core.rng import derive_rng
from cosalign.cosa import config_text

T = list(taxonomy.SEEN)
FIN, DIS, VIO, PRI = T
DRUGS, WEAPONS, OTHER = taxonomy.DRUGS, taxonomy.WEAPONS, taxonomy.OTHER

FIXTURE_YAML = """\
version: 1
train:
  - id: t-a
    text: |-
      A. Allowed:
      {%- for c in allowed %}
      - {{ c.name }}: {{ c.description }}
      {%- else %}
      - None
      {%- endfor %}
  - id: t-b
    text: "B. {{ allowed | map(attribute='name') | join(', ') or 'None' }}"
heldout:
  - id: h-a
    text: "H. {{ allowed | length }}"
"""


@pytest.fixture
def templates_file(tmp_path):
    path = tmp_path / "config_templates.yaml"
    path.write_text(FIXTURE_YAML, encoding="utf-8")
    return path


def rng(seed=0):
    return np.random.default_rng(seed)


# --- sample_allowed --------------------------------------------------------------------------

def test_exact_match_keeps_only_seen_prompt_risks_in_canonical_order():
    assert configs.sample_allowed([PRI, DRUGS, VIO, OTHER], "exact_match", rng()) == [VIO, PRI]
    assert configs.sample_allowed([DRUGS], "exact_match", rng()) == []


def test_safe_is_always_empty():
    assert configs.sample_allowed(T, "safe", rng()) == []


def test_superset_adds_at_least_one_unrequested_seen_category():
    for seed in range(50):
        allowed = configs.sample_allowed([VIO, DRUGS], "superset", rng(seed))
        assert VIO in allowed and len(allowed) >= 2 and set(allowed) <= set(T)
        assert allowed == taxonomy.canonical_order(allowed)


def test_superset_of_all_seen_is_all_seen():
    assert configs.sample_allowed(T + [OTHER], "superset", rng()) == T


def test_superset_for_unseen_only_prompt_is_a_nonempty_seen_set():
    for seed in range(20):
        allowed = configs.sample_allowed([WEAPONS], "superset", rng(seed))
        assert allowed and set(allowed) <= set(T)


def test_not_superset_drops_a_seen_prompt_risk():
    for seed in range(100):
        allowed = configs.sample_allowed([FIN, VIO], "not_superset", rng(seed))
        assert not {FIN, VIO} <= set(allowed)
        assert set(allowed) <= set(T)


def test_not_superset_single_seen_risk_never_allows_it():
    draws = [configs.sample_allowed([PRI], "not_superset", rng(s)) for s in range(100)]
    assert all(PRI not in a for a in draws)
    assert any(a for a in draws) and any(not a for a in draws)  # extras from T \\ P are random


def test_not_superset_edge_cases():
    assert configs.sample_allowed([], "not_superset", rng()) == []
    # Only unseen risks: any seen subset is already not a superset; the draws cover sizes 0..4.
    sizes = {len(configs.sample_allowed([DRUGS, OTHER], "not_superset", rng(s))) for s in range(200)}
    assert sizes == {0, 1, 2, 3, 4}


def test_sample_allowed_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown config mode"):
        configs.sample_allowed([VIO], "everything", rng())
    with pytest.raises(ValueError, match="unknown risk category"):
        configs.sample_allowed(["Violence "], "exact_match", rng())


def test_derive_rng_depends_on_seed_and_identity_only():
    a = derive_rng(7, "p1", "superset", 0).integers(1 << 30, size=4)
    b = derive_rng(7, "p1", "superset", 0).integers(1 << 30, size=4)
    c = derive_rng(7, "p1", "superset", 1).integers(1 << 30, size=4)
    d = derive_rng(8, "p1", "superset", 0).integers(1 << 30, size=4)
    assert (a == b).all() and not (a == c).all() and not (a == d).all()
    with pytest.raises(ValueError, match="non-negative"):
        derive_rng(-1, "x")


# --- templates -------------------------------------------------------------------------------

def test_load_and_render_fixture_templates(templates_file):
    train = config_text.load_templates("train", templates_file)
    assert [t["id"] for t in train] == ["t-a", "t-b"]
    text = config_text.render_config(train[0], [PRI, VIO])
    assert text.index(VIO) < text.index(PRI)  # canonical order, not input order
    assert taxonomy.BY_NAME[PRI].description in text
    assert config_text.render_config(train[0], []).endswith("- None")
    assert config_text.render_config(train[1], [DRUGS]) == f"B. {DRUGS}"
    assert config_text.render_config(config_text.load_templates("heldout", templates_file)[0], T) == "H. 4"


@pytest.mark.parametrize("text, message, field", [
    ("version: 2\ntrain: []\n", "version: 1", "version"),
    ("version: 1\nheldout: []\n", "missing or empty", "train"),
    ("version: 1\ntrain:\n  - {id: a, text: x}\n  - {id: a, text: y}\n", "duplicate", "id"),
    ("version: 1\ntrain:\n  - {id: a}\n", "non-empty string 'text'", "text"),
    ("version: 1\ntrain:\n  - {id: a, text: '{% for c in allowed %}'}\n", "invalid Jinja2", "text"),
    ("version: 1\ntrain: [\n", "invalid YAML", None),
])
def test_load_templates_errors_name_the_field(tmp_path, text, message, field):
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message) as info:
        config_text.load_templates("train", path)
    assert info.value.field == field and str(path) in str(info.value)


def test_load_templates_missing_file_and_kind(tmp_path):
    with pytest.raises(InputError, match="not found"):
        config_text.load_templates("train", tmp_path / "absent.yaml")
    with pytest.raises(ValueError, match="unknown template kind"):
        config_text.load_templates("test")


def test_render_is_strict_and_never_allows_other_harms():
    with pytest.raises(ValueError, match="undefined"):
        config_text.render_config({"id": "x", "text": "{{ allowed }} {{ nope }}"}, [VIO])
    with pytest.raises(ValueError, match="never be allowed"):
        config_text.render_config("{{ allowed }}", [OTHER])


def test_packaged_templates_render_every_seen_and_unseen_set():
    train, heldout = config_text.load_templates("train"), config_text.load_templates("heldout")
    assert [t["id"] for t in train] == [f"train-{i:02d}" for i in range(1, 11)]
    assert [t["id"] for t in heldout] == [f"heldout-{i:02d}" for i in range(1, 5)]
    for template in train + heldout:
        everything = config_text.render_config(template, list(taxonomy.ALLOWABLE))
        for name in taxonomy.ALLOWABLE:
            assert name in everything and taxonomy.BY_NAME[name].description in everything
        nothing = config_text.render_config(template, [])
        assert not any(taxonomy.BY_NAME[n].description in nothing for n in taxonomy.NAMES)


# --- sample_configs --------------------------------------------------------------------------

TEMPLATES = [{"id": "t-a", "text": "A {{ allowed | map(attribute='name') | join('; ') }}"},
             {"id": "t-b", "text": "B {{ allowed | length }}"},
             {"id": "t-c", "text": "C {{ allowed | map(attribute='description') | join('; ') }}"}]
MODES = ["exact_match", "superset", "safe", "not_superset"]


def tables():
    prompts = pd.DataFrame({"prompt_id": ["p1", "p2", "p3", "p4", "p5"], "prompt": list("abcde")})
    labels = pd.DataFrame({
        "prompt_id": ["p1", "p2", "p3", "p4", "p5"],
        "split": ["train", "train", "test", "train", "train"],
        "risk_categories": [[VIO, DRUGS], [], [VIO], [FIN, PRI], [WEAPONS]],
        "valid": [True, True, True, False, True],
    })
    return prompts, labels


def sample(prompts, labels, **kw):
    kw = {"modes": MODES, "configs_per_mode": 2, "seed": 3, "templates": TEMPLATES} | kw
    return configs.sample_configs(prompts, labels, **kw)


def test_sample_configs_counts_modes_and_schema():
    out = sample(*tables())
    schemas.validate(out, "configs")
    # p3 is a test prompt and p4's label is invalid: neither gets configs.
    assert sorted(set(out["prompt_id"])) == ["p1", "p2", "p5"]
    counts = out.groupby("prompt_id")["mode"].apply(list).to_dict()
    assert counts["p1"] == ["exact_match"] * 2 + ["superset"] * 2 + ["safe"] * 2 + ["not_superset"] * 2
    assert counts["p2"] == ["safe", "superset", "superset"]  # risk-free: one safe config
    assert list(out.loc[out.prompt_id == "p2", "config_id"]) == ["p2-safe-0", "p2-superset-0", "p2-superset-1"]
    assert (out["config_id"] == out["prompt_id"] + "-" + out["mode"] + "-" + out["config_id"].str[-1]).all()
    p1 = out[out.prompt_id == "p1"].set_index("config_id")["allowed_categories"]
    assert p1["p1-exact_match-0"] == [VIO] and p1["p1-safe-1"] == []
    assert VIO not in p1["p1-not_superset-0"] and VIO in p1["p1-superset-1"]


def test_system_prompt_is_the_rendered_template():
    out = sample(*tables())
    by_id = {t["id"]: t for t in TEMPLATES}
    for row in out.itertuples():
        assert row.system_prompt == config_text.render_config(by_id[row.template_id], row.allowed_categories)
    assert set(out["template_id"]) == {"t-a", "t-b", "t-c"}


def test_sample_configs_ignores_row_order_and_other_prompts():
    prompts, labels = tables()
    base = sample(prompts, labels)
    shuffled = sample(prompts.sample(frac=1, random_state=1), labels.sample(frac=1, random_state=2))
    pd.testing.assert_frame_equal(base, shuffled)
    alone = sample(prompts, labels[labels.prompt_id == "p1"])
    pd.testing.assert_frame_equal(alone, base[base.prompt_id == "p1"].reset_index(drop=True))


def test_sample_configs_depends_on_seed():
    prompts, labels = tables()
    a, b = sample(prompts, labels, seed=3), sample(prompts, labels, seed=4)
    assert list(a["config_id"]) == list(b["config_id"])
    assert (list(a["template_id"]), list(a["allowed_categories"])) != \
           (list(b["template_id"]), list(b["allowed_categories"]))


def test_sample_configs_uses_packaged_train_templates_by_default():
    out = configs.sample_configs(*tables(), modes=["superset"], configs_per_mode=3, seed=0)
    assert out["template_id"].str.match(r"^train-\d\d$").all()


def test_sample_configs_bad_input():
    prompts, labels = tables()
    with pytest.raises(ValueError, match="modes"):
        sample(prompts, labels, modes=["superset", "superset"])
    with pytest.raises(ValueError, match="configs_per_mode"):
        sample(prompts, labels, configs_per_mode=0)
    with pytest.raises(InputError, match="not in prompts") as info:
        sample(prompts[prompts.prompt_id != "p2"], labels)
    assert info.value.row == 1 and info.value.field == "prompt_id"
    bad = labels.copy()
    bad.at[0, "risk_categories"] = "-Violence-"
    with pytest.raises(InputError, match="must be a list") as info:
        sample(prompts, bad)
    assert info.value.row == 0 and info.value.field == "risk_categories"


def test_configs_parquet_is_byte_identical_and_round_trips(tmp_path):
    from cosalign.core.io import read_parquet, write_parquet
    prompts, labels = tables()
    write_parquet(sample(prompts, labels), tmp_path / "a.parquet")
    write_parquet(sample(prompts.iloc[::-1], labels.iloc[::-1]), tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    back = read_parquet(tmp_path / "a.parquet")
    schemas.validate(back, "configs")
    pd.testing.assert_frame_equal(back, sample(prompts, labels), check_dtype=False)


# --- streaming: training_label_chunks and iter_configs, and the configs stage -----------------

def write_inputs(tmp_path, prompts, labels):
    from cosalign.core.io import write_parquet
    paths = tmp_path / "prompts.parquet", tmp_path / "prompt_labels.parquet"
    write_parquet(prompts, paths[0])
    write_parquet(labels, paths[1])
    return paths


def many_tables(n=40):
    """n prompts in prompt_id order, a mix of splits, validity and risk sets."""
    names = list(taxonomy.NAMES)
    rng = np.random.default_rng(5)
    ids = [f"p{i:03d}" for i in range(n)]
    risks = [sorted(rng.choice(names, size=int(rng.integers(0, 3)), replace=False).tolist(),
                    key=names.index) for _ in ids]
    prompts = pd.DataFrame({"prompt_id": ids, "prompt": [f"question {i}" for i in ids]})
    labels = pd.DataFrame({"prompt_id": ids, "split": rng.choice(["train", "train", "test"], size=n),
                           "risk_categories": risks, "valid": rng.random(n) > 0.1})
    return prompts, labels


def streamed(paths, chunk_prompts, **kw):
    chunks = configs.training_label_chunks(*paths, chunk_prompts=chunk_prompts,
                                           **{k: kw.pop(k) for k in ("max_prompts", "seed") if k in kw})
    kw = {"modes": MODES, "configs_per_mode": 2, "seed": 3, "templates": TEMPLATES} | kw
    return list(configs.iter_configs(chunks, **kw))


def test_streamed_configs_equal_sample_configs_for_any_chunk_size(tmp_path):
    prompts, labels = many_tables()
    paths = write_inputs(tmp_path, prompts, labels)
    expected = sample(prompts, labels)
    for chunk_prompts in (1, 7, 1000):
        frames = streamed(paths, chunk_prompts)
        out = pd.concat(frames, ignore_index=True)
        pd.testing.assert_frame_equal(schemas.validate(out, "configs"), expected)
        # a prompt's configs never straddle two frames (the stage counts prompts per frame)
        assert sum(f["prompt_id"].nunique() for f in frames) == expected["prompt_id"].nunique()
    assert len(streamed(paths, 1)) > len(streamed(paths, 1000)) == 1


def test_streamed_configs_without_training_prompts_yield_one_empty_frame(tmp_path):
    prompts, labels = many_tables(5)
    paths = write_inputs(tmp_path, prompts, labels.assign(split="test"))
    [frame] = streamed(paths, 2)
    assert len(frame) == 0 and list(frame.columns) == configs.CONFIG_COLUMNS
    schemas.validate(frame, "configs")


def test_max_prompts_keeps_the_seeded_sample_of_training_prompts(tmp_path):
    prompts, labels = many_tables()
    paths = write_inputs(tmp_path, prompts, labels)
    out = pd.concat(streamed(paths, 4, max_prompts=6, seed=2), ignore_index=True)
    train = labels[labels["split"] == "train"]
    keep = set(train.sample(n=6, random_state=2)["prompt_id"])
    pd.testing.assert_frame_equal(out, sample(prompts, labels[labels["prompt_id"].isin(keep)]))


@pytest.mark.parametrize("damage, row, field, message", [
    (lambda p, l: (p, l.iloc[[0, 2, 1, 3]]), 2, "prompt_id", "must be sorted by prompt_id"),
    (lambda p, l: (p.iloc[[1, 0, 2, 3]], l), 1, "prompt_id", "must be sorted by prompt_id"),
    (lambda p, l: (p[p.prompt_id != "p002"], l), 2, "prompt_id", "'p002' is not in prompts"),
])
def test_streamed_input_errors_name_file_row_and_field(tmp_path, damage, row, field, message):
    prompts, labels = damage(*many_tables(4))
    paths = write_inputs(tmp_path, prompts.reset_index(drop=True), labels.reset_index(drop=True))
    with pytest.raises(InputError, match=message) as info:
        streamed(paths, 1)
    assert (info.value.row, info.value.field) == (row, field)
    assert info.value.path == str(paths[0] if "sorted" in message and row == 1 else paths[1])


def test_missing_input_fails_when_the_chunks_are_requested(tmp_path):
    with pytest.raises(InputError, match="file does not exist") as info:
        configs.training_label_chunks(tmp_path / "prompts.parquet", tmp_path / "labels.parquet")
    assert info.value.path == str(tmp_path / "prompts.parquet")


@pytest.mark.parametrize("max_train_prompts", [None, 40])
def test_configs_stage_streams_the_same_rows(tmp_path, monkeypatch, repo_root, max_train_prompts):
    import runpy

    import yaml

    from cosalign.core import profiles
    from cosalign.core.io import read_parquet

    prompts, labels = many_tables(300)
    (tmp_path / "data").mkdir()
    write_inputs(tmp_path / "data", prompts, labels)
    (tmp_path / "data" / "taxonomy.json").write_text(json.dumps({"categories": taxonomy.PAPER.as_dicts()}))
    params = profiles.load("tiny", root=repo_root)
    params["configs"]["max_train_prompts"] = max_train_prompts
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")  # the stage sets it; undone after
    runpy.run_path(str(repo_root / "stages" / "configs.py"))["main"]()
    out = read_parquet(tmp_path / "data" / "configs.parquet")
    p = params["configs"]
    if max_train_prompts:
        train = labels[labels["split"] == "train"]
        labels = labels[labels["prompt_id"].isin(set(train.sample(n=40, random_state=p["seed"])["prompt_id"]))]
    expected = configs.sample_configs(prompts, labels, modes=p["modes"], configs_per_mode=p["configs_per_mode"],
                                      seed=p["seed"])
    pd.testing.assert_frame_equal(out, expected)
