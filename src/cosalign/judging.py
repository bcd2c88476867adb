"""The prompt_labels and judgments stages: run a judge over prompts or responses.

Both keep every item: an unparseable verdict is a row with valid=False and its raw text.
Judging responses goes through `workqueue.run_batches`, so a killed run resumes without
re-judging (or re-paying for) finished batches.
"""

from __future__ import annotations

import pandas as pd

from cosalign import schemas
from cosalign.judges.base import make_judge
from cosalign.workqueue import fingerprint, run_batches


def label_prompts(prompts: pd.DataFrame, judge_params: dict) -> pd.DataFrame:
    """data/prompt_labels.parquet: the judge's risk set per prompt, gold kept alongside."""
    judge = make_judge(judge_params)
    verdicts = judge.label_prompts(prompts["prompt"].tolist())
    df = pd.DataFrame({
        "prompt_id": prompts["prompt_id"], "split": prompts["split"],
        "risk_categories": [v.risk_categories for v in verdicts],
        "gold_categories": prompts["gold_categories"],
        "valid": [bool(v.valid) for v in verdicts], "judge": judge.judge_id,
        "raw": [v.raw for v in verdicts],
    })
    return schemas.validate(df, "prompt_labels", "data/prompt_labels.parquet")


def agreement(labels: pd.DataFrame, split: str = "test") -> dict:
    """How the judge's labels agree with gold ones on `split`: exact-set match and per-category F1."""
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    from cosalign import taxonomy

    rows = labels[(labels["split"] == split) & labels["gold_categories"].notna()]
    if rows.empty:
        return {"split": split, "n": 0}
    exact = [set(a) == set(b) for a, b in zip(rows["risk_categories"], rows["gold_categories"])]
    mlb = MultiLabelBinarizer(classes=list(taxonomy.NAMES))
    y_true, y_pred = mlb.fit_transform(rows["gold_categories"]), mlb.transform(rows["risk_categories"])
    f1 = f1_score(y_true, y_pred, average=None, zero_division=0)
    return {
        "split": split, "n": int(len(rows)), "judge": str(rows["judge"].iloc[0]),
        "exact_set_match": round(float(sum(exact) / len(exact)), 4),
        "valid_rate": round(float(rows["valid"].mean()), 4),
        "macro_f1": round(float(f1.mean()), 4),
        "f1_per_category": {n: round(float(v), 4) for n, v in zip(taxonomy.NAMES, f1)},
    }


def judge_responses(responses: pd.DataFrame, prompts: pd.DataFrame, judge_params: dict,
                    work_batch_size: int) -> pd.DataFrame:
    """data/judgments.parquet: one verdict per response, in response order."""
    text = dict(zip(prompts["prompt_id"], prompts["prompt"]))
    items = responses[["response_id", "prompt_id", "response"]].copy()
    items["prompt"] = items["prompt_id"].map(text)
    judge = None

    def work(batch: pd.DataFrame) -> pd.DataFrame:
        nonlocal judge
        if judge is None:
            judge = make_judge(judge_params)
        verdicts = judge.judge_responses(list(zip(batch["prompt"], batch["response"])))
        return pd.DataFrame({
            "response_id": batch["response_id"],
            "risk_categories": [v.risk_categories for v in verdicts],
            "addressed": [bool(v.addressed) for v in verdicts],
            "helpfulness": [int(v.helpfulness) for v in verdicts],
            "valid": [bool(v.valid) for v in verdicts],
            "judge": judge.judge_id, "raw": [v.raw for v in verdicts],
        })

    key = fingerprint(judge_params, items.to_dict("records"))
    out = run_batches(items, work, stage="judgments", key=key, batch_size=work_batch_size, desc="judge")
    out["helpfulness"] = out["helpfulness"].astype("int64")
    return schemas.validate(out, "judgments", "data/judgments.parquet")
