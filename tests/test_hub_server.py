"""The loopback Hub test server against the real, unmodified Hub clients over HTTP.

huggingface_hub / datasets read HF_ENDPOINT & co. at import time, so client code runs in a
fresh interpreter (`run_py`) with the server's environment; the server itself runs in a thread
of this process, where the tests inspect what it stored and which routes were called.
"""

from __future__ import annotations

import http.client
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from hubserver.fixtures import hub, hub_env, run_py  # noqa: F401  (pytest fixtures)
from hubserver.server import HubError, HubServer, git_blob_sha1


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def test_xet_disabled_upload_goes_through_classic_lfs(hub, hub_env, tmp_path):
    """Canary: if a huggingface_hub release ignores HF_HUB_DISABLE_XET, every LFS upload would go
    to Xet (which no loopback server speaks) and the whole registry test setup breaks."""
    (tmp_path / "d.parquet").write_bytes(_parquet(pd.DataFrame({"a": [1, 2, 3]})))
    out = run_py(f"""
from huggingface_hub import HfApi
api = HfApi()
api.create_repo("ns/canary", repo_type="dataset")
api.upload_file(path_or_fileobj={str(tmp_path / "d.parquet")!r}, path_in_repo="d.parquet",
                repo_id="ns/canary", repo_type="dataset")
""", hub_env)
    assert hub.count("lfs_batch") >= 1 and hub.count("lfs_put") == 1, (
        "huggingface_hub no longer honours HF_HUB_DISABLE_XET=1: the parquet upload did not go "
        "through the classic LFS batch API (it would go to Xet, which the test Hub does not "
        "speak); re-check the pinned huggingface_hub. Server saw: "
        f"{[r for _, r, _ in hub.requests]}")
    stored = hub.files("ns/canary", "dataset")["d.parquet"]
    assert stored["lfs"] and stored["sha256"] == __import__("hashlib").sha256(
        (tmp_path / "d.parquet").read_bytes()).hexdigest()


def test_upload_folder_commits_tags_branches_and_downloads(hub, hub_env, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.parquet").write_bytes(_parquet(pd.DataFrame({"x": ["a", "b"]})))
    (src / "notes.txt").write_text("first\n")
    (src / "sub").mkdir()
    (src / "sub" / "more.json").write_text('{"k": 1}\n')
    out = run_py(f"""
import json
from huggingface_hub import (HfApi, CommitOperationAdd, CommitOperationDelete, hf_hub_download,
                             snapshot_download)
from huggingface_hub.errors import (EntryNotFoundError, RepositoryNotFoundError,
                                    RevisionNotFoundError)
api = HfApi()
print("whoami", api.whoami()["name"])
api.create_repo("ns/m", exist_ok=True)
api.create_repo("ns/m", exist_ok=True)  # 409 with exist_ok is fine
c1 = api.upload_folder(repo_id="ns/m", folder_path={str(src)!r}).oid
again = api.upload_folder(repo_id="ns/m", folder_path={str(src)!r}).oid  # unchanged: no commit
api.create_tag("ns/m", tag="v1", revision=c1)
c2 = api.create_commit("ns/m", [CommitOperationAdd("notes.txt", b"second\\n"),
                                CommitOperationDelete("sub/more.json")],
                       commit_message="edit", parent_commit=c1).oid
api.create_branch("ns/m", branch="dev", revision=c1)
refs = api.list_repo_refs("ns/m")
tree = sorted(f.path for f in api.list_repo_tree("ns/m", revision="v1", recursive=True))
paths = api.get_paths_info("ns/m", ["data.parquet", "notes.txt"])
info = {{p.path: p.lfs is not None for p in paths}}
old = open(hf_hub_download("ns/m", "notes.txt", revision="v1")).read()
new = open(hf_hub_download("ns/m", "notes.txt", revision=c2)).read()
snap = snapshot_download("ns/m", revision="dev")
errors = []
for call in (lambda: hf_hub_download("ns/m", "missing.txt", revision=c1),
             lambda: api.repo_info("ns/m", revision="nope"),
             lambda: api.repo_info("ns/does-not-exist")):
    try:
        call()
    except (EntryNotFoundError, RevisionNotFoundError, RepositoryNotFoundError) as exc:
        errors.append(type(exc).__name__)
print(json.dumps({{"c1": c1, "again": again, "c2": c2, "tree": tree, "info": info, "old": old,
                  "new": new, "snap": snap, "errors": errors,
                  "commits": len(api.list_repo_commits("ns/m")),
                  "tags": {{t.name: t.target_commit for t in refs.tags}},
                  "branches": sorted(b.name for b in refs.branches)}}))
""", hub_env)
    assert "whoami tester" in out.stdout
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["again"] == r["c1"], "re-uploading identical files must not make a commit"
    assert r["tags"] == {"v1": r["c1"]} and r["branches"] == ["dev", "main"]
    assert r["tree"] == [".gitattributes", "data.parquet", "notes.txt", "sub", "sub/more.json"]
    assert r["info"] == {"data.parquet": True, "notes.txt": False}
    assert (r["old"], r["new"]) == ("first\n", "second\n")
    snap = Path(r["snap"])
    assert (snap / "data.parquet").read_bytes() == (src / "data.parquet").read_bytes()
    assert (snap / "sub" / "more.json").is_file()
    assert r["errors"] == ["RemoteEntryNotFoundError", "RevisionNotFoundError",
                           "RepositoryNotFoundError"]
    assert r["commits"] == 3  # initial .gitattributes commit, c1, c2
    assert hub.commits("ns/m")[0] == r["c2"]


def _splits_repos(hub: HubServer, train: pd.DataFrame, version: int) -> tuple[str, str]:
    """Fixture dataset repos like the evaluation benchmarks: parquet splits, and jsonl splits.

    One format per repo: `datasets` infers the builder (parquet/json) from the first config's
    files, so a jsonl config next to a parquet one in the same repo does not load.
    """
    readme = ("---\nconfigs:\n- config_name: default\n  data_files:\n"
              "  - split: train\n    path: data/train.parquet\n"
              "  - split: test\n    path: data/test.parquet\n---\n# fixture\n")
    test = pd.DataFrame({"prompt": [f"q{version}"], "config": ["seen"]})
    jsonl = "".join(json.dumps({"prompt": f"p{i}", "config": f"cfg {version}"}) + "\n"
                    for i in range(3))
    free_readme = ("---\nconfigs:\n- config_name: default\n  data_files:\n"
                   "  - split: test\n    path: test.jsonl\n  - split: dev\n    path: dev.jsonl\n"
                   "---\n# fixture\n")
    return (hub.add_files("ns/bench", {"README.md": readme.encode(),
                                       "data/train.parquet": _parquet(train),
                                       "data/test.parquet": _parquet(test)}),
            hub.add_files("ns/bench-free", {"README.md": free_readme.encode(),
                                            "test.jsonl": jsonl.encode(),
                                            "dev.jsonl": jsonl.encode()[: len(jsonl) // 3]}))


def test_load_dataset_by_revision_with_several_splits(hub, hub_env):
    v1, free1 = _splits_repos(hub, pd.DataFrame({"prompt": ["a", "b"], "config": ["x", "y"]}), 1)
    v2, _ = _splits_repos(hub, pd.DataFrame({"prompt": ["c"], "config": ["z"]}), 2)
    out = run_py(f"""
import json, datasets
datasets.config.USE_PARQUET_EXPORT = False  # no dataset viewer on a loopback server
old = datasets.load_dataset("ns/bench", revision={v1!r})
new = datasets.load_dataset("ns/bench", revision={v2!r})
free = datasets.load_dataset("ns/bench-free", revision={free1!r})
print(json.dumps({{"old": old["train"]["prompt"][:], "new": new["train"]["prompt"][:],
                  "splits": sorted(old), "test": old["test"]["prompt"][:],
                  "free": free["test"]["config"][:], "dev": free["dev"]["prompt"][:]}}))
""", hub_env)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["old"] == ["a", "b"] and r["new"] == ["c"], "a pinned revision must give its own data"
    assert r["splits"] == ["test", "train"] and r["test"] == ["q1"]
    assert r["free"] == ["cfg 1"] * 3 and r["dev"] == ["p0"]


def test_failed_commit_changes_nothing_and_errors_name_the_route(hub, hub_env):
    hub.add_files("ns/f", {"a.txt": b"a\n"}, repo_type="model")
    before = hub.commits("ns/f")
    hub.fail_next("commit", 1)
    out = run_py("""
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError
api = HfApi()
try:
    api.upload_file(path_or_fileobj=b"b\\n", path_in_repo="b.txt", repo_id="ns/f")
except HfHubHTTPError as exc:
    print("status", exc.response.status_code)
""", hub_env)
    assert "status 500" in out.stdout
    assert hub.commits("ns/f") == before and "b.txt" not in hub.files("ns/f")


def test_resolve_headers_ranges_and_keepalive(hub):
    data = bytes(range(256)) * 40
    sha = hub.add_files("ns/r", {"w.bin": data, "t.txt": b"hello\n"}, repo_type="model")
    conn = http.client.HTTPConnection("127.0.0.1", hub.httpd.server_address[1])
    conn.request("HEAD", "/ns/r/resolve/main/w.bin")
    head = conn.getresponse()
    head.read()
    entry = hub.files("ns/r")["w.bin"]
    assert head.status == 200 and head.getheader("X-Repo-Commit") == sha
    assert head.getheader("X-Linked-Etag") == f'"{entry["sha256"]}"'
    assert int(head.getheader("X-Linked-Size")) == len(data)
    # a rejected request with a body must not poison the kept-alive connection
    conn.request("POST", "/api/nowhere", body=b"x" * 1000)
    bad = conn.getresponse()
    bad.read()
    assert bad.status == 404
    conn.request("GET", "/ns/r/resolve/main/w.bin", headers={"Range": "bytes=10-19"})
    part = conn.getresponse()
    assert part.status == 206 and part.read() == data[10:20]
    conn.request("GET", f"/ns/r/resolve/{sha}/t.txt")
    txt = conn.getresponse()
    assert txt.read() == b"hello\n"
    assert txt.getheader("ETag") == f'"{git_blob_sha1(b"hello" + bytes([10]))}"'
    conn.request("GET", "/ns/r/resolve/main/missing.txt")
    miss = conn.getresponse()
    miss.read()
    assert miss.status == 404 and miss.getheader("X-Error-Code") == "EntryNotFound"
    conn.request("PUT", "/_lfs/" + "0" * 64, body=b"not what the oid says")
    put = conn.getresponse()
    put.read()
    assert put.status == 400 and not hub.state.has_blob("0" * 64)
    conn.close()


def test_state_survives_a_restart(tmp_path):
    with HubServer(root=tmp_path) as first:
        sha = first.add_files("ns/keep", {"a.txt": b"kept\n"})
    with HubServer(root=tmp_path) as second:
        assert second.commits("ns/keep", "dataset")[0] == sha
        assert second.state.blob_path(second.files("ns/keep", "dataset")["a.txt"]["sha256"]) \
            .read_bytes() == b"kept\n"


def test_writes_need_the_token(hub):
    conn = http.client.HTTPConnection("127.0.0.1", hub.httpd.server_address[1])
    conn.request("POST", "/api/repos/create", body=json.dumps({"name": "x", "organization": "ns"}),
                 headers={"Authorization": "Bearer wrong", "Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 401
    with pytest.raises(HubError, match="Repository not found"):
        hub.files("ns/x")
