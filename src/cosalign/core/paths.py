"""The artifact map: every artifact the pipeline writes, its path, its schema and its stage.

One place for the names that `publish`, `pull`, `validate` and the stage `source` params share.
Hub repos are named `<namespace>/cosalign-<name>`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Artifact:
    name: str  # also the schema name and the Hub repo suffix
    path: str  # relative to the repository root
    stage: str  # the DVC stage that writes it
    kind: str  # "dataset" or "model"


DATASETS: tuple[Artifact, ...] = (
    Artifact("prompts", "data/prompts.parquet", "prompts", "dataset"),
    Artifact("taxonomy", "data/taxonomy.json", "taxonomy", "dataset"),
    Artifact("prompt_labels", "data/prompt_labels.parquet", "prompt_labels", "dataset"),
    Artifact("configs", "data/configs.parquet", "configs", "dataset"),
    Artifact("responses", "data/responses.parquet", "responses", "dataset"),
    Artifact("judgments", "data/judgments.parquet", "judgments", "dataset"),
    Artifact("preferences", "data/preferences.parquet", "preferences", "dataset"),
    Artifact("eval_items", "reports/eval_items.parquet", "report", "dataset"),
)
MODELS: tuple[Artifact, ...] = (
    Artifact("sft", "models/sft", "sft", "model"),
    Artifact("dpo", "models/dpo", "dpo", "model"),
)
ALL: dict[str, Artifact] = {a.name: a for a in DATASETS + MODELS}


def repo_id(namespace: str, name: str) -> str:
    return f"{namespace}/cosalign-{name.replace('_', '-')}"


def from_repo_name(repo_name: str) -> Artifact:
    """`cosalign-prompt-labels` -> the prompt_labels artifact."""
    short = repo_name.split("/")[-1]
    if not short.startswith("cosalign-"):
        raise KeyError(f"{repo_name!r} is not a cosalign artifact repo (cosalign-<artifact>)")
    name = short[len("cosalign-"):].replace("-", "_")
    if name not in ALL:
        raise KeyError(f"unknown artifact {name!r} in {repo_name!r}; known: {sorted(ALL)}")
    return ALL[name]
