"""The two exceptions of :mod:`plates.errors` as the command line reports them: a UserError is one line naming
the command and exit status 2, in-process and from a real `plates` process; Terminated is a KeyboardInterrupt
that knows its signal (the exit status 128 + signum is checked with real signals in tests/test_signals.py)."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from plates.cli import main
from plates.errors import Terminated, UserError


def test_a_user_error_is_one_line_and_exit_2(tmp_path, capsys):
    """plates.errors.UserError, raised anywhere in a command (here by plates.io reading the input), is printed
    as one line naming the command, with no traceback; SIGTERM/SIGHUP's Terminated is tests/test_signals.py's."""
    missing = tmp_path / "no such results.jsonl"
    assert main(["eval", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("plates eval: error: ") and str(missing) in lines[0]


def test_a_user_error_from_a_real_plates_process(tmp_path):
    """What a shell sees: status 2, one stderr line naming the command and the path, nothing on stdout."""
    missing = tmp_path / "没有 records.jsonl"
    process = subprocess.run([sys.executable, "-m", "plates.cli", "build", str(missing), "-o", str(tmp_path / "d")],
                             capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert process.returncode == 2, process.stderr
    assert process.stdout == ""
    lines = process.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("plates build: error: ") and str(missing) in lines[0], lines
    assert not (tmp_path / "d").exists()


def test_a_user_error_is_an_ordinary_exception():
    """Library callers (benchmarks, notebooks) catch it like any other error; it carries only its message."""
    error = UserError("x.jsonl: no such file")
    assert isinstance(error, Exception) and not isinstance(error, KeyboardInterrupt)
    assert str(error) == "x.jsonl: no such file"


@pytest.mark.parametrize("signum, name", [(signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP"),
                                          (int(signal.SIGINT), "SIGINT")])
def test_terminated_knows_its_signal_and_is_caught_as_ctrl_c(signum, name):
    """Every ``except KeyboardInterrupt`` cleanup path catches it; ``signum`` and ``name`` make the exit status
    and the one line the CLI prints."""
    with pytest.raises(KeyboardInterrupt) as caught:
        raise Terminated(signum)
    assert isinstance(caught.value, Terminated)
    assert (caught.value.signum, caught.value.name, str(caught.value)) == (int(signum), name, name)
    assert type(caught.value.signum) is int


def test_terminated_refuses_a_number_that_is_no_signal():
    with pytest.raises(ValueError):
        Terminated(0)
