"""Stage taxonomy: the paper's categories, params' extras and the clustering report -> data/taxonomy.json."""

from cosalign.core import paths, precision
from cosalign.core.io import read_parquet, write_json
from cosalign.core.stage import run_stage, stage_params
from cosalign.registry.source import pulled
from cosalign.cosa.schemas import validate_taxonomy
from cosalign.data.taxonomy import TaxonomyParams, derive_taxonomy


def main() -> None:
    if pulled("taxonomy"):  # source: NS/NAME@REV, the published artifact instead
        return
    p = stage_params("taxonomy", TaxonomyParams)
    prompts = read_parquet(paths.PROMPTS, columns=["prompt"])
    result = validate_taxonomy(derive_taxonomy(prompts, p, precision=precision.top_level()["resolved"]),
                               paths.TAXONOMY)
    write_json(result, paths.TAXONOMY)
    d = result["derivation"]
    print(f"taxonomy: {d['n_clusters']} clusters, {d['mapped_share']:.0%} of prompts mapped, "
          f"{len(d['candidate_clusters'])} candidate clusters for review")


if __name__ == "__main__":
    run_stage(main)
