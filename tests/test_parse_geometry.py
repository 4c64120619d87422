"""`plates parse` keeps what CCPD names carry (plate box, vertices, tilt, brightness, blur) and nothing changes
for seed names."""

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np

from plates.cli import main
from plates.names import parse_filename
from plates.parse import parse_to_files
from plates.records import WARNING_CODES
from plates.records import iter_records, plate_boxes

CCPD_SAMPLE = Path(__file__).resolve().parent / "data" / "ccpd_names_sample.txt"
SEED_NAME = "车辆属性:东风-车头-轻微型货车-蓝色_车牌属性0:中国-云南省-云K CM158-蓝色-单层-燃油车_00032804_car10062_00336842.jpg"
# written independently of plates.names: the seven '-' fields, points as 'x&y' joined by '_'
_FIELDS = re.compile(r"^([^-]+)-([^-]+)-([^-]+)-([^-]+)-([^-]+)-([^-]+)-([^-]+)\.jpg$")


def _points(text):
    return [[int(n) for n in point.split("&")] for point in text.split("_")]


def _jpeg(width, height):
    return cv2.imencode(".jpg", np.full((height, width, 3), 90, np.uint8))[1].tobytes()


def _parse_names(root, names, image_bytes, tmp_path, capsys=None):
    """A dump of hard links to one JPEG under each name, parsed by the CLI; the records by image."""
    source = tmp_path / "image.jpg"
    source.write_bytes(image_bytes)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        os.link(source, root / name)
    out = tmp_path / "records.jsonl"
    assert main(["parse", str(root), "-o", str(out), "-j", "1"]) == 0
    return {record["image"]: record for record in iter_records(out)}, out


def test_ccpd_sample_keeps_box_vertices_and_capture_figures(tmp_path):
    names = CCPD_SAMPLE.read_text(encoding="utf-8").split()
    assert len(names) == 5000
    root = tmp_path / "ccpd"
    records, _ = _parse_names(root, names, _jpeg(720, 1160), tmp_path)  # CCPD's image size
    assert len(records) == 5000
    for name in names:
        record = records[name]
        area, tilt, box, vertices, _, brightness, blur = _FIELDS.match(name.rpartition("/")[2]).groups()
        (x1, y1), (x2, y2) = _points(box)
        assert record["plate_geometry"] == [{"box": [x1, y1, x2, y2], "vertices": _points(vertices)}], name
        assert plate_boxes(record) == [[x1, y1, x2, y2]]
        horizontal, vertical = tilt.split("_")
        assert record["ccpd"] == {"area": int(area), "tilt_horizontal": int(horizontal),
                                  "tilt_vertical": int(vertical), "brightness": int(brightness), "blur": int(blur)}
        assert len(record["plate_geometry"][0]["vertices"]) == 4
        assert not [w for w in record["warnings"] if w.startswith("plate_geometry")], (name, record["warnings"])


def test_seed_record_is_unchanged(tmp_path):
    records, out = _parse_names(tmp_path / "dump", [SEED_NAME], _jpeg(64, 48), tmp_path)
    expected = {"image": SEED_NAME, "root": str(tmp_path / "dump"), "format": "seed", "width": 64, "height": 48,
                "channels": 3,
                "labels": {"车辆属性": {"车辆品牌": "东风", "车辆类型": "轻微型货车", "车辆颜色": "蓝色", "车辆朝向": "正面"},
                           "车牌属性": [{"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云KCM158",
                                         "车牌颜色": "蓝色", "车牌层数": "单层车牌", "车牌用途": "燃油车车牌"}]},
                "ids": ["00032804", "car10062", "00336842"], "warnings": []}
    assert out.read_bytes() == (json.dumps(expected, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    assert plate_boxes(records[SEED_NAME]) is None
    assert parse_filename(SEED_NAME).extra is None


def test_bad_geometry_is_a_warning_never_a_reject(tmp_path):
    good = "0359-5_21-151&285_417&398-417&398_179&377_151&285_389&306-0_0_4_33_32_25_12-59-4.jpg"
    flipped = good.replace("151&285_417&398-", "417&285_151&398-", 1)          # x2 < x1
    flat = good.replace("151&285_417&398-", "151&285_417&285-", 1)             # y2 == y1
    three = good.replace("-417&398_179&377_151&285_389&306-", "-417&398_179&377_151&285-")
    outside = good.replace("151&285_417&398-", "151&285_417&1398-", 1)       # beyond the 720x1160 image
    names = [good, flipped, flat, three, outside]
    records, _ = _parse_names(tmp_path / "dump", names, _jpeg(720, 1160), tmp_path)
    assert len(records) == 5, "every name is a record"

    def geometry_warnings(name):
        return [w for w in records[name]["warnings"] if w.startswith("plate_geometry:")]

    assert geometry_warnings(good) == []
    assert records[flipped]["plate_geometry"][0]["box"] == [417, 285, 151, 398], "kept as written"
    assert geometry_warnings(flipped) == ["plate_geometry: box [417, 285, 151, 398] is empty (needs x1 < x2 and "
                                          "y1 < y2)"]
    assert len(geometry_warnings(flat)) == 1 and "is empty" in geometry_warnings(flat)[0]
    assert records[three]["plate_geometry"][0]["vertices"] == [[417, 398], [179, 377], [151, 285]]
    assert geometry_warnings(three) == ["plate_geometry: 3 vertices, expected 4"]
    assert geometry_warnings(outside) == ["plate_geometry: plate 0 box [151, 285, 417, 1398] lies outside the "
                                          "720x1160 image"]
    assert "plate_geometry" in WARNING_CODES  # `plates build --exclude-warning plate_geometry` accepts it


def test_small_images_flag_points_outside(tmp_path):
    name = "0062-0_2-347&332_465&376-463&376_347&376_349&332_465&332-0_0_12_33_24_30_8-62-7.jpg"
    root = tmp_path / "dump"
    root.mkdir()
    (root / name).write_bytes(_jpeg(400, 360))  # box reaches x 465, y 376; vertices too
    summary = parse_to_files(root, tmp_path / "r.jsonl", show_progress=False)
    assert summary.warning_codes["plate_geometry"] == 2
    (record,) = iter_records(tmp_path / "r.jsonl")
    assert record["warnings"] == ["plate_geometry: plate 0 box [347, 332, 465, 376] lies outside the 400x360 image",
                                  "plate_geometry: plate 0 vertices lie outside the 400x360 image"]


def test_plate_boxes_of_several_plates():
    labels = {"车辆属性": {}, "车牌属性": [{}, {}, {}]}
    record = {"labels": labels, "plate_geometry": [None, {"box": [1, 2, 3, 4], "vertices": []}]}
    assert plate_boxes(record) == [None, [1, 2, 3, 4], None], "a plate without geometry has no box"
    assert plate_boxes({"labels": labels}) is None
