"""`plates predict`: unlabelled images in, one answer per image out, every file accounted for, resumable exactly
once (the slow test SIGKILLs a real run mid-way and re-runs it against real `swift infer` on the tiny model)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plates.cli import main
from plates.errors import UserError
from plates.io import read_jsonl
from plates.predict import collect_inputs, describe_answer
from helpers import argv_pairs

GOOD = json.dumps({"车辆属性": {"车辆品牌": "丰田", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"},
                   "车牌属性": []}, ensure_ascii=False)


def _unlabelled(folder: Path, n: int, *, seed: int = 0) -> list[Path]:
    """``n`` drawn vehicle JPEGs under plain names (no labels), one in a nested folder with spaces."""
    from plates.synth import make_dump
    from plates.parse import iter_files

    dump = folder.parent / f".{folder.name}-src"
    make_dump(dump, n, seed=seed)
    out = []
    for index, rel in enumerate(iter_files(dump)[:n]):
        target = folder / ("sub dir/相机 2" if index % 2 else "") / f"IMG_{index:04d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dump / rel, target)
        out.append(target)
    shutil.rmtree(dump)
    return out


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


def test_answers_are_parsed_checked_and_normalised():
    good = describe_answer(GOOD)
    assert good["schema_valid"] and good["violations"] == [] and good["parse_method"] == "json"
    assert good["answer"]["车辆属性"]["车辆品牌"] == "丰田" and good["answer"]["车牌属性"] == []
    synonym = describe_answer(GOOD.replace("正面", "车头"))
    assert synonym["answer"]["车辆属性"]["车辆朝向"] == "正面", "normalised to the canonical value"
    assert not synonym["schema_valid"] and any("车辆朝向" in v for v in synonym["violations"])
    missing = describe_answer('{"车辆属性": {"车辆品牌": "丰田"}}')
    assert not missing["schema_valid"] and missing["answer"]["车牌属性"] == []
    noise = describe_answer("\n\n\n")
    assert noise == {"answer": None, "parse_method": "none", "schema_valid": False,
                     "violations": ["not a JSON object"]}


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


@pytest.mark.slow
def test_sigkill_mid_run_then_rerun_answers_each_image_exactly_once(tmp_path, tiny_model_dir, capsys):
    """Unlabelled folder + one corrupt file; chunks of one image; the first run is SIGKILLed (with its `swift
    infer` child) once the first chunk is on disk, the re-run finishes: one schema-valid answer per image."""
    folder = tmp_path / "camera dump"
    images = _unlabelled(folder, 2, seed=5)
    (folder / "sub dir" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(200))
    out = tmp_path / "预测 out" / "preds.jsonl"
    argv = ["predict", str(folder), "-o", str(out), "--model", str(tiny_model_dir), "--chunk-size", "1",
            "--max-new-tokens", "1024", "--max-pixels", str(112 * 112)]
    process = subprocess.Popen([sys.executable, "-m", "plates.cli", *argv], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not _lines(out) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert len(_lines(out)) == 1, "killed while the second chunk was being answered"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "skipped       1" in err and "answered      1" in err
    lines = _lines(out)
    assert sorted(line["image"] for line in lines) == sorted(str(p) for p in images), "each image exactly once"
    for line in lines:
        assert line["schema_valid"], line
        assert line["violations"] == [] and isinstance(line["answer"], dict) and isinstance(line["response"], str)
    rejects = _lines(tmp_path / "预测 out" / "preds.rejects.jsonl")
    assert [(Path(r["image"]).name, r["code"]) for r in rejects] == [("corrupt.jpg", "corrupt_image")]
    assert main(argv) == 0, "a third run has nothing left to do"
    assert "skipped       2" in capsys.readouterr().err and len(_lines(out)) == 2
