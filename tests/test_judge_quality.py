"""Judge quality on the judge-evaluation set (`judges.quality`, `cosalign judge-eval`, issue #15)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cosalign.cosa import taxonomy
from cosalign.cli import main
from cosalign.core.io import InputError
from cosalign.judges.base import BaseJudge, PromptVerdict, ResponseVerdict
from cosalign.judges.quality import interval, judge_quality, load_split, set_metrics

REPO = Path(__file__).resolve().parents[1]
EVAL_DIR = REPO / "data" / "judge_eval"


class TableJudge(BaseJudge):
    """A real Judge whose verdicts are looked up in the gold labels (optionally all empty)."""

    def __init__(self, split: str, empty: bool = False):
        prompts, triples, _ = load_split(split, EVAL_DIR)
        self.prompt_gold = {r["prompt"]: r["gold_categories"] for r in prompts}
        self.triple_gold = {(r["prompt"], r["response"]): r for r in triples}
        self.empty, self.judge_id = empty, f"table/{'empty' if empty else 'gold'}"

    def _run(self, task, items):
        if task == "prompt_labels":
            return [PromptVerdict([] if self.empty else self.prompt_gold[p], True, "") for p in items]
        out = []
        for item in items:
            r = self.triple_gold[tuple(item)]
            out.append(ResponseVerdict([] if self.empty else r["gold_response_categories"],
                                       r["addressed"], r["helpfulness"], True, ""))
        return out


def test_interval_is_seeded_and_brackets_the_value():
    x = np.array([1] * 30 + [0] * 70)
    a, b = interval((x,), lambda v, axis=-1: v.mean(axis=axis)), interval((x,), lambda v, axis=-1: v.mean(axis=axis))
    assert a == b and a["value"] == 0.3
    assert 0.2 < a["lo"] < 0.3 < a["hi"] < 0.4  # about +-1.96 * sqrt(0.21 / 100)
    y = np.random.default_rng(0).normal(size=200)  # continuous: another seed moves the bounds
    mean = lambda v, axis=-1: v.mean(axis=axis)  # noqa: E731
    assert interval((y,), mean, seed=1) != interval((y,), mean, seed=2)


def test_degenerate_and_empty_samples():
    mean = lambda v, axis=-1: v.mean(axis=axis)  # noqa: E731
    assert interval((np.ones(50),), mean) == {"value": 1.0, "lo": 1.0, "hi": 1.0}
    assert interval((np.zeros(0),), mean) == {"value": None, "lo": None, "hi": None}


def test_set_metrics_on_a_small_case():
    V, P, W = taxonomy.VIOLENCE, taxonomy.PRIVACY, taxonomy.WEAPONS
    gold = [[V], [V, W], [], [], [P]]
    pred = [[V], [V], [W], [], []]
    m = set_metrics(gold, pred)
    assert m["exact_set_match"]["value"] == 0.4
    assert m["risky_recall"]["value"] == round(2 / 3, 4)
    assert m["benign_flag_rate"]["value"] == 0.5
    v = m["per_category"][V]
    assert (v["precision"]["value"], v["recall"]["value"], v["f1"]["value"], v["support"]) == (1.0, 1.0, 1.0, 2)
    w = m["per_category"][W]
    assert (w["precision"]["value"], w["recall"]["value"], w["support"]) == (0.0, 0.0, 1)
    assert m["per_category"][P]["recall"]["value"] == 0.0
    assert set(m["per_category"]) == set(taxonomy.NAMES)


def test_a_judge_that_returns_the_gold_labels_scores_perfectly():
    report = judge_quality(TableJudge("dev"), "dev", EVAL_DIR)
    assert report["n_prompts"] == 153 and report["n_triples"] == 140
    assert report["prompts"]["exact_set_match"] == {"value": 1.0, "lo": 1.0, "hi": 1.0}
    assert report["prompts"]["benign_flag_rate"]["value"] == 0.0
    r = report["responses"]
    assert r["addressed_accuracy"]["value"] == 1.0 and r["helpfulness_mae"]["value"] == 0.0
    assert r["helpfulness_spearman"]["value"] == 1.0 and r["safe_under_config_accuracy"]["value"] == 1.0
    assert report["meets_targets"] is True
    assert set(report["targets"]) == {"prompts.risky_recall", "prompts.benign_flag_rate",
                                      "prompts.exact_set_match"}


def test_a_judge_that_never_flags_misses_the_targets():
    report = judge_quality(TableJudge("dev", empty=True), "dev", EVAL_DIR)
    assert report["prompts"]["risky_recall"]["value"] == 0.0
    assert report["prompts"]["benign_flag_rate"]["value"] == 0.0
    assert report["meets_targets"] is False
    # every value is {value, lo, hi} except the supports
    for group in ("prompts", "responses"):
        for key, v in report[group].items():
            if key != "per_category":
                assert set(v) == {"value", "lo", "hi"}, key


def test_eval_set_hash_covers_both_files(tmp_path):
    for name in ("prompts_dev.jsonl", "triples_dev.jsonl"):
        (tmp_path / name).write_bytes((EVAL_DIR / name).read_bytes())
    _, _, digest = load_split("dev", tmp_path)
    assert digest == load_split("dev", EVAL_DIR)[2]
    with (tmp_path / "triples_dev.jsonl").open("a") as f:
        f.write(json.dumps({"prompt": "x", "response": "y", "gold_response_categories": []}) + "\n")
    assert load_split("dev", tmp_path)[2] != digest


def test_bad_rows_name_file_row_and_field(tmp_path):
    (tmp_path / "prompts_dev.jsonl").write_text(json.dumps({"prompt": "a", "gold_categories": ["Nope"]}) + "\n")
    (tmp_path / "triples_dev.jsonl").write_text("")
    with pytest.raises(InputError, match=r"prompts_dev.jsonl.*row 1.*gold_categories"):
        load_split("dev", tmp_path)
    with pytest.raises(InputError, match="not found"):
        load_split("eval", tmp_path)


def test_cli_fails_clearly_on_a_missing_set(tmp_path, capsys):
    assert main(["judge-eval", "--judge", "rules", "--data", str(tmp_path / "none")]) == 2
    assert "judge-evaluation file not found" in capsys.readouterr().err


def test_report_quotes_the_measured_quality_of_its_own_judge():
    from cosalign.evaluation.report import render_markdown
    quality = judge_quality(TableJudge("dev"), "dev", EVAL_DIR)
    md = render_markdown({}, [quality["judge"]], judge_quality=quality)
    assert "Judge quality" in md and "prompt exact-set match 1.00 [1.00, 1.00]" in md
    assert "Judge quality" not in render_markdown({}, ["rules/other"], judge_quality=quality)  # another judge's figures
    assert "Judge quality" not in render_markdown({}, [quality["judge"]], judge_quality=None)


def test_model_card_quotes_the_measured_quality_of_its_own_judge():
    """Issue #15: cards name the judge's fingerprint and its measured quality beside the scores."""
    from cosalign.registry.cards import model_metrics

    quality = json.loads((REPO / "reports" / "judge.json").read_text())
    metrics = {"dpo": {"heldout/seen": {"cosa_score": 0.1, "helpful_safe": 0.5, "helpful_unsafe": 0.1,
                                        "valid_rate": 1.0, "n": 10, "judge": quality["judge"]}}}
    _, text = model_metrics("dpo", metrics, quality["judge"], quality)
    assert f"`{quality['judge']}`" in text and "Judge quality" in text and "risky-prompt recall" in text
    _, other = model_metrics("dpo", metrics, "rules/other", quality | {"judge": "rules/else"})
    assert "Judge quality" not in other
