"""plates.records: finding a record's image, the vehicle id, plate boxes and reading a records file.

Covered elsewhere: records as `plates parse` writes them (tests/test_parse.py, tests/test_parse_geometry.py).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from plates.errors import UserError
from plates.labels import PLATE_GROUP, VEHICLE_GROUP
from plates.records import iter_records, plate_boxes, resolve_image, validate_record, vehicle_id

LABELS = {VEHICLE_GROUP: {}, PLATE_GROUP: [{}, {}]}
NAMES = ["car 1.jpg", "车辆属性:蓝色 车牌.jpg", "a:b/c d:e.png", os.fsdecode(b"\xb3\xb5\xc5\xc6.jpg")]


@pytest.mark.parametrize("name", NAMES, ids=["space", "cjk-colon", "subfolder", "not-utf8"])
def test_resolve_image_finds_awkward_names_below_root(tmp_path, name):
    root = tmp_path / "dump with space"
    image = root / name
    image.parent.mkdir(parents=True, exist_ok=True)
    image.write_bytes(b"jpeg")
    found = resolve_image({"image": name, "root": str(root)}, tmp_path / "records.jsonl")
    assert os.fsencode(found) == os.fsencode(image) and found.read_bytes() == b"jpeg"


def test_resolve_image_follows_a_dump_copied_with_its_records(tmp_path):
    """A dump moved together with its records file: the old root is gone, the records file's folder holds it."""
    old = tmp_path / "old"
    (old / "sub").mkdir(parents=True)
    (old / "sub" / "车 1.jpg").write_bytes(b"jpeg")
    record = {"image": "sub/车 1.jpg", "root": str(old)}
    new = tmp_path / "copied"
    shutil.copytree(old, new)
    shutil.rmtree(old)
    found = resolve_image(record, new / "records.jsonl")
    assert found == new / "sub" / "车 1.jpg" and found.is_file()
    assert resolve_image(record) == old / "sub" / "车 1.jpg", "without a records file the root is all there is"
    absolute = str(new / "sub" / "车 1.jpg")
    assert str(resolve_image({"image": absolute, "root": "/elsewhere"}, new / "r.jsonl")) == absolute


def test_vehicle_id_ties_frames_by_track_id_only():
    assert vehicle_id({"image": "a.jpg", "ids": ["00032804", "CAR10062", "00336842"]}) == "car10062"
    assert vehicle_id({"image": "b.jpg", "ids": ["car10062"]}) == vehicle_id({"image": "a.jpg", "ids": ["Car10062"]})
    for ids in ([], None, ["00032804"], ["xcar1"], ["car"], ["car12a"]):
        assert vehicle_id({"image": "sub/a.jpg", "ids": ids}) == "sub/a.jpg", ids


def test_plate_boxes_follow_the_plates_in_order():
    assert plate_boxes({"labels": LABELS}) is None
    record = {"labels": LABELS, "plate_geometry": [{"box": [1, 2, 3, 4], "vertices": []}]}
    assert plate_boxes(record) == [[1, 2, 3, 4], None], "a plate beyond the geometry list has no box"
    record = {"labels": LABELS, "plate_geometry": [None, {"box": [5, 6, 7, 8]}]}
    assert plate_boxes(record) == [None, [5, 6, 7, 8]]


def test_iter_records_names_the_bad_line(tmp_path):
    good = {"image": "a.jpg", "labels": LABELS}
    path = tmp_path / "records.jsonl"
    lines = [good, good, {"image": "c.jpg", "labels": {VEHICLE_GROUP: {}, PLATE_GROUP: {}}}]
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    read = iter_records(path)
    assert next(read) == good and next(read) == good
    with pytest.raises(UserError) as raised:
        next(read)
    assert str(raised.value) == (f"{path}: line 3: 'labels.{PLATE_GROUP}' is not a list "
                                 "(is this a `plates parse` output?)")
    assert validate_record([good]) == "not a JSON object"
    assert validate_record({"image": 3, "labels": LABELS}) == "no 'image' path"
    assert validate_record({"image": "a.jpg", "labels": {PLATE_GROUP: []}}) == f"no 'labels.{VEHICLE_GROUP}' object"
    assert validate_record(good) is None
