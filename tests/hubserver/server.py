"""A loopback Hub-protocol server for tests: standard library only, never for production use.

It carries the real huggingface_hub / datasets / transformers clients end to end over HTTP
(mocking does not work: huggingface_hub 2.x talks through httpx2). Storage is content-addressed
blobs (by sha256) in a temp dir plus one JSON state file:
repos -> {private, branches, tags, commits: {sha: {parent, title, message, date, files}}},
files: path -> {sha256, size, oid (git blob sha1, or of the LFS pointer), lfs}.

Routes (what the clients call): POST /api/repos/create|delete,
GET /api/{type}s/{repo}[/revision/{rev}],
POST .../preupload/{rev}, POST .../commit/{rev} (NDJSON), POST /api/validate-yaml,
GET .../tree/{rev}[/{path}], POST .../paths-info/{rev}, GET .../refs, GET .../commits/{rev},
POST|DELETE .../branch/{name}, POST .../tag/{rev}, DELETE .../tag/{name}, GET /api/whoami-v2,
HEAD|GET /[datasets/]{repo}/resolve/{rev}/{path} (ETag, X-Repo-Commit, X-Linked-*, Range),
POST /[datasets/]{repo}.git/info/lfs/objects/batch and PUT /_lfs/{sha256} (sha256 verified).
Errors carry `X-Error-Code` so the client raises its own exception classes.

Test hooks: `fail_next(kind, n)` answers the next n requests of a kind ("commit", "lfs_put",
"lfs_batch", "preupload") with 500 and changes nothing; `tamper(...)` corrupts a stored blob;
`requests` records (method, route kind, path) of every request (never headers, so no tokens);
`add_files(repo_id, {path: bytes})` seeds a repo in one commit (fixture repos for loaders).
Not covered: real auth (one optional shared token), gated repos, pull requests, Xet, the viewer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# Files the Hub would store through LFS (from its default .gitattributes) -- "regular" for
# everything breaks `datasets`, which deletes its temp parquet before the commit is sent.
LFS_SUFFIXES = (".parquet", ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".arrow", ".gguf",
                ".h5", ".onnx", ".msgpack", ".npy", ".npz", ".pkl", ".zip", ".gz", ".zst", ".tar")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n"
                        for s in LFS_SUFFIXES).encode()
SHA1_RE = re.compile(r"^[0-9a-f]{40}$")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\n"
            f"size {size}\n").encode()


class HubError(Exception):
    """An HTTP error answer: status, the client's X-Error-Code, and a message."""

    def __init__(self, status: int, code: str | None, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class HubState:
    """Repos, refs and commits in memory (persisted to state.json), blobs on disk by sha256."""

    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        state = root / "state.json"  # a server restarted on the same root keeps its repos
        self.repos: dict[str, dict] = \
            json.loads(state.read_text())["repos"] if state.exists() else {}
        self.lock = threading.RLock()
        self.serial = sum(len(r["commits"]) for r in self.repos.values())

    # -- storage ------------------------------------------------------------------------------
    def save(self) -> None:
        tmp = self.root / "state.json.tmp"
        tmp.write_text(json.dumps({"repos": self.repos}, indent=1, sort_keys=True))
        os.replace(tmp, self.root / "state.json")

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.blobs / sha
        if not path.exists():
            tmp = path.with_suffix(".tmp%d" % threading.get_ident())
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return sha

    def has_blob(self, sha256: str) -> bool:
        return (self.blobs / sha256).exists()

    def blob_path(self, sha256: str) -> Path:
        return self.blobs / sha256

    # -- repos and revisions --------------------------------------------------------------------
    def repo(self, rtype: str, repo_id: str) -> dict:
        repo = self.repos.get(f"{rtype}/{repo_id}")
        if repo is None:
            raise HubError(404, "RepoNotFound", f"Repository not found: {rtype} {repo_id}")
        return repo

    def create_repo(self, rtype: str, repo_id: str, private: bool) -> bool:
        with self.lock:
            key = f"{rtype}/{repo_id}"
            if key in self.repos:
                return False
            repo = {"private": private, "branches": {}, "tags": {}, "commits": {},
                    "created": self.now()}
            self.repos[key] = repo
            entry = self.file_entry(GITATTRIBUTES, lfs=False)
            sha = self.add_commit(repo, None, {".gitattributes": entry}, "initial commit", "")
            repo["branches"]["main"] = sha
            self.save()
            return True

    def now(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())

    def resolve(self, repo: dict, rev: str) -> str:
        """Branch, tag, full or unique short commit sha -> commit sha (404 RevisionNotFound)."""
        for prefix in ("refs/heads/", "refs/tags/"):
            if rev.startswith(prefix):
                rev = rev[len(prefix):]
        if rev in repo["branches"]:
            return repo["branches"][rev]
        if rev in repo["tags"]:
            return repo["tags"][rev]
        if rev in repo["commits"]:
            return rev
        if len(rev) >= 7 and re.fullmatch(r"[0-9a-f]+", rev):
            hits = [c for c in repo["commits"] if c.startswith(rev)]
            if len(hits) == 1:
                return hits[0]
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")

    def file_entry(self, data: bytes, lfs: bool) -> dict:
        sha = self.put_blob(data)
        return self.lfs_entry(sha, len(data)) if lfs else {
            "sha256": sha, "size": len(data), "oid": git_blob_sha1(data), "lfs": False}

    @staticmethod
    def lfs_entry(sha256: str, size: int) -> dict:
        return {"sha256": sha256, "size": size, "oid": git_blob_sha1(lfs_pointer(sha256, size)),
                "lfs": True}

    def add_commit(self, repo: dict, parent: str | None, files: dict, title: str,
                   message: str) -> str:
        self.serial += 1
        date = self.now()
        body = json.dumps([parent, files, title, message, date, self.serial], sort_keys=True)
        sha = hashlib.sha1(body.encode()).hexdigest()
        repo["commits"][sha] = {"parent": parent, "title": title, "message": message,
                                "date": date, "files": files}
        return sha


def apply_operations(state: HubState, files: dict, ops: list[dict]) -> dict:
    """Apply NDJSON commit operations to a copy of `files`; raise HubError before any change."""
    files = dict(files)
    for op in ops:
        key, value = op.get("key"), op.get("value") or {}
        path = value.get("path", "")
        if key == "file":
            data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" \
                else value["content"].encode()
            files[path] = state.file_entry(data, lfs=False)
        elif key == "lfsFile":
            sha = value["oid"]
            if not state.has_blob(sha):
                raise HubError(422, None, f"LFS object {sha} for {path} was never uploaded")
            size = value.get("size") or state.blob_path(sha).stat().st_size
            files[path] = state.lfs_entry(sha, int(size))
        elif key == "deletedFile":
            if path not in files:
                raise HubError(404, "EntryNotFound", f"A file with this name doesn't exist: {path}")
            del files[path]
        elif key == "deletedFolder":
            prefix = path.rstrip("/") + "/"
            gone = [p for p in files if p.startswith(prefix)]
            if not gone:
                raise HubError(404, "EntryNotFound",
                               f"A folder with this name doesn't exist: {path}")
            for p in gone:
                del files[p]
        elif key == "copyFile":
            src = value.get("from") or value.get("srcPath")
            if src not in files:
                raise HubError(404, "EntryNotFound", f"Cannot copy missing file {src}")
            files[path] = dict(files[src])
        else:
            raise HubError(400, None, f"unknown commit operation {key!r}")
    return files


def tree_entries(files: dict, path: str, recursive: bool) -> list[dict]:
    """Files and folders under `path` (direct children unless recursive), Hub tree JSON."""
    prefix = path.strip("/") + "/" if path.strip("/") else ""
    out, folders = [], {}
    for p in sorted(files):
        if not p.startswith(prefix):
            continue
        rest = p[len(prefix):].split("/")
        for depth in range(1, len(rest)):
            if depth > 1 and not recursive:
                break
            folder = prefix + "/".join(rest[:depth])
            folders.setdefault(folder, []).append(p)
        if len(rest) == 1 or recursive:
            out.append(file_json(p, files[p]))
    for folder, members in folders.items():
        oid = hashlib.sha1("\n".join(files[m]["oid"] for m in members).encode()).hexdigest()
        out.append({"type": "directory", "oid": oid, "size": 0, "path": folder})
    return sorted(out, key=lambda e: (e["type"] != "directory", e["path"]))


def file_json(path: str, entry: dict) -> dict:
    info = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
    if entry["lfs"]:
        info["lfs"] = {"oid": entry["sha256"], "size": entry["size"],
                       "pointerSize": len(lfs_pointer(entry["sha256"], entry["size"]))}
    return info


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients expect
    server: "_Server"

    def log_message(self, fmt, *args):  # quiet: the test output stays readable
        pass

    # -- plumbing -----------------------------------------------------------------------------
    def read_body(self) -> bytes:
        """Read the whole body (Content-Length or chunked): leftovers would poison keep-alive."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send(self, status: int, body: bytes = b"", headers: dict | None = None,
             ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def send_json(self, obj, status: int = 200, headers: dict | None = None) -> None:
        self.send(status, json.dumps(obj).encode(), headers)

    def base_url(self) -> str:
        return f"http://{self.headers.get('Host') or '%s:%d' % self.server.server_address[:2]}"

    def do_GET(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def dispatch(self) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        body = self.read_body()
        hub: HubServer = self.server.hub
        try:
            route, handler, groups = self.match(url.path)
            hub.requests.append((self.command, route, unquote(url.path)))
            hub.check_auth(route, self.headers.get("Authorization"))
            hub.maybe_fail(route)
            handler(body, *groups)
        except HubError as exc:
            headers = {"X-Error-Code": exc.code} if exc.code else {}
            headers["X-Error-Message"] = exc.message
            self.send_json({"error": exc.message}, exc.status, headers)
        except Exception as exc:  # a bug in the fixture: make it visible to the client and the test
            self.send_json({"error": f"test hub server bug: {exc!r}"}, 500)

    ROUTES = [
        ("whoami", "GET", r"/api/whoami-v2"),
        ("validate_yaml", "POST", r"/api/validate-yaml"),
        ("create_repo", "POST", r"/api/repos/create"),
        ("delete_repo", "DELETE", r"/api/repos/delete"),
        ("info", "GET", r"/api/(models|datasets|spaces)/([^/]+/[^/]+)(?:/revision/([^/]+))?"),
        ("preupload", "POST", r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/preupload/([^/]+)"),
        ("commit", "POST", r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/commit/([^/]+)"),
        ("tree", "GET", r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?"),
        ("paths_info", "POST", r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/paths-info/([^/]+)"),
        ("refs", "GET", r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/refs"),
        ("commits", "GET", r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/commits/([^/]+)"),
        ("branch", "POST|DELETE", r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/branch/([^/]+)"),
        ("tag", "POST|DELETE", r"/api/(models|datasets|spaces)/([^/]+/[^/]+)/tag/([^/]+)"),
        ("lfs_put", "PUT", r"/_lfs/([0-9a-f]{64})"),
        ("lfs_batch", "POST", r"/(datasets/|spaces/)?([^/]+/[^/]+)\.git/info/lfs/objects/batch"),
        ("resolve", "GET|HEAD", r"/(datasets/|spaces/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)"),
    ]

    def match(self, path: str):
        if self.command == "POST" and path == "/api/repos/delete":
            return "delete_repo", self.h_delete_repo, ()
        for route, methods, pattern in self.ROUTES:
            m = re.fullmatch(pattern, path)
            if m and self.command in methods.split("|"):
                groups = tuple(unquote(g) if g is not None else None for g in m.groups())
                return route, getattr(self, "h_" + route), groups
        raise HubError(404, None, f"no route for {self.command} {path}")

    # -- api ----------------------------------------------------------------------------------
    def h_whoami(self, body):
        self.send_json({"type": "user", "id": "0" * 24, "name": self.server.hub.user,
                        "fullname": "Test User", "email": None, "orgs": [], "isPro": False,
                        "auth": {"type": "access_token",
                                 "accessToken": {"displayName": "test", "role": "write"}}})

    def h_validate_yaml(self, body):
        self.send_json({"errors": [], "warnings": []})

    def h_create_repo(self, body):
        payload = json.loads(body or b"{}")
        rtype = payload.get("type") or "model"
        ns = payload.get("organization") or self.server.hub.user
        repo_id = f"{ns}/{payload['name']}"
        private = bool(payload.get("private")) or payload.get("visibility") == "private"
        created = self.server.hub.state.create_repo(rtype, repo_id, private)
        url = f"{self.base_url()}/{PREFIX[rtype]}{repo_id}"
        if created:
            self.send_json({"url": url, "name": repo_id, "id": repo_id})
        else:
            self.send_json({"error": "You already created this repo", "url": url}, 409)

    def h_delete_repo(self, body):
        payload = json.loads(body or b"{}")
        rtype = payload.get("type") or "model"
        key = f"{rtype}/{payload.get('organization') or self.server.hub.user}/{payload['name']}"
        st = self.server.hub.state
        with st.lock:
            if key not in st.repos:
                raise HubError(404, "RepoNotFound", f"Repository not found: {key}")
            del st.repos[key]
            st.save()
        self.send_json({})

    def h_info(self, body, types, repo_id, rev):
        st = self.server.hub.state
        rtype = TYPES[types]
        with st.lock:
            repo = st.repo(rtype, repo_id)
            sha = st.resolve(repo, rev or "main")
            commit = repo["commits"][sha]
            siblings = []
            for path, e in sorted(commit["files"].items()):
                sib = {"rfilename": path, "size": e["size"], "blobId": e["oid"]}
                if e["lfs"]:
                    sib["lfs"] = {"size": e["size"], "sha256": e["sha256"],
                                  "pointerSize": len(lfs_pointer(e["sha256"], e["size"]))}
                siblings.append(sib)
        self.send_json({"_id": sha[:24], "id": repo_id, "author": repo_id.split("/")[0],
                        "sha": sha, "lastModified": commit["date"], "createdAt": repo["created"],
                        "private": repo["private"], "gated": False, "disabled": False,
                        "downloads": 0, "likes": 0, "tags": [], "siblings": siblings})

    def h_preupload(self, body, types, repo_id, rev):
        st = self.server.hub.state
        payload = json.loads(body or b"{}")
        with st.lock:
            repo = st.repo(TYPES[types], repo_id)
            try:
                files = repo["commits"][st.resolve(repo, rev)]["files"]
            except HubError:
                files = {}  # a new branch: nothing to compare against yet
        out = []
        for f in payload.get("files", []):
            sample = base64.b64decode(f.get("sample") or "")
            lfs = f["path"].lower().endswith(LFS_SUFFIXES) or f.get("size", 0) >= LFS_MIN_SIZE \
                or b"\0" in sample
            existing = files.get(f["path"])
            oid = None
            if existing is not None:  # the client skips unchanged files by comparing this oid
                oid = existing["sha256"] if lfs else existing["oid"]
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular",
                        "shouldIgnore": False, "oid": oid})
        self.send_json({"files": out, "commitOid": None})

    def h_commit(self, body, types, repo_id, rev):
        hub = self.server.hub
        st = hub.state
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next((ln["value"] for ln in lines if ln.get("key") == "header"), {})
        ops = [ln for ln in lines if ln.get("key") != "header"]
        rtype = TYPES[types]
        with st.lock:  # one lock: a commit is applied whole or not at all
            repo = st.repo(rtype, repo_id)
            if rev not in repo["branches"]:
                raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev} (not a branch)")
            head = repo["branches"][rev]
            parent = header.get("parentCommit")
            if parent and parent != head:
                raise HubError(412, None, f"A commit has happened since {parent}. Please refresh "
                                          "and try again.")
            files = apply_operations(st, repo["commits"][head]["files"], ops)
            sha = st.add_commit(repo, head, files, header.get("summary") or "update",
                                header.get("description") or "")
            repo["branches"][rev] = sha
            st.save()
        url = f"{self.base_url()}/{PREFIX[rtype]}{repo_id}/commit/{sha}"
        self.send_json({"success": True, "commitOid": sha, "commitUrl": url,
                        "pullRequestUrl": None, "commitMessage": header.get("summary")})

    def h_tree(self, body, types, repo_id, rev, path):
        st = self.server.hub.state
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        with st.lock:
            repo = st.repo(TYPES[types], repo_id)
            files = repo["commits"][st.resolve(repo, rev)]["files"]
            path = (path or "").strip("/")
            if path and path in files:
                entries = [file_json(path, files[path])]
            else:
                entries = tree_entries(files, path, recursive)
                if path and not entries:
                    raise HubError(404, "EntryNotFound", f"{path} does not exist at {rev}")
        self.send_json(entries)

    def h_paths_info(self, body, types, repo_id, rev):
        st = self.server.hub.state
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            paths = json.loads(body or b"{}").get("paths", [])
        else:
            paths = parse_qs(body.decode()).get("paths", [])
        with st.lock:
            repo = st.repo(TYPES[types], repo_id)
            files = repo["commits"][st.resolve(repo, rev)]["files"]
            out = []
            for p in paths:
                p = p.strip("/")
                if p in files:
                    out.append(file_json(p, files[p]))
                elif any(f.startswith(p + "/") for f in files):
                    members = [f for f in files if f.startswith(p + "/")]
                    oid = hashlib.sha1("\n".join(files[m]["oid"] for m in sorted(members)).encode())
                    out.append({"type": "directory", "oid": oid.hexdigest(), "size": 0, "path": p})
        self.send_json(out)

    def h_refs(self, body, types, repo_id):
        st = self.server.hub.state
        with st.lock:
            repo = st.repo(TYPES[types], repo_id)
            branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c}
                        for n, c in sorted(repo["branches"].items())]
            tags = [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c}
                    for n, c in sorted(repo["tags"].items())]
        self.send_json({"branches": branches, "converts": [], "tags": tags, "pullRequests": []})

    def h_commits(self, body, types, repo_id, rev):
        st = self.server.hub.state
        with st.lock:
            repo = st.repo(TYPES[types], repo_id)
            sha, out = st.resolve(repo, rev), []
            while sha is not None:
                c = repo["commits"][sha]
                out.append({"id": sha, "title": c["title"], "message": c["message"],
                            "date": c["date"], "authors": [{"user": self.server.hub.user}]})
                sha = c["parent"]
        self.send_json(out)

    def h_branch(self, body, types, repo_id, name):
        st = self.server.hub.state
        with st.lock:
            repo = st.repo(TYPES[types], repo_id)
            if self.command == "DELETE":
                if repo["branches"].pop(name, None) is None:
                    raise HubError(404, "RevisionNotFound", f"no branch {name}")
            else:
                if name in repo["branches"]:
                    raise HubError(409, None, f"Reference already exists: refs/heads/{name}")
                start = json.loads(body or b"{}").get("startingPoint") or "main"
                repo["branches"][name] = st.resolve(repo, start)
            st.save()
        self.send_json({})

    def h_tag(self, body, types, repo_id, rev_or_tag):
        st = self.server.hub.state
        with st.lock:
            repo = st.repo(TYPES[types], repo_id)
            if self.command == "DELETE":
                if repo["tags"].pop(rev_or_tag, None) is None:
                    raise HubError(404, "RevisionNotFound", f"no tag {rev_or_tag}")
            else:
                tag = json.loads(body or b"{}")["tag"]
                if tag in repo["tags"]:
                    raise HubError(409, None, f"Tag already exists: refs/tags/{tag}")
                repo["tags"][tag] = st.resolve(repo, rev_or_tag)
            st.save()
        self.send_json({})

    # -- lfs ----------------------------------------------------------------------------------
    def h_lfs_batch(self, body, prefix, repo_id):
        st = self.server.hub.state
        payload = json.loads(body or b"{}")
        rtype = {"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model")
        st.repo(rtype, repo_id)
        objects = []
        for obj in payload.get("objects", []):
            out = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if payload.get("operation") == "download":
                out["actions"] = {"download": {"href": f"{self.base_url()}/_lfs/{obj['oid']}"}}
            elif not st.has_blob(obj["oid"]):  # already stored -> no action, the client skips it
                out["actions"] = {"upload": {"href": f"{self.base_url()}/_lfs/{obj['oid']}"}}
            objects.append(out)
        self.send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                  ctype="application/vnd.git-lfs+json")

    def h_lfs_put(self, body, sha256):
        if hashlib.sha256(body).hexdigest() != sha256:
            raise HubError(400, None, f"sha256 mismatch for LFS object {sha256}")
        self.server.hub.state.put_blob(body)
        self.send_json({})

    # -- files --------------------------------------------------------------------------------
    def h_resolve(self, body, prefix, repo_id, rev, path):
        st = self.server.hub.state
        rtype = {"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model")
        with st.lock:
            repo = st.repo(rtype, repo_id)
            sha = st.resolve(repo, rev)
            entry = repo["commits"][sha]["files"].get(path)
        if entry is None:
            raise HubError(404, "EntryNotFound", f"{path} does not exist at {rev}")
        blob = st.blob_path(entry["sha256"])
        size = blob.stat().st_size
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes",
                   "ETag": f'"{entry["sha256"] if entry["lfs"] else entry["oid"]}"'}
        if entry["lfs"]:
            headers["X-Linked-Etag"] = f'"{entry["sha256"]}"'
            headers["X-Linked-Size"] = entry["size"]
        start, end = 0, size - 1
        rng = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "").strip())
        status = 200
        if rng and size:
            if rng.group(1):
                start = int(rng.group(1))
                end = min(int(rng.group(2)), size - 1) if rng.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start = max(0, size - int(rng.group(2)))
            if start >= size:
                raise HubError(416, None, "range not satisfiable")
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.end_headers()
        if self.command == "GET" and size:
            with open(blob, "rb") as fh:
                fh.seek(start)
                self.wfile.write(fh.read(end - start + 1))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: "HubServer"


class HubServer:
    """Start with `HubServer().start()`; `endpoint` is its http://127.0.0.1:PORT base URL."""

    def __init__(self, root: str | os.PathLike | None = None, user: str = "tester",
                 token: str | None = None):
        self._tmp = None if root else tempfile.mkdtemp(prefix="hubserver-")
        self.root = Path(root or self._tmp)
        self.state = HubState(self.root)
        self.user = user
        self.token = token  # when set, write routes need `Authorization: Bearer <token>`
        self.requests: list[tuple[str, str, str]] = []
        self._faults: dict[str, int] = {}
        self._fault_lock = threading.Lock()
        self.httpd: _Server | None = None

    @property
    def endpoint(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> "HubServer":
        self.httpd = _Server((host, port), Handler)
        self.httpd.hub = self
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         name="hubserver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- test hooks ---------------------------------------------------------------------------
    def fail_next(self, kind: str, n: int = 1) -> None:
        """Answer the next `n` requests of route `kind` with a 500 that changes nothing."""
        with self._fault_lock:
            self._faults[kind] = self._faults.get(kind, 0) + n

    def maybe_fail(self, route: str) -> None:
        with self._fault_lock:
            if self._faults.get(route, 0) > 0:
                self._faults[route] -= 1
                raise HubError(500, None, f"injected failure ({route})")

    def check_auth(self, route: str, authorization: str | None) -> None:
        writes = {"create_repo", "delete_repo", "preupload", "commit", "branch", "tag",
                  "lfs_batch", "whoami"}
        if self.token and route in writes and authorization != f"Bearer {self.token}":
            raise HubError(401, None, "Invalid credentials in Authorization header")

    def count(self, route: str) -> int:
        return sum(1 for _, r, _ in self.requests if r == route)

    def commits(self, repo_id: str, repo_type: str = "model", rev: str = "main") -> list[str]:
        """Commit shas from `rev` back to the repo's first commit."""
        with self.state.lock:
            repo = self.state.repo(repo_type, repo_id)
            sha, out = self.state.resolve(repo, rev), []
            while sha:
                out.append(sha)
                sha = repo["commits"][sha]["parent"]
            return out

    def files(self, repo_id: str, repo_type: str = "model", rev: str = "main") -> dict:
        with self.state.lock:
            repo = self.state.repo(repo_type, repo_id)
            return dict(repo["commits"][self.state.resolve(repo, rev)]["files"])

    def tags(self, repo_id: str, repo_type: str = "model") -> dict:
        with self.state.lock:
            return dict(self.state.repo(repo_type, repo_id)["tags"])

    def tamper(self, repo_id: str, path: str, repo_type: str = "model", rev: str = "main") -> None:
        """Flip one byte of a stored file (same size) as a corrupted mirror or a MITM would."""
        blob = self.state.blob_path(self.files(repo_id, repo_type, rev)[path]["sha256"])
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))

    def add_files(self, repo_id: str, files: dict[str, bytes], repo_type: str = "dataset",
                  message: str = "add files") -> str:
        """Seed a repo directly (fixture repos for loaders): one commit on main; returns its sha."""
        st = self.state
        st.create_repo(repo_type, repo_id, private=False)
        with st.lock:
            repo = st.repo(repo_type, repo_id)
            head = repo["branches"]["main"]
            new = dict(repo["commits"][head]["files"])
            for path, data in files.items():
                lfs = path.lower().endswith(LFS_SUFFIXES) or b"\0" in data[:512]
                new[path] = st.file_entry(data, lfs=lfs)
            sha = st.add_commit(repo, head, new, message, "")
            repo["branches"]["main"] = sha
            st.save()
            return sha


def client_env(endpoint: str, hf_home: str | os.PathLike, token: str = "hf_test_token") -> dict:
    """The environment the Hub clients need to talk to this server (read at import time)."""
    return {"HF_ENDPOINT": endpoint, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1",
            "HF_UPDATE_DOWNLOAD_COUNTS": "0", "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0",
            "HF_DATASETS_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "10"}
