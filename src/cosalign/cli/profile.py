"""`cosalign profile use|show|list`: params.yaml from profiles/base.yaml + profiles/NAME.yaml.

A profile file holds only what it changes; `use` merges it over the base (cosalign.core.profiles) and
writes the complete params.yaml that DVC and the stages read, then removes the outputs and dvc.lock
entries of evaluated models the new profile drops (profiles.retire_dropped_evaluations).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from cosalign.core import profiles

PARAMS = Path("params.yaml")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    use = sub.add_parser("use", help="write params.yaml: profiles/base.yaml with profiles/NAME.yaml merged over it")
    use.add_argument("name")
    show = sub.add_parser("show", help="print the params.yaml that `use NAME` would write")
    show.add_argument("name")
    sub.add_parser("list", help="list the profiles; * marks the one params.yaml holds")


def run(args) -> int:
    if args.action == "list":
        current = PARAMS.read_text(encoding="utf-8") if PARAMS.exists() else None
        for name in profiles.names():
            print(f"{'*' if profiles.render(name) == current else ' '} {name}")
        return 0
    if args.action == "show":
        print(profiles.render(args.name), end="")
        return 0
    previous = yaml.safe_load(PARAMS.read_text(encoding="utf-8")) if PARAMS.exists() else None
    profiles.write(args.name, PARAMS)
    print(f"params.yaml <- profiles/base.yaml + profiles/{args.name}.yaml; run `dvc repro`")
    current = yaml.safe_load(PARAMS.read_text(encoding="utf-8"))  # what was just written
    for what in profiles.retire_dropped_evaluations(previous, current):
        print(f"removed {what} (a model this profile does not evaluate; its bytes stay in the DVC cache)")
    return 0
