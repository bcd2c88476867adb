"""Stage judgments: the judge's verdict on every response -> data/judgments.parquet.

Streamed: the responses are read, judged, validated and written one work batch at a time, so the
stage's memory does not grow with the number of responses.
"""

import sys

from cosalign.core.io import iter_parquet
from cosalign.core import paths
from cosalign.core.params import protocol
from cosalign.core.stage import run_stage, stage_params
from cosalign.registry.source import pulled
from cosalign.data.judging import (RESPONSE_COLUMNS, JudgmentsParams, ResponseJudging, read_prompt_texts,
                                   with_fit_data)
from cosalign.cosa.schemas import write_dataset
from cosalign.cosa.taxonomy import Taxonomy


def main() -> None:
    if pulled("judgments"):  # source: NS/NAME@REV, the published artifact instead
        return
    p = stage_params("judgments", JudgmentsParams)
    run = ResponseJudging(lambda: iter_parquet(paths.RESPONSES, p.work_batch_size, columns=RESPONSE_COLUMNS),
                          read_prompt_texts(paths.PROMPTS, p.work_batch_size),
                          with_fit_data(p.judge, paths.PROMPTS), p.work_batch_size,
                          taxonomy=Taxonomy.load(paths.TAXONOMY), protocol=protocol())
    run.dry_run()  # judge.dry_run: the whole run's estimate, one line, exit 0
    write_dataset(run, "judgments", paths.JUDGMENTS, taxonomy=run.taxonomy)
    print(run.summary())
    if run.transport_warning():
        print(run.transport_warning(), file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
