"""The API keys that bind `cosalign serve` callers to one approved safety config version.

Keys file (YAML): `keys: {sha256(api key): "id@version"}`; the keys themselves are never stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from pathlib import Path

import yaml

from cosalign.core.io import InputError, write_text
from cosalign.serving.lifecycle import PASSTHROUGH, load, parse_ref, path_for, servable


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def load_keys(path) -> dict[str, str]:
    """sha256 -> binding ('id@N' or 'passthrough'), validated; errors name the file and the key."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InputError(path, f"invalid YAML: {exc}") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, dict):
        raise InputError(path, "expected a mapping `keys: {sha256: ID@VERSION}`", field="keys")
    out = {}
    for digest, binding in keys.items():
        if not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
            raise InputError(path, "keys are stored as sha256 hex digests, never in plain text",
                             field=f"keys.{str(digest)[:12]}")
        if binding != PASSTHROUGH:
            try:
                if not isinstance(binding, str) or parse_ref(binding)[1] is None:
                    raise ValueError(f"binding {binding!r} must be ID@VERSION")
            except ValueError as exc:
                raise InputError(path, str(exc), field=f"keys.{digest[:12]}") from None
        out[digest] = binding
    return out


def save_keys(path, keys: dict[str, str]) -> None:
    text = ("# cosalign API keys: sha256 of each key -> the safety config version it is bound to.\n"
            "# The keys themselves are never stored (see docs/safety-configs.md).\n")
    text += yaml.safe_dump({"version": 1, "keys": dict(sorted(keys.items()))}, sort_keys=False)
    write_text(text, path, mode=0o600)  # key hashes: readable by the owner only


def add_key(keys_file, binding: str, configs_dir=None) -> str:
    """Bind a new random API key to `binding` (an approved ID@N, or 'passthrough'); return the key.

    The caller shows it once; only its sha256 is written.
    """
    if binding != PASSTHROUGH:
        config_id, version = parse_ref(binding)
        if version is None:
            raise ValueError(f"bind a key to one version (ID@N), got {binding!r}")
        binding = f"{config_id}@{version}"
        if configs_dir is not None:
            reason = servable(load(configs_dir, binding))
            if reason:
                raise InputError(path_for(configs_dir, config_id, version), reason, field="status")
    keys = load_keys(keys_file)
    key = "csk-" + secrets.token_urlsafe(32)
    keys[hash_key(key)] = binding
    save_keys(keys_file, keys)
    return key


def rebind_keys(keys_file, old: str, new: str) -> int:
    """Move every key bound to `old` to `new` (e.g. to an approved next version); returns the count."""
    keys = load_keys(keys_file)
    moved = [d for d, b in keys.items() if b == old]
    for d in moved:
        keys[d] = new
    save_keys(keys_file, keys)
    return len(moved)


def revoke_key(keys_file, prefix: str) -> str:
    """Remove the one key whose sha256 starts with `prefix` (>= 8 hex digits); returns its binding."""
    keys = load_keys(keys_file)
    hits = [d for d in keys if d.startswith(prefix.lower())]
    if len(prefix) < 8 or len(hits) != 1:
        raise ValueError(f"sha256 prefix {prefix!r} must have >= 8 hex digits and match exactly one "
                         f"key ({len(hits)} match)")
    binding = keys.pop(hits[0])
    save_keys(keys_file, keys)
    return binding
