import random
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from plates.labels import (
    PLATE_FIELDS, UNKNOWN, VEHICLE_FIELDS, abbreviation_for_province, canonical_values, plate_warnings,
    unknown_value_warnings,
)
from plates.synth import (
    BODY_BGR, PLATE_BGR, draw_vehicle, dump_entries, make_dump, random_labels, raw_plate_number, seed_filename,
)

SEED_NAME = ("车辆属性:东风-车头-轻微型货车-蓝色_车牌属性0:中国-云南省-云K CM158-蓝色-单层-燃油车"
             "_00032804_car10062_00336842.jpg")
SEED_LABELS = {
    "车辆属性": {"车辆品牌": "东风", "车辆类型": "轻微型货车", "车辆颜色": "蓝色", "车辆朝向": "正面"},
    "车牌属性": [{"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云KCM158", "车牌颜色": "蓝色",
                  "车牌层数": "单层车牌", "车牌用途": "燃油车车牌"}],
}


def test_seed_filename_writes_the_seed_example():
    assert seed_filename(SEED_LABELS, ["00032804", "car10062", "00336842"]) == SEED_NAME
    assert raw_plate_number("云KCM158") == "云K CM158"
    assert raw_plate_number("14 11586") == "14 11586"


def test_random_labels_are_canonical_and_coupled():
    rng = random.Random(7)
    samples = [random_labels(rng, faults=0) for _ in range(3000)]
    plate_counts = Counter(len(s["车牌属性"]) for s in samples)
    assert plate_counts[0] > 50 and plate_counts[1] > 2000 and plate_counts[2] > 50
    kinds = Counter()
    for labels in samples:
        assert list(labels["车辆属性"]) == list(VEHICLE_FIELDS)
        assert unknown_value_warnings(labels) == []
        for plate in labels["车牌属性"]:
            assert list(plate) == list(PLATE_FIELDS)
            assert plate_warnings(plate) == [], plate
            number = plate["车牌号码"]
            if plate["车牌国家"] == "中国" and plate["车牌省份"] != "香港特别行政区":
                assert number[0] == abbreviation_for_province(plate["车牌省份"])
                assert "I" not in number and "O" not in number
            if plate["车牌用途"] == "燃油车车牌":
                assert (plate["车牌颜色"], len(number)) == ("蓝色", 7)
            if plate["车牌用途"] == "新能源车牌":
                assert plate["车牌颜色"] in ("绿色", "黄绿色") and len(number) == 8
            if plate["车牌用途"] == "货车车牌":
                assert plate["车牌颜色"] == "黄色"
            kinds[plate["车牌用途"], plate["车牌颜色"]] += 1
        if labels["车辆属性"]["车辆类型"] in ("重型货车", "中型货车"):
            assert all(p["车牌颜色"] != "蓝色" for p in labels["车牌属性"])
    assert {("燃油车车牌", "蓝色"), ("新能源车牌", "绿色"), ("货车车牌", "黄色"), ("挂车车牌", "黄色")} <= set(kinds)
    assert any(p["车牌国家"] == "阿布扎比" for s in samples for p in s["车牌属性"])


def test_faults_are_flagged_by_the_rules():
    rng = random.Random(3)
    flagged = 0
    for _ in range(300):
        labels = random_labels(rng, faults=1.0)
        warnings = unknown_value_warnings(labels) + [w for p in labels["车牌属性"] for w in plate_warnings(p)]
        flagged += bool(warnings)
    assert flagged == 300


def test_forced_plate_count():
    rng = random.Random(1)
    for count in (0, 1, 2, 3):
        assert len(random_labels(rng, plates=count)["车牌属性"]) == count


def _share(image, bgr, tolerance=30):
    return float(np.mean(np.all(np.abs(image.astype(int) - bgr) <= tolerance, axis=2)))


def test_draw_vehicle_uses_label_colours():
    rng = random.Random(2)
    for body, plate_colour in (("红色", "蓝色"), ("白色", "黄色"), ("黑色", "绿色")):
        labels = random_labels(rng, plates=1, faults=0)
        labels["车辆属性"]["车辆颜色"] = body
        labels["车牌属性"][0]["车牌颜色"] = plate_colour
        image = draw_vehicle(labels, 320, 240, random.Random(0))
        assert image.shape == (240, 320, 3) and image.dtype == np.uint8
        assert _share(image, BODY_BGR[body]) > 0.2
        assert _share(image, PLATE_BGR[plate_colour]) > 0.01
    again = draw_vehicle(labels, 320, 240, random.Random(0))
    assert np.array_equal(image, again)
    no_plate = {"车辆属性": labels["车辆属性"], "车牌属性": []}
    assert _share(draw_vehicle(no_plate, 320, 240, random.Random(0)), PLATE_BGR["绿色"]) == 0


def test_make_dump_is_deterministic_and_complete(tmp_path):
    first = make_dump(tmp_path / "a", 30, seed=5, broken=4, corrupt=2)
    second = make_dump(tmp_path / "b", 30, seed=5, broken=4, corrupt=2)
    assert len(first) == len(set(first)) == 36
    rel_a = [p.relative_to(tmp_path / "a") for p in first]
    assert rel_a == [p.relative_to(tmp_path / "b") for p in second]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(first, second))
    on_disk = sorted(p for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert on_disk == sorted(first)
    assert len({p.parent for p in first}) >= 3
    entries = list(dump_entries(30, seed=5))
    assert [str(r) for r in rel_a[:30]] == [e.path for e in entries]
    for path in first[:30]:
        image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and 100 < image.shape[1] < 200
    for path in first[-2:]:
        assert cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR) is None


def test_dump_names_vary_like_real_dumps():
    entries = list(dump_entries(400, seed=0))
    names = [Path(e.path).name for e in entries]
    assert any("：" in n for n in names) and any(":" in n for n in names)
    assert {Path(n).suffix for n in names} >= {".jpg", ".JPG"}
    cars = Counter(e.ids[1] for e in entries)
    assert max(cars.values()) >= 2 and len(set(names)) == len(names)
    assert any(e.labels["车牌属性"] == [] for e in entries)
    assert all(v == UNKNOWN or v in canonical_values(f) or f == "车辆品牌"
               for e in entries for f, v in e.labels["车辆属性"].items())


def test_balanced_labels_are_uniform_over_visible_values_and_keep_the_couplings():
    from plates.synth import BALANCED_BODY_COLOURS, BALANCED_ORIENTATIONS, BALANCED_PLATE_COLOURS, balanced_labels

    rng = random.Random(11)
    samples = [balanced_labels(rng) for _ in range(3000)]
    for field, values in (("车辆颜色", BALANCED_BODY_COLOURS), ("车辆朝向", BALANCED_ORIENTATIONS)):
        counts = Counter(s["车辆属性"][field] for s in samples)
        assert set(counts) == set(values) and max(counts.values()) < 1.25 * min(counts.values())
    plate_colours = Counter(s["车牌属性"][0]["车牌颜色"] for s in samples)
    assert set(plate_colours) == set(BALANCED_PLATE_COLOURS)
    assert max(plate_colours.values()) < 1.25 * min(plate_colours.values())
    for labels in samples:
        assert len(labels["车牌属性"]) == 1 and unknown_value_warnings(labels) == []
        plate = labels["车牌属性"][0]
        assert plate_warnings(plate) == [], plate
        if plate["车牌颜色"] == "黄色":
            assert labels["车辆属性"]["车辆类型"] in ("中型货车", "重型货车", "客车", "中型客车")
        if plate["车牌颜色"] == "绿色":
            assert plate["车牌用途"] == "新能源车牌" and len(plate["车牌号码"]) == 8
    entries = list(dump_entries(200, seed=2, balanced=True))
    assert all(len(e.labels["车牌属性"]) == 1 for e in entries)


def test_orientation_is_drawn():
    """Front: white headlights; rear: red tail lights; side: wheels in profile, no lamps."""
    labels = random_labels(random.Random(4), plates=1, faults=0)
    labels["车辆属性"].update({"车辆颜色": "蓝色", "车辆类型": "小轿车"})
    images = {}
    for orientation in ("正面", "背面", "侧面"):
        labels["车辆属性"]["车辆朝向"] = orientation
        images[orientation] = draw_vehicle(labels, 224, 168, random.Random(0))
    white, red = (235, 255, 255), (20, 20, 230)
    assert _share(images["正面"], white, 10) > 0.005 and _share(images["正面"], red, 10) == 0
    assert _share(images["背面"], red, 10) > 0.005 and _share(images["背面"], white, 10) == 0
    assert _share(images["侧面"], red, 10) == 0 and _share(images["侧面"], white, 10) == 0
    hubcap = (170, 170, 170)  # side view only: the wheels seen in profile
    assert _share(images["侧面"], hubcap, 5) > 0.005
    assert _share(images["正面"], hubcap, 5) == _share(images["背面"], hubcap, 5) == 0


def test_closeup_frames_show_the_plate_on_the_token_grid(tmp_path):
    """`demo --long`'s frames: every one 224 x 168 (multiples of the 28-px merged token, within the presets'
    50,176 pixels so nothing is resized), the close-up strip on top in the plate's colour with the number filling
    its width, the vehicle below with its plate on the bumper (the box in the frame's pixels); the same plate gives
    the same strip in any vehicle; no plate: an empty grey strip."""
    from plates.synth import CLOSEUP_STRIP_BOX, balanced_labels, draw_closeup_frame

    rng = random.Random(4)
    labels = balanced_labels(rng)
    image, boxes = draw_closeup_frame(labels, random.Random(1))
    assert image.shape == (168, 224, 3) and CLOSEUP_STRIP_BOX == (0, 0, 224, 56)
    ((x1, y1, x2, y2),) = boxes
    assert 0 < x1 < x2 < 224 and 56 < y1 < y2 < 168
    colour = labels["车牌属性"][0]["车牌颜色"]
    assert _share(image[y1 + 1:y2 - 1, x1 + 1:x2 - 1], PLATE_BGR[colour]) > 0.4  # the bumper's plate
    strip = image[:56]
    assert _share(strip, PLATE_BGR[colour]) > 0.4
    assert _share(image[56:], BODY_BGR[labels["车辆属性"]["车辆颜色"]]) > 0.1
    ink = (strip != np.array(PLATE_BGR[colour], np.uint8)).any(axis=2)
    columns = np.flatnonzero(ink.any(axis=0))
    assert columns[-1] - columns[0] > 0.8 * 224  # the number fills the strip's width
    other = balanced_labels(rng)
    other["车牌属性"] = labels["车牌属性"]
    assert np.array_equal(draw_closeup_frame(other, random.Random(9))[0][:56], strip)
    empty, _ = draw_closeup_frame({"车辆属性": labels["车辆属性"], "车牌属性": []}, random.Random(1))
    assert _share(empty[:56], PLATE_BGR["未知"]) == 1.0

    written = make_dump(tmp_path / "d", 12, seed=2, balanced=True, closeup=True)
    for path in written:
        frame = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        assert frame.shape == (168, 224, 3)
