"""Small helpers shared by several test modules."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Iterator


def argv_pairs(argv: list[str]) -> dict[str, list[str]]:
    """``--key v1 v2 --flag v`` -> {"key": ["v1", "v2"], "flag": ["v"]}: an ms-swift argv read back as options."""
    out: dict[str, list[str]] = {}
    key = None
    for item in argv:
        if item.startswith("--"):
            key = item[2:]
            out[key] = []
        elif key is not None:
            out[key].append(item)
    return out


@contextlib.contextmanager
def serving(argv: list[str], log_path: Path, url: str, *, env: dict[str, str] | None = None,
            timeout: float = 300, grace: float = 30) -> Iterator[subprocess.Popen]:
    """A server command (`plates serve`, `swift deploy`) in its own process group, output to ``log_path``; yields
    once ``GET {url}/models`` answers 200, and stops the whole group afterwards (SIGTERM, SIGKILL after
    ``grace`` seconds). A server that exits or is not up within ``timeout`` fails the test with its log's tail."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-3000:]
            time.sleep(1)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
