"""`plates predict`: unlabelled images in, one answer per image out, every file accounted for, resumable exactly
once (the slow test SIGKILLs a real run mid-way and re-runs it against real `swift infer` on the tiny model)."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plates.cli import main
from plates.errors import UserError
from plates.io import read_jsonl
from plates.image_inputs import collect_inputs
from helpers import argv_pairs, unlabelled_images as _unlabelled


def test_every_input_file_is_answered_or_rejected_once(tmp_path):
    folder = tmp_path / "new images"
    images = _unlabelled(folder, 3)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    cut = folder / "cut.jpg"
    cut.write_bytes(images[0].read_bytes()[:600])
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"image": str(images[1])}) + "\n" + json.dumps({"image": "missing.jpg"}) + "\n"
                       + "not json\n", encoding="utf-8")
    candidates, rejects = collect_inputs([str(folder), str(records), str(images[2])])
    assert sorted(c.path for c in candidates) == sorted(str(p) for p in images), "named twice: answered once"
    codes = {Path(r["image"]).name: r["code"] for r in rejects}
    assert codes["notes.txt"] == "not_image"
    assert codes["broken.jpg"] == codes["cut.jpg"] == "corrupt_image"
    assert codes["missing.jpg"] == "unreadable"
    assert any(r["code"] == "bad_input_line" and "not JSON" in r["reason"] for r in rejects)
    assert len(candidates) + len(rejects) == 3 + 3 + 2
    assert len({c.sha256 for c in candidates}) == 3
    with pytest.raises(UserError, match="no such file or folder"):
        collect_inputs([str(tmp_path / "nope")])


def test_dry_run_prints_the_swift_command_and_writes_nothing(tmp_path, tiny_model_dir, capsys):
    folder = tmp_path / "in"
    _unlabelled(folder, 2)
    out = tmp_path / "out" / "preds.jsonl"
    code = main(["predict", str(folder), "-o", str(out), "--model", str(tiny_model_dir), "--logprobs",
                 "--max-new-tokens", "77", "--max-pixels", "50176", "--dry-run"])
    captured = capsys.readouterr()
    assert code == 0 and not out.exists() and not (tmp_path / "out" / "preds.rejects.jsonl").exists()
    got = argv_pairs(shlex.split(captured.out.replace("\\\n", " ")))
    assert got["logprobs"] == ["true"] and got["max_new_tokens"] == ["77"] and got["max_pixels"] == ["50176"]
    assert got["external_plugins"][0].endswith("swift_plugin.py"), "schema decoding is the default"
    assert "would answer 2 images" in captured.err
    assert main(["predict", str(folder), "-o", str(out), "--model", str(tiny_model_dir), "--decoding", "free",
                 "--dry-run"]) == 0
    assert "external_plugins" not in capsys.readouterr().out


def test_guard_rails(tmp_path, tiny_model_dir):
    images = _unlabelled(tmp_path / "in", 1)
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"image": str(images[0])}) + "\n")
    with pytest.raises(UserError, match="is the input"):
        main_args = ["predict", str(records), "-o", str(records), "--model", str(tiny_model_dir)]
        from plates.predict import run_predict

        run_predict([str(records)], records, model=str(tiny_model_dir))
    assert main(main_args) == 2
    out = tmp_path / "preds.jsonl"
    out.write_text(json.dumps({"key": "k", "image": "x", "settings": "other"}) + "\n")
    with pytest.raises(UserError, match="other settings"):
        run_predict([str(tmp_path / "in")], out, model=str(tiny_model_dir), decoding="free")
    with pytest.raises(UserError, match="--chunk-size"):
        run_predict([str(tmp_path / "in")], tmp_path / "p2.jsonl", model=str(tiny_model_dir), chunk_size=0)


def _lines(path: Path) -> list[dict]:
    return read_jsonl(path) if path.exists() else []


def _launch(captured: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The environment assignments and ms-swift options of a printed `--dry-run` launch."""
    words = shlex.split(captured.replace("\\\n", " "))
    env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("--") and w.split("=")[0].isupper())
    return env, argv_pairs(words)


def test_dry_runs_show_the_launch_over_gpus_and_machines(tmp_path, tiny_model_dir, capsys):
    folder = tmp_path / "in"
    _unlabelled(folder, 2)
    base = ["predict", str(folder), "-o", str(tmp_path / "p.jsonl"), "--model", str(tiny_model_dir), "--dry-run"]
    assert main([*base, "--gpus", "0,1", "--chunk-size", "16"]) == 0
    env, options = _launch(capsys.readouterr().out)
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1" and env["NPROC_PER_NODE"] == "2", "one process per GPU"
    assert "NNODES" not in env and options["write_batch_size"] == ["16"] and options["infer_backend"] == [
        "transformers"]
    assert main([*base, "--gpus", "0,1", "--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1",
                 "--master-port", "29501"]) == 0
    captured = capsys.readouterr()
    env, options = _launch(captured.out)
    assert {k: env[k] for k in ("CUDA_VISIBLE_DEVICES", "NPROC_PER_NODE", "NNODES", "NODE_RANK", "MASTER_ADDR",
                                "MASTER_PORT")} == {"CUDA_VISIBLE_DEVICES": "0,1", "NPROC_PER_NODE": "2", "NNODES": "2",
                                                    "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1",
                                                    "MASTER_PORT": "29501"}
    assert "same -o file" in captured.err
    assert main([*base, "--gpus", "0,1", "--backend", "vllm", "--model-parallel"]) == 0
    env, options = _launch(capsys.readouterr().out)
    assert options["vllm_tensor_parallel_size"] == ["2"] and "NPROC_PER_NODE" not in env, "vLLM tensor parallel"
    assert "structured_outputs_regex" in options
    assert main([*base, "--gpus", "0,1", "--backend", "vllm"]) == 0
    env, options = _launch(capsys.readouterr().out)
    assert env["NPROC_PER_NODE"] == "2" and "vllm_tensor_parallel_size" not in options, "vLLM data parallel"


def test_launch_mistakes_are_one_line_errors(tmp_path, tiny_model_dir, capsys):
    import torch

    folder = tmp_path / "in"
    _unlabelled(folder, 1)
    out = tmp_path / "p.jsonl"
    base = ["predict", str(folder), "-o", str(out), "--model", str(tiny_model_dir)]
    assert main([*base, "--nnodes", "2", "--node-rank", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--nnodes > 1 needs --master-addr" in err[0]
    assert main([*base, "--nnodes", "2", "--master-addr", "10.0.0.1"]) == 2
    assert "needs --node-rank" in capsys.readouterr().err
    assert main([*base, "--set", "write_batch_size=8"]) == 2
    assert "--chunk-size" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*base, "--gpus", "0,1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no CUDA GPU" in err[0], err
    assert not out.exists(), "nothing written before a launch mistake is refused"


def _log_runs(log: Path) -> list[str]:
    """ms-swift's log of each `swift infer` a predict started: plates writes a `$ ENV… swift infer …` header before
    each (a killed run's last line may lack its newline, so the header is found anywhere)."""
    text = log.read_text(encoding="utf-8", errors="replace")
    return re.split(r"\$ (?:\S+=\S+ )*\S*swift infer ", text)[1:]


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_answers_each_image_exactly_once(tmp_path, tiny_model_dir, capsys):
    """Unlabelled folder + one corrupt file; chunks of one image; the first run is SIGKILLed (with its `swift
    infer` child) once its first answers are on disk, the re-run finishes: one schema-valid answer per image, and
    each run loaded the model once."""
    folder = tmp_path / "camera dump"
    images = _unlabelled(folder, 4, seed=5)
    (folder / "sub dir" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(200))
    out = tmp_path / "预测 out" / "preds.jsonl"
    argv = ["predict", str(folder), "-o", str(out), "--model", str(tiny_model_dir), "--chunk-size", "1",
            "--max-new-tokens", "1024", "--max-pixels", str(112 * 112)]
    process = subprocess.Popen([sys.executable, "-m", "plates.cli", *argv], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not _lines(out) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        first = len(_lines(out))
        assert 1 <= first < 4, "killed while the later chunks were being answered"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert main(argv) == 0
    err = capsys.readouterr().err
    first = 4 - int(err.split("answered")[1].split()[0])
    assert f"skipped       {first}" in err and 1 <= first < 4
    lines = _lines(out)
    assert sorted(line["image"] for line in lines) == sorted(str(p) for p in images), "each image exactly once"
    for line in lines:
        assert line["schema_valid"], line
        assert line["violations"] == [] and isinstance(line["answer"], dict) and isinstance(line["response"], str)
        assert line["decoding"] == "schema"
    rejects = _lines(tmp_path / "预测 out" / "preds.rejects.jsonl")
    assert [(Path(r["image"]).name, r["code"]) for r in rejects] == [("corrupt.jpg", "corrupt_image")]
    runs = _log_runs(out.with_name("preds.swift-infer.log"))
    assert len(runs) == 2, "one `swift infer` per run, not one per chunk"
    assert [run.count("[INFO:swift] model_kwargs:") for run in runs] == [1, 1], "the model is loaded once per run"
    assert main(argv) == 0, "a third run has nothing left to do"
    assert "skipped       4" in capsys.readouterr().err and len(_lines(out)) == 4


def _live_members(group: int) -> list[str]:
    """The processes of a process group that are still running (not zombies)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            alive.append(stat.parent.name)
    return alive


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_sigterm_stops_the_engine_keeps_the_answers_and_cleans_up(tmp_path, tiny_model_dir):
    """What `timeout`, `kill` and schedulers send: the engine is stopped, the temporary folder removed, every
    answer written so far kept (the re-run answers only the rest), one line said, exit 143."""
    folder = tmp_path / "in"
    images = _unlabelled(folder, 4, seed=3)
    out = tmp_path / "preds.jsonl"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    argv = ["predict", str(folder), "-o", str(out), "--model", str(tiny_model_dir), "--chunk-size", "1",
            "--max-new-tokens", "1024", "--max-pixels", str(112 * 112)]
    process = subprocess.Popen([sys.executable, "-m", "plates.cli", *argv], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "TMPDIR": str(scratch)})
    try:
        deadline = time.monotonic() + 240
        while not _lines(out) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert list(scratch.glob("plates-predict-*")), "the run's temporary folder exists while it runs"
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
        err = process.stderr.read().decode().strip().splitlines()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert code == 143, err
    assert "stopped by SIGTERM" in err[-1] and sum("SIGTERM" in line for line in err) == 1, err
    assert not any("Traceback" in line for line in err), err
    assert not list(scratch.glob("plates-predict-*")), "temporary folder removed"
    deadline = time.monotonic() + 30
    while _live_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _live_members(process.pid), "no `swift infer` left running"
    kept = _lines(out)
    assert 1 <= len(kept) and f"{len(kept)} new answers kept" in err[-1]
    assert main(argv) == 0
    assert sorted(line["image"] for line in _lines(out)) == sorted(str(p) for p in images), "each image once"
