"""`cosalign config`: the reviewed safety-config registry (new, review, approve, retire, list, show)
and the API keys that bind `cosalign serve` callers to one approved config version.

`list` exits 1 when a file is invalid or an approved config was modified after approval, so it
doubles as a CI check. See docs/safety-configs.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cosalign.serving import lifecycle as sc
from cosalign.serving import keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--configs-dir", default="safety_configs",
                        help="registry folder holding <id>/v<version>.yaml (default: safety_configs)")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = sub.add_parser("new", parents=[common], help="write the next version of a config as a draft")
    p.add_argument("id", help="config id, a slug such as game-studio")
    p.add_argument("--owner", help="who wrote it (copied from --from when omitted)")
    content = p.add_mutually_exclusive_group()
    content.add_argument("--allow", action="append", metavar="CATEGORY",
                         help="an allowed risk category (repeat; categorical config)")
    content.add_argument("--allow-none", action="store_true",
                         help="categorical config that allows no risk category")
    content.add_argument("--text", help="free-form config text")
    content.add_argument("--text-file", type=Path, help="file holding the free-form config text")
    p.add_argument("--template", help=f"template id phrasing a categorical config (default {sc.DEFAULT_TEMPLATE})")
    p.add_argument("--from", dest="from_ref", metavar="ID@VER",
                   help="copy content and owner from this config; flags given here override")

    p = sub.add_parser("review", parents=[common], help="add a review note to a config")
    p.add_argument("ref", metavar="ID@VER")
    p.add_argument("--reviewer", required=True)
    p.add_argument("--note", required=True)
    p.add_argument("--verdict", choices=["approve", "changes", "comment"], default="comment")

    p = sub.add_parser("approve", parents=[common],
                       help="approve a draft (records reviewer and hash); needs an approving review "
                            "of the current content by someone other than the owner")
    p.add_argument("ref", metavar="ID@VER")
    p.add_argument("--reviewer", required=True)

    p = sub.add_parser("retire", parents=[common], help="retire a config: serve refuses its keys")
    p.add_argument("ref", metavar="ID@VER")

    p = sub.add_parser("list", parents=[common], help="every config with its state and hash")
    p.add_argument("--keys", type=Path,
                   help="also flag configs whose content differs from what their keys were issued for")

    p = sub.add_parser("show", parents=[common], help="a config's record, hash status, scores and system prompt")
    p.add_argument("ref", metavar="ID[@VER]")

    keys = sub.add_parser("keys", help="API keys for `cosalign serve`").add_subparsers(
        dest="keys_action", required=True, metavar="KEYS_ACTION")
    kcommon = argparse.ArgumentParser(add_help=False, parents=[common])
    kcommon.add_argument("--keys", required=True, type=Path, help="the keys YAML file")
    p = keys.add_parser("add", parents=[kcommon],
                        help="create a key bound to an approved config; prints the key ONCE")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--config", metavar="ID@VER")
    target.add_argument("--passthrough", action="store_true",
                        help="a key whose caller sends its own system turn (trusted judge/eval "
                             "harnesses; honoured only by `serve --allow-passthrough`)")
    keys.add_parser("list", parents=[kcommon],
                    help="key hashes (first 12 hex) and their bindings (ID@VER:content hash)")
    p = keys.add_parser("revoke", parents=[kcommon], help="remove one key by its sha256 prefix")
    p.add_argument("sha_prefix")
    p = keys.add_parser("rebind", parents=[kcommon],
                        help="move every key bound to one version to an approved version, pinned to "
                             "its current content hash (--from X --to X re-pins X's keys)")
    p.add_argument("--from", dest="old", required=True, metavar="ID@VER")
    p.add_argument("--to", dest="new", required=True, metavar="ID@VER")


READS_REGISTRY = ("review", "approve", "retire", "list", "show")


def _check_paths(args) -> None:
    """Every path a command reads must be there (`new` and `keys add` create theirs)."""
    from cosalign.cli.checks import require

    if args.action in READS_REGISTRY or getattr(args, "keys_action", None) == "rebind":
        require(args.configs_dir, "--configs-dir: safety config registry")
    if getattr(args, "text_file", None):
        require(args.text_file, "--text-file: config text file")
    if getattr(args, "keys_action", None) in ("list", "revoke", "rebind"):
        require(args.keys, "--keys: keys file")


def run(args) -> int:
    _check_paths(args)
    try:
        if args.action == "keys":
            return _keys(args)
        return ACTIONS[args.action](args)
    except ValueError as exc:  # bad references, bad category names; InputError is handled by main
        from cosalign.core.io import InputError
        if isinstance(exc, InputError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _read_text_file(path: Path) -> str:
    """The free-form config text in `path`, or an InputError naming the file."""
    from cosalign.core.io import InputError
    if not path.is_file():
        raise InputError(path, "file does not exist" if not path.exists() else "is not a file")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read as UTF-8 text: {exc}") from None


def _new(args) -> int:
    allowed = [] if args.allow_none else args.allow
    text = _read_text_file(args.text_file) if args.text_file else args.text
    cfg = sc.new_config(args.configs_dir, args.id, owner=args.owner, allowed=allowed,
                        text=text.strip() if text is not None else None,
                        template=args.template, from_ref=args.from_ref)
    print(f"created {cfg.ref} (draft, hash {cfg.compute_hash()[:12]}) in "
          f"{sc.path_for(args.configs_dir, cfg.id, cfg.version)}")
    return 0


def _review(args) -> int:
    cfg = sc.review(args.configs_dir, args.ref, args.reviewer, args.note, args.verdict)
    print(f"{cfg.ref}: review by {args.reviewer} ({args.verdict}) recorded")
    return 0


def _approve(args) -> int:
    cfg = sc.approve(args.configs_dir, args.ref, args.reviewer)
    print(f"{cfg.ref} approved by {cfg.reviewer}; fingerprint {cfg.fingerprint()}")
    return 0


def _retire(args) -> int:
    cfg = sc.retire(args.configs_dir, args.ref)
    print(f"{cfg.ref} retired; `cosalign serve` now refuses its keys (403)")
    return 0


def _flags(cfg, key_hashes: set[str] = frozenset()) -> str:
    """Problems to show beside a config; those in capitals make `list` exit 1.

    `key_hashes`: the content hashes the keys bound to this version were issued for."""
    flags = []
    digest = cfg.compute_hash()
    if cfg.state() == "modified-after-approval":
        flags.append("MODIFIED AFTER APPROVAL")
    elif cfg.content_hash and cfg.content_hash != digest:
        flags.append("edited by hand since the last tool write")
    if cfg.status == "approved" and cfg.approved_hash and not any(
            r.verdict == "approve" and r.content_hash == cfg.approved_hash
            and not sc.same_person(r.reviewer, cfg.owner) for r in cfg.reviews):
        flags.append("APPROVAL NOT BACKED BY A REVIEW")
    if any(h != digest for h in key_hashes):
        flags.append("KEYS ISSUED FOR OTHER CONTENT")
    return "; ".join(flags)


def _list(args) -> int:
    configs, errors = sc.list_configs(args.configs_dir)
    pins: dict[str, set[str]] = {}
    for b in (keys.load_bindings(args.keys).values() if args.keys else ()):
        if b.content_hash:
            pins.setdefault(b.ref, set()).add(b.content_hash)
    rows = [("CONFIG", "KIND", "STATE", "OWNER", "HASH", "SCORES", "FLAGS")]
    flags = {}
    for c in configs:
        flags[c.ref] = _flags(c, pins.get(c.ref, set()))
        rows.append((c.ref, c.kind, c.state(), c.owner, c.compute_hash()[:12], str(len(c.scores)),
                     flags[c.ref]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    for exc in errors:
        print(f"invalid: {exc}", file=sys.stderr)
    serious = [ref for ref, f in flags.items() if any(w.isupper() for w in f.split("; "))]
    return 1 if errors or serious else 0


def _show(args) -> int:
    cfg = sc.load(args.configs_dir, args.ref)
    digest = cfg.compute_hash()
    print(f"config:        {cfg.ref}  ({sc.path_for(args.configs_dir, cfg.id, cfg.version)})")
    print(f"kind:          {cfg.kind}")
    if cfg.kind == "categorical":
        print(f"allowed:       {', '.join(cfg.allowed_categories) or 'none'}  (template {cfg.template})")
    print(f"owner:         {cfg.owner}")
    print(f"state:         {cfg.state()}")
    print(f"content hash:  {digest}  (covers the system prompt below)")
    now = cfg.taxonomy_used().fingerprint()
    written = cfg.taxonomy_fingerprint or "not recorded"
    same = "same" if written == now else f"now {now[:12]}"
    print(f"taxonomy:      {written[:12]} when last written by the tool ({same})")
    if cfg.approved_hash:
        ok = "matches" if cfg.approved_hash == digest else "DOES NOT MATCH (modified after approval)"
        print(f"approved hash: {cfg.approved_hash}  {ok}; by {cfg.reviewer} at {cfg.approved_at}")
        print(f"fingerprint:   {cfg.fingerprint()}")
    if _flags(cfg):
        print(f"flags:         {_flags(cfg)}")
    for r in cfg.reviews:
        stale = "" if r.content_hash == digest else "  [reviewed other content]"
        print(f"review:        {r.at} {r.reviewer} {r.verdict}: {r.note}{stale}")
    for model, s in sorted(cfg.scores.items()):
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(s.metrics.items()))
        stale = "" if s.content_hash == digest else "  [scored other content]"
        print(f"score:         {model} on {s.benchmark} at {s.evaluated_at}: {metrics}{stale}")
    if cfg.eval_prompts:
        print(f"eval prompts:  {len(cfg.eval_prompts)}")
    print("--- system prompt ---")
    print(sc.system_prompt(cfg))
    return 0


def _keys(args) -> int:
    if args.keys_action == "add":
        binding = sc.PASSTHROUGH if args.passthrough else args.config
        key = keys.add_key(args.keys, binding, configs_dir=args.configs_dir)
        shown = binding if args.passthrough else keys.pinned(args.configs_dir, binding).short()
        print(f"bound a new key to {shown} in {args.keys}; it is shown only now:", file=sys.stderr)
        print(key)  # stdout carries the key alone, for `KEY=$(cosalign config keys add ...)`
    elif args.keys_action == "list":
        for digest, binding in keys.load_bindings(args.keys).items():
            unpinned = "" if binding.passthrough or binding.content_hash else \
                f"  NOT PINNED: refused by serve; re-pin with `keys rebind --from {binding.ref} --to {binding.ref}`"
            print(f"{digest[:12]}  {binding.short()}{unpinned}")
    elif args.keys_action == "revoke":
        print(f"revoked the key bound to {keys.revoke_key(args.keys, args.sha_prefix)}")
    elif args.keys_action == "rebind":
        new = keys.pinned(args.configs_dir, args.new)  # refuses a version that is not servable
        old = sc.load(args.configs_dir, args.old).ref
        print(f"moved {keys.rebind_keys(args.keys, old, new)} key(s) from {old} to {new.short()}")
    return 0


ACTIONS = {"new": _new, "review": _review, "approve": _approve, "retire": _retire,
           "list": _list, "show": _show}
