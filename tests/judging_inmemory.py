"""The judgments stage over frames in memory, a tests/ helper: one frame in, one frame out.

The stage streams its files through ResponseJudging; this runs the same code over frames already
in memory, so a test can state a case as a table. (configs.sample_configs and
preferences.build_pairs, the in-memory configs and preferences, stay in the library: bench uses them.)
"""

from __future__ import annotations

import pandas as pd

from cosalign.core import paths
from cosalign.cosa import schemas
from cosalign.cosa.taxonomy import PAPER, Taxonomy
from cosalign.data.judging import ResponseJudging


def judge_responses(responses: pd.DataFrame, prompts: pd.DataFrame, judge_params: dict,
                    work_batch_size: int, taxonomy: Taxonomy = PAPER, protocol: str = "cosalign") -> pd.DataFrame:
    """data/judgments.parquet as one validated frame: one verdict per response, in response order
    (`ResponseJudging` over frames already in memory)."""
    run = ResponseJudging(lambda: [responses], dict(zip(prompts["prompt_id"], prompts["prompt"])),
                          judge_params, work_batch_size, taxonomy=taxonomy, protocol=protocol)
    out = pd.concat(list(run), ignore_index=True)
    return schemas.validate(out, "judgments", paths.JUDGMENTS, taxonomy=taxonomy)
