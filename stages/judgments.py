"""Stage judgments: the judge's verdict on every response -> data/judgments.parquet.

Streamed: the responses are read, judged, validated and written one work batch at a time, so the
stage's memory does not grow with the number of responses.
"""

import sys

from cosalign.core.io import iter_parquet
from cosalign.data.judging import (JUDGMENTS, PROMPTS, RESPONSE_COLUMNS, RESPONSES, ResponseJudging,
                                   read_prompt_texts, with_fit_data)
from cosalign.core.params import protocol
from cosalign.core.stage import run_stage, stage_params, taken_from_registry
from cosalign.cosa.schemas import write_dataset
from cosalign.cosa.taxonomy import Taxonomy


def main() -> None:
    p = stage_params("judgments")
    if taken_from_registry(p, "judgments"):
        return
    run = ResponseJudging(lambda: iter_parquet(RESPONSES, p["work_batch_size"], columns=RESPONSE_COLUMNS),
                          read_prompt_texts(PROMPTS, p["work_batch_size"]), with_fit_data(p["judge"], PROMPTS),
                          p["work_batch_size"], taxonomy=Taxonomy.load("data/taxonomy.json"), protocol=protocol())
    run.dry_run()  # judge.dry_run: the whole run's estimate, one line, exit 0
    write_dataset(run, "judgments", JUDGMENTS)
    print(run.summary())
    if run.transport_warning():
        print(run.transport_warning(), file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
