"""`cosalign` command line: one module per subcommand, imported only when that command runs.

Each module `cosalign.cli.<name>` defines `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, str] = {
    "validate": "validate an artifact file against its pandera schema",
    "label": "label the prompts of a CSV/JSONL/parquet file with a judge",
    "profile": "write params.yaml from a profile (default, tiny, paper): use, show, list",
    "eval": "evaluate any chat model on a benchmark (CoSA-Score)",
    "judge-eval": "measure a judge on the judge-evaluation set (reports/judge.json's record)",
    "publish": "publish the pipeline's artifacts to a Hugging Face Hub namespace",
    "pull": "pull a published artifact by pinned revision into data/ or models/",
    "config": "manage reviewed safety configs (new, review, approve, list, show)",
    "serve": "serve a checkpoint behind an OpenAI-compatible endpoint bound to safety configs",
}


def _module(name: str):
    return importlib.import_module(f"cosalign.cli.{name.replace('-', '_')}")


def build_parser(argv) -> argparse.ArgumentParser:
    from cosalign import __version__

    parser = argparse.ArgumentParser(prog="cosalign", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cosalign {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # only the chosen command's module (and its heavy imports) loads
            _module(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    from cosalign.core.io import InputError
    try:
        return int(_module(args.command).run(args) or 0)
    except InputError as exc:
        # a schema's ValidationError is already one line per failure, each naming the file
        print(exc if hasattr(exc, "failures") else f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
