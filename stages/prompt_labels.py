"""Stage prompt_labels: the judge's risk set per prompt -> data/prompt_labels.parquet,
and its agreement with the gold labels on the test split -> reports/prompt_labels.json."""

from cosalign.core import paths
from cosalign.core.io import read_parquet, write_json, write_parquet
from cosalign.core.params import protocol
from cosalign.core.stage import run_stage, stage_params
from cosalign.cosa.taxonomy import Taxonomy
from cosalign.registry.source import pulled
from cosalign.data.judging import PromptLabelsParams, agreement, label_prompts, with_fit_data


def main() -> None:
    tax = Taxonomy.load(paths.TAXONOMY)  # the judge's label space
    if not pulled("prompt_labels"):  # source: NS/NAME@REV, the published labels instead
        p = stage_params("prompt_labels", PromptLabelsParams)
        write_parquet(label_prompts(read_parquet(paths.PROMPTS), with_fit_data(p.judge, paths.PROMPTS), tax,
                                    protocol()), paths.PROMPT_LABELS)
    report = agreement(read_parquet(paths.PROMPT_LABELS), split="test", taxonomy=tax)
    write_json(report, paths.PROMPT_LABELS_METRICS)
    print(f"prompt_labels: exact-set match with gold on the test split: {report.get('exact_set_match')}")


if __name__ == "__main__":
    run_stage(main)
