"""plates.deploy_launcher: ms-swift's deploy run in-process, the key from the environment only, the port kept.

Covered elsewhere: through `plates serve`, the key is in no command line of any process and in no output, and a
served model refuses requests without it (tests/test_serve_security.py, slow); `plates serve` refuses a busy
port before starting (same file). Here: the launcher itself, run as `plates serve` runs it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from plates.deploy_launcher import KEY_ENV, Secret, main

KEY = "pl-launcher-key-4b1d"


@pytest.mark.parametrize("argv", [["deploy", "--model", "m", "--api_key", KEY], ["--model", "m", f"--api_key={KEY}"]])
def test_a_key_on_the_command_line_is_refused(argv, capsys, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "from-the-environment")
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err == "plates serve: error: the API key is passed through the environment, never argv\n"
    assert KEY not in captured.out + captured.err
    assert KEY_ENV not in os.environ, "the key leaves the environment before anything else happens"


def test_arguments_ms_swift_does_not_know_are_refused(tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setattr(sys, "argv", ["launcher"])
    assert main(["deploy", "--model", str(tiny_model_dir), "--template", "qwen2_5_vl", "--no_such_option", "1"]) == 2
    captured = capsys.readouterr()
    assert "plates serve: error: arguments ms-swift does not know: --no_such_option 1" in captured.err.splitlines()
    assert KEY not in captured.out + captured.err and KEY_ENV not in os.environ


def test_a_secret_is_the_key_everywhere_but_in_a_repr():
    secret = Secret(KEY)
    assert secret == KEY and f"Bearer {secret}" == f"Bearer {KEY}" and json.dumps(secret) == json.dumps(KEY)
    assert KEY not in repr(secret) and KEY not in repr([secret]) and KEY not in str({"api_key": secret})
    assert repr(secret) == "'<redacted>'"


@pytest.mark.slow
def test_a_busy_port_fails_instead_of_moving(tiny_model_dir, tmp_path):
    """ms-swift alone moves to the next free port; the launcher binds the one asked for or fails, so a client
    never talks to a server on a port nobody printed. The key reaches neither argv nor the output."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        argv = [sys.executable, "-m", "plates.deploy_launcher", "deploy", "--model", str(tiny_model_dir),
                "--template", "qwen2_5_vl", "--infer_backend", "transformers", "--host", "127.0.0.1", "--port", str(port),
                "--max_new_tokens", "8", "--max_pixels", str(112 * 112)]
        env = {**os.environ, KEY_ENV: KEY, "CUDA_VISIBLE_DEVICES": ""}
        log_path = tmp_path / "deploy.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while process.poll() is None:
                with socket.socket() as probe:
                    moved = probe.connect_ex(("127.0.0.1", port + 1)) == 0
                assert not moved, f"serving on {port + 1}: " + log_path.read_text(errors="replace")[-3000:]
                time.sleep(1)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    output = log_path.read_text(errors="replace")
    assert process.returncode != 0, output[-3000:]
    assert f"('127.0.0.1', {port}): address already in use" in output, output[-3000:]
    assert KEY not in output and "api_key='<redacted>'" in output
