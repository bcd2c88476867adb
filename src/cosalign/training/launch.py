"""Running a stage script under `accelerate launch` when its params name an accelerate config.

`dvc repro` runs `python stages/sft.py`; when `sft.accelerate_config` is set, the script starts
itself again through accelerate's own launcher (`python -m accelerate.commands.launch
--config_file <cfg> stages/sft.py <same args>`) and returns its exit code. The child is recognised
by the marker variable set here or by the LOCAL_RANK that torchrun-style launchers set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cosalign.core.io import InputError

MARKER = "COSALIGN_UNDER_ACCELERATE"


def under_launcher() -> bool:
    return os.environ.get(MARKER) == "1" or "LOCAL_RANK" in os.environ


def launch_command(config: str | Path, script: str | Path, argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            str(script), *argv]


def relaunch_if_needed(config: str | None, script: str | Path, argv: list[str], key: str) -> int | None:
    """Run `script argv` under accelerate and return its exit code; None when already launched or no config."""
    if not config or under_launcher():
        return None
    if not Path(config).is_file():
        raise InputError("params.yaml", f"accelerate config {config!r} does not exist", field=key)
    cmd = launch_command(config, script, argv)
    print("relaunching under accelerate:", " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.call(cmd, env={**os.environ, MARKER: "1"})


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0
