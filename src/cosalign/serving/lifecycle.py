"""Reviewed safety configs as registry artifacts: their lifecycle from draft to retired.

A config is one YAML file, `<configs_dir>/<id>/v<version>.yaml`: content (id, version, kind and
either `allowed_categories` + `template` or free-form `text`) plus its record (owner, status,
reviews, approval, scores). Lifecycle: `new` writes a draft; `review` adds notes; `approve`
(by someone other than the owner) records the reviewer and `approved_hash` = the content hash;
`retire` ends it. An approved version's content never changes: a file whose current content hash
differs from `approved_hash` is "modified after approval", refused by `cosalign serve` and flagged
by list/show; the fix is to restore the approved content or to approve a new version
(`cosalign config new ID --from ID@N`).

The API keys that bind callers to a config version: cosalign.serving.keys.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from cosalign.cosa import taxonomy
from cosalign.core.io import InputError, write_text
from cosalign.cosa import config_text

DEFAULT_TEMPLATE = "heldout-01"  # held-out phrasing: never seen in training
SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
PASSTHROUGH = "passthrough"  # key binding for trusted harnesses (judges) that send their own system turn
_REF = re.compile(r"^(?P<id>[a-z0-9]+(?:-[a-z0-9]+)*)(?:@v?(?P<version>[0-9]+))?$")


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
    model_config = ConfigDict(extra="forbid")

    # -- content: covered by content_hash -----------------------------------------------
    id: str = Field(pattern=SLUG, max_length=64, strict=True)
    version: int = Field(ge=1, strict=True)
    kind: Literal["categorical", "freeform"]
    allowed_categories: list[str] | None = Field(default=None, validate_default=True)
    # categorical: the config_templates.yaml template that phrases the list
    template: str | None = Field(default=None, validate_default=True)
    text: str | None = Field(default=None, validate_default=True)  # freeform: the system prompt
    content_hash: str = ""  # as of the last write by the tool (informative; checks recompute it)
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
        bad = [v for v in value if v not in taxonomy.NAMES]
        if bad:
            raise ValueError(f"unknown risk category {bad[0]!r}; known: {list(taxonomy.NAMES)}")
        if taxonomy.OTHER in value:
            raise ValueError(f"{taxonomy.OTHER!r} can never be allowed by a config")
        if len(set(value)) != len(value):
            raise ValueError("categories must be distinct")
        return taxonomy.canonical_order(value)

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

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def content(self) -> dict:
        """The fields a review approves: what the model is told."""
        out = {"id": self.id, "version": self.version, "kind": self.kind}
        if self.kind == "categorical":
            out.update(allowed_categories=list(self.allowed_categories), template=self.template)
        else:
            out["text"] = self.text
        return out

    def compute_hash(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
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
    """The system turn a model receives for `cfg` (the one place that renders a config)."""
    if cfg.kind == "freeform":
        return cfg.text
    from cosalign.data import configs  # the project's template renderer (config_templates.yaml)

    for kind in config_text.TEMPLATE_KINDS:
        for template in config_text.load_templates(kind):
            if template["id"] == cfg.template:
                return config_text.render_config(template, cfg.allowed_categories)
    raise InputError(f"config {cfg.ref}", f"unknown template {cfg.template!r}", field="template")


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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "safety config not found") from None
    except yaml.YAMLError as exc:
        raise InputError(path, f"invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(path, "a safety config is a YAML mapping")
    try:
        cfg = SafetyConfig.model_validate(data)
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
    """Write `cfg` atomically with its current content hash."""
    cfg.content_hash = cfg.compute_hash()
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
        cfg = SafetyConfig(id=config_id, version=version, owner=owner,
                           eval_prompts=base.eval_prompts if base else [],
                           **{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise _input_error(where, exc) from None
    system_prompt(cfg)  # fail now, not at serve time, on an unknown template
    save(configs_dir, cfg)
    return cfg


def review(configs_dir, ref: str, reviewer: str, note: str = "", verdict: str = "comment",
           at: str | None = None) -> SafetyConfig:
    cfg = load(configs_dir, ref)
    if cfg.status == "retired":
        raise InputError(path_for(configs_dir, cfg.id, cfg.version), "config is retired", field="status")
    cfg.reviews.append(Review(reviewer=reviewer, verdict=verdict, note=note, at=at or now_utc(),
                              content_hash=cfg.compute_hash()))
    save(configs_dir, cfg)
    return cfg


def approve(configs_dir, ref: str, reviewer: str, at: str | None = None) -> SafetyConfig:
    """Approve a draft: record the reviewer and pin its content hash. Owners cannot self-approve."""
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
    if reviewer.strip() == cfg.owner.strip():
        raise InputError(where, f"the owner ({cfg.owner}) cannot approve their own config", field="reviewer")
    at = at or now_utc()
    digest = cfg.compute_hash()
    cfg.reviews.append(Review(reviewer=reviewer, verdict="approve", note="approved", at=at,
                              content_hash=digest))
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


def servable(cfg: SafetyConfig) -> str | None:
    """None if `cfg` may be served, else why not."""
    state = cfg.state()
    if state == "approved":
        return None
    if state == "modified-after-approval":
        return (f"safety config {cfg.ref} was modified after approval (content hash "
                f"{cfg.compute_hash()[:12]}, approved {cfg.approved_hash[:12]}); it needs review")
    return f"safety config {cfg.ref} is {state}, not approved"
