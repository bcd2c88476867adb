"""Stage configs: sampled allowed sets rendered as safety configs -> data/configs.parquet (pairing)
and data/generation_configs.parquet (what responses generates under; docs/paper-fidelity.md, 7d).

Streams: the labels are read, sampled and written a chunk of prompts at a time, so memory does not
grow with the prompt count (bench/bench_memory.py).
"""

from collections import Counter
from functools import partial

from cosalign.core import paths
from cosalign.cosa import schemas
from cosalign.cosa.taxonomy import Taxonomy
from cosalign.core.params import protocol
from cosalign.core.stage import run_stage, stage_params
from cosalign.registry.source import pulled
from cosalign.data.configs import (ConfigsParams, iter_configs, training_label_chunks,
                                   write_generation_configs)


def _tally(chunks, counts: dict):
    """Pass `chunks` through, counting configs per mode and prompts for the summary line."""
    for chunk in chunks:
        counts["modes"].update(chunk["mode"])
        counts["prompts"] += chunk["prompt_id"].nunique()  # a prompt's configs sit in one chunk
        yield chunk


def main() -> None:
    p = stage_params("configs", ConfigsParams)
    sampling = protocol()  # top-level: 'paper' samples as the authors' pairing code does
    labels_of = partial(training_label_chunks, paths.PROMPTS, paths.PROMPT_LABELS,
                        max_prompts=p.max_train_prompts, seed=p.seed)
    if pulled("configs"):  # source: NS/NAME@REV, the published artifact instead
        print(write_generation_configs(sampling, paths.GENERATION_CONFIGS, configs_path=paths.CONFIGS,
                                       label_chunks=labels_of, seed=p.seed, taxonomy=Taxonomy.load(paths.TAXONOMY)))
        return
    tax = Taxonomy.load(paths.TAXONOMY)
    chunks = iter_configs(labels_of(), modes=p.modes, configs_per_mode=p.configs_per_mode, seed=p.seed,
                          protocol=sampling, taxonomy=tax)
    counts = {"modes": Counter(), "prompts": 0}
    rows = schemas.write_dataset(_tally(chunks, counts), "configs", paths.CONFIGS, taxonomy=tax)
    print(f"configs ({sampling} protocol): {rows} for {counts['prompts']} training prompts; "
          f"modes {dict(counts['modes'].most_common())}")
    print(write_generation_configs(sampling, paths.GENERATION_CONFIGS, configs_path=paths.CONFIGS,
                                   label_chunks=labels_of, seed=p.seed, taxonomy=tax))


if __name__ == "__main__":
    run_stage(main)
