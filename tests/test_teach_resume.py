"""Crash safety of `plates teach`: every state a crash can leave the output in resumes to each record exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plates.cli import main
from test_teach import FakeOpenAI, make_records, read_lines


def teach(records: Path, out: Path, *args: str) -> int:
    return main(["teach", str(records), "-o", str(out), *args])


def record_images(records: Path) -> list[str]:
    return [json.loads(line)["image"] for line in records.read_text(encoding="utf-8").splitlines()]


def assert_exactly_once(out: Path, records: Path, modes=("describe",)) -> list[dict]:
    lines = read_lines(out)
    assert out.read_bytes().endswith(b"\n")
    expected = sorted((image, mode) for image in record_images(records) for mode in modes)
    assert sorted((line["image"], line["mode"]) for line in lines) == expected
    assert len({line["key"] for line in lines}) == len(lines)
    return lines


def test_every_crash_prefix_resumes_exactly_once(tmp_path):
    """A crash at any moment leaves a prefix of the file (appends are sequential): whole lines, maybe a torn
    tail. From every such prefix a re-run must end with the same lines as an uninterrupted run."""
    records = make_records(tmp_path, 6)
    full = tmp_path / "full.jsonl"
    assert teach(records, full, "--mode", "describe", "--concurrency", "1") == 0
    data = full.read_bytes()
    reference = sorted(read_lines(full), key=lambda line: line["key"])
    newlines = [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    cuts = sorted({0, len(data), *newlines, *(n - 7 for n in newlines), *(n + 3 for n in newlines[:-1]),
                   newlines[0] // 2})
    for cut in cuts:
        out = tmp_path / f"cut-{cut}.jsonl"
        out.write_bytes(data[:cut])
        assert teach(records, out, "--mode", "describe", "--concurrency", "3") == 0, cut
        assert sorted(assert_exactly_once(out, records), key=lambda line: line["key"]) == reference, cut
        assert teach(records, out, "--mode", "describe") == 0
        assert len(read_lines(out)) == len(reference)


def test_unparsable_last_line_is_cut(tmp_path, capsys):
    records = make_records(tmp_path, 4)
    out = tmp_path / "teacher.jsonl"
    assert teach(records, out, "--mode", "caption", "--limit", "2") == 0
    with out.open("ab") as handle:  # what a power cut can leave: zero bytes where a line was going
        handle.write(b"\0" * 40 + b"\n")
    assert teach(records, out, "--mode", "caption") == 0
    assert_exactly_once(out, records, ("caption",))
    assert "cut a torn last line (41 bytes)" in capsys.readouterr().err


def test_damaged_middle_line_is_a_user_error(tmp_path, capsys):
    records = make_records(tmp_path, 3)
    out = tmp_path / "teacher.jsonl"
    assert teach(records, out, "--mode", "describe") == 0
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(lines[0] + b"{broken\n" + b"".join(lines[1:]))
    assert teach(records, out, "--mode", "describe") == 2
    assert "line 2 is damaged" in capsys.readouterr().err
    not_ours = tmp_path / "other.jsonl"
    not_ours.write_text('{"messages": []}\n', encoding="utf-8")
    assert teach(records, not_ours, "--mode", "describe") == 2
    assert "holds data plates did not write, not `plates teach` output" in capsys.readouterr().err


def _line_count(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigkill_at_several_points_then_rerun(tmp_path):
    """SIGKILL a running `plates teach` (openai backend, slow local server) at several points — during start-up,
    after the first lines, mid-run, near the end — simulate a torn write once, and re-run: the output ends with
    every record exactly once."""
    records = make_records(tmp_path, 16)
    out = tmp_path / "teacher.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PLATES_TEST_KEY", None)
    with FakeOpenAI() as server:
        argv = [sys.executable, "-m", "plates.cli", "teach", str(records), "-o", str(out), "--mode", "describe",
                "--backend", "openai", "--base-url", server.url, "--model", "fake-teacher",
                "--api-key-env", "PLATES_TEST_KEY", "--concurrency", "3"]
        kills = []
        for stage, target in enumerate((None, 1, 5, 11)):  # kill when the output holds this many lines
            before = _line_count(out)
            server.hold(0 if target is None else target - before)  # the server answers no more than that
            process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                if target is None:
                    time.sleep(0.3)  # still importing / reading the output, or waiting for the server
                else:
                    deadline = time.monotonic() + 120
                    while _line_count(out) < target and process.poll() is None:
                        assert time.monotonic() < deadline, f"teach made no progress at stage {stage}"
                        time.sleep(0.01)
                assert process.poll() is None, process.stderr.read().decode()
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                kills.append(_line_count(out))
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                process.stderr.close()
            if stage == 2:
                with out.open("ab") as handle:  # as if killed inside write()
                    handle.write(b'{"key":"0123456789abcdef","image":"half a li')
        server.hold(None)
        assert kills == [0, 1, 5, 11]  # answers held by the server: each kill lands where it was meant to
        finished = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert finished.returncode == 0, finished.stderr
        assert_exactly_once(out, records)
        requests_before = len(server.chat_requests)
        again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "skipped    16" in again.stderr
        assert len(server.chat_requests) == requests_before
    assert_exactly_once(out, records)
