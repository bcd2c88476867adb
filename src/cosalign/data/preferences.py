"""Error-scored preference pairs (docs/method.md, "Error score and pairs"), and the CoSAlign-Train import.

build_pairs: a prompt's valid judged responses form one pool. For each training config of that
prompt the whole pool is scored under the config's allowed set A with error_score.error_score, after
collapsing response categories outside the training set T (the taxonomy's seen categories, from
data/taxonomy.json in the pipeline) to Other Harms. The pool
is grouped by (collapsed categories, addressed); one seeded representative stands for each group;
every two groups with different errors make a pair (lower error = chosen); a pair whose chosen error
is >= max_chosen_error (beta = 3: the chosen answer would carry a disallowed risk) is dropped.
Because grouping happens after the collapse, {Drugs} and {Weapons} answers are one group.

Under `protocol: paper` the groups follow the authors' pairing code (docs/paper-fidelity.md, 7e):
they are keyed by the judge's categories BEFORE the collapse (which then happens only inside the
error score), so {Drugs} and {Weapons} answers are two groups, each paired with every group of a
different error; and each pair draws its own chosen and rejected text from its two groups. The
written categories are the collapsed ones, so the errors still follow from them.

The preferences stage streams the same rows from its files with iter_pairs, a chunk of prompts at
a time (a prompt's pairs depend only on its own pool and configs), and caps their number with
sample_pairs (a seeded subset that never holds more than the cap).
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import re
import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from cosalign.cosa import schemas, error_score
from cosalign.cosa.taxonomy import OTHER, PAPER, Taxonomy
from cosalign.data.configs import CHUNK_PROMPTS, validate_protocol
from cosalign.core.rng import derive_rng
from cosalign.core.io import InputError, ParquetCursor
from cosalign.core.params import bad
from cosalign.models.chat import preference_messages

# TRL's conversational preference format first (prompt = [system config, user], chosen / rejected =
# [assistant], chat_template_kwargs), then the CoSA metadata (arXiv 2410.08968, Sec. 4).
PAIR_COLUMNS = [
    "prompt", "chosen", "rejected", "chat_template_kwargs", "mode", "allowed_categories",
    "prompt_categories", "chosen_categories", "rejected_categories", "chosen_addressed",
    "rejected_addressed", "chosen_error", "rejected_error", "prompt_id", "config_id",
    "chosen_response_id", "rejected_response_id",
]
_STR = ["mode", "prompt_id", "config_id", "chosen_response_id", "rejected_response_id"]
_POOL_COLUMNS = ("response_id", "prompt_id", "config_id", "response", "risk_categories", "addressed", "valid")
_CONFIG_COLUMNS = ("config_id", "prompt_id", "mode", "allowed_categories", "system_prompt")


@dataclass(frozen=True)
class CosalignTrainParams:
    """params.yaml `preferences.cosalign_train:`, read only under `source: cosalign_train`
    (the authors' released pairs, load_cosalign_train; docs/paper-fidelity.md "CoSAlign-Train")."""
    path_or_id: str = "microsoft/CoSAlign-Train"  # a Hub dataset id, a local dataset folder or a .parquet/.jsonl file
    revision: str | None = None  # pin a commit sha for Hub loads
    split: str = "train"
    on_mismatch: str = "raise"  # raise | recompute: a released error that differs from the formula

    def __post_init__(self):
        if self.on_mismatch not in ("raise", "recompute"):
            raise bad("preferences.cosalign_train.on_mismatch",
                      f"must be 'raise' or 'recompute', got {self.on_mismatch!r}")


@dataclass(frozen=True)
class PreferencesParams:
    """params.yaml `preferences:`, the preferences stage (docs/method.md, "Error score and pairs")."""
    seed: int  # pair sampling and the seeded `max_pairs` subset
    max_pairs_per_config: int | None = None  # cap per config; None = every pair
    max_pairs: int | None = None  # seeded subset of all pairs (sample_pairs); None or 0 = every pair
    balance: str | None = None  # None | "action": equal quotas of answer / refusal pairs in that subset
    # pipeline | NS/cosalign-preferences@REV (published) | cosalign_train (the authors' released pairs)
    source: str = "pipeline"
    cosalign_train: CosalignTrainParams = field(default_factory=CosalignTrainParams)

    def __post_init__(self):
        if self.balance is not None and self.balance not in BALANCE_BY:
            raise bad("preferences.balance", f"must be null or one of {sorted(BALANCE_BY)}, got {self.balance!r}")


def collapse_categories(categories, taxonomy: Taxonomy = PAPER, training=None) -> list[str]:
    """Map every category outside the training set (default: `taxonomy.seen`) to Other Harms;
    `taxonomy` order."""
    train = set(taxonomy.seen if training is None else training)
    return taxonomy.canonical_order(c if c in train else OTHER for c in categories)


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """Rows as a frame with stable dtypes, also when empty (pandera checks dtypes)."""
    out = pd.DataFrame(rows, columns=columns)
    for col in columns:
        if col in _STR:
            out[col] = out[col].astype(str)
        elif col.endswith("_addressed"):
            out[col] = out[col].astype(bool)
        elif col.endswith("_error"):
            out[col] = out[col].astype(float)
    return out


def _category_list(value, path, row, field, taxonomy: Taxonomy) -> list[str]:
    """`value` as canonical category names; `row` is the 0-based position in `path`, reported 1-based."""
    row = None if row is None else int(row) + 1
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list):
        raise InputError(path, f"must be a list of category names, got {value!r}", row=row, field=field)
    try:
        return taxonomy.canonical_order(value)
    except ValueError as exc:
        raise InputError(path, str(exc), row=row, field=field) from None


def _require(df: pd.DataFrame, columns, path) -> None:
    for col in columns:
        if col not in df.columns:
            raise InputError(path, "missing column", field=col)


def _pools(pool_df: pd.DataFrame, taxonomy: Taxonomy, path="<pool>",
           protocol: str = "cosalign") -> dict[str, dict[tuple, list[tuple[str, str]]]]:
    """prompt_id -> {(categories, addressed): [(response_id, response), ...] by id}, the categories
    collapsed (protocol 'cosalign') or as judged ('paper', see the module docstring).

    pool_df: response_id, prompt_id, response, risk_categories, addressed, valid; an error names
    `path` and the row as pool_df's index label.
    """
    pools: dict[str, dict[tuple, list[tuple[str, str]]]] = {}
    for row in pool_df.itertuples():
        if not bool(row.valid):  # an unparseable judgment has no error score: it never pairs
            continue
        if not isinstance(row.response, str) or not row.response.strip():
            continue  # an empty answer is no training target (schemas.Preferences refuses it)
        cats = _category_list(row.risk_categories, path, row.Index, "risk_categories", taxonomy)
        if protocol == "cosalign":
            cats = collapse_categories(cats, taxonomy)
        key = (tuple(cats), bool(row.addressed))
        pools.setdefault(row.prompt_id, {}).setdefault(key, []).append((row.response_id, row.response))
    for groups in pools.values():
        for members in groups.values():
            members.sort()  # by response_id, so input row order never matters
    return pools


def _config_pairs(groups, allowed, prompt_id, config_id, seed, max_chosen_error, max_pairs, taxonomy,
                  protocol="cosalign"):
    """The kept (chosen, rejected) group pairs for one config, each as (key, error, (id, text)),
    the key's categories collapsed to Other Harms outside the training set."""
    scored = []
    for key in sorted(groups, key=lambda k: ([taxonomy.names.index(c) for c in k[0]], k[1])):
        members = groups[key]
        rng = derive_rng(seed, "representative", prompt_id, config_id, "|".join(key[0]), key[1])
        rep = members[int(rng.integers(len(members)))]
        if protocol == "paper":  # keyed as judged: collapse here, draw the text per pair below
            key, rep = (tuple(collapse_categories(key[0], taxonomy)), key[1]), (key, members)
        scored.append((key, error_score.error_score(key[0], key[1], allowed, taxonomy=taxonomy), rep))
    scored.sort(key=lambda g: g[1])  # stable: ties keep the canonical key order
    pairs = []
    for i, low in enumerate(scored):
        for high in scored[i + 1:]:
            # equal errors never pair; a chosen answer at or above the cap carries a disallowed risk
            # the same text judged twice differently is no preference (schemas.Preferences)
            same_text = protocol == "cosalign" and low[2][1] == high[2][1]
            if low[1] < high[1] and low[1] < max_chosen_error and not same_text:
                pairs.append((low, high))
    if max_pairs is not None and len(pairs) > max_pairs:
        rng = derive_rng(seed, "cap", prompt_id, config_id)
        pairs = [pairs[j] for j in sorted(rng.choice(len(pairs), size=max_pairs, replace=False))]
    if protocol == "paper":  # texts are drawn per pair: a draw of the same text twice is dropped
        pairs = [(lo, hi) for lo, hi in (_draw_pair_texts(low, high, seed, prompt_id, config_id)
                                         for low, high in pairs) if lo[2][1] != hi[2][1]]
    return pairs


def _draw_pair_texts(low, high, seed, prompt_id, config_id):
    """Under 'paper' every pair draws its own chosen and rejected text from its two groups (the
    authors' random.choice per pair), seeded by the pair's identity."""
    (low_key, low_members), (high_key, high_members) = low[2], high[2]
    rng = derive_rng(seed, "pair", prompt_id, config_id, "|".join(low_key[0]), low_key[1],
                     "|".join(high_key[0]), high_key[1])
    return ((low[0], low[1], low_members[int(rng.integers(len(low_members)))]),
            (high[0], high[1], high_members[int(rng.integers(len(high_members)))]))


@dataclass
class _Batch:
    """What pairing needs for some prompts: their configs (index = row in `configs_path`), their
    pools (see _pools), and the prompt text and labelled risk set per prompt_id."""
    configs: pd.DataFrame
    pools: dict
    text: dict
    risks: dict
    taxonomy: Taxonomy
    configs_path: str = "<configs>"


def _batch_pairs(batch: _Batch, *, seed, max_chosen_error, max_pairs_per_config,
                 protocol="cosalign") -> pd.DataFrame:
    """The pairs of every config in the batch (PAIR_COLUMNS, not yet validated), sorted by
    prompt_id, config_id, then chosen error ascending."""
    configs = batch.configs
    rows = []
    order = sorted(range(len(configs)),
                   key=lambda j: (configs["prompt_id"].iat[j], configs["config_id"].iat[j]))
    for j in order:
        cfg, row = configs.iloc[j], configs.index[j]
        pid = cfg["prompt_id"]
        groups = batch.pools.get(pid)
        if not groups:
            continue
        for name, table in (("prompt", batch.text), ("risk_categories", batch.risks)):
            if pid not in table:
                raise InputError(batch.configs_path, f"prompt_id {pid!r} has no {name} in the prompt table",
                                 row=row + 1, field="prompt_id")
        allowed = _category_list(cfg["allowed_categories"], batch.configs_path, row, "allowed_categories",
                                 batch.taxonomy)
        for low, high in _config_pairs(groups, allowed, pid, cfg["config_id"], seed,
                                       max_chosen_error, max_pairs_per_config, batch.taxonomy, protocol):
            rows.append({
                **preference_messages(cfg["system_prompt"], batch.text[pid], low[2][1], high[2][1]),
                "mode": cfg["mode"],
                "allowed_categories": list(allowed), "prompt_categories": list(batch.risks[pid]),
                "chosen_categories": list(low[0][0]), "rejected_categories": list(high[0][0]),
                "chosen_addressed": low[0][1], "rejected_addressed": high[0][1],
                "chosen_error": low[1], "rejected_error": high[1],
                "prompt_id": pid, "config_id": cfg["config_id"],
                "chosen_response_id": low[2][0], "rejected_response_id": high[2][0],
            })
    return _frame(rows, PAIR_COLUMNS)


def _check_cap(name: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")


def _risks(labels: pd.DataFrame, path, taxonomy: Taxonomy) -> dict:
    """prompt_id -> labelled risk set; an error names `path` and the row as labels' index label."""
    return {pid: _category_list(v, path, row, "risk_categories", taxonomy)
            for row, pid, v in zip(labels.index, labels["prompt_id"], labels["risk_categories"])}


def build_pairs(pool_df: pd.DataFrame, configs_df: pd.DataFrame, prompts_df: pd.DataFrame, *,
                seed: int, max_chosen_error: float = error_score.BETA,
                max_pairs_per_config: int | None = None,
                labels_df: pd.DataFrame | None = None, protocol: str = "cosalign",
                taxonomy: Taxonomy = PAPER) -> pd.DataFrame:
    """Error-scored preference pairs for every config in configs_df (a schemas.Preferences frame),
    in memory (the preferences stage streams the same rows from its files with iter_pairs).

    Args: pool_df (response_id, prompt_id, config_id, response, risk_categories, addressed, valid:
    judged responses; the config a response came from does not matter, the pool is per prompt);
    configs_df (schemas.Configs); prompts_df (prompt_id, prompt and, unless labels_df is given,
    risk_categories: the prompt's labelled risk set); max_pairs_per_config keeps a seeded subset;
    max_chosen_error may only tighten beta (schemas.Preferences requires chosen_error < 3);
    protocol 'cosalign' or 'paper' (module docstring); taxonomy: the categories, their order and the
    training set T (data/taxonomy.json).
    Returns: PAIR_COLUMNS, sorted by prompt_id, config_id, then chosen error ascending.
    """
    _check_cap("max_pairs_per_config", max_pairs_per_config)
    validate_protocol(protocol)
    _require(prompts_df, ("prompt_id", "prompt"), "<prompts>")
    labels = prompts_df if labels_df is None else labels_df
    label_path = "<prompts>" if labels_df is None else "<prompt_labels>"
    _require(labels, ("prompt_id", "risk_categories"), label_path)
    _require(configs_df, _CONFIG_COLUMNS, "<configs>")
    _require(pool_df, _POOL_COLUMNS, "<pool>")
    text = dict(zip(prompts_df["prompt_id"], prompts_df["prompt"]))
    risks = _risks(labels.reset_index(drop=True), label_path, taxonomy)
    batch = _Batch(configs=configs_df.reset_index(drop=True),
                   pools=_pools(pool_df.reset_index(drop=True), taxonomy, protocol=protocol),
                   text=text, risks=risks, taxonomy=taxonomy)
    out = _batch_pairs(batch, seed=seed, max_chosen_error=max_chosen_error,
                       max_pairs_per_config=max_pairs_per_config, protocol=protocol)
    return schemas.validate(out, "preferences", "<preferences>", taxonomy=taxonomy)


# --- streaming from the stage's files ---------------------------------------------------------

class PairInputs(NamedTuple):
    """The preferences stage's input files. configs, responses, prompts and labels must be sorted
    by prompt_id, and judgments must hold one row per response in responses order, as the pipeline
    writes them all; iter_pairs checks this as it reads (InputError naming the file and row)."""
    configs: str
    responses: str
    judgments: str
    prompts: str
    labels: str


def _judged(responses: pd.DataFrame, judgments: ParquetCursor, inputs: PairInputs) -> pd.DataFrame:
    """`responses` rows with their judgment: the next rows of `judgments`, which must name the same
    response ids in the same order (the old inner join by response_id, without holding either file)."""
    verdicts = judgments.take(len(responses))
    if len(verdicts) < len(responses):
        raise InputError(inputs.judgments, f"ends before the judgment of response "
                                           f"{responses['response_id'].iat[len(verdicts)]!r} (row "
                                           f"{responses.index[len(verdicts)] + 1} of {inputs.responses}): "
                                           f"judgments must list the responses in their order, one row each",
                         field="response_id")
    differ = responses["response_id"].to_numpy() != verdicts["response_id"].to_numpy()
    if differ.any():
        i = int(differ.argmax())
        raise InputError(inputs.judgments, f"response_id {verdicts['response_id'].iat[i]!r}, but row "
                                           f"{responses.index[i] + 1} of {inputs.responses} is "
                                           f"{responses['response_id'].iat[i]!r}: judgments must list "
                                           f"the responses in their order, one row each",
                         row=verdicts.index[i] + 1, field="response_id")
    return responses.assign(**{c: verdicts[c].to_numpy() for c in ("risk_categories", "addressed", "valid")})


def _rows_of(cursor: ParquetCursor, last, ids: set) -> pd.DataFrame:
    """The rows of `ids` up to `last` from a prompt_id-sorted cursor. When one is missing (pairing
    is about to fail), the rest of the file is read first, so a file out of order says so."""
    rows = cursor.until(last, keep=ids)
    if not ids <= set(rows["prompt_id"]):
        cursor.drain()
    return rows


def _file_batches(inputs: PairInputs, chunk_prompts: int, taxonomy: Taxonomy, protocol: str = "cosalign"):
    """Open the inputs (a missing file or column fails here) and return a generator of one _Batch
    per `chunk_prompts` prompts of configs, each reading only its prompts' rows of the other files."""
    rows = chunk_prompts * 4  # configs and responses have a few rows per prompt (4 modes, samples)
    configs = ParquetCursor(inputs.configs, rows, columns=list(_CONFIG_COLUMNS), key="prompt_id")
    responses = ParquetCursor(inputs.responses, rows, key="prompt_id",
                              columns=["response_id", "prompt_id", "response"])
    judgments = ParquetCursor(inputs.judgments, rows,
                              columns=["response_id", "risk_categories", "addressed", "valid"])
    prompts = ParquetCursor(inputs.prompts, chunk_prompts, columns=["prompt_id", "prompt"], key="prompt_id")
    labels = ParquetCursor(inputs.labels, chunk_prompts, columns=["prompt_id", "risk_categories"],
                           key="prompt_id")

    def batches():
        while len(cfgs := configs.next_groups(chunk_prompts)):
            last, ids = cfgs["prompt_id"].iat[-1], set(cfgs["prompt_id"])
            pool = _judged(responses.until(last), judgments, inputs)
            pools = _pools(pool[pool["prompt_id"].isin(ids)], taxonomy, inputs.judgments, protocol)
            text = _rows_of(prompts, last, set(pools))
            yield _Batch(configs=cfgs, pools=pools, text=dict(zip(text["prompt_id"], text["prompt"])),
                         risks=_risks(_rows_of(labels, last, set(pools)), inputs.labels, taxonomy),
                         taxonomy=taxonomy, configs_path=inputs.configs)
        responses.drain()  # a response out of order past the last config would otherwise be missed

    return batches()


def iter_pairs(inputs: PairInputs, *, seed: int, max_chosen_error: float = error_score.BETA,
               max_pairs_per_config: int | None = None, chunk_prompts: int = CHUNK_PROMPTS,
               protocol: str = "cosalign", taxonomy: Taxonomy = PAPER):
    """Yield build_pairs' rows (not yet validated) from the stage's files, one frame per
    `chunk_prompts` prompts of configs, reading only the columns pairing needs.

    Memory holds one chunk of each file (see PairInputs for the order this relies on), never a
    whole input or the whole output. Frames without pairs are skipped, but at least one (empty)
    frame is always yielded, as schemas.write_dataset needs. Row for row the same as build_pairs
    over the whole files (only valid judgments pool), however the prompts are chunked.
    """
    _check_cap("max_pairs_per_config", max_pairs_per_config)
    validate_protocol(protocol)
    yielded = False
    batches = _file_batches(inputs, chunk_prompts, taxonomy, protocol)
    for batch in tqdm(batches, desc="pairing", unit="chunk", disable=None):
        out = _batch_pairs(batch, seed=seed, max_chosen_error=max_chosen_error,
                           max_pairs_per_config=max_pairs_per_config, protocol=protocol)
        if len(out):
            yielded = True
            yield out
    if not yielded:
        yield _frame([], PAIR_COLUMNS)


def _pair_key(seed: int, config_id: str, chosen_id: str, rejected_id: str) -> int:
    """A pair's seeded sort key for sample_pairs (SHA-256: Python's hash() is salted per process)."""
    text = "\x1f".join(map(str, (seed, config_id, chosen_id, rejected_id)))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


BALANCE_BY = {  # preferences.balance: how sample_pairs splits max_pairs into equal quotas
    "action": lambda row: "answer" if row["chosen_addressed"] else "refuse",
}


def sample_pairs(chunks, *, max_pairs: int, seed: int, balance: str | None = None) -> pd.DataFrame:
    """A seeded subset of at most `max_pairs` of the pairs in `chunks` (frames in file order), as
    one frame in file order; all of them when there are no more than that.

    Selection rule: each pair gets the key sha256(seed, config_id, chosen_response_id,
    rejected_response_id) (its first 8 bytes); the `max_pairs` smallest keys are kept, ties to the
    earlier pair. A pair's fate depends only on the seed, its identity and the other pairs' keys,
    never on how the stream is chunked or ordered. Memory holds at most `max_pairs` pairs (a heap
    of the best so far) per stratum, plus one chunk.

    balance="action" splits the pairs by what the chosen answer does (answers the request, or
    refuses) and gives each stratum an equal quota of max_pairs; a stratum with fewer pairs leaves
    its unused quota to the other, by the same keys. Why (issue #20): the unbalanced draw of the
    default profile chose the one templated refusal in 57% of its pairs, and the trained models
    learned to refuse everything, risk-free prompts included.
    """
    _check_cap("max_pairs", max_pairs)
    if balance is not None and balance not in BALANCE_BY:
        raise ValueError(f"preferences.balance: unknown {balance!r} (known: null, {sorted(BALANCE_BY)})")
    stratum_of = BALANCE_BY[balance] if balance else (lambda row: "all")
    heaps: dict[str, list[tuple[int, int, dict]]] = {}  # (-key, -position, row): [0] is the worst kept
    columns, position = None, 0
    for chunk in chunks:
        columns = columns or list(chunk.columns)
        for row in chunk.to_dict("records"):
            key = _pair_key(seed, row["config_id"], row["chosen_response_id"], row["rejected_response_id"])
            item = (-key, -position, row)
            position += 1
            heap = heaps.setdefault(stratum_of(row), [])
            if len(heap) < max_pairs:
                heapq.heappush(heap, item)
            elif item[:2] > heap[0][:2]:  # a smaller key (or an equal key, earlier) than the worst kept
                heapq.heapreplace(heap, item)
    kept = _fill_quotas([sorted(h, reverse=True) for _, h in sorted(heaps.items())], max_pairs)
    kept = sorted(kept, key=lambda item: -item[1])  # back to file order
    return _frame([row for _, _, row in kept], columns or PAIR_COLUMNS)


def _fill_quotas(strata: list[list], max_pairs: int) -> list:
    """Up to max_pairs items over strata (each best-first): equal quotas, the unused quota of a
    short stratum going to the others, best keys first."""
    kept, left, open_ = [], max_pairs, [list(s) for s in strata]
    while left > 0 and any(open_):
        live = [s for s in open_ if s]
        quota = max(1, left // len(live))
        for s in live:
            take = s[:min(quota, left)]
            del s[:len(take)]
            kept += take
            left -= len(take)
    return kept


def _prompt_key(prompt_msgs) -> tuple:
    return tuple((m["role"], m["content"]) for m in prompt_msgs)


def pairs_for_sft(pref_df: pd.DataFrame) -> pd.DataFrame:
    """One row per unique conversational prompt (config + user turn): the lowest chosen_error,
    ties to the first row.

    Rows come out in the order each prompt first appears; index reset.
    """
    df = pref_df.reset_index(drop=True)
    key = pd.Series([_prompt_key(p) for p in df["prompt"]], index=df.index)
    first_seen = key.groupby(key, sort=False).ngroup()
    best = df.assign(_group=first_seen).sort_values(["_group", "chosen_error"], kind="stable")
    best = best.drop_duplicates("_group", keep="first")
    return best.drop(columns="_group").reset_index(drop=True)


SFT_COLUMNS = ["prompt", "completion", "chat_template_kwargs", "mode", "allowed_categories",
               "prompt_categories", "completion_categories", "completion_addressed", "completion_error",
               "prompt_id", "config_id", "response_id"]


def sft_view(pref_df: pd.DataFrame) -> pd.DataFrame:
    """The SFT rows of a preferences frame in TRL's conversational prompt-completion format.

    Per prompt (pairs_for_sft) the best chosen answer becomes `completion`, so TRL's
    completion_only_loss puts the loss on the answer only; metadata columns are renamed from
    chosen_* to completion_*. Published as the `sft` config of NS/cosalign-preferences.
    """
    best = pairs_for_sft(pref_df)
    out = pd.DataFrame({
        "prompt": best["prompt"], "completion": best["chosen"],
        "chat_template_kwargs": best["chat_template_kwargs"], "mode": best["mode"],
        "allowed_categories": best["allowed_categories"], "prompt_categories": best["prompt_categories"],
        "completion_categories": best["chosen_categories"], "completion_addressed": best["chosen_addressed"],
        "completion_error": best["chosen_error"]})
    for col, src in (("prompt_id", "prompt_id"), ("config_id", "config_id"), ("response_id", "chosen_response_id")):
        out[col] = best[src].astype(str) if src in best else ""
    return out[SFT_COLUMNS]


# --- microsoft/CoSAlign-Train -------------------------------------------------------------------

def _key(text: str) -> str:
    """Spelling-insensitive key: the release writes spaces as '_' and drops ', ' in some places."""
    return re.sub(r"[^a-z0-9]", "", text.lower())


_BY_KEY = {_key(n): n for n in PAPER.names}  # the release uses the paper's eight categories
_NONE_KEYS = {"", "none"}


@functools.lru_cache(maxsize=4096)
def decode_categories(text: str) -> tuple[str, ...]:
    """Decode the release's '-A-B-' category strings ('--' and '-None-' are empty) into names.

    '-' both separates categories and occurs inside 'Illegal Drug-Related ...', so runs of
    '-'-separated tokens are matched greedily (longest first) against the taxonomy names.
    """
    tokens = str(text).strip().split("-")
    names, i = [], 0
    while i < len(tokens):
        if _key(tokens[i]) in _NONE_KEYS:
            i += 1
            continue
        for j in range(len(tokens), i, -1):
            name = _BY_KEY.get(_key("-".join(tokens[i:j])))
            if name is not None:
                names.append(name)
                i = j
                break
        else:
            raise ValueError(f"cannot decode {tokens[i]!r} in {text!r} as a taxonomy category")
    return tuple(PAPER.canonical_order(names))


def decode_response_category(value) -> tuple[tuple[str, ...], bool]:
    """Decode chosen_cat / rejected_cat like '(-Violence-, 1)' into (categories, addressed)."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        cats, addressed = value
    else:
        text = str(value).strip()
        if not (text.startswith("(") and text.endswith(")")) or ", " not in text:
            raise ValueError(f"expected '(-Category-..., 0|1)', got {value!r}")
        cats, addressed = text[1:-1].rsplit(", ", 1)  # category names contain ', ' too
    flag = str(addressed).strip().lower()
    if flag not in ("0", "1", "true", "false"):
        raise ValueError(f"addressed flag must be 0 or 1, got {addressed!r} in {value!r}")
    return decode_categories(str(cats)), flag in ("1", "true")


def _stable_id(*parts: str) -> str:
    return "ct-" + hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


_RELEASE_COLUMNS = ("system_prompt", "prompt", "chosen_response", "rejected_response", "spec_i",
                    "spec_j", "mode", "chosen_cat", "rejected_cat", "chosen_category_error_score",
                    "rejected_category_error_score")


def import_cosalign_train(df: pd.DataFrame, *, path="<CoSAlign-Train>", on_mismatch: str = "raise",
                          tolerance: float = 1e-6) -> pd.DataFrame:
    """Map microsoft/CoSAlign-Train rows onto schemas.Preferences (PAIR_COLUMNS plus the released scores).

    spec_i -> allowed_categories, spec_j -> prompt_categories (as released), chosen_cat /
    rejected_cat -> categories (collapsed to Other Harms outside the paper's seen categories, as the authors did
    when scoring) and addressed. Errors are recomputed with error_score.error_score and compared with the
    released ones (kept as released_chosen_error / released_rejected_error): a difference above
    `tolerance` raises InputError (on_mismatch='raise') or keeps the recomputed value
    (on_mismatch='recompute', which drops pairs that then break chosen < rejected or chosen < beta).
    Ids are content hashes (prompt_id of the prompt, config_id of system prompt + prompt, response
    ids of the text). df.attrs['import_report'] counts rows, mismatches and drops.
    Raises InputError naming the row and field of any undecodable value.
    """
    if on_mismatch not in ("raise", "recompute"):
        raise ValueError(f"on_mismatch must be 'raise' or 'recompute', got {on_mismatch!r}")
    _require(df, _RELEASE_COLUMNS, path)
    rows, mismatches, dropped = [], 0, 0
    for i, row in enumerate(df.reset_index(drop=True).to_dict("records"), start=1):  # 1-based rows
        def decode(field, fn):
            try:
                return fn(row[field])
            except (ValueError, TypeError) as exc:
                raise InputError(path, str(exc), row=i, field=field) from None
        allowed = list(decode("spec_i", decode_categories))
        prompt_cats = list(decode("spec_j", decode_categories))
        chosen_cats, chosen_addr = decode("chosen_cat", decode_response_category)
        rejected_cats, rejected_addr = decode("rejected_cat", decode_response_category)
        mode = str(row["mode"])
        if mode not in schemas.MODES:
            raise InputError(path, f"unknown mode {mode!r}; known: {list(schemas.MODES)}",
                             row=i, field="mode")
        chosen_cats, rejected_cats = collapse_categories(chosen_cats, PAPER), collapse_categories(rejected_cats, PAPER)
        errors = {}
        for side, cats, addr in (("chosen", chosen_cats, chosen_addr),
                                 ("rejected", rejected_cats, rejected_addr)):
            field = f"{side}_category_error_score"
            released = decode(field, float)
            errors[side] = error_score.error_score(cats, addr, allowed, taxonomy=PAPER)
            errors["released_" + side] = released
            if not abs(released - errors[side]) <= tolerance:
                if on_mismatch == "raise":
                    raise InputError(path, f"released error {released} differs from the formula's "
                                           f"{errors[side]} (categories {cats}, addressed {addr}, "
                                           f"allowed {allowed})", row=i, field=field)
                mismatches += 1
        if not (errors["chosen"] < errors["rejected"] and errors["chosen"] < error_score.BETA):
            if on_mismatch == "raise":  # only reachable when the released scores break the rules too
                raise InputError(path, f"chosen error {errors['chosen']} must be < rejected "
                                       f"{errors['rejected']} and < {error_score.BETA}", row=i,
                                 field="chosen_category_error_score")
            dropped += 1
            continue
        rows.append({
            **preference_messages(str(row["system_prompt"]), str(row["prompt"]),
                                  str(row["chosen_response"]), str(row["rejected_response"])),
            "mode": mode, "allowed_categories": allowed, "prompt_categories": prompt_cats,
            "chosen_categories": chosen_cats, "rejected_categories": rejected_cats,
            "chosen_addressed": chosen_addr, "rejected_addressed": rejected_addr,
            "chosen_error": errors["chosen"], "rejected_error": errors["rejected"],
            "prompt_id": _stable_id(str(row["prompt"])),
            "config_id": _stable_id(str(row["system_prompt"]), str(row["prompt"])),
            "chosen_response_id": _stable_id(str(row["chosen_response"])),
            "rejected_response_id": _stable_id(str(row["rejected_response"])),
            "released_chosen_error": errors["released_chosen"],
            "released_rejected_error": errors["released_rejected"],
        })
    out = _frame(rows, PAIR_COLUMNS + ["released_chosen_error", "released_rejected_error"])
    out = schemas.validate(out, "preferences", path)
    out.attrs["import_report"] = {"rows": len(df), "kept": len(out), "error_mismatches": mismatches,
                                  "dropped": dropped}
    return out


# The preferences stage's `source: cosalign_train`: the authors' released pairs instead of this
# pipeline's (docs/paper-fidelity.md "CoSAlign-Train"). Decoded and re-checked by
# import_cosalign_train, then written by the same schemas.write_dataset call as the pipeline's pairs.
COSALIGN_TRAIN_SOURCE = "cosalign_train"
COSALIGN_TRAIN_DEFAULTS = {"path_or_id": "microsoft/CoSAlign-Train", "revision": None,
                           "split": "train", "on_mismatch": "raise"}


def load_cosalign_train(options: dict | None) -> pd.DataFrame:
    """The released pairs as a frame, then decoded and checked (import_cosalign_train).

    options (params.yaml `preferences.cosalign_train`): path_or_id = a local .parquet / .jsonl
    file, a local dataset folder or a Hub dataset id; revision (Hub: pin a commit); split;
    on_mismatch ('raise' or 'recompute', see import_cosalign_train).
    """
    opts = {**COSALIGN_TRAIN_DEFAULTS, **(options or {})}
    unknown = sorted(set(opts) - set(COSALIGN_TRAIN_DEFAULTS))
    if unknown:
        raise InputError("params.yaml", f"unknown option(s) {unknown}; accepted: "
                         f"{sorted(COSALIGN_TRAIN_DEFAULTS)}", field="preferences.cosalign_train")
    source = str(opts["path_or_id"])
    from pathlib import Path

    path = Path(source)
    if path.is_file():
        from cosalign.core.io import read_table
        frame = read_table(path)
    else:
        import datasets
        try:
            frame = datasets.load_dataset(source, revision=opts["revision"], split=opts["split"]).to_pandas()
        except (FileNotFoundError, ValueError) as exc:
            raise InputError(source, f"cannot load split {opts['split']!r}: {exc}",
                             field="preferences.cosalign_train.path_or_id") from None
    out = import_cosalign_train(frame, path=source, on_mismatch=opts["on_mismatch"])
    return out
