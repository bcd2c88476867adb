"""`cosalign pull NS/NAME --revision REV`: fetch, verify and write an artifact.

The artifact lands at its pipeline path (data/..., reports/..., models/...) under the current
directory (or --root). The resolved commit is printed, with the `dvc import-url` line that tracks a
dataset at that commit in DVC (which is where a pin belongs: see the README's "Sharing a run").
"""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("repo_id", metavar="NS/NAME", help="e.g. you/cosalign-preferences")
    parser.add_argument("--revision", required=True,
                        help="commit sha (best: reproducible) or tag to pull")
    parser.add_argument("--root", default=".", help="project directory (default: .)")
    parser.add_argument("--out", help="write here instead of the artifact's pipeline path")


def run(args) -> int:
    import sys

    from huggingface_hub.errors import HfHubHTTPError

    from huggingface_hub import constants

    from cosalign.cli.checks import require
    from cosalign.registry.pull import import_url_command, pull
    require(args.root, "--root: project directory")  # before anything is fetched
    try:
        entry = pull(args.repo_id, args.revision, args.root, out_path=args.out)
    except HfHubHTTPError as exc:  # InputErrors (integrity, schema) are printed by cli.main
        print(f"error: {args.repo_id}@{args.revision}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"{args.repo_id}@{entry['commit']} -> {entry['path']} "
          f"({len(entry['files'])} file(s) verified)", flush=True)
    command = import_url_command(constants.ENDPOINT, entry)
    if command:
        print(f"to track it in DVC at this commit instead: {command}", flush=True)
    return 0
