"""Stage responses: several replies per (config, prompt) -> data/responses.parquet, under the
generation configs (the pairing configs under `protocol: cosalign`; docs/paper-fidelity.md, 7d)."""

from cosalign.core import paths, precision
from cosalign.core.io import read_parquet, write_parquet
from cosalign.core.stage import run_stage, stage_params
from cosalign.registry.source import pulled
from cosalign.data.responses import ResponsesParams, generate_responses


def main() -> None:
    if pulled("responses"):  # source: NS/NAME@REV, the published artifact instead
        return
    p = stage_params("responses", ResponsesParams)
    df = generate_responses(read_parquet(paths.PROMPTS), read_parquet(paths.GENERATION_CONFIGS),
                            p, paths.BASE_MODEL, precision=precision.top_level()["resolved"])
    write_parquet(df, paths.RESPONSES)
    print(f"responses: {len(df)} ({(df['source'] == 'template').sum()} templated)")


if __name__ == "__main__":
    run_stage(main)
