"""Where an artifact came from: the git commit, its DVC stage, params and dependency md5s."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml

from cosalign.core.io import InputError, file_digest


def git_commit(root: str | Path = ".") -> str | None:
    """`git rev-parse HEAD` in `root`, or None outside a repository / before the first commit."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def git_dirty(root: str | Path = ".") -> bool:
    """True when tracked files differ from HEAD (the commit alone then does not pin the code)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def read_dvc_lock(root: str | Path = ".") -> dict:
    """The `stages` mapping of dvc.lock ({} when there is no lock yet)."""
    path = Path(root) / "dvc.lock"
    if not path.exists():
        return {}
    try:
        lock = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InputError(path, f"invalid YAML: {exc}") from None
    stages = lock.get("stages", {}) if isinstance(lock, dict) else None
    if not isinstance(stages, dict):
        raise InputError(path, "missing mapping", field="stages")
    return stages


def stage_lineage(stage: str, root: str | Path = ".") -> dict | None:
    """One stage's record from dvc.lock: cmd, deps [{path, md5}], params, outs [{path, md5}].

    `evaluate@sft`-style foreach stages are matched by their full name. None when the stage
    has not been locked (published outside `dvc repro`).
    """
    entry = read_dvc_lock(root).get(stage)
    if not isinstance(entry, dict):
        return None

    def files(items):
        return [{"path": d.get("path"), "md5": d.get("md5"), "size": d.get("size")}
                for d in items or [] if isinstance(d, dict)]

    params = {}
    for params_file, values in (entry.get("params") or {}).items():
        params.update(values or {})
    return {"stage": stage, "cmd": entry.get("cmd"), "deps": files(entry.get("deps")),
            "params": params, "outs": files(entry.get("outs"))}


def lineage(stage: str, root: str | Path = ".") -> dict:
    """Everything the card records about provenance (git commit may be None)."""
    return {"git_commit": git_commit(root), "git_dirty": git_dirty(root),
            "dvc": stage_lineage(stage, root)}


def sha256_file(path: str | Path) -> str:
    return file_digest(path, "sha256")


def git_blob_sha1(path: str | Path) -> str:
    """The git object id of a file's bytes (what the Hub reports for non-LFS files)."""
    data = Path(path).read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def card_metadata(text: str) -> dict:
    """The YAML front matter of a card ({} when it has none): the hashes and lineage `publish`
    wrote, read back by `pull` (which therefore needs no card templates)."""
    if not text.startswith("---"):
        return {}
    _, _, rest = text.partition("\n")
    block, sep, _ = rest.partition("\n---")
    return (yaml.safe_load(block) or {}) if sep else {}
