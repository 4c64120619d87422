"""plates.openai_client against a real HTTP server on loopback: the total deadline, the body cap, no retries of
its own, and failure_kind naming what went wrong.

Covered elsewhere: the teacher retrying each kind of failure (tests/test_teach.py). The deadline here is 1 s and
the slow server drips a byte every 0.1 s for up to 30 s, so only a total deadline ends the request as a timeout;
no test measures elapsed time.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from plates.openai_client import failure_kind, make_client

COMPLETION = json.dumps({"id": "c1", "object": "chat.completion", "created": 0, "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "车牌 京A12345"}, "finish_reason": "stop"}]}).encode()
DRIP_SECONDS = 30


class Handler(BaseHTTPRequestHandler):
    """The first path segment picks the behaviour: /ok, /drip-body, /drip-headers, /big-declared, /big-undeclared,
    /not-json, /error."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        behaviour = self.path.split("/")[1]
        try:
            getattr(self, "reply_" + behaviour.replace("-", "_"))()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, status: int, body: bytes, declared: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if declared:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _drip(self, data: bytes) -> None:
        for i in range(DRIP_SECONDS * 10):
            self.wfile.write(data[i % len(data):i % len(data) + 1])
            self.wfile.flush()
            time.sleep(0.1)

    def reply_ok(self) -> None:
        self._send(200, COMPLETION)

    def reply_drip_body(self) -> None:
        body = COMPLETION[:-1] + b" " * (DRIP_SECONDS * 10) + b"}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[:len(COMPLETION) - 1])
        self._drip(b" ")

    def reply_drip_headers(self) -> None:
        self._drip(b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 4000)

    def reply_big_declared(self) -> None:
        self._send(200, b"{" + b" " * 5000 + b"}")

    def reply_big_undeclared(self) -> None:
        self._send(200, b'{"id": "' + b"x" * 5000 + b'"}', declared=False)

    def reply_not_json(self) -> None:
        self._send(200, b"<html>a proxy's login page</html>")

    def reply_error(self) -> None:
        self._send(500, b'{"error": {"message": "boom"}}')


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _ask(server, behaviour: str, **kwargs):
    client = make_client(f"http://127.0.0.1:{server.server_port}/{behaviour}/v1", "sk-test", **kwargs)
    return client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def _failure(server, behaviour: str, **kwargs) -> str | None:
    with pytest.raises(Exception) as raised:
        _ask(server, behaviour, **kwargs)
    return failure_kind(raised.value)


def test_a_completion_comes_back(server):
    reply = _ask(server, "ok", timeout=30)
    assert reply.choices[0].message.content == "车牌 京A12345"
    assert server.seen[-1] == ("POST", "/ok/v1/chat/completions", "Bearer sk-test")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("behaviour", ["drip-body", "drip-headers"])
def test_a_server_that_drips_hits_the_total_deadline(server, behaviour):
    """Each read gets a byte well within the 1 s read timeout; only the total deadline ends the request."""
    assert _failure(server, behaviour, timeout=1) == "timeout"


@pytest.mark.parametrize("behaviour", ["big-declared", "big-undeclared"])
def test_a_body_over_the_cap_is_abandoned(server, behaviour):
    assert _failure(server, behaviour, timeout=30, max_response_bytes=1000) == "too large"
    assert _ask(server, "ok", timeout=30, max_response_bytes=1000).id == "c1", "a reply under the cap is read"


def test_failure_kinds_and_no_retries(server):
    assert _failure(server, "not-json", timeout=30) == "bad response"
    before = len(server.seen)
    assert _failure(server, "error", timeout=30) is None, "a 500 is the caller's to retry, not a transport fault"
    assert len(server.seen) == before + 1, "the client itself never retries"
    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as closed:
        port = closed.server_port
    client = make_client(f"http://127.0.0.1:{port}/v1", "sk-test", timeout=30)
    with pytest.raises(Exception) as raised:
        client.models.list()
    assert failure_kind(raised.value) == "connection"
    assert failure_kind(ValueError("not about the transport")) is None
