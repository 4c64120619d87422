"""`plates eval --by path:N` and the CCPD subset table, on crafted results of known truth."""

from __future__ import annotations

import json

import pytest

from plates.cli import main
from plates.errors import UserError
from plates.evaluation.slices import CCPD_PUBLISHED, ccpd_subset, folder_of, folders, parse_by

V = {"车辆品牌": "大众", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"}


def plate(number: str) -> dict:
    return {"车牌国家": "中国", "车牌省份": "安徽省", "车牌号码": number, "车牌颜色": "蓝色", "车牌层数": "单层车牌",
            "车牌用途": "燃油车车牌"}


def line(image: str, number: str | None, read: str | None) -> dict:
    """A results line: reference plate ``number`` (None: no plate), the model read ``read`` (None: no plate)."""
    reference = {"车辆属性": V, "车牌属性": plate(number) if number else []}
    answer = {"车辆属性": V, "车牌属性": plate(read) if read else []}
    return {"response": json.dumps(answer, ensure_ascii=False), "labels": json.dumps(reference, ensure_ascii=False),
            "images": [image]}


def write(path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_folders_and_indices():
    image = "/srv/停车场 A/cam:1/2024-05-01/车辆属性:x.jpg"
    assert folders(image) == ["srv", "停车场 A", "cam:1", "2024-05-01"]
    assert folder_of(image, 2) == "cam:1" and folder_of(image, -1) == "2024-05-01"
    assert folder_of(image, 9) == "(none)" and folder_of("x.jpg", 0) == "(none)"
    assert folders("file:///a/b/c.jpg") == ["a", "b"] and folders("rel\\win\\x.jpg") == ["rel", "win"]
    assert parse_by("path:-1") == -1 and parse_by("车牌颜色") is None
    with pytest.raises(UserError, match="integer folder index"):
        parse_by("path:cam")


def test_ccpd_subsets_are_recognised_from_the_folder():
    assert ccpd_subset("/data/CCPD2019/ccpd_base/0123-90_89.jpg") == "ccpd_base"
    assert ccpd_subset("CCPD2019/CCPD_Weather/x.jpg") == "ccpd_weather"
    assert ccpd_subset("/data/ccpd_np/x.jpg") == "ccpd_np"
    assert ccpd_subset("/data/ccpd_base_old/x.jpg") is None
    assert ccpd_subset("/data/other/ccpd_base.jpg") is None, "a file name is not a folder"


def test_by_path_slices_match_hand_counts(tmp_path, capsys):
    rows = [
        line("/srv/site/cam1/2024-05-01/a.jpg", "皖A12345", "皖A12345"),
        line("/srv/site/cam1/2024-05-02/b.jpg", "皖A22345", "皖A22340"),
        line("/srv/site/cam1/2024-05-02/c.jpg", "皖A32345", "皖A32345"),
        line("/srv/site/cam2/2024-05-01/d.jpg", "皖A42345", "皖B42345"),
        line("short.jpg", "皖A52345", "皖A52345"),
    ]
    results = write(tmp_path / "results.jsonl", rows)
    out = tmp_path / "r.json"
    assert main(["eval", results, "--by", "path:2", "--by", "path:-1", "--by", "plate_colour", "--json", str(out),
                 "--markdown", str(tmp_path / "r.md"), "--bootstrap", "0"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text(encoding="utf-8"))
    cams = report["by"]["path:2"]
    assert list(cams) == ["cam1", "(none)", "cam2"], "largest slice first"
    assert cams["cam1"]["n"] == 3 and cams["cam1"]["exact_match"] == pytest.approx(2 / 3)
    assert cams["cam2"]["exact_match"] == 0.0 and cams["(none)"]["exact_match"] == 1.0
    assert cams["cam1"]["fields"]["车牌号码"]["accuracy"] == pytest.approx(2 / 3)
    days = report["by"]["path:-1"]
    assert days["2024-05-01"]["n"] == 2 and days["2024-05-01"]["exact_match"] == 0.5
    assert days["2024-05-02"]["exact_match"] == 0.5 and days["(none)"]["n"] == 1
    assert report["by"]["车牌颜色"]["蓝色"]["n"] == 5, "field slices still work beside path slices"
    assert "by path:2:" in printed and "cam1" in printed
    assert "## By path:-1" in (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "ccpd" not in report and "CCPD" not in printed


def test_ccpd_table_in_the_papers_layout(tmp_path, capsys):
    root = "/data/CCPD2019"
    rows = [
        line(f"{root}/ccpd_base/1.jpg", "皖A12345", "皖A12345"),
        line(f"{root}/ccpd_base/2.jpg", "皖A12346", "皖A12346"),
        line(f"{root}/ccpd_base/3.jpg", "皖A12347", "皖A12347"),
        line(f"{root}/ccpd_base/4.jpg", "皖A12348", "皖A12340"),  # one character wrong: 6/7 characters
        line(f"{root}/ccpd_db/1.jpg", "皖AD1234", "皖AD1234"),
        line(f"{root}/ccpd_db/2.jpg", "皖AD1235", None),  # missed plate: 0 characters
        line(f"{root}/ccpd_challenge/1.jpg", "皖AC1234", "皖AC1234"),
        line(f"{root}/ccpd_np/1.jpg", None, None),  # no plate, none read
        line(f"{root}/ccpd_np/2.jpg", None, "皖A00000"),  # no plate, one invented
        line("/data/elsewhere/x.jpg", "皖A99999", None),  # not CCPD: not in the table
    ]
    results = write(tmp_path / "ccpd results.jsonl", rows)
    out = tmp_path / "r.json"
    assert main(["eval", results, "--json", str(out), "--markdown", str(tmp_path / "r.md"), "--bootstrap", "0",
                 "--html", str(tmp_path / "r.html")]) == 0
    printed = capsys.readouterr().out
    block = json.loads(out.read_text(encoding="utf-8"))["ccpd"]
    subsets = block["subsets"]
    assert list(subsets) == ["ccpd_base", "ccpd_db", "ccpd_challenge", "ccpd_np"], "in the paper's order"
    assert subsets["ccpd_base"]["full_plate_accuracy"] == 0.75
    assert subsets["ccpd_base"]["char_accuracy"] == pytest.approx((3 + 6 / 7) / 4)
    assert subsets["ccpd_db"]["full_plate_accuracy"] == 0.5 and subsets["ccpd_db"]["char_accuracy"] == 0.5
    assert subsets["ccpd_challenge"]["full_plate_accuracy"] == 1.0
    assert subsets["ccpd_np"]["full_plate_accuracy"] is None and subsets["ccpd_np"]["plates"] == 0
    assert subsets["ccpd_np"]["plate_count_accuracy"] == 0.5
    overall = block["overall"]
    assert overall["n"] == 9 and overall["plates"] == 7
    assert overall["full_plate_accuracy"] == pytest.approx(5 / 7)
    assert block["published"]["ccpd_base"] == 98.5 and block["published"]["overall"] == 95.5

    table = printed[printed.index("CCPD subsets"):]
    header, ours, published = table.splitlines()[1:4]
    assert header.split()[-5:] == ["Overall", "Base", "DB", "Challenge", "NP"]
    assert ours.split()[-5:] == ["71.4", "75.0", "50.0", "100.0", "—"]
    assert published.split()[-5:] == [f"{CCPD_PUBLISHED['overall']:.1f}", "98.5", "96.9", "85.1", "—"]
    assert "## CCPD subsets" in (tmp_path / "r.md").read_text(encoding="utf-8")
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<h3>CCPD subsets</h3>" in page and "<td class=num>98.5</td>" in page
