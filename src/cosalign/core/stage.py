"""What every data stage script shares: its params section, and the `source` switch.

`source: pipeline` computes the artifact; `source: NS/NAME@REV` takes the published artifact at
that pinned revision from the Hub, verified against its card's hashes and its schema.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from cosalign.core import paths
from cosalign.core.io import InputError
from cosalign.core.params import PARAMS_FILE, require, section

_NUMBER = (int, float)
# What each computing stage reads from its section, and the type it must have: a missing key or
# a wrong type fails up front with the key's name, before any work (or DVC output) is touched.
REQUIRED: dict[str, dict[str, type | tuple]] = {
    "prompts": {"sources": list, "seed": int, "test_fraction": _NUMBER},
    "taxonomy": {"seed": int},
    "prompt_labels": {"judge": dict},
    "configs": {"seed": int, "modes": list, "configs_per_mode": int},
    "responses": {"backend": str, "model_name": str, "seed": int, "samples": int,
                  "max_new_tokens": int, "temperature": _NUMBER, "top_p": _NUMBER,
                  "batch_size": int, "work_batch_size": int},
    "judgments": {"judge": dict, "work_batch_size": int},
    "preferences": {"seed": int},
}
POSITIVE = ("samples", "max_new_tokens", "batch_size", "work_batch_size", "configs_per_mode")


def check_section(name: str, p: dict, path=PARAMS_FILE) -> dict:
    """Fail with InputError naming `name.key` when a required value is missing, mistyped or out of range."""
    for key, kind in REQUIRED.get(name, {}).items():
        value = require(p, key, kind, section_name=name, path=path)
        if key in POSITIVE and value < 1:
            raise InputError(path, f"must be at least 1, got {value!r}", field=f"{name}.{key}")
        if key == "test_fraction" and not 0 <= value < 1:
            raise InputError(path, f"must be in [0, 1), got {value!r}", field=f"{name}.{key}")
    if "judge" in REQUIRED.get(name, {}):
        check_judge(p["judge"], f"{name}.judge", path)
    return p


def check_judge(judge: dict, where: str, path=PARAMS_FILE) -> None:
    """The judge's name and options, checked before any input is read (make_judge would fail later)."""
    from cosalign.judges.base import BACKENDS, accepted_options, backend_class

    if judge.get("name") not in BACKENDS:
        raise InputError(path, f"unknown judge {judge.get('name')!r} (one of {sorted(BACKENDS)})",
                         field=f"{where}.name")
    accepted = accepted_options(backend_class(judge["name"]))
    unknown = sorted(set(judge) - {"name"} - set(accepted))
    if unknown:
        raise InputError(path, f"unknown option(s) {unknown}; accepted: {accepted}", field=where)


def stage_params(name: str) -> dict:
    """A stage's params section, checked (see REQUIRED) unless the artifact is pulled from the Hub."""
    p = section(name)
    if p.get("source", "pipeline") in (None, "pipeline"):
        check_section(name, p)
    return p


def run_stage(main: Callable[[], object]) -> None:
    """Run a stage script's main(): bad input ends with one `error: FILE, row R, field F: ...`
    line on stderr (a schema failure: its `PATH: row N: CHECK [COLUMNS]: VALUE` lines) and exit
    status 2 instead of a traceback (the outputs were not touched, since every artifact is
    written atomically after its inputs were checked). A judge's dry run ends with its one-line
    estimate and status 0 (nothing written: DVC then reports the missing outs)."""
    from cosalign.judges.base import DryRun, JudgeError

    try:
        code = main()
    except DryRun as exc:
        print(str(exc))
        sys.exit(0)
    except (InputError, JudgeError) as exc:
        print(exc if hasattr(exc, "failures") else f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(int(code or 0))


def taken_from_registry(params: dict, artifact: str) -> bool:
    """Pull the artifact instead of computing it when params name a published source."""
    source = params.get("source", "pipeline")
    if source in (None, "pipeline"):
        return False
    from cosalign.registry.source import resolve_source

    return resolve_source(source, artifact, paths.ALL[artifact].path)
