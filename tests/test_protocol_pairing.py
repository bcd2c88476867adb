"""The `protocol` switch in pairing (docs/paper-fidelity.md, 7e): under `paper` response groups are
keyed by the categories as judged, before the collapse to Other Harms, and each pair draws its own
texts; `cosalign` stays exactly what it was."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from cosalign.data import preferences
from cosalign.cosa import schemas
from test_pairing import (DRUGS, OTHER, SEXUAL, VIO, WEAPONS, config, pool, prompts, random_inputs,
                          write_inputs)


def digest(df: pd.DataFrame) -> str:
    return hashlib.sha256(df.to_json(orient="records").encode()).hexdigest()


# build_pairs(random_inputs(40, seed=1), seed=4) computed before the switch (commit e74fbe4).
BEFORE_SWITCH = {None: (141, "69f904df0f14cd9ec65f5b59e3157c3ff406f7fa83bce52c235e36591a148438"),
                 2: (81, "a1d854e577b0011b679f9e788d4684f3d3c6ed8742678da4485cb240e0ec3632")}


@pytest.mark.parametrize("cap", [None, 2])
def test_cosalign_protocol_is_unchanged(cap):
    pool_df, cfgs, prompt_df, labels = random_inputs(40, seed=1)
    kw = {"labels_df": labels, "seed": 4, "max_pairs_per_config": cap}
    default = preferences.build_pairs(pool_df, cfgs, prompt_df, **kw)
    pd.testing.assert_frame_equal(default, preferences.build_pairs(pool_df, cfgs, prompt_df, protocol="cosalign", **kw))
    assert (len(default), digest(default)) == BEFORE_SWITCH[cap]


def test_paper_keys_groups_before_the_collapse():
    p = pool(("drugs", [DRUGS], True), ("weapons", [WEAPONS, SEXUAL], True), ("safe", [], True))
    cfgs = pd.DataFrame([config("c1", [VIO])])
    cosalign = preferences.build_pairs(p, cfgs, prompts(), seed=0)
    paper = preferences.build_pairs(p, cfgs, prompts(), seed=0, protocol="paper")
    # cosalign: one {Other Harms} group; paper: {Drugs} and {Sexual, Weapons} pair separately
    assert len(cosalign) == 1 and len(paper) == 2
    assert sorted(paper.rejected_response_id) == ["drugs", "weapons"]
    assert (paper.chosen_response_id == "safe").all()
    # written categories are collapsed, so the errors still follow from them (the schema checks it)
    assert paper.rejected_categories.tolist() == [[OTHER], [OTHER]]
    assert paper.rejected_error.tolist() == [3.0, 3.0]
    schemas.validate(paper, "preferences")


def test_paper_equal_collapsed_errors_still_never_pair():
    p = pool(("drugs", [DRUGS], True), ("weapons", [WEAPONS], True))
    assert len(preferences.build_pairs(p, pd.DataFrame([config("c1", [])]), prompts(), seed=0,
                                   protocol="paper")) == 0


def test_paper_draws_texts_per_pair():
    p = pool(*[(f"s{i}", [], True) for i in range(6)], ("refuse", [], False), ("leak", [DRUGS], True))
    cfgs = pd.DataFrame([config("c1", [VIO])])
    # safe (0) beats refuse (1) and leak (3): two pairs share the chosen group {[], addressed}
    chosen = set()
    for seed in range(12):
        out = preferences.build_pairs(p, cfgs, prompts(), seed=seed, protocol="paper")
        first = out[out.chosen_error == 0.0]
        assert len(first) == 2
        chosen.add(tuple(first.chosen_response_id))
    assert any(a != b for a, b in chosen)  # the two pairs drew different texts at least once
    again = preferences.build_pairs(p, cfgs, prompts(), seed=3, protocol="paper")
    pd.testing.assert_frame_equal(again, preferences.build_pairs(p, cfgs, prompts(), seed=3, protocol="paper"))


def test_paper_streamed_equals_in_memory(tmp_path):
    pool_df, cfgs, prompt_df, labels = random_inputs(20)
    inputs = write_inputs(tmp_path, pool_df, cfgs, prompt_df, labels)
    expected = preferences.build_pairs(pool_df, cfgs, prompt_df, labels_df=labels, seed=4, protocol="paper")
    assert len(expected) >= len(preferences.build_pairs(pool_df, cfgs, prompt_df, labels_df=labels, seed=4))
    for chunk_prompts in (1, 1000):
        frames = preferences.iter_pairs(inputs, seed=4, chunk_prompts=chunk_prompts, protocol="paper")
        pd.testing.assert_frame_equal(pd.concat(list(frames), ignore_index=True), expected)


def test_bad_protocol():
    p = pool(("a", [VIO], True))
    with pytest.raises(ValueError, match="protocol must be one of"):
        preferences.build_pairs(p, pd.DataFrame([config("c1", [])]), prompts(), seed=0, protocol="authors")


def test_preferences_stage_pairs_under_the_params_protocol(tmp_path, monkeypatch, repo_root):
    import runpy

    import json

    import yaml

    from cosalign.cosa.taxonomy import PAPER

    from cosalign.core.io import read_parquet

    pool_df, cfgs, prompt_df, labels = random_inputs(20)
    (tmp_path / "data").mkdir()
    write_inputs(tmp_path / "data", pool_df, cfgs, prompt_df, labels)
    (tmp_path / "data" / "labels.parquet").rename(tmp_path / "data" / "prompt_labels.parquet")
    (tmp_path / "data" / "taxonomy.json").write_text(json.dumps({"categories": PAPER.as_dicts()}))
    params = {"protocol": "paper", "preferences": {"source": "pipeline", "seed": 3, "max_pairs": None}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
    runpy.run_path(str(repo_root / "stages" / "preferences.py"))["main"]()
    expected = preferences.build_pairs(pool_df, cfgs, prompt_df, labels_df=labels, seed=3, protocol="paper")
    pd.testing.assert_frame_equal(read_parquet("data/preferences.parquet"), expected)
