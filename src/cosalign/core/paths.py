"""The path map: every file and folder the pipeline reads from git or writes, in one place.

Stage scripts and library modules take their paths from here; no other module in src/ or
stages/ spells out a `data/`, `models/` or `reports/` path (tests/test_paths.py checks this, and
checks dvc.yaml's outs against the map). All paths are relative to the repository root.
The `Artifact` tables name what `publish`, `pull`, `validate` and the stage `source` params share;
Hub repos are named `<namespace>/cosalign-<name>`.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- inputs kept in git ---------------------------------------------------------------------------
SEED_PROMPTS = "data/seed/prompts.jsonl"  # the project's hand-labelled prompts (data/seed/README.md)
SEED_FEWSHOT = "data/seed/fewshot.jsonl"  # demonstrations for the base_ica_5shot baseline
JUDGE_TRAIN = "data/judge_train/prompts.jsonl"  # the rules judge's own fitting prompts (issue #15)
JUDGE_EVAL = "data/judge_eval"  # the judge-evaluation set: prompts_/triples_{eval,dev}.jsonl (issue #15)

# --- stage outputs, in pipeline order -------------------------------------------------------------
BASE_MODEL = "models/base"                          # base_model
PROMPTS = "data/prompts.parquet"                    # prompts
TAXONOMY = "data/taxonomy.json"                     # taxonomy
PROMPT_LABELS = "data/prompt_labels.parquet"        # prompt_labels
PROMPT_LABELS_METRICS = "reports/prompt_labels.json"  # prompt_labels: agreement with gold labels
CONFIGS = "data/configs.parquet"                    # configs
GENERATION_CONFIGS = "data/generation_configs.parquet"  # configs: what responses generates under
RESPONSES = "data/responses.parquet"                # responses
JUDGMENTS = "data/judgments.parquet"                # judgments
PREFERENCES = "data/preferences.parquet"            # preferences
SFT_MODEL = "models/sft"                            # sft
DPO_MODEL = "models/dpo"                            # dpo
TRAIN_REPORTS = "reports/train"                     # sft, dpo: <stage>.csv and <stage>.png curves
EVAL_DIR = "reports/eval"                           # evaluate@MODEL: <model>.parquet
EVAL_ITEMS = "reports/eval_items.parquet"           # report
METRICS = "reports/metrics.json"                    # report
BREAKDOWN = "reports/breakdown.json"                # report: per-model breakdown and intervals
REPORT = "reports/report.md"                        # report
PLOTS_DIR = "reports/plots"                         # report
JUDGE_QUALITY = "reports/judge.json"                # judge_quality: the judge measured on data/judge_eval

# --- checkpoints outside DVC's outputs (DVC deletes outputs before a stage runs) -----------------
WORK_ROOT = ".cache/work"  # resumable work batches: <stage>/<fingerprint>/ (core.workqueue)


def eval_items(model: str) -> str:
    """reports/eval/<model>.parquet, the evaluate@<model> stage's output."""
    return f"{EVAL_DIR}/{model}.parquet"


@dataclass(frozen=True)
class Artifact:
    name: str  # also the schema name and the Hub repo suffix
    path: str  # relative to the repository root
    stage: str  # the DVC stage that writes it
    kind: str  # "dataset" or "model"


DATASETS: tuple[Artifact, ...] = (
    Artifact("prompts", PROMPTS, "prompts", "dataset"),
    Artifact("taxonomy", TAXONOMY, "taxonomy", "dataset"),
    Artifact("prompt_labels", PROMPT_LABELS, "prompt_labels", "dataset"),
    Artifact("configs", CONFIGS, "configs", "dataset"),
    Artifact("responses", RESPONSES, "responses", "dataset"),
    Artifact("judgments", JUDGMENTS, "judgments", "dataset"),
    Artifact("preferences", PREFERENCES, "preferences", "dataset"),
    Artifact("eval_items", EVAL_ITEMS, "report", "dataset"),
)
MODELS: tuple[Artifact, ...] = (
    Artifact("sft", SFT_MODEL, "sft", "model"),
    Artifact("dpo", DPO_MODEL, "dpo", "model"),
)
ALL: dict[str, Artifact] = {a.name: a for a in DATASETS + MODELS}


def repo_id(namespace: str, name: str) -> str:
    return f"{namespace}/cosalign-{name.replace('_', '-')}"
