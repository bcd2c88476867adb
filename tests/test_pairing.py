"""Preference pairing on hand-built pools, the SFT view, and the CoSAlign-Train importer."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from cosalign.data import preferences
from cosalign.cosa import schemas, error_score, taxonomy
from cosalign.core.io import InputError

FIN, DIS, VIO, PRI = taxonomy.SEEN
DRUGS, SEXUAL, WEAPONS, OTHER = taxonomy.DRUGS, taxonomy.SEXUAL, taxonomy.WEAPONS, taxonomy.OTHER


def pool(*responses, prompt_id="p1"):
    """responses: (response_id, categories, addressed[, valid])."""
    rows = []
    for r in responses:
        rid, cats, addressed, valid = (*r, True) if len(r) == 3 else r
        rows.append({"response_id": rid, "prompt_id": prompt_id, "config_id": f"{prompt_id}-gen",
                     "response": f"text of {rid}", "risk_categories": list(cats),
                     "addressed": addressed, "valid": valid})
    return pd.DataFrame(rows)


def config(config_id, allowed, prompt_id="p1", mode="superset"):
    return {"config_id": config_id, "prompt_id": prompt_id, "mode": mode,
            "allowed_categories": list(allowed), "template_id": "t",
            "system_prompt": f"system for {config_id}"}


def prompts(**risks):
    risks = risks or {"p1": [VIO]}
    return pd.DataFrame({"prompt_id": list(risks), "prompt": [f"question {p}" for p in risks],
                         "risk_categories": list(risks.values())})


def pairs(pool_df, cfgs, prompt_df=None, **kw):
    return preferences.build_pairs(pool_df, pd.DataFrame(cfgs), prompts() if prompt_df is None else prompt_df,
                               seed=kw.pop("seed", 0), **kw)


def summary(df):
    return [(r.chosen_response_id, r.rejected_response_id, r.chosen_error, r.rejected_error)
            for r in df.itertuples()]


def test_three_groups_pair_by_error():
    p = pool(("refuse", [], False), ("allowed", [VIO], True), ("leak", [PRI], True), ("bad", [VIO], True, False))
    out = pairs(p, [config("c1", [VIO])])
    assert summary(out) == [("allowed", "refuse", 0.1, 1.0), ("allowed", "leak", 0.1, 3.0), ("refuse", "leak", 1.0, 3.0)]
    row = out.iloc[0]
    assert row.prompt == [{"role": "system", "content": "system for c1"},
                          {"role": "user", "content": "question p1"}]
    assert row.chosen == [{"role": "assistant", "content": "text of allowed"}]
    assert row.rejected == [{"role": "assistant", "content": "text of refuse"}]
    assert row.chat_template_kwargs == {"sanitize_control_tokens": True}
    assert row.allowed_categories == [VIO] and row.prompt_categories == [VIO] and row["mode"] == "superset"
    assert list(out.columns) == preferences.PAIR_COLUMNS
    schemas.validate(out, "preferences")


def test_equal_errors_never_pair():
    # Violence and Financial answers both cost alpha when both are allowed.
    p = pool(("v", [VIO], True), ("f", [FIN], True), ("refuse", [], False))
    out = pairs(p, [config("c1", [FIN, VIO])])
    assert summary(out) == [("f", "refuse", 0.1, 1.0), ("v", "refuse", 0.1, 1.0)]


def test_one_group_gives_no_pairs_but_a_valid_frame():
    p = pool(("a", [VIO], True), ("b", [VIO], True), ("c", [VIO], True))
    out = pairs(p, [config("c1", [])])
    assert len(out) == 0 and list(out.columns) == preferences.PAIR_COLUMNS
    schemas.validate(out, "preferences")


def test_chosen_error_of_exactly_beta_is_dropped():
    p = pool(("one", [PRI], True), ("two", [PRI, DIS], True))
    assert error_score.error_score([PRI], True, []) == 3.0
    assert len(pairs(p, [config("c1", [])])) == 0


def test_highest_error_below_beta_is_kept_and_the_cap_is_exclusive():
    # Not addressed, every seen risk allowed: 1 + 4 * 0.1 = 1.4, the largest error below beta.
    p = pool(("all", list(taxonomy.SEEN), False), ("other", [OTHER], True))
    out = pairs(p, [config("c1", taxonomy.SEEN)])
    assert summary(out) == [("all", "other", pytest.approx(1.4), 3.0)]
    assert len(pairs(p, [config("c1", taxonomy.SEEN)], max_chosen_error=out.chosen_error[0])) == 0


def test_categories_outside_training_collapse_to_other_harms():
    p = pool(("drugs", [DRUGS], True), ("two_unseen", [WEAPONS, SEXUAL], True),
             ("mixed", [DRUGS, VIO], True), ("safe", [], True))
    out = pairs(p, [config("c1", [VIO])], seed=5)
    # drugs and two_unseen are one group ({Other Harms}, addressed): error 3, not 6.
    assert len({r for r in out.rejected_response_id if r in ("drugs", "two_unseen")}) == 1
    rows = {tuple(r.rejected_categories): r for r in out.itertuples()}
    assert rows[(OTHER,)].rejected_error == 3.0
    assert rows[(VIO, OTHER)].rejected_error == pytest.approx(3.1)
    assert all(c in (VIO, OTHER) for cats in out.rejected_categories for c in cats)
    assert list(out.chosen_categories) == [[], []]  # safe (0.0) beats both


def test_pool_is_per_prompt_and_every_config_of_the_prompt_is_scored():
    p = pd.concat([pool(("a", [VIO], True), ("b", [], False)),
                   pool(("x", [PRI], True), ("y", [], True), prompt_id="p2")], ignore_index=True)
    cfgs = [config("p1-safe-0", [], mode="safe"), config("p1-superset-0", [VIO, PRI]),
            config("p2-exact-0", [PRI], prompt_id="p2", mode="exact_match"),
            config("p3-safe-0", [], prompt_id="p3", mode="safe")]  # p3 has no responses: no pairs
    out = pairs(p, cfgs, prompts(p1=[VIO], p2=[PRI], p3=[]))
    assert list(zip(out.config_id, out.chosen_response_id, out.rejected_response_id)) == [
        ("p1-safe-0", "b", "a"), ("p1-superset-0", "a", "b"), ("p2-exact-0", "y", "x")]
    assert out["mode"].tolist() == ["safe", "superset", "exact_match"]


def test_output_ignores_row_order():
    p = pool(*[(f"r{i}", cats, addr) for i, (cats, addr) in enumerate(
        [([], False), ([], False), ([VIO], True), ([VIO], True), ([VIO], True), ([PRI], True),
         ([DRUGS], True), ([FIN, VIO], True), ([], True), ([], True)])])
    cfgs = [config("c2", [VIO]), config("c1", [FIN, PRI]), config("c3", [])]
    base = pairs(p, cfgs, seed=11)
    shuffled = pairs(p.sample(frac=1, random_state=3), list(reversed(cfgs)), seed=11)
    pd.testing.assert_frame_equal(base, shuffled)
    assert list(base.config_id) == sorted(base.config_id)


def test_representative_is_seeded():
    p = pool(*[(f"v{i}", [VIO], True) for i in range(8)], ("refuse", [], False))
    reps = {pairs(p, [config("c1", [VIO])], seed=s).chosen_response_id[0] for s in range(20)}
    assert len(reps) > 1 and reps <= {f"v{i}" for i in range(8)}
    assert summary(pairs(p, [config("c1", [VIO])], seed=4)) == summary(pairs(p, [config("c1", [VIO])], seed=4))


def test_max_pairs_per_config_keeps_a_seeded_ordered_subset():
    p = pool(("a", [], True), ("b", [VIO], True), ("c", [], False), ("d", [VIO], False), ("e", [PRI], True))
    full = summary(pairs(p, [config("c1", [VIO])]))
    assert len(full) == 10  # five groups with errors 0, 0.1, 1, 1.1, 3: every two of them pair
    capped = summary(pairs(p, [config("c1", [VIO])], max_pairs_per_config=3))
    assert len(capped) == 3 and all(c in full for c in capped)
    assert sorted(capped, key=full.index) == capped
    with pytest.raises(ValueError, match="max_pairs_per_config"):
        pairs(p, [config("c1", [VIO])], max_pairs_per_config=0)


def test_labels_df_and_bad_inputs():
    p = pool(("a", [VIO], True), ("b", [], False))
    labels = pd.DataFrame({"prompt_id": ["p1"], "risk_categories": [[VIO, DRUGS]]})
    out = preferences.build_pairs(p, pd.DataFrame([config("c1", [])]), prompts()[["prompt_id", "prompt"]],
                              seed=0, labels_df=labels)
    assert out.prompt_categories[0] == [VIO, DRUGS]
    with pytest.raises(InputError, match="no prompt") as info:
        pairs(p, [config("c1", [])], prompts(p9=[]))
    assert info.value.field == "prompt_id" and info.value.row == 1  # rows are 1-based
    bad = p.copy()
    bad.at[1, "risk_categories"] = "Violence"
    with pytest.raises(InputError, match="must be a list") as info:
        pairs(bad, [config("c1", [])])
    assert (info.value.row, info.value.field) == (2, "risk_categories")
    with pytest.raises(InputError, match="missing column") as info:
        pairs(p.drop(columns="valid"), [config("c1", [])])
    assert info.value.field == "valid"


# --- pairs_for_sft ---------------------------------------------------------------------------

def test_pairs_for_sft_takes_lowest_chosen_error_ties_to_first():
    def conv(system):
        return [{"role": "system", "content": system}, {"role": "user", "content": "q"}]
    df = pd.DataFrame({
        "prompt": [conv("s1"), conv("s1"), conv("s2"), conv("s1"), conv("s2")],
        "chosen": [[{"role": "assistant", "content": t}]
                   for t in ("refusal", "first best", "only", "second best", "only again")],
        "chosen_error": [1.0, 0.1, 0.0, 0.1, 0.0],
    })
    out = preferences.pairs_for_sft(df)
    assert [(p[0]["content"], c[0]["content"]) for p, c in zip(out["prompt"], out["chosen"])] == \
        [("s1", "first best"), ("s2", "only")]


# --- import_cosalign_train -------------------------------------------------------------------

def release_row(**kw):
    row = {"system_prompt": "sys", "prompt": "How?", "chosen_response": "good", "rejected_response": "bad",
           "spec_i": "-Violence-Privacy_Violations-", "spec_j": "-Violence-", "mode": "superset",
           "chosen_cat": "(-Violence-, 1)", "rejected_cat": "(--, 0)",
           "chosen_category_error_score": 0.1, "rejected_category_error_score": 1.0}
    return row | kw


def test_import_maps_release_rows():
    df = pd.DataFrame([
        release_row(),
        release_row(spec_i="--", spec_j="-Illegal Drug-Related Activities and Substance Abuse-Violence-",
                    mode="not_superset", chosen_cat="(-None-, 0)",
                    rejected_cat="(-Financial Crime and Theft-Weapons, Explosives, Arson, and Illegal Firearm Transactions-, 1)",
                    chosen_category_error_score=1, rejected_category_error_score=6),
        release_row(spec_i="-Financial_Crime_and_Theft-", chosen_cat="(-Financial Crime and Theft-, 1)",
                    rejected_cat="(-Financial Crime and Theft-Illegal_Drug_Related_Activities_and_Substance_Abuse-Weapons_Explosives_Arson_and Illegal Firearm Transactions-, 1)",
                    chosen_category_error_score=0.1, rejected_category_error_score=3.1),
    ])
    out = preferences.import_cosalign_train(df)
    schemas.validate(out, "preferences")
    assert out.allowed_categories.tolist() == [[VIO, PRI], [], [FIN]]
    assert out.prompt_categories.tolist()[1] == [VIO, DRUGS]
    assert out.chosen_categories.tolist() == [[VIO], [], [FIN]]
    # Unseen categories collapse to one Other Harms, as the release scored them.
    assert out.rejected_categories.tolist() == [[], [FIN, OTHER], [FIN, OTHER]]
    assert out.chosen_addressed.tolist() == [True, False, True]
    assert out.rejected_error.tolist() == [1.0, 6.0, pytest.approx(3.1)]
    assert out.released_rejected_error.tolist() == [1.0, 6.0, 3.1]
    assert out["mode"].tolist() == ["superset", "not_superset", "superset"]
    assert out.prompt_id.nunique() == 1 and out.config_id.str.startswith("ct-").all()
    assert out.attrs["import_report"] == {"rows": 3, "kept": 3, "error_mismatches": 0, "dropped": 0}


def test_import_checks_released_errors():
    df = pd.DataFrame([release_row(), release_row(rejected_category_error_score=2.0)])
    with pytest.raises(InputError, match="differs from the formula") as info:
        preferences.import_cosalign_train(df, path="train_bt.parquet")
    assert (info.value.row, info.value.field) == (2, "rejected_category_error_score")
    assert "train_bt.parquet" in str(info.value)
    out = preferences.import_cosalign_train(df, on_mismatch="recompute")
    assert out.rejected_error.tolist() == [1.0, 1.0] and out.released_rejected_error.tolist() == [1.0, 2.0]
    assert out.attrs["import_report"]["error_mismatches"] == 1
    # A recomputed pair that breaks chosen < rejected is dropped, not kept.
    flip = pd.DataFrame([release_row(chosen_cat="(--, 0)", chosen_category_error_score=0.5)])
    assert len(preferences.import_cosalign_train(flip, on_mismatch="recompute")) == 0


@pytest.mark.parametrize("field, value, message", [
    ("spec_i", "-Violence-Arson-", "cannot decode 'Arson'"),
    ("spec_j", "-Non-Violent Unethical Behavior-", "cannot decode"),
    ("chosen_cat", "-Violence-", "expected"),
    ("rejected_cat", "(--, maybe)", "addressed flag"),
    ("mode", "hard", "unknown mode"),
    ("chosen_category_error_score", "n/a", "could not convert"),
])
def test_import_errors_name_row_and_field(field, value, message):
    df = pd.DataFrame([release_row(), release_row(**{field: value})])
    with pytest.raises(InputError, match=message) as info:
        preferences.import_cosalign_train(df)
    assert (info.value.row, info.value.field) == (2, field)


def test_decode_categories_spellings():
    assert preferences.decode_categories("-Illegal Drug_Related Activities and Substance Abuse-Privacy Violations-") \
        == (PRI, DRUGS)
    assert preferences.decode_categories("-Sexual_Misconduct_Exploitation_and_Infidelity-Other_Harms-") == (SEXUAL, OTHER)
    assert preferences.decode_categories("--") == preferences.decode_categories("-None-") == ()


def test_pairs_from_parquet_inputs_are_byte_identical(tmp_path):
    from cosalign.core.io import read_parquet, write_parquet
    p = pool(("a", [VIO, DRUGS], True), ("b", [], False), ("c", [PRI], True), ("d", [], True))
    cfgs = pd.DataFrame([config("c1", [VIO]), config("c2", [], mode="safe")])
    write_parquet(p, tmp_path / "pool.parquet")
    write_parquet(cfgs, tmp_path / "configs.parquet")
    from_disk = preferences.build_pairs(read_parquet(tmp_path / "pool.parquet"),
                                    read_parquet(tmp_path / "configs.parquet"), prompts(), seed=2)
    in_memory = preferences.build_pairs(p, cfgs, prompts(), seed=2)
    write_parquet(from_disk, tmp_path / "a.parquet")
    write_parquet(in_memory, tmp_path / "b.parquet")
    # Errors d 0, b 1, c 3, a 3.1 (c1) or 6 (c2): per config 6 group pairs less (c, a) with chosen 3.
    assert len(in_memory) == 10
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    schemas.validate(read_parquet(tmp_path / "a.parquet"), "preferences")


# --- streaming: iter_pairs over the stage's files, sample_pairs, the preferences stage --------

def random_inputs(n_prompts=12, seed=0):
    """A judged pool, configs and labels for n_prompts prompts, all in prompt_id order; p00 has
    configs but no responses and p01 responses but no configs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    names = list(taxonomy.NAMES)
    rows, cfgs = [], []
    pids = [f"p{i:02d}" for i in range(n_prompts)]
    for pid in pids:
        for r in range(0 if pid == "p00" else int(rng.integers(1, 7))):
            cats = rng.choice(names, size=int(rng.integers(0, 3)), replace=False).tolist()
            rows.append({"response_id": f"{pid}-r{r}", "prompt_id": pid, "config_id": f"{pid}-gen",
                         "response": f"answer {pid} {r}", "risk_categories": cats,
                         "addressed": bool(rng.random() < 0.6), "valid": bool(rng.random() < 0.9)})
        for k in range(0 if pid == "p01" else int(rng.integers(1, 4))):
            allowed = rng.choice(list(taxonomy.SEEN), size=int(rng.integers(0, 3)), replace=False).tolist()
            cfgs.append(config(f"{pid}-c{k}", taxonomy.canonical_order(allowed), prompt_id=pid,
                               mode=str(rng.choice(schemas.MODES))))
    labels = pd.DataFrame({"prompt_id": pids, "risk_categories": [
        rng.choice(names, size=int(rng.integers(0, 3)), replace=False).tolist() for _ in pids]})
    prompt_df = pd.DataFrame({"prompt_id": pids, "prompt": [f"question {p}" for p in pids]})
    return pd.DataFrame(rows), pd.DataFrame(cfgs), prompt_df, labels


def write_inputs(tmp_path, pool_df, cfgs, prompt_df, labels) -> preferences.PairInputs:
    from cosalign.core.io import write_parquet

    inputs = preferences.PairInputs(*(str(tmp_path / f"{name}.parquet") for name in preferences.PairInputs._fields))
    write_parquet(cfgs, inputs.configs)
    write_parquet(pool_df[["response_id", "prompt_id", "config_id", "response"]], inputs.responses)
    write_parquet(pool_df[["response_id", "risk_categories", "addressed", "valid"]], inputs.judgments)
    write_parquet(prompt_df, inputs.prompts)
    write_parquet(labels, inputs.labels)
    return inputs


def test_streamed_pairs_equal_build_pairs_for_any_chunk_size(tmp_path):
    pool_df, cfgs, prompt_df, labels = random_inputs(20)
    inputs = write_inputs(tmp_path, pool_df, cfgs, prompt_df, labels)
    expected = preferences.build_pairs(pool_df, cfgs, prompt_df, labels_df=labels, seed=4, max_pairs_per_config=3)
    assert len(expected) > 30 and expected.prompt_id.nunique() > 5
    for chunk_prompts in (1, 3, 1000):
        frames = list(preferences.iter_pairs(inputs, seed=4, max_pairs_per_config=3, chunk_prompts=chunk_prompts))
        pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), expected)
    assert len(frames) == 1 < len(list(preferences.iter_pairs(inputs, seed=4, chunk_prompts=1)))


def test_streamed_pairs_without_pairs_yield_one_empty_frame(tmp_path):
    pool_df, cfgs, prompt_df, labels = random_inputs(3)
    inputs = write_inputs(tmp_path, pool_df.assign(valid=False), cfgs, prompt_df, labels)
    [frame] = preferences.iter_pairs(inputs, seed=0, chunk_prompts=1)
    assert len(frame) == 0 and list(frame.columns) == preferences.PAIR_COLUMNS
    schemas.validate(frame, "preferences")


def _swap(df, i, j):
    order = list(range(len(df)))
    order[i], order[j] = j, i
    return df.iloc[order].reset_index(drop=True)


def _late_response(pool_df):
    """A response of p00 (the first prompt) appended after all others: past the last config."""
    late = pool_df.iloc[[0]].assign(response_id="p00-late", prompt_id="p00", valid=True)
    return pd.concat([pool_df, late], ignore_index=True)


def _first_out_of_order(df):
    ids = df["prompt_id"].tolist()
    return next(i for i in range(1, len(ids)) if ids[i] < ids[i - 1])


@pytest.mark.parametrize("damage, name, message", [
    # found only when the rest of responses is read, past p07's (the last) configs: without that,
    # p00 would silently lose pairs
    (lambda p, c, t, l: (_late_response(p), c[c.prompt_id < "p08"], t, l), "responses",
     "must be sorted by prompt_id"),
    (lambda p, c, t, l: (p, _swap(c, 2, 3), t, l), "configs", "must be sorted by prompt_id"),
    (lambda p, c, t, l: (p, c, _swap(t, 4, 5), l), "prompts", "must be sorted by prompt_id"),
    (lambda p, c, t, l: (p, c, t, _swap(l, 4, 5)), "labels", "must be sorted by prompt_id"),
    (lambda p, c, t, l: (p, c, t.drop(index=5), l), "configs", "prompt_id 'p05' has no prompt"),
])
def test_streamed_input_errors_name_file_row_and_field(tmp_path, damage, name, message):
    frames = damage(*random_inputs())
    assert frames[1].prompt_id.iat[2] != frames[1].prompt_id.iat[3]  # the configs swap reorders
    inputs = write_inputs(tmp_path, *frames)
    with pytest.raises(InputError, match=message) as info:
        list(preferences.iter_pairs(inputs, seed=0, chunk_prompts=2))
    assert info.value.path == getattr(inputs, name) and info.value.field == "prompt_id"
    if "sorted" in message:
        data = {"responses": frames[0], "configs": frames[1], "prompts": frames[2], "labels": frames[3]}
        assert info.value.row == _first_out_of_order(data[name]) + 1  # 1-based
    else:  # the first config row of the prompt whose text is missing
        assert info.value.row == frames[1].index[frames[1].prompt_id == "p05"][0] + 1


def test_judgments_out_of_step_with_responses_name_the_row(tmp_path):
    pool_df, cfgs, prompt_df, labels = random_inputs()
    inputs = write_inputs(tmp_path, pool_df, cfgs, prompt_df, labels)
    from cosalign.core.io import write_parquet

    judgments = pool_df[["response_id", "risk_categories", "addressed", "valid"]]
    write_parquet(_swap(judgments, 6, 7), inputs.judgments)
    with pytest.raises(InputError, match="must list the responses in their order") as info:
        list(preferences.iter_pairs(inputs, seed=0, chunk_prompts=2))
    assert (info.value.path, info.value.row, info.value.field) == (inputs.judgments, 7, "response_id")
    write_parquet(judgments.head(5), inputs.judgments)
    with pytest.raises(InputError, match="ends before the judgment of response") as info:
        list(preferences.iter_pairs(inputs, seed=0, chunk_prompts=2))
    assert (info.value.path, info.value.field) == (inputs.judgments, "response_id")


def stream_of(df, size):
    return [df.iloc[i:i + size] for i in range(0, len(df), size)]


def test_sample_pairs_is_a_seeded_bounded_subset_in_file_order():
    pool_df, cfgs, prompt_df, labels = random_inputs(30)
    full = preferences.build_pairs(pool_df, cfgs, prompt_df, labels_df=labels, seed=0)
    assert len(full) > 60
    ids = ["config_id", "chosen_response_id", "rejected_response_id"]
    key = full[ids].apply(tuple, axis=1)
    picked = preferences.sample_pairs(stream_of(full, 7), max_pairs=25, seed=1)
    assert len(picked) == 25 and list(picked.columns) == preferences.PAIR_COLUMNS
    positions = [key.tolist().index(k) for k in picked[ids].apply(tuple, axis=1)]
    assert positions == sorted(positions)  # a subset, in file order
    pd.testing.assert_frame_equal(picked, full.iloc[positions].reset_index(drop=True))
    # the same pairs however the stream is chunked; another seed picks others
    for size in (1, 25, len(full)):
        pd.testing.assert_frame_equal(preferences.sample_pairs(stream_of(full, size), max_pairs=25, seed=1), picked)
    assert not preferences.sample_pairs([full], max_pairs=25, seed=2).equals(picked)
    # the kept pairs are the 25 smallest keys
    keys = [preferences._pair_key(1, *k) for k in key]
    assert sorted(positions) == sorted(sorted(range(len(full)), key=keys.__getitem__)[:25])
    # no more pairs than the cap: all of them
    pd.testing.assert_frame_equal(preferences.sample_pairs(stream_of(full, 9), max_pairs=len(full), seed=1),
                                  full)
    empty = preferences.sample_pairs([full.iloc[:0]], max_pairs=3, seed=1)
    assert len(empty) == 0 and list(empty.columns) == preferences.PAIR_COLUMNS
    with pytest.raises(ValueError, match="max_pairs"):
        preferences.sample_pairs([full], max_pairs=0, seed=1)


def test_balanced_sample_gives_answers_and_refusals_equal_quotas():
    pool_df, cfgs, prompt_df, labels = random_inputs(30)
    full = preferences.build_pairs(pool_df, cfgs, prompt_df, labels_df=labels, seed=0)
    answers, refusals = int(full["chosen_addressed"].sum()), int((~full["chosen_addressed"]).sum())
    assert answers >= 10 and refusals >= 10
    picked = preferences.sample_pairs(stream_of(full, 7), max_pairs=20, seed=1, balance="action")
    assert len(picked) == 20 and int(picked["chosen_addressed"].sum()) == 10
    # within each stratum, the smallest keys; the same pairs however the stream is chunked
    ids = ["config_id", "chosen_response_id", "rejected_response_id"]
    for addressed in (True, False):
        part = full[full["chosen_addressed"] == addressed]
        keys = sorted(preferences._pair_key(1, *k) for k in part[ids].itertuples(index=False))[:10]
        got = sorted(preferences._pair_key(1, *k) for k in
                     picked[picked["chosen_addressed"] == addressed][ids].itertuples(index=False))
        assert got == keys
    pd.testing.assert_frame_equal(preferences.sample_pairs([full], max_pairs=20, seed=1, balance="action"), picked)
    # a short stratum leaves its quota to the other: every refusal pair, then answers up to the cap
    cap = min(answers, refusals) * 2 + 3
    short = preferences.sample_pairs([full], max_pairs=cap, seed=1, balance="action")
    assert len(short) == min(cap, len(full))
    assert min(int(short["chosen_addressed"].sum()), int((~short["chosen_addressed"]).sum())) \
        == min(answers, refusals)
    with pytest.raises(ValueError, match="preferences.balance"):
        preferences.sample_pairs([full], max_pairs=20, seed=1, balance="modes")


@pytest.mark.parametrize("max_pairs", [None, 15])
def test_preferences_stage_streams_the_same_rows(tmp_path, monkeypatch, repo_root, max_pairs):
    import runpy

    import yaml

    from cosalign.core.io import read_parquet

    pool_df, cfgs, prompt_df, labels = random_inputs(20)
    (tmp_path / "data").mkdir()
    inputs = write_inputs(tmp_path / "data", pool_df, cfgs, prompt_df, labels)
    assert inputs.prompts.endswith("data/prompts.parquet") and "prompt_labels" not in inputs.labels
    (tmp_path / "data" / "labels.parquet").rename(tmp_path / "data" / "prompt_labels.parquet")
    (tmp_path / "data" / "taxonomy.json").write_text(json.dumps({"categories": taxonomy.PAPER.as_dicts()}))
    params = {"preferences": {"source": "pipeline", "seed": 3, "max_pairs_per_config": None,
                              "max_pairs": max_pairs}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")  # the stage sets it; undone after
    main = runpy.run_path(str(repo_root / "stages" / "preferences.py"))["main"]
    main()
    out = read_parquet("data/preferences.parquet")
    expected = preferences.build_pairs(pool_df, cfgs, prompt_df, labels_df=labels, seed=3)
    if max_pairs:
        expected = preferences.sample_pairs([expected], max_pairs=max_pairs, seed=3)
        assert len(expected) == max_pairs
    pd.testing.assert_frame_equal(out, expected)
    first = (tmp_path / "data" / "preferences.parquet").read_bytes()
    main()
    assert (tmp_path / "data" / "preferences.parquet").read_bytes() == first  # deterministic


# --- the conversational format and its schema -------------------------------------------------

def _valid_pairs():
    p = pool(("refuse", [], False), ("allowed", [VIO], True), ("leak", [PRI], True))
    return pairs(p, [config("c1", [VIO])])


@pytest.mark.parametrize("column, value, message", [
    ("prompt", [{"role": "user", "content": "question p1"}], "system: the safety config"),
    ("prompt", [{"role": "system", "content": "cfg"}, {"role": "user", "content": "  "}], "both non-blank"),
    ("prompt", "system for c1\nquestion p1", "system: the safety config"),
    ("chosen", [{"role": "user", "content": "hi"}], "one message [assistant"),
    ("rejected", [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}], "one message"),
    ("chat_template_kwargs", {"sanitize_control_tokens": False}, "sanitize_control_tokens: true"),
])
def test_schema_rejects_malformed_messages_naming_row_and_column(column, value, message):
    out = _valid_pairs()
    out.at[1, column] = value
    with pytest.raises(schemas.ValidationError, match=re.escape(message)) as err:
        schemas.validate(out, "preferences", "data/preferences.parquet")
    assert err.value.failures[0]["row"] == 2 and err.value.failures[0]["columns"] == (column,)  # 1-based
    assert "data/preferences.parquet" in str(err.value)


def test_schema_refuses_an_empty_answer_and_the_file_round_trips(tmp_path):
    """Issue 16: an empty chosen (or rejected) answer is no preference; a valid file round-trips."""
    from cosalign.core.io import read_parquet, write_parquet
    out = _valid_pairs()
    bad = out.copy()
    bad.at[0, "rejected"] = [{"role": "assistant", "content": "  "}]
    with pytest.raises(schemas.ValidationError, match="non-blank text"):
        schemas.validate(bad, "preferences")
    write_parquet(out, tmp_path / "preferences.parquet")
    back = read_parquet(tmp_path / "preferences.parquet")
    schemas.validate(back, "preferences")
    assert back["prompt"].tolist() == out["prompt"].tolist()
    assert back["chat_template_kwargs"].tolist() == [{"sanitize_control_tokens": True}] * len(out)


def test_sft_view_is_trl_prompt_completion_with_the_best_answer():
    view = preferences.sft_view(_valid_pairs())
    assert list(view.columns) == preferences.SFT_COLUMNS and len(view) == 1
    row = view.iloc[0]
    assert row["prompt"][0] == {"role": "system", "content": "system for c1"}
    assert row["completion"] == [{"role": "assistant", "content": "text of allowed"}]
    assert row["completion_error"] == 0.1 and row["response_id"] == "allowed"
def test_pairing_never_makes_a_pair_the_schema_refuses():
    """Issue 16: an empty answer is no training target, and the same text judged twice
    differently is no preference; schemas.Preferences refuses both, so pairing skips them."""
    p = pool(("r1", [VIO], True), ("r2", [], False), ("r3", [PRI], True), ("r4", [], False, True),
             prompt_id="p1")
    p["response"] = ["Sure, here is how.", "  ", "Sure, here is how.", "I can't help with that."]
    out = pairs(p, [config("c1", [VIO])])
    assert {(r.chosen_response_id, r.rejected_response_id) for r in out.itertuples()} == {("r1", "r4"), ("r4", "r3")}
