"""A data stage's `source` param: `pipeline` (compute it) or `NS/NAME@REV` (take it, verified).

Stages call `resolve_source(p["source"], "<artifact>", out_path)` first and skip their work when
it returns True. Since `source` is a DVC param of the stage, changing it re-runs the stage, and
dvc.lock records it with the output's md5: the commit sha it must name is the pin (nothing else is
written, so no record can go stale when the source goes back to `pipeline`).
"""

from __future__ import annotations

import re
from pathlib import Path

from cosalign.registry.pull import parse_ref, pull
from cosalign.core.io import InputError

PIPELINE = "pipeline"


def resolve_source(source: str, artifact_name: str, out_path: str | Path, root: str | Path = ".",
                   *, api=None) -> bool:
    """False for `pipeline`; for `NS/NAME@REV` pull+verify into out_path and return True."""
    if not isinstance(source, str) or not source.strip():
        raise InputError("params.yaml", "must be 'pipeline' or NS/NAME@REVISION",
                         field=f"{artifact_name}.source")
    if source.strip() == PIPELINE:
        return False
    repo_id, revision = parse_ref(source, where=f"params.yaml, field '{artifact_name}.source'")
    if not re.fullmatch(r"[0-9a-f]{40}", revision):
        # dvc.lock records this param: only a commit sha makes that record a pin (a branch or tag
        # moves, and nothing else records what was pulled).
        raise InputError("params.yaml", f"{source!r}: pin a 40-character commit sha, not a branch or tag "
                                        f"({revision!r}), so dvc.lock pins what the stage took",
                         field=f"{artifact_name}.source")
    root, out = Path(root), Path(out_path)
    if out.is_absolute() and out.is_relative_to(root.resolve()):
        out = out.relative_to(root.resolve())
    pull(repo_id, revision, root, out_path=out, expect=artifact_name, api=api)
    return True
