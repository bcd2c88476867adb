"""Benchmark loaders on small local copies laid out like the Hub repos, and split-name decoding.

The fixtures mirror the real layouts: a README.md whose YAML `configs:` maps each split to
data/<split>-*.parquet (CoSAlign-Test: configs `seen`/`unseen`, split names such as
`Illegal_Drug.Related_Activities_and_Substance_Abuse` and the no-risk split `safe`, columns
prompt/mode/situation; CoSApien: one split per scenario, columns prompt/scenario/type).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cosalign.evaluation import benchmarks as B
from cosalign.data import configs
from cosalign.cosa import taxonomy
from cosalign.core.io import InputError
from cosalign.cosa import config_text

sys.path.insert(0, str(Path(__file__).parent))  # the hubserver package, whatever the import mode
from hubserver.fixtures import hub, hub_env, run_py  # noqa: E402,F401  (pytest fixtures)

T = taxonomy
COSALIGN_TEST_SPLITS = {
    "seen": {
        "Violence": [T.VIOLENCE],
        "Financial_Crime_and_Theft.Privacy_Violations": [T.FINANCIAL, T.PRIVACY],
        "Discrimination_and_Verbal_Abuse.Violence": [T.DISCRIMINATION, T.VIOLENCE],
        "Financial_Crime_and_Theft.Discrimination_and_Verbal_Abuse.Violence":
            [T.FINANCIAL, T.DISCRIMINATION, T.VIOLENCE],
        "safe": [],
    },
    "unseen": {
        "Illegal_Drug.Related_Activities_and_Substance_Abuse": [T.DRUGS],
        "Sexual_Misconduct_Exploitation_and_Infidelity": [T.SEXUAL],
        "Violence.Weapons_Explosives_Arson_and_Illegal_Firearm_Transactions": [T.VIOLENCE, T.WEAPONS],
    },
}
COSAPIEN_SPLITS = ["game_development", "public_prosecutor", "book_publisher_arab",
                   "language_learning", "film_production"]


def write_hub_layout(root: Path, hub_configs: dict[str | None, dict[str, pd.DataFrame]]) -> Path:
    """A dataset repo as `push_to_hub` leaves it: README.md configs + data/<split>-00000-of-00001.parquet."""
    (root / "data").mkdir(parents=True)
    card = {"configs": []}
    for name, splits in hub_configs.items():
        files = []
        for split, frame in splits.items():
            frame.to_parquet(root / "data" / f"{split}-00000-of-00001.parquet", index=False)
            files.append({"split": split, "path": f"data/{split}-*"})
        card["configs"].append({"config_name": name or "default", "data_files": files})
    (root / "README.md").write_text("---\n" + yaml.safe_dump(card, sort_keys=False) + "---\n",
                                    encoding="utf-8")
    return root


def cosalign_test_dir(root: Path, rows: int = 3) -> Path:
    return write_hub_layout(root, {
        cfg: {split: pd.DataFrame({"prompt": [f"{split} prompt {i}" for i in range(rows)],
                                   "mode": ["test"] * rows,
                                   "situation": [str(1 + i % 3) for i in range(rows)]})
              for split in splits}
        for cfg, splits in COSALIGN_TEST_SPLITS.items()})


def cosapien_dir(root: Path, rows: int = 4, splits=COSAPIEN_SPLITS, drop=None) -> Path:
    data = {}
    for split in splits:
        frame = pd.DataFrame({"prompt": [f"{split} question {i}" for i in range(rows)],
                              "scenario": [f"You work for the {split} team. Allow X, never Y."] * rows,
                              "type": ["allowed", "disallowed", "partially allowed", "allowed"][:rows]})
        data[split] = frame.drop(columns=[drop]) if drop else frame
    return write_hub_layout(root, {None: data})


@pytest.mark.parametrize("split,allowed", [(s, a) for sets in COSALIGN_TEST_SPLITS.values()
                                           for s, a in sets.items()])
def test_decode_every_real_split_name(split, allowed):
    assert B.decode_split_name(split) == allowed


def test_decode_handles_the_dash_that_became_a_dot():
    # A naive split on '.' would give "Illegal_Drug" and "Related_Activities...": not categories.
    assert B.decode_split_name("Illegal_Drug.Related_Activities_and_Substance_Abuse.Violence") == \
        [T.VIOLENCE, T.DRUGS]


@pytest.mark.parametrize("bad", ["Violence.Cooking", "Illegal_Drug", "Other_Harms", "nothing"])
def test_decode_rejects_unknown_or_never_allowable(bad):
    with pytest.raises(ValueError, match="split name"):
        B.decode_split_name(bad)


def test_seen_or_unseen_by_any_unseen_category():
    assert B.config_set_of([]) == "seen"
    assert B.config_set_of([T.VIOLENCE, T.PRIVACY]) == "seen"
    assert B.config_set_of([T.VIOLENCE, T.WEAPONS]) == "unseen"


def test_cosalign_test_from_local_copy(tmp_path):
    src = cosalign_test_dir(tmp_path / "CoSAlign-Test")
    df = B.load_benchmark("cosalign_test", path_or_id=str(src), cache_dir=tmp_path / "cache")
    assert len(df) == 8 * 3
    by_cfg = df.groupby("config_id")
    for cfg_set, splits in COSALIGN_TEST_SPLITS.items():
        for split, allowed in splits.items():
            rows = by_cfg.get_group(split)
            assert rows["config_set"].unique().tolist() == [cfg_set]
            assert all(a == allowed for a in rows["allowed_categories"])
            assert all(p.startswith(split) for p in rows["prompt"])  # prompts stay with their split
            text = rows["system_prompt"].iloc[0]
            assert all(name in text for name in allowed)
    assert set(df["template_id"]) <= {t["id"] for t in config_text.load_templates("heldout")}
    assert set(df["situation"]) == {"1", "2", "3"} and set(df["mode"]) == {"test"}
    assert df["benchmark"].unique().tolist() == ["cosalign_test"]
    assert df["benchmark_revision"].iloc[0] == f"local:{src}"


def test_cosalign_test_sampling_is_seeded(tmp_path):
    src = cosalign_test_dir(tmp_path / "ds", rows=10)
    load = lambda seed: B.load_benchmark("cosalign_test", path_or_id=str(src), prompts_per_config=4,
                                         seed=seed, cache_dir=tmp_path / "cache")
    a, b, c = load(0), load(0), load(1)
    assert a.groupby("config_id").size().unique().tolist() == [4]
    assert a.equals(b)
    assert not a["prompt"].equals(c["prompt"])


def test_config_ids_filter(tmp_path):
    src = cosalign_test_dir(tmp_path / "ds")
    df = B.load_benchmark("cosalign_test", path_or_id=str(src), config_ids=["safe"],
                          cache_dir=tmp_path / "cache")
    assert df["config_id"].unique().tolist() == ["safe"] and df["allowed_categories"].iloc[0] == []
    with pytest.raises(ValueError, match="no config"):
        B.load_benchmark("cosalign_test", path_or_id=str(src), config_ids=["nope"],
                         cache_dir=tmp_path / "cache")


def test_cosapien_from_local_copy(tmp_path):
    src = cosapien_dir(tmp_path / "CoSApien")
    df = B.load_benchmark("cosapien", path_or_id=str(src), cache_dir=tmp_path / "cache")
    assert df["config_id"].drop_duplicates().tolist() == COSAPIEN_SPLITS
    assert set(df["config_set"]) == {"freeform"}
    assert df["allowed_categories"].isna().all()
    assert (df["system_prompt"] == df["config_id"].map(lambda s: f"You work for the {s} team. Allow X, never Y.")).all()
    assert set(df["type"]) == {"allowed", "disallowed", "partially allowed"}


def test_cosapien_missing_split_or_column_is_named(tmp_path):
    with pytest.raises(InputError, match="film_production"):
        B.load_benchmark("cosapien", path_or_id=str(cosapien_dir(tmp_path / "a", splits=COSAPIEN_SPLITS[:4])),
                         cache_dir=tmp_path / "cache")
    with pytest.raises(InputError, match="scenario"):
        B.load_benchmark("cosapien", path_or_id=str(cosapien_dir(tmp_path / "b", drop="scenario")),
                         cache_dir=tmp_path / "cache")


def _prompts() -> pd.DataFrame:
    rows = [("t-allowed", [T.VIOLENCE]), ("t-partial", [T.VIOLENCE, T.PRIVACY]),
            ("t-disallowed", [T.FINANCIAL]), ("t-free", []), ("t-weapons", [T.WEAPONS]),
            ("t-drugs", [T.DRUGS])]
    df = pd.DataFrame({"prompt_id": [r[0] for r in rows], "prompt": [f"prompt {r[0]}" for r in rows],
                       "source": "seed", "split": "test", "gold_categories": [r[1] for r in rows]})
    train = pd.DataFrame({"prompt_id": ["train-1"], "prompt": ["training prompt"], "source": "seed",
                          "split": "train", "gold_categories": [[T.VIOLENCE]]})
    return pd.concat([df, train], ignore_index=True)


def test_heldout_uses_test_prompts_and_heldout_templates():
    df = B.load_benchmark("heldout", prompts_df=_prompts(), prompts_per_config=4, seed=0)
    spec = B.load_spec("heldout")
    assert df["config_id"].drop_duplicates().tolist() == [c["id"] for c in spec["configs"]]
    assert df.groupby("config_id").size().unique().tolist() == [4]
    assert "train-1" not in set(df["prompt_id"])
    assert df["template_id"].str.startswith("heldout-").all()
    sets = df.drop_duplicates("config_id").set_index("config_id")["config_set"]
    assert (sets.str.startswith("seen") == sets.index.str.startswith("seen")).all()
    assert sets["unseen-violence-weapons"] == "unseen"
    # The first four draws for {Violence} cover allowed, partial, disallowed and risk-free prompts.
    v = df[df["config_id"] == "seen-violence"]
    assert v["situation"].tolist() == ["allowed", "partial", "disallowed", "risk_free"]
    assert v["prompt_id"].tolist()[:2] == ["t-allowed", "t-partial"]


def test_heldout_is_deterministic_and_needs_prompts():
    a = B.load_benchmark("heldout", prompts_df=_prompts(), prompts_per_config=3, seed=5)
    b = B.load_benchmark("heldout", prompts_df=_prompts().iloc[::-1], prompts_per_config=3, seed=5)
    assert a.equals(b)  # input row order does not matter
    with pytest.raises(ValueError, match="prompts_df"):
        B.load_benchmark("heldout")


def test_benchmark_specs_are_versioned():
    for name in B.available():
        spec = B.load_spec(name)
        assert spec["name"] == name and spec["version"] >= 1
    assert B.load_spec("cosalign_test")["hub_id"] == "microsoft/CoSAlign-Test"
    assert B.load_spec("cosapien")["splits"] == COSAPIEN_SPLITS
    with pytest.raises(InputError, match="unknown benchmark"):
        B.load_spec("nope")


def test_cosalign_test_by_hub_id_and_pinned_revision(hub, hub_env, tmp_path):
    """The Hub path end to end against the loopback Hub: load by id at a pinned commit, and a
    later commit that changes the prompts does not change what the pinned revision loads."""
    old = cosalign_test_dir(tmp_path / "v1")
    new = cosalign_test_dir(tmp_path / "v2", rows=5)
    code = f"""
import json
from huggingface_hub import HfApi
from cosalign.evaluation import benchmarks
api = HfApi()
api.create_repo("microsoft/CoSAlign-Test", repo_type="dataset")
pinned = api.upload_folder(folder_path={str(old)!r}, repo_id="microsoft/CoSAlign-Test",
                           repo_type="dataset").oid
api.upload_folder(folder_path={str(new)!r}, repo_id="microsoft/CoSAlign-Test", repo_type="dataset")
out = {{}}
for rev in (pinned, "main"):
    df = benchmarks.load_benchmark("cosalign_test", revision=rev)
    out[rev] = {{"n": len(df), "revision": df["benchmark_revision"].iloc[0],
                "allowed": dict(zip(df["config_id"], df["allowed_categories"]))}}
print(json.dumps({{"pinned": pinned, "out": out}}))
"""
    res = json.loads(run_py(code, hub_env).stdout.strip().splitlines()[-1])
    pinned = res["pinned"]
    assert res["out"][pinned]["n"] == 8 * 3 and res["out"]["main"]["n"] == 8 * 5
    assert res["out"][pinned]["revision"] == pinned  # the resolved commit is recorded
    assert res["out"]["main"]["revision"] != pinned
    assert res["out"][pinned]["allowed"]["Illegal_Drug.Related_Activities_and_Substance_Abuse"] == [T.DRUGS]
