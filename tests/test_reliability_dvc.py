"""One real DVC run in a temporary copy of the repository, shared by two kinds of checks.

Secrets: tokens and API keys never reach params, dvc.lock, logs, artifacts, caches or reports.
The run has OPENAI_API_KEY and HF_TOKEN in its environment, and its prompt labels are judged by the
OpenAI-compatible judge against a real HTTP server on 127.0.0.1 (so the key goes out with every
request), which answers one request with a 200 HTML page quoting the Authorization header; then
every file in the copy (parquet files column by column, decoded) and every line the run printed
are searched for them.

Kills under DVC: `dvc repro responses` is SIGKILLed (DVC and the stage, the whole process group,
as a crash or an out-of-memory kill would) once a work batch is checkpointed; the next
`dvc repro responses` must get past DVC's lock, resume from the checkpoints and leave the
pipeline up to date.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from cosalign.core import profiles
from openai_server import OpenAIServer
from pipeline_run import REPO, copy_repo, env_for
from secret_scan import leaks

# Built at run time, so the copied repository (this file included) cannot hold them by accident.
OPENAI_KEY = "sk-proj-" + hashlib.sha256(b"reliability openai").hexdigest()[:40]
HF_TOKEN = "hf_" + hashlib.sha256(b"reliability hub").hexdigest()[:34]
SECRETS = (OPENAI_KEY, HF_TOKEN)
# what a leaked credential looks like, whoever's it is: OpenAI keys, Hub tokens, bearer headers
SECRET_LOOKING = re.compile(r"sk-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{30,}|Bearer\s+[A-Za-z0-9._-]{16,}")
# params keys that may name a credential's environment variable, never hold one
CREDENTIAL_KEY = re.compile(r"(api_?key|token|secret|password)$", re.IGNORECASE)
DVC = str(Path(sys.executable).parent / "dvc")


def label_verdict(body: dict) -> str:
    """A deterministic prompt labeller: zero to two seen categories picked by the text's hash."""
    from cosalign.cosa import taxonomy

    h = int(hashlib.sha256(body["messages"][-1]["content"].encode()).hexdigest(), 16)
    seen = list(taxonomy.SEEN)
    cats = sorted({seen[h % len(seen)], seen[(h // 7) % len(seen)]})[: h % 3]
    return "Labelled.\n" + json.dumps({"risk_categories": cats})


def response_batches(root: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (root / ".cache/work/responses").glob("*/batch-*.parquet")}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = copy_repo(tmp_path_factory.mktemp("dvc-run"), "tiny")
    logs = []
    with OpenAIServer(responder=label_verdict) as server:
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["prompt_labels"]["judge"] = {
            "name": "openai", "model": "test-model", "base_url": server.base_url,
            "api_key_env": "OPENAI_API_KEY", "cache_dir": ".cache/judge-openai", "progress": False}
        params["configs"]["max_train_prompts"] = 6  # a responses run of seconds, in many batches
        params["responses"].update(max_new_tokens=8, batch_size=4, work_batch_size=2)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        env = env_for(root) | {"OPENAI_API_KEY": OPENAI_KEY, "HF_TOKEN": HF_TOKEN}

        def dvc(*args, check=True):
            start = time.monotonic()
            proc = subprocess.run([DVC, *args], cwd=root, env=env, capture_output=True, text=True, timeout=600)
            print(f"dvc {' '.join(args)}: {time.monotonic() - start:.1f}s")  # shown with -s
            logs.append(proc.stdout + proc.stderr)
            assert not check or proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
            return proc

        server.echo_auth_next(1)  # a proxy's page quoting the key, answered with status 200
        dvc("repro", "prompt_labels")
        headers = list(server.headers)
    dvc("repro", "configs", "base_model")

    log = root.parent / "killed.log"
    with open(log, "wb") as out:  # a file, not a pipe: a full pipe would stall DVC before the kill
        killed = subprocess.Popen([DVC, "repro", "responses"], cwd=root, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while not response_batches(root) and killed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        os.killpg(killed.pid, signal.SIGKILL)  # DVC and its stage process together
        killed.wait()
    print(f"dvc repro responses, until killed: {time.monotonic() - deadline + 300:.1f}s")
    logs.append(log.read_text(errors="replace"))
    done = response_batches(root)
    resumed = dvc("repro", "responses")
    status = dvc("status", "responses")
    return SimpleNamespace(root=root, headers=headers, logs=logs, killed=killed, done=done,
                           resumed=resumed, status=status)


# --- kills under DVC ---------------------------------------------------------------------------

@pytest.mark.e2e
def test_dvc_repro_killed_mid_stage_resumes_and_ends_up_to_date(run):
    from cosalign.cosa import schemas
    from cosalign.core.io import read_parquet

    assert run.killed.returncode == -signal.SIGKILL, run.logs[-3]
    configs = read_parquet(run.root / "data/configs.parquet")
    total = -(-(len(configs) + configs["prompt_id"].nunique()) // 2)
    assert 1 <= len(run.done) < total  # killed mid-stage, with work checkpointed
    out = run.resumed.stdout + run.resumed.stderr
    assert f"resuming, {len(run.done)} of {total} batches already checkpointed" in out
    after = response_batches(run.root)
    assert len(after) == total and all(after[n] == m for n, m in run.done.items())
    assert schemas.validate_file(run.root / "data/responses.parquet") > 0
    assert "up to date" in run.status.stdout, run.status.stdout  # DVC sees the stage done
    assert not list((run.root / "data").glob(".*.tmp"))


# --- secrets -----------------------------------------------------------------------------------

@pytest.mark.e2e
def test_the_key_was_really_used(run):
    assert run.headers and all(h["authorization"] == f"Bearer {OPENAI_KEY}" for h in run.headers)


@pytest.mark.e2e
def test_no_file_in_the_run_holds_a_secret(run):
    root = run.root
    written = [p for p in root.rglob("*") if p.is_file() and ".git" not in p.relative_to(root).parts]
    names = {p.relative_to(root).as_posix() for p in written}
    assert {"dvc.lock", "params.yaml", "data/prompt_labels.parquet", "reports/prompt_labels.json",
            "data/responses.parquet", "models/base/model.safetensors"} <= names
    assert any(n.startswith(".cache/judge-openai/") for n in names)  # the judge cache was written
    assert leaks(written, SECRETS) == []  # parquet columns decoded: ZSTD hides raw bytes


@pytest.mark.e2e
def test_the_echoed_key_was_recorded_redacted(run):
    from cosalign.core.io import read_parquet

    raw = read_parquet(run.root / "data/prompt_labels.parquet")["raw"]
    page = [r for r in raw if "not a chat completion" in r]
    assert len(page) == 1 and "Authorization: [redacted]" in page[0], page


@pytest.mark.e2e
def test_logs_hold_no_secret(run):
    assert len(run.logs) == 5 and all(run.logs)
    for secret in SECRETS:
        assert not any(secret in log for log in run.logs)


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["params.yaml", "dvc.lock", "reports/prompt_labels.json"])
def test_run_files_hold_nothing_secret_looking(run, name):
    text = (run.root / name).read_text(encoding="utf-8")
    assert not SECRET_LOOKING.search(text), SECRET_LOOKING.search(text).group(0)


def credential_values(node, path=""):
    """(key path, value) for every params key that looks like a credential and holds a literal."""
    if isinstance(node, dict):
        for k, v in node.items():
            here = f"{path}.{k}" if path else str(k)
            if CREDENTIAL_KEY.search(str(k)) and isinstance(v, str) and v:
                yield here, v
            yield from credential_values(v, here)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from credential_values(v, f"{path}[{i}]")


@pytest.mark.parametrize("name", ["params.yaml"] + [f"profiles/{p.name}" for p in sorted((REPO / "profiles").glob("*.yaml"))])
def test_committed_params_name_credentials_by_environment_variable_only(name):
    text = (REPO / name).read_text(encoding="utf-8")
    assert not SECRET_LOOKING.search(text)
    if name.startswith("profiles/"):  # an overlay: check the complete params it makes
        profile = Path(name).stem
        text = profiles.render(profile if profile != profiles.BASE else "default", REPO)
    assert list(credential_values(yaml.safe_load(text))) == []  # keys are `*_env: VAR_NAME`


def test_credential_check_would_catch_a_literal_key():
    params = {"judgments": {"judge": {"name": "openai", "api_key": "sk-abc", "api_key_env": "OPENAI_API_KEY"}}}
    assert list(credential_values(params)) == [("judgments.judge.api_key", "sk-abc")]
    assert SECRET_LOOKING.search(f"key: {OPENAI_KEY}") and SECRET_LOOKING.search(HF_TOKEN)


class _EchoKeyServer:
    """An endpoint that answers 500 with the caller's Authorization header in the error text, as
    some proxies do: the judge must redact the key before recording the error."""

    def __init__(self):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = json.dumps({"error": {"message": f"upstream rejected {self.headers.get('Authorization')}",
                                             "type": "server_error"}}).encode()
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_an_error_that_echoes_the_key_is_recorded_redacted(tmp_path, monkeypatch, capsys):
    import pandas as pd

    from judging_inmemory import judge_responses

    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.chdir(tmp_path)
    with _EchoKeyServer() as base_url:
        out = judge_responses(
            pd.DataFrame({"response_id": ["r1"], "prompt_id": ["p1"], "response": ["Sure."]}),
            pd.DataFrame({"prompt_id": ["p1"], "prompt": ["How do I pick a lock?"]}),
            {"name": "openai", "model": "m", "base_url": base_url, "max_retries": 1, "backoff_s": 0.01,
             "backoff_max_s": 0.02, "cache_dir": str(tmp_path / "cache"), "progress": False}, 8)
    assert out["valid"].tolist() == [False]  # recorded invalid, never scored
    assert "[redacted]" in out["raw"].iloc[0] and OPENAI_KEY not in out["raw"].iloc[0]
    captured = capsys.readouterr()
    assert OPENAI_KEY not in captured.out + captured.err
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert OPENAI_KEY.encode() not in path.read_bytes(), path
