"""`cosalign pull NS/NAME --revision REV`: fetch, verify and write an artifact; record it.

The artifact lands at its pipeline path (data/..., reports/..., models/...) under the current
directory (or --root), and `registry.lock` records the repo, the requested revision and the
resolved commit with every file's sha256.
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

    from cosalign.cli.checks import require
    from cosalign.registry.pull import LOCK_FILE, pull
    require(args.root, "--root: project directory")  # before anything is fetched
    try:
        entry = pull(args.repo_id, args.revision, args.root, out_path=args.out)
    except HfHubHTTPError as exc:  # InputErrors (integrity, schema) are printed by cli.main
        print(f"error: {args.repo_id}@{args.revision}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"{args.repo_id}@{entry['commit']} -> {entry['path']} "
          f"({len(entry['files'])} file(s) verified; recorded in {LOCK_FILE})", flush=True)
    return 0
