"""Stage preferences: error-scored preference pairs -> data/preferences.parquet.

Streams: the inputs are read, paired, validated and written a chunk of prompts at a time, so
memory does not grow with the prompt count (bench/bench_memory.py). A `max_pairs` cap keeps a
seeded subset (pairing.sample_pairs: the pairs with the smallest seeded hash keys, in file order),
holding at most that many pairs.

`source: cosalign_train` takes the authors' released pairs instead (preferences.cosalign_train:
path_or_id, revision, split, on_mismatch), decoded and re-checked, then capped and written the
same way.
"""

from collections import Counter

from cosalign.cosa import schemas
from cosalign.cosa.taxonomy import Taxonomy
from cosalign.data.preferences import (COSALIGN_TRAIN_SOURCE, PairInputs, iter_pairs,
                                      load_cosalign_train, sample_pairs)
from cosalign.core.params import protocol
from cosalign.core.stage import run_stage, stage_params, taken_from_registry


def _tally(chunks, modes: Counter):
    """Pass `chunks` through, counting pairs per mode for the summary line."""
    for chunk in chunks:
        modes.update(chunk["mode"])
        yield chunk


def main() -> None:
    p = stage_params("preferences")
    released = p.get("source") == COSALIGN_TRAIN_SOURCE
    if not released and taken_from_registry(p, "preferences"):
        return
    grouping = protocol()  # top-level: 'paper' groups responses as the authors' pairing code does
    if released:
        imported = load_cosalign_train(p.get("cosalign_train"))
        print(f"preferences: CoSAlign-Train import {imported.attrs['import_report']}")
        chunks = [imported]
        grouping = "released CoSAlign-Train"
    else:
        chunks = iter_pairs(PairInputs(), seed=p["seed"], max_pairs_per_config=p.get("max_pairs_per_config"),
                            protocol=grouping, taxonomy=Taxonomy.load("data/taxonomy.json"))
    if p.get("max_pairs"):  # null or 0: every pair
        chunks = [sample_pairs(chunks, max_pairs=p["max_pairs"], seed=p["seed"], balance=p.get("balance"))]
    modes = Counter()
    rows = schemas.write_dataset(_tally(chunks, modes), "preferences", "data/preferences.parquet")
    print(f"preferences ({grouping} protocol): {rows} pairs; modes {dict(modes.most_common())}")


if __name__ == "__main__":
    run_stage(main)
