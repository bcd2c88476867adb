"""Reading `params.yaml` (one section per stage) as the stage scripts and the CLI see it."""

from __future__ import annotations

import os
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
