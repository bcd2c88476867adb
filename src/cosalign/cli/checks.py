"""Path checks shared by the commands: a path the user named that is not there fails at once,
named as missing (cli.main prints `error: PATH: ...` and exits 2), before anything loads."""

from __future__ import annotations

from pathlib import Path

from cosalign.core.io import InputError


def require(path, what: str) -> Path:
    """`path` must exist; `what` says which argument it is (e.g. "--keys: keys file")."""
    if not Path(path).expanduser().exists():
        raise InputError(path, f"{what} does not exist")
    return Path(path)


def local_but_missing(value: str) -> bool:
    """A model or dataset argument that means a local path which is not there: one that looks like
    a path, or `dir/name` whose `dir` exists here (a Hub id `org/name` has no local `org`)."""
    path = Path(value).expanduser()
    if path.exists():
        return False
    return value.startswith((".", "/", "~")) or value.count("/") > 1 or ("/" in value and path.parent.exists())


def require_local_or_hub(value: str | None, what: str) -> None:
    if value and local_but_missing(value):
        raise InputError(value, f"{what} does not exist (nor is it a Hub id)")
