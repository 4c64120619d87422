"""`plates teach`: template modes end to end, and the openai backend against a real local HTTP server that
speaks the chat-completions protocol and injects faults (429 with Retry-After, 500, slow answers, dropped
connections, bad keys). The helpers here (records, FakeOpenAI) are shared with test_teach_resume.py."""

from __future__ import annotations

import base64
import json
import random
import re
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from plates.cli import main
from plates.teaching.prompts import load_prompts

# --- helpers ------------------------------------------------------------------------------------------------


def make_records(folder: Path, n: int, *, seed: int = 0, size: tuple[int, int] = (160, 120)) -> Path:
    """``n`` records with OpenCV-drawn images named in the seed's grammar (colons, full-width colons, CJK,
    spaces in the folder), one with no plate and one with two; returns the records file."""
    import cv2

    from plates.synth import draw_vehicle, random_labels, seed_filename

    rng = random.Random(seed)
    root = folder / "dump with space"
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(n):
        plates = 0 if index == 1 else 2 if index == 2 else 1
        labels = random_labels(rng, plates=plates)
        name = seed_filename(labels, [f"{index:08d}", f"car{1000 + index}"])
        if index % 3 == 0:
            name = name.replace(":", "：")
        ok, data = cv2.imencode(".jpg", draw_vehicle(labels, size[0], size[1], rng))
        assert ok
        (root / name).write_bytes(data.tobytes())
        lines.append({"image": name, "root": str(root), "format": "seed", "width": size[0], "height": size[1],
                      "channels": 3, "labels": labels, "ids": [f"{index:08d}"], "warnings": []})
    path = folder / "records.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plate_reply(body: dict) -> str:
    """What the fake teacher answers: the labelled plate numbers found in the prompt (so describe passes the
    gate), or a plain sentence without any plate."""
    texts = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        else:
            texts += [part.get("text", "") for part in content or [] if part.get("type") == "text"]
    numbers = re.findall(r"车牌号码=([^,\n]+)", "\n".join(texts))
    numbers = [n for n in numbers if n != "未知"]
    return "车牌号码为" + "、".join(numbers) + "。" if numbers else "图中是一辆车。"


class FakeOpenAI:
    """A real HTTP/1.1 server on 127.0.0.1 implementing /v1/models and /v1/chat/completions.

    ``faults`` is consumed one per chat request: '429' (with Retry-After), '500', 'slow' (answers after
    ``slow_seconds``), 'drop' (closes the connection without answering), '401', the hostile ones - 'drip'
    (headers, then a body one byte every 50 ms for hours), 'drip-headers' (the status line and headers that
    slowly), 'html' (a 200 whose body is not JSON), 'huge' (a 200 JSON completion of 9 MB), 'long' (a valid
    completion whose text is 60,000 characters) - or 'ok'. :meth:`hold` makes answers wait until
    released, so a test can act while a known number of answers has been sent."""

    def __init__(self, *, latency: float = 0.0, faults=(), retry_after: str = "1", slow_seconds: float = 3.0,
                 model: str = "fake-teacher", reply=plate_reply):
        self.latency = latency
        self.faults = list(faults)
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds
        self.model = model
        self.reply = reply
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.allowed: int | None = None  # answers still allowed before answers wait (None: no limit)
        self.gate = threading.Condition(self.lock)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _client_gone(self) -> bool:
                readable, _, _ = select.select([self.connection], [], [], 0)
                try:
                    return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    return True

            def _hostile(self, fault: str) -> None:
                try:
                    if fault == "drip-headers":
                        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100000:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(0.05)
                        return
                    data = b"<html><body>502 Bad Gateway</body></html>" if fault == "html" else None
                    if fault == "huge":
                        data = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                           "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                               "role": "assistant", "content": "a" * (9 << 20)}}]}).encode()
                    if fault == "drip":
                        data = b'{"id": "x", ' + b" " * 100000 + b"}"
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    if fault == "huge":  # no length announced: the cap must count what arrives
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    else:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if fault != "drip":
                        self.wfile.write(data)
                        return
                    for byte in data:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.05)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up, as it should

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model",
                                                                 "created": 0, "owned_by": "test"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server.lock:
                    fault = server.faults.pop(0) if server.faults else "ok"
                    server.requests.append({"time": time.monotonic(), "fault": fault, "body": body,
                                            "authorization": self.headers.get("Authorization")})
                if fault == "drop":
                    self.close_connection = True
                    return
                if fault == "429":
                    self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                               {"Retry-After": server.retry_after})
                    return
                if fault == "500":
                    self._send(500, {"error": {"message": "boom"}})
                    return
                if fault == "401":
                    self._send(401, {"error": {"message": "invalid api key"}})
                    return
                if fault in ("drip", "drip-headers", "html", "huge"):
                    self._hostile(fault)
                    return
                with server.gate:
                    while server.allowed is not None:
                        if self._client_gone():  # a killed client's request takes no answer from the next one
                            self.close_connection = True
                            return
                        if server.allowed > 0:
                            break
                        server.gate.wait(timeout=0.05)
                    if server.allowed is not None:
                        server.allowed -= 1
                time.sleep(server.slow_seconds if fault == "slow" else server.latency)
                text = "车" * 60000 if fault == "long" else server.reply(body)
                try:
                    self._send(200, {
                        "id": f"chatcmpl-{len(server.requests)}", "object": "chat.completion", "created": 0,
                        "model": body.get("model"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 100, "completion_tokens": len(text or ""),
                                  "total_tokens": 100 + len(text or "")},
                    })
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "FakeOpenAI":
        self.thread.start()
        return self

    def hold(self, answers: int | None) -> None:
        """Let ``answers`` more chat requests be answered, then make the next ones wait (None: no limit)."""
        with self.gate:
            self.allowed = answers
            self.gate.notify_all()

    def __exit__(self, *exc) -> None:
        self.hold(None)
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def chat_requests(self) -> list[dict]:
        with self.lock:
            return list(self.requests)


def teach(records: Path, out: Path, *args: str) -> int:
    return main(["teach", str(records), "-o", str(out), *args])


def openai_args(server: FakeOpenAI, *extra: str) -> list[str]:
    return ["--backend", "openai", "--base-url", server.url, "--model", "auto", "--api-key-env", "PLATES_TEST_KEY",
            *extra]


@pytest.fixture
def records(tmp_path) -> Path:
    return make_records(tmp_path, 8)


# --- template backend ---------------------------------------------------------------------------------------

def test_template_modes_end_to_end(records, tmp_path, capsys):
    out = tmp_path / "teacher.jsonl"
    for mode in ("describe", "caption", "fuse", "reason"):
        assert teach(records, out, "--mode", mode) == 0
    lines = read_lines(out)
    images = [json.loads(line)["image"] for line in records.read_text(encoding="utf-8").splitlines()]
    for mode in ("describe", "caption", "fuse", "reason"):
        of_mode = [line for line in lines if line["mode"] == mode]
        assert sorted(line["image"] for line in of_mode) == sorted(images)
        for line in of_mode:
            assert line["verdict"] == "ok", line
            assert line["backend"] == "template" and line["model"] == "template-v1"
            assert line["prompt_version"] == "v1" and line["text"]
    assert len({line["key"] for line in lines}) == len(lines) == 4 * len(images)
    by = {(line["image"], line["mode"]): line for line in lines}
    prompts = load_prompts()
    for image in images:
        assert by[image, "caption"]["question"] in prompts.questions
        assert by[image, "fuse"]["question"] == by[image, "caption"]["question"]
        assert by[image, "fuse"]["inputs"] == {"describe": by[image, "describe"]["key"],
                                               "caption": by[image, "caption"]["key"]}
        assert by[image, "fuse"]["text"].startswith(by[image, "describe"]["text"])
        assert by[image, "reason"]["question"] is None
    no_plate = next(line for line in lines if line["mode"] == "describe" and "车牌属性0" not in line["image"])
    assert "车牌" in no_plate["text"]  # says there is no plate
    summary = capsys.readouterr().err
    assert "done       8  (ok 8, flagged 0)" in summary


def test_template_is_deterministic_and_varied(records, tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert teach(records, first, "--mode", "describe") == 0
    assert teach(records, second, "--mode", "describe") == 0
    assert sorted(read_lines(first), key=lambda l: l["key"]) == sorted(read_lines(second), key=lambda l: l["key"])
    texts = [line["text"] for line in read_lines(first)]
    openings = {text[:4] for text in texts}
    assert len(openings) > 1 and len(set(texts)) == len(texts)


def test_rerun_skips_done_and_limit(records, tmp_path, capsys):
    out = tmp_path / "teacher.jsonl"
    assert teach(records, out, "--mode", "describe", "--limit", "3") == 0
    assert len(read_lines(out)) == 3
    before = out.read_bytes()
    assert teach(records, out, "--mode", "describe") == 0
    assert out.read_bytes().startswith(before)
    assert len(read_lines(out)) == 8
    capsys.readouterr()
    summary_file = tmp_path / "summary.json"
    assert teach(records, out, "--mode", "describe", "--summary", str(summary_file)) == 0
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    assert (summary["done"], summary["skipped"], summary["failed"]) == (0, 8, 0)
    assert len(read_lines(out)) == 8


def test_changed_labels_or_prompts_are_taught_again(records, tmp_path):
    out = tmp_path / "teacher.jsonl"
    assert teach(records, out, "--mode", "describe") == 0
    rows = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()]
    rows[0]["labels"]["车辆属性"]["车辆颜色"] = "紫色"
    records.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    source = load_prompts().source
    (prompts / "template.yaml").write_text((source / "template.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (prompts / "prompts.yaml").write_text(
        (source / "prompts.yaml").read_text(encoding="utf-8").replace("version: v1", "version: v1-test"),
        encoding="utf-8")
    assert teach(records, out, "--mode", "describe") == 0
    assert len(read_lines(out)) == 9  # only the relabelled record
    assert "紫色" in read_lines(out)[-1]["text"]
    assert teach(records, out, "--mode", "describe", "--prompts", str(prompts)) == 0
    lines = read_lines(out)
    assert len(lines) == 17 and {line["prompt_version"] for line in lines[9:]} == {"v1-test"}


def test_duplicate_records_are_taught_once(records, tmp_path):
    doubled = tmp_path / "doubled.jsonl"
    doubled.write_text(records.read_text(encoding="utf-8") * 2, encoding="utf-8")
    out = tmp_path / "teacher.jsonl"
    summary_file = tmp_path / "summary.json"
    assert teach(doubled, out, "--mode", "caption", "--concurrency", "4", "--summary", str(summary_file)) == 0
    assert len(read_lines(out)) == 8
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    # the second copy is either seen as done already (skipped) or caught at the write (duplicate)
    assert summary["done"] == 8 and summary["skipped"] + summary["duplicates"] == 8


def test_fuse_needs_describe_and_caption(records, tmp_path, capsys):
    out = tmp_path / "teacher.jsonl"
    assert teach(records, out, "--mode", "fuse") == 1
    err = capsys.readouterr().err
    assert "failed     8" in err and "fuse needs an ok describe and a caption output" in err
    assert not read_lines(out)
    other = tmp_path / "describe_caption.jsonl"
    assert teach(records, other, "--mode", "describe") == 0
    assert teach(records, other, "--mode", "caption") == 0
    assert teach(records, out, "--mode", "fuse", "--inputs", str(other)) == 0
    assert [line["mode"] for line in read_lines(out)] == ["fuse"] * 8


def test_user_errors(records, tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    assert teach(tmp_path / "missing.jsonl", out, "--mode", "describe") == 2
    assert teach(records, out, "--mode", "describe", "--backend", "openai") == 2
    assert teach(records, out, "--mode", "describe", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1") == 2
    assert teach(records, out, "--mode", "describe", "--inputs", str(records)) == 2
    assert teach(records, out, "--mode", "describe", "--prompts", str(tmp_path)) == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": 3}\n', encoding="utf-8")
    assert teach(bad, out, "--mode", "describe") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "needs --base-url" in err and "needs --model" in err and "prompts.yaml: no such file" in err


def test_missing_image_fails_and_is_reported(records, tmp_path, capsys):
    first = json.loads(records.read_text(encoding="utf-8").splitlines()[0])
    (Path(first["root"]) / first["image"]).unlink()
    out = tmp_path / "teacher.jsonl"
    assert teach(records, out, "--mode", "describe") == 1
    err = capsys.readouterr().err
    assert "image file not found" in err and first["image"] in err
    assert len(read_lines(out)) == 7


# --- openai backend against a local server ------------------------------------------------------------------

def test_openai_backend_real_http(records, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLATES_TEST_KEY", "sk-test-secret-4711")
    out = tmp_path / "teacher.jsonl"
    with FakeOpenAI(latency=0.05) as server:
        code = teach(records, out, "--mode", "describe", "--concurrency", "4", "--max-pixels", "5000",
                     *openai_args(server))
    assert code == 0
    err = capsys.readouterr().err
    lines = read_lines(out)
    assert len(lines) == 8
    assert {line["backend"] for line in lines} == {"openai"} and {line["model"] for line in lines} == {"fake-teacher"}
    assert all(line["verdict"] == "ok" for line in lines if "车牌属性0" in line["image"])
    assert all(line["usage"]["prompt_tokens"] == 100 for line in lines)
    completion = sum(line["usage"]["completion_tokens"] for line in lines)
    assert f"tokens     800 prompt + {completion} completion" in err
    requests = server.chat_requests
    assert len(requests) == 8
    assert {r["authorization"] for r in requests} == {"Bearer sk-test-secret-4711"}
    assert "sk-test-secret-4711" not in out.read_text(encoding="utf-8") + err
    import cv2
    import numpy as np

    for request in requests:
        system, user = request["body"]["messages"]
        assert system["role"] == "system"
        image_part, text_part = user["content"]
        assert "车辆属性:" in text_part["text"]  # describe: the labels are in the prompt
        url = image_part["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        image = cv2.imdecode(np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] * image.shape[1] <= 5000
        assert request["body"]["model"] == "fake-teacher"


def test_caption_sends_a_pooled_question_and_no_labels(records, tmp_path):
    out = tmp_path / "teacher.jsonl"
    with FakeOpenAI() as server:
        assert teach(records, out, "--mode", "caption", *openai_args(server)) == 0
    prompts = load_prompts()
    for request in server.chat_requests:
        text = request["body"]["messages"][-1]["content"][1]["text"]
        assert text in prompts.questions and "车牌号码" not in text
    # the fake teacher writes no plate for captions, so the gate flags them
    assert {tuple(line["reasons"][0].split(":")[:1]) for line in read_lines(out) if "车牌属性0" in line["image"]} == {
        ("plate_missing",)}


def test_fuse_is_text_only(records, tmp_path):
    out = tmp_path / "teacher.jsonl"
    assert teach(records, out, "--mode", "describe") == 0
    assert teach(records, out, "--mode", "caption") == 0
    with FakeOpenAI() as server:
        assert teach(records, out, "--mode", "fuse", *openai_args(server)) == 0
    for request in server.chat_requests:
        content = request["body"]["messages"][-1]["content"]
        assert isinstance(content, str) and "描述一:" in content and "描述二:" in content


@pytest.mark.parametrize("fault,retry_kind", [("500", "500"), ("drop", "connection"), ("429", "429")])
def test_transient_faults_are_retried(records, tmp_path, capsys, fault, retry_kind):
    out = tmp_path / "teacher.jsonl"
    with FakeOpenAI(faults=[fault, fault], retry_after="1") as server:
        code = teach(records, out, "--mode", "describe", "--concurrency", "1", "--limit", "2", *openai_args(server))
    assert code == 0
    assert len(read_lines(out)) == 2
    requests = server.chat_requests
    assert [r["fault"] for r in requests] == [fault, fault, "ok", "ok"]
    assert f"retries: {retry_kind} 2" in capsys.readouterr().err
    if fault == "429":  # Retry-After: 1 honoured, twice
        assert requests[1]["time"] - requests[0]["time"] >= 1.0
        assert requests[2]["time"] - requests[1]["time"] >= 1.0


@pytest.mark.parametrize("fault", ["drip", "drip-headers"])
def test_timeout_is_total_not_per_read(records, tmp_path, capsys, fault):
    """A server sending its reply (or its headers) one byte every 50 ms never lets a per-read timeout fire; the
    total deadline ends each attempt, the request is retried, and the run ends instead of taking hours."""
    out = tmp_path / "teacher.jsonl"
    started = time.monotonic()
    with FakeOpenAI(faults=[fault, fault]) as server:
        code = teach(records, out, "--mode", "describe", "--limit", "1", "--timeout", "1", "--retries", "1",
                     *openai_args(server))
    assert time.monotonic() - started < 120  # the drip alone would take 5000 s
    err = capsys.readouterr().err
    assert code == 1 and not read_lines(out)
    assert "timeout: no complete answer within 1 s, 2 attempts" in err and "Traceback" not in err
    assert [r["fault"] for r in server.chat_requests] == [fault, fault]


@pytest.mark.parametrize("fault,kind,reason", [
    ("html", "bad response", "bad response: not a JSON chat completion, 2 attempts"),
    ("huge", "too large", "response too large: over 8 MB, 2 attempts")])
def test_bad_or_huge_body_is_a_failed_request_retried_like_a_5xx(records, tmp_path, capsys, fault, kind, reason):
    out = tmp_path / "teacher.jsonl"
    with FakeOpenAI(faults=[fault, fault, fault]) as server:
        code = teach(records, out, "--mode", "describe", "--limit", "2", "--concurrency", "1", "--retries", "1",
                     *openai_args(server))
        assert [r["fault"] for r in server.chat_requests] == [fault, fault, fault, "ok"]
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"retries: {kind} 3" in err and reason in err
    lines = read_lines(out)
    assert len(lines) == 1 and len(lines[0]["text"]) < 1000  # the second record, once the server behaved


def test_a_reply_over_the_cap_is_not_stored(records, tmp_path, capsys):
    out = tmp_path / "teacher.jsonl"
    with FakeOpenAI(faults=["long"]) as server:
        code = teach(records, out, "--mode", "describe", "--limit", "2", "--concurrency", "1", "--max-tokens", "256",
                     *openai_args(server))
    err = capsys.readouterr().err
    assert code == 1 and "reply too long: over 4096 characters (the server ignored --max-tokens 256)" in err
    assert [line["text"] for line in read_lines(out)] == [plate_reply(server.chat_requests[1]["body"])]


def test_model_auto_against_a_server_that_is_not_openai(records, tmp_path, capsys):
    class NotJSON(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"<html>login page</html>")

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), NotJSON)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        code = teach(records, tmp_path / "out.jsonl", "--mode", "describe", "--backend", "openai", "--base-url",
                     f"http://127.0.0.1:{httpd.server_address[1]}/v1", "--model", "auto")
    finally:
        httpd.shutdown()
        httpd.server_close()
    err = capsys.readouterr().err
    assert code == 2 and "--model auto: cannot list models" in err and "Traceback" not in err


def test_timeout_is_retried(records, tmp_path, capsys):
    out = tmp_path / "teacher.jsonl"
    with FakeOpenAI(faults=["slow"], slow_seconds=2.0) as server:
        code = teach(records, out, "--mode", "describe", "--limit", "1", "--timeout", "0.5", *openai_args(server))
    assert code == 0 and len(read_lines(out)) == 1
    assert [r["fault"] for r in server.chat_requests] == ["slow", "ok"]
    assert "retries: timeout 1" in capsys.readouterr().err


def test_gives_up_then_a_rerun_finishes(records, tmp_path, capsys):
    out = tmp_path / "teacher.jsonl"
    with FakeOpenAI(faults=["500"] * 3) as server:
        code = teach(records, out, "--mode", "describe", "--limit", "3", "--concurrency", "1", "--retries", "2",
                     *openai_args(server))
    assert code == 1
    err = capsys.readouterr().err
    assert "failed     1" in err and "HTTP 500, 3 attempts" in err
    assert len(read_lines(out)) == 2
    with FakeOpenAI() as server:
        assert teach(records, out, "--mode", "describe", "--limit", "3", *openai_args(server)) == 0
        assert len(server.chat_requests) == 1
    assert len(read_lines(out)) == 3


def test_undecodable_image_and_bad_response_fail_cleanly(records, tmp_path, capsys):
    first = json.loads(records.read_text(encoding="utf-8").splitlines()[0])
    (Path(first["root"]) / first["image"]).write_bytes(b"\0not a jpeg")
    out = tmp_path / "teacher.jsonl"
    with FakeOpenAI() as server:
        assert teach(records, out, "--mode", "describe", "--limit", "2", *openai_args(server)) == 1
        assert len(server.chat_requests) == 1  # nothing sent for the broken image
    assert "image cannot be decoded" in capsys.readouterr().err
    with FakeOpenAI(reply=lambda body: None) as server:  # 'content': null is valid; an empty text is flagged
        assert teach(records, tmp_path / "empty.jsonl", "--mode", "caption", "--limit", "3", "--concurrency", "1",
                     *openai_args(server)) == 1
    lines = read_lines(tmp_path / "empty.jsonl")
    assert len(lines) == 2 and all(line["reasons"] == ["empty: no text"] for line in lines)


def test_systematic_failure_stops_early(tmp_path, capsys):
    records = make_records(tmp_path, 30)
    out = tmp_path / "teacher.jsonl"
    assert teach(records, out, "--mode", "fuse", "--concurrency", "1") == 2
    err = capsys.readouterr().err
    assert "stopped early: the first 20 records all failed the same way: fuse needs" in err
    # no record starts once the stop is decided: exactly 20 at --concurrency 1, every record accounted for
    failed = int(re.search(r"failed +(\d+)", err).group(1))
    not_started = int(re.search(r"not started (\d+)", err).group(1))
    assert (failed, not_started) == (20, 10)


def test_early_stop_lets_only_records_in_flight_finish(tmp_path, capsys):
    records = make_records(tmp_path, 60)
    out = tmp_path / "teacher.jsonl"
    assert teach(records, out, "--mode", "fuse", "--concurrency", "4") == 2
    err = capsys.readouterr().err
    failed = int(re.search(r"failed +(\d+)", err).group(1))
    not_started = int(re.search(r"not started (\d+)", err).group(1))
    assert 20 <= failed <= 20 + 3 and failed + not_started == 60


def test_bad_key_stops_the_run(records, tmp_path, capsys):
    out = tmp_path / "teacher.jsonl"
    with FakeOpenAI(faults=["401"] * 100) as server:
        code = teach(records, out, "--mode", "describe", "--concurrency", "2", *openai_args(server))
    assert code == 2
    err = capsys.readouterr().err
    assert "stopped early: HTTP 401" in err and "Traceback" not in err
    assert len(server.chat_requests) <= 2  # the two in flight when the key was refused; no record starts after


def test_base_urls_round_robin(records, tmp_path):
    out = tmp_path / "teacher.jsonl"
    with FakeOpenAI() as first, FakeOpenAI() as second:
        args = ["--backend", "openai", "--base-url", first.url, "--base-url", second.url, "--model", "fake-teacher"]
        assert teach(records, out, "--mode", "describe", "--concurrency", "2", *args) == 0
        assert len(first.chat_requests) == len(second.chat_requests) == 4


def test_rpm_limits_the_request_rate(records, tmp_path):
    out = tmp_path / "teacher.jsonl"
    with FakeOpenAI() as server:
        assert teach(records, out, "--mode", "describe", "--limit", "5", "--concurrency", "5", "--rpm", "600",
                     *openai_args(server)) == 0
        times = sorted(r["time"] for r in server.chat_requests)
    assert len(times) == 5 and times[-1] - times[0] >= 4 * 0.1 * 0.9
