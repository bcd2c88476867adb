"""Stage prompts: gather, check and split the prompts -> data/prompts.parquet."""

from cosalign.core import paths
from cosalign.core.io import write_parquet
from cosalign.core.stage import run_stage, stage_params
from cosalign.registry.source import pulled
from cosalign.data.prompts import PromptsParams, build_prompts


def main() -> None:
    if pulled("prompts"):  # source: NS/NAME@REV, the published artifact instead
        return
    p = stage_params("prompts", PromptsParams)
    df = build_prompts(p)
    write_parquet(df, paths.PROMPTS)
    print(f"prompts: {len(df)} ({(df['split'] == 'train').sum()} train, {(df['split'] == 'test').sum()} test)")


if __name__ == "__main__":
    run_stage(main)
