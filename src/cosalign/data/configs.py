"""Synthetic categorical safety configs: sample an allowed set per prompt and render it as text.

For a training prompt with risk set P and the seen categories T (the taxonomy's `seen`, read from
data/taxonomy.json by the configs stage), one of four modes
draws an allowed set A, always a subset of T (docs/method.md, "Synthetic categorical configs"):

- exact_match:  A = P ∩ T.
- superset:     A = (P ∩ T) plus a random NON-EMPTY subset of T \\ P; when P ∩ T == T there is
                nothing to add and A = T. "Superset" means A ⊇ P ∩ T: a prompt with an unseen or
                Other Harms category is never covered by any seen-only A.
- safe:         A = [].
- not_superset: A = a random subset of P ∩ T of size < |P ∩ T| (at least one seen prompt risk is
                dropped) plus a random subset of T \\ P. Edge cases: a risk-free prompt gets A = [];
                a prompt whose risks are all unseen / Other Harms gets ANY random subset of T,
                because no seen-only A can be a superset of its P.

Under `protocol: paper` three things follow the authors' released pairing code instead
(docs/paper-fidelity.md, "Pair data"):

- a training prompt labelled with any category outside T (unseen or Other Harms) gets no configs;
- superset adds a random subset of T \\ P of ANY size, zero included, so A = P happens;
- a risk-free prompt gets every mode's draws (exact_match, safe and not_superset all give A = []),
  not one collapsed 'safe' config: with one draw per mode, A = [] for 3/4 + 1/4 * 1/(|T| + 1) =
  80% of its configs, against 1 / (1 + configs_per_mode) under `cosalign`.

A random subset is drawn as: size uniform over the allowed sizes, then that many distinct elements
uniformly. Every draw uses its own RNG derived from (seed, prompt_id, mode, k), so a config never
depends on row order or on which other prompts are present, nor on how the configs stage chunks
the prompts it streams (training_label_chunks, iter_configs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from cosalign.cosa import schemas
from cosalign.cosa.taxonomy import PAPER, Taxonomy
from cosalign.core.io import InputError, ParquetCursor, read_parquet
from cosalign.core.params import PROTOCOLS, bad
from cosalign.core.rng import derive_rng
from cosalign.cosa.config_text import load_templates, render_config

MODES = schemas.MODES
# Modes whose allowed set is [] for a risk-free prompt; sample_configs emits them once, as 'safe'.
_EMPTY_FOR_RISK_FREE = ("exact_match", "safe", "not_superset")

CONFIG_COLUMNS = ["config_id", "prompt_id", "mode", "allowed_categories", "template_id", "system_prompt"]
# Prompts per streamed chunk (~250 configs, ~600 preference pairs): small enough that a chunk costs
# a few MiB, large enough that per-chunk overheads (validation, a row group each) stay small.
CHUNK_PROMPTS = 64


@dataclass(frozen=True)
class ConfigsParams:
    """params.yaml `configs:`, the configs stage (docs/method.md, "Synthetic categorical configs")."""
    seed: int  # every draw's RNG derives from (seed, prompt_id, mode, k)
    modes: list  # of MODES: exact_match, superset, safe, not_superset
    configs_per_mode: int  # allowed sets drawn per prompt and mode
    max_train_prompts: int | None = None  # seeded subset of training prompts that get configs; None = all
    source: str = "pipeline"  # pipeline | NS/cosalign-configs@REV

    def __post_init__(self):
        for key in ('configs_per_mode',):
            if getattr(self, key) < 1:
                raise bad(f"configs.{key}", f"must be at least 1, got {getattr(self, key)!r}")


def _random_subset(items: list[str], rng: np.random.Generator, min_size: int, max_size: int) -> list[str]:
    """A subset of `items` with size uniform in [min_size, max_size], elements uniform."""
    size = int(rng.integers(min_size, max_size + 1))
    if size == 0:
        return []
    return [items[i] for i in rng.choice(len(items), size=size, replace=False)]


def validate_protocol(protocol) -> None:
    """ValueError naming `protocol` unless it is one of params.PROTOCOLS."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")


def trains_under(prompt_categories, protocol: str, taxonomy: Taxonomy = PAPER) -> bool:
    """Whether a training prompt with this risk set gets configs: always under `cosalign`; under
    `paper` only when every category is seen (the authors' pairing skips the rest)."""
    validate_protocol(protocol)
    return protocol == "cosalign" or set(prompt_categories) <= set(taxonomy.seen)


def sample_allowed(prompt_categories: list[str], mode: str, rng: np.random.Generator, *,
                   protocol: str = "cosalign", taxonomy: Taxonomy = PAPER) -> list[str]:
    """Draw the allowed set A (subset of `taxonomy.seen`, canonical order) for a prompt risk set P.

    `protocol` 'paper' lets superset add zero categories (module docstring).
    """
    if mode not in MODES:
        raise ValueError(f"unknown config mode {mode!r}; known: {list(MODES)}")
    validate_protocol(protocol)
    prompt = set(taxonomy.canonical_order(prompt_categories))  # also rejects unknown names
    seen_risks = [c for c in taxonomy.seen if c in prompt]
    rest = [c for c in taxonomy.seen if c not in prompt]
    if mode == "safe":
        return []
    if mode == "exact_match":
        return seen_risks
    if mode == "superset":
        fewest = 0 if protocol == "paper" else 1
        extra = _random_subset(rest, rng, fewest, len(rest)) if rest else []
        return taxonomy.canonical_order(seen_risks + extra)
    # not_superset
    if not prompt:
        return []
    if not seen_risks:  # only unseen / Other Harms risks: every seen-only set misses one of them
        return taxonomy.canonical_order(_random_subset(list(taxonomy.seen), rng, 0, len(taxonomy.seen)))
    kept = _random_subset(seen_risks, rng, 0, len(seen_risks) - 1)
    extra = _random_subset(rest, rng, 0, len(rest))
    return taxonomy.canonical_order(kept + extra)


def _training_labels(labels: pd.DataFrame, known, path="<prompt_labels>") -> pd.DataFrame:
    """The rows of `labels` that get configs (split == 'train', a valid label), sorted by prompt_id.

    Every label must name a prompt in `known` (a set of prompt ids) and carry a list of risk
    categories; an error names `path` and the row (labels' 0-based index label, reported 1-based).
    """
    for col in ("prompt_id", "split", "risk_categories"):
        if col not in labels.columns:
            raise InputError(path, "missing column", field=col)
    for row, pid, risks in zip(labels.index, labels["prompt_id"], labels["risk_categories"]):
        if pid not in known:
            raise InputError(path, f"prompt_id {pid!r} is not in prompts", row=row + 1, field="prompt_id")
        if not isinstance(risks, list):
            raise InputError(path, "risk_categories must be a list", row=row + 1, field="risk_categories")
    keep = labels["split"] == "train"
    if "valid" in labels.columns:  # an unparseable label says nothing about P: no configs for it
        keep &= labels["valid"].astype(bool)
    return labels[keep].sort_values("prompt_id", kind="stable")


def training_label_chunks(prompts_path, labels_path, *, max_prompts: int | None = None, seed: int = 0,
                          chunk_prompts: int = CHUNK_PROMPTS):
    """An iterator over the training labels of `labels_path` (see _training_labels), `chunk_prompts`
    prompts at a time, checked against the prompt ids of `prompts_path`, reading only the columns
    needed.

    Both files must be sorted by prompt_id, as the prompts and prompt_labels stages write them
    (InputError naming the file and row otherwise): each chunk then needs only the prompt ids up to
    its last one, so memory holds one chunk of each file. `max_prompts` keeps a seeded subset of
    that many training prompts (pandas' sample with random_state=seed over the training rows in
    file order), which bounds the CPU profiles' generation. The files are opened (and a missing
    one reported, prompts first) before this returns.
    """
    prompts = ParquetCursor(prompts_path, chunk_prompts, columns=["prompt_id"], key="prompt_id")
    labels = ParquetCursor(labels_path, chunk_prompts, key="prompt_id",
                           columns=["prompt_id", "split", "risk_categories", "valid"])
    keep = _seeded_subset(labels_path, max_prompts, seed) if max_prompts else None
    return _label_chunks(prompts, labels, keep, chunk_prompts)


def _seeded_subset(labels_path, max_prompts: int, seed: int) -> set:
    """The prompt ids of `max_prompts` training prompts drawn with pandas' seeded sample."""
    labels = read_parquet(labels_path, columns=["prompt_id", "split"])
    train = labels[labels["split"] == "train"]
    return set(train.sample(n=min(max_prompts, len(train)), random_state=seed)["prompt_id"])


def _label_chunks(prompts: ParquetCursor, labels: ParquetCursor, keep: set | None, chunk_prompts: int):
    """training_label_chunks' generator: each chunk of labels with the prompt ids up to its last."""
    while len(chunk := labels.next_groups(chunk_prompts)):
        if keep is not None:
            chunk = chunk[chunk["prompt_id"].isin(keep)]
        if len(chunk):
            ids = set(chunk["prompt_id"])
            known = set(prompts.until(chunk["prompt_id"].iloc[-1], keep=ids)["prompt_id"])
            if not ids <= known:  # about to fail: first rule out a prompts file out of order
                prompts.drain()
            yield _training_labels(chunk, known, labels.path)


def _check_sampling(modes, configs_per_mode) -> None:
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes or len(set(modes)) != len(modes):
        raise ValueError(f"modes must be distinct names from {list(MODES)}, got {modes!r}")
    if isinstance(configs_per_mode, bool) or not isinstance(configs_per_mode, int) or configs_per_mode < 1:
        raise ValueError(f"configs_per_mode must be a positive int, got {configs_per_mode!r}")


def _prompt_configs(label, modes, configs_per_mode, seed, templates, taxonomy: Taxonomy,
                    protocol="cosalign") -> list[dict]:
    """The config rows of one training label (prompt_id, risk_categories), in output order."""
    rows = []
    if not trains_under(label.risk_categories, protocol, taxonomy):
        return rows
    # `cosalign` gives a risk-free prompt one 'safe' config for its three empty modes; the
    # authors draw each mode's config anyway (their share of allow-nothing configs, ~80%).
    risk_free = not label.risk_categories and protocol == "cosalign"
    emitted_safe = False
    for mode in modes:
        draws = range(configs_per_mode)
        if risk_free and mode in _EMPTY_FOR_RISK_FREE:
            if emitted_safe:
                continue
            mode, draws, emitted_safe = "safe", range(1), True
        for k in draws:
            rng = derive_rng(seed, label.prompt_id, mode, k)
            allowed = sample_allowed(label.risk_categories, mode, rng, protocol=protocol, taxonomy=taxonomy)
            rows.append(_config_row(f"{label.prompt_id}-{mode}-{k}", label.prompt_id, mode, allowed,
                                    templates, rng, taxonomy))
    return rows


def _config_row(config_id, prompt_id, mode, allowed, templates, rng, taxonomy: Taxonomy) -> dict:
    """One config row (CONFIG_COLUMNS); the template is the next draw of the config's own rng."""
    template = templates[int(rng.integers(len(templates)))]
    return {"config_id": config_id, "prompt_id": prompt_id, "mode": mode, "allowed_categories": allowed,
            "template_id": template["id"], "system_prompt": render_config(template, allowed, taxonomy)}


def _configs_frame(rows: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame(rows, columns=CONFIG_COLUMNS)
    for col in ("config_id", "prompt_id", "mode", "template_id", "system_prompt"):
        out[col] = out[col].astype(str)  # so an empty frame still has the string dtype pandera wants
    return out


def iter_configs(label_chunks, *, modes: list[str], configs_per_mode: int, seed: int,
                 template_kind: str = "train", templates: list[dict] | None = None,
                 protocol: str = "cosalign", taxonomy: Taxonomy = PAPER):
    """Yield the configs (schemas.Configs columns, not yet validated) of each chunk of training
    labels (frames with prompt_id and risk_categories, as _training_labels returns them), sampled
    under `protocol` ('cosalign' or 'paper', see the module docstring), drawn from `taxonomy`'s
    seen categories and rendered with its descriptions.

    Each chunk's frame holds the configs of its prompts in label order, so chunks in prompt_id
    order give sample_configs' order, and a prompt's configs never straddle two frames. Chunks
    without configs are skipped, but at least one (empty) frame is always yielded, as
    schemas.write_dataset needs. Every draw is seeded by its own identity (derive_rng), so the
    output does not depend on how the labels are chunked.
    """
    _check_sampling(modes, configs_per_mode)
    validate_protocol(protocol)
    templates = templates if templates is not None else load_templates(template_kind)
    yielded = False
    with tqdm(desc="configs", unit="prompt", disable=None) as bar:  # silent when not a TTY
        for labels in label_chunks:
            rows = [row for label in labels.itertuples(index=False)
                    for row in _prompt_configs(label, modes, configs_per_mode, seed, templates, taxonomy,
                                               protocol)]
            bar.update(len(labels))
            if rows:
                yielded = True
                yield _configs_frame(rows)
    if not yielded:
        yield _configs_frame([])


def sample_configs(prompts_df: pd.DataFrame, labels_df: pd.DataFrame, *, modes: list[str],
                   configs_per_mode: int, seed: int, template_kind: str = "train",
                   templates: list[dict] | None = None, protocol: str = "cosalign",
                   taxonomy: Taxonomy = PAPER) -> pd.DataFrame:
    """Sample `configs_per_mode` configs per (training prompt, mode) and render them, in memory
    (the configs stage streams the same rows with training_label_chunks and iter_configs).

    Args: prompts_df (prompt_id), labels_df (prompt_id, split, risk_categories[, valid]); only
    split == 'train' prompts with a valid label get configs. `templates` overrides the packaged
    `template_kind` templates. Risk-free prompts: exact_match, safe and not_superset all give
    A = [], so under protocol 'cosalign' they get ONE config, mode 'safe' (k = 0), plus their
    superset draws; under 'paper' every mode's draws, and prompts with a risk outside
    taxonomy.SEEN get none (module docstring).
    Returns: a schemas.Configs frame (config_id = f"{prompt_id}-{mode}-{k}"), sorted by prompt_id,
    then mode in `modes` order (a risk-free prompt's 'safe' config sits where the first of its
    empty modes is), then k.
    """
    if "prompt_id" not in prompts_df.columns:
        raise InputError("<prompts>", "missing column", field="prompt_id")
    labels = _training_labels(labels_df.reset_index(drop=True), set(prompts_df["prompt_id"]))
    chunks = iter_configs([labels], modes=modes, configs_per_mode=configs_per_mode, seed=seed,
                          template_kind=template_kind, templates=templates, protocol=protocol,
                          taxonomy=taxonomy)
    out = pd.concat(list(chunks), ignore_index=True)
    return schemas.validate(out, "configs", "<configs>", taxonomy=taxonomy)


# --- generation configs (docs/paper-fidelity.md, 7d) ----------------------------------------------
# The authors generate responses under configs of their own (data_processing/add_spec_i_sysprompt.py,
# default setup `superset/4-not_superset/4`), drawn over every category occurring in the prompt
# labels except Other Harms (unseen ones included), and pair under fresh configs (one per mode, the
# four training categories). Under `protocol: paper` the configs stage writes both tables; under
# `cosalign` one set serves both, so the generation table is a byte copy of data/configs.parquet.
GENERATION_SETUP = (("superset", 4), ("not_superset", 4))  # (mode, draws per prompt)
GENERATION_TAG = "gen"  # in the draws' RNG identity and the config ids: independent of pairing's


def generation_pool(label_chunks, taxonomy: Taxonomy = PAPER) -> list[str]:
    """The allowable categories that occur in the risk sets of `label_chunks` (frames with
    risk_categories), in taxonomy order: the authors' `dataset_categories` without Other Harms."""
    found = set()
    for labels in label_chunks:
        for risks in labels["risk_categories"]:
            found.update(risks)
    return [c for c in taxonomy.canonical_order(found) if c in taxonomy.allowable]


def sample_generation_allowed(prompt_categories, mode: str, rng: np.random.Generator, pool,
                              taxonomy: Taxonomy = PAPER) -> list[str]:
    """A generation config's allowed set for a prompt risk set P, drawn over `pool` (taxonomy order),
    as the authors' get_allowed_harms_categories: with S = P without Other Harms,
    superset = S plus a random subset of pool \\ S of any size (zero included);
    not_superset = a random subset of S of size < |S| plus a random subset of pool \\ S, and [] for
    S = [] (a risk-free or Other-Harms-only prompt). Canonical order (7g)."""
    if mode not in ("superset", "not_superset"):
        raise ValueError(f"generation configs draw superset or not_superset, got {mode!r}")
    prompt = taxonomy.canonical_order(prompt_categories)  # also rejects unknown names
    risks = [c for c in prompt if c in taxonomy.allowable]
    missing = [c for c in risks if c not in pool]
    if missing:
        raise ValueError(f"prompt categories {missing} are not in the generation pool {list(pool)}")
    rest = [c for c in pool if c not in risks]
    if mode == "superset":
        return taxonomy.canonical_order(risks + _random_subset(rest, rng, 0, len(rest)))
    if not risks:
        return []
    extra = _random_subset(rest, rng, 0, len(rest))  # the authors draw the extras first
    kept = _random_subset(risks, rng, 0, len(risks) - 1)
    return taxonomy.canonical_order(kept + extra)


def _prompt_generation_configs(label, pool, seed, templates, taxonomy: Taxonomy) -> list[dict]:
    """The generation config rows of one training label, in GENERATION_SETUP order, then k."""
    rows = []
    for mode, draws in GENERATION_SETUP:
        for k in range(draws):
            rng = derive_rng(seed, GENERATION_TAG, label.prompt_id, mode, k)
            allowed = sample_generation_allowed(label.risk_categories, mode, rng, pool, taxonomy)
            rows.append(_config_row(f"{label.prompt_id}-{GENERATION_TAG}-{mode}-{k}", label.prompt_id, mode,
                                    allowed, templates, rng, taxonomy))
    return rows


def iter_generation_configs(label_chunks, pool, *, seed: int, template_kind: str = "train",
                            templates: list[dict] | None = None, taxonomy: Taxonomy = PAPER):
    """Yield the `protocol: paper` generation configs (schemas.GenerationConfigs columns, not yet
    validated) of each chunk of training labels, as iter_configs does for the pairing configs:
    every training prompt with a valid label gets them, also those `trains_under` skips (the
    authors generate for every prompt). `pool`: generation_pool over the same labels. Each draw
    is seeded by (seed, GENERATION_TAG, prompt_id, mode, k), so chunking changes nothing."""
    templates = templates if templates is not None else load_templates(template_kind)
    yielded = False
    for labels in label_chunks:
        rows = [row for label in labels.itertuples(index=False)
                for row in _prompt_generation_configs(label, pool, seed, templates, taxonomy)]
        if rows:
            yielded = True
            yield _configs_frame(rows)
    if not yielded:
        yield _configs_frame([])


def sample_generation_configs(prompts_df: pd.DataFrame, labels_df: pd.DataFrame, *, seed: int,
                              template_kind: str = "train", templates: list[dict] | None = None,
                              taxonomy: Taxonomy = PAPER) -> pd.DataFrame:
    """The `protocol: paper` generation configs in memory (the configs stage streams the same rows
    with write_generation_configs): 4 superset + 4 not_superset per training prompt with a valid
    label, over the categories occurring in those labels. A schemas.GenerationConfigs frame."""
    if "prompt_id" not in prompts_df.columns:
        raise InputError("<prompts>", "missing column", field="prompt_id")
    labels = _training_labels(labels_df.reset_index(drop=True), set(prompts_df["prompt_id"]))
    pool = generation_pool([labels], taxonomy)
    chunks = iter_generation_configs([labels], pool, seed=seed, template_kind=template_kind,
                                     templates=templates, taxonomy=taxonomy)
    out = pd.concat(list(chunks), ignore_index=True)
    return schemas.validate(out, "generation_configs", "<generation_configs>", taxonomy=taxonomy)


def write_generation_configs(protocol: str, out_path, *, configs_path, label_chunks, seed: int,
                             taxonomy: Taxonomy = PAPER, templates: list[dict] | None = None) -> str:
    """Write the table the responses stage generates under to `out_path`; returns a summary line.

    `paper`: the generation configs (iter_generation_configs), streamed; `label_chunks` is a
    callable returning a fresh training_label_chunks iterator, called twice (the category pool,
    then the draws), so memory holds one chunk. `cosalign`: a byte copy of `configs_path`, so the
    responses stay what they were before the split existed.
    """
    import shutil

    from cosalign.core.io import atomic_path

    validate_protocol(protocol)
    if protocol == "cosalign":
        with atomic_path(out_path) as tmp:
            shutil.copyfile(configs_path, tmp)
        return f"generation configs ({protocol} protocol): the pairing configs, {configs_path}"
    pool = generation_pool(label_chunks(), taxonomy)
    chunks = iter_generation_configs(label_chunks(), pool, seed=seed, templates=templates, taxonomy=taxonomy)
    rows = schemas.write_dataset(chunks, "generation_configs", out_path, taxonomy=taxonomy)
    return (f"generation configs ({protocol} protocol): {rows} "
            f"({' + '.join(f'{n} {m}' for m, n in GENERATION_SETUP)} per prompt) over {len(pool)} categories")
