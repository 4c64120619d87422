"""`plates demo`: its stage list matches the real subcommands, and a small run goes end to end (twice, into the
same workdir) through real ms-swift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plates.cli import build_parser, main
from plates.demo import RUN_PLACEHOLDER, demo_steps
from plates.io import read_jsonl


def test_every_demo_stage_is_a_valid_plates_command(tmp_path):
    parser = build_parser()
    steps = demo_steps(tmp_path / "w", 24, 0)
    commands = [argv[0] for _, argv in steps]
    assert commands == ["parse", "teach", "teach", "teach", "teach", "build", "tiny-model", "train", "infer",
                        "infer", "eval", "eval", "compare"]
    for _, argv in steps:
        args = parser.parse_args([str(tmp_path / "run") if a == RUN_PLACEHOLDER else a for a in argv])
        assert callable(args._run)
    train = next(argv for title, argv in steps if title == "train")
    assert train[train.index("--preset") + 1] == "tiny_cpu"


def test_too_few_images_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--workdir", str(tmp_path), "--images", "3"]) == 2
    assert "--images must be at least" in capsys.readouterr().err
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert main(["demo", "--workdir", str(not_a_folder), "--images", "8"]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err


@pytest.mark.slow
def test_demo_runs_end_to_end_and_again_in_the_same_workdir(tmp_path, capsys):
    workdir = tmp_path / "演示 demo:1"
    assert main(["demo", "--workdir", str(workdir), "--images", "8"]) == 0
    out = capsys.readouterr().out
    records = read_jsonl(workdir / "records.jsonl")
    rejects = read_jsonl(workdir / "records.rejects.jsonl")
    assert len(records) == 8 and len(rejects) == 4  # 3 broken names + 1 corrupt file
    assert "corrupt_image" in out and "unparseable_name" in out
    val = read_jsonl(workdir / "dataset" / "val.jsonl")
    for name in ("base", "tuned"):
        report = json.loads((workdir / "reports" / f"{name}.json").read_text(encoding="utf-8"))
        assert report["n"] == len(val) > 0 and report["skipped_lines"] == 0
    assert (workdir / "reports" / "plots" / "accuracy.png").stat().st_size > 0
    assert "strict JSON" in out and "demo finished" in out and "--preset qwen2_5_vl_7b_lora" in out
    runs = [p for p in (workdir / "runs").iterdir() if (p / "plates_manifest.json").is_file()]
    assert len(runs) == 1

    # Re-running reuses the workdir: the teacher outputs are already there, training makes a new run folder.
    teacher_lines = len(read_jsonl(workdir / "teacher.jsonl"))
    assert main(["demo", "--workdir", str(workdir), "--images", "8"]) == 0
    err = capsys.readouterr().err
    assert "skipped    8  (already in the output)" in err
    assert len(read_jsonl(workdir / "teacher.jsonl")) == teacher_lines
    runs = [p for p in (workdir / "runs").iterdir() if (p / "plates_manifest.json").is_file()]
    assert len(runs) == 2
