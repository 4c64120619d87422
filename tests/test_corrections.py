"""A reviewer's label fixes (:mod:`plates.corrections`): the corrections file is read strictly (a malformed line is
a user error naming it), values are normalised like labels, and a fix lands on the record it names, with a
warning saying so; a fix outside the vocabulary is applied and flagged, one for a plate the record lacks is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plates.corrections import load_corrections
from plates.errors import UserError
from plates.labels import PLATE_GROUP, VEHICLE_GROUP

VEHICLE = {"车辆品牌": "丰田", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"}
PLATE = {"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云A12345", "车牌颜色": "蓝色", "车牌层数": "单层车牌",
         "车牌用途": "燃油车车牌"}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _record(image: str, root: str = "/data/dump") -> dict:
    return {"image": image, "root": root, "labels": {VEHICLE_GROUP: dict(VEHICLE), PLATE_GROUP: [dict(PLATE)]}}


def test_bad_corrections_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="'field' must be one of"):
        load_corrections(_write(tmp_path / "c.jsonl", [{"image": "x.jpg", "field": "颜色", "value": "红色"}]))
    with pytest.raises(UserError, match="needs an 'image'"):
        load_corrections(_write(tmp_path / "c.jsonl", [{"field": "车辆颜色", "value": "红色"}]))
    with pytest.raises(UserError, match="no such file"):
        load_corrections(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("row, says", [
    ({"image": "a.jpg", "field": "车牌颜色", "plate": -1, "value": "蓝色"}, "line 2: 'plate' must be a plate index"),
    ({"image": "a.jpg", "field": "车牌颜色", "plate": "0", "value": "蓝色"}, "line 2: 'plate' must be a plate index"),
    ({"image": "a.jpg", "field": "车辆颜色", "value": ["红色"]}, "line 2: 'value' must be the corrected label as text"),
    ({"image": 7, "field": "车辆颜色", "value": "红色"}, "line 2: needs an 'image' path"),
])
def test_a_malformed_line_names_its_number(tmp_path, row, says):
    path = _write(tmp_path / "修正 c.jsonl", [{"image": "ok.jpg", "field": "车辆颜色", "value": "红色"}, row])
    with pytest.raises(UserError) as refused:
        load_corrections(path)
    assert str(refused.value).startswith(f"{path}: {says}")


def test_a_fix_is_normalised_applied_and_noted_on_the_record(tmp_path):
    corrections = load_corrections(_write(tmp_path / "c.jsonl", [
        {"image": "cam 1/车 a.jpg", "field": "车辆朝向", "value": "车尾"},       # a synonym of 背面
        {"image": "cam 1/车 a.jpg", "field": "车牌层数", "plate": 0, "value": "双层"},
        {"image": "cam 1/other.jpg", "field": "车辆颜色", "value": None},        # not reviewed: skipped
    ]))
    assert corrections and corrections.skipped == 1
    record = corrections.apply(_record("cam 1/车 a.jpg"))
    assert record["labels"][VEHICLE_GROUP]["车辆朝向"] == "背面"
    assert record["labels"][PLATE_GROUP][0]["车牌层数"] == "双层车牌"
    assert record["warnings"] == [f"corrected: 车辆朝向 正面 -> 背面 ({tmp_path / 'c.jsonl'})",
                                  f"corrected: 车牌层数 单层车牌 -> 双层车牌 ({tmp_path / 'c.jsonl'})"]
    assert corrections.applied == 2 and corrections.notes() == []
    untouched = _record("cam 1/other.jpg")
    assert corrections.apply(untouched) == _record("cam 1/other.jpg") and "warnings" not in untouched


def test_a_value_outside_the_vocabulary_is_applied_and_warned(tmp_path):
    corrections = load_corrections(_write(tmp_path / "c.jsonl", [
        {"image": "a.jpg", "field": "车辆颜色", "value": "紫红色xyz"}]))
    record = corrections.apply(_record("a.jpg"))
    assert record["labels"][VEHICLE_GROUP]["车辆颜色"] == "紫红色xyz"
    assert record["warnings"][1:] == ["unknown_value: 车辆颜色=紫红色xyz"]
    assert corrections.notes() == [
        "1 outside the vocabularies (unknown_value warning on the record), e.g. 车辆颜色=紫红色xyz"]


def test_a_fix_for_a_plate_the_record_lacks_is_not_applied(tmp_path):
    corrections = load_corrections(_write(tmp_path / "c.jsonl", [
        {"image": "a.jpg", "field": "车牌颜色", "plate": 1, "value": "黄色"}]))
    record = corrections.apply(_record("a.jpg"))
    assert record["labels"][PLATE_GROUP] == [PLATE]
    assert record["warnings"] == ["correction_unapplied: 车牌颜色 plate 1: the record has 1 plate(s)"]
    assert corrections.applied == 0
    assert corrections.notes() == ["1 not applied, e.g. 车牌颜色 plate 1: the record has 1 plate(s) (a.jpg)"]


def test_a_review_line_matches_by_either_path_and_is_applied_once(tmp_path):
    """A review line names the image relative to the root and absolutely: either finds the record, and a record
    found by both gets the fix once."""
    review = _write(tmp_path / "review.jsonl", [
        {"image": "cam1/a.jpg", "path": "/data/dump/cam1/a.jpg", "field": "车牌省份", "plate": 0, "value": "山东省"}])
    for root in ("/data/dump", "/mounted/elsewhere"):
        corrections = load_corrections(review)
        line = json.dumps(_record("cam1/a.jpg", root), ensure_ascii=False)
        other = json.dumps(_record("cam1/b.jpg", root), ensure_ascii=False)
        fixed, kept = corrections.apply_lines([line, other])
        assert kept == other, "a record without corrections is passed through as written"
        record = json.loads(fixed)
        assert record["labels"][PLATE_GROUP][0]["车牌省份"] == "山东省" and len(record["warnings"]) == 1
        assert corrections.applied == 1 and corrections.unmatched() == []
    by_absolute_path = load_corrections(_write(tmp_path / "c.jsonl", [
        {"image": "/data/dump/cam1/a.jpg", "field": "车辆颜色", "value": "红色"}]))
    assert by_absolute_path.apply(_record("cam1/a.jpg"))["labels"][VEHICLE_GROUP]["车辆颜色"] == "红色"


def test_a_fix_no_record_took_is_listed_by_name(tmp_path):
    corrections = load_corrections(_write(tmp_path / "c.jsonl", [
        {"image": "gone.jpg", "field": "车辆颜色", "value": "红色"},
        {"image": "cam1/a.jpg", "field": "车辆颜色", "value": "红色"}]))
    corrections.apply(_record("cam1/a.jpg"))
    assert corrections.unmatched() == ["gone.jpg"]


def test_an_unmatched_review_line_is_counted_once(tmp_path):
    """``unmatched``'s docstring: counted once even when named by two paths (a review line carries both)."""
    corrections = load_corrections(_write(tmp_path / "review.jsonl", [
        {"image": "gone.jpg", "path": "/data/dump/gone.jpg", "field": "车辆颜色", "value": "红色"}]))
    corrections.apply(_record("cam1/a.jpg"))
    assert len(corrections.unmatched()) == 1
