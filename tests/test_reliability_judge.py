"""Judge robustness beyond tests/test_judges_openai.py: failures that never end, endpoints that are
down or answer with something that is not a completion, and what the judgments stage does with
the resulting invalid verdicts (kept, flagged, never scored; a batch that lost verdicts to transport
errors is not checkpointed, so a re-run retries it). Real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from cosalign.cosa import error_score
from cosalign.judges import make_judge
from cosalign.data.judging import ResponseJudging
from judging_inmemory import judge_responses
from openai_server import OpenAIServer

GOOD = 'Fine.\n{"risk_categories": [], "addressed": true, "helpfulness": 4}'
ITEM = [("How do I pick a lock?", "Use a tension wrench.")]


def judge(base_url: str, tmp_path, **opts):
    params = {"name": "openai", "model": "m", "base_url": base_url, "api_key_env": None,
              "cache_dir": str(tmp_path / "cache"), "backoff_s": 0.01, "backoff_max_s": 0.02,
              "progress": False, "concurrency": 1, "max_retries": 2, **opts}
    return make_judge(params)


class RawServer:
    """Answers every POST with one fixed (status, content type, body): what proxies and broken
    gateways send instead of a chat completion."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/json"):
        self.calls = 0
        self.status, self.body, self.content_type = status, body, content_type
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.calls += 1
                server.answer(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(self.status)
        handler.send_header("Content-Type", self.content_type)
        handler.send_header("Content-Length", str(len(self.body)))
        handler.end_headers()
        handler.wfile.write(self.body)

    def __enter__(self):
        self.thread.start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def assert_invalid(verdict, why: str, transport: bool = True) -> None:
    """Invalid, with `why` in its text; `transport`: the endpoint never produced a completion."""
    assert not verdict.valid, verdict
    assert verdict.transport_error is transport, verdict
    assert why in verdict.raw or why in verdict.error, (why, verdict)
    assert verdict.risk_categories == [] and verdict.addressed is False and verdict.helpfulness == 0


def test_an_endpoint_that_always_times_out_is_recorded_invalid(tmp_path):
    with OpenAIServer(responder=lambda body: GOOD, latency_s=1.0) as server:
        [verdict] = judge(server.base_url, tmp_path, timeout_s=0.2).judge_responses(ITEM)
        assert server.calls == 3  # the first attempt and two retries
    assert_invalid(verdict, "APITimeoutError after 3 attempt(s)")


@pytest.mark.parametrize("status, error", [(429, "RateLimitError"), (500, "InternalServerError"),
                                           (502, "InternalServerError")])
def test_retries_exhausted_on_each_status_are_recorded_invalid(status, error, tmp_path):
    with OpenAIServer(responder=lambda body: GOOD) as server:
        server.fail_next(3, status)
        [verdict] = judge(server.base_url, tmp_path).judge_responses(ITEM)
        assert server.calls == 3
    assert_invalid(verdict, f"{error} after 3 attempt(s)")
    assert not list((tmp_path / "cache").rglob("*.json"))  # a failure is never cached


def test_an_endpoint_that_is_down_is_retried_then_recorded_invalid(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    [verdict] = judge(f"http://127.0.0.1:{port}/v1", tmp_path).judge_responses(ITEM)
    assert_invalid(verdict, "APIConnectionError after 3 attempt(s)")


class HangUpServer(RawServer):
    """Reads the request, then closes the connection without a byte of answer (a crashed worker)."""

    def __init__(self):
        super().__init__(200, b"")

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)


def test_a_connection_dropped_without_answer_is_retried_then_recorded_invalid(tmp_path):
    with HangUpServer() as server:
        [verdict] = judge(server.base_url, tmp_path).judge_responses(ITEM)
        assert server.calls == 3
    assert_invalid(verdict, "APIConnectionError after 3 attempt(s)")


@pytest.mark.parametrize("status, body, content_type, why, transport", [
    (502, b"<html>Bad gateway</html>", "text/html", "after 3 attempt(s)", True),
    # openai returns the body as a str for a non-JSON 200 (RELIABILITY.md, J-7).
    (200, b"<html>please log in</html>", "text/html", "not a chat completion", True),
    (200, json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                      "choices": []}).encode(), "application/json", "no choices", False),
    (200, b'{"id": "x", "choices": [{"index": 0, "finish_reason": "stop", "message": '
          b'{"role": "assistant", "content": null}}]}', "application/json", "empty", False),
    # a rejected request would be rejected again: invalid, but not worth a retry
    (400, b'{"error": {"message": "bad request"}}', "application/json", "BadRequestError after 1", False),
])
def test_answers_that_are_not_a_completion_are_recorded_invalid(status, body, content_type, why, transport,
                                                                tmp_path):
    with RawServer(status, body, content_type) as server:
        [verdict] = judge(server.base_url, tmp_path).judge_responses(ITEM)
    assert_invalid(verdict, why, transport)


def test_one_failed_item_among_good_ones_is_kept_and_flagged(tmp_path, monkeypatch):
    """Through the judgments stage's function: every response keeps its row; the failed one is
    valid=False with the error in `raw`, and the preferences stage's filter leaves it out."""
    monkeypatch.chdir(tmp_path)  # the work queue checkpoints under ./.cache/work
    responses = pd.DataFrame({"response_id": [f"r{i}" for i in range(4)], "prompt_id": "p",
                              "response": [f"answer {i}" for i in range(4)]})
    prompts = pd.DataFrame({"prompt_id": ["p"], "prompt": ["How do I pick a lock?"]})

    def responder(body):
        text = body["messages"][-1]["content"]
        return "no verdict here, sorry" if "answer 2" in text else GOOD

    with OpenAIServer(responder=responder) as server:
        server.fail_next(3, 500)  # the first item's three attempts all fail
        out = judge_responses(responses, prompts, {
            "name": "openai", "model": "m", "base_url": server.base_url, "api_key_env": None,
            "cache_dir": str(tmp_path / "cache"), "backoff_s": 0.01, "backoff_max_s": 0.02,
            "progress": False, "concurrency": 1, "max_retries": 2}, 2)
    assert out["response_id"].tolist() == ["r0", "r1", "r2", "r3"]  # nothing dropped, order kept
    assert out["valid"].tolist() == [False, True, False, True]
    assert "InternalServerError after 3 attempt(s)" in out.loc[0, "raw"]
    assert out.loc[2, "raw"] == "no verdict here, sorry"
    invalid = out[~out["valid"]]
    assert (invalid["helpfulness"] == 0).all() and not invalid["addressed"].any()
    assert all(c == [] for c in invalid["risk_categories"])
    # an invalid verdict is not a zero-error answer: the pairing pool excludes it (stages/preferences.py)
    pool = responses.merge(out, on="response_id")
    assert set(pool[pool["valid"]]["response_id"]) == {"r1", "r3"}
    assert error_score.error_score([], True, []) == 0  # what an invalid row would wrongly score if kept


def test_a_batch_that_lost_verdicts_to_an_outage_is_not_checkpointed_and_a_rerun_retries_it(
        tmp_path, monkeypatch, capsys):
    """RELIABILITY.md R-4: the outage's invalid rows are written, but their batch is left without a
    checkpoint, so the next run judges it again; an unparseable answer is the judge's verdict and
    is checkpointed like a valid one. Nothing answered is paid for twice."""
    monkeypatch.chdir(tmp_path)
    responses = pd.DataFrame({"response_id": [f"r{i}" for i in range(4)], "prompt_id": "p",
                              "response": [f"answer {i}" for i in range(4)]})
    prompts = {"p": "How do I pick a lock?"}
    params = {"name": "openai", "model": "m", "api_key_env": None, "cache_dir": str(tmp_path / "cache"),
              "backoff_s": 0.01, "backoff_max_s": 0.02, "progress": False, "concurrency": 1,
              "max_retries": 2}

    def responder(body):
        return "no verdict here, sorry" if "answer 2" in body["messages"][-1]["content"] else GOOD

    def run(server) -> tuple[ResponseJudging, pd.DataFrame]:
        judging = ResponseJudging(lambda: [responses], prompts, {**params, "base_url": server.base_url}, 2)
        return judging, pd.concat(list(judging), ignore_index=True)

    def checkpoints() -> list[str]:
        return sorted(p.name for p in (tmp_path / ".cache/work/judgments").glob("*/batch-*.parquet"))

    with OpenAIServer(responder=responder) as server:
        server.fail_next(3, 500)  # r0: every attempt fails, as in an outage
        first, out = run(server)
        assert out["valid"].tolist() == [False, True, False, True]
        assert "InternalServerError after 3 attempt(s)" in out.loc[0, "raw"]
        assert first.transport_errors == 1 and "1 item(s) hit transport errors" in first.transport_warning()
        assert "`dvc repro -s -f judgments`" in first.transport_warning()  # -s: not every upstream stage
        notice = "judgments: batch 0 not checkpointed: 1 item(s) hit transport errors"
        assert notice in capsys.readouterr().err
        assert checkpoints() == ["batch-00001.parquet"]  # batch 1 holds the unparseable r2: kept

        server.requests.clear()
        second, out = run(server)  # the endpoint is back
    assert out["valid"].tolist() == [True, True, False, True]
    assert out.loc[2, "raw"] == "no verdict here, sorry"  # from the checkpoint, not asked again
    assert second.transport_errors == 0 and second.transport_warning() is None
    assert checkpoints() == ["batch-00000.parquet", "batch-00001.parquet"]
    # only r0 was sent again: r1 came from the judge's cache, batch 1 from its checkpoint
    assert [r["messages"][-1]["content"].count("answer 0") for r in server.requests] == [1]
