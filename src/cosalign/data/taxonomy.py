"""The taxonomy stage: the risk taxonomy every later stage reads, plus the clustering that would
derive it.

The taxonomy is `cosalign.cosa.taxonomy.build(extra_categories, descriptions)`: the paper's eight
categories (CoSA paper, arXiv 2410.08968, Sec. 4.1), any categories params add after reviewing the
clusters (before Other Harms, in params order), with descriptions overridden by
`taxonomy.descriptions`. As in the paper, prompts are embedded and clustered; each cluster is
mapped to the category of THIS taxonomy whose description it is closest to, or reported as a
candidate new category (with its top terms and examples) when nothing is close. The clusters are a
report for human review.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cosalign.core.io import InputError
from cosalign.core.params import PARAMS_FILE, bad
from cosalign.cosa import taxonomy
from cosalign.models.embedding import embed


def cluster(vectors: np.ndarray, *, method: str, seed: int, n_clusters: int, min_cluster_size: int,
            reduce_dims: int = 0) -> np.ndarray:
    """Cluster labels per row; -1 is noise (HDBSCAN only).

    HDBSCAN finds little but noise in 384 raw dimensions; the paper reduced with UMAP first. PCA to
    `reduce_dims` (seeded, from scikit-learn) plays that part here.
    """
    if reduce_dims and reduce_dims < vectors.shape[1]:
        from sklearn.decomposition import PCA

        vectors = PCA(n_components=reduce_dims, random_state=seed).fit_transform(vectors)
    if method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        return HDBSCAN(min_cluster_size=min_cluster_size, metric="euclidean", copy=True).fit_predict(vectors)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        k = min(n_clusters, len(vectors))
        return KMeans(n_clusters=k, random_state=seed, n_init=4).fit_predict(vectors)
    raise ValueError(f"unknown clustering method {method!r} (hdbscan or kmeans)")


def top_terms(texts: list[str], labels: np.ndarray, k: int = 6) -> dict[int, list[str]]:
    """The highest mean TF-IDF terms of each cluster (class-based TF-IDF, as BERTopic does)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(stop_words="english", min_df=2, max_features=5000)
    x = vec.fit_transform(texts)
    vocab = np.asarray(vec.get_feature_names_out())
    out = {}
    for c in sorted(set(labels.tolist()) - {-1}):
        mean = np.asarray(x[labels == c].mean(axis=0)).ravel()
        order = np.lexsort((vocab, -mean))[:k]  # ties broken by the term itself: deterministic
        out[c] = vocab[order].tolist()
    return out


@dataclass(frozen=True)
class TaxonomyParams:
    """params.yaml `taxonomy:`, the taxonomy stage (docs/method.md, "Risk taxonomy")."""
    seed: int  # k-means and PCA seed
    embedder: dict  # {name: minilm | sentence_transformers (+model) | openai (+base_url, model), batch_size}
    method: str  # kmeans for a few hundred prompts; hdbscan (+reduce_dims) for thousands
    n_clusters: int  # kmeans clusters
    min_cluster_size: int  # hdbscan
    match_threshold: float  # cosine to a category description needed to map a cluster to it
    reduce_dims: int = 0  # dimensions kept before hdbscan; 0 = none
    extra_categories: list = field(default_factory=list)  # categories added by hand after review (taxonomy.build)
    descriptions: dict = field(default_factory=dict)  # {category name: description} overriding the paper's
    source: str = "pipeline"  # pipeline | NS/cosalign-taxonomy@REV

    def __post_init__(self):
        if self.method not in ("kmeans", "hdbscan"):
            raise bad("taxonomy.method", f"must be kmeans or hdbscan, got {self.method!r}")
        if "name" not in self.embedder:
            raise bad("taxonomy.embedder.name", "missing value")
        for key in ("n_clusters", "min_cluster_size"):
            if getattr(self, key) < 1:
                raise bad(f"taxonomy.{key}", f"must be at least 1, got {getattr(self, key)!r}")
        try:  # build()'s messages start with the params key at fault
            taxonomy.build(self.extra_categories, self.descriptions)
        except ValueError as exc:
            raise InputError(PARAMS_FILE, str(exc)) from None

    def build_taxonomy(self) -> taxonomy.Taxonomy:
        """The taxonomy these params build: the paper's categories, the extras, the descriptions."""
        return taxonomy.build(self.extra_categories, self.descriptions)


def derive_taxonomy(prompts: pd.DataFrame, p: TaxonomyParams, tax: taxonomy.Taxonomy | None = None,
                    precision: str = "fp32") -> dict:
    """Build data/taxonomy.json from the prompts and the `taxonomy` params section.

    `tax` is the taxonomy built from the section (default: `taxonomy.build` of its
    extra_categories and descriptions, whose errors name the params key at fault); `precision` is
    the resolved top-level precision the local embedding model runs in (cosalign.core.precision).
    """
    if tax is None:
        tax = p.build_taxonomy()
    texts = prompts["prompt"].tolist()
    emb = p.embedder
    vectors = embed(texts, name=emb["name"], model=emb.get("model"), batch_size=emb.get("batch_size", 64),
                    base_url=emb.get("base_url"), api_key_env=emb.get("api_key_env", "OPENAI_API_KEY"),
                    precision=precision)
    names = list(tax.names)
    anchors = embed([f"{c.name}: {c.description}" for c in tax.categories], name=emb["name"],
                    model=emb.get("model"), base_url=emb.get("base_url"),
                    api_key_env=emb.get("api_key_env", "OPENAI_API_KEY"), precision=precision)
    labels = cluster(vectors, method=p.method, seed=p.seed, n_clusters=p.n_clusters,
                     min_cluster_size=p.min_cluster_size, reduce_dims=p.reduce_dims)
    terms = top_terms(texts, labels)
    clusters, coverage, candidates = [], {n: 0 for n in names}, []
    for c in sorted(set(labels.tolist()) - {-1}):
        members = np.flatnonzero(labels == c)
        centroid = vectors[members].mean(axis=0)
        centroid /= np.linalg.norm(centroid)
        sims = anchors @ centroid
        best = int(np.argmax(sims))
        # Examples: the members closest to the centroid, a reviewer's quickest read of a cluster.
        closest = members[np.argsort(-(vectors[members] @ centroid), kind="stable")[:3]]
        entry = {"cluster": int(c), "size": int(len(members)), "top_terms": terms.get(c, []),
                 "examples": [texts[i] for i in closest],
                 "nearest_category": names[best], "similarity": round(float(sims[best]), 4)}
        if sims[best] >= p.match_threshold:
            entry["category"] = names[best]
            coverage[names[best]] += int(len(members))
        else:
            entry["category"] = None
            candidates.append(entry["cluster"])
        clusters.append(entry)
    clusters.sort(key=lambda e: (-e["size"], e["cluster"]))
    n_noise = int((labels == -1).sum())
    return {
        "version": 1,
        "categories": tax.as_dicts(),
        "derivation": {
            "n_prompts": len(texts), "embedder": emb["name"], "method": p.method,
            "n_clusters": len(clusters), "noise_prompts": n_noise,
            "coverage": coverage,
            "mapped_share": round(sum(coverage.values()) / max(len(texts), 1), 4),
            "candidate_clusters": candidates,
            "clusters": clusters,
        },
    }
