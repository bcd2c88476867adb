"""Profiles as overlays: profiles/base.yaml holds the params every profile shares, profiles/NAME.yaml
only what profile NAME changes; merged, they make the complete params.yaml (README "Profiles").

Merge rules (deep merge, overlay over base):
- mapping keys merge, recursively; a key the base lacks is added after the overlay key before it;
- any other value replaces the base's: a list replaces the whole list, and null is a value too;
- a base mapping that is empty (`base_model: {}`) is a slot: the overlay's value fills it as written;
- a mapping tagged `!replace` replaces the base mapping whole instead of merging into it.

The result keeps the files' end-of-line comments (round-trip ruamel.yaml, the YAML library DVC itself
uses): a value an overlay sets carries the overlay's comment, or none, so a comment that explained
the base's value never sits next to another value. A comment on a line of its own would have no key
to travel with, so it is an error outside a file's header.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedBase, CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.tag import Tag
from ruamel.yaml.tokens import CommentToken

from cosalign.core.io import InputError, atomic_path, write_text

PROFILES_DIR = Path("profiles")
BASE = "base"
REPLACE_TAG = "!replace"
_TOP_LEVEL_KEY = re.compile(r"^[^\s#]")


def _yaml() -> YAML:
    y = YAML()  # round trip: keeps comments, key order, flow style and the float spellings (2.0e-5)
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    y.representer.add_representer(type(None), _represent_null)
    return y


def _represent_null(representer, _value):
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")  # not an empty value


def names(root: str | Path = ".") -> list[str]:
    """The profiles under ROOT/profiles/ (every *.yaml but base.yaml), sorted."""
    return sorted(p.stem for p in (Path(root) / PROFILES_DIR).glob("*.yaml") if p.stem != BASE)


def _header(text: str) -> list[str]:
    """The file's first comment paragraph: its description, copied into params.yaml."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def _check_comments(path: Path, text: str) -> None:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#")),
                 len(lines))
    for i in range(start, len(lines)):
        if lines[i].lstrip().startswith("#"):
            raise InputError(path, f"line {i + 1}: a comment on a line of its own has no key to travel "
                             "with into params.yaml; put it at the end of a key's line")


def _strip_comment(token) -> CommentToken | None:
    """The end-of-line part of a comment token, without the blank lines ruamel attaches to it."""
    if token is None or not token.value.startswith("#"):
        return None
    return CommentToken(token.value.split("\n", 1)[0] + "\n", token.start_mark, None, token.column)


def _normalise(node) -> None:
    """Keep only end-of-line comments: `render` redraws the layout (blank lines) itself."""
    if not isinstance(node, (CommentedMap, CommentedSeq)):
        return
    node.ca.comment = None
    at = 0 if isinstance(node, CommentedSeq) else 2  # where ruamel keeps an item's line comment
    for key, item in list(node.ca.items.items()):
        eol = _strip_comment(item[at] if len(item) > at else None)
        if eol is None:
            del node.ca.items[key]
        else:
            item[:] = [None] * len(item)
            item[at] = eol
    for child in (node.values() if isinstance(node, dict) else node):
        _normalise(child)


def _walk(node):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _check_tags(path: Path, data: CommentedMap, *, overlay: bool) -> None:
    """Only an overlay's mappings may carry `!replace`; any other tag is a mistake."""
    for key, section in data.items():
        for node in _walk(section):
            tag = node.tag.value if isinstance(node, CommentedBase) else None
            if tag is None:
                continue
            if tag != REPLACE_TAG:
                raise InputError(path, f"unexpected tag {tag}", field=str(key))
            if not overlay:
                raise InputError(path, f"{REPLACE_TAG} belongs in a profile, not in the base", field=str(key))
            if not isinstance(node, CommentedMap):
                raise InputError(path, f"{REPLACE_TAG} applies to mappings only", field=str(key))


def _read(path: Path, *, overlay: bool) -> tuple[CommentedMap, list[str]]:
    if not path.is_file():
        raise InputError(path, "no such profile file")
    text = path.read_text(encoding="utf-8")
    _check_comments(path, text)
    try:
        data = _yaml().load(text)
    except YAMLError as exc:
        raise InputError(path, f"not valid YAML: {exc}") from None
    data = CommentedMap() if data is None else data
    if not isinstance(data, CommentedMap):
        raise InputError(path, f"must be a mapping of params sections, got {type(data).__name__}")
    _check_tags(path, data, overlay=overlay)
    _normalise(data)
    return data, _header(text)


def _is_replace(value) -> bool:
    return isinstance(value, CommentedBase) and value.tag.value == REPLACE_TAG


def _comment(node: CommentedMap, key):
    item = node.ca.items.get(key)
    return item[2] if item else None


def _set_comment(node: CommentedMap, key, token) -> None:
    node.ca.items.pop(key, None)
    if token is not None:
        node.ca.items[key] = [None, None, token, None]


def merge(base: CommentedMap, overlay: CommentedMap) -> CommentedMap:
    """Merge OVERLAY into BASE in place (the rules in the module docstring) and return BASE."""
    previous = None
    for key, value in overlay.items():
        replace = _is_replace(value)
        current = base.get(key)
        if (key in base and isinstance(current, CommentedMap) and current
                and isinstance(value, CommentedMap) and not replace):
            merge(current, value)
            if _comment(overlay, key) is not None:
                _set_comment(base, key, _comment(overlay, key))
        else:
            if key not in base:
                base.insert(list(base).index(previous) + 1 if previous is not None else 0, key, value)
            else:
                base[key] = value
            _set_comment(base, key, _comment(overlay, key))
        previous = key
    return base


def merged(name: str, root: str | Path = ".") -> tuple[CommentedMap, list[str]]:
    """Profile NAME merged over the base: (round-trip params, the profile's description lines)."""
    root = Path(root)
    if name == BASE or name not in names(root):
        raise InputError(root / PROFILES_DIR / f"{name}.yaml",
                         f"no profile {name!r} (have {names(root)})")
    base_path, overlay_path = root / PROFILES_DIR / f"{BASE}.yaml", root / PROFILES_DIR / f"{name}.yaml"
    base, _ = _read(base_path, overlay=False)
    overlay, description = _read(overlay_path, overlay=True)
    params = merge(base, overlay)
    for node in _walk(params):
        if _is_replace(node):
            node.yaml_set_ctag(Tag())  # a merge instruction, not part of the params
    for key, value in params.items():
        if isinstance(value, dict) and not value:
            raise InputError(overlay_path, f"section {key!r} is empty in {base_path} and the profile "
                             "does not fill it", field=str(key))
    return params, description


def render(name: str, root: str | Path = ".") -> str:
    """The complete params.yaml text of profile NAME, with a header saying how it was made."""
    params, description = merged(name, root)
    _yaml().dump(params, text := io.StringIO())
    body = []
    for line in text.getvalue().splitlines():
        if _TOP_LEVEL_KEY.match(line) and body:
            body.append("")  # a blank line between sections
        body.append(line)
    header = [f"# GENERATED by `cosalign profile use {name}`: profiles/{BASE}.yaml with profiles/{name}.yaml",
              "# merged over it. Edit those files, not this one, then run the command again;",
              f"# `cosalign profile show {name}` prints this text without writing it.", "#",
              *description]
    return "\n".join(header + [""] + body) + "\n"


def load(name: str, root: str | Path = ".") -> dict:
    """Profile NAME's complete params as plain data (what DVC and the stages read)."""
    import yaml

    return yaml.safe_load(render(name, root))


def write(name: str, target: str | Path = "params.yaml", root: str | Path = ".") -> None:
    """Write profile NAME's complete params file to TARGET (atomically)."""
    write_text(render(name, root), target)


def retire_dropped_evaluations(previous: dict | None, current: dict, root: str | Path = ".") -> list[str]:
    """Remove what the evaluate@KEY stages of models `current` no longer evaluates left behind.

    Profiles evaluate different models (tiny and paper add base_ica_5shot), and DVC keeps a dropped
    foreach item's output and its dvc.lock entry. The output would sit inside the report stage's
    folder dep (reports/eval), so the committed lock would hash a file a fresh clone lacks; the
    entry describes no stage. Both go (the output's bytes stay in the DVC cache). Keys come from
    `previous` params and from the lock's evaluate@KEY entries. Returns what was removed.
    """
    from cosalign.core import paths

    root = Path(root)
    keep = set((current.get("evaluate") or {}).get("models") or {})
    dropped = set(((previous or {}).get("evaluate") or {}).get("models") or {}) - keep
    lock_path = root / "dvc.lock"
    lock_yaml = YAML()  # round trip in DVC's own layout (2-space sequences at offset 0, width 80)
    lock_yaml.indent(mapping=2, sequence=2, offset=0)
    lock = lock_yaml.load(lock_path.read_text(encoding="utf-8")) if lock_path.exists() else None
    stages = (lock or {}).get("stages") or {}
    stale = [s for s in stages if s.startswith("evaluate@") and s.split("@", 1)[1] not in keep]
    dropped |= {s.split("@", 1)[1] for s in stale}
    removed = []
    for key in sorted(dropped):
        out = root / paths.eval_items(key)
        if out.exists():
            out.unlink()
            removed.append(paths.eval_items(key))
    if stale:
        for stage in stale:
            del stages[stage]
        with atomic_path(lock_path) as tmp:
            lock_yaml.dump(lock, tmp)
        removed += [f"dvc.lock: {s}" for s in stale]
    return removed
