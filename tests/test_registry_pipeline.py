"""The registry end to end on the tiny pipeline: publish its artifacts to a loopback Hub, pull them
into a fresh copy of the project, and start a run from published artifacts (`source: NS/NAME@REV`)."""

from __future__ import annotations

import pytest
import yaml

from hubserver.fixtures import hub, hub_env, run_cli, run_py  # noqa: F401  (pytest fixtures)
from pipeline_run import copy_repo, dvc, env_for

pytestmark = pytest.mark.e2e

NS = "cosalign-ci"
UPSTREAM = ("prompts", "taxonomy", "prompt_labels")


def _published_commit(env, repo_id):
    code = f"from huggingface_hub import HfApi; print(HfApi().dataset_info({repo_id!r}).sha)"
    return run_py(code, env).stdout.strip().splitlines()[-1]


def test_publish_pull_and_start_from_published_artifacts(tiny_pipeline, hub_env, tmp_path):
    published = run_cli(["publish", "--namespace", NS], hub_env, cwd=tiny_pipeline, timeout=300)
    assert "cosalign-preferences" in published.stdout + published.stderr

    # A fresh copy of the project pulls a dataset back by pinned commit, byte for byte.
    fresh = copy_repo(tmp_path / "fresh", "tiny")
    sha = _published_commit(hub_env, f"{NS}/cosalign-preferences")
    pulled = run_cli(["pull", f"{NS}/cosalign-preferences", "--revision", sha], hub_env, cwd=fresh)
    assert (fresh / "data/preferences.parquet").read_bytes() == \
        (tiny_pipeline / "data/preferences.parquet").read_bytes()
    assert not (fresh / "registry.lock").exists()  # the pin is dvc.lock's (source) or a .dvc file
    assert f"dvc import-url {hub_env['HF_ENDPOINT']}/datasets/{NS}/cosalign-preferences/resolve/{sha}/" \
           "preferences.parquet data/preferences.parquet" in pulled.stdout

    # A run that takes its upstream stages from the Hub produces the same downstream artifact.
    start = copy_repo(tmp_path / "from-hub", "tiny")
    params = yaml.safe_load((start / "params.yaml").read_text())
    for stage in UPSTREAM:
        repo = f"{NS}/cosalign-{stage.replace('_', '-')}"
        params[stage]["source"] = f"{repo}@{_published_commit(hub_env, repo)}"
    (start / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**env_for(start), **hub_env}
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro", "configs"], cwd=start,
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Running stage 'base_model'" not in proc.stdout
    for stage in UPSTREAM:
        assert f"Running stage '{stage}'" in proc.stdout  # re-run, but only to pull
    for path in ("data/prompts.parquet", "data/prompt_labels.parquet", "data/configs.parquet"):
        assert (start / path).read_bytes() == (tiny_pipeline / path).read_bytes(), path
    assert dvc(start, "status", "configs").returncode == 0
    lock = yaml.safe_load((start / "dvc.lock").read_text())["stages"]
    for stage in UPSTREAM:  # dvc.lock pins what each stage took: the source commit and the output md5
        recorded = lock[stage]["params"]["params.yaml"]
        source = recorded[stage]["source"] if stage in recorded else recorded[f"{stage}.source"]
        assert source == params[stage]["source"]
        assert lock[stage]["outs"][0]["md5"]
