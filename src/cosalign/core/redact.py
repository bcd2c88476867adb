"""Secrets out of any text an endpoint sent back, before it is stored, cached or printed.

One function, `redact`, used on every path that keeps text from an endpoint: the OpenAI judge's
error records and non-completion bodies, its cached outputs, the embedding client's errors and
the registry's publish errors. An endpoint (a proxy, a login page, a misbehaving server) may echo
the request's headers, so the text is scrubbed of what credentials look like (Authorization
headers, bearer tokens, OpenAI-style and Hub keys, `api_key=` pairs) and of the literal values of
the environment variables that hold credentials, whatever their shape.
"""

from __future__ import annotations

import os
import re

MARK = "[redacted]"
MIN_SECRET = 8  # shorter environment values (e.g. "1", "true") are not treated as secrets

# The value part of each pattern is replaced; the name before it is kept so the text still reads.
_PATTERNS = (
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+|basic\s+|token\s+)?[^\s\"',;}]+"),
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{12,}"),
    re.compile(r"(?i)((?:api[_-]?key|access[_-]?token|hf[_-]?token|token|secret|password)[\"']?\s*[:=]\s*[\"']?)"
               r"[^\s\"'&,;}]{4,}"),
    re.compile(r"()\bsk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"()\bhf_[A-Za-z0-9_-]{16,}"),
)
_CREDENTIAL_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)


def env_secrets() -> list[str]:
    """Values of the environment variables whose names say they hold a credential."""
    return [v for k, v in os.environ.items() if _CREDENTIAL_ENV.search(k) and len(v) >= MIN_SECRET]


def redact(text, *secrets: str | None) -> str:
    """`text` (any object, as str) with `secrets`, credential environment values and anything
    shaped like a credential replaced by "[redacted]"."""
    text = str(text)
    for secret in sorted({s for s in (*secrets, *env_secrets()) if s and len(s) >= MIN_SECRET},
                         key=len, reverse=True):
        text = text.replace(secret, MARK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MARK, text)
    return text
