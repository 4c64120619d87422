"""`plates serve` secrets and binds (issue 21): the API key never reaches a command line (`ps`,
/proc/PID/cmdline) or the terminal, a bind beyond loopback needs a key (or --insecure-no-key), and a busy port is
refused instead of ms-swift moving to the next one while plates prints the one asked for."""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import serving
from plates.cli import main
from plates.deploy_launcher import Secret

HUB_MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"  # only named: every refusal below comes before anything is loaded
KEY = "pl-test-key-7f3c9a1e5b"


def _errors(err: str) -> list[str]:
    """stderr's lines without the notes (a hub model has no run manifest: serve notes the default prompt)."""
    return [line for line in err.strip().splitlines() if ": note: " not in line]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("where", [["--host", "0.0.0.0"], ["--set", "host=0.0.0.0"], ["--host", "192.0.2.7"]])
def test_bind_beyond_loopback_without_a_key_is_refused(capsys, where):
    assert main(["serve", "--model", HUB_MODEL, *where, "--dry-run"]) == 2
    err = _errors(capsys.readouterr().err)
    assert len(err) == 1 and "--api-key-env" in err[0] and "--insecure-no-key" in err[0]
    assert main(["serve", "--model", HUB_MODEL, *where, "--insecure-no-key", "--dry-run"]) == 0
    assert "0.0.0.0" in capsys.readouterr().out or where[1] == "192.0.2.7"


def test_key_on_the_command_line_is_refused(capsys):
    assert main(["serve", "--model", HUB_MODEL, "--set", f"api_key={KEY}", "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert "--api-key-env" in captured.err and KEY not in captured.err + captured.out


def test_busy_port_is_refused(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for argv in (["--port", str(port)], ["--set", f"port={port}"]):
            assert main(["serve", "--model", HUB_MODEL, *argv]) == 2
            err = _errors(capsys.readouterr().err)
            assert err == [f"plates serve: error: --port {port}: 127.0.0.1:{port} is already in use (another "
                           "server?); stop it or choose another --port"]


def test_secret_never_shows_in_a_repr():
    secret = Secret(KEY)
    assert secret == KEY and KEY not in repr(secret) and KEY not in repr({"api_key": secret})


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry))
    out, stack = [], [pid]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(children.get(current, []))
    return out


def _request(url: str, key: str | None, body: dict | None = None) -> int:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    data = json.dumps(body).encode() if body is not None else None
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=240) as reply:
            return reply.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_served_key_is_in_no_command_line_and_no_output(tiny_model_dir, tmp_path):
    port = _free_port()
    log_path = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "plates.cli", "serve", "--model", str(tiny_model_dir), "--port", str(port),
            "--max-new-tokens", "64", "--max-pixels", str(112 * 112), "--decoding", "free",
            "--api-key-env", "PLATES_TEST_SERVE_KEY"]
    base = f"http://127.0.0.1:{port}"
    with serving(argv, log_path, f"{base}/v1", env={"PLATES_TEST_SERVE_KEY": KEY}) as process:
        pids = _descendants(process.pid)
        assert len(pids) >= 2, "plates and the deploy process"
        for pid in pids:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            assert KEY.encode() not in cmdline, cmdline
        chat = {"model": "plates", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
        assert _request(f"{base}/v1/chat/completions", None, chat) in (400, 401, 403)
        assert _request(f"{base}/v1/chat/completions", "wrong", chat) in (400, 401, 403)
        assert _request(f"{base}/v1/chat/completions", KEY, chat) == 200
    output = log_path.read_text(errors="replace")
    assert f"http://127.0.0.1:{port}/v1" in output and "API key required" in output
    assert "args: DeployArguments(" in output and "api_key='<redacted>'" in output
    assert KEY not in output

