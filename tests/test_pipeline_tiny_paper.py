"""End to end under `protocol: paper`: `dvc repro` of the tiny profile with the top-level switch
flipped (docs/paper-fidelity.md). With the offline rules judge the judge-protocol part is a no-op
(the rules judge asks no questions); the pair-data switches and the evaluation side run."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from cosalign.cosa import schemas, taxonomy
from cosalign.core.io import read_parquet
from cosalign.evaluation import benchmarks
from pipeline_run import copy_repo, dvc
from test_pipeline_tiny import declared_outs

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def paper_pipeline(tmp_path_factory):
    root = copy_repo(tmp_path_factory.mktemp("tiny-paper"), "tiny")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["protocol"] = "paper"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(root, "repro")
    return root


def test_paper_protocol_runs_end_to_end(paper_pipeline):
    root = paper_pipeline
    for out in declared_outs(root):
        path = root / out
        assert path.exists(), f"{out} was declared but not written"
        if path.suffix == ".parquet" or path.name == "taxonomy.json":
            assert schemas.validate_file(path) > 0
    labels = read_parquet(root / "data/prompt_labels.parquet").set_index("prompt_id")
    configs = read_parquet(root / "data/configs.parquet")
    # 7a: no training prompt carries an unseen category or Other Harms
    for pid in configs["prompt_id"].unique():
        assert set(labels.at[pid, "risk_categories"]) <= set(taxonomy.SEEN)
    # 7d: responses answer the generation configs (4 superset + 4 not_superset per training prompt,
    # unseen categories allowed, also for prompts 7a leaves out of pairing), never the pairing ones
    gen = read_parquet(root / "data/generation_configs.parquet")
    assert gen.groupby(["prompt_id", "mode"]).size().eq(4).all() and set(gen["mode"]) == {"superset", "not_superset"}
    assert set(configs["prompt_id"]) < set(gen["prompt_id"])
    assert any(set(a) & set(taxonomy.UNSEEN) for a in gen["allowed_categories"])
    model = read_parquet(root / "data/responses.parquet").query("source == 'model'")
    assert set(gen["config_id"]) <= set(model["config_id"]) and not set(configs["config_id"]) & set(model["config_id"])


def test_heldout_items_do_not_depend_on_the_protocol(paper_pipeline):
    root = paper_pipeline
    p = yaml.safe_load((root / "params.yaml").read_text())["evaluate"]
    items = benchmarks.load_benchmark("heldout", prompts_df=read_parquet(root / "data/prompts.parquet"),
                                      prompts_per_config=p["prompts_per_config"], seed=p["seed"])
    got = read_parquet(root / "reports/eval/base_ica.parquet")
    cols = ["config_id", "prompt_id", "prompt", "system_prompt", "template_id"]
    pd.testing.assert_frame_equal(got.loc[got["benchmark"] == "heldout", cols].reset_index(drop=True),
                                  items[cols].reset_index(drop=True))
