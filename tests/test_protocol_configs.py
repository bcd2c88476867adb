"""The top-level `protocol` switch for config sampling (docs/paper-fidelity.md, "Pair data").

`cosalign` must stay exactly what it was before the switch existed; `paper` follows the authors'
released pairing code: no configs for prompts with a risk outside the seen four, supersets that
may add nothing, and every mode's draw for risk-free prompts.
"""

from __future__ import annotations

import json

import hashlib
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from cosalign.data import configs
from cosalign.core import params, profiles
from cosalign.cosa import schemas, taxonomy
from cosalign.core.io import InputError
from test_configs import MODES, TEMPLATES, many_tables, write_inputs

T = list(taxonomy.SEEN)
FIN, DIS, VIO, PRI = T


def digest(df: pd.DataFrame) -> str:
    return hashlib.sha256(df.to_json(orient="records").encode()).hexdigest()


# Content digests of sample_configs(many_tables(300), seed=3, TEMPLATES) computed with the code as
# it was before the protocol switch (commit f79d2a9): `cosalign` must reproduce them exactly.
BEFORE_SWITCH = {
    1: (626, "7d783670a28e109375cc766348709ff135cb05901d2dea67394c4638c2c42d29"),
    2: (1195, "441d535f71c983b8068958040c963664db703f386620aae43ca1871e1d3739f8"),
}


@pytest.mark.parametrize("configs_per_mode", [1, 2])
def test_cosalign_protocol_is_unchanged(configs_per_mode):
    prompts, labels = many_tables(300)
    kw = {"modes": MODES, "configs_per_mode": configs_per_mode, "seed": 3, "templates": TEMPLATES}
    default = configs.sample_configs(prompts, labels, **kw)
    explicit = configs.sample_configs(prompts, labels, protocol="cosalign", **kw)
    pd.testing.assert_frame_equal(default, explicit)
    assert (len(default), digest(default)) == BEFORE_SWITCH[configs_per_mode]
    paper = configs.sample_configs(prompts, labels, protocol="paper", **kw)
    assert digest(paper) != digest(default)


def draws(risks, mode, protocol, n=400):
    return [configs.sample_allowed(risks, mode, np.random.default_rng(s), protocol=protocol) for s in range(n)]


def test_paper_superset_sizes_include_the_prompt_set_itself():
    for risks in ([VIO], [FIN, PRI], []):
        paper = draws(risks, "superset", "paper")
        assert all(set(a) >= set(risks) and set(a) <= set(T) for a in paper)
        # uniform extra size over 0..|T \ P|: every size from |P| to |T| occurs, |P| included
        assert {len(a) for a in paper} == set(range(len(risks), len(T) + 1))
        cosalign = draws(risks, "superset", "cosalign")
        assert min(len(a) for a in cosalign) == len(risks) + 1
    assert draws(T, "superset", "paper", n=5) == [T] * 5  # nothing left to add


def test_paper_changes_only_superset_draws():
    for mode in ("exact_match", "safe", "not_superset"):
        for risks in ([VIO], [FIN, DIS, PRI], []):
            assert draws(risks, mode, "paper", n=50) == draws(risks, mode, "cosalign", n=50)


def risk_free_tables(n):
    ids = [f"r{i:04d}" for i in range(n)]
    prompts = pd.DataFrame({"prompt_id": ids, "prompt": ids})
    labels = pd.DataFrame({"prompt_id": ids, "split": "train", "risk_categories": [[] for _ in ids],
                           "valid": True})
    return prompts, labels


def test_risk_free_prompts_get_the_authors_share_of_allow_nothing_configs():
    prompts, labels = risk_free_tables(1000)
    out = configs.sample_configs(prompts, labels, modes=MODES, configs_per_mode=1, seed=0,
                                 templates=TEMPLATES, protocol="paper")
    schemas.validate(out, "configs")
    # one config per mode, as the authors pair: exact_match, safe and not_superset are all empty
    assert all(modes == MODES for modes in out.groupby("prompt_id")["mode"].apply(list))
    empty = out["allowed_categories"].map(len) == 0
    assert empty[out["mode"] != "superset"].all()
    # superset is empty with chance 1/5 (extra size uniform over 0..4): 3/4 + 1/4 * 1/5 = 0.8
    assert abs(empty.mean() - 0.8) < 0.02, empty.mean()
    cosalign = configs.sample_configs(prompts, labels, modes=MODES, configs_per_mode=4, seed=0,
                                      templates=TEMPLATES)
    assert (cosalign["allowed_categories"].map(len) == 0).mean() == pytest.approx(1 / 5)


def test_no_training_prompt_carries_an_unseen_category_under_paper():
    prompts, labels = many_tables(300)
    out = configs.sample_configs(prompts, labels, modes=MODES, configs_per_mode=1, seed=3,
                                 templates=TEMPLATES, protocol="paper")
    risks = dict(zip(labels["prompt_id"], labels["risk_categories"]))
    assert all(set(risks[p]) <= set(T) for p in out["prompt_id"])
    trainable = labels[(labels["split"] == "train") & labels["valid"]]
    seen_only = trainable["risk_categories"].map(lambda r: set(r) <= set(T))
    assert set(out["prompt_id"]) == set(trainable.loc[seen_only, "prompt_id"])
    assert (~seen_only).sum() > 20  # the fixture does hold unseen and Other Harms prompts
    cosalign = configs.sample_configs(prompts, labels, modes=MODES, configs_per_mode=1, seed=3,
                                      templates=TEMPLATES)
    assert set(cosalign["prompt_id"]) == set(trainable["prompt_id"])


def test_trains_under():
    assert configs.trains_under([VIO, PRI], "paper") and configs.trains_under([], "paper")
    assert not configs.trains_under([VIO, taxonomy.WEAPONS], "paper")
    assert not configs.trains_under([taxonomy.OTHER], "paper")
    assert configs.trains_under([taxonomy.OTHER], "cosalign")


def test_paper_streamed_equals_in_memory_for_any_chunk_size(tmp_path):
    prompts, labels = many_tables(60)
    paths = write_inputs(tmp_path, prompts, labels)
    expected = configs.sample_configs(prompts, labels, modes=MODES, configs_per_mode=2, seed=3,
                                      templates=TEMPLATES, protocol="paper")
    for chunk_prompts in (1, 7, 1000):
        chunks = configs.training_label_chunks(*paths, chunk_prompts=chunk_prompts)
        frames = configs.iter_configs(chunks, modes=MODES, configs_per_mode=2, seed=3,
                                      templates=TEMPLATES, protocol="paper")
        pd.testing.assert_frame_equal(pd.concat(list(frames), ignore_index=True), expected)


def test_bad_protocol_is_rejected_by_the_library():
    prompts, labels = many_tables(5)
    for bad in ("Paper", None, ""):
        with pytest.raises(ValueError, match="protocol must be one of"):
            configs.sample_configs(prompts, labels, modes=MODES, configs_per_mode=1, seed=0,
                                   templates=TEMPLATES, protocol=bad)
        with pytest.raises(ValueError, match="protocol"):
            configs.sample_allowed([VIO], "superset", np.random.default_rng(0), protocol=bad)


def test_params_protocol(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("configs: {seed: 0}\n")
    assert params.protocol(path) == "cosalign"  # a file from before the switch
    path.write_text("protocol: paper\n")
    assert params.protocol(path) == "paper"
    path.write_text("protocol: authors\n")
    with pytest.raises(InputError) as info:
        params.protocol(path)
    assert info.value.field == "protocol" and "'cosalign', 'paper'" in str(info.value)


@pytest.mark.parametrize("name, expected", [("default", "cosalign"), ("tiny", "cosalign"),
                                            ("paper", "paper")])
def test_profiles_choose_their_protocol(repo_root, name, expected):
    assert profiles.load(name, root=repo_root)["protocol"] == expected
    stages = yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"]
    for stage in ("configs", "preferences"):  # the stages that read it re-run when it changes
        assert "protocol" in stages[stage]["params"]


def stage_dir(tmp_path, repo_root, protocol):
    prompts, labels = many_tables(120)
    (tmp_path / "data").mkdir()
    write_inputs(tmp_path / "data", prompts, labels)
    (tmp_path / "data" / "taxonomy.json").write_text(json.dumps({"categories": taxonomy.PAPER.as_dicts()}))
    p = profiles.load("tiny", root=repo_root)
    p["protocol"] = protocol
    p["configs"]["max_train_prompts"] = None
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    return prompts, labels, p["configs"]


def test_configs_stage_samples_under_the_params_protocol(tmp_path, monkeypatch, repo_root):
    import runpy

    from cosalign.core.io import read_parquet

    prompts, labels, p = stage_dir(tmp_path, repo_root, "paper")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
    runpy.run_path(str(repo_root / "stages" / "configs.py"))["main"]()
    out = read_parquet(tmp_path / "data" / "configs.parquet")
    expected = configs.sample_configs(prompts, labels, modes=p["modes"], seed=p["seed"],
                                      configs_per_mode=p["configs_per_mode"], protocol="paper")
    pd.testing.assert_frame_equal(out, expected)


def test_configs_stage_bad_protocol_is_one_line_naming_protocol(tmp_path, repo_root):
    stage_dir(tmp_path, repo_root, "authors")
    env = os.environ | {"PYTHONPATH": str(repo_root / "src")}
    run = subprocess.run([sys.executable, str(repo_root / "stages" / "configs.py")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "protocol" in run.stderr and "authors" in run.stderr
    assert not (tmp_path / "data" / "configs.parquet").exists()
