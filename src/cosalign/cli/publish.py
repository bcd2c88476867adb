"""`cosalign publish --namespace NS`: one Hub repo and one commit per artifact, tagged.

Endpoint and token come from the environment as huggingface_hub reads them (HF_ENDPOINT,
HF_TOKEN or `hf auth login`); the token is never printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cosalign.core import paths


def add_arguments(parser) -> None:
    parser.add_argument("--namespace", required=True, help="Hub user or organisation")
    parser.add_argument("--artifacts", nargs="+", choices=sorted(paths.ALL), metavar="NAME",
                        help="subset to publish (default: all present); one of "
                             f"{sorted(paths.ALL)}")
    parser.add_argument("--tag",
                        help="tag for the commits (default: git-<short sha> or v<version>)")
    parser.add_argument("--private", action="store_true", help="create new repos as private")
    parser.add_argument("--root", default=".", help="project directory (default: .)")


def run(args) -> int:
    from cosalign.cli.checks import require
    from cosalign.registry.publish import PublishError, default_tag, publish
    root = require(args.root, "--root: project directory")
    tag = args.tag or default_tag(root)
    try:
        for p in publish(args.namespace, root, args.artifacts, tag=tag, private=args.private):
            state = "published" if p.changed else "unchanged, no new commit"
            print(f"{p.artifact}: {p.repo_type} {p.repo_id}@{p.commit} ({state}; "
                  f"tag {p.tag or '-'})", flush=True)
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
