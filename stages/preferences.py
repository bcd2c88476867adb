"""Stage preferences: error-scored preference pairs -> data/preferences.parquet.

Streams: the inputs are read, paired, validated and written a chunk of prompts at a time, so
memory does not grow with the prompt count (bench/bench_memory.py). A `max_pairs` cap keeps a
seeded subset (pairing.sample_pairs: the pairs with the smallest seeded hash keys, in file order),
holding at most that many pairs.

`source: cosalign_train` takes the authors' released pairs instead (preferences.cosalign_train:
path_or_id, revision, split, on_mismatch), decoded and re-checked, then capped and written the
same way.
"""

import dataclasses
from collections import Counter

from cosalign.core import paths
from cosalign.cosa import schemas
from cosalign.cosa.taxonomy import Taxonomy
from cosalign.core.params import protocol
from cosalign.core.stage import run_stage, stage_params
from cosalign.registry.source import pulled
from cosalign.data.preferences import (COSALIGN_TRAIN_SOURCE, PairInputs, PreferencesParams, iter_pairs,
                                      load_cosalign_train, sample_pairs)


def _tally(chunks, modes: Counter):
    """Pass `chunks` through, counting pairs per mode for the summary line."""
    for chunk in chunks:
        modes.update(chunk["mode"])
        yield chunk


def main() -> None:
    p = stage_params("preferences", PreferencesParams)
    released = p.source == COSALIGN_TRAIN_SOURCE
    if not released and pulled("preferences"):  # source: NS/NAME@REV, the published artifact instead
        return
    grouping = protocol()  # top-level: 'paper' groups responses as the authors' pairing code does
    tax = None  # the released pairs name the paper's categories; no taxonomy.json is needed
    if released:
        imported = load_cosalign_train(dataclasses.asdict(p.cosalign_train))
        print(f"preferences: CoSAlign-Train import {imported.attrs['import_report']}")
        chunks = [imported]
        grouping = "released CoSAlign-Train"
    else:
        tax = Taxonomy.load(paths.TAXONOMY)
        inputs = PairInputs(configs=paths.CONFIGS, responses=paths.RESPONSES, judgments=paths.JUDGMENTS,
                            prompts=paths.PROMPTS, labels=paths.PROMPT_LABELS)
        chunks = iter_pairs(inputs, seed=p.seed, max_pairs_per_config=p.max_pairs_per_config,
                            protocol=grouping, taxonomy=tax)
    if p.max_pairs:  # null or 0: every pair
        chunks = [sample_pairs(chunks, max_pairs=p.max_pairs, seed=p.seed, balance=p.balance)]
    modes = Counter()
    rows = schemas.write_dataset(_tally(chunks, modes), "preferences", paths.PREFERENCES, taxonomy=tax)
    print(f"preferences ({grouping} protocol): {rows} pairs; modes {dict(modes.most_common())}")


if __name__ == "__main__":
    run_stage(main)
