"""Generation configs vs pairing configs (docs/paper-fidelity.md, 7d).

Under `protocol: paper` the configs stage also writes data/generation_configs.parquet: 4 superset +
4 not_superset configs per training prompt, drawn over every allowable category in the labels
(unseen ones included), as the authors' add_spec_i_sysprompt.py; the responses stage generates
under them and pairing keeps data/configs.parquet. Under `cosalign` the generation table is a byte
copy of the pairing table, so responses and everything after them stay as they were.
"""

from __future__ import annotations

import json
import runpy
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from cosalign.core import profiles
from cosalign.core.io import read_parquet, write_parquet
from cosalign.cosa import schemas, taxonomy
from cosalign.data import configs
from test_configs import MODES, TEMPLATES, many_tables, write_inputs

T = list(taxonomy.SEEN)
FIN, DIS, VIO, PRI = T
DRUGS, SEXUAL, WEAPONS, OTHER = taxonomy.DRUGS, taxonomy.SEXUAL, taxonomy.WEAPONS, taxonomy.OTHER
NAMED = [n for n in taxonomy.NAMES if n != OTHER]  # the seven named categories


def generation(prompts, labels, seed=3):
    return configs.sample_generation_configs(prompts, labels, seed=seed, templates=TEMPLATES)


def trained(labels):
    """The prompts that get configs at all: training split, valid label."""
    return labels[(labels["split"] == "train") & labels["valid"]]


def test_paper_generation_configs_are_4_superset_and_4_not_superset_for_every_training_prompt():
    prompts, labels = many_tables(300)
    out = generation(prompts, labels)
    train = trained(labels)
    assert set(out["prompt_id"]) == set(train["prompt_id"])  # also the ones 7a skips when pairing
    assert out.groupby(["prompt_id", "mode"]).size().eq(4).all() and len(out) == 8 * len(train)
    assert set(out["mode"]) == {"superset", "not_superset"} and out["config_id"].is_unique
    pairing = configs.sample_configs(prompts, labels, modes=MODES, configs_per_mode=1, seed=3,
                                     templates=TEMPLATES, protocol="paper")
    assert set(pairing["prompt_id"]) < set(out["prompt_id"])  # 7a: pairing skips unseen-labelled ones
    assert not set(pairing["config_id"]) & set(out["config_id"])


def test_generation_configs_are_drawn_over_the_seven_named_categories():
    prompts, labels = many_tables(300)
    out = generation(prompts, labels)
    used = {c for allowed in out["allowed_categories"] for c in allowed}
    assert used == set(NAMED)  # unseen included, Other Harms never
    unseen = out["allowed_categories"].map(lambda a: bool(set(a) & set(taxonomy.UNSEEN)))
    assert 0.3 < unseen.mean() < 0.95
    assert configs.generation_pool([trained(labels)]) == NAMED
    assert schemas.validate(out, "generation_configs") is out
    with pytest.raises(schemas.ValidationError):  # the pairing table's contract stays seen-only
        schemas.validate(out, "configs")


def test_generation_pool_is_the_allowable_categories_that_occur():
    labels = pd.DataFrame({"risk_categories": [[VIO, OTHER], [DRUGS], []]})
    assert configs.generation_pool([labels]) == [VIO, DRUGS]


def draws(risks, mode, pool=NAMED, n=400):
    return [configs.sample_generation_allowed(risks, mode, np.random.default_rng(s), pool) for s in range(n)]


def test_generation_superset_sizes_include_the_prompt_set_itself():
    sizes = Counter()
    for allowed in draws([VIO, DRUGS, OTHER], "superset"):
        assert {VIO, DRUGS} <= set(allowed) and OTHER not in allowed
        assert allowed == taxonomy.canonical_order(allowed)
        sizes[len(allowed)] += 1
    assert set(sizes) == set(range(2, len(NAMED) + 1))  # |P| (zero extras) up to the whole pool
    assert {len(a) for a in draws([], "superset")} == set(range(len(NAMED) + 1))  # risk-free: any subset


def test_generation_not_superset_drops_a_prompt_risk_and_is_empty_without_one():
    for allowed in draws([FIN, WEAPONS], "not_superset"):
        assert not {FIN, WEAPONS} <= set(allowed) and OTHER not in allowed
    assert any(SEXUAL in a for a in draws([FIN, WEAPONS], "not_superset"))  # extras from the pool
    assert draws([], "not_superset", n=5) == [[]] * 5
    assert draws([OTHER], "not_superset", n=5) == [[]] * 5  # as the authors: Other Harms is dropped first


def test_generation_allowed_rejects_bad_input():
    with pytest.raises(ValueError, match="superset or not_superset"):
        configs.sample_generation_allowed([VIO], "safe", np.random.default_rng(0), NAMED)
    with pytest.raises(ValueError, match="not in the generation pool"):
        configs.sample_generation_allowed([DRUGS], "superset", np.random.default_rng(0), T)


def test_generation_configs_are_deterministic_and_independent_of_the_pairing_draws():
    prompts, labels = many_tables(120)
    a, b = generation(prompts, labels), generation(prompts, labels)
    pd.testing.assert_frame_equal(a, b)
    assert generation(prompts, labels, seed=4)["allowed_categories"].tolist() != a["allowed_categories"].tolist()
    # A prompt's draws depend only on its own identity and the pool: a subset of prompts whose
    # labels hold the same categories gives the same rows.
    some = labels.iloc[::2]
    assert configs.generation_pool([trained(some)]) == NAMED
    sub = generation(prompts, some)
    pd.testing.assert_frame_equal(sub, a[a["prompt_id"].isin(sub["prompt_id"])].reset_index(drop=True))


def test_streamed_generation_configs_equal_the_in_memory_ones(tmp_path):
    prompts, labels = many_tables(90)
    paths = write_inputs(tmp_path, prompts, labels)
    expected = generation(prompts, labels)
    for chunk_prompts in (1, 7, 1000):
        out = tmp_path / f"gen{chunk_prompts}.parquet"
        line = configs.write_generation_configs(
            "paper", out, configs_path=None, seed=3, templates=TEMPLATES,
            label_chunks=lambda: configs.training_label_chunks(*paths, chunk_prompts=chunk_prompts))
        pd.testing.assert_frame_equal(read_parquet(out), expected)
        assert f"{len(expected)} (4 superset + 4 not_superset per prompt) over 7 categories" in line


def test_cosalign_generation_configs_are_a_byte_copy_of_the_pairing_configs(tmp_path):
    prompts, labels = many_tables(40)
    pairing = configs.sample_configs(prompts, labels, modes=MODES, configs_per_mode=1, seed=3, templates=TEMPLATES)
    write_parquet(pairing, tmp_path / "configs.parquet")

    def never():
        raise AssertionError("cosalign reads no labels for generation configs")

    configs.write_generation_configs("cosalign", tmp_path / "gen.parquet", configs_path=tmp_path / "configs.parquet",
                                     label_chunks=never, seed=3)
    assert (tmp_path / "gen.parquet").read_bytes() == (tmp_path / "configs.parquet").read_bytes()
    with pytest.raises(ValueError, match="protocol"):
        configs.write_generation_configs("authors", tmp_path / "x.parquet", configs_path=tmp_path / "configs.parquet",
                                         label_chunks=never, seed=3)
    assert not (tmp_path / "x.parquet").exists()


# --- the stages ------------------------------------------------------------------------------------

def run_configs_stage(tmp_path, monkeypatch, repo_root, protocol, n=120):
    """The configs stage on n prompts (many_tables) under the tiny profile with `protocol`."""
    import yaml

    prompts, labels = many_tables(n)
    (tmp_path / "data").mkdir()
    write_inputs(tmp_path / "data", prompts, labels)
    (tmp_path / "data" / "taxonomy.json").write_text(json.dumps({"categories": taxonomy.PAPER.as_dicts()}))
    params = profiles.load("tiny", root=repo_root)
    params["protocol"] = protocol
    params["configs"]["max_train_prompts"] = None
    params["responses"]["max_new_tokens"] = 4
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    p = params["configs"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
    runpy.run_path(str(repo_root / "stages" / "configs.py"))["main"]()
    return prompts, labels, p


def test_configs_stage_under_cosalign_writes_the_same_table_twice(tmp_path, monkeypatch, repo_root):
    prompts, labels, p = run_configs_stage(tmp_path, monkeypatch, repo_root, "cosalign")
    data = tmp_path / "data"
    expected = configs.sample_configs(prompts, labels, modes=p["modes"], seed=p["seed"],
                                      configs_per_mode=p["configs_per_mode"])
    pd.testing.assert_frame_equal(read_parquet(data / "configs.parquet"), expected)  # unchanged
    assert (data / "generation_configs.parquet").read_bytes() == (data / "configs.parquet").read_bytes()


def test_configs_stage_under_paper_writes_separate_generation_configs(tmp_path, monkeypatch, repo_root):
    prompts, labels, p = run_configs_stage(tmp_path, monkeypatch, repo_root, "paper")
    data = tmp_path / "data"
    gen = read_parquet(data / "generation_configs.parquet")
    pd.testing.assert_frame_equal(gen, configs.sample_generation_configs(prompts, labels, seed=p["seed"]))
    pairing = read_parquet(data / "configs.parquet")
    pd.testing.assert_frame_equal(pairing, configs.sample_configs(
        prompts, labels, modes=p["modes"], seed=p["seed"], configs_per_mode=p["configs_per_mode"], protocol="paper"))
    assert schemas.validate_file(data / "generation_configs.parquet") == len(gen) == 8 * len(trained(labels))


def test_responses_stage_generates_under_the_generation_configs(tmp_path, monkeypatch, repo_root, tiny_model_dir):
    """Under `paper` the replies answer the generation configs (and the generic prompt), never the
    pairing configs; the pairing table is not read at all."""
    run_configs_stage(tmp_path, monkeypatch, repo_root, "paper", n=12)
    data = tmp_path / "data"
    (data / "configs.parquet").unlink()  # pairing's table: the responses stage must not need it
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "base").symlink_to(tiny_model_dir)
    runpy.run_path(str(repo_root / "stages" / "responses.py"))["main"]()
    responses = read_parquet(data / "responses.parquet")
    gen = read_parquet(data / "generation_configs.parquet")
    model = responses[responses["source"] == "model"]
    generic = {f"{pid}-generic" for pid in gen["prompt_id"]}
    assert set(model["config_id"]) == set(gen["config_id"]) | generic
    assert set(model["prompt_id"]) == set(gen["prompt_id"])
