"""Stage prompt_labels: the judge's risk set per prompt -> data/prompt_labels.parquet,
and its agreement with the gold labels on the test split -> reports/prompt_labels.json."""

from cosalign.core.io import read_parquet, write_json, write_parquet
from cosalign.data.judging import PROMPTS, agreement, label_prompts, with_fit_data
from cosalign.core.params import protocol
from cosalign.core.stage import run_stage, stage_params, taken_from_registry
from cosalign.cosa.taxonomy import Taxonomy


def main() -> None:
    p = stage_params("prompt_labels")
    tax = Taxonomy.load("data/taxonomy.json")  # the judge's label space
    if not taken_from_registry(p, "prompt_labels"):
        write_parquet(label_prompts(read_parquet(PROMPTS), with_fit_data(p["judge"], PROMPTS), tax, protocol()),
                      "data/prompt_labels.parquet")
    report = agreement(read_parquet("data/prompt_labels.parquet"), split="test", taxonomy=tax)
    write_json(report, "reports/prompt_labels.json")
    print(f"prompt_labels: exact-set match with gold on the test split: {report.get('exact_set_match')}")


if __name__ == "__main__":
    run_stage(main)
