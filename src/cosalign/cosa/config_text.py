"""Safety-config text: the paraphrased templates and rendering an allowed set into a system prompt.

A template says: be thorough and helpful; you may relax safety for these harm types (one bullet per
allowed category with its definition, or "None"); stay fully safe for everything else (CoSA paper,
arXiv 2410.08968, Sec. 4.1 and App. B). Training and held-out phrasings live in
resources/config_templates.yaml.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import jinja2
import yaml

from cosalign.cosa.taxonomy import PAPER, Taxonomy
from cosalign.core.io import InputError

TEMPLATE_KINDS = ("train", "heldout")

_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                            keep_trailing_newline=False)


@functools.lru_cache(maxsize=256)
def _compiled(text: str) -> jinja2.Template:
    return _JINJA.from_string(text)  # compiling dominates rendering; a run reuses ~10 templates


def _templates_path() -> Path:
    return Path(str(resources.files("cosalign") / "resources" / "config_templates.yaml"))


def load_templates(kind: str = "train", path: str | Path | None = None) -> list[dict]:
    """The `kind` ('train' or 'heldout') templates [{id, text}] from config_templates.yaml.

    `path` defaults to the packaged resource; each text must compile as a Jinja2 template.
    """
    if kind not in TEMPLATE_KINDS:
        raise ValueError(f"unknown template kind {kind!r}; known: {list(TEMPLATE_KINDS)}")
    path = Path(path) if path is not None else _templates_path()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "config templates file not found") from None
    except yaml.YAMLError as exc:
        raise InputError(path, f"invalid YAML: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != 1:
        raise InputError(path, "expected a mapping with version: 1", field="version")
    entries = data.get(kind)
    if not isinstance(entries, list) or not entries:
        raise InputError(path, "missing or empty list of templates", field=kind)
    seen_ids = set()
    out = []
    for i, entry in enumerate(entries):
        for key in ("id", "text"):
            if not isinstance(entry, dict) or not isinstance(entry.get(key), str) or not entry[key].strip():
                raise InputError(path, f"each template needs a non-empty string {key!r}", row=i, field=key)
        if entry["id"] in seen_ids:
            raise InputError(path, f"duplicate template id {entry['id']!r}", row=i, field="id")
        seen_ids.add(entry["id"])
        try:
            _JINJA.from_string(entry["text"])
        except jinja2.TemplateSyntaxError as exc:
            raise InputError(path, f"invalid Jinja2 template: {exc}", row=i, field="text") from None
        out.append({"id": entry["id"], "text": entry["text"]})
    return out


def render_config(template, allowed_names, taxonomy: Taxonomy = PAPER) -> str:
    """Render a template ({id, text} dict or text) with `allowed` = [{name, description}, ...].

    Names go in `taxonomy`'s order with its descriptions (data/taxonomy.json in the pipeline);
    Other Harms is never allowable.
    """
    text = template["text"] if isinstance(template, dict) else template
    names = taxonomy.canonical_order(allowed_names)
    bad = [n for n in names if n not in taxonomy.allowable]
    if bad:
        raise ValueError(f"{bad} can never be allowed by a config")
    allowed = [{"name": n, "description": taxonomy.by_name[n].description} for n in names]
    try:
        return _compiled(text).render(allowed=allowed).strip()
    except jinja2.UndefinedError as exc:
        tid = template.get("id", "?") if isinstance(template, dict) else "?"
        raise ValueError(f"template {tid!r} uses an undefined variable: {exc}") from None
