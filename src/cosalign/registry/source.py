"""A data stage's `source` param: `pipeline` (compute it) or `NS/NAME@REV` (take it, verified).

Data stage scripts call `pulled("<artifact>")` first and skip their work when it returns True. Since `source` is a DVC param of the stage, changing it re-runs the stage, and a
pinned commit sha makes the pulled output as reproducible as a computed one.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from cosalign.core import paths
from cosalign.core.io import InputError
from cosalign.core.params import PARAMS_FILE, section
from cosalign.registry.pull import parse_ref, pull

log = logging.getLogger(__name__)
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
        log.warning("%s: revision %r is a branch or tag; pin a commit sha so `dvc repro` stays "
                    "reproducible", source, revision)
    root, out = Path(root), Path(out_path)
    if out.is_absolute() and out.is_relative_to(root.resolve()):
        out = out.relative_to(root.resolve())  # keep registry.lock paths relative
    pull(repo_id, revision, root, out_path=out, expect=artifact_name, api=api)
    return True


def pulled(artifact: str, path=PARAMS_FILE) -> bool:
    """When params.yaml section `artifact` has `source: NS/NAME@REV`, pull that published artifact
    to its path (core.paths) and return True: the stage then skips its work (and its params checks)."""
    source = section(artifact, path).get("source", PIPELINE)
    if source in (None, PIPELINE):
        return False
    return resolve_source(source, artifact, paths.ALL[artifact].path)
