"""Plate location scored by IoU (`plates eval`'s ``grounding`` block), on hand-computed cases."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from plates.cli import main
from plates.errors import UserError
from plates.evaluation.grounding import answer_figures, iou, match_plates, parse_box
from plates.evaluation.slices import NOT_CCPD, ccpd_bin, ccpd_by
from plates.evaluation.scorer import Scorer

PLATE = {"车牌国家": "中国", "车牌省份": "安徽省", "车牌号码": "皖AE981N", "车牌颜色": "蓝色", "车牌层数": "单层车牌",
         "车牌用途": "燃油车车牌"}
VEHICLE = {"车辆品牌": "大众", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"}
# CCPD's indices of 皖AE981N; the box is the name's third field
CCPD_NAME = "0359-{tilt}-{x1}&{y1}_{x2}&{y2}-200&150_100&150_100&100_200&100-0_0_4_33_32_25_12-{brightness}-4.jpg"


def plate(number="皖AE981N", box=None):
    out = dict(PLATE, 车牌号码=number)
    if box is not None:
        out["车牌位置"] = box
    return out


def test_iou_by_hand():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)  # 50 / (100 + 100 - 50)
    assert iou((0, 0, 10, 10), (2, 2, 4, 6)) == pytest.approx(8 / 100)  # inside: 2x4 of 10x10
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0, "touching edges share no area"
    assert iou((0, 0, 10, 10), None) == 0.0


@pytest.mark.parametrize("value", [None, [1, 2, 3], [1, 2, 3, 4, 5], "0,0,10,10", [0, 0, "10", 10], [True, 0, 5, 5],
                                   [0, 0, math.nan, 10], [5, 0, 5, 10], [0, 10, 10, 0], {"x1": 0}])
def test_unparseable_boxes(value):
    assert parse_box(value) is None


def test_parse_box_accepts_numbers():
    assert parse_box([0, 0, 10, 10]) == (0, 0, 10, 10)
    assert parse_box((1.5, 2, 3, 4)) == (1.5, 2, 3, 4)


def figures(reference_boxes, reference_numbers, answer):
    num, den = answer_figures(tuple(reference_boxes), reference_numbers, answer, Scorer().number)
    return [n / d if d else None for n, d in zip(num, den)], den


def test_missing_predicted_box_counts_zero():
    answer = {"车辆属性": VEHICLE, "车牌属性": plate()}
    rates, den = figures([[0, 0, 10, 10]], ["皖AE981N"], answer)
    assert rates == [0.0, 0.0, 0.0, 0.0] and den == [1, 1, 1, 1]
    rates, _ = figures([[0, 0, 10, 10]], ["皖AE981N"], "not an answer")
    assert rates == [0.0, 0.0, 0.0, 0.0]


def test_two_plates_swapped_are_matched_by_box():
    boxes = [[0, 0, 10, 10], [100, 0, 110, 10]]
    answer = {"车辆属性": VEHICLE, "车牌属性": [plate("皖B22222", boxes[1]), plate("皖A11111", boxes[0])]}
    rates, den = figures(boxes, ["皖A11111", "皖B22222"], answer)
    assert rates == [1.0, 1.0, 1.0, 1.0] and den == [2, 2, 2, 2]
    assert match_plates([parse_box(b) for b in boxes], [parse_box(boxes[1]), parse_box(boxes[0])]) == {0: 1, 1: 0}


def test_partial_overlap_and_wrong_number():
    answer = {"车辆属性": VEHICLE, "车牌属性": [plate("皖AE981M", [5, 0, 15, 10])]}
    rates, _ = figures([[0, 0, 10, 10]], ["皖AE981N"], answer)
    assert rates[0] == pytest.approx(1 / 3) and rates[1:] == [0.0, 0.0, 0.0]
    answer = {"车辆属性": VEHICLE, "车牌属性": [plate("皖AE981M", [0, 0, 10, 10])]}
    assert figures([[0, 0, 10, 10]], ["皖AE981N"], answer)[0] == [1.0, 1.0, 1.0, 0.0], "located, misread"


def test_plate_without_reference_box_is_not_scored():
    answer = {"车辆属性": VEHICLE, "车牌属性": [plate(box=[0, 0, 10, 10]), plate("皖B22222")]}
    rates, den = figures([[0, 0, 10, 10], None], ["皖AE981N", "皖B22222"], answer)
    assert rates == [1.0, 1.0, 1.0, 1.0] and den == [1, 1, 1, 1]


def _ccpd_dump(root):
    """Six CCPD images, each plate box [100, 100, 200, 150] (area 5000): three tilted at most 5 degrees, three
    41 degrees."""
    folder = root / "ccpd_base"
    folder.mkdir(parents=True)
    image = cv2.imencode(".jpg", np.full((1160, 720, 3), 80, np.uint8))[1].tobytes()
    names = [CCPD_NAME.format(x1=100, y1=100, x2=200, y2=150, brightness=b, tilt="5_3" if b < 13 else "12_41")
             for b in range(10, 16)]
    for name in names:
        (folder / name).write_bytes(image)
    return [str(folder / name) for name in names]


def _prediction(image, box, number="皖AE981N"):
    unknown = dict.fromkeys(VEHICLE, "未知")
    return {"image": image, "response": json.dumps({"车辆属性": unknown, "车牌属性": plate(number, box)},
                                                   ensure_ascii=False)}


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_eval_cli_reports_exact_iou_figures(tmp_path, capsys):
    images = _ccpd_dump(tmp_path / "dump")
    records = tmp_path / "records.jsonl"
    assert main(["parse", str(tmp_path / "dump"), "-o", str(records), "-j", "1"]) == 0
    rows = [
        _prediction(images[0], [100, 100, 200, 150]),                 # IoU 1, read right
        _prediction(images[1], [150, 100, 250, 150]),                 # 2500 / 7500 = 1/3
        _prediction(images[2], [100, 100, 200, 150], "皖AE9810"),     # IoU 1, one character wrong
        _prediction(images[3], None),                                 # no box: 0
        _prediction(images[4], [100, 100, 200, 140]),                 # 4000 / 5000 = 0.8, read right
        _prediction(images[5], [100, 100, 200, 130]),                 # 3000 / 5000 = 0.6
    ]
    results = _write(tmp_path / "predictions.jsonl", rows)
    out = tmp_path / "report.json"
    markdown = tmp_path / "report.md"
    capsys.readouterr()
    assert main(["eval", results, "--records", str(records), "--json", str(out), "--markdown", str(markdown),
                 "--bootstrap", "200", "--by", "ccpd:tilt", "--by", "ccpd:brightness"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text(encoding="utf-8"))
    block = report["grounding"]
    assert block["answers"] == block["plates"] == block["end_to_end_plates"] == 6
    assert block["predicted_boxes"] == 5
    assert block["mean_iou"] == pytest.approx((1 + 1 / 3 + 1 + 0 + 0.8 + 0.6) / 6)
    assert block["iou50_rate"] == pytest.approx(4 / 6)
    assert block["iou70_rate"] == pytest.approx(3 / 6)
    assert block["end_to_end_rate"] == pytest.approx(2 / 6)
    for name in ("mean_iou", "iou50_rate", "iou70_rate", "end_to_end_rate"):
        low, high = block["ci95"][name]
        assert low <= block[name] <= high and low < high, name
    assert "Plate location" in printed and "62.2" not in printed and "0.622" in printed
    assert "## Plate location (IoU)" in markdown.read_text(encoding="utf-8")
    tilt = report["by"]["ccpd:tilt"]
    assert list(tilt) == ["0–9", "≥40"] and tilt["0–9"]["n"] == tilt["≥40"]["n"] == 3
    assert tilt["0–9"]["grounding"]["mean_iou"] == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert tilt["0–9"]["grounding"]["end_to_end_rate"] == pytest.approx(1 / 3)
    assert tilt["≥40"]["grounding"]["mean_iou"] == pytest.approx((0 + 0.8 + 0.6) / 3)
    assert tilt["≥40"]["grounding"]["iou70_rate"] == pytest.approx(1 / 3)
    assert tilt["0–9"]["exact_match"] == pytest.approx(2 / 3), "a slice reports what the whole report does"
    assert list(report["by"]["ccpd:brightness"]) == ["0–49"]
    assert "plate location by ccpd:tilt" in printed

    # the same predictions against records without geometry: no grounding block, nothing printed about it
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "plate_geometry"},
                                        ensure_ascii=False) + "\n"
                             for line in records.read_text(encoding="utf-8").splitlines()), encoding="utf-8")
    assert main(["eval", results, "--records", str(plain), "--json", str(tmp_path / "plain.json"),
                 "--bootstrap", "0"]) == 0
    assert "grounding" not in json.loads((tmp_path / "plain.json").read_text(encoding="utf-8"))
    assert "Plate location" not in capsys.readouterr().out


def test_eval_cli_labels_with_boxes_and_swapped_plates(tmp_path):
    boxes = [[10, 10, 60, 30], [300, 40, 360, 60]]
    reference = {"车辆属性": VEHICLE, "车牌属性": [plate("皖A11111", boxes[0]), plate("皖B22222", boxes[1])]}
    swapped = {"车辆属性": VEHICLE, "车牌属性": [plate("皖B22222", boxes[1]), plate("皖A11111", boxes[0])]}
    shifted = {"车辆属性": VEHICLE, "车牌属性": [plate("皖A11111", [35, 10, 85, 30])]}  # half over: 1/3; one missed
    rows = [{"response": json.dumps(answer, ensure_ascii=False), "labels": json.dumps(reference, ensure_ascii=False),
             "images": [f"car{i}/a.jpg"]} for i, answer in enumerate((swapped, shifted))]
    out = tmp_path / "report.json"
    assert main(["eval", _write(tmp_path / "results.jsonl", rows), "--json", str(out), "--bootstrap", "0"]) == 0
    block = json.loads(out.read_text(encoding="utf-8"))["grounding"]
    assert block["plates"] == 4 and block["answers"] == 2 and "ci95" not in block
    assert block["mean_iou"] == pytest.approx((1 + 1 + 1 / 3 + 0) / 4)
    assert block["iou50_rate"] == 0.5 and block["iou70_rate"] == 0.5 and block["end_to_end_rate"] == 0.5


def test_ccpd_bins_from_names():
    name = "ccpd_tilt/0359-12_41-1&2_30&40-1&1_2&2_3&3_4&4-0_0_4_33_32_25_12-205-35.jpg"
    assert ccpd_bin(name, "tilt") == (4, "≥40")
    assert ccpd_bin(name.replace("12_41", "23_9"), "tilt") == (2, "20–29")
    assert ccpd_bin(name, "brightness") == (4, "≥200") and ccpd_bin(name, "blur") == (2, "30–99")
    assert ccpd_bin("/data/" + name, "subset") == (4, "ccpd_tilt")
    assert ccpd_bin("cam/车辆属性:x.jpg", "tilt")[1] == NOT_CCPD
    assert ccpd_by("ccpd:blur") == "blur" and ccpd_by("车牌颜色") is None
    with pytest.raises(UserError, match="ccpd:tilt"):
        ccpd_by("ccpd:angle")


def test_an_answer_with_boxes_is_schema_valid_and_scored_like_one_without():
    """车牌位置 is an optional schema field: an answer carrying it has no violation (the fast check hands it to
    jsonschema, which accepts it) and the same canonical plates; a malformed box is a bad_format violation."""
    from plates.evaluation.schema_check import BAD_FORMAT

    scorer, slow = Scorer(), Scorer(fast_check=False)
    plain = {"车辆属性": VEHICLE, "车牌属性": plate()}
    boxed = {"车辆属性": VEHICLE, "车牌属性": [plate(box=[3, 4, 50, 20]), plate("皖A11111", [60, 4, 90, 20])]}
    for answer in (plain, boxed, {**boxed, "车牌属性": boxed["车牌属性"][0]}):
        assert scorer.violations(answer) == () and slow.violations(answer) == ()
    assert scorer.fast_valid(plain) and scorer.canonical(plain)[1] == [PLATE]
    five = {"车辆属性": VEHICLE, "车牌属性": plate(box=[1, 2, 3, 4, 5])}
    assert [(v.kind, v.field) for v in scorer.violations(five)] == [(BAD_FORMAT, "车牌位置")]
    negative = {"车辆属性": VEHICLE, "车牌属性": plate(box=[-1, 2, 3, 4])}
    assert [v.field for v in scorer.violations(negative)] == ["车牌位置"]
