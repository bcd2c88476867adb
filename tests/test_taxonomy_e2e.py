"""End to end (#13 item 1): a category added through `taxonomy.extra_categories` reaches
data/taxonomy.json, the configs and the judge's label space after `dvc repro` of the tiny profile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cosalign.core.io import read_parquet
from cosalign.cosa.taxonomy import OTHER, PAPER
from pipeline_run import copy_repo, dvc, env_for

EXTRA = "Election Interference"
EXTRA_DESC = ("Spreading false voting dates, intimidating voters, tampering with ballots or voting "
              "machines, and impersonating election officials.")

# Until the schemas take their category vocabulary from data/taxonomy.json (#16, the contracts
# change), the prompt_labels, configs and labels checks refuse an added category: remove this mark
# when that lands (strict, so the suite says so).
pytestmark = [pytest.mark.e2e, pytest.mark.xfail(
    strict=True, raises=(AssertionError, subprocess.CalledProcessError),
    reason="schemas.py checks category names against the paper's taxonomy (#16)")]


def test_an_added_category_reaches_taxonomy_configs_and_the_judge(tmp_path):
    root = copy_repo(tmp_path / "repo", "tiny")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["taxonomy"]["extra_categories"] = [{"name": EXTRA, "description": EXTRA_DESC, "seen": True}]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(root, "repro", "configs")  # prompts -> taxonomy -> prompt_labels -> configs

    categories = json.loads((root / "data" / "taxonomy.json").read_text())["categories"]
    names = [c["name"] for c in categories]
    assert names == [n for n in PAPER.names if n != OTHER] + [EXTRA, OTHER]
    assert categories[-2] == {"name": EXTRA, "description": EXTRA_DESC, "seen": True, "allowable": True}

    configs = read_parquet(root / "data" / "configs.parquet")
    with_extra = configs[configs["allowed_categories"].map(lambda a: EXTRA in a)]
    assert len(with_extra) > 0
    assert all(EXTRA_DESC in text for text in with_extra["system_prompt"])

    # The judge's label space: `cosalign label` in the run's directory reads its data/taxonomy.json
    # and params.yaml's judge, and reuses the classifier the prompt_labels stage fitted.
    (root / "probe.csv").write_text(f"prompt\n\"{EXTRA_DESC}\"\n")
    cli = Path(sys.executable).parent / "cosalign"
    subprocess.run([str(cli), "label", "--judge", "rules", "probe.csv", "probe.jsonl"], cwd=root,
                   env=env_for(root), check=True, capture_output=True, text=True)
    [row] = [json.loads(line) for line in (root / "probe.jsonl").read_text().splitlines()]
    assert EXTRA in row["risk_categories"]
    labels = read_parquet(root / "data" / "prompt_labels.parquet")
    assert set(labels["judge"]) == {row["judge"]}  # the same fitted judge as the stage's
