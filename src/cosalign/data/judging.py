"""The prompt_labels and judgments stages: run a judge over prompts or responses.

Both keep every item: an unparseable verdict is a row with valid=False and its raw text.
Judging responses streams through `workqueue.iter_batches` (`ResponseJudging`): memory holds one
work batch, never the whole responses file, and a killed run resumes without re-judging (or
re-paying for) finished batches. A batch with verdicts lost to transport errors (the endpoint
never answered) is written invalid but not checkpointed, so a re-run retries it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import pandas as pd

from cosalign.core import paths
from cosalign.cosa import schemas
from cosalign.cosa.taxonomy import PAPER, Taxonomy
from cosalign.core.io import InputError, iter_parquet
from cosalign.core.params import bad
from cosalign.judges.base import check_judge_params, judge_fingerprint, make_judge
from cosalign.core.workqueue import Fingerprint, Retry, iter_batches

RESPONSE_COLUMNS = ["response_id", "prompt_id", "response"]  # what judging reads of the responses


@dataclass(frozen=True)
class PromptLabelsParams:
    """params.yaml `prompt_labels:`, the prompt_labels stage."""
    judge: dict  # {name: rules | openai | local, **options} (judges.base.make_judge)
    source: str = "pipeline"  # pipeline | NS/cosalign-prompt-labels@REV

    def __post_init__(self):
        check_judge_params(self.judge, "prompt_labels.judge")


@dataclass(frozen=True)
class JudgmentsParams:
    """params.yaml `judgments:`, the judgments stage."""
    judge: dict  # {name: rules | openai | local, **options} (judges.base.make_judge)
    work_batch_size: int  # responses per resumable checkpoint (core.workqueue)
    source: str = "pipeline"  # pipeline | NS/cosalign-judgments@REV

    def __post_init__(self):
        check_judge_params(self.judge, "judgments.judge")
        for key in ('work_batch_size',):
            if getattr(self, key) < 1:
                raise bad(f"judgments.{key}", f"must be at least 1, got {getattr(self, key)!r}")


def with_fit_data(judge_params: dict, train_path: str = paths.PROMPTS) -> dict:
    """The judge's params with the fitting data the stage passes in: the rules judge fits on the
    prompts stage's train split (`train_path`) and data/judge_train, never on files it finds by
    itself."""
    if judge_params.get("name") == "rules":
        return {**judge_params, "train_path": train_path, "extra_train": [paths.JUDGE_TRAIN]}
    return dict(judge_params)


def label_prompts(prompts: pd.DataFrame, judge_params: dict, taxonomy: Taxonomy = PAPER,
                  protocol: str = "cosalign") -> pd.DataFrame:
    """data/prompt_labels.parquet: the judge's risk set per prompt (labels from `taxonomy`, the
    taxonomy stage's data/taxonomy.json), gold kept alongside. `protocol` picks the judge's
    questions (docs/paper-fidelity.md §1)."""
    judge = make_judge(judge_params, taxonomy, protocol=protocol)
    verdicts = judge.label_prompts(prompts["prompt"].tolist())
    df = pd.DataFrame({
        "prompt_id": prompts["prompt_id"], "split": prompts["split"],
        "risk_categories": [v.risk_categories for v in verdicts],
        "gold_categories": prompts["gold_categories"],
        "valid": [bool(v.valid) for v in verdicts], "judge": judge.judge_id,
        "raw": [v.raw for v in verdicts],
    })
    return schemas.validate(df, "prompt_labels", paths.PROMPT_LABELS, taxonomy=taxonomy)


def agreement(labels: pd.DataFrame, split: str = "test", taxonomy: Taxonomy = PAPER) -> dict:
    """How the judge's labels agree with gold ones on `split`: exact-set match and F1 per category
    of `taxonomy`."""
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    rows = labels[(labels["split"] == split) & labels["gold_categories"].notna()]
    if rows.empty:
        return {"split": split, "n": 0}
    exact = [set(a) == set(b) for a, b in zip(rows["risk_categories"], rows["gold_categories"])]
    mlb = MultiLabelBinarizer(classes=list(taxonomy.names))
    y_true, y_pred = mlb.fit_transform(rows["gold_categories"]), mlb.transform(rows["risk_categories"])
    f1 = f1_score(y_true, y_pred, average=None, zero_division=0)
    return {
        "split": split, "n": int(len(rows)), "judge": str(rows["judge"].iloc[0]),
        "exact_set_match": round(float(sum(exact) / len(exact)), 4),
        "valid_rate": round(float(rows["valid"].mean()), 4),
        "macro_f1": round(float(f1.mean()), 4),
        "f1_per_category": {n: round(float(v), 4) for n, v in zip(taxonomy.names, f1)},
    }


def _require_columns(frame: pd.DataFrame, columns: list[str], path: str) -> None:
    """iter_parquet skips a column the file lacks; name it instead of failing later on a KeyError."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(path, "missing column", field=missing[0])


def read_prompt_texts(path: str, batch_rows: int = 1024) -> dict[str, str]:
    """prompt_id -> prompt, read `batch_rows` at a time: never one frame of every prompt."""
    texts: dict[str, str] = {}
    for part in iter_parquet(path, batch_rows, columns=["prompt_id", "prompt"]):
        _require_columns(part, ["prompt_id", "prompt"], path)
        texts.update(zip(part["prompt_id"], part["prompt"]))
    return texts


class ResponseJudging:
    """data/judgments.parquet as a stream: one verdict frame per work batch, in response order,
    with running counts (rows, valid, addressed, transport errors) for the stage's summary.

    Args: open_responses (returns a fresh iterator of response frames, RESPONSE_COLUMNS at least,
    each time: it is read twice, once for the checkpoint key and once to judge, so the file is
    never held whole), prompt_text (prompt_id -> prompt), judge_params (params.yaml `judge:`),
    work_batch_size (rows per checkpoint), source (the file named in errors), taxonomy (the
    judge's label space: data/taxonomy.json in the pipeline).
    """

    def __init__(self, open_responses: Callable[[], Iterable[pd.DataFrame]], prompt_text: Mapping[str, str],
                 judge_params: dict, work_batch_size: int, source: str = paths.RESPONSES,
                 taxonomy: Taxonomy = PAPER, protocol: str = "cosalign"):
        self.open_responses, self.prompt_text, self.source = open_responses, prompt_text, source
        self.taxonomy = taxonomy
        self.judge_params, self.work_batch_size = judge_params, work_batch_size
        self.protocol = protocol
        self.rows = self.valid = self.addressed = self.transport_errors = 0
        self._judge = None  # built at the first batch to judge: a fully checkpointed run loads no model

    def __iter__(self) -> Iterator[pd.DataFrame]:
        # Verdicts depend on the label space and the judge's fitting data and code too: a
        # checkpoint of another taxonomy or judge is never resumed.
        key = Fingerprint({"judge": self.judge_params, "work_batch_size": self.work_batch_size,
                           "taxonomy": self.taxonomy.fingerprint(),
                           "judge_fingerprint": judge_fingerprint(self.judge_params),
                           **({"protocol": self.protocol} if self.protocol != "cosalign" else {})})
        for items in self._items():
            key.update(items)
        if not key.rows:
            raise InputError(self.source, "has no rows")
        for out in iter_batches(self._items(), self._work, stage="judgments", key=key.hexdigest(),
                                batch_size=self.work_batch_size, total_rows=key.rows, desc="judge"):
            out["helpfulness"] = out["helpfulness"].astype("int64")
            self.rows += len(out)
            self.valid += int(out["valid"].sum())
            self.addressed += int(out["addressed"].sum())
            yield out

    def _items(self) -> Iterator[pd.DataFrame]:
        """The responses to judge, each with its prompt's text; a response whose prompt_id is not
        a known prompt fails naming its row (1-based, in file order)."""
        row = 0
        for frame in self.open_responses():
            _require_columns(frame, RESPONSE_COLUMNS, self.source)
            items = frame[RESPONSE_COLUMNS].reset_index(drop=True)
            items["prompt"] = items["prompt_id"].map(self.prompt_text)
            unknown = items.index[items["prompt"].isna()]
            if len(unknown):
                raise InputError(self.source, f"unknown prompt_id {items.at[unknown[0], 'prompt_id']!r} "
                                 f"(not in {paths.PROMPTS})", row=row + unknown[0] + 1, field="prompt_id")
            row += len(items)
            yield items

    def _work(self, batch: pd.DataFrame) -> pd.DataFrame | Retry:
        if self._judge is None:
            self._judge = make_judge(self.judge_params, self.taxonomy, protocol=self.protocol)
        verdicts = self._judge.judge_responses(list(zip(batch["prompt"], batch["response"])))
        out = pd.DataFrame({
            "response_id": batch["response_id"],
            "risk_categories": [v.risk_categories for v in verdicts],
            "addressed": [bool(v.addressed) for v in verdicts],
            "helpfulness": [int(v.helpfulness) for v in verdicts],
            "valid": [bool(v.valid) for v in verdicts],
            "judge": self._judge.judge_id, "raw": [v.raw for v in verdicts],
        })
        lost = sum(v.transport_error for v in verdicts)
        if lost:
            self.transport_errors += lost
            return Retry(out, f"{lost} item(s) hit transport errors (the judge never answered)")
        return out

    def dry_run(self):
        """With an API judge's `dry_run: true`: raise DryRun with the estimate for every response
        (calls, tokens, cost), before any batch is judged; otherwise return None."""
        if not self.judge_params.get("dry_run"):
            return None
        from cosalign.judges.base import DryRun
        from cosalign.judges.estimate import combine

        judge = make_judge(self.judge_params, self.taxonomy)
        parts = [judge.estimate("response", list(zip(frame["prompt"], frame["response"])))
                 for frame in self._items()]
        est = combine(parts) if parts else judge.estimate("response", [])
        raise DryRun(est.calls, est.cached, est.total, estimate=est)

    def summary(self) -> str:
        """The stage's closing line, from the running counts (call after the stream is consumed)."""
        return (f"judgments: {self.rows}, valid {self.valid / self.rows:.0%}, "
                f"addressed {self.addressed / self.rows:.0%}")

    def transport_warning(self) -> str | None:
        """What to tell the user when verdicts were lost to transport errors (RELIABILITY.md R-4)."""
        if not self.transport_errors:
            return None
        return (f"warning: {self.transport_errors} item(s) hit transport errors and are written "
                "invalid; their batches were not checkpointed, so a re-run (`dvc repro -s -f judgments`) "
                "retries them (answered items come from the judge's cache)")
