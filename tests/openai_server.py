"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests (stdlib http.server in a thread).

Serves POST /v1/chat/completions and GET /v1/models. A responder function decides each reply's
content from the request body; faults are scripted per call (status codes for the next N calls,
extra latency, or a 200 whose body is not JSON and echoes the request's Authorization header, as
a proxy's error page may); every request is counted and recorded (body and headers).

    with OpenAIServer(responder=lambda body: '{"risk_categories": []}') as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k")
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _completion(content, model: str, finish_reason: str = "stop", refusal=None) -> dict:
    return {
        "id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                     "message": {"role": "assistant", "content": content, "refusal": refusal}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class OpenAIServer:
    def __init__(self, responder=None, latency_s: float = 0.0):
        # responder(body) -> str content, or a dict with content / finish_reason / refusal
        self.responder = responder or (lambda body: '{"risk_categories": []}')
        self.latency_s = latency_s
        self.calls = 0  # every POST to /v1/chat/completions, faults included
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self._faults: deque = deque()  # ("status", code) or ("sleep", seconds) per upcoming call
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, address: None  # a client that timed out hung up
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def fail_next(self, n: int, status: int = 429) -> None:
        with self._lock:
            self._faults.extend([("status", status)] * n)

    def delay_next(self, n: int, seconds: float) -> None:
        with self._lock:
            self._faults.extend([("sleep", seconds)] * n)

    def echo_auth_next(self, n: int) -> None:
        """The next `n` calls get a 200 HTML page that quotes their Authorization header."""
        with self._lock:
            self._faults.extend([("echo_auth", 0)] * n)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, obj: dict, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _echo_auth(self):
                page = (f"<html><body>Proxy sign-in required. Your request carried "
                        f"Authorization: {self.headers.get('Authorization')}</body></html>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def do_GET(self):
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [
                        {"id": "test-model", "object": "model", "created": 0, "owned_by": "test"}]})
                else:
                    self._send(404, {"error": {"message": "not found", "type": "not_found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                if self.path.rstrip("/") != "/v1/chat/completions":  # e.g. /v1/embeddings
                    with server._lock:
                        echo = bool(server._faults) and server._faults[0][0] == "echo_auth"
                        if echo:
                            server._faults.popleft()
                    if echo:
                        return self._echo_auth()
                    return self._send(404, {"error": {"message": "not found"}})
                with server._lock:
                    server.calls += 1
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    fault = server._faults.popleft() if server._faults else None
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.latency_s + (fault[1] if fault and fault[0] == "sleep" else 0))
                    if fault and fault[0] == "echo_auth":
                        return self._echo_auth()
                    if fault and fault[0] == "status":
                        # retry-after 0 so the client's own logic (if any) would not wait either
                        return self._send(fault[1], {"error": {"message": f"injected {fault[1]}",
                                                               "type": "test_fault"}},
                                          {"retry-after": "0"})
                    reply = server.responder(body)
                    if isinstance(reply, str):
                        reply = {"content": reply}
                    self._send(200, _completion(reply.get("content"), body.get("model", ""),
                                                reply.get("finish_reason", "stop"),
                                                reply.get("refusal")))
                finally:
                    with server._lock:
                        server.in_flight -= 1

        return Handler
