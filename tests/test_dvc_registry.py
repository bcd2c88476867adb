"""The project as a DVC data registry, as the README's "Sharing a run" describes it: a run is pushed to
a DVC remote (a local directory here; S3, GCS and SSH work the same way), and a consumer in another
repository takes data/preferences.parquet with `dvc import` / `dvc get` from a fresh clone, byte for
byte; a published Hub file comes in pinned with `dvc import-url` of its resolve URL at a commit."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from hubserver.fixtures import hub, hub_env, run_cli, run_py  # noqa: F401  (pytest fixtures)
from pipeline_run import dvc, env_for

pytestmark = pytest.mark.e2e
PREFS = "data/preferences.parquet"


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env_for(cwd), check=True, capture_output=True)


def new_repo(path: Path) -> Path:
    (path / "data").mkdir(parents=True)  # `dvc import -o data/...` needs the folder
    git(path, "init", "-q")
    dvc(path, "init", "-q")
    git(path, "commit", "-qm", "dvc init")
    return path


@pytest.fixture(scope="module")
def shared_run(tiny_pipeline, tmp_path_factory):
    """A copy of the tiny run with dvc.lock committed and a local-directory remote as default, pushed:
    what `make run`, `dvc remote add -d`, `git commit` and `dvc push` leave behind."""
    tmp = tmp_path_factory.mktemp("dvc-registry")
    source = tmp / "source"
    shutil.copytree(tiny_pipeline, source, symlinks=True)
    remote = tmp / "remote"
    dvc(source, "remote", "add", "-d", "storage", str(remote))
    git(source, "add", "dvc.lock", ".dvc/config")
    git(source, "commit", "-qm", "tiny run + remote")
    pushed = dvc(source, "push")
    assert remote.is_dir() and any(remote.rglob("*")), pushed.stdout
    return {"source": source, "remote": remote, "tmp": tmp}


def test_fresh_clone_imports_preferences_from_the_remote_byte_identical(shared_run):
    tmp, source = shared_run["tmp"], shared_run["source"]
    # A fresh clone has no DVC cache: whatever it serves comes from the remote.
    clone = tmp / "clone"
    git(tmp, "clone", "-q", str(source), str(clone))
    assert not (clone / ".dvc" / "cache").exists() and not (clone / PREFS).exists()
    consumer = new_repo(tmp / "consumer")
    dvc(consumer, "import", str(clone), PREFS, "-o", "data/pairs.parquet")
    expected = (source / PREFS).read_bytes()
    assert (consumer / "data/pairs.parquet").read_bytes() == expected
    record = yaml.safe_load((consumer / "data/pairs.parquet.dvc").read_text())
    dep = record["deps"][0]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True).stdout.strip()
    assert dep["repo"]["rev_lock"] == commit and dep["path"] == PREFS  # pinned to the run's commit
    # `dvc get` (no tracking) gives the same bytes, and an import survives a cache-less re-checkout.
    dvc(consumer, "get", str(clone), PREFS, "-o", str(tmp / "got.parquet"))
    assert (tmp / "got.parquet").read_bytes() == expected
    # The remote alone holds the data: with the source's cache gone, a clone still imports it.
    shutil.rmtree(source / ".dvc" / "cache")
    fresh = tmp / "fresh-consumer"
    fresh.mkdir()
    dvc(fresh, "get", str(clone), PREFS, "-o", "p.parquet")
    assert (fresh / "p.parquet").read_bytes() == expected


def test_dvc_import_url_of_a_hub_file_pinned_to_a_commit(shared_run, hub_env):
    """The pinned-import recipe for a Hub dataset file: `dvc import-url` of its resolve URL at a commit
    (here the loopback Hub; the authors' microsoft/CoSAlign-Train works the same way)."""
    source = shared_run["tmp"] / "source"
    if not (source / PREFS).exists():  # the previous test removed the cache, not the workspace
        pytest.skip("source workspace missing")
    out = run_cli(["publish", "--namespace", "dvcns", "--artifacts", "preferences"], hub_env, cwd=source,
                  timeout=300)
    code = "from huggingface_hub import HfApi; print(HfApi().dataset_info('dvcns/cosalign-preferences').sha)"
    sha = run_py(code, hub_env).stdout.strip().splitlines()[-1]
    assert len(sha) == 40, out.stdout
    consumer = new_repo(shared_run["tmp"] / "url-consumer")
    url = f"{hub_env['HF_ENDPOINT']}/datasets/dvcns/cosalign-preferences/resolve/{sha}/preferences.parquet"
    dvc(consumer, "import-url", url, "data/preferences.parquet")
    assert (consumer / PREFS).read_bytes() == (source / PREFS).read_bytes()
    record = yaml.safe_load((consumer / "data/preferences.parquet.dvc").read_text())
    assert record["deps"][0]["path"] == url and f"/resolve/{sha}/" in url
