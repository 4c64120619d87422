"""`plates predict --endpoint URL`: images answered through running OpenAI-compatible servers, each exactly once,
with teach's concurrency, retries and append-only output; against loopback servers (the chat-completions fake
of test_teach.py, and two real `plates serve` processes on the tiny model)."""

from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path

import pytest

from helpers import serving
from plates.cli import main
from test_teach import FakeOpenAI, read_lines


def drawn_images(folder: Path, n: int) -> list[str]:
    from plates.dump import iter_files
    from plates.synth import make_dump

    make_dump(folder, n, seed=3)
    return sorted(str(folder / name) for name in iter_files(folder))


def test_two_endpoints_answer_every_image_once_and_a_rerun_adds_nothing(tmp_path, capsys):
    images = drawn_images(tmp_path / "new images", 6)
    out = tmp_path / "preds.jsonl"
    with FakeOpenAI(faults=["500", "html"]) as first, FakeOpenAI() as second:
        argv = ["predict", str(tmp_path / "new images"), "-o", str(out), "--endpoint", first.url,
                "--endpoint", second.url, "--concurrency", "2"]
        assert main(argv) == 0
        err = capsys.readouterr().err
        lines = read_lines(out)
        assert sorted(line["image"] for line in lines) == images and len({line["key"] for line in lines}) == 6
        assert all(line["model"] == "fake-teacher" and line["decoding"] == "server" for line in lines)
        assert first.chat_requests and second.chat_requests  # both endpoints answered
        assert len(first.chat_requests) + len(second.chat_requests) == 6 + 2  # the 500 and the bad body retried
        assert "through 2 endpoint(s)" in err and "Traceback" not in err
        before = len(first.chat_requests) + len(second.chat_requests)
        assert main(argv) == 0
        assert "skipped       6" in capsys.readouterr().err
        assert len(first.chat_requests) + len(second.chat_requests) == before
    assert read_lines(out) == lines


def test_unreachable_endpoint_and_local_options_are_one_line_errors(tmp_path, capsys):
    drawn_images(tmp_path / "imgs", 1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once the socket is closed
    out = tmp_path / "preds.jsonl"
    assert main(["predict", str(tmp_path / "imgs"), "-o", str(out), "--endpoint", f"http://127.0.0.1:{port}/v1",
                 "--timeout", "5"]) == 2
    err = capsys.readouterr().err
    assert f"http://127.0.0.1:{port}/v1: cannot list its models" in err and "Traceback" not in err
    assert not out.exists()
    with FakeOpenAI() as server:
        assert main(["predict", str(tmp_path / "imgs"), "-o", str(out), "--endpoint", server.url,
                     "--gpus", "0"]) == 2
    assert "--gpus: not used with --endpoint" in capsys.readouterr().err


def test_dry_run_shows_the_plan_without_contacting_a_server(tmp_path, capsys):
    drawn_images(tmp_path / "imgs", 3)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there: a dry run must not try
    out = tmp_path / "preds.jsonl"
    assert main(["predict", str(tmp_path / "imgs"), "-o", str(out), "--endpoint", f"http://127.0.0.1:{port}/v1",
                 "--endpoint", "http://user:s3cret@10.0.0.9:8000/v1", "--concurrency", "8", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "would answer 3 images through 2 endpoint(s)" in err and "8 requests in flight" in err
    assert f"http://127.0.0.1:{port}/v1" in err and "http://***@10.0.0.9:8000/v1" in err and "s3cret" not in err
    assert not out.exists()
    assert main(["predict", str(tmp_path / "imgs"), "-o", str(out), "--endpoint", f"http://127.0.0.1:{port}/v1",
                 "--nnodes", "2", "--dry-run"]) == 2
    assert "--nnodes: not used with --endpoint" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_real_plates_serve_processes_answer_every_image_once(tiny_model_dir, tmp_path, capsys):
    images = drawn_images(tmp_path / "imgs", 8)
    with contextlib.ExitStack() as stack:
        servers = []
        for index in range(2):
            port = _free_port()
            log_path, url = tmp_path / f"serve{index}.log", f"http://127.0.0.1:{port}/v1"
            argv = [sys.executable, "-m", "plates.cli", "serve", "--model", str(tiny_model_dir), "--port", str(port),
                    "--decoding", "free", "--max-new-tokens", "8", "--max-pixels", str(112 * 112)]
            stack.enter_context(serving(argv, log_path, url, timeout=600, grace=60))
            servers.append((url, log_path))
        out = tmp_path / "preds.jsonl"
        argv = ["predict", str(tmp_path / "imgs"), "-o", str(out), "--concurrency", "2", "--max-pixels",
                str(112 * 112), "--timeout", "240"]
        for url, _ in servers:
            argv += ["--endpoint", url]
        assert main(argv) == 0, capsys.readouterr().err
        lines = read_lines(out)
        assert sorted(line["image"] for line in lines) == images and len({line["key"] for line in lines}) == 8
        assert all(line["model"] == "plates" and isinstance(line["response"], str) for line in lines)
        for _, log_path in servers:  # round-robin: both servers answered
            assert "/v1/chat/completions" in log_path.read_text(errors="replace")
        assert main(argv) == 0
        assert "skipped       8" in capsys.readouterr().err and len(read_lines(out)) == 8
