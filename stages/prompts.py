"""Stage prompts: gather, check and split the prompts -> data/prompts.parquet."""

from cosalign.core import paths
from cosalign.core.io import write_parquet
from cosalign.core.stage import run_stage, stage_params
from cosalign.data.prompts import PromptsParams, build_prompts


def main() -> None:
    p = stage_params("prompts", PromptsParams, artifact="prompts")
    if p is None:  # pulled from the Hub
        return
    df = build_prompts(p)
    write_parquet(df, paths.PROMPTS)
    print(f"prompts: {len(df)} ({(df['split'] == 'train').sum()} train, {(df['split'] == 'test').sum()} test)")


if __name__ == "__main__":
    run_stage(main)
