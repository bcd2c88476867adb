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


def unreachable(exc: BaseException) -> BaseException | None:
    """The transport failure behind `exc` (connection refused, DNS, timeout, offline mode), if any."""
    import httpx2

    while exc is not None:
        if isinstance(exc, (httpx2.TransportError, ConnectionError, TimeoutError)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def run(args) -> int:
    import sys

    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    from huggingface_hub import constants

    from cosalign.cli.checks import require
    from cosalign.core.redact import redact
    from cosalign.registry.pull import import_url_command, pull
    require(args.root, "--root: project directory")  # before anything is fetched
    where = f"{args.repo_id}@{args.revision}"
    try:
        entry = pull(args.repo_id, args.revision, args.root, out_path=args.out)
    except HfHubHTTPError as exc:  # InputErrors (integrity, schema) are printed by cli.main
        print(f"error: {where}: {redact(str(exc).splitlines()[0])}", file=sys.stderr)
        return 1
    except Exception as exc:
        cause = unreachable(exc)
        if cause is None:
            raise
        reason = redact((str(cause).strip().splitlines() or [type(cause).__name__])[0])
        print(f"error: {where}: cannot reach the Hub at {constants.ENDPOINT} "
              f"({type(cause).__name__}: {reason}); check HF_ENDPOINT, HF_HUB_OFFLINE and the network",
              file=sys.stderr)
        return 2
    print(f"{args.repo_id}@{entry['commit']} -> {entry['path']} "
          f"({len(entry['files'])} file(s) verified)", flush=True)
    command = import_url_command(constants.ENDPOINT, entry)
    if command:
        print(f"to track it in DVC at this commit instead: {command}", flush=True)
    return 0
