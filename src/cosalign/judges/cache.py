"""A disk cache of judge outputs: one JSON file per request, written atomically.

Key = sha256 over (judge_id, TEMPLATE_VERSION, model, request settings, full messages), so any
change to the prompts or the model misses the cache, and a re-run with the same inputs makes no
calls. The cache stores what the judge returned (text, finish reason), never credentials (every
text passes through `core.redact.redact`), and never errors: a failed call is retried on the next
run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cosalign.core.io import write_json
from cosalign.core.redact import redact


def cache_key(judge_id: str, template_version: str, model: str, messages: list[dict],
              settings: dict | None = None) -> str:
    payload = json.dumps([judge_id, template_version, model, settings or {}, messages],
                         sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class JsonCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"  # fan out so no directory grows huge

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError:  # a damaged entry is a miss, not a crash; it is rewritten on success
            return None

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def put(self, key: str, record: dict) -> None:
        write_json({k: redact(v) if isinstance(v, str) else v for k, v in record.items()}, self._path(key))
