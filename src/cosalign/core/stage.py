"""What every stage script shares: its checked params and the runner.

A stage script's body is `run_stage(main)`; `main()` reads its section with `stage_params(name,
ParamsClass)` (a dataclass beside the stage's library function, checked before any work) and calls
that function. A data stage first asks `registry.source.pulled(name)`: `source: NS/NAME@REV` takes
the published artifact at that pinned revision from the Hub instead of computing it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from cosalign.core.io import DryRun, InputError, JudgeError
from cosalign.core.params import PARAMS_FILE, from_section, section

T = TypeVar("T")


def stage_params(name: str, cls: type[T], *, path=PARAMS_FILE, **context) -> T:
    """params.yaml section `name` as dataclass `cls` (its `from_dict(section, name)` when it has one),
    failing with `params.yaml, field 'NAME.KEY': ...` before any work. `context` sets fields that
    come from outside the section (a training stage's `compute`: the top-level `precision`)."""
    p = section(name, path)
    if hasattr(cls, "from_dict"):
        return cls.from_dict(p, name, **context)
    return from_section(cls, p, name, path=path, **context)


def run_stage(main: Callable[[], object]) -> None:
    """Run a stage script's main(): bad input ends with one `error: FILE, row R, field F: ...`
    line on stderr (a schema failure: its `PATH: row N: CHECK [COLUMNS]: VALUE` lines) and exit
    status 2 instead of a traceback (the outputs were not touched, since every artifact is
    written atomically after its inputs were checked). A judge's dry run ends with its one-line
    estimate and status 0 (nothing written: DVC then reports the missing outs)."""
    try:
        code = main()
    except DryRun as exc:
        print(str(exc))
        sys.exit(0)
    except (InputError, JudgeError) as exc:
        print(exc if hasattr(exc, "failures") else f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(int(code or 0))
