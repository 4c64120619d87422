"""The demo's scoreboard (`plates.demo_scoreboard`): the majority baseline and the tests by hand."""

from __future__ import annotations

import json

import pytest

from plates.cli import main
from plates.demo_scoreboard import (
    binomial_tail, load_reports, location_test, majority_answer, mean_box, reading_test, scoreboard,
    sign_test_greater, vehicle_means, write_majority_results,
)
from plates.io import read_jsonl, write_jsonl

from helpers import demo_answer, demo_sample


def test_majority_answer_takes_the_commonest_training_values(tmp_path):
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    rows = [demo_sample(demo_answer("白色", "云A12345")), demo_sample(demo_answer("白色", "云B12399")),
            demo_sample(demo_answer("红色", "云A88345")), demo_sample(demo_answer("黑色", "京A1234", plates=2)),
            demo_sample("一辆白色的车。", prompt="<image>请描述"), demo_sample("依据……\n\n{\"车辆属性\"")]
    write_jsonl(dataset / "train.jsonl", rows)
    answer = majority_answer(dataset / "train.jsonl")
    assert answer["车辆属性"]["车辆颜色"] == "白色"
    assert isinstance(answer["车牌属性"], dict)  # one plate is the commonest count
    assert answer["车牌属性"]["车牌号码"] == "云A12345"  # per position, among the commonest length (7)

    write_jsonl(dataset / "val.jsonl", [demo_sample(demo_answer("红色", "云A12345")), demo_sample(demo_answer("白色", "云C00000"))])
    out = write_majority_results(dataset, tmp_path / "results.majority.jsonl")
    lines = read_jsonl(out)
    assert len(lines) == 2 and all(json.loads(r["response"]) == answer for r in lines)
    assert main(["eval", str(out), "--json", str(tmp_path / "majority.json")]) == 0
    report = json.loads((tmp_path / "majority.json").read_text(encoding="utf-8"))
    assert report["fields"]["车辆颜色"]["accuracy"] == 0.5 and report["json_valid_rate"] == 1.0
    board = scoreboard(tmp_path)
    assert "majority" in board and "50.0%" in board and "tuned (free)" in board


def test_binomial_tail_matches_exact_sums():
    assert binomial_tail(0, 10, 0.3) == 1.0
    assert abs(binomial_tail(10, 10, 0.5) - 0.5 ** 10) < 1e-15
    assert abs(binomial_tail(2, 3, 0.5) - 0.5) < 1e-12
    # 40 of 50 right where the majority guess is right a third of the time: far beyond chance.
    assert binomial_tail(40, 50, 1 / 3) < 1e-9


def test_mean_box_baseline_and_the_location_sign_test_by_hand(tmp_path):
    """The mean-box baseline answers every plate with the training boxes' per-coordinate mean (from grounding
    targets: `<bbox>` tags filled from `objects`), and the location p-value is a one-sided sign test over vehicles."""

    assert mean_box([[0, 0, 10, 10], [10, 20, 30, 41]]) == [5, 10, 20, 26]  # 25.5 rounds half to even
    assert mean_box([]) is None

    def grounded(box, colour="白色"):
        row = demo_sample(demo_answer(colour, "云A12345"))
        answer = json.loads(row["messages"][-1]["content"])
        answer["车牌属性"]["车牌位置"] = "<bbox>"
        row["messages"][-1]["content"] = json.dumps(answer, ensure_ascii=False).replace('"<bbox>"', "<bbox>")
        row["objects"] = {"ref": [], "bbox": [box], "bbox_type": "real"}
        return row

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    write_jsonl(dataset / "train.jsonl", [grounded([10, 100, 60, 120]), grounded([30, 110, 90, 130]),
                                          grounded([20, 90, 70, 110], "红色")])
    assert majority_answer(dataset / "train.jsonl")["车牌属性"]["车牌位置"] == [20, 100, 73, 120]

    # Baseline box [20, 100, 73, 120] against references: identical (IoU 1), and [20, 100, 73, 140]: the baseline
    # box covers half of it, IoU 1060 / 2120 = 0.5.
    rows = [grounded([20, 100, 73, 120]), grounded([20, 100, 73, 140])]
    for i, row in enumerate(rows):
        row["images"] = [f"/v/car{100 + i}_frame.jpg"]
    write_jsonl(dataset / "val.jsonl", rows)
    out = write_majority_results(dataset, tmp_path / "results.majority.jsonl")
    assert main(["eval", str(out), "--json", str(tmp_path / "majority.json")]) == 0
    report = json.loads((tmp_path / "majority.json").read_text(encoding="utf-8"))
    assert report["grounding"]["mean_iou"] == pytest.approx(0.75)
    assert vehicle_means(report) == pytest.approx({"car100": 1.0, "car101": 0.5})

    # A "tuned" answer per vehicle: exact on car101 (1.0 > 0.5), the same box as the baseline on car100 (a tie).
    tuned = [{"response": r["labels"], "labels": r["labels"], "images": r["images"]} for r in read_jsonl(out)]
    tuned[0]["response"] = read_jsonl(out)[0]["response"]
    write_jsonl(tmp_path / "results.tuned.jsonl", tuned)
    assert main(["eval", str(tmp_path / "results.tuned.jsonl"), "--json", str(tmp_path / "tuned.json")]) == 0
    loaded = {n: json.loads((tmp_path / f"{n}.json").read_text(encoding="utf-8")) for n in ("tuned", "majority")}
    test = location_test(loaded)
    assert test == {"tuned": pytest.approx(1.0), "baseline": pytest.approx(0.75), "vehicles": 2, "wins": 1,
                    "losses": 0, "ties": 1, "p": 0.5}
    assert "车牌位置: tuned mean IoU 1.000 vs 0.750" in scoreboard(tmp_path)

    # By hand: 9 wins, 1 loss, 2 ties -> P(X >= 9), X ~ Bin(10, 1/2) = (10 + 1) / 1024.
    tuned_iou = [0.9] * 9 + [0.1, 0.3, 0.0]
    base_iou = [0.2] * 9 + [0.4, 0.3, 0.0]
    wins, losses, p = sign_test_greater(tuned_iou, base_iou)
    assert (wins, losses) == (9, 1) and p == pytest.approx(11 / 1024)
    assert sign_test_greater([0.5], [0.5]) == (0, 0, 1.0)


def test_the_reading_test_and_its_scoreboard_lines_by_hand(tmp_path):
    """The characters' scoreboard: the majority number is the commonest character at each position; per-position
    and full-plate accuracy side by side; the p-value a one-sided sign test over held-out vehicles (each scored
    by its mean character accuracy)."""

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    write_jsonl(dataset / "train.jsonl", [demo_sample(demo_answer("白色", n)) for n in ("云A12345", "云A12355", "云B12345")])
    val = [demo_sample(demo_answer("白色", "云A12345")), demo_sample(demo_answer("白色", "京C99999"))]
    for i, row in enumerate(val):
        row["images"] = [f"/v/car{100 + i}_frame.jpg"]
    write_jsonl(dataset / "val.jsonl", val)
    out = write_majority_results(dataset, tmp_path / "results.majority.jsonl")
    assert json.loads(read_jsonl(out)[0]["response"])["车牌属性"]["车牌号码"] == "云A12345"
    tuned = [{"response": r["labels"], "labels": r["labels"], "images": r["images"]} for r in read_jsonl(out)]
    tuned[1]["response"] = tuned[1]["labels"].replace("京C99999", "京C99990")
    write_jsonl(tmp_path / "results.tuned.jsonl", tuned)
    reports = tmp_path / "reports"
    for name in ("majority", "tuned"):
        assert main(["eval", str(tmp_path / f"results.{name}.jsonl"), "--json", str(reports / f"{name}.json")]) == 0
    test = reading_test(load_reports(reports))
    # car100: both exact (a tie); car101: tuned 6 of 7 characters, the majority none (a win) -> p = 1/2.
    assert test["tuned"] == pytest.approx(13 / 14) and test["baseline"] == pytest.approx(0.5)
    assert (test["full_tuned"], test["full_baseline"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert test["by_position"] == pytest.approx([1, 1, 1, 1, 1, 1, 0.5])
    assert test["baseline_by_position"] == pytest.approx([0.5] * 7)
    assert (test["vehicles"], test["wins"], test["losses"], test["ties"], test["p"]) == (2, 1, 0, 1, 0.5)
    board = scoreboard(reports)
    assert "plate chars by position, tuned|majority (%): 100|50 / 100|50" in board and "/ 50|50" in board
    assert "plate chars: tuned 92.9% vs majority 50.0%; per held-out vehicle tuned better 1, worse 0, tied 1 of 2" \
        in board and "p = 5.0e-01" in board
    assert "full plates" in board
