"""What every data stage script shares: its params section, and the `source` switch.

`source: pipeline` computes the artifact; `source: NS/NAME@REV` takes the published artifact at
that pinned revision from the Hub, verified against its card's hashes and its schema.
"""

from __future__ import annotations

from cosalign import artifacts
from cosalign.params import section


def stage_params(name: str) -> dict:
    return section(name)


def taken_from_registry(params: dict, artifact: str) -> bool:
    """Pull the artifact instead of computing it when params name a published source."""
    source = params.get("source", "pipeline")
    if source in (None, "pipeline"):
        return False
    from cosalign.hub.source import resolve_source

    return resolve_source(source, artifact, artifacts.ALL[artifact].path)
