"""Stage preferences: error-scored preference pairs -> data/preferences.parquet."""

from cosalign.io import read_parquet, write_parquet
from cosalign.pairing import build_pairs
from cosalign.pipeline import run_stage, stage_params, taken_from_registry


def main() -> None:
    p = stage_params("preferences")
    if taken_from_registry(p, "preferences"):
        return
    responses = read_parquet("data/responses.parquet")
    judgments = read_parquet("data/judgments.parquet")
    pool = responses.merge(judgments, on="response_id", how="inner", validate="one_to_one")
    pool = pool[pool["valid"]]  # an unparsed verdict says nothing about the response
    df = build_pairs(pool, read_parquet("data/configs.parquet"), read_parquet("data/prompts.parquet"),
                     labels_df=read_parquet("data/prompt_labels.parquet"), seed=p["seed"],
                     max_pairs_per_config=p.get("max_pairs_per_config"))
    if p.get("max_pairs") and len(df) > p["max_pairs"]:  # seeded subset, file order kept
        df = df.sample(n=p["max_pairs"], random_state=p["seed"]).sort_index().reset_index(drop=True)
    write_parquet(df, "data/preferences.parquet")
    print(f"preferences: {len(df)} pairs; modes {df['mode'].value_counts().to_dict()}")


if __name__ == "__main__":
    run_stage(main)
