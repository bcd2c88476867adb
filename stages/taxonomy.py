"""Stage taxonomy: the paper's categories, params' extras and the clustering report -> data/taxonomy.json."""

from cosalign.core import precision
from cosalign.core.io import InputError, read_parquet, write_json
from cosalign.core.params import PARAMS_FILE
from cosalign.core.stage import run_stage, stage_params, taken_from_registry
from cosalign.cosa import taxonomy
from cosalign.cosa.schemas import validate_taxonomy
from cosalign.data.taxonomy import derive_taxonomy


def main() -> None:
    p = stage_params("taxonomy")
    if taken_from_registry(p, "taxonomy"):
        return
    try:
        tax = taxonomy.build(p.get("extra_categories"), p.get("descriptions"))
    except ValueError as exc:  # build()'s messages start with the params key at fault
        raise InputError(PARAMS_FILE, str(exc)) from None
    prompts = read_parquet("data/prompts.parquet", columns=["prompt"])
    result = validate_taxonomy(derive_taxonomy(prompts, p, tax, precision=precision.top_level()["resolved"]),
                               "data/taxonomy.json")
    write_json(result, "data/taxonomy.json")
    d = result["derivation"]
    print(f"taxonomy: {d['n_clusters']} clusters, {d['mapped_share']:.0%} of prompts mapped, "
          f"{len(d['candidate_clusters'])} candidate clusters for review")


if __name__ == "__main__":
    run_stage(main)
