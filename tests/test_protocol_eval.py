"""`protocol: paper` on the evaluation side (docs/paper-fidelity.md §3-4): CoSAlign-Test phrased
with training templates drawn per item, CoSApien framed in a task instruction with the raw
scenario kept for the judge; `heldout` never changes."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/ is not a package
from test_benchmarks import _prompts, cosalign_test_dir, cosapien_dir  # noqa: E402

from cosalign.cosa import config_text  # noqa: E402
from cosalign.evaluation import benchmarks as B  # noqa: E402
from cosalign.evaluation import evaluate  # noqa: E402
from cosalign.judges.base import ConfigVerdict, ResponseVerdict  # noqa: E402


def test_cosalign_test_under_paper_uses_training_templates_per_item(tmp_path):
    src = str(cosalign_test_dir(tmp_path / "t", rows=12))
    own = B.load_benchmark("cosalign_test", path_or_id=src, cache_dir=tmp_path / "c")
    paper = B.load_benchmark("cosalign_test", path_or_id=src, cache_dir=tmp_path / "c", protocol="paper")
    again = B.load_benchmark("cosalign_test", path_or_id=src, cache_dir=tmp_path / "c", protocol="paper")
    pd.testing.assert_frame_equal(paper, again)  # seeded by split and row
    train = {t["id"] for t in config_text.load_templates("train")}
    assert set(paper["template_id"]) <= train and not set(own["template_id"]) & train
    # one template per config under cosalign, several per config under paper
    assert own.groupby("config_id")["template_id"].nunique().max() == 1
    assert paper.groupby("config_id")["template_id"].nunique().max() > 1
    cols = ["config_id", "prompt_id", "prompt", "allowed_categories"]
    pd.testing.assert_frame_equal(own[cols], paper[cols])  # same items, only the phrasing moves
    for _, row in paper.iterrows():
        assert all(name in row["system_prompt"] for name in row["allowed_categories"])


def test_heldout_is_the_same_under_both_protocols():
    own = B.load_benchmark("heldout", prompts_df=_prompts(), prompts_per_config=4, seed=0)
    paper = B.load_benchmark("heldout", prompts_df=_prompts(), prompts_per_config=4, seed=0,
                             protocol="paper")
    pd.testing.assert_frame_equal(own, paper)


def test_cosapien_under_paper_is_framed_and_the_judge_sees_the_raw_scenario(tmp_path):
    src = str(cosapien_dir(tmp_path / "c"))
    own = B.load_benchmark("cosapien", path_or_id=src, cache_dir=tmp_path / "cache")
    paper = B.load_benchmark("cosapien", path_or_id=src, cache_dir=tmp_path / "cache", protocol="paper")
    assert "judge_config" not in own
    assert (paper["judge_config"] == own["system_prompt"]).all()
    for framed, raw in zip(paper["system_prompt"], own["system_prompt"]):
        assert framed != raw and framed.endswith(raw) and "thorough and precise" in framed

    class Recorder:
        judge_id = "recorder"
        seen: list = []

        def judge_responses(self, items):
            return [ResponseVerdict([], True, 3, True, "") for _ in items]

        def judge_freeform(self, items):
            self.seen.extend(c for c, _, _ in items)
            return [ConfigVerdict(True, 3, True, "") for _ in items]

    judge = Recorder()
    evaluate.judge_items(paper.copy(), ["an answer"] * len(paper), judge)
    assert judge.seen == own["system_prompt"].tolist()


def test_bad_protocol_is_rejected():
    with pytest.raises(ValueError, match="protocol"):
        B.load_benchmark("heldout", prompts_df=_prompts(), protocol="authors")


# -- cascade-self and ICA-5shot under paper (docs/paper-fidelity.md §5-6) ------------------------
class ScriptedModel:
    """Stands in for the model under test: drafts, and relabels by a script keyed on the draft."""
    name = "scripted"

    def __init__(self, relabels: dict[str, str]):
        self.relabels, self.chats = relabels, []

    def generate(self, chats, settings, n=1, progress=True):
        self.chats.extend(chats)
        out = []
        for chat in chats:
            user = chat[-1]["content"]
            if "Response:" in user:  # the risk relabel of a draft
                out.append([self.relabels[user.split("Response: ", 1)[1]]])
            elif "<draft>" in user:
                out.append(["no"])
            else:
                out.append([f"draft for {user}"])
        return out


def _relabel(*names):
    import json
    from cosalign.cosa import taxonomy
    return "reasoning\n" + json.dumps({n: n in names for n in taxonomy.NAMES})


def _items():
    from cosalign.cosa import taxonomy as T
    rows = [("p0", [T.VIOLENCE]), ("p1", [T.VIOLENCE]), ("p2", [T.VIOLENCE]), ("p3", [])]
    return pd.DataFrame([{"benchmark": "cosalign_test", "benchmark_version": 1, "benchmark_revision": "x",
                          "config_id": "Violence" if a else "safe", "config_set": "seen",
                          "allowed_categories": a, "template_id": "t", "system_prompt": "cfg",
                          "prompt_id": pid, "prompt": pid} for pid, a in rows])


class FixedJudge:
    judge_id = "fixed"

    def __init__(self, valid):
        self.valid = valid

    def judge_responses(self, items):
        return [ResponseVerdict([], True, 4, v, "") if v else ResponseVerdict.invalid("?", "bad")
                for v in self.valid]


def test_cascade_self_under_paper_relabels_and_keeps_invalid_items_out():
    from cosalign.cosa import taxonomy as T
    from cosalign.models.generation import GenerationSettings
    model = ScriptedModel({"draft for p0": _relabel(T.VIOLENCE),          # allowed: kept
                           "draft for p1": _relabel(T.PRIVACY),           # outside: refused
                           "draft for p2": "no JSON at all",              # unparseable: passes
                           "draft for p3": _relabel(T.DRUGS)})            # outside, but evaluator-invalid
    settings = GenerationSettings(max_new_tokens=8, temperature=0, batch_size=4, seed=0)
    out = evaluate.evaluate_model("m", "unused", _items(), FixedJudge([True, True, True, False]), settings,
                                  cascade="self", generator=model, protocol="paper", progress=False)
    assert out["filtered"].tolist() == [False, True, False, False]
    assert out["valid"].tolist() == [True, True, True, False]  # p3 stays excluded
    relabel = [c for c in model.chats if "Response:" in c[-1]["content"]]
    assert len(relabel) == 4 and all("maps every category name" in c[0]["content"] for c in relabel)
    # cosalign: the yes/no self-check ("no" here) flags nothing
    own = evaluate.evaluate_model("m", "unused", _items(), FixedJudge([True] * 4), settings,
                                  cascade="self", generator=ScriptedModel({}), progress=False)
    assert not own["filtered"].any()


def test_ica_5shot_under_paper_draws_same_allowed_set_demos_as_plain_turns():
    from cosalign.cosa import taxonomy as T
    prefs = pd.DataFrame({
        "prompt": [[{"role": "system", "content": "s"}, {"role": "user", "content": f"q{i}"}] for i in range(8)]
        + ["q0"],
        "chosen": [[{"role": "assistant", "content": f"a{i}"}] for i in range(8)] + ["dup"],
        "allowed_categories": [[T.VIOLENCE]] * 7 + [[]] + [[T.VIOLENCE]]})
    pool = evaluate.demo_pool(prefs)
    assert len(pool[(T.VIOLENCE,)]) == 7 and pool[()][0]["response"] == "a7"  # first answer per prompt
    items = _items()
    demos = evaluate.paper_demos(items, pool, seed=0)
    assert [len(d) for d in demos] == [5, 5, 5, 1]
    assert demos == evaluate.paper_demos(items, pool, seed=0) and demos[0] != demos[1]
    assert all(d["system_prompt_allowed"] == [T.VIOLENCE] for d in demos[0])
    chat = evaluate.build_chat("cfg", "q", demos[3], plain=True)
    assert chat[1:3] == [{"role": "user", "content": "q7"}, {"role": "assistant", "content": "a7"}]
    held = items.assign(benchmark="heldout")
    assert evaluate.paper_demos(held, pool, seed=0) == [None] * 4  # heldout keeps the fixed demos
    unseen = items.assign(config_set="unseen")
    assert evaluate.paper_demos(unseen, {}, seed=0) == [None] * 4  # no training answer allows one
    with pytest.raises(ValueError, match="no training chosen answer has the allowed set of config 'Violence'"):
        evaluate.paper_demos(items, {(): pool[()]}, seed=0)
