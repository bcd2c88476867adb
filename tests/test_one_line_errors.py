"""Issue 16, "tracebacks instead of one line": each case is a real `cosalign` process that must
exit 2 with one `error: ...` line on stderr naming what is wrong, and no traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from cosalign.cosa import taxonomy


def cosalign(*args, cwd, env=None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    return subprocess.run([sys.executable, "-m", "cosalign.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=base | {"HF_HUB_OFFLINE": "1"} | (env or {}))


def one_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith("error: "), lines
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def test_pull_from_an_unreachable_endpoint(tmp_path):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    line = one_line(cosalign("pull", "ns/cosalign-preferences", "--revision", "abc", cwd=tmp_path,
                             env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": endpoint}))
    assert line.startswith(f"error: ns/cosalign-preferences@abc: cannot reach the Hub at {endpoint} ")
    assert not (tmp_path / "data").exists()


def test_pull_in_offline_mode(tmp_path):
    line = one_line(cosalign("pull", "ns/cosalign-preferences", "--revision", "abc", cwd=tmp_path))
    assert "cannot reach the Hub" in line and "OfflineModeIsEnabled" in line


def test_config_new_with_a_missing_text_file(tmp_path):
    line = one_line(cosalign("config", "new", "studio", "--owner", "alice", "--text-file", "nope.txt",
                             cwd=tmp_path))
    assert line.startswith("error: nope.txt: ") and line.endswith("does not exist")
    assert not (tmp_path / "safety_configs").exists() or not any((tmp_path / "safety_configs").rglob("*.yaml"))


@pytest.mark.parametrize("model", ["models/missing-checkpoint", "./nowhere", "ns/not-on-this-machine"])
def test_serve_with_a_missing_model(model, tmp_path):
    (tmp_path / "keys.yaml").write_text("keys: {}\n")
    (tmp_path / "safety_configs").mkdir()  # the registry exists: only the model is missing
    line = one_line(cosalign("serve", "--model", model, "--keys", "keys.yaml", cwd=tmp_path))
    assert line.startswith(f"error: {model}: ")


def test_taxonomy_json_with_a_null_category(tmp_path):
    cats = taxonomy.PAPER.as_dicts()
    (tmp_path / "taxonomy.json").write_text(json.dumps({"categories": cats[:2] + [None] + cats[2:]}))
    proc = cosalign("validate", "taxonomy.json", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.splitlines() == [
        "taxonomy.json: row 3: must be an object with name, description, seen, allowable [categories]: None",
        "taxonomy.json: 1 failing rows (schema taxonomy)"]
