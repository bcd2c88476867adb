"""`cosalign validate PATH [--schema NAME]`: check an artifact file against its pandera schema."""

from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    from cosalign.cosa.schemas import SCHEMAS

    parser.add_argument("path", help="artifact file (.parquet, .jsonl, .csv, or taxonomy.json)")
    parser.add_argument("--schema", choices=sorted(SCHEMAS) + ["taxonomy"],
                        help="schema name (default: chosen from the file's base name)")


def run(args) -> int:
    from cosalign.cosa.schemas import validate_file

    try:
        rows = validate_file(args.path, args.schema)
    except KeyError as exc:  # no schema matches the file name
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    print(f"{args.path}: valid ({rows} rows)")
    return 0
