"""Reports written from hostile or odd inputs (issue 21): labels and answers carrying HTML stay inert in the
Markdown report, every JSON report is strict JSON, `--bootstrap` has bounds, intervals hold their estimate, and
a huge answer value is clipped in every report while `--details` keeps it whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from plates.cli import main
from plates.evaluation.stats import MAX_REPLICATES, MIN_REPLICATES, bootstrap_intervals, paired_delta

VEHICLE = {"车辆品牌": "奥迪", "车辆类型": "小轿车", "车辆颜色": "黑色", "车辆朝向": "背面"}
PLATE = {"车牌国家": "中国", "车牌省份": "黑龙江省", "车牌号码": "黑GCY987", "车牌颜色": "蓝色",
         "车牌层数": "单层车牌", "车牌用途": "燃油车车牌"}
SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
LINK = "[click](javascript:alert(3))"


def _answer(vehicle=None, plate=None) -> str:
    return json.dumps({"车辆属性": {**VEHICLE, **(vehicle or {})}, "车牌属性": {**PLATE, **(plate or {})}},
                      ensure_ascii=False)


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _strict(path: Path):
    def refuse(name):
        raise AssertionError(f"{path.name}: {name} is not JSON")

    text = path.read_text(encoding="utf-8")
    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()] if path.suffix == ".jsonl" \
        else json.loads(text, parse_constant=refuse)


# ------------------------------------------------------------------------------------------------ Markdown


def test_markdown_report_escapes_html_and_links_from_labels_and_answers(tmp_path):
    rows = [{"image": f"car{i:04d}/{SCRIPT}.jpg", "response": _answer({"车辆品牌": SCRIPT + " | x"}),
             "labels": _answer({"车辆品牌": IMG})} for i in range(3)]
    rows.append({"image": "car0009/a.jpg", "response": f"no json here {IMG} {LINK} `code`",
                 "labels": _answer()})
    rows.append({"image": "car0010/b.jpg", "response": _answer({"车辆颜色": LINK, "车辆型号": SCRIPT}),
                 "labels": _answer()})
    results = _write(tmp_path / "results.jsonl", rows)
    md, html = tmp_path / "r.md", tmp_path / "r.html"
    assert main(["eval", str(results), "--markdown", str(md), "--html", str(html), "--bootstrap", "0"]) == 0
    text = md.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;img src=x onerror" in text
    lowered = text.lower()
    assert "<script" not in lowered and "<img" not in lowered and "](javascript" not in lowered
    assert "`code`" not in text
    table_rows = [line for line in text.splitlines() if line.startswith("|")]
    header = next(line for line in table_rows if line.startswith("| field |"))
    brand = next(line for line in table_rows if line.startswith("| 车辆品牌 |"))
    assert "\\| x" in brand
    assert len(brand.replace("\\|", "").split("|")) == len(header.split("|")), "an escaped '|' adds no column"
    page = html.read_text(encoding="utf-8").lower()
    assert "<script" not in page and "onerror=\"alert" not in page


# ------------------------------------------------------------------------------------------------ bootstrap


@pytest.mark.parametrize("replicates", ["1", "99", str(MAX_REPLICATES + 1), "-5"])
def test_bootstrap_outside_the_bounds_is_one_line_error(tmp_path, capsys, replicates):
    results = _write(tmp_path / "results.jsonl", [{"response": _answer(), "labels": _answer()}] * 3)
    report = tmp_path / "r.json"
    for command in (["eval", str(results), "--json", str(report)], ["compare", str(results), str(results)]):
        assert main([*command, "--bootstrap", replicates]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"--bootstrap {replicates}: use 0 (no intervals) or {MIN_REPLICATES}" in err[0]
    assert not report.exists()


def test_intervals_hold_their_estimate_even_with_one_replicate():
    rng = np.random.default_rng(5)
    den = rng.integers(1, 30, size=(12, 3)).astype(float)
    num = np.floor(den * rng.random((12, 3)))
    clusters = [f"car{i}" for i in range(12)]
    estimates = num.sum(axis=0) / den.sum(axis=0)
    for seed in range(20):
        for (low, high), estimate in zip(bootstrap_intervals(num, den, clusters, replicates=1, seed=seed), estimates):
            assert low <= estimate <= high
        num_b = np.minimum(den, num + 1)
        deltas = num_b.sum(axis=0) / den.sum(axis=0) - estimates
        for (low, high), estimate in zip(paired_delta(num, den, num_b, den, clusters, 1, seed), deltas):
            assert low <= estimate + 1e-12 and estimate - 1e-12 <= high


# ------------------------------------------------------------------------------------------------ strict JSON


def test_nan_and_infinity_answers_are_not_strict_json_and_reports_are_strict(tmp_path):
    rows = [{"image": f"car{i}/a.jpg", "response": _answer(), "labels": _answer()} for i in range(4)]
    rows += [{"image": "car8/a.jpg", "response": _answer().replace('"奥迪"', "NaN"), "labels": _answer()},
             {"image": "car9/a.jpg", "response": _answer().replace('"黑色"', "-Infinity"), "labels": _answer()}]
    results = _write(tmp_path / "results.jsonl", rows)
    out, details = tmp_path / "a.json", tmp_path / "a.details.jsonl"
    assert main(["eval", str(results), "--json", str(out), "--details", str(details), "--bootstrap", "100"]) == 0
    report = _strict(out)
    _strict(details)
    assert report["json_valid_rate"] == pytest.approx(4 / 6)
    assert report["parse_methods"].get("json") == 4


def test_compare_json_is_strict_where_a_figure_is_undefined(tmp_path, capsys):
    base = {"n": 10, "json_valid_rate": float("nan"), "parsed_rate": 0.9, "schema_valid_rate": float("inf"),
            "exact_match": 0.1, "fields": {"车辆品牌": {"support": 0, "correct": 0, "accuracy": float("nan")}}}
    tuned = {**base, "json_valid_rate": 1.0, "exact_match": 0.5,
             "fields": {"车辆品牌": {"support": 10, "correct": 9, "accuracy": 0.9}}}
    (tmp_path / "a.json").write_text(json.dumps(base), encoding="utf-8")
    (tmp_path / "b.json").write_text(json.dumps(tuned), encoding="utf-8")
    out = tmp_path / "delta.json"
    assert main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json", str(out)]) == 0
    comparison = _strict(out)["metrics"]
    assert comparison["json_valid_rate"]["a"] is None and comparison["json_valid_rate"]["delta"] is None
    assert comparison["exact_match"]["delta"] == pytest.approx(0.4)
    assert "nan" not in capsys.readouterr().out.lower()


# ------------------------------------------------------------------------------------------------ long values


def test_a_huge_answer_value_is_clipped_in_reports_and_whole_in_details(tmp_path, capsys):
    huge = "长" * 2_000_000
    rows = [{"image": f"car{i}/a.jpg", "response": _answer({"车辆品牌": huge + str(i)}, {"车牌号码": huge}),
             "labels": _answer()} for i in range(3)]
    rows.append({"image": "car7/a.jpg", "response": huge, "labels": _answer()})
    results = _write(tmp_path / "results.jsonl", rows)
    paths = {name: tmp_path / name for name in ("r.json", "r.md", "r.html", "r.details.jsonl")}
    assert main(["eval", str(results), "--json", str(paths["r.json"]), "--markdown", str(paths["r.md"]),
                 "--html", str(paths["r.html"]), "--details", str(paths["r.details.jsonl"]),
                 "--bootstrap", "100"]) == 0
    terminal = capsys.readouterr().out
    assert len(terminal) < 20_000 and "[2000001 chars, sha1 " in terminal
    for name in ("r.json", "r.md"):
        assert paths[name].stat().st_size < 100_000, name
    assert paths["r.html"].stat().st_size < 400_000
    report = _strict(paths["r.json"])
    brands = [p for r, p, c in report["fields"]["车辆品牌"]["confusion"] if r == "奥迪" and p != "(missing)"]
    assert len(brands) == 3, "three different long values stay three rows"
    assert all(p.startswith("长" * 200 + "…[2000001 chars, sha1 ") for p in brands)
    details = _strict(paths["r.details.jsonl"])
    whole = sorted(p for line in details for f, r, p in line["wrong"] if f == "车辆品牌" and p != "(missing)")
    assert whole == [huge + str(i) for i in range(3)]
