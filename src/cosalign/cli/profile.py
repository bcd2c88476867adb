"""`cosalign profile use NAME` / `cosalign profile list`: switch params.yaml between profiles."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

PROFILES = Path("profiles")


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    use = sub.add_parser("use", help="copy profiles/NAME.yaml over params.yaml")
    use.add_argument("name")
    sub.add_parser("list", help="list the profiles")


def run(args) -> int:
    names = sorted(p.stem for p in PROFILES.glob("*.yaml"))
    if args.action == "list":
        current = Path("params.yaml").read_bytes() if Path("params.yaml").exists() else b""
        for name in names:
            mark = "*" if (PROFILES / f"{name}.yaml").read_bytes() == current else " "
            print(f"{mark} {name}")
        return 0
    if args.name not in names:
        print(f"error: no profile {args.name!r} in {PROFILES}/ (have {names})", file=sys.stderr)
        return 2
    shutil.copyfile(PROFILES / f"{args.name}.yaml", "params.yaml")
    print(f"params.yaml <- profiles/{args.name}.yaml; run `dvc repro`")
    return 0
