"""Pull a published artifact at a pinned revision, verified, into its pipeline path.

The repo's card lists the sha256 of every artifact file (`cosalign.files`); a pull downloads the
revision into a scratch directory beside the target, checks every hash, validates datasets with
their pandera schema, and only then moves the result into place, so a corrupt or tampered
download never touches data/ or models/.

Nothing is recorded beside the artifact (there is no registry.lock any more, which went stale as
soon as a stage's `source` went back to `pipeline`). A stage whose `source` is `NS/NAME@<commit>`
is pinned by dvc.lock itself (the param and the output's md5); a one-off pull that should stay
tracked is better made with DVC: `dvc import-url <resolve URL at the commit> <path>` (see
`import_url_command` and the README's "Sharing a run").
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path


from cosalign.core import paths
from cosalign.registry.lineage import card_metadata, sha256_file
from cosalign.core.io import InputError

REF_RE = re.compile(r"^(?P<repo>[\w.-]+/[\w.-]+)@(?P<rev>[^\s@]+)$")


class IntegrityError(InputError):
    """A pulled file does not match the hash its card records."""


def parse_ref(ref: str, where: str = "source") -> tuple[str, str]:
    """`NS/NAME@REV` -> (repo_id, revision), with an error naming `where` otherwise."""
    m = REF_RE.match(ref.strip())
    if not m:
        raise InputError(where, f"expected 'pipeline' or NS/NAME@REVISION, got {ref!r}")
    return m["repo"], m["rev"]


def repo_type_and_commit(api, repo_id: str, revision: str) -> tuple[str, str]:
    """Tell a dataset repo from a model repo by asking the Hub; returns (type, commit sha)."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
    for repo_type in ("dataset", "model"):
        try:
            info = api.repo_info(repo_id, repo_type=repo_type, revision=revision)
            return repo_type, info.sha
        except RevisionNotFoundError:
            raise InputError(repo_id, f"revision {revision!r} not found on the Hub") from None
        except RepositoryNotFoundError:
            continue
    raise InputError(repo_id, "no dataset or model repo with this id on the Hub "
                              f"({api.endpoint}); check the name and your token")


def verify(folder: Path, recorded: dict[str, str], where: str) -> None:
    """Every recorded file exists under `folder` with the recorded sha256, else IntegrityError."""
    if not recorded:
        raise IntegrityError(where, "the card records no file hashes (cosalign.files); refusing "
                                    "an unverifiable artifact")
    for rel, expected in sorted(recorded.items()):
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts or parts[0] == ".cache":
            raise IntegrityError(where, "unsafe path in the card's file list", field=rel)
        path = folder / rel
        if not path.is_file():
            raise IntegrityError(where, "file listed in the card is missing from the repo",
                                 field=rel)
        actual = sha256_file(path)
        if actual != expected:
            raise IntegrityError(where, f"sha256 mismatch: the card records {expected}, the "
                                        f"download has {actual}; the file is corrupted or was "
                                        "tampered with, nothing was written", field=rel)


def validate_download(path: Path, schema: str, label: str, taxonomy=None) -> None:
    """Validate a downloaded dataset with its pandera schema; errors name `label`, not scratch.
    Category names are checked against `taxonomy` (None: the paper's)."""
    from cosalign.cosa import schemas
    from cosalign.core.io import read_parquet, read_table
    if schema == "taxonomy":
        import json
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(label, f"cannot be read as JSON: {exc}") from None
        schemas.validate_taxonomy(obj, label)
        return
    try:
        df = read_parquet(path) if path.suffix == ".parquet" else read_table(path)
    except InputError:
        raise
    except Exception as exc:  # pyarrow's reason, reworded with the repo and file
        raise InputError(label, f"cannot be read: {exc}") from None
    schemas.require_rows(len(df), schema, label)
    schemas.validate(df, schema, label, taxonomy=taxonomy)


def _swap_dir(new: Path, target: Path) -> None:
    """Put directory `new` at `target`, replacing it (the old one survives until the last step)."""
    backup = None
    if target.exists():
        backup = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, backup)
    os.replace(new, target)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _run_taxonomy(root: Path, artifact: str):
    """The run's data/taxonomy.json (the vocabulary a pulled dataset's categories must come from),
    None where there is none yet or the artifact is the taxonomy itself (then: the paper's)."""
    tax_path = Path(root) / paths.TAXONOMY
    if artifact == "taxonomy" or not tax_path.is_file():
        return None
    from cosalign.cosa.taxonomy import Taxonomy
    return Taxonomy.load(tax_path)


def pull(repo_id: str, revision: str, root: str | Path = ".", *, out_path: str | Path | None = None,
         expect: str | None = None, api=None) -> dict:
    """Fetch `repo_id` at `revision`, verify, validate, write it; returns what was pulled
    ({repo, repo_type, revision, commit, path, files: {path: sha256}}).

    Args: out_path overrides the artifact's pipeline path (relative to root); expect names the
    artifact the caller needs (a stage's `source`), failing if the repo holds another one.
    """
    from huggingface_hub import HfApi, snapshot_download
    api = api or HfApi()
    root = Path(root)
    where = f"{repo_id}@{revision}"
    repo_type, commit = repo_type_and_commit(api, repo_id, revision)
    root.mkdir(parents=True, exist_ok=True)
    # Scratch inside root: the final moves are renames on one filesystem.
    scratch = Path(tempfile.mkdtemp(prefix=".cosalign-pull-", dir=root))
    try:
        snapshot_download(repo_id, repo_type=repo_type, revision=commit,
                          local_dir=scratch / "dl", endpoint=api.endpoint)
        card_path = scratch / "dl" / "README.md"
        meta = card_metadata(card_path.read_text("utf-8")) if card_path.is_file() else {}
        info = meta.get("cosalign") or {}
        name = info.get("artifact")
        if name not in paths.ALL:
            raise InputError(where, "not a cosalign artifact repo (its card has no "
                                    "cosalign.artifact)", field="README.md")
        artifact = paths.ALL[name]
        if artifact.kind != repo_type:
            raise InputError(where, f"card says {artifact.kind}, but it is a {repo_type} repo")
        if expect and name != expect:
            raise InputError(where, f"holds the {name!r} artifact, not {expect!r}")
        files = {str(k): str(v) for k, v in (info.get("files") or {}).items()}
        verify(scratch / "dl", files, where)
        target = root / (out_path or artifact.path)
        if artifact.kind == "dataset":
            if len(files) != 1:
                raise InputError(where, f"a dataset repo holds one artifact file; the card lists "
                                        f"{sorted(files)}", field="README.md")
            (rel,) = files
            validate_download(scratch / "dl" / rel, name, f"{where}: {rel}", _run_taxonomy(root, name))
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(scratch / "dl" / rel, target)
        else:
            staged = scratch / "out"
            for rel in files:
                (staged / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(scratch / "dl" / rel, staged / rel)
            shutil.copyfile(card_path, staged / "README.md")
            target.parent.mkdir(parents=True, exist_ok=True)
            _swap_dir(staged, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    entry = {"repo": repo_id, "repo_type": repo_type, "revision": revision, "commit": commit,
             "path": (Path(out_path).as_posix() if out_path else artifact.path), "files": files}
    return entry


def resolve_url(endpoint: str, repo_id: str, repo_type: str, commit: str, path: str) -> str:
    """The Hub URL of one file at one commit (what `dvc import-url` and `hf_hub_download` fetch)."""
    prefix = "datasets/" if repo_type == "dataset" else ""
    return f"{endpoint.rstrip('/')}/{prefix}{repo_id}/resolve/{commit}/{path}"


def import_url_command(endpoint: str, entry: dict) -> str | None:
    """The `dvc import-url` line that tracks a pulled dataset file at its pinned commit (None for models:
    a model is a folder of files; pin it with `source` or `dvc import-url` per file)."""
    if entry["repo_type"] != "dataset" or len(entry["files"]) != 1:
        return None
    (rel,) = entry["files"]
    url = resolve_url(endpoint, entry["repo"], entry["repo_type"], entry["commit"], rel)
    return f"dvc import-url {url} {entry['path']}"
