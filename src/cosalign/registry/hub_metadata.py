"""What the Hub reads from a card beyond the artifact itself: configs and splits, dataset card
metadata (huggingface_hub's DatasetCardData), gated access, the paper's citation, and evaluation
results (model-index entries and the `.eval_results/*.yaml` files).

Splits are real: the prompts (and their labels) are published as the pipeline's own `train` and
`test` splits, evaluation items as `test`, everything built from training prompts as `train`.
Where a split is a subset of the artifact file, it is published as a derived "view" file beside
the unchanged artifact (which `cosalign pull` and `dvc import-url` fetch), and so is the SFT view of
the preferences (config `sft`, TRL's conversational prompt-completion format).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cosalign.core.paths import Artifact

CITATION = """@inproceedings{zhang2025controllable,
  title     = {Controllable Safety Alignment: Inference-Time Adaptation to Diverse Safety Requirements},
  author    = {Zhang, Jingyu and Elgohary, Ahmed and Magooda, Ahmed and Khashabi, Daniel and Van Durme, Benjamin},
  booktitle = {The Thirteenth International Conference on Learning Representations (ICLR)},
  year      = {2025},
  eprint    = {2410.08968},
  archivePrefix = {arXiv},
  url       = {https://arxiv.org/abs/2410.08968}
}"""

# Artifacts whose rows carry harmful requests or answers: gated on the Hub (see GATED_PROMPT).
HARMFUL = frozenset({"prompts", "responses", "judgments", "preferences", "eval_items"})
GATED_PROMPT = ("This dataset contains harmful and offensive requests (violence, crime, abuse, drugs, "
                "sexual content and more) and model responses to them, some of which comply. Access "
                "is granted for safety research and for building reviewed, authorized deployments. "
                "By requesting access you agree not to use it to produce or spread harmful content.")
GATED_FIELDS = {"Affiliation": "text",
                "Intended use": {"type": "select",
                                 "options": ["Safety research", "Authorized deployment", "Education", "Other"]},
                "I will not use this data to produce or spread harmful content": "checkbox"}
TASKS = {"prompts": ["text-classification", "text-generation"], "taxonomy": ["text-classification"],
         "prompt_labels": ["text-classification"], "configs": ["text-generation"],
         "responses": ["text-generation"], "judgments": ["text-classification"],
         "preferences": ["text-generation"], "eval_items": ["text-generation"]}
# Prompt sources (data/prompts.parquet `source`) -> Hub dataset ids; anything else is ours.
SOURCE_DATASETS = (("beavertails", "PKU-Alignment/BeaverTails"), ("wildguard", "allenai/wildguardmix"))
SPLIT_COLUMN_ARTIFACTS = ("prompts", "prompt_labels")
SPLIT_DIR = "data"  # in the Hub dataset repo (the Hub's data/<split>.parquet layout), not a project path
TRAIN, TEST = "train", "test"


@dataclass
class View:
    """A file derived from the artifact file for one (config, split) of the Hub layout."""
    path: str      # in the repo
    local: Path
    config: str
    split: str


def size_category(n: int) -> str:
    """The Hub's size_categories bucket for n rows."""
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def source_datasets(sources: dict[str, int] | None) -> list[str]:
    """Hub ids of the prompt sources (`original` for the project's own seed prompts)."""
    out = []
    for s in sorted(sources or {}):
        hub = next((hid for key, hid in SOURCE_DATASETS if key in s.lower()), "original")
        if hub not in out:
            out.append(hub)
    return out or ["original"]


def build_views(artifact: Artifact, data_file: Path, out_dir: Path) -> list[View]:
    """Write the derived files of one dataset artifact under out_dir; [] when it needs none.

    prompts / prompt_labels: one file per value of their `split` column (data/train.parquet,
    data/test.parquet); preferences: the SFT view (sft/train.parquet, see data.preferences.sft_view).
    """
    from cosalign.core.io import read_parquet, write_parquet
    views = []
    if artifact.name in SPLIT_COLUMN_ARTIFACTS:
        df = read_parquet(data_file)
        for split in (TRAIN, TEST):
            part = df[df["split"] == split].reset_index(drop=True)
            if len(part):
                local = out_dir / SPLIT_DIR / f"{split}.parquet"
                write_parquet(part, local)
                views.append(View(f"{SPLIT_DIR}/{split}.parquet", local, "default", split))
    elif artifact.name == "preferences":
        from cosalign.data.preferences import sft_view
        local = out_dir / "sft" / "train.parquet"
        write_parquet(sft_view(read_parquet(data_file)), local)
        views.append(View("sft/train.parquet", local, "sft", TRAIN))
    return views


def hub_configs(artifact: Artifact, data_file: str, views: list[View]) -> list[dict]:
    """The card's `configs:` (what load_dataset reads): config `default` first."""
    by_config: dict[str, list[dict]] = {}
    for v in views:
        by_config.setdefault(v.config, []).append({"split": v.split, "path": v.path})
    if "default" not in by_config:
        split = TEST if artifact.name == "eval_items" else TRAIN
        by_config = {"default": [{"split": split, "path": data_file}], **by_config}
    configs = []
    for name, files in by_config.items():
        config = {"config_name": name, "data_files": files}
        if artifact.name == "taxonomy":
            config["field"] = "categories"  # the JSON object's list of categories becomes the rows
        configs.append(config)
    return configs


def held_out_note(artifact: Artifact, namespace: str) -> str:
    """The card's sentence on which split is held out and must not be trained on."""
    from cosalign.core.paths import repo_id
    prompts = repo_id(namespace, "prompts")
    if artifact.name in SPLIT_COLUMN_ARTIFACTS:
        return ("Splits are the pipeline's own (`split` column, a seeded hash of the prompt). **`test` is "
                "held out**: the held-out evaluation benchmark is built from it. Do not train on it, and "
                "do not use it to tune anything you report on it.")
    if artifact.name == "eval_items":
        return ("Everything here is **held out** (split `test`): the benchmark items and the models' answers "
                f"to them, built from the `test` split of `{prompts}`. Never train on it.")
    if artifact.name == "taxonomy":
        return ("One split, `train`: the category definitions; no prompts, so nothing here is held out (the "
                f"held-out prompts are the `test` split of `{prompts}`).")
    return (f"One split, `train`: built only from the `train` split of `{prompts}`. Its `test` split is "
            "held out for evaluation: do not add it to training data.")


def dataset_card_data(artifact: Artifact, rows: int, lic_id: str, sources, configs: list[dict],
                      cosalign_meta: dict):
    """huggingface_hub.DatasetCardData for one dataset artifact (metadata the Hub indexes)."""
    from huggingface_hub import DatasetCardData
    gated = {}
    if artifact.name in HARMFUL:
        gated = {"extra_gated_prompt": GATED_PROMPT, "extra_gated_fields": GATED_FIELDS}
    return DatasetCardData(
        language=["en"], license=lic_id, pretty_name=f"CoSAlign {artifact.name.replace('_', ' ')}",
        task_categories=TASKS.get(artifact.name, ["text-generation"]), size_categories=[size_category(rows)],
        source_datasets=source_datasets(sources),
        tags=["cosalign", "safety", "controllable-safety-alignment"]
        + (["dpo", "sft", "trl", "preference"] if artifact.name == "preferences" else []),
        configs=configs, **gated, cosalign=cosalign_meta)


# --- evaluation results ----------------------------------------------------------------------

METRICS = (("cosa_score", "CoSA-Score"), ("helpful_safe", "helpful+safe rate"),
           ("helpful_unsafe", "helpful+unsafe rate"))


@dataclass
class BenchmarkDataset:
    """The Hub dataset a benchmark's scores come from, pinned."""
    repo_id: str
    revision: str | None
    split: str
    config: str = "default"


def model_index(name: str, metrics: dict | None, judge: str | None,
                benchmarks: dict[str, BenchmarkDataset]) -> list:
    """EvalResults for model-index: every (benchmark, config set) x the three CoSA metrics, each
    naming the Hub dataset id, revision and split it was scored on and the judge (metric args)."""
    from huggingface_hub import EvalResult
    results = []
    for bench, config_set, ds, item_judge, metric, label, m in _scored(name, metrics, judge, benchmarks):
        results.append(EvalResult(
            task_type="text-generation", task_name="Controllable safety alignment",
            dataset_type=ds.repo_id, dataset_name=f"{bench} ({config_set} configs)",
            dataset_config=ds.config, dataset_split=ds.split, dataset_revision=ds.revision,
            dataset_args={"benchmark": bench, "config_set": config_set},
            metric_type=metric, metric_name=f"{label} (judge: {item_judge})", metric_value=m[metric],
            metric_config=config_set, metric_args={"judge": item_judge}))
    return results


def _scored(name: str, metrics: dict | None, judge: str | None, benchmarks: dict[str, BenchmarkDataset]):
    """(benchmark, config set, its dataset, judge, metric, label, group metrics) for every METRICS
    score of model `name` that metrics.json holds, in sorted group order."""
    for key, m in sorted(((metrics or {}).get(name) or {}).items()):
        bench, _, config_set = key.partition("/")
        ds = benchmarks.get(bench) or BenchmarkDataset(bench, None, TEST)
        item_judge = m.get("judge") or judge or "unknown"
        for metric, label in METRICS:
            if m.get(metric) is not None:
                yield bench, config_set, ds, item_judge, metric, label, m


def eval_results_entries(name: str, metrics: dict | None, judge: str | None,
                         benchmarks: dict[str, BenchmarkDataset]) -> list:
    """The same scores as huggingface_hub.EvalResultEntry rows for `.eval_results/cosalign.yaml`
    (the Hub's newer per-file format, https://huggingface.co/docs/hub/eval-results): one entry per
    (benchmark, config set, metric), task_id `<benchmark>-<config set>-<metric>`, the interval
    (metrics.json `ci`, when present), judge and n in `notes`."""
    from huggingface_hub import EvalResultEntry
    entries = []
    for bench, config_set, ds, item_judge, metric, label, m in _scored(name, metrics, judge, benchmarks):
        ci = ((m.get("ci") or {}).get(metric)) or {}
        interval = f"; 95% CI [{ci['lo']}, {ci['hi']}]" if "lo" in ci and "hi" in ci else ""
        entries.append(EvalResultEntry(
            dataset_id=ds.repo_id, task_id=f"{bench}-{config_set}-{metric}", value=m[metric],
            dataset_revision=ds.revision,
            notes=f"{label} on {config_set} configs, split {ds.split}; judge: {item_judge}; "
                  f"n={m.get('n')}{interval}"))
    return entries


def eval_results_yaml(entries: list) -> str:
    import yaml
    from huggingface_hub import eval_result_entries_to_yaml
    return yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False, allow_unicode=True, width=1000)
