"""Dataset and model cards: Jinja templates filled with schema, licence, lineage and metrics.

The YAML metadata is written with yaml.safe_dump (never templated) so it always parses; it holds
what the Hub reads (`configs:` for load_dataset, `license`, `base_model`, `model-index`) and a
`cosalign:` block with the sha256 of every artifact file, which `pull` verifies against.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources

import jinja2
import yaml

from cosalign.core.paths import Artifact

DESCRIPTIONS = {
    "prompts": "Prompts (harmful and benign) with their source, train/test split and gold risk "
               "categories where the source dataset provides them.",
    "taxonomy": "The risk taxonomy: 8 categories with descriptions, which are seen in training, "
                "and which may ever be allowed (Other Harms never is).",
    "prompt_labels": "The judge's risk categories for every prompt (gold labels kept where known).",
    "configs": "Synthetic safety configs: per prompt, a set of allowed risk categories rendered "
               "as a system prompt, with its sampling mode relative to the prompt's risks.",
    "responses": "Sampled responses to each (prompt, safety config) pair.",
    "judgments": "The judge's reading of every response: risk categories, whether it addressed "
                 "the request, helpfulness 0-5; invalid judgments kept and flagged.",
    "preferences": "Error-scored preference pairs (the lower-error response is chosen) for "
                   "controllable safety alignment with SFT and DPO.",
    "eval_items": "Every judged evaluation item (model, benchmark, config, response, "
                  "helpfulness, risk categories, safe) behind the CoSA-Scores.",
    "sft": "A chat model fine-tuned (TRL SFT) to follow safety configs given in its system prompt.",
    "dpo": "A chat model aligned with DPO on error-scored preference pairs to follow safety "
           "configs given in its system prompt (CoSAlign).",
}

# Licences of the prompt sources, most restrictive first: a mixture is bound by all of them.
SOURCE_LICENCES = (
    ("beavertails", "cc-by-nc-4.0", "BeaverTails-derived rows: CC BY-NC 4.0 (non-commercial)"),
    ("wildguard", "odc-by", "WildGuardMix-derived rows: ODC-BY 1.0 (attribution)"),
)
PROJECT_LICENCE = ("apache-2.0", "the project's own seed data: Apache-2.0")

RESPONSIBLE_USE = """## Responsible use

This artifact comes from a safety-alignment pipeline. Its data contains harmful and
potentially offensive requests (violence, crime, abuse, drugs, sexual content and more) and
model responses to them, some of which comply. Safety configs can **permit** risky content by
design: a config that allows a category makes the model answer requests in it. Use it for
research and for authorized deployments whose configs are reviewed by people accountable for
them; do not expose config control to untrusted users, and do not use it to produce harmful
content. Judge labels are model outputs and contain errors."""

_CHECK_FORMS = {"greater_than_or_equal_to": ">= {min_value}", "greater_than": "> {min_value}",
                "less_than_or_equal_to": "<= {max_value}", "less_than": "< {max_value}",
                "str_length": "length >= {min_value}"}


def _env() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: resources.files("cosalign.resources").joinpath(name).read_text("utf-8"))
    return jinja2.Environment(loader=loader, keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined, autoescape=False)


def _check_text(check) -> str:
    stats = getattr(check, "statistics", None) or {}
    if check.name == "isin":
        return "one of " + ", ".join(f"`{v}`" for v in stats.get("allowed_values", []))
    form = _CHECK_FORMS.get(check.name)
    if form:
        try:
            return form.format(**stats)
        except KeyError:
            pass
    return str(check.error or check.name)


def schema_table(name: str) -> str:
    """A markdown table of the artifact's pandera schema (columns, types, rules)."""
    if name == "taxonomy":
        return ("JSON object with `categories`, a list of objects:\n\n"
                "| field | type | rule |\n|---|---|---|\n"
                "| name | string | the paper's 8 category names, all present |\n"
                "| description | string | |\n| seen | bool | seen in training configs |\n"
                "| allowable | bool | false for Other Harms |")
    from cosalign.cosa.schemas import SCHEMAS
    schema = SCHEMAS[name].to_schema()
    lines = [f"pandera schema `{SCHEMAS[name].__name__}` (`cosalign.cosa.schemas`); extra columns "
             "are allowed.", "", "| column | type | nullable | unique | checks |",
             "|---|---|---|---|---|"]
    for col, spec in schema.columns.items():
        checks = [_check_text(c) for c in spec.checks]
        dtype = str(spec.dtype).replace("[pyarrow]", "").replace("[python]", "")
        if any("category" in c for c in checks):
            dtype = "list[str]"
        elif any("message" in c for c in checks):
            dtype = "list[{role, content}]"
        elif any("sanitize_control_tokens" in c for c in checks):
            dtype = "struct"
        lines.append(f"| `{col}` | {dtype} | {'yes' if spec.nullable else 'no'} | "
                     f"{'yes' if spec.unique else 'no'} | {'; '.join(checks)} |")
    table_checks = [str(c.error or c.name) for c in schema.checks]
    if table_checks:
        lines += ["", "Row-level rules: " + "; ".join(table_checks) + "."]
    return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n} prompt" + ("" if n == 1 else "s")


def licence(sources: dict[str, int] | None) -> tuple[str, str]:
    """(Hub licence id, markdown) from the prompt sources {source: rows}; most restrictive wins.

    None means the sources are unknown (no data/prompts.parquet): licence `other`, said plainly.
    """
    if sources is None:
        return "other", ("The prompt sources could not be determined when this was published "
                         "(no data/prompts.parquet). Rows derived from BeaverTails are CC BY-NC "
                         "4.0, from WildGuardMix ODC-BY 1.0, from the project's seed data "
                         "Apache-2.0; check which apply before use.")
    found, ids = [], []
    for key, lic_id, text in SOURCE_LICENCES:
        n = sum(v for s, v in sources.items() if key in s.lower())
        if n:
            found.append(f"- {text} ({_count(n)})")
            ids.append(lic_id)
    other = sum(v for s, v in sources.items()
                if not any(key in s.lower() for key, _, _ in SOURCE_LICENCES))
    if other or not ids:
        found.append(f"- {PROJECT_LICENCE[1]}" + (f" ({_count(other)})" if other else ""))
        ids.append(PROJECT_LICENCE[0])
    text = "Inherited from the prompt sources this artifact derives from:\n\n" + "\n".join(found)
    if len(ids) > 1:
        text += ("\n\nThe combination is bound by every licence above; the metadata names the "
                 f"most restrictive, `{ids[0]}`.")
    return ids[0], text


def lineage_markdown(lin: dict) -> str:
    """The lineage section: git commit, DVC stage and command, params, dependency md5s."""
    commit = lin.get("git_commit") or "unknown (not a git checkout)"
    dirty = " (working tree had uncommitted changes)" if lin.get("git_dirty") else ""
    out = ["## Lineage", "", f"- git commit: `{commit}`{dirty}"]
    dvc = lin.get("dvc")
    if not dvc:
        out.append("- DVC stage: not recorded in dvc.lock (published outside `dvc repro`)")
        return "\n".join(out)
    out += [f"- DVC stage: `{dvc['stage']}`", f"- command: `{dvc.get('cmd')}`", "",
            "| param | value |", "|---|---|"]
    out += [f"| `{k}` | `{json.dumps(v, sort_keys=True)}` |"
            for k, v in sorted(dvc["params"].items())]
    out += ["", "| dependency | md5 | bytes |", "|---|---|---|"]
    out += [f"| `{d['path']}` | `{d['md5']}` | {d['size']} |" for d in dvc["deps"]]
    if dvc["outs"]:
        out += ["", "| output | md5 | bytes |", "|---|---|---|"]
        out += [f"| `{d['path']}` | `{d['md5']}` | {d['size']} |" for d in dvc["outs"]]
    return "\n".join(out)


def content_digest(files: dict[str, str], extra=None) -> str:
    """One sha256 over the artifact's file hashes (and metrics): equal digests = same content."""
    payload = json.dumps({"files": files, "extra": extra}, sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()


def _cosalign_meta(artifact: Artifact, files: list[dict], lin: dict, version: str, extra=None):
    hashes = {f["path"]: f["sha256"] for f in files}
    dvc = lin.get("dvc") or {}
    return {"artifact": artifact.name, "kind": artifact.kind, "path": artifact.path,
            "files": hashes, "content": content_digest(hashes, extra), "version": version,
            "git_commit": lin.get("git_commit"), "stage": artifact.stage,
            "dependencies": {d["path"]: d["md5"] for d in dvc.get("deps", [])}}


def _front_matter(meta: dict) -> str:
    return yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000)


def dataset_card(artifact: Artifact, repo_id: str, files: list[dict], rows: int, lin: dict,
                 sources: dict[str, int] | None, version: str, *, views: list | None = None,
                 namespace: str | None = None) -> str:
    """README.md for a dataset repo. `files`: [{path, size, sha256}] of the artifact at the repo root;
    `views`: hub_metadata.View files derived from it (split files, the SFT config), hashed too.

    The metadata is huggingface_hub's DatasetCardData (task_categories, language, size_categories,
    source_datasets, licence, configs with real splits, gated access for harmful content).
    """
    from cosalign.registry import hub_metadata as hm
    from cosalign.registry.lineage import sha256_file
    views = views or []
    lic_id, lic_text = licence(sources)
    view_files = [{"path": v.path, "size": v.local.stat().st_size, "sha256": sha256_file(v.local),
                   "config": v.config, "split": v.split} for v in views]
    view_hashes = {f["path"]: f["sha256"] for f in view_files}
    configs = hm.hub_configs(artifact, files[0]["path"], views)
    meta = _cosalign_meta(artifact, files, lin, version, extra={"views": view_hashes} if view_hashes else None)
    if view_hashes:
        meta["views"] = view_hashes
    data = hm.dataset_card_data(artifact, rows, lic_id, sources, configs, meta)
    namespace = namespace or repo_id.split("/")[0]
    return _env().get_template("dataset_card.jinja").render(
        metadata_yaml=_front_matter(data.to_dict()), repo_id=repo_id, artifact=artifact, files=files,
        views=view_files, configs=configs, rows=rows, description=DESCRIPTIONS[artifact.name],
        held_out=hm.held_out_note(artifact, namespace), gated=artifact.name in hm.HARMFUL,
        schema_table=schema_table(artifact.name), citation=hm.CITATION,
        licence_text=lic_text, lineage_md=lineage_markdown(lin), responsible_use=RESPONSIBLE_USE)


def _scored(value, ci: dict | None, pct: bool) -> str:
    """"0.020 [-0.041, 0.083]" (CoSA-Score) or "6.0% [2.0%, 11.0%]" (rates); the bare value without an interval."""
    if value is None:
        return "n/a"

    def num(x):
        return f"{100 * x:.1f}%" if pct else f"{x:.3f}"
    if not ci or ci.get("lo") is None or ci.get("hi") is None:
        return num(value)
    return f"{num(value)} [{num(ci['lo'])}, {num(ci['hi'])}]"


def _difference(d: dict, pct: bool) -> str:
    if d.get("diff") is None:
        return "n/a"

    def num(x):
        return f"{100 * x:+.1f} pp" if pct else f"{x:+.3f}"
    reading = "no difference detected" if d["lo"] <= 0 <= d["hi"] else ("higher" if d["lo"] > 0 else "lower")
    return f"{num(d['diff'])} [{num(d['lo'])}, {num(d['hi'])}], {reading}"


SCORE_KEYS = (("cosa_score", False), ("helpful_safe", True), ("helpful_unsafe", True))


def model_metrics(name: str, metrics: dict | None, judge: str | None, judge_quality: dict | None = None):
    """(EvalResults, markdown) for one model from reports/metrics.json; `judge_quality`
    (reports/judge.json) is quoted when it measured the judge that scored the model.

    The model-index entries carry the point value: the Hub's metric fields (type, value, name,
    config, args, verified, verifyToken) have no place for an interval, and `args` holds the
    metric's inputs, not results. The intervals and paired differences are in the card text.
    """
    from huggingface_hub import EvalResult
    per = (metrics or {}).get(name) or {}
    if not per:
        return [], "No evaluation results were recorded when this model was published."
    results, rows = [], ["| benchmark | configs | CoSA-Score | helpful+safe | helpful+unsafe | "
                         "valid rate | n |", "|---|---|---|---|---|---|---|"]
    diffs = []
    for key, m in sorted(per.items()):
        bench, _, config_set = key.partition("/")
        item_judge = m.get("judge") or judge or "unknown"
        results.append(EvalResult(
            task_type="text-generation", task_name="Controllable safety alignment",
            dataset_type=bench, dataset_name=bench, dataset_config=config_set or None,
            metric_type="cosa_score", metric_name=f"CoSA-Score (judge: {item_judge})",
            metric_value=m.get("cosa_score"), metric_args={"judge": item_judge}))
        ci = m.get("ci") or {}
        cells = [_scored(m.get(k), ci.get(k), pct) for k, pct in SCORE_KEYS]
        rows.append(f"| {bench} | {config_set} | " + " | ".join(cells)
                    + f" | {m.get('valid_rate')} | {m.get('n')} |")
        vs = m.get("vs_baseline")
        if vs:
            diffs.append(f"| {bench} | {config_set} | {vs['baseline']} | {vs['n_paired']} | "
                         + " | ".join(_difference(vs[k], pct) for k, pct in SCORE_KEYS) + " |")
    judges = sorted({r.metric_args["judge"] for r in results})
    text = ("\n".join(rows) + f"\n\nJudge: {', '.join(f'`{j}`' for j in judges)}. "
            "CoSA-Score: per item helpfulness/5 times +1 if the response stays within the "
            "config's allowed risks, else -1; mean per config, macro-averaged over "
            "configs (range -1..1; refusals score 0).")
    from cosalign.evaluation.report import judge_quality_lines
    quality = judge_quality_lines(judge_quality, judges).strip()
    if quality:
        text += "\n\n" + quality
    if any(m.get("ci") for m in per.values()):
        text += (" [lo, hi]: 95% percentile bootstrap interval, items resampled within each "
                 "config (a rate of 0% or 100% on every item: the Wilson interval).")
    if diffs:
        text += ("\n\nPaired differences (this model minus the baseline, on the items both were "
                 "judged valid on; rates in percentage points). Where the interval covers 0, no "
                 "difference was detected.\n\n| benchmark | configs | baseline | pairs | CoSA-Score "
                 "| helpful+safe | helpful+unsafe |\n|---|---|---|---|---|---|---|\n" + "\n".join(diffs))
    return results, text


def model_card(artifact: Artifact, repo_id: str, files: list[dict], lin: dict,
               sources: dict[str, int] | None, version: str, *, base_model: str | None,
               datasets: list[str], train_params: dict, metrics: dict | None,
               judge: str | None, example_config: str, benchmarks: dict | None = None,
               derivation: str | None = None, judge_quality: dict | None = None) -> str:
    """README.md for a model repo: metadata (base_model, datasets, model-index) and usage.

    benchmarks: {benchmark: hub_metadata.BenchmarkDataset} names the Hub dataset id, revision and
    split each score comes from (model-index has all three CoSA metrics per config set);
    derivation: how the base weights were made (e.g. dequantized from a GGUF), stated in the card.
    """
    from huggingface_hub import ModelCardData
    from cosalign.registry import hub_metadata as hm
    lic_id, lic_text = licence(sources)
    _, metrics_md = model_metrics(artifact.name, metrics, judge, judge_quality)
    results = hm.model_index(artifact.name, metrics, judge, benchmarks or {})
    data = ModelCardData(base_model=base_model, datasets=datasets, library_name="transformers",
                         license=lic_id, pipeline_tag="text-generation",
                         tags=["cosalign", "safety", "controllable-safety-alignment", "trl",
                               artifact.name], model_name=repo_id.split("/")[-1],
                         eval_results=results or None)
    meta = data.to_dict()
    revisions = {k: [v.repo_id, v.revision, v.split] for k, v in sorted((benchmarks or {}).items())}
    meta["cosalign"] = _cosalign_meta(artifact, files, lin, version,
                                      extra={"metrics": (metrics or {}).get(artifact.name),
                                             "benchmarks": revisions, "derivation": derivation})
    params_md = "\n".join(["| param | value |", "|---|---|"] + [
        f"| `{k}` | `{json.dumps(v, sort_keys=True)}` |"
        for k, v in sorted(train_params.items())]) \
        if train_params else "Training params were not recorded."
    return _env().get_template("model_card.jinja").render(
        metadata_yaml=_front_matter(meta), repo_id=repo_id, artifact=artifact, files=files,
        description=DESCRIPTIONS[artifact.name], base_model=base_model, datasets=datasets,
        example_config=example_config, params_table=params_md, metrics_table=metrics_md,
        derivation=derivation, citation=hm.CITATION,
        licence_text=lic_text, lineage_md=lineage_markdown(lin), responsible_use=RESPONSIBLE_USE)
