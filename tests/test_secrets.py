"""Issue 16, secret leak: an OpenAI-compatible endpoint that answers 200 with a non-JSON page
quoting the request's Authorization header. Every path that stores endpoint text (judgments'
`raw`, prompt labels, the judge cache, errors) redacts it with `core.redact.redact`; the scan
decodes parquet columns, since ZSTD hides a secret from a raw-bytes search."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from openai_server import OpenAIServer
from secret_scan import leaks

MARK = "[redacted]"  # what cosalign.core.redact.redact puts in a secret's place

KEY = "sk-proj-" + hashlib.sha256(b"issue 16 echo").hexdigest()[:40]  # built here, never a literal
HF = "hf_" + hashlib.sha256(b"issue 16 hub").hexdigest()[:34]
VERDICT = '{"risk_categories": [], "addressed": true, "helpfulness": 4}'


def judge_params(server, tmp_path) -> dict:
    return {"name": "openai", "model": "test-model", "base_url": server.base_url, "max_retries": 0,
            "backoff_s": 0.01, "backoff_max_s": 0.02, "cache_dir": str(tmp_path / "cache"), "progress": False}


def test_scan_decodes_parquet_columns_a_byte_search_misses(tmp_path):
    from cosalign.core.io import write_parquet

    write_parquet(pd.DataFrame({"raw": [f"row {i}: the page said Authorization: Bearer {KEY}"
                                        for i in range(5)]}), tmp_path / "j.parquet")
    assert KEY.encode() not in (tmp_path / "j.parquet").read_bytes()  # ZSTD: invisible as bytes
    assert leaks([tmp_path], [KEY]) == [f"{tmp_path / 'j.parquet'}: {KEY[:12]}..."]


def test_a_non_json_200_echoing_the_key_is_stored_redacted(tmp_path, monkeypatch, capsys):
    from cosalign.cosa.schemas import write_dataset
    from cosalign.data.judging import ResponseJudging

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    responses = pd.DataFrame({"response_id": ["r1", "r2"], "prompt_id": ["p1", "p1"],
                              "response": ["Sure.", "No."]})
    with OpenAIServer(responder=lambda body: VERDICT) as server:
        server.echo_auth_next(1)
        run = ResponseJudging(lambda: [responses], {"p1": "How do I pick a lock?"},
                              judge_params(server, tmp_path), 8)
        write_dataset(run, "judgments", tmp_path / "judgments.parquet")
        assert server.headers[0]["authorization"] == f"Bearer {KEY}"  # the key really went out
    from cosalign.core.io import read_parquet
    out = read_parquet(tmp_path / "judgments.parquet")
    assert out["valid"].tolist().count(False) == 1  # the page is recorded invalid, not scored
    bad = out.loc[~out["valid"], "raw"].iloc[0]
    assert "not a chat completion" in bad and f"Authorization: {MARK}" in bad and KEY not in bad
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err
    assert leaks([tmp_path], [KEY]) == []  # judgments.parquet (decoded) and the judge cache


def test_a_completion_that_quotes_the_key_is_cached_and_recorded_redacted(tmp_path, monkeypatch):
    from judging_inmemory import judge_responses

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIServer(responder=lambda body: f"I saw {KEY}.\n{VERDICT}") as server:
        out = judge_responses(pd.DataFrame({"response_id": ["r1"], "prompt_id": ["p1"], "response": ["Sure."]}),
                              pd.DataFrame({"prompt_id": ["p1"], "prompt": ["Hi"]}),
                              judge_params(server, tmp_path), 8)
    assert out["valid"].tolist() == [True] and MARK in out["raw"].iloc[0]
    assert leaks([tmp_path], [KEY]) == []


@pytest.mark.parametrize("text, kept", [
    ("Authorization: Bearer abcdefghijklmnop", "Authorization: "),
    ("{'authorization': 'Bearer abcdefghijklmnop'}", "{'authorization': '"),
    ("GET /x?api_key=abcdef123456&page=2", "GET /x?api_key="),
    ("token=abcdefgh1234", "token="),
    ("a Hub token hf_abcdefghijklmnopqrstuvwx0123 here", "a Hub token "),
    ("an OpenAI key sk-abcdefghijklmnopqrstuvwx here", "an OpenAI key "),
])
def test_redact_removes_what_credentials_look_like(text, kept):
    from cosalign.core.redact import redact

    out = redact(text)
    assert out.startswith(kept + MARK) or (kept + MARK) in out, out
    assert "abcdef" not in out


def test_redact_removes_credential_environment_values_and_keeps_plain_text(monkeypatch):
    from cosalign.core.redact import redact

    monkeypatch.setenv("HF_TOKEN", HF)
    monkeypatch.setenv("MY_SERVICE_KEY", "plainlooking-value-42")
    assert redact(f"x {HF} y plainlooking-value-42 z") == f"x {MARK} y {MARK} z"
    plain = '{"risk_categories": ["Violence"], "addressed": true, "helpfulness": 4} max_tokens: 1024'
    assert redact(plain) == plain
    assert redact("the Bearer of bad news") == "the Bearer of bad news"


def test_embedding_endpoint_page_is_reported_redacted(monkeypatch):
    from cosalign.models.embedding import embed

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIServer() as server:
        server.echo_auth_next(1)
        with pytest.raises(RuntimeError, match="not embeddings") as err:
            embed(["hi"], name="openai", model="m", base_url=server.base_url)
        with pytest.raises(RuntimeError, match="NotFoundError"):  # no /v1/embeddings here: 404
            embed(["hi"], name="openai", model="m", base_url=server.base_url)
    assert f"Authorization: {MARK}" in str(err.value) and KEY not in str(err.value)
