"""`cosalign validate PATH [--schema NAME] [--taxonomy PATH]`: check an artifact file against its
pandera schema; category names are checked against data/taxonomy.json when it exists."""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    from cosalign.cosa.schemas import SCHEMAS

    parser.add_argument("path", help="artifact file (.parquet, .jsonl, .csv, or taxonomy.json)")
    parser.add_argument("--schema", choices=sorted(SCHEMAS) + ["taxonomy"],
                        help="schema name (default: chosen from the file's base name)")
    parser.add_argument("--taxonomy", metavar="PATH",
                        help="taxonomy.json whose category names the file may use "
                             "(default: data/taxonomy.json when present, else the paper's)")


def run(args) -> int:
    from cosalign.core import paths
    from cosalign.cosa.schemas import validate_file

    tax = args.taxonomy
    if tax is None and Path(paths.ALL["taxonomy"].path).is_file():
        tax = paths.ALL["taxonomy"].path
    rows = validate_file(args.path, args.schema, taxonomy_path=tax)  # errors: cli.main, exit 2
    print(f"{args.path}: valid ({rows} rows)")
    return 0
