"""Issue 10, input quirks: results files as other tools and second runs leave them (UTF-8 BOM, CRLF, GBK lines,
an appended `swift infer --result_path` file holding every sample twice), and files in `plates predict`'s input
that are not regular files (FIFOs, sockets, dangling links), which must be rejected without ever being opened.
Everything runs on real files; every refusal is a one-line `plates CMD: error:` with exit code 2."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import pytest

from plates.cli import main
from plates.errors import UserError
from plates.evaluation.report import evaluate_file
from plates.io import iter_jsonl, read_jsonl
from plates.image_inputs import collect_inputs

V = {"车辆品牌": "奥迪", "车辆类型": "小轿车", "车辆颜色": "黑色", "车辆朝向": "背面"}
P = {"车牌国家": "中国", "车牌省份": "黑龙江省", "车牌号码": "黑GCY987", "车牌颜色": "蓝色", "车牌层数": "单层车牌",
     "车牌用途": "燃油车车牌"}
SYSTEM = "你是车辆属性识别助手。"
QUERY = "<image>描述这辆车的属性,只输出JSON。"


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def answer(**vehicle) -> str:
    return dumps({"车辆属性": {**V, **vehicle}, "车牌属性": [P]})


def swift_row(image: str, response: str, labels: str, query: str = QUERY) -> dict:
    """One line as `swift infer --result_path` writes it: the model's answer is also appended to ``messages``."""
    return {"response": response, "labels": labels, "logprobs": None,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": query},
                         {"role": "assistant", "content": response}],
            "images": [{"bytes": None, "path": image}]}


def rows() -> list[dict]:
    return [swift_row("/data/a.jpg", answer(), answer()),
            swift_row("/data/b.jpg", answer(车辆颜色="白色"), answer()),
            swift_row("/data/c.jpg", answer(), answer(车辆品牌="大众")),
            swift_row("/data/d.jpg", "图片太模糊,无法回答。", answer())]


def write(path: Path, lines: list[dict], *, newline: str = "\n", bom: bool = False, encoding: str = "utf-8") -> Path:
    text = "".join(dumps(line) + newline for line in lines)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))
    return path


def scores(report: dict) -> tuple:
    return report["n"], report["exact_match"], {f: s["correct"] for f, s in report["fields"].items()}


def one_error_line(err: str, command: str = "eval") -> str:
    lines = [line for line in err.splitlines() if f"plates {command}: error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------------------------ results files

def test_bom_and_crlf_are_read_like_plain_utf8(tmp_path):
    plain = evaluate_file(write(tmp_path / "plain.jsonl", rows()))
    assert plain["n"] == 4 and plain["skipped"] == []
    for name, options in {"bom": {"bom": True}, "crlf": {"newline": "\r\n"},
                          "both": {"bom": True, "newline": "\r\n"}}.items():
        report = evaluate_file(write(tmp_path / f"{name}.jsonl", rows(), **options))
        assert report["skipped"] == [], name
        assert scores(report) == scores(plain), f"{name}: the first answer must not be dropped"


def test_gbk_results_are_named_not_utf8(tmp_path, capsys):
    gbk = write(tmp_path / "gbk.jsonl", rows(), encoding="gbk")
    original = gbk.read_bytes()
    assert main(["eval", str(gbk), "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "no scorable answers (4 malformed lines skipped)" in one_error_line(err)
    assert "line 1: not UTF-8 (byte 0x" in err and "save the file as UTF-8" in err
    assert gbk.read_bytes() == original and not (tmp_path / "r.json").exists()

    mixed = tmp_path / "mixed.jsonl"
    lines = [dumps(row).encode() + b"\n" for row in rows()]
    lines[1] = dumps(rows()[1]).encode("gbk") + b"\n"
    mixed.write_bytes(b"".join(lines))
    report = evaluate_file(mixed)
    assert report["n"] == 3 and len(report["skipped"]) == 1
    assert report["skipped"][0].startswith("line 2: not UTF-8 (byte 0x")
    assert "\ufffd" not in json.dumps(report, ensure_ascii=False), "nothing decoded with replacement characters"


def test_overdeep_and_blank_lines_are_skipped_not_fatal(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(dumps(rows()[0]) + "\n\n   \n" + "[" * 200_000 + "\n" + dumps(rows()[1]) + "\n", encoding="utf-8")
    report = evaluate_file(path)
    assert report["n"] == 2 and len(report["skipped"]) == 1 and report["skipped"][0].startswith("line 4: not JSON")
    errors: list[str] = []
    assert [n for n, _ in iter_jsonl(path, errors)] == [1, 5] and errors == ["line 4: not JSON (nested too deeply)"]
    with pytest.raises(UserError, match="line 4: not JSON"):
        read_jsonl(path)


def test_appended_results_file_scores_each_sample_once(tmp_path, capsys):
    single = evaluate_file(write(tmp_path / "once.jsonl", rows()))
    assert single["duplicates"] == 0
    # a second `swift infer --result_path` run into the same file: every sample again, with other answers
    second = [swift_row(r["images"][0]["path"], answer(车辆朝向="正面"), r["labels"]) for r in rows()]
    twice = write(tmp_path / "twice.jsonl", rows() + second)
    original = twice.read_bytes()
    report = evaluate_file(twice)
    assert report["duplicates"] == 4 and scores(report) == scores(single), "scored once, on the first run's lines"
    assert report["duplicate_examples"][:2] == ["line 5 repeats line 1", "line 6 repeats line 2"]

    out = tmp_path / "report.json"
    md = tmp_path / "report.md"
    assert main(["eval", str(twice), "--json", str(out), "--markdown", str(md)]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "duplicate" in line]
    assert len(warnings) == 1 and warnings[0].startswith("plates eval: warning:")
    assert "4 duplicate samples" in warnings[0]
    assert "4 duplicate samples scored once" in captured.out.splitlines()[0]
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["duplicates"] == 4 and saved["n"] == 4
    assert "4 duplicate samples" in md.read_text(encoding="utf-8")
    assert twice.read_bytes() == original


def test_same_image_with_another_prompt_or_reference_is_not_a_duplicate(tmp_path):
    base = rows()[0]
    other_prompt = swift_row("/data/a.jpg", base["response"], base["labels"], query=QUERY + "注意车牌。")
    other_labels = swift_row("/data/a.jpg", base["response"], answer(车辆颜色="白色"))
    other_image = swift_row("/data/z.jpg", base["response"], base["labels"])
    plain_query = {"response": base["response"], "labels": base["labels"], "query": QUERY, "images": ["/data/a.jpg"]}
    report = evaluate_file(write(tmp_path / "r.jsonl", [base, other_prompt, other_labels, other_image, plain_query,
                                                        plain_query]))
    assert report["n"] == 5 and report["duplicates"] == 1
    assert report["duplicate_examples"] == ["line 6 repeats line 5"]
    no_image = {"response": base["response"], "labels": base["labels"]}
    report = evaluate_file(write(tmp_path / "no-image.jsonl", [no_image] * 3))
    assert report["n"] == 3 and report["duplicates"] == 0, "without an image, equal references are not repeats"


def test_predictions_joined_to_records_count_repeated_images(tmp_path):
    records = tmp_path / "records.jsonl"
    records.write_text("".join(dumps({"image": name, "root": str(tmp_path), "labels": json.loads(answer())}) + "\n"
                               for name in ("a.jpg", "b.jpg")), encoding="utf-8")
    predictions = write(tmp_path / "predictions.jsonl",
                        [{"image": "a.jpg", "response": answer()}, {"image": "b.jpg", "response": answer()},
                         {"image": str(tmp_path / "a.jpg"), "response": "图片太模糊"}])
    report = evaluate_file(predictions, records=records)
    assert report["n"] == 2 and report["exact_match"] == 1.0
    assert report["duplicates"] == 1 and report["records_without_prediction"] == 0


@pytest.mark.timeout(60)
def test_results_that_are_not_regular_files_are_refused_unopened(tmp_path, capsys):
    fifo = tmp_path / "results.jsonl"
    os.mkfifo(fifo)
    assert main(["eval", str(fifo)]) == 2
    assert "not a regular file" in one_error_line(capsys.readouterr().err)
    folder = tmp_path / "runs"
    folder.mkdir()
    assert main(["eval", str(folder)]) == 2
    assert "is a folder, expected a file" in one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------------------------------------------- predict

def _jpeg(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), colour).save(path, "JPEG")
    return path


@pytest.mark.timeout(60)
def test_predict_rejects_special_files_without_opening_them(tmp_path):
    folder = tmp_path / "in"
    good = _jpeg(folder / "car.jpg")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "gone.jpg").symlink_to(folder / "deleted.jpg")
    named_fifo = tmp_path / "named.jpg"
    os.mkfifo(named_fifo)
    listed_fifo = tmp_path / "listed.jpg"
    os.mkfifo(listed_fifo)
    records = tmp_path / "records.jsonl"
    records.write_text(dumps({"image": str(listed_fifo)}) + "\n", encoding="utf-8")
    sock_dir = Path("/tmp") / f"plates-sock-{os.getpid()}"
    sock_dir.mkdir()
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(sock_dir / "s.jpg"))
        candidates, rejects = collect_inputs([str(folder), str(named_fifo), str(records), str(sock_dir)])
    finally:
        server.close()
        (sock_dir / "s.jpg").unlink()
        sock_dir.rmdir()
    assert [c.path for c in candidates] == [str(good)]
    assert candidates[0].sha256 == hashlib.sha256(good.read_bytes()).hexdigest()
    reasons = {Path(r["image"]).name: (r["code"], r["reason"]) for r in rejects}
    assert set(reasons) == {"pipe.jpg", "gone.jpg", "named.jpg", "listed.jpg", "s.jpg"}
    for name in ("pipe.jpg", "named.jpg", "listed.jpg"):
        assert reasons[name] == ("not_regular_file", "not a regular file: a FIFO (named pipe) (not opened)"), name
    assert reasons["s.jpg"][0] == "not_regular_file" and "socket" in reasons["s.jpg"][1]
    assert reasons["gone.jpg"][0] == "not_regular_file" and "dangling symbolic link" in reasons["gone.jpg"][1]


@pytest.mark.timeout(60)
def test_predict_cli_dry_run_counts_a_fifo_as_rejected(tmp_path, capsys):
    folder = tmp_path / "in"
    _jpeg(folder / "car.jpg")
    os.mkfifo(folder / "pipe.png")
    out = tmp_path / "answers.jsonl"
    assert main(["predict", str(folder), "-o", str(out), "--model", str(tmp_path / "no-model"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "would answer 1 images" in err and "; 1 rejected" in err
    assert not out.exists() and not (tmp_path / "answers.rejects.jsonl").exists()
