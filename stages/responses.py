"""Stage responses: several replies per (config, prompt) -> data/responses.parquet, under the
generation configs (the pairing configs under `protocol: cosalign`; docs/paper-fidelity.md, 7d)."""

from cosalign.core import paths, precision
from cosalign.core.io import read_parquet, write_parquet
from cosalign.core.stage import run_stage, stage_params, taken_from_registry
from cosalign.data.responses import generate_responses


def main() -> None:
    p = stage_params("responses")
    if taken_from_registry(p, "responses"):
        return
    df = generate_responses(read_parquet("data/prompts.parquet"), read_parquet(paths.GENERATION_CONFIGS),
                            p, "models/base", precision=precision.top_level()["resolved"])
    write_parquet(df, "data/responses.parquet")
    print(f"responses: {len(df)} ({(df['source'] == 'template').sum()} templated)")


if __name__ == "__main__":
    run_stage(main)
