"""Property tests: the error score, the pairing invariants and the config sampler, on random inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cosalign.data import configs, preferences
from cosalign.cosa import schemas, error_score, taxonomy

NAMES, SEEN, OTHER = list(taxonomy.NAMES), list(taxonomy.SEEN), taxonomy.OTHER
# derandomize: the same examples on every run, so a CI failure reproduces locally.
FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

category_sets = st.lists(st.sampled_from(NAMES), unique=True)
seen_sets = st.lists(st.sampled_from(SEEN), unique=True)


# --- error score -----------------------------------------------------------------------------

@FAST
@given(category_sets, st.booleans(), category_sets)
def test_error_score_is_the_formula(risks, addressed, allowed):
    allow = set(allowed) - {OTHER}
    expected = (0 if addressed else 1) * error_score.GAMMA + error_score.ALPHA * len(set(risks) & allow) \
        + error_score.BETA * len(set(risks) - allow)
    assert abs(error_score.error_score(risks, addressed, allowed) - expected) < 1e-9


@FAST
@given(category_sets, st.booleans(), category_sets, st.sampled_from(NAMES))
def test_error_score_is_monotone_in_disallowed_risks(risks, addressed, allowed, extra):
    before = error_score.error_score(risks, addressed, allowed)
    after = error_score.error_score(set(risks) | {extra}, addressed, allowed)
    if extra in risks:
        assert after == before
    elif extra in error_score.allowed_set(allowed):
        assert abs(after - before - error_score.ALPHA) < 1e-9
    else:  # a new disallowed risk always costs beta, so it outweighs anything alpha or gamma add
        assert abs(after - before - error_score.BETA) < 1e-9
    assert error_score.error_score(risks, True, allowed) <= error_score.error_score(risks, False, allowed)


@FAST
@given(category_sets, st.booleans(), category_sets)
def test_other_harms_always_costs_beta(risks, addressed, allowed):
    without = [c for c in risks if c != OTHER]
    # Even a config that names Other Harms cannot allow it.
    delta = error_score.error_score(without + [OTHER], addressed, allowed + [OTHER]) \
        - error_score.error_score(without, addressed, allowed + [OTHER])
    assert abs(delta - error_score.BETA) < 1e-9
    assert not error_score.is_safe(without + [OTHER], allowed + [OTHER])


# --- pairing ---------------------------------------------------------------------------------

responses = st.tuples(category_sets, st.booleans(), st.booleans())  # (risks, addressed, valid)


@st.composite
def pools(draw):
    prompt_ids = draw(st.lists(st.sampled_from(["p1", "p2", "p3"]), min_size=1, max_size=3, unique=True))
    rows, cfgs = [], []
    for pid in prompt_ids:
        for i, (risks, addressed, valid) in enumerate(draw(st.lists(responses, max_size=8))):
            rows.append({"response_id": f"{pid}-r{i}", "prompt_id": pid, "config_id": f"{pid}-gen",
                         "response": f"answer {pid} {i}", "risk_categories": risks,
                         "addressed": addressed, "valid": valid})
        for k, allowed in enumerate(draw(st.lists(seen_sets, min_size=1, max_size=3))):
            cfgs.append({"config_id": f"{pid}-c{k}", "prompt_id": pid,
                         "mode": draw(st.sampled_from(schemas.MODES)),
                         "allowed_categories": taxonomy.canonical_order(allowed),
                         "template_id": "t", "system_prompt": f"system {pid} {k}"})
    prompts = pd.DataFrame({"prompt_id": prompt_ids, "prompt": [f"question {p}" for p in prompt_ids],
                            "risk_categories": [draw(category_sets) for _ in prompt_ids]})
    pool = pd.DataFrame(rows, columns=["response_id", "prompt_id", "config_id", "response",
                                       "risk_categories", "addressed", "valid"])
    return pool, pd.DataFrame(cfgs), prompts


@settings(FAST, max_examples=100)  # each example runs build_pairs twice with pandera validation
@given(pools(), st.integers(0, 2**32), st.randoms(use_true_random=False))
def test_pairing_invariants(data, seed, shuffler):
    pool, cfgs, prompts = data
    out = preferences.build_pairs(pool, cfgs, prompts, seed=seed)
    schemas.validate(out, "preferences")
    valid_ids = set(pool.loc[pool["valid"].astype(bool), "response_id"]) if len(pool) else set()
    for row in out.itertuples():
        assert row.chosen_error < row.rejected_error and row.chosen_error < error_score.BETA
        for side in ("chosen", "rejected"):
            cats, addressed = getattr(row, f"{side}_categories"), getattr(row, f"{side}_addressed")
            assert getattr(row, f"{side}_error") == error_score.error_score(cats, addressed, row.allowed_categories)
        for cats in (row.chosen_categories, row.rejected_categories):
            assert set(cats) <= set(SEEN) | {OTHER} and cats == taxonomy.canonical_order(cats)
        assert {row.chosen_response_id, row.rejected_response_id} <= valid_ids
        assert row.chosen_response_id.split("-")[0] == row.prompt_id == row.config_id.split("-")[0]
    # At most one pair per two groups of a config: no duplicate (chosen key, rejected key).
    keys = out.apply(lambda r: (r.config_id, tuple(r.chosen_categories), r.chosen_addressed,
                                tuple(r.rejected_categories), r.rejected_addressed), axis=1)
    assert not keys.duplicated().any()
    order = list(range(len(pool)))
    shuffler.shuffle(order)
    again = preferences.build_pairs(pool.iloc[order], cfgs.iloc[::-1], prompts, seed=seed)
    pd.testing.assert_frame_equal(out, again)


# --- config sampler --------------------------------------------------------------------------

@FAST
@given(category_sets, st.sampled_from(schemas.MODES), st.integers(0, 2**32))
def test_sample_allowed_invariants(prompt_risks, mode, seed):
    allowed = configs.sample_allowed(prompt_risks, mode, np.random.default_rng(seed))
    seen_risks = set(prompt_risks) & set(SEEN)
    assert set(allowed) <= set(SEEN) and allowed == taxonomy.canonical_order(allowed)
    if mode == "exact_match":
        assert set(allowed) == seen_risks
    elif mode == "superset":
        assert set(allowed) >= seen_risks
        assert len(allowed) > len(seen_risks) or seen_risks == set(SEEN)
    elif mode == "safe":
        assert allowed == []
    else:
        if seen_risks:
            assert not set(allowed) >= set(prompt_risks)
        if not prompt_risks:
            assert allowed == []
    again = configs.sample_allowed(prompt_risks, mode, np.random.default_rng(seed))
    assert again == allowed
