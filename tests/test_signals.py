"""SIGTERM and SIGHUP end every long command the way Ctrl-C does: children stopped, temporary files removed,
finished work kept, one line saying so, exit 128 + the signal number.

Each test runs `plates` as a real process (marked with a unique environment variable, inherited by everything
it starts, so any process left behind is found in /proc) and sends it a real signal at a known point: when a
loopback teacher server has answered a given number of requests, when ms-swift's worker process is running,
or - through a Python audit hook, the interpreter's own instrumentation - the moment a report's temporary
file is created.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from test_teach import FakeOpenAI, make_records, read_lines

MARK = "PLATES_SIGNAL_TEST"


def _env(marker: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, MARK: marker, "PYTHONUNBUFFERED": "1", **extra}
    env.pop("PLATES_TEST_KEY", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                                      os.environ.get("PYTHONPATH")]))
    return env


def marked_processes(marker: str, contains: str = "") -> list[int]:
    """Live (not zombie) processes carrying ``marker`` in their environment, whose command line holds
    ``contains``."""
    needle = f"{MARK}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if state != "Z" and contains in command:
            found.append(int(entry.name))
    return found


def wait_for(condition, what: str, process: subprocess.Popen, limit: float = 300.0) -> None:
    """Poll ``condition`` (a bound against hangs, not a timing assertion); fail early if ``process`` ended."""
    deadline = time.monotonic() + limit
    while not condition():
        assert process.poll() is None, f"ended before {what}: {process.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, f"no {what} within {limit:.0f} s"
        time.sleep(0.05)


def assert_nothing_left(marker: str, folder: Path) -> None:
    deadline = time.monotonic() + 30  # killed processes disappear at once; orphans would stay for ever
    while marked_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marked_processes(marker) == [], "processes left running after plates ended"
    leftovers = [p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(
        (".plates-staging-", "plates-predict-")) or (p.is_dir() and p.name.startswith("."))]
    assert leftovers == []


@pytest.mark.parametrize("sig,code,name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")])
def test_teach_keeps_finished_lines_and_resumes(tmp_path, sig, code, name):
    records = make_records(tmp_path, 8)
    out = tmp_path / "teacher.jsonl"
    summary = tmp_path / "summary.json"
    marker = uuid.uuid4().hex
    with FakeOpenAI() as server:
        server.hold(3)  # three answers, then the server keeps the next requests waiting
        argv = [sys.executable, "-m", "plates.cli", "teach", str(records), "-o", str(out), "--mode", "describe",
                "--backend", "openai", "--base-url", server.url, "--model", "fake-teacher", "--api-key-env",
                "PLATES_TEST_KEY", "--concurrency", "2", "--summary", str(summary)]
        process = subprocess.Popen(argv, env=_env(marker), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   cwd=tmp_path)
        try:
            wait_for(lambda: out.is_file() and out.read_bytes().count(b"\n") == 3, "three lines", process)
            process.send_signal(sig)
            assert process.wait(timeout=60) == code
            err = process.stderr.read().decode()
        finally:
            if process.poll() is None:
                process.kill()
            process.stderr.close()
        assert f"plates teach: terminated ({name}); what was finished is kept" in err and "Traceback" not in err
        assert len(read_lines(out)) == 3
        # the report was still written, and counts exactly the lines in the file (the signal never falls between)
        assert json.loads(summary.read_text(encoding="utf-8"))["done"] == 3
        assert_nothing_left(marker, tmp_path)
        server.hold(None)
        rerun = subprocess.run(argv, env=_env(marker), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(line["image"] for line in read_lines(out)) == sorted(
        json.loads(line)["image"] for line in records.read_text(encoding="utf-8").splitlines())


HOOK = """
import os, signal, sys
target = sys.argv[1]

def hook(event, args):
    if event == "tempfile.mkstemp" and os.path.basename(args[0]).startswith("." + target + "."):
        os.kill(os.getpid(), signal.SIGTERM)

sys.addaudithook(hook)
from plates.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_eval_removes_the_report_it_was_writing_and_keeps_the_finished_one(tmp_path):
    from test_evaluate import write_results

    results = tmp_path / "results.jsonl"
    write_results(results)
    reports = tmp_path / "reports"
    marker = uuid.uuid4().hex
    argv = [sys.executable, "-c", HOOK, "r.md", "eval", str(results), "--json", str(reports / "r.json"),
            "--markdown", str(reports / "r.md")]
    done = subprocess.run(argv, env=_env(marker), capture_output=True, text=True, timeout=300)
    assert done.returncode == 143, done.stderr
    assert "plates eval: terminated (SIGTERM); what was finished is kept" in done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in reports.iterdir()) == ["r.json"]  # written before the signal; no r.md, no .tmp
    json.loads((reports / "r.json").read_text(encoding="utf-8"))
    assert_nothing_left(marker, tmp_path)


def test_parse_workers_end_with_the_parent(tmp_path):
    from plates.synth import make_dump

    dump = tmp_path / "dump"
    make_dump(dump, 6, seed=1)
    for index in range(2500):  # enough names for several chunks, so both workers start
        (dump / f"extra {index}.txt").write_bytes(b"")
    marker = uuid.uuid4().hex
    # the first chunk a worker hands back (its summary is unpickled in the parent): the pool is running
    hook = HOOK.replace('event == "tempfile.mkstemp" and os.path.basename(args[0]).startswith("." + target + ".")',
                        'event == "pickle.find_class" and args[1] == target')
    argv = [sys.executable, "-c", hook, "ParseSummary", "parse", str(dump), "-o", str(tmp_path / "records.jsonl"),
            "--jobs", "2"]
    done = subprocess.run(argv, env=_env(marker), capture_output=True, text=True, timeout=300)
    assert done.returncode == 143, done.stderr
    assert "plates parse: terminated (SIGTERM)" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "records.jsonl").exists()
    assert_nothing_left(marker, tmp_path)


def _drawn_dataset(folder: Path, n: int) -> Path:
    import cv2
    import random

    from plates.synth import draw_vehicle, random_labels

    rng = random.Random(0)
    rows = []
    for index in range(n):
        image = folder / f"图 {index}.jpg"
        cv2.imwrite(str(image), draw_vehicle(random_labels(rng), 112, 112, rng))
        rows.append({"messages": [{"role": "user", "content": "<image>车牌?"}, {"role": "assistant",
                                                                               "content": "{}"}],
                     "images": [str(image)]})
    path = folder / "val.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.slow
def test_infer_stops_ms_swift_and_removes_its_staging_folder(tmp_path, tiny_model_dir):
    """The reported case: SIGTERM while `swift infer` runs. ms-swift's `swift` launcher dies on SIGTERM without
    passing it on to the Python process doing the work; plates stops the whole process group."""
    dataset = _drawn_dataset(tmp_path, 64)
    out = tmp_path / "answers" / "infer.jsonl"
    marker = uuid.uuid4().hex
    argv = [sys.executable, "-m", "plates.cli", "infer", "--model", str(tiny_model_dir), "--dataset", str(dataset),
            "-o", str(out), "--max-new-tokens", "64", "--set", "max_batch_size=1"]
    process = subprocess.Popen(argv, env=_env(marker, TMPDIR=str(tmp_path)), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        wait_for(lambda: marked_processes(marker, "swift/cli/infer.py"), "ms-swift worker process", process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 143
        err = process.stderr.read().decode()
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
    assert "plates infer: terminated (SIGTERM); what was finished is kept" in err and "Traceback" not in err
    assert not out.exists()
    assert_nothing_left(marker, tmp_path / "answers")
    assert marked_processes(marker) == []


def test_handler_raises_once_and_leaves_an_ignored_sighup_ignored():
    """In-process, with real signals: SIGTERM raises Terminated once (a second one during the cleanup is
    ignored, so the cleanup finishes); a SIGHUP that `nohup` set to be ignored stays ignored; the previous
    handlers come back afterwards."""
    from plates.errors import Terminated
    from plates.signals import terminate_like_interrupt

    previous_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    previous_term = signal.getsignal(signal.SIGTERM)
    try:
        with terminate_like_interrupt():
            os.kill(os.getpid(), signal.SIGHUP)  # ignored, as under nohup
            with pytest.raises(Terminated) as caught:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # interrupted by the handler's exception
            assert caught.value.signum == signal.SIGTERM and isinstance(caught.value, KeyboardInterrupt)
            os.kill(os.getpid(), signal.SIGTERM)  # a second one while cleaning up: no exception
            time.sleep(0.01)
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == previous_term
    finally:
        signal.signal(signal.SIGHUP, previous_hup)
