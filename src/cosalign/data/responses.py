"""The responses stage: several replies per (config, prompt) from a generator.

For each training prompt: one reply set per generation config plus one under a generic system
prompt (as the paper adds a plain answer), `samples` replies each. The stage passes
data/generation_configs.parquet: under `protocol: paper` the authors' 4 superset + 4 not_superset
configs per prompt over every allowable category, under `cosalign` the pairing configs themselves
(data.configs.write_generation_configs; docs/paper-fidelity.md, 7d).

`template_responses` adds templated replies per prompt, marked source=template, so the judge and
the pairing have opposite behaviours to separate: `refusal` (a polite refusal) and `compliance`
(an answer that restates the request). The tiny profile's random model writes noise and needs
both; SmolLM2-135M almost never refuses (the paper drew refusals from its many configs on a
strong model), so the default profile adds the refusal.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pandas as pd

from cosalign.core import paths
from cosalign.core.params import bad
from cosalign.cosa import schemas
from cosalign.models.chat import messages
from cosalign.models.generation import GenerationSettings, make_generator
from cosalign.core.workqueue import fingerprint, run_batches

GENERIC_SYSTEM_PROMPT = "You are a helpful assistant."
TEMPLATES = {
    "refusal": "I'm sorry, but I can't help with that request.",
    "compliance": "Sure. Here is a complete answer to your request: {prompt}",
}


def response_jobs(prompts: pd.DataFrame, configs: pd.DataFrame, *, generic: bool) -> pd.DataFrame:
    """One job per (prompt, config) to generate for, in a fixed order."""
    text = dict(zip(prompts["prompt_id"], prompts["prompt"]))
    jobs = configs[["prompt_id", "config_id", "system_prompt"]].copy()
    if generic:
        ids = sorted(configs["prompt_id"].unique())
        jobs = pd.concat([jobs, pd.DataFrame({"prompt_id": ids, "config_id": [f"{i}-generic" for i in ids],
                                              "system_prompt": GENERIC_SYSTEM_PROMPT})])
    jobs["prompt"] = jobs["prompt_id"].map(text)
    return jobs.sort_values(["prompt_id", "config_id"], kind="stable").reset_index(drop=True)


def template_rows(prompts: pd.DataFrame, prompt_ids, kinds: list[str]) -> pd.DataFrame:
    unknown = [k for k in kinds if k not in TEMPLATES]
    if unknown:
        raise ValueError(f"responses.template_responses: unknown {unknown} (known: {sorted(TEMPLATES)})")
    text = dict(zip(prompts["prompt_id"], prompts["prompt"]))
    rows = []
    for pid in sorted(set(prompt_ids)):
        for sample, kind in enumerate(kinds):
            reply = TEMPLATES[kind].format(prompt=text[pid])
            rows.append({"response_id": f"{pid}-template-{sample}", "prompt_id": pid,
                         "config_id": f"{pid}-template", "sample": sample, "response": reply,
                         "generator": "template", "source": "template"})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class ResponsesParams:
    """params.yaml `responses:`, the responses stage (docs/method.md)."""
    backend: str  # transformers | vllm (models.generation)
    model_name: str  # recorded in the `generator` column
    seed: int  # sampling seed
    samples: int  # replies per (config, prompt)
    max_new_tokens: int
    temperature: float
    top_p: float
    batch_size: int  # sequences generated together
    work_batch_size: int  # jobs per resumable checkpoint (core.workqueue)
    generic_system_prompt: bool = True  # also one reply under a plain system prompt, as the paper does
    template_responses: list = field(default_factory=list)  # templated replies per prompt (TEMPLATES)
    backend_options: dict = field(default_factory=dict)  # generator options (dtype, vLLM engine args)
    source: str = "pipeline"  # pipeline | NS/cosalign-responses@REV

    def __post_init__(self):
        for key in ('samples', 'max_new_tokens', 'batch_size', 'work_batch_size'):
            if getattr(self, key) < 1:
                raise bad(f"responses.{key}", f"must be at least 1, got {getattr(self, key)!r}")


def generate_responses(prompts: pd.DataFrame, configs: pd.DataFrame, p: ResponsesParams,
                       model_dir: str, precision: str = "fp32") -> pd.DataFrame:
    """Run the responses stage from its params section; returns the validated frame.
    `precision`: the resolved top-level precision (cosalign.core.precision); bf16 loads the
    transformers model in bfloat16 and marks the generator column `...@bf16`."""
    from cosalign.core.precision import generator_options, label
    options = generator_options(p.backend, p.backend_options, precision)
    if options != dict(p.backend_options or {}):
        p = dataclasses.replace(p, backend_options=options)  # also keys the resume checkpoints
    jobs = response_jobs(prompts, configs, generic=p.generic_system_prompt)
    settings = GenerationSettings(max_new_tokens=p.max_new_tokens, temperature=p.temperature,
                                  top_p=p.top_p, batch_size=p.batch_size, seed=p.seed)
    n = p.samples
    generator = None

    def work(batch: pd.DataFrame) -> pd.DataFrame:
        nonlocal generator
        if generator is None:  # loaded lazily: a fully checkpointed re-run loads no model
            generator = make_generator(p.backend, model_dir, **p.backend_options)
        chats = [messages(s, q) for s, q in zip(batch["system_prompt"], batch["prompt"])]
        replies = generator.generate(chats, settings, n=n, progress=False)
        rows = []
        for job, texts in zip(batch.itertuples(index=False), replies):
            for sample, reply in enumerate(texts):
                rows.append({"response_id": f"{job.config_id}-s{sample}", "prompt_id": job.prompt_id,
                             "config_id": job.config_id, "sample": sample, "response": reply,
                             "generator": f"{p.backend}:{p.model_name}{label(options)}",
                             "source": "model"})
        return pd.DataFrame(rows)

    key = fingerprint(dataclasses.asdict(p), jobs.to_dict("records"), model_fingerprint(model_dir))
    out = run_batches(jobs, work, stage="responses", key=key, batch_size=p.work_batch_size,
                      desc="responses")
    if p.template_responses:
        out = pd.concat([out, template_rows(prompts, jobs["prompt_id"], p.template_responses)],
                        ignore_index=True)
    out = out.sort_values(["prompt_id", "config_id", "source", "sample"], kind="stable").reset_index(drop=True)
    return schemas.validate(out, "responses", paths.RESPONSES)


def model_fingerprint(model_dir: str) -> str:
    """The checkpoint's identity for resuming: sha256 of every file (a second or two for 135M)."""
    from pathlib import Path

    from cosalign.models.base_model import sha256_file

    return fingerprint([(f.name, sha256_file(f)) for f in sorted(Path(model_dir).iterdir()) if f.is_file()])
