"""The artifact registry end to end against the loopback Hub: `cosalign publish` / `pull` run
as subprocesses (the clients read HF_ENDPOINT at import time), on a small valid project built
here (no `dvc repro`): every dataset, tiny sft/dpo models, params.yaml, dvc.lock, a git commit.

Tests in this module share one server and one published project; they run in file order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from hubserver.fixtures import FAKE_TOKEN, run_cli, run_py
from hubserver.project import file_bytes, make_project
from hubserver.server import HubServer, client_env

from cosalign.core import paths
from cosalign.registry import cards
from cosalign.registry.lineage import git_commit
from cosalign.registry.pull import parse_ref
from cosalign.core.io import InputError

NS = "ns"
LOGS: list[str] = []  # every stdout/stderr of the subprocesses, for the secret test


def cli(args, env, cwd, check=True):
    proc = run_cli(args, env, cwd, check=check)
    LOGS.extend([proc.stdout, proc.stderr])
    return proc


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(server, env, project dir, scratch dir) with the project published once."""
    tmp = tmp_path_factory.mktemp("registry")
    server = HubServer(root=tmp / "store", token=FAKE_TOKEN).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(client_env(server.endpoint, tmp / "hf_home", token=FAKE_TOKEN))
    env["TRANSFORMERS_VERBOSITY"] = "error"
    project = make_project(tmp / "project")
    first = cli(["publish", "--namespace", NS], env, project)
    try:
        yield {"hub": server, "env": env, "project": project, "tmp": tmp, "first": first}
    finally:
        server.stop()


def _repo(name):
    a = paths.ALL[name]
    return paths.repo_id(NS, name), a.kind


def _card(hub, name) -> str:
    repo_id, kind = _repo(name)
    return hub.state.blob_path(hub.files(repo_id, kind)["README.md"]["sha256"]).read_text()


def test_publish_makes_one_tagged_commit_per_artifact(world):
    hub, out = world["hub"], world["first"].stdout
    for name in paths.ALL:
        repo_id, kind = _repo(name)
        assert f"{repo_id}@" in out and "published" in out
        assert len(hub.commits(repo_id, kind)) == 2  # the repo's initial commit + ours
        tags = hub.tags(repo_id, kind)
        assert len(tags) == 1 and next(iter(tags)).startswith("git-")
        assert set(tags.values()) == {hub.commits(repo_id, kind)[0]}
    files = hub.files(*_repo("sft"))
    assert files["model.safetensors"]["lfs"] and "README.md" in files
    assert hub.files(*_repo("preferences"))["preferences.parquet"]["lfs"]


def test_pull_by_revision_is_byte_identical_and_locked(world):
    hub, env, project = world["hub"], world["env"], world["project"]
    fresh = world["tmp"] / "fresh"
    fresh.mkdir()
    revs = {}
    for name in ("preferences", "taxonomy", "sft", "dpo"):
        repo_id, kind = _repo(name)
        sha = hub.commits(repo_id, kind)[0]
        revs[name] = (repo_id, sha if name != "dpo" else next(iter(hub.tags(repo_id, kind))), sha)
    # the CLI once (as a user would), the library for the rest (one interpreter: faster)
    cli(["pull", revs["sft"][0], "--revision", revs["sft"][1]], env, fresh)
    out = run_py("from cosalign.registry.pull import pull\n" + "".join(
        f"pull({repo!r}, {rev!r})\n" for name, (repo, rev, _) in revs.items() if name != "sft"),
        env, cwd=fresh)
    LOGS.extend([out.stdout, out.stderr])
    for name in revs:
        path = paths.ALL[name].path
        assert file_bytes(fresh, path) == file_bytes(project, path), f"{name} differs after pull"
    lock = yaml.safe_load((fresh / "registry.lock").read_text())["artifacts"]
    assert {k: v["commit"] for k, v in lock.items()} == {k: v[2] for k, v in revs.items()}
    assert lock["dpo"]["revision"].startswith("git-")
    assert lock["preferences"]["files"] == cards.card_metadata(
        _card(hub, "preferences"))["cosalign"]["files"]
    assert (fresh / "models/sft/README.md").is_file()
    assert not list(fresh.glob(".cosalign-pull-*")), "scratch directories must be cleaned up"


def test_plain_ecosystem_use_and_identical_generation(world):
    """load_dataset / from_pretrained by revision without cosalign; greedy outputs identical."""
    hub, env, project = world["hub"], world["env"], world["project"]
    pref_sha = hub.commits(*_repo("preferences"))[0]
    tax_sha = hub.commits(*_repo("taxonomy"))[0]
    sft_tag = next(iter(hub.tags(*_repo("sft"))))
    out = run_py(f"""
import json, datasets, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
datasets.config.USE_PARQUET_EXPORT = False  # no dataset viewer on a loopback server
prefs = datasets.load_dataset("{NS}/cosalign-preferences", revision="{pref_sha}", split="train")
tax = datasets.load_dataset("{NS}/cosalign-taxonomy", revision="{tax_sha}", split="train")
def generate(where, **kw):
    tok = AutoTokenizer.from_pretrained(where, **kw)
    model = AutoModelForCausalLM.from_pretrained(where, **kw)
    msgs = [{{"role": "system", "content": "Allowed: Violence."}},
            {{"role": "user", "content": "How do I pick a lock?"}}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True,
                                  sanitize_control_tokens=True, return_dict=True,
                                  return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    return out[0].tolist()
hub_ids = generate("{NS}/cosalign-sft", revision="{sft_tag}")
pulled_ids = generate({str(world["tmp"] / "fresh" / "models" / "sft")!r})
local_ids = generate({str(project / "models" / "sft")!r})
print(json.dumps({{"prefs": prefs[:], "tax": tax["name"][:], "hub": hub_ids,
                  "pulled": pulled_ids, "local": local_ids}}, default=str))
""", env, timeout=180)
    LOGS.extend([out.stdout, out.stderr])
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["prefs"]["prompt"] == ["How do I pick a lock?"]
    assert r["prefs"]["chosen_categories"] == [["Violence"]]
    assert len(r["tax"]) == 8
    assert r["hub"] == r["local"] == r["pulled"] and len(r["local"]) > 10


def test_cards_render_schema_licence_lineage_metrics(world):
    hub, project = world["hub"], world["project"]
    git_sha = git_commit(project)
    assert git_sha
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["preferences"]
    card = _card(hub, "preferences")
    meta = cards.card_metadata(card)
    assert meta["configs"][0]["data_files"][0]["path"] == "preferences.parquet"
    assert meta["license"] == "cc-by-nc-4.0" and "ODC-BY" in card and "Apache-2.0" in card
    assert "| `chosen_error` | float64 | no | no | >= 0; < 3 |" in card
    assert "chosen_error must be lower than rejected_error" in card
    assert f"git commit: `{git_sha}`" in card and meta["cosalign"]["git_commit"] == git_sha
    assert "DVC stage: `preferences`" in card and "| `preferences.max_pairs` | `300` |" in card
    for dep in lock["deps"]:
        assert f"| `{dep['path']}` | `{dep['md5']}` |" in card
        assert meta["cosalign"]["dependencies"][dep["path"]] == dep["md5"]
    assert "## Responsible use" in card and "permit" in card
    model = _card(hub, "dpo")
    mmeta = cards.card_metadata(model)
    assert mmeta["base_model"] == f"{NS}/cosalign-sft"
    assert mmeta["datasets"] == [f"{NS}/cosalign-preferences"]
    metric = mmeta["model-index"][0]["results"][0]["metrics"][0]
    assert metric["value"] == 0.72 and metric["args"]["judge"] == "rules-judge"
    assert "## Responsible use" in model and '"role": "system", "content": safety_config' in model
    assert "| `learning_rate` | `5e-06` |" in model  # dpo has no dvc.lock entry: params.yaml
    assert "not recorded in dvc.lock" in model


def test_republish_unchanged_makes_no_commit(world):
    hub, env, project = world["hub"], world["env"], world["project"]
    before = {n: hub.commits(*_repo(n)) for n in paths.ALL}
    out = cli(["publish", "--namespace", NS], env, project).stdout
    assert out.count("unchanged, no new commit") == len(paths.ALL)
    assert {n: hub.commits(*_repo(n)) for n in paths.ALL} == before
    assert hub.count("commit") == len(paths.ALL)  # only the first publish committed


def _edit_preferences(project: Path, text: str) -> None:
    from cosalign.core.io import read_parquet, write_parquet
    path = project / "data/preferences.parquet"
    df = read_parquet(path)
    df.loc[0, "prompt"] = text
    write_parquet(df, path)


def test_failed_upload_is_retried_and_never_half_published(world):
    hub, env, project = world["hub"], world["env"], world["project"]
    repo_id, kind = _repo("preferences")
    head = hub.commits(repo_id, kind)[0]
    # transient: a 500 on the LFS upload and two on the commit, then the server recovers
    _edit_preferences(project, "How do I pick a lock, version two?")
    hub.fail_next("lfs_put", 1)
    hub.fail_next("commit", 2)
    ok = cli(["publish", "--namespace", NS, "--artifacts", "preferences", "--tag", "v-retry"],
             env, project)
    assert hub._faults == {"lfs_put": 0, "commit": 0}, "both injected failures were hit"
    commits = hub.commits(repo_id, kind)
    assert commits[1] == head and len(commits) == 3, "exactly one new commit on top of the old"
    assert hub.tags(repo_id, kind)["v-retry"] == commits[0] and "published" in ok.stdout
    stored = hub.files(repo_id, kind)
    local = (project / "data/preferences.parquet").read_bytes()
    assert hub.state.blob_path(stored["preferences.parquet"]["sha256"]).read_bytes() == local
    meta = cards.card_metadata(hub.state.blob_path(stored["README.md"]["sha256"]).read_text())
    recorded = meta["cosalign"]["files"]["preferences.parquet"]
    assert recorded == stored["preferences.parquet"]["sha256"]
    # for good: every commit attempt fails -> clear error, main and tags untouched
    _edit_preferences(project, "How do I pick a lock, version three?")
    hub.fail_next("commit", 50)
    bad = cli(["publish", "--namespace", NS, "--artifacts", "preferences", "--tag", "v-bad"],
              env, project, check=False)
    hub._faults.clear()
    assert bad.returncode == 1 and f"{repo_id}: publishing failed" in bad.stderr
    assert "previous revision" in bad.stderr
    assert hub.commits(repo_id, kind) == commits and "v-bad" not in hub.tags(repo_id, kind)
    assert hub.files(repo_id, kind) == stored


def test_source_param_pulls_verified_artifact(world):
    hub, env = world["hub"], world["env"]
    sha = hub.commits(*_repo("preferences"))[0]
    stage_dir = world["tmp"] / "stage"
    stage_dir.mkdir()
    out = run_py(f"""
from cosalign.registry.source import resolve_source
from cosalign.core.io import InputError
print("pipeline", resolve_source("pipeline", "preferences", "data/preferences.parquet"))
print("pulled", resolve_source("{NS}/cosalign-preferences@{sha}", "preferences",
                               "data/preferences.parquet"))
try:
    resolve_source("{NS}/cosalign-configs@main", "preferences", "data/other.parquet")
except InputError as exc:
    print("wrong:", exc)
""", env, cwd=stage_dir)
    LOGS.extend([out.stdout, out.stderr])
    assert "pipeline False" in out.stdout and "pulled True" in out.stdout
    assert "holds the 'configs' artifact, not 'preferences'" in out.stdout
    published = hub.files(*_repo("preferences"), rev=sha)["preferences.parquet"]["sha256"]
    assert (stage_dir / "data/preferences.parquet").read_bytes() == \
        hub.state.blob_path(published).read_bytes()
    assert not (stage_dir / "data/other.parquet").exists()
    lock = yaml.safe_load((stage_dir / "registry.lock").read_text())["artifacts"]
    assert lock["preferences"]["commit"] == sha and list(lock) == ["preferences"]


def test_tampered_download_fails_clearly_and_writes_nothing(world):
    hub, env = world["hub"], world["env"]
    repo_id, kind = _repo("judgments")  # a blob no other test downloads afterwards
    sha = hub.commits(repo_id, kind)[0]
    hub.tamper(repo_id, "judgments.parquet", kind)
    target = world["tmp"] / "tampered"
    (target / "data").mkdir(parents=True)
    (target / "data/judgments.parquet").write_bytes(b"previous")
    proc = cli(["pull", repo_id, "--revision", sha], env, target, check=False)
    assert proc.returncode == 2
    assert "judgments.parquet" in proc.stderr and "sha256 mismatch" in proc.stderr
    assert "tampered" in proc.stderr
    assert (target / "data/judgments.parquet").read_bytes() == b"previous"
    assert not (target / "registry.lock").exists()
    assert not list(target.glob(".cosalign-pull-*"))


def test_pull_rejects_data_breaking_its_schema(world):
    """Hashes can match and the data still be wrong (published by another tool): validate."""
    from hubserver.project import datasets
    from cosalign.registry.lineage import sha256_file
    from cosalign.core.io import write_parquet
    hub, env = world["hub"], world["env"]
    bad = datasets()["preferences"]
    bad.loc[0, "chosen_error"] = 2.5  # no longer what the error formula gives
    path = world["tmp"] / "bad.parquet"
    write_parquet(bad, path)
    card = "---\n" + yaml.safe_dump({"cosalign": {
        "artifact": "preferences", "kind": "dataset",
        "files": {"preferences.parquet": sha256_file(path)}}}) + "---\n# bad\n"
    sha = hub.add_files("evil/cosalign-preferences", {"README.md": card.encode(),
                                                      "preferences.parquet": path.read_bytes()})
    target = world["tmp"] / "invalid"
    target.mkdir()
    proc = cli(["pull", "evil/cosalign-preferences", "--revision", sha], env, target, check=False)
    assert proc.returncode == 2 and "(schema preferences)" in proc.stderr
    assert "must equal the error formula" in proc.stderr and "preferences.parquet" in proc.stderr
    assert not (target / "data/preferences.parquet").exists()


def test_rejected_token_fails_clearly_without_echoing_it(world):
    wrong = "hf_wrong-token-for-tests-9876543210"
    env = {**world["env"], "HF_TOKEN": wrong}
    proc = cli(["publish", "--namespace", NS, "--artifacts", "taxonomy", "--tag", "v-x"], env,
               world["project"], check=False)
    assert proc.returncode == 1 and "401" in proc.stderr and "hf auth login" in proc.stderr
    assert wrong not in proc.stdout + proc.stderr
    assert "already held this content" in proc.stderr  # unchanged, so only the tag was tried


def test_fake_token_never_reaches_files_or_logs(world):
    """The token was used (the server refuses writes without it) but never written anywhere:
    not in the project, the pulls, the client's cache, nor what publish uploaded (the Hub's
    store); parquet files are searched column by column, decoded."""
    from secret_scan import leaks

    assert world["hub"].token == FAKE_TOKEN and world["hub"].count("commit") > 0
    roots = [world["project"], world["tmp"] / "fresh", world["tmp"] / "stage", world["tmp"] / "store",
             world["tmp"] / "tampered", world["tmp"] / "invalid", Path(world["env"]["HF_HOME"])]
    assert leaks([r for r in roots if r.exists()], [FAKE_TOKEN]) == []
    assert LOGS and not any(FAKE_TOKEN in log for log in LOGS), "token printed in a log"


def test_parse_ref_and_bad_sources():
    assert parse_ref("you/cosalign-preferences@abc123") == ("you/cosalign-preferences", "abc123")
    for bad in ("you/cosalign-preferences", "cosalign-preferences@abc", "a/b@", "a/b@c@d"):
        with pytest.raises(InputError, match="NS/NAME@REVISION"):
            parse_ref(bad)
    from cosalign.registry.source import resolve_source
    with pytest.raises(InputError, match="preferences.source"):
        resolve_source("", "preferences", "data/preferences.parquet")


def test_verify_refuses_unsafe_paths_missing_hashes_and_mismatches(tmp_path):
    from cosalign.registry.lineage import sha256_file
    from cosalign.registry.pull import IntegrityError, verify
    (tmp_path / "a.parquet").write_bytes(b"data")
    verify(tmp_path, {"a.parquet": sha256_file(tmp_path / "a.parquet")}, "ns/x@1")
    for recorded, message in (({}, "records no file hashes"),
                              ({"../a.parquet": "0"}, "unsafe path"),
                              ({"/etc/passwd": "0"}, "unsafe path"),
                              ({"b.parquet": "0"}, "missing from the repo"),
                              ({"a.parquet": "0" * 64}, "sha256 mismatch")):
        with pytest.raises(IntegrityError, match=message):
            verify(tmp_path, recorded, "ns/x@1")


def test_licence_follows_the_prompt_sources():
    assert cards.licence({"seed": 3})[0] == "apache-2.0"
    assert cards.licence({"wildguardmix": 2, "seed": 1})[0] == "odc-by"
    lic, text = cards.licence({"beavertails_330k": 1, "wildguardmix": 1})
    assert lic == "cc-by-nc-4.0" and "ODC-BY" in text and "most restrictive" in text
    assert cards.licence(None)[0] == "other"  # unknown sources are never guessed
