"""The openai backend against a real `swift deploy` serving the tiny Qwen2.5-VL on loopback (CPU): the real
protocol, real images as base64 data URLs, real token usage. The tiny model's weights are random, so its texts
are noise and the gate must flag them all."""

from __future__ import annotations

import json
import socket

import pytest

from helpers import serving
from plates.cli import main
from test_teach import make_records, read_lines

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def deployed(tiny_model_dir, tmp_path_factory):
    """`swift deploy` of the tiny model on a free loopback port; yields the base URL, tears the server down."""
    from plates.swift_cli import swift_command

    port = _free_port()
    log_path = tmp_path_factory.mktemp("deploy") / "deploy.log"
    argv = [*swift_command(), "deploy", "--model", str(tiny_model_dir), "--template", "qwen2_5_vl",
            "--infer_backend", "transformers", "--host", "127.0.0.1", "--port", str(port),
            "--served_model_name", "tiny-teacher", "--max_new_tokens", "8"]
    url = f"http://127.0.0.1:{port}/v1"
    with serving(argv, log_path, url):
        yield url


def test_describe_and_caption_against_swift_deploy(deployed, tmp_path, capsys):
    records = make_records(tmp_path, 3, size=(200, 150))
    out = tmp_path / "teacher.jsonl"
    common = ["--backend", "openai", "--base-url", deployed, "--model", "auto", "--concurrency", "2",
              "--max-tokens", "8", "--max-pixels", str(112 * 112), "--timeout", "120"]
    for mode in ("describe", "caption"):
        assert main(["teach", str(records), "-o", str(out), "--mode", mode, *common]) == 0
    err = capsys.readouterr().err
    lines = read_lines(out)
    images = sorted(json.loads(line)["image"] for line in records.read_text(encoding="utf-8").splitlines())
    for mode in ("describe", "caption"):
        of_mode = [line for line in lines if line["mode"] == mode]
        assert sorted(line["image"] for line in of_mode) == images
    for line in lines:
        assert line["backend"] == "openai" and line["model"] == "tiny-teacher"
        # the image's visual tokens are part of the prompt: far more than the text alone
        assert line["usage"]["prompt_tokens"] > 20 and 0 < line["usage"]["completion_tokens"] <= 8
        if "车牌属性0" in line["image"]:
            assert line["verdict"] == "flagged" and line["reasons"]  # random weights read no plate
    assert "tokens" in err and "via openai/tiny-teacher" in err
    # resumable against the real server too: nothing left to do
    assert main(["teach", str(records), "-o", str(out), "--mode", "caption", *common]) == 0
    assert "skipped    3" in capsys.readouterr().err
    assert len(read_lines(out)) == 6
