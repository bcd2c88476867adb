"""The API keys that bind `cosalign serve` callers to one approved safety config version.

Keys file (YAML): `keys: {sha256(api key): "id@version:content-hash"}`; the keys themselves are
never stored. The binding pins the full sha256 content hash the config had when the key was
issued, so a config whose file was widened and its hashes rewritten by hand no longer matches its
keys: the key binding is the tamper-evident record (docs/safety-configs.md, "Keys").

Bindings written before keys pinned a hash (`id@version` alone) still load, but the server
refuses them until the operator re-pins them with `cosalign config keys rebind --from ID@N
--to ID@N` after checking the config (`cosalign config show ID@N`): the keys keep working for
their callers and the operator, not the file, vouches for the content.

Every change to the file (add, revoke, rebind) holds an exclusive lock on a `.<name>.lock` file
beside it for the whole read-modify-write and replaces the file atomically, so concurrent
`config keys add` runs all survive and a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cosalign.core import yaml_unique
from cosalign.core.io import InputError, write_text
from cosalign.serving.lifecycle import PASSTHROUGH, load, parse_ref, path_for, servable

_PINNED = re.compile(r"^(?P<ref>[^:]+):(?P<hash>[0-9a-f]{64})$")


@dataclass(frozen=True)
class Binding:
    """What a key is bound to: 'passthrough', or a config ref with the content hash it was issued
    for (None for bindings written before hashes were pinned)."""
    ref: str  # 'id@N' or 'passthrough'
    content_hash: str | None = None

    @property
    def passthrough(self) -> bool:
        return self.ref == PASSTHROUGH

    def __str__(self) -> str:
        return self.ref if self.content_hash is None else f"{self.ref}:{self.content_hash}"

    def short(self) -> str:
        return self.ref if self.content_hash is None else f"{self.ref}:{self.content_hash[:12]}"


def parse_binding(text) -> Binding:
    """'passthrough', 'id@N:<sha256>' or the old 'id@N'; ValueError otherwise."""
    if text == PASSTHROUGH:
        return Binding(PASSTHROUGH)
    if not isinstance(text, str):
        raise ValueError(f"binding {text!r} must be ID@VERSION:CONTENT_HASH")
    m = _PINNED.match(text)
    ref, digest = (m["ref"], m["hash"]) if m else (text, None)
    if ":" in ref:
        raise ValueError(f"binding {text!r} must be ID@VERSION:CONTENT_HASH (a 64-hex sha256)")
    config_id, version = parse_ref(ref)
    if version is None:
        raise ValueError(f"binding {text!r} must name one version: ID@VERSION:CONTENT_HASH")
    return Binding(f"{config_id}@{version}", digest)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_bindings(path) -> dict[str, Binding]:
    """sha256 -> Binding, validated; errors name the file and the key (its hash prefix)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    data = yaml_unique.load(text, path) or {}  # a duplicated key hash is refused, not merged
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, dict):
        raise InputError(path, "expected a mapping `keys: {sha256: ID@VERSION:CONTENT_HASH}`", field="keys")
    out = {}
    for digest, binding in keys.items():
        if not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
            raise InputError(path, "keys are stored as sha256 hex digests, never in plain text",
                             field=f"keys.{str(digest)[:12]}")
        try:
            out[digest] = parse_binding(binding)
        except ValueError as exc:
            raise InputError(path, str(exc), field=f"keys.{digest[:12]}") from None
    return out


def load_keys(path) -> dict[str, str]:
    """sha256 -> binding text ('id@N:<hash>', an old 'id@N', or 'passthrough'), validated."""
    return {d: str(b) for d, b in load_bindings(path).items()}


def save_keys(path, keys: dict) -> None:
    """Write sha256 -> binding (Binding or text) atomically; callers hold `locked(path)`."""
    import yaml

    text = ("# cosalign API keys: sha256 of each key -> the safety config version (and the content\n"
            "# hash) it is bound to. The keys themselves are never stored (docs/safety-configs.md).\n")
    body = {d: str(b) for d, b in sorted(keys.items())}
    text += yaml.safe_dump({"version": 2, "keys": body}, sort_keys=False, width=200)
    write_text(text, path, mode=0o600)  # key hashes: readable by the owner only


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive lock for a read-modify-write of the keys file `path`.

    The lock lives on `.<name>.lock` beside it, not on the file itself, which each write
    replaces with a new inode (atomic rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def pinned(configs_dir, ref: str) -> Binding:
    """The binding for a new key to `ref` (ID@N): its current content hash, if it is servable."""
    config_id, version = parse_ref(ref)
    if version is None:
        raise ValueError(f"bind a key to one version (ID@N), got {ref!r}")
    cfg = load(configs_dir, f"{config_id}@{version}")
    reason = servable(cfg)
    if reason:
        raise InputError(path_for(configs_dir, config_id, version), reason, field="status")
    return Binding(cfg.ref, cfg.compute_hash())


def add_key(keys_file, binding: str, configs_dir=None) -> str:
    """Bind a new random API key to `binding` (an approved ID@N, pinned to its current content
    hash, or 'passthrough'); return the key. The caller shows it once; only its sha256 is written.
    """
    if binding == PASSTHROUGH:
        target = Binding(PASSTHROUGH)
    else:
        if configs_dir is None:
            raise ValueError("binding a key to a config needs the configs folder (to pin its hash)")
        target = pinned(configs_dir, binding)
    key = "csk-" + secrets.token_urlsafe(32)
    with locked(keys_file):
        keys = load_bindings(keys_file)
        keys[hash_key(key)] = target
        save_keys(keys_file, keys)
    return key


def rebind_keys(keys_file, old: str, new: Binding) -> int:
    """Move every key bound to the version `old` (ID@N; pinned to any hash or to none) to `new`,
    e.g. an approved next version or the same version re-pinned; returns the count."""
    with locked(keys_file):
        keys = load_bindings(keys_file)
        moved = [d for d, b in keys.items() if b.ref == old]
        for d in moved:
            keys[d] = new
        save_keys(keys_file, keys)
    return len(moved)


def revoke_key(keys_file, prefix: str) -> str:
    """Remove the one key whose sha256 starts with `prefix` (>= 8 hex digits); returns its binding."""
    with locked(keys_file):
        keys = load_bindings(keys_file)
        hits = [d for d in keys if d.startswith(prefix.lower())]
        if len(prefix) < 8 or len(hits) != 1:
            raise ValueError(f"sha256 prefix {prefix!r} must have >= 8 hex digits and match exactly "
                             f"one key ({len(hits)} match)")
        binding = keys.pop(hits[0])
        save_keys(keys_file, keys)
    return str(binding)
