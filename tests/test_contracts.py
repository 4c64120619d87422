"""The typed contracts between stages (plates.contracts, plates.runs) and the public homes of shared helpers."""

from __future__ import annotations

import hashlib
import json

from plates import contracts, runs
from plates.cli import main
from plates.io import sha256_file


def test_dataset_layout_reads_what_build_writes(synth_dump, tmp_path):
    records, data = tmp_path / "records.jsonl", tmp_path / "data"
    assert main(["parse", str(synth_dump), "-o", str(records)]) == 0
    assert main(["build", str(records), "-o", str(data), "--val-ratio", "0.25", "--relative-to", str(synth_dump)]) == 0
    layout = contracts.DatasetLayout.of(data)
    assert all(path.is_file() for path in layout.files().values())
    stats = layout.read_stats()
    assert stats.image_root == str(synth_dump) and stats.label_version is not None
    assert contracts.dataset_image_root(data) == str(synth_dump)
    assert contracts.DatasetLayout.of(tmp_path / "none").read_stats() is None


def test_teacher_lines_round_trip_through_the_contract(synth_dump, tmp_path):
    records, out = tmp_path / "records.jsonl", tmp_path / "teacher.jsonl"
    assert main(["parse", str(synth_dump), "-o", str(records)]) == 0
    assert main(["teach", str(records), "-o", str(out), "--mode", "describe", "--limit", "3"]) == 0
    for text in out.read_text(encoding="utf-8").splitlines():
        data = json.loads(text)
        line = contracts.TeacherLine.from_json(data)
        assert line.to_json() == data and line.backend == "template" and "inputs" not in data


def test_run_manifest_and_checkpoints(tmp_path):
    run = tmp_path / "v0-20250101-000000"
    for step in (5, 10):
        (run / f"checkpoint-{step}").mkdir(parents=True)
    (run / "args.json").write_text("{}", encoding="utf-8")
    (run / "logging.jsonl").write_text('{"loss": 2.5}\n{"eval_loss": 2}\n{"loss": "1.25"}\n', encoding="utf-8")
    (run / runs.MANIFEST_NAME).write_text(json.dumps({"max_pixels": "50176", "exit_code": 0, "run_dir": str(run)}))
    assert runs.last_checkpoint(run) == run / "checkpoint-10"
    assert runs.find_run_dir(tmp_path, set(), None) == run
    manifest = runs.read_manifest(run / "checkpoint-10")
    assert (manifest.max_pixels, manifest.exit_code, manifest.run_dir) == (50176, 0, run)
    assert runs.loss_history(run) == [2.5, 1.25]
    (run / runs.MANIFEST_NAME).write_text("[1]", encoding="utf-8")
    assert runs.read_manifest(run) is None


def test_one_sha256_helper(tmp_path):
    from plates import build, train

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * (3 << 20))
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert build.file_sha256 is sha256_file and train.sha256_file is sha256_file


def test_the_tiny_model_marker_is_named_once():
    from plates import contracts, swift_infer, tiny_model

    assert swift_infer.TINY_MARKER is tiny_model.TINY_MARKER is contracts.TINY_MARKER
