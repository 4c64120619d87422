"""plates.runs: reading a run folder that `plates train` (ms-swift + the plates manifest) leaves.

Covered elsewhere: a plain run folder's checkpoint, manifest and losses (tests/test_contracts.py), the
``last-checkpoint`` link (tests/test_train.py), real runs (tests/test_pipeline_swift.py). Here: which versioned
folder is this run's, numeric checkpoint order, and manifests and logs that are damaged or partly missing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from plates.runs import MANIFEST_NAME, RunManifest, find_run_dir, last_checkpoint, loss_history, \
    read_manifest


def _versioned(output: Path, name: str, mtime: int) -> Path:
    run = output / name
    run.mkdir(parents=True)
    (run / "args.json").write_text("{}", encoding="utf-8")
    os.utime(run, (mtime, mtime))
    return run


def test_find_run_dir_picks_the_folder_this_run_created(tmp_path):
    output = tmp_path / "out dir"
    old = _versioned(output, "v0-20250101-000000", 1_000)
    before = {p.name for p in output.iterdir()}
    (output / "notes").mkdir()
    os.utime(output / "notes", (9_000, 9_000))
    first = _versioned(output, "v1-20250102-000000", 2_000)
    second = _versioned(output, "v2-20250103-000000", 3_000)
    assert find_run_dir(output, before, None) == second, "the newest new versioned folder, never `notes`"
    assert find_run_dir(output, before, str(first)) == first, "what ms-swift printed wins"
    assert find_run_dir(output, before, str(tmp_path / "gone")) == second
    assert find_run_dir(output, {p.name for p in output.iterdir()}, None) is None
    assert old.is_dir()
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "args.json").write_text("{}", encoding="utf-8")
    assert find_run_dir(flat, set(), None) == flat, "a run written straight into the output folder"
    assert find_run_dir(tmp_path / "missing", set(), None) is None


def test_last_checkpoint_orders_steps_as_numbers(tmp_path):
    run = tmp_path / "v0-20250101-000000"
    for name in ("checkpoint-9", "checkpoint-10", "checkpoint-2", "checkpoint-best", "checkpoint-10-merged"):
        (run / name).mkdir(parents=True)
    assert last_checkpoint(run) == run / "checkpoint-10"
    assert last_checkpoint(run, "None") == run / "checkpoint-10", "ms-swift prints None when it saved nothing"
    assert last_checkpoint(run, str(run / "checkpoint-9")) == run / "checkpoint-9"
    assert last_checkpoint(run, str(run / "checkpoint-99")) == run / "checkpoint-10", "a printed path that is gone"
    assert last_checkpoint(None) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert last_checkpoint(empty) is None


def test_manifest_fields_tolerate_missing_and_wrong_values(tmp_path):
    path = tmp_path / MANIFEST_NAME
    path.write_text(json.dumps({"run_dir": "", "last_checkpoint": str(tmp_path / "ckpt"), "max_pixels": "lots",
                                "exit_code": None, "merged_from": "/runs/v0/checkpoint-5", "student": {"p": 1}}),
                    encoding="utf-8")
    manifest = RunManifest.read(path)
    assert manifest.run_dir is None and manifest.last_checkpoint == tmp_path / "ckpt"
    assert manifest.max_pixels is None and manifest.exit_code is None
    assert manifest.merged_from == "/runs/v0/checkpoint-5" and manifest.data["student"] == {"p": 1}
    assert "student" not in repr(manifest), "the whole document stays out of the repr"
    for text in ("", "{trunc", "[]", '"text"'):
        path.write_text(text, encoding="utf-8")
        assert RunManifest.read(path) is None, text
    path.write_bytes(b"\xff\xfe{}")
    assert RunManifest.read(path) is None
    assert RunManifest.read(tmp_path / "missing.json") is None


def test_read_manifest_from_a_checkpoint_a_merged_model_or_a_home_path(tmp_path, monkeypatch):
    run = tmp_path / "home" / "runs" / "v0-20250101-000000"
    checkpoint = run / "checkpoint-5"
    merged = run / "checkpoint-5-merged"
    checkpoint.mkdir(parents=True)
    merged.mkdir()
    (run / MANIFEST_NAME).write_text(json.dumps({"max_pixels": 50176}), encoding="utf-8")
    (merged / MANIFEST_NAME).write_text(json.dumps({"max_pixels": 12544, "merged_from": str(checkpoint)}),
                                        encoding="utf-8")
    assert read_manifest(checkpoint).max_pixels == 50176
    assert read_manifest(merged).max_pixels == 12544, "the merged model's own manifest comes first"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert read_manifest("~/runs/v0-20250101-000000/checkpoint-5").path == run / MANIFEST_NAME
    assert read_manifest(tmp_path) is None


def test_loss_history_skips_lines_it_cannot_read(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "logging.jsonl").write_bytes(b'{"loss": 3.0, "step": 1}\n\xff\xfe garbage\n{"loss": null}\n'
                                        b'{"eval_loss": 1.0}\n\n{"loss": 1.5}\n{"loss": 0.7')
    assert loss_history(run) == [3.0, 1.5], "a truncated last line (a run still writing) is skipped"
    assert loss_history(None) == [] and loss_history(tmp_path / "missing") == []
