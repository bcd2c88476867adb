"""Stage judgments: the judge's verdict on every response -> data/judgments.parquet."""

from cosalign.io import read_parquet, write_parquet
from cosalign.judging import judge_responses
from cosalign.pipeline import run_stage, stage_params, taken_from_registry


def main() -> None:
    p = stage_params("judgments")
    if taken_from_registry(p, "judgments"):
        return
    df = judge_responses(read_parquet("data/responses.parquet"), read_parquet("data/prompts.parquet"),
                         p["judge"], p["work_batch_size"])
    write_parquet(df, "data/judgments.parquet")
    print(f"judgments: {len(df)}, valid {df['valid'].mean():.0%}, addressed {df['addressed'].mean():.0%}")


if __name__ == "__main__":
    run_stage(main)
