"""Stage preferences: error-scored preference pairs -> data/preferences.parquet.

Streams: the inputs are read, paired, validated and written a chunk of prompts at a time, so
memory does not grow with the prompt count (bench/bench_memory.py). A `max_pairs` cap keeps a
seeded subset (pairing.sample_pairs: the pairs with the smallest seeded hash keys, in file order),
holding at most that many pairs.
"""

from collections import Counter

from cosalign.core import paths
from cosalign.cosa import schemas
from cosalign.cosa.taxonomy import Taxonomy
from cosalign.core.params import protocol
from cosalign.core.stage import run_stage, stage_params
from cosalign.registry.source import pulled
from cosalign.data.preferences import PairInputs, PreferencesParams, iter_pairs, sample_pairs


def _tally(chunks, modes: Counter):
    """Pass `chunks` through, counting pairs per mode for the summary line."""
    for chunk in chunks:
        modes.update(chunk["mode"])
        yield chunk


def main() -> None:
    if pulled("preferences"):  # source: NS/NAME@REV, the published artifact instead
        return
    p = stage_params("preferences", PreferencesParams)
    grouping = protocol()  # top-level: 'paper' groups responses as the authors' pairing code does
    tax = Taxonomy.load(paths.TAXONOMY)
    inputs = PairInputs(configs=paths.CONFIGS, responses=paths.RESPONSES, judgments=paths.JUDGMENTS,
                        prompts=paths.PROMPTS, labels=paths.PROMPT_LABELS)
    chunks = iter_pairs(inputs, seed=p.seed, max_pairs_per_config=p.max_pairs_per_config, protocol=grouping,
                        taxonomy=tax)
    if p.max_pairs:  # null or 0: every pair
        chunks = [sample_pairs(chunks, max_pairs=p.max_pairs, seed=p.seed)]
    modes = Counter()
    rows = schemas.write_dataset(_tally(chunks, modes), "preferences", paths.PREFERENCES, taxonomy=tax)
    print(f"preferences ({grouping} protocol): {rows} pairs; modes {dict(modes.most_common())}")


if __name__ == "__main__":
    run_stage(main)
