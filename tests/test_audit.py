"""`plates audit` and `plates parse --corrections`: disputed labels ranked by the model's confidence, a review sheet,
and the corrections loop back into the next parse. The slow test audits real `plates predict --logprobs` answers
of the tiny model."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from plates.audit import audit
from plates.cli import main
from plates.corrections import load_corrections
from plates.errors import UserError
from plates.io import read_jsonl
from plates.labels import PLATE_GROUP, UNKNOWN, VEHICLE_GROUP, load_vocabularies

VEHICLE = {"车辆品牌": "丰田", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"}
PLATE = {"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云A12345", "车牌颜色": "蓝色", "车牌层数": "单层车牌",
         "车牌用途": "燃油车车牌"}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _image(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), (200, 30, 30)).save(path)
    return path


@pytest.fixture
def audited(tmp_path):
    """Three records; the model agrees with the first, is very sure the second's province is wrong and mildly
    sure the third's colour is wrong, and answers 未知 where the third's label has a brand."""
    root = tmp_path / "dump"
    records, preds = [], []
    confidences = {"a.jpg": {}, "b.jpg": {"车牌省份": 0.97, "车辆品牌": 0.99},
                   "c.jpg": {"车辆颜色": 0.62, "车辆品牌": 0.99}}
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _image(root / "sub" / name)
        labels = {VEHICLE_GROUP: dict(VEHICLE), PLATE_GROUP: [dict(PLATE)]}
        answer = copy.deepcopy({VEHICLE_GROUP: dict(VEHICLE), PLATE_GROUP: dict(PLATE)})
        if name == "b.jpg":
            labels[PLATE_GROUP][0]["车牌省份"] = "山东省"  # the typist's mistake
        if name == "c.jpg":
            answer[VEHICLE_GROUP]["车辆颜色"] = "银色"
            answer[VEHICLE_GROUP]["车辆品牌"] = UNKNOWN
        records.append({"image": f"sub/{name}", "root": str(root), "labels": labels})
        preds.append({"image": str(root / "sub" / name), "answer": answer, "confidence": confidences[name]})
    preds.append({"image": str(tmp_path / "elsewhere.jpg"), "answer": None})
    return _write(tmp_path / "records.jsonl", records), _write(tmp_path / "preds.jsonl", preds)


def test_confident_disagreements_come_first(audited):
    records, preds = audited
    disputes, stats = audit(records, preds, min_confidence=0.5)
    assert [(Path(d.image).name, d.field, d.label, d.prediction) for d in disputes] == [
        ("b.jpg", "车牌省份", "山东省", "云南省"), ("c.jpg", "车辆颜色", "白色", "银色")]
    assert disputes[0].plate == 0 and disputes[1].plate is None and disputes[0].confidence == 0.97
    assert stats.records == stats.predicted == 3 and stats.disputed["车牌省份"] == 1
    assert stats.compared["车辆品牌"] == 2, "a field the model left 未知 is not compared"
    assert [d.field for d in audit(records, preds, min_confidence=0.9)[0]] == ["车牌省份"]


def test_cli_writes_review_sheet_and_stats(audited, tmp_path, capsys):
    records, preds = audited
    review = tmp_path / "out" / "review.jsonl"
    assert main(["audit", str(records), "--predictions", str(preds), "-o", str(review), "--stats",
                 "--json", str(tmp_path / "out" / "stats.json")]) == 0
    out = capsys.readouterr().out
    lines = read_jsonl(review)
    assert lines[0]["field"] == "车牌省份" and lines[0]["value"] is None and lines[0]["path"].endswith("b.jpg")
    assert "2 disputed labels in 3 of 3 records" in out and "车牌省份" in out and "disputed %" in out
    sheet = (tmp_path / "out" / "review.html").read_text(encoding="utf-8")
    assert sheet.count("data:image/jpeg;base64,") == 2 and sheet.index("山东省") < sheet.index("银色")
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["fields"]["车牌省份"]["disputed"] == 1
    assert main(["audit", str(records), "--predictions", str(preds), "-o", str(review),
                 "--sheet", str(tmp_path / "review.md")]) == 0
    assert "| 1 |" in (tmp_path / "review.md").read_text(encoding="utf-8")
    assert main(["audit", str(records), "--predictions", str(preds), "-o", str(records)]) == 2, "never an input"


def test_review_with_values_corrects_the_next_parse(tmp_path, capsys):
    from plates.synth import make_dump

    root = tmp_path / "dump"
    make_dump(root, 4, seed=1)
    first = tmp_path / "records.jsonl"
    assert main(["parse", str(root), "-o", str(first), "-j", "1"]) == 0
    records = read_jsonl(first)
    target = next(r for r in records if r["labels"][PLATE_GROUP])
    province = target["labels"][PLATE_GROUP][0]["车牌省份"]
    other = next(v for v in load_vocabularies()["车牌省份"].canonical if v != province)
    corrections = _write(tmp_path / "review.jsonl", [
        {"image": target["image"], "path": str(root / target["image"]), "field": "车牌省份", "plate": 0,
         "label": province, "prediction": other, "confidence": 0.9, "value": other},
        {"image": records[0]["image"], "field": "车辆颜色", "value": None},  # not reviewed: skipped
        {"image": "gone.jpg", "field": "车辆颜色", "value": "红色"}])
    second = tmp_path / "records2.jsonl"
    capsys.readouterr()
    assert main(["parse", str(root), "-o", str(second), "-j", "1", "--corrections", str(corrections)]) == 0
    out = capsys.readouterr().out
    assert "1 label corrections applied" in out and "1 name no parsed image, e.g. gone.jpg" in out
    fixed = {r["image"]: r for r in read_jsonl(second)}
    assert fixed[target["image"]]["labels"][PLATE_GROUP][0]["车牌省份"] == other
    assert any(w.startswith(f"corrected: 车牌省份 {province} -> {other}") for w in fixed[target["image"]]["warnings"])
    untouched = [r for r in records if r["image"] != target["image"]]
    assert all(fixed[r["image"]]["labels"] == r["labels"] for r in untouched)


def test_rerunning_audit_keeps_what_a_reviewer_filled_in(audited, tmp_path, capsys):
    records, preds = audited
    review = tmp_path / "review.jsonl"
    argv = ["audit", str(records), "--predictions", str(preds), "-o", str(review)]
    assert main([*argv, "--min-confidence", "0.9"]) == 0
    lines = read_jsonl(review)
    assert [line["field"] for line in lines] == ["车牌省份"]
    lines[0]["value"] = "云南省"
    lines[0]["note"] = "checked on the photo"
    review.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    capsys.readouterr()
    assert main([*argv, "--min-confidence", "0.5"]) == 0  # more disputes this time
    assert "kept 1 reviewed lines" in capsys.readouterr().out
    merged = read_jsonl(review)
    assert [line["field"] for line in merged] == ["车牌省份", "车辆颜色"], "new disputes are added"
    assert merged[0]["value"] == "云南省" and merged[0]["note"] == "checked on the photo"
    assert merged[1]["value"] is None
    assert main([*argv, "--min-confidence", "0.99"]) == 0  # no dispute left: the reviewed line stays
    assert [(line["field"], line["value"]) for line in read_jsonl(review)] == [("车牌省份", "云南省")]


def test_corrections_are_checked_against_the_vocabularies(tmp_path, capsys):
    from plates.synth import make_dump

    root = tmp_path / "dump"
    make_dump(root, 3, seed=2)
    records = tmp_path / "records.jsonl"
    assert main(["parse", str(root), "-o", str(records), "-j", "1"]) == 0
    target = next(r for r in read_jsonl(records) if len(r["labels"][PLATE_GROUP]) == 1)
    for bad in (["红色"], 5, {"v": "红色"}, True):
        with pytest.raises(UserError, match="'value' must be the corrected label as text"):
            load_corrections(_write(tmp_path / "c.jsonl", [{"image": target["image"], "field": "车辆颜色",
                                                              "value": bad}]))
    corrections = _write(tmp_path / "c.jsonl", [
        {"image": target["image"], "field": "车辆颜色", "value": "紫红色xyz"},
        {"image": target["image"], "field": "车牌颜色", "plate": 7, "value": "蓝色"}])
    capsys.readouterr()
    assert main(["parse", str(root), "-o", str(tmp_path / "r2.jsonl"), "-j", "1", "--corrections",
                 str(corrections)]) == 0
    out = capsys.readouterr().out
    assert "1 label corrections applied" in out
    assert "1 not applied, e.g. 车牌颜色 plate 7: the record has 1 plate(s)" in out
    assert "1 outside the vocabularies (unknown_value warning on the record), e.g. 车辆颜色=紫红色xyz" in out
    fixed = next(r for r in read_jsonl(tmp_path / "r2.jsonl") if r["image"] == target["image"])
    assert fixed["labels"][VEHICLE_GROUP]["车辆颜色"] == "紫红色xyz"
    assert "unknown_value: 车辆颜色=紫红色xyz" in fixed["warnings"]
    assert any(w.startswith("correction_unapplied: 车牌颜色 plate 7") for w in fixed["warnings"])


@pytest.mark.slow
def test_audit_ranks_a_deliberately_wrong_label_first_on_real_predictions(tiny_model_dir, tmp_path, capsys):
    """Real `plates predict --logprobs` answers of the tiny model; records whose labels are those answers, except
    a wrong label on the field the model was surest of (record A) and on one it was least sure of (record B)."""
    from plates.labels import plates_of_answer
    from plates.synth import make_dump
    from plates.dump import iter_files

    root = tmp_path / "dump"
    make_dump(root, 3, seed=4)
    images = iter_files(root)
    inputs = _write(tmp_path / "inputs.jsonl", [{"image": rel, "root": str(root)} for rel in images])
    preds = tmp_path / "preds.jsonl"
    assert main(["predict", str(inputs), "-o", str(preds), "--model", str(tiny_model_dir), "--logprobs",
                 "--max-new-tokens", "1024", "--max-pixels", str(112 * 112)]) == 0
    answers = {Path(p["image"]).relative_to(root).as_posix(): p for p in read_jsonl(preds)}
    assert sorted(answers) == sorted(images)
    vocab = load_vocabularies()
    scored = []  # (confidence, image, field) for closed fields the model answered with a known value
    for rel, line in answers.items():
        vehicle = line["answer"][VEHICLE_GROUP]
        for name, value in (line["confidence"] or {}).items():
            if name in vehicle and vehicle[name] != UNKNOWN and not vocab[name].free_text:
                scored.append((value, rel, name))
    scored.sort()
    assert len(scored) >= 2
    (_, low_image, low_field), (_, high_image, high_field) = scored[0], scored[-1]
    records = []
    for rel, line in answers.items():
        labels = {VEHICLE_GROUP: dict(line["answer"][VEHICLE_GROUP]), PLATE_GROUP: plates_of_answer(line["answer"])}
        for image, name in ((high_image, high_field), (low_image, low_field)):
            if rel == image:
                labels[VEHICLE_GROUP][name] = next(v for v in vocab[name].canonical if v != labels[VEHICLE_GROUP][name])
        records.append({"image": rel, "root": str(root), "labels": labels})
    records_path = _write(tmp_path / "records.jsonl", records)
    review = tmp_path / "review.jsonl"
    assert main(["audit", str(records_path), "--predictions", str(preds), "-o", str(review),
                 "--min-confidence", "0"]) == 0
    lines = read_jsonl(review)
    assert [(line["image"], line["field"]) for line in lines] == [(high_image, high_field), (low_image, low_field)]
    assert lines[0]["confidence"] >= lines[1]["confidence"]
