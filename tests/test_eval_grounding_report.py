"""Plate location in the HTML report (figures, boxes drawn over the gallery thumbnails, checked in a real headless
Chromium) and in `plates compare` (the IoU figures paired answer by answer)."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess

import cv2
import numpy as np
import pytest
from scipy.stats import binomtest
from test_eval_grounding import VEHICLE, _ccpd_dump, _prediction, _write, plate
from test_eval_html import _chromium

from plates.cli import main
from plates.evaluation.metrics import METRICS

# (original width, height, reference boxes, predicted plates as (number, box)); line numbers follow this order
CASES = [
    (900, 600, [[300, 150, 600, 300]], [("皖A11111", [450, 150, 750, 300])]),   # 1: IoU 1/3, fields right
    (400, 1000, [[100, 500, 300, 600]], [("皖A11111", None)]),                   # 2: no box, fields right
    (480, 300, [[10, 20, 110, 60]], [("皖A11111", [10, 20, 110, 60])]),          # 3: all right: not shown
    (640, 480, [[100, 200, 300, 260]], [("皖A11112", [100, 200, 300, 260])]),     # 4: located, misread
    (800, 800, [[100, 100, 300, 200], [500, 600, 700, 700]],                     # 5: second box far off
     [("皖A11111", [100, 100, 300, 200]), ("皖B22222", [0, 0, 50, 50])]),
]
NUMBERS = ["皖A11111", "皖B22222"]
THUMBNAILS = {1: (320, 213), 2: (128, 320), 4: (320, 240), 5: (320, 320)}  # what the gallery shrinks them to


@pytest.fixture
def results(tmp_path):
    """Results whose labels carry boxes (``车牌位置``), with real drawn images of several sizes and shapes."""
    folder = tmp_path / "评测 boxes"
    folder.mkdir()
    rows = []
    for index, (width, height, boxes, predicted) in enumerate(CASES):
        picture = np.full((height, width, 3), 90, np.uint8)
        for x1, y1, x2, y2 in boxes:
            cv2.rectangle(picture, (x1, y1), (x2 - 1, y2 - 1), (230, 120, 20), -1)
        name = f"车 {index}.jpg"
        assert cv2.imencode(".jpg", picture)[1].tofile(str(folder / name)) is None
        reference = {"车辆属性": VEHICLE, "车牌属性": [plate(NUMBERS[i], box) for i, box in enumerate(boxes)]}
        answer = {"车辆属性": VEHICLE, "车牌属性": [plate(number, box) for number, box in predicted]}
        rows.append({"response": json.dumps(answer, ensure_ascii=False), "images": [name],
                     "labels": json.dumps(reference, ensure_ascii=False)})
    return _write(folder / "results.jsonl", rows)


def _cards(page):
    return page.split('<div class="card">')[1:]


def _rects(card):
    return [(kind, [float(v) for v in values]) for kind, *values in re.findall(
        r'<rect class="(\w+)" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)">', card)]


def test_html_shows_plate_location_and_boxes_in_original_pixels(results, tmp_path):
    out = tmp_path / "report.html"
    assert main(["eval", results, "--html", str(out), "--bootstrap", "200"]) == 0
    page = out.read_text(encoding="utf-8")
    assert not re.search(r"https?://|<link|<script|@import|url\(", page), "still self-contained"

    section = page.split("<h2>Plate location</h2>")[1].split("<h2>")[0]
    # IoU of the 6 reference plates: 1/3, 0, 1, 1, 1, 0
    assert re.search(r"<td>mean IoU</td><td class=num>0\.556</td><td class=num>0\.\d{3}–[01]\.\d{3}</td>", section)
    assert re.search(r"<td>IoU ≥ 0\.5</td><td class=num>50\.0%</td><td class=num>[\d.]+%–[\d.]+%</td>", section)
    assert re.search(r"<td>IoU &gt; 0\.7</td><td class=num>50\.0%</td>", section)
    assert re.search(r"<td>end to end \(IoU &gt; 0\.7, all characters right\)</td><td class=num>33\.3%</td>", section)
    assert "6 plates with a box in 5 answers, 5 predicted boxes" in section

    cards = _cards(page)
    lines = [int(re.search(r"<b>line (\d+)</b>", card).group(1)) for card in cards]
    assert lines == [1, 2, 4, 5], "a missed box puts an otherwise right answer in the gallery; line 3 is right"
    assert "or whose plate box was not found" in page and 'class="key truth"' in page
    by_line = dict(zip(lines, cards))
    for line, card in by_line.items():
        width, height = CASES[line - 1][:2]
        assert f'<svg class="boxes" viewBox="0 0 {width} {height}" preserveAspectRatio="none"' in card
    assert _rects(by_line[1]) == [("truth", [300, 150, 300, 150]), ("pred", [450, 150, 300, 150])]
    assert _rects(by_line[2]) == [("truth", [100, 500, 200, 100])], "no predicted box, none drawn"
    assert _rects(by_line[5]) == [("truth", [100, 100, 200, 100]), ("pred", [100, 100, 200, 100]),
                                  ("truth", [500, 600, 200, 100]), ("pred", [0, 0, 50, 50])], "unmatched box too"
    assert ('<tr class="bad"><td>车牌位置</td><td>[300, 150, 600, 300]</td><td>[450, 150, 750, 300] · IoU 0.33</td>'
            in by_line[1])
    assert '<tr class="bad"><td>车牌位置</td><td>[100, 500, 300, 600]</td><td>(missing)</td>' in by_line[2]
    assert '<tr class="ok"><td>车牌位置</td><td>[100, 200, 300, 260]</td><td>[100, 200, 300, 260] · IoU 1.00' \
           in by_line[4]
    assert re.search(r"<b>line 4</b> · 1 wrong", by_line[4]) and re.search(r"<b>line 5</b> · 1 wrong", by_line[5])

    # the same answers against box-less labels: no section, no overlay, no box rows
    plain = tmp_path / "plain.jsonl"
    rows = [json.loads(line) for line in open(results, encoding="utf-8")]
    for row in rows:
        labels = json.loads(row["labels"])
        for p in labels["车牌属性"]:
            p.pop("车牌位置")
        row["labels"] = json.dumps(labels, ensure_ascii=False)
        row["images"] = [str(tmp_path / "评测 boxes" / row["images"][0])]
    _write(plain, rows)
    assert main(["eval", str(plain), "--html", str(out), "--bootstrap", "0"]) == 0
    page = out.read_text(encoding="utf-8")
    assert "Plate location" not in page and "<svg" not in page and "<td>车牌位置</td>" not in page
    assert "or whose plate box" not in page
    assert len(_cards(page)) == 1, "only the misread answer (line 4)"


PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || 'error').slice(0, 200)), true);
window.addEventListener('load', () => {
  const frames = [...document.querySelectorAll('.card .frame')].map(frame => {
    const img = frame.querySelector('img');
    const at = img.getBoundingClientRect();
    return {alt: img.alt, natural: [img.naturalWidth, img.naturalHeight], shown: [at.width, at.height],
      rects: [...frame.querySelectorAll('svg.boxes rect')].map(r => {
        const b = r.getBoundingClientRect();
        const style = getComputedStyle(r);
        return {kind: r.getAttribute('class'), box: [b.left - at.left, b.top - at.top, b.right - at.left,
          b.bottom - at.top], dashed: style.strokeDasharray !== 'none', stroke: style.stroke};
      })};
  });
  const pre = document.createElement('pre');
  pre.id = 'plates-check';
  pre.textContent = JSON.stringify({frames, errors: window.__errors});
  document.body.appendChild(pre);
});
</script>"""


def test_boxes_are_drawn_at_the_right_place_in_headless_chromium(results, tmp_path):
    """Real Chromium, offline: each box's on-screen rectangle, relative to its image, is the original-pixel box
    scaled by the shown size over the original size (landscape, portrait and square images)."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium); CI installs it")
    out = tmp_path / "report.html"
    assert main(["eval", results, "--html", str(out), "--bootstrap", "0"]) == 0
    probe = tmp_path / "probe.html"
    probe.write_text(out.read_text(encoding="utf-8").replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    dumped = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1400,2000", "--virtual-time-budget=10000",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(tmp_path)})
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    match = re.search(r'<pre id="plates-check">(.*?)</pre>', dumped.stdout, re.S)
    assert match, dumped.stdout[-2000:] + dumped.stderr[-2000:]
    check = json.loads(html.unescape(match.group(1)))
    assert check["errors"] == []
    frames = {int(f["alt"].split()[-1]): f for f in check["frames"]}
    assert sorted(frames) == [1, 2, 4, 5]
    for line, frame in frames.items():
        width, height, references, predicted = CASES[line - 1]
        assert tuple(frame["natural"]) == THUMBNAILS[line]
        assert frame["shown"] == pytest.approx(list(THUMBNAILS[line]), abs=0.01), "the thumbnail at its own size"
        sx, sy = frame["shown"][0] / width, frame["shown"][1] / height
        drawn = [(r["kind"], r["box"]) for r in frame["rects"]]
        expected = []
        for i, box in enumerate(references):
            expected.append(("truth", box))
            if line == 5 and i == 1:
                continue
            if predicted[i][1] is not None:
                expected.append(("pred", predicted[i][1]))
        if line == 5:
            expected.append(("pred", predicted[1][1]))
        assert [kind for kind, _ in drawn] == [kind for kind, _ in expected]
        for (_, got), (_, box) in zip(drawn, expected):
            want = [box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy]
            assert got == pytest.approx(want, abs=1.0), (line, got, want)
        for r in frame["rects"]:
            assert r["dashed"] == (r["kind"] == "pred"), "the predicted box is dashed, the reference solid"
    strokes = {r["kind"]: r["stroke"] for f in frames.values() for r in f["rects"]}
    assert strokes["truth"] != strokes["pred"], "two colours"


def test_compare_pairs_plate_location_of_two_models_on_ccpd_records(tmp_path, capsys):
    """Two models on the same 6 CCPD images (box [100, 100, 200, 150], area 5000): per-image IoU A = 1/3, 1/3,
    0 (no box), 1, 0.6, 0.8 and B = 1, 1, 1, 1, 0.8, 0.6 (B misreads image 0)."""
    images = _ccpd_dump(tmp_path / "dump")
    records = tmp_path / "records.jsonl"
    assert main(["parse", str(tmp_path / "dump"), "-o", str(records), "-j", "1"]) == 0
    third, full = [150, 100, 250, 150], [100, 100, 200, 150]
    a_boxes = [third, third, None, full, [100, 100, 200, 130], [100, 100, 200, 140]]
    b_boxes = [full, full, full, full, [100, 100, 200, 140], [100, 100, 200, 130]]
    a_iou, b_iou = [1 / 3, 1 / 3, 0, 1, 0.6, 0.8], [1, 1, 1, 1, 0.8, 0.6]
    reports = {}
    for name, boxes in (("a", a_boxes), ("b", b_boxes)):
        rows = [_prediction(image, box, "皖AE9810" if (name, i) == ("b", 0) else "皖AE981N")
                for i, (image, box) in enumerate(zip(images, boxes))]
        reports[name] = tmp_path / f"{name}.json"
        assert main(["eval", _write(tmp_path / f"{name}.jsonl", rows), "--records", str(records), "--json",
                     str(reports[name]), "--bootstrap", "0", "--by", "ccpd:tilt",
                     *(["--html", str(tmp_path / "b.html")] if name == "b" else [])]) == 0
    report_a = json.loads(reports["a"].read_text(encoding="utf-8"))
    columns = report_a["samples"]["metrics"]
    assert columns["mean_iou"]["num"] == pytest.approx(a_iou, abs=1e-6) and "den" not in columns["mean_iou"]
    assert columns["iou70_rate"]["num"] == [0, 0, 0, 1, 0, 1]
    assert list(columns)[:len(METRICS)] == list(METRICS), "registered metrics first, as before"

    page = (tmp_path / "b.html").read_text(encoding="utf-8")
    by_tilt = page.split("<h3>plate location by ccpd:tilt</h3>")[1].split("</table>")[0]
    # tilt 0–9: images 0–2 (IoU 1, 1, 1; image 0 misread); ≥40: images 3–5 (1, 0.8, 0.6)
    assert re.search(r"<td>0–9</td><td class=num>3</td><td class=num>1\.000</td><td class=num>100\.0%</td>"
                     r"<td class=num>66\.7%</td>", by_tilt)
    assert re.search(r"<td>≥40</td><td class=num>3</td><td class=num>0\.800</td><td class=num>66\.7%</td>"
                     r"<td class=num>66\.7%</td>", by_tilt)
    assert "plate location is scored apart" in page

    capsys.readouterr()
    delta_path = tmp_path / "delta.json"
    assert main(["compare", str(reports["a"]), str(reports["b"]), "--json", str(delta_path),
                 "--bootstrap", "500"]) == 0
    printed = capsys.readouterr().out
    comparison = json.loads(delta_path.read_text(encoding="utf-8"))
    assert comparison["paired"] is True
    metrics = comparison["metrics"]
    expected = {"mean_iou": (sum(a_iou) / 6, sum(b_iou) / 6), "iou50_rate": (3 / 6, 6 / 6),
                "iou70_rate": (2 / 6, 5 / 6), "end_to_end_rate": (2 / 6, 4 / 6)}
    for name, (a, b) in expected.items():
        entry = metrics[name]
        assert entry["a"] == pytest.approx(a) and entry["b"] == pytest.approx(b), name
        assert entry["delta"] == pytest.approx(b - a), name
        low, high = entry["ci95"]
        assert low <= entry["delta"] <= high, name
    # answer by answer, B better / worse: mean IoU 4 / 1 (image 3 tied), IoU ≥ 0.5 3 / 0, IoU > 0.7 4 / 1,
    # end to end 3 / 1 (images 1, 2, 4 / image 5; image 0 located but misread by B)
    for name, better, worse in (("mean_iou", 4, 1), ("iou50_rate", 3, 0), ("iou70_rate", 4, 1),
                                ("end_to_end_rate", 3, 1)):
        assert metrics[name]["p_value"] == pytest.approx(binomtest(better, better + worse, 0.5).pvalue), name
    assert re.search(r"mean IoU\s+0\.511\s+0\.900\s+\+0\.389\s+\[[-+]\d\.\d{3}, [-+]\d\.\d{3}\]\s+0\.375", printed)
    assert re.search(r"IoU ≥ 0\.5\s+50\.0%\s+100\.0%\s+\+50\.0 pp", printed)

    # a report without boxes: no per-answer IoU columns, and compare shows the figures only for the other side
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "plate_geometry"},
                                        ensure_ascii=False) + "\n"
                             for line in records.read_text(encoding="utf-8").splitlines()), encoding="utf-8")
    rows = [_prediction(image, box) for image, box in zip(images, a_boxes)]
    assert main(["eval", _write(tmp_path / "a.jsonl", rows), "--records", str(plain), "--json",
                 str(tmp_path / "plain.json"), "--bootstrap", "0"]) == 0
    plain_report = json.loads((tmp_path / "plain.json").read_text(encoding="utf-8"))
    assert "grounding" not in plain_report and list(plain_report["samples"]["metrics"]) == list(METRICS)
    assert main(["compare", str(tmp_path / "plain.json"), str(reports["b"]), "--json", str(delta_path)]) == 0
    entry = json.loads(delta_path.read_text(encoding="utf-8"))["metrics"]["mean_iou"]
    assert entry["a"] is None and entry["b"] == pytest.approx(0.9) and entry["p_value"] is None
