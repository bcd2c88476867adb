"""Reviewed safety configs as registry artifacts: their lifecycle from draft to retired.

A config is one YAML file, `<configs_dir>/<id>/v<version>.yaml`: content (id, version, kind and
either `allowed_categories` + `template` or free-form `text`) plus its record (owner, status,
reviews, approval, scores). Lifecycle: `new` writes a draft; `review` adds notes and verdicts;
`approve` (by someone other than the owner, after an approving review of the current content by
someone other than the owner, with no `changes` verdict since) records the reviewer and
`approved_hash` = the content hash; `retire` ends it.

The content hash covers the content fields *and the system prompt they render to*, so a change of
template wording or of a category's description (the taxonomy, data/taxonomy.json beside the
registry folder; see `registry_taxonomy`) changes it as surely as an edited category list. An
approved version's content never changes: a file whose current content hash differs from
`approved_hash` is "modified after approval", refused by `cosalign serve` and flagged by
list/show; the fix is to restore the approved content or to approve a new version
(`cosalign config new ID --from ID@N`). A file can be rewritten by hand, hashes included; the
API keys (cosalign.serving.keys) therefore pin the content hash they were issued for, and that
binding, not the file, is what the server trusts (docs/safety-configs.md, "Keys").
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo,
                      field_validator)

from cosalign.core import yaml_unique
from cosalign.core.io import InputError, write_text
from cosalign.cosa import config_text, taxonomy

DEFAULT_TEMPLATE = "heldout-01"  # held-out phrasing: never seen in training
SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
PASSTHROUGH = "passthrough"  # key binding for trusted harnesses (judges) that send their own system turn
_REF = re.compile(r"^(?P<id>[a-z0-9]+(?:-[a-z0-9]+)*)(?:@v?(?P<version>[0-9]+))?$")


def same_person(a: str, b: str) -> bool:
    """Whether two reviewer/owner names are the same person's: compared after NFKC, case folding,
    removing zero-width and other format characters (Unicode category Cf) and collapsing spaces,
    so "Alice", "alice" and "al\u200bice" are one name."""
    return _name_key(a) == _name_key(b)


def _name_key(name: str) -> str:
    name = unicodedata.normalize("NFKC", name)
    name = "".join(ch for ch in name if unicodedata.category(ch) != "Cf")
    return " ".join(unicodedata.normalize("NFKC", name.casefold()).split())


def registry_taxonomy(configs_dir) -> taxonomy.Taxonomy:
    """The taxonomy the configs in `configs_dir` are rendered with: `data/taxonomy.json` in the
    folder above the registry (the repository root for the default `safety_configs`) when it
    exists, the taxonomy stage's output with any edited descriptions; else the paper's
    defaults (`taxonomy.PAPER`)."""
    path = Path(configs_dir).resolve().parent / "data" / "taxonomy.json"
    try:
        st = path.stat()
    except FileNotFoundError:
        return taxonomy.PAPER
    return _load_taxonomy(str(path), st.st_ino, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _load_taxonomy(path: str, inode: int, mtime_ns: int, size: int) -> taxonomy.Taxonomy:
    return taxonomy.Taxonomy.load(path)  # cached per file version: the server asks per request


def now_utc() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _as_str_time(value):
    # YAML turns an unquoted ISO timestamp into a datetime; keep timestamps as the strings we wrote.
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


class Review(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reviewer: str = Field(min_length=1)
    verdict: Literal["approve", "changes", "comment"]
    note: str = ""
    at: str
    content_hash: str  # the content this review looked at

    _time = field_validator("at", mode="before")(_as_str_time)


class ScoreRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    benchmark: str = Field(min_length=1)
    evaluated_at: str
    metrics: dict[str, float]
    content_hash: str  # scores describe this content; stale if the config changed since

    _time = field_validator("evaluated_at", mode="before")(_as_str_time)


class EvalPrompt(BaseModel):
    """A CoSApien-style test prompt written with the config: is the request allowed by it?"""
    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: str = Field(min_length=1)
    type: Literal["allowed", "disallowed", "partially allowed"]


class SafetyConfig(BaseModel):
    """One config version. Validate with `context={"taxonomy": tax}` to check categories against
    (and render with) a taxonomy other than the paper's; `load_file` does so."""
    model_config = ConfigDict(extra="forbid")
    _taxonomy: taxonomy.Taxonomy = PrivateAttr(default=taxonomy.PAPER)

    # -- content: covered by content_hash -----------------------------------------------
    id: str = Field(pattern=SLUG, max_length=64, strict=True)
    version: int = Field(ge=1, strict=True)
    kind: Literal["categorical", "freeform"]
    allowed_categories: list[str] | None = Field(default=None, validate_default=True)
    # categorical: the config_templates.yaml template that phrases the list
    template: str | None = Field(default=None, validate_default=True)
    text: str | None = Field(default=None, validate_default=True)  # freeform: the system prompt
    content_hash: str = ""  # as of the last write by the tool (informative; checks recompute it)
    # Taxonomy.fingerprint() of the taxonomy the tool rendered with at that write (informative:
    # says why a hash changed when only data/taxonomy.json did)
    taxonomy_fingerprint: str = ""
    # -- record ---------------------------------------------------------------------------
    owner: str = Field(min_length=1, strict=True)
    status: Literal["draft", "approved", "retired"] = "draft"
    reviewer: str | None = None
    approved_at: str | None = None
    approved_hash: str | None = Field(default=None, validate_default=True)
    retired_at: str | None = None
    reviews: list[Review] = []
    scores: dict[str, ScoreRecord] = {}
    eval_prompts: list[EvalPrompt] = []

    _times = field_validator("approved_at", "retired_at", mode="before")(_as_str_time)

    @field_validator("allowed_categories")
    @classmethod
    def _categories(cls, value, info: ValidationInfo):
        kind = info.data.get("kind")
        if value is None:
            if kind == "categorical":
                raise ValueError("a categorical config needs allowed_categories (a list, may be empty)")
            return value
        if kind == "freeform":
            raise ValueError("a freeform config has no allowed_categories (use kind: categorical)")
        tax = (info.context or {}).get("taxonomy") or taxonomy.PAPER
        bad = [v for v in value if v not in tax.names]
        if bad:
            raise ValueError(f"unknown risk category {bad[0]!r}; known: {list(tax.names)}")
        never = [v for v in value if v not in tax.allowable]
        if never:
            raise ValueError(f"{never[0]!r} can never be allowed by a config")
        if len(set(value)) != len(value):
            raise ValueError("categories must be distinct")
        return tax.canonical_order(value)

    @field_validator("template")
    @classmethod
    def _template(cls, value, info: ValidationInfo):
        if info.data.get("kind") == "freeform":
            if value is not None:
                raise ValueError("a freeform config has no template")
            return value
        return value or DEFAULT_TEMPLATE

    @field_validator("text")
    @classmethod
    def _text(cls, value, info: ValidationInfo):
        if info.data.get("kind") == "categorical" and value is not None:
            raise ValueError("a categorical config has no text (use kind: freeform)")
        if info.data.get("kind") == "freeform" and (not isinstance(value, str) or not value.strip()):
            raise ValueError("a freeform config needs a non-empty text")
        return value

    @field_validator("approved_hash")
    @classmethod
    def _approval(cls, value, info: ValidationInfo):
        if info.data.get("status") == "approved" and not (value and info.data.get("reviewer")):
            raise ValueError("an approved config needs reviewer and approved_hash")
        return value

    @classmethod
    def build(cls, data: dict, tax: taxonomy.Taxonomy | None = None) -> "SafetyConfig":
        """Validate `data` against `tax` (default: the paper's) and keep `tax` for rendering."""
        tax = tax or taxonomy.PAPER
        cfg = cls.model_validate(data, context={"taxonomy": tax})
        cfg._taxonomy = tax
        return cfg

    def taxonomy_used(self) -> taxonomy.Taxonomy:
        """The taxonomy this config was validated against and renders with."""
        return self._taxonomy

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def content(self) -> dict:
        """The fields a review approves (what `new --from` copies)."""
        out = {"id": self.id, "version": self.version, "kind": self.kind}
        if self.kind == "categorical":
            out.update(allowed_categories=list(self.allowed_categories), template=self.template)
        else:
            out["text"] = self.text
        return out

    def compute_hash(self) -> str:
        """sha256 of the content fields plus the rendered system prompt: what the model is told,
        template wording and category descriptions included."""
        hashed = dict(self.content(), system_prompt=system_prompt(self))
        canonical = json.dumps(hashed, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def state(self) -> str:
        """draft | approved | modified-after-approval | retired."""
        if self.status == "approved" and self.compute_hash() != self.approved_hash:
            return "modified-after-approval"
        return self.status

    def fingerprint(self) -> str:
        return f"{self.id}@{self.version}:{self.compute_hash()[:12]}"


# -- rendering -----------------------------------------------------------------------------

def system_prompt(cfg: SafetyConfig) -> str:
    """The system turn a model receives for `cfg` (the one place that renders a config): the
    freeform text, or the categorical list rendered with its template and the descriptions of
    the config's taxonomy (CoSA, arXiv 2410.08968, Sec. 4.1)."""
    if cfg.kind == "freeform":
        return cfg.text
    template = _templates().get(cfg.template)
    if template is None:
        raise InputError(f"config {cfg.ref}", f"unknown template {cfg.template!r}", field="template")
    return config_text.render_config(template, cfg.allowed_categories, cfg._taxonomy)


@functools.lru_cache(maxsize=1)
def _templates() -> dict[str, dict]:
    """Every packaged template by id (the packaged file does not change while a process runs)."""
    return {t["id"]: t for kind in config_text.TEMPLATE_KINDS for t in config_text.load_templates(kind)}


# -- files -----------------------------------------------------------------------------------

def parse_ref(ref: str) -> tuple[str, int | None]:
    """'game-studio@2' or 'game-studio@v2' -> ('game-studio', 2); 'game-studio' -> (.., None)."""
    m = _REF.match(ref.strip())
    if not m:
        raise ValueError(f"bad config reference {ref!r}: expected ID or ID@VERSION, e.g. game-studio@1")
    return m["id"], int(m["version"]) if m["version"] else None


def path_for(configs_dir, config_id: str, version: int) -> Path:
    return Path(configs_dir) / config_id / f"v{version}.yaml"


def versions(configs_dir, config_id: str) -> list[int]:
    folder = Path(configs_dir) / config_id
    found = (re.fullmatch(r"v([0-9]+)\.yaml", p.name) for p in folder.glob("v*.yaml"))
    return sorted(int(m[1]) for m in found if m)


def load_file(path) -> SafetyConfig:
    """Read and validate one config file; errors name the file and the field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "safety config not found") from None
    data = yaml_unique.load(text, path)
    if not isinstance(data, dict):
        raise InputError(path, "a safety config is a YAML mapping")
    try:
        cfg = SafetyConfig.build(data, registry_taxonomy(path.parent.parent))
    except ValidationError as exc:
        raise _input_error(path, exc) from None
    m = re.fullmatch(r"v([0-9]+)\.yaml", path.name)
    if path.parent.name != cfg.id:
        raise InputError(path, f"id {cfg.id!r} does not match its folder {path.parent.name!r}", field="id")
    if m is None or int(m[1]) != cfg.version:
        raise InputError(path, f"version {cfg.version} does not match the file name", field="version")
    return cfg


def _input_error(path, exc: ValidationError) -> InputError:
    """The first pydantic error as an InputError naming the file and the field."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or None
    msg = err["msg"].removeprefix("Value error, ")
    if exc.error_count() > 1:
        msg += f" (and {exc.error_count() - 1} more error(s))"
    return InputError(path, msg, field=field)


def load(configs_dir, ref: str) -> SafetyConfig:
    """The config `ID@VERSION`, or the latest version of `ID`."""
    config_id, version = parse_ref(ref)
    if version is None:
        found = versions(configs_dir, config_id)
        if not found:
            raise InputError(Path(configs_dir) / config_id, f"no safety config {config_id!r}")
        version = found[-1]
    return load_file(path_for(configs_dir, config_id, version))


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value: str):
    style = "|" if "\n" in value else None  # multi-line texts stay readable in review diffs
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(cfg: SafetyConfig) -> str:
    data = cfg.model_dump(mode="json", exclude_none=True)
    header = (f"# cosalign safety config {cfg.ref}. Edit only through `cosalign config` (see\n"
              "# docs/safety-configs.md): an approved version whose content changes is refused.\n")
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def save(configs_dir, cfg: SafetyConfig) -> Path:
    """Write `cfg` atomically with its current content hash and taxonomy fingerprint."""
    cfg.content_hash = cfg.compute_hash()
    cfg.taxonomy_fingerprint = cfg._taxonomy.fingerprint()
    target = path_for(configs_dir, cfg.id, cfg.version)
    write_text(dump(cfg), target)
    return target


def list_configs(configs_dir) -> tuple[list[SafetyConfig], list[InputError]]:
    """Every config under `configs_dir` (by id, version) and the files that failed to load."""
    good, bad = [], []
    for path in sorted(Path(configs_dir).glob("*/v*.yaml")):
        try:
            good.append(load_file(path))
        except InputError as exc:
            bad.append(exc)
    good.sort(key=lambda c: (c.id, c.version))
    return good, bad


# -- lifecycle -----------------------------------------------------------------------------

def new_config(configs_dir, config_id: str, *, owner: str | None = None,
               allowed: list[str] | None = None, text: str | None = None,
               template: str | None = None, from_ref: str | None = None) -> SafetyConfig:
    """Write the next version of `config_id` as a draft.

    Content comes from the arguments; with `from_ref`, anything not given (kind, categories or
    text, template, owner, eval prompts) is copied from that config.
    """
    if allowed is not None and text is not None:
        raise ValueError("give allowed categories or a text, not both")
    base = load(configs_dir, from_ref) if from_ref else None
    fields: dict = {}
    if allowed is not None:
        fields = {"kind": "categorical", "allowed_categories": list(allowed),
                  "template": template or (base.template if base and base.template else None)}
    elif text is not None:
        fields = {"kind": "freeform", "text": text}
    elif base is not None:
        fields = {k: v for k, v in base.content().items() if k not in ("id", "version")}
        if template and base.kind == "categorical":
            fields["template"] = template
    else:
        raise ValueError("a new config needs allowed categories or a text (or --from an existing config)")
    owner = owner or (base.owner if base else None)
    if not owner:
        raise ValueError("a new config needs an owner")
    version = (versions(configs_dir, config_id) or [0])[-1] + 1
    where = path_for(configs_dir, config_id, version)
    try:
        cfg = SafetyConfig.build(dict(id=config_id, version=version, owner=owner,
                                      eval_prompts=base.eval_prompts if base else [],
                                      **{k: v for k, v in fields.items() if v is not None}),
                                 registry_taxonomy(configs_dir))
    except ValidationError as exc:
        raise _input_error(where, exc) from None
    system_prompt(cfg)  # fail now, not at serve time, on an unknown template
    save(configs_dir, cfg)
    return cfg


def review(configs_dir, ref: str, reviewer: str, note: str = "", verdict: str = "comment",
           at: str | None = None) -> SafetyConfig:
    """Record a review of the current content: a note with verdict approve, changes or comment.

    An approving review is what `approve` needs; the owner cannot give one."""
    cfg = load(configs_dir, ref)
    where = path_for(configs_dir, cfg.id, cfg.version)
    if cfg.status == "retired":
        raise InputError(where, "config is retired", field="status")
    if verdict == "approve" and same_person(reviewer, cfg.owner):
        raise InputError(where, f"the owner ({cfg.owner}) cannot give their own config an approving "
                                "review; ask another reviewer", field="reviewer")
    cfg.reviews.append(Review(reviewer=reviewer, verdict=verdict, note=note, at=at or now_utc(),
                              content_hash=cfg.compute_hash()))
    save(configs_dir, cfg)
    return cfg


def approval_blocker(cfg: SafetyConfig) -> str | None:
    """None if the reviews allow approving `cfg` now, else why not: an approving review of the
    current content hash by someone other than the owner is needed, with no `changes` verdict
    (on any content) after it."""
    digest = cfg.compute_hash()
    last_changes = max((i for i, r in enumerate(cfg.reviews) if r.verdict == "changes"), default=-1)
    if last_changes >= 0:
        r = cfg.reviews[last_changes]
        since = f" since the `changes` verdict by {r.reviewer} at {r.at}"
    else:
        since = ""
    for r in cfg.reviews[last_changes + 1:]:
        if r.verdict == "approve" and r.content_hash == digest and not same_person(r.reviewer, cfg.owner):
            return None
    return (f"no approving review of the current content (hash {digest[:12]}) by someone other than "
            f"the owner{since}; a reviewer runs `cosalign config review {cfg.ref} --verdict approve "
            "--reviewer NAME --note ...` first")


def approve(configs_dir, ref: str, reviewer: str, at: str | None = None) -> SafetyConfig:
    """Approve a draft: record the reviewer and pin its content hash.

    Needs an earlier approving review of this content by a non-owner with no `changes` verdict
    since (`approval_blocker`); owners cannot approve their own config (`same_person`)."""
    cfg = load(configs_dir, ref)
    where = path_for(configs_dir, cfg.id, cfg.version)
    state = cfg.state()
    if state == "modified-after-approval":
        raise InputError(where, f"content changed after approval (hash {cfg.compute_hash()[:12]} != "
                                f"approved {cfg.approved_hash[:12]}); an approved version never changes: "
                                f"restore it, or create the next version with `cosalign config new "
                                f"{cfg.id} --from {cfg.ref}` and approve that", field="approved_hash")
    if state != "draft":
        raise InputError(where, f"only a draft can be approved (this one is {state})", field="status")
    if same_person(reviewer, cfg.owner):
        raise InputError(where, f"the owner ({cfg.owner}) cannot approve their own config", field="reviewer")
    blocker = approval_blocker(cfg)
    if blocker:
        raise InputError(where, blocker, field="reviews")
    at = at or now_utc()
    digest = cfg.compute_hash()
    cfg.status, cfg.reviewer, cfg.approved_at, cfg.approved_hash = "approved", reviewer, at, digest
    save(configs_dir, cfg)
    return cfg


def retire(configs_dir, ref: str, at: str | None = None) -> SafetyConfig:
    cfg = load(configs_dir, ref)
    if cfg.status == "retired":
        raise InputError(path_for(configs_dir, cfg.id, cfg.version), "already retired", field="status")
    cfg.status, cfg.retired_at = "retired", at or now_utc()
    save(configs_dir, cfg)
    return cfg


def record_scores(configs_dir, ref: str, model: str, metrics: dict[str, float], *, benchmark: str,
                  evaluated_at: str | None = None) -> SafetyConfig:
    """Keep the latest `metrics` of `model` on config `ref` (replacing that model's previous ones).

    `ref` must name a version (ID@N). Scores are record, not content: the hash does not change.
    """
    if parse_ref(ref)[1] is None:
        raise ValueError(f"record_scores needs a versioned reference (ID@N), got {ref!r}")
    cfg = load(configs_dir, ref)
    cfg.scores[model] = ScoreRecord(benchmark=benchmark, evaluated_at=evaluated_at or now_utc(),
                                    metrics={k: float(v) for k, v in metrics.items()},
                                    content_hash=cfg.compute_hash())
    save(configs_dir, cfg)
    return cfg


def servable(cfg: SafetyConfig, pinned_hash: str | None = None) -> str | None:
    """None if `cfg` may be served (to a key pinned to `pinned_hash`, when given), else why not."""
    state = cfg.state()
    digest = cfg.compute_hash()
    if state == "modified-after-approval":
        return (f"safety config {cfg.ref} was modified after approval (content hash {digest[:12]}, "
                f"approved {cfg.approved_hash[:12]}){_taxonomy_note(cfg)}; it needs review")
    if state != "approved":
        return f"safety config {cfg.ref} is {state}, not approved"
    if pinned_hash is not None and digest != pinned_hash:
        return (f"safety config {cfg.ref} is not the content this key was issued for (content hash "
                f"{digest[:12]}, key pinned to {pinned_hash[:12]}){_taxonomy_note(cfg)}; the "
                "operator must review the change and re-issue or rebind the key")
    return None


def _taxonomy_note(cfg: SafetyConfig) -> str:
    now = cfg._taxonomy.fingerprint()
    if cfg.taxonomy_fingerprint and cfg.taxonomy_fingerprint != now:
        return (f"; the taxonomy changed since the file was written (fingerprint "
                f"{cfg.taxonomy_fingerprint[:12]}, now {now[:12]})")
    return ""
