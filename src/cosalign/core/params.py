"""Reading `params.yaml` (one section per stage) and building each section into its params dataclass."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path

import yaml

from cosalign.core.io import InputError

PARAMS_FILE = "params.yaml"
# The top-level `protocol` (docs/paper-fidelity.md): `cosalign` keeps this project's choices,
# `paper` follows the authors' released code where the two differ (issue 18).
PROTOCOLS = ("cosalign", "paper")


def load_params(path: str | os.PathLike = PARAMS_FILE) -> dict:
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "params file not found (run from the repository root)") from None
    except yaml.YAMLError as exc:  # one line with the position, not PyYAML's multi-line dump
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InputError(path, f"invalid YAML: {problem}{where}") from None
    if not isinstance(params, dict):
        raise InputError(path, "must be a mapping of stage sections")
    return params


def section(name: str, path: str | os.PathLike = PARAMS_FILE) -> dict:
    """One stage's section, failing with the file and key when it is missing."""
    params = load_params(path)
    if name not in params or not isinstance(params[name], dict):
        raise InputError(path, "missing section", field=name)
    return params[name]


def require(params: dict, key: str, kind, *, section_name: str, path=PARAMS_FILE):
    """Fetch a typed value from a params section with an error naming the exact key."""
    if key not in params:
        raise InputError(path, "missing value", field=f"{section_name}.{key}")
    value = params[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int subclass, but `seed: true` is a typo, not a number
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise InputError(path, f"expected {expected}, got {type(value).__name__} {value!r}",
                         field=f"{section_name}.{key}")
    return value


def check_protocol(value, path=PARAMS_FILE) -> str:
    """`value` if it names a protocol, else InputError naming the `protocol` key."""
    if isinstance(value, str) and value in PROTOCOLS:
        return value
    raise InputError(path, f"must be one of {list(PROTOCOLS)}, got {value!r}", field="protocol")


def protocol(path: str | os.PathLike = PARAMS_FILE) -> str:
    """The top-level `protocol` of the params file; a file without the key means 'cosalign'."""
    return check_protocol(load_params(path).get("protocol", "cosalign"), path)


# --- params sections as dataclasses -----------------------------------------------------------------
# Every stage reads its section into a frozen dataclass (TRL's config style): fields typed and
# documented where the stage's logic lives, built by `from_section`, which fails on an unknown key,
# a missing required key or a wrong type, naming `section.key`; range checks live in the class's
# __post_init__ and raise `bad(...)`. Nested dataclass fields are groups (`sft.optim.learning_rate`).

def bad(key: str, message: str, path=PARAMS_FILE) -> InputError:
    """The error a params check raises: `params.yaml, field 'KEY': MESSAGE`."""
    return InputError(path, message, field=key)


def from_section(cls, mapping, prefix: str, *, path=PARAMS_FILE, skip=(), **fixed):
    """Build dataclass `cls` from a params mapping, `prefix` naming it in errors (`sft.optim`)."""
    if not isinstance(mapping, dict):
        raise bad(prefix, f"expected dict, got {type(mapping).__name__} {mapping!r}", path)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    known = set(fields) - set(skip) - set(fixed)
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise bad(f"{prefix}.{unknown[0]}", f"unknown key(s) {unknown}; known: {sorted(known)}", path)
    hints = typing.get_type_hints(cls)
    values = dict(fixed)
    for name in sorted(known, key=list(fields).index):
        f = fields[name]
        if name not in mapping:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise bad(f"{prefix}.{name}", "missing value", path)
            continue
        kind, value = hints[name], mapping[name]
        group = next((a for a in typing.get_args(kind) or (kind,) if dataclasses.is_dataclass(a)), None)
        if group is not None and value is not None:
            values[name] = from_section(group, value, f"{prefix}.{name}", path=path)
        else:
            values[name] = check_type(value, kind, f"{prefix}.{name}", path)
    return cls(**values)


def check_type(value, kind, key: str, path=PARAMS_FILE):
    """`value` as annotation `kind` allows (ints pass as floats; bools never pass as numbers)."""
    options = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    for opt in options:
        opt = typing.get_origin(opt) or opt
        if opt is type(None) and value is None:
            return None
        if opt is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if opt is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if opt in (str, bool, list, dict) and isinstance(value, opt):
            return value
    names = " or ".join(getattr(typing.get_origin(o) or o, "__name__", str(o)) for o in options)
    names = names.replace("float", "int or float") if "int" not in names else names
    hint = " (YAML reads 5e-7 as a string: write 5.0e-7)" if isinstance(value, str) and float in options else ""
    raise bad(key, f"expected {names}, got {type(value).__name__} {value!r}{hint}", path)
