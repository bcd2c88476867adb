"""Stage configs: sampled allowed sets rendered as safety configs -> data/configs.parquet."""

from cosalign.configs import sample_configs
from cosalign.io import read_parquet, write_parquet
from cosalign.pipeline import run_stage, stage_params, taken_from_registry


def main() -> None:
    p = stage_params("configs")
    if taken_from_registry(p, "configs"):
        return
    prompts = read_parquet("data/prompts.parquet")
    labels = read_parquet("data/prompt_labels.parquet")
    if p.get("max_train_prompts"):  # a seeded subset keeps the CPU profiles' generation bounded
        train = labels[labels["split"] == "train"]
        keep = train.sample(n=min(p["max_train_prompts"], len(train)), random_state=p["seed"])["prompt_id"]
        labels = labels[labels["prompt_id"].isin(set(keep))]
    df = sample_configs(prompts, labels, modes=p["modes"], configs_per_mode=p["configs_per_mode"],
                        seed=p["seed"])
    write_parquet(df, "data/configs.parquet")
    print(f"configs: {len(df)} for {df['prompt_id'].nunique()} training prompts; "
          f"modes {df['mode'].value_counts().to_dict()}")


if __name__ == "__main__":
    run_stage(main)
