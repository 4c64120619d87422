"""`plates eval --html`: one self-contained page, checked as text and in a real headless Chromium."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess

import pytest

from plates.cli import main

V = {"车辆品牌": "大众", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"}
P = {"车牌国家": "中国", "车牌省份": "安徽省", "车牌号码": "皖A12345", "车牌颜色": "蓝色", "车牌层数": "单层车牌",
     "车牌用途": "燃油车车牌"}
# (image colour BGR, what the model got wrong); line numbers follow this order.
CASES = [
    ((40, 40, 200), {}),                                                        # 1 right
    ((40, 200, 40), {"车牌号码": "皖A12340"}),                                  # 2: 1 wrong
    ((200, 40, 40), {"车牌号码": "皖B12340", "车牌颜色": "黄色", "车辆颜色": "黑色"}),  # 3: 3 wrong
    ((200, 200, 40), {"车辆类型": "面包车", "车辆颜色": "黑色"}),                  # 4: 2 wrong
    ((40, 200, 200), {}),                                                       # 5 right
    (None, {"车辆品牌": "丰田", "车辆类型": "面包车", "车辆颜色": "黑色", "车辆朝向": "背面"}),  # 6: 4 wrong, no image
]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture
def results(tmp_path):
    """Results with drawn images (one 900x600 absolute path, the rest relative to the results' folder) and one
    line whose image is missing."""
    import cv2
    import numpy as np

    folder = tmp_path / "评测 run:1"
    images = folder / "图片 images"
    images.mkdir(parents=True)
    rows = []
    for index, (colour, wrong) in enumerate(CASES):
        name = f"车辆 {index}.jpg"
        if colour is not None:
            size = (600, 900) if index == 2 else (300, 480)
            picture = np.zeros((*size, 3), np.uint8)
            picture[:] = colour
            cv2.rectangle(picture, (20, 20), (120, 60), (255, 255, 255), -1)
            assert cv2.imencode(".jpg", picture)[1].tofile(str(images / name)) is None
        image = str(images / name) if index == 2 else f"图片 images/{name}"
        predicted_vehicle = {**V, **{k: v for k, v in wrong.items() if k in V}}
        predicted_plate = {**P, **{k: v for k, v in wrong.items() if k in P}}
        rows.append({"response": json.dumps({"车辆属性": predicted_vehicle, "车牌属性": predicted_plate},
                                            ensure_ascii=False),
                     "labels": json.dumps({"车辆属性": V, "车牌属性": P}, ensure_ascii=False), "images": [image]})
    path = folder / "results.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _cards(page: str) -> list[str]:
    return page.split('<div class="card">')[1:]


def test_html_is_self_contained_with_the_worst_answers_and_their_images(results, tmp_path, monkeypatch, capsys):
    import cv2
    import numpy as np

    monkeypatch.chdir(tmp_path)  # relative image paths resolve against the results' folder, not the cwd
    out = tmp_path / "报告 report.html"
    assert main(["eval", str(results), "--html", str(out), "--gallery", "3", "--bootstrap", "200"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")

    assert not re.search(r"https?://|<link|<script|@import|url\(", page), "nothing is fetched"
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/") for s in sources)

    cards = _cards(page)
    assert [re.search(r"<b>line (\d+)</b> · (\d+) wrong", c).groups() for c in cards] == [
        ("6", "4"), ("3", "3"), ("4", "2")], "the 3 worst answers, most wrong fields first"
    assert "image not found" in cards[0] and "<img" not in cards[0]
    for card, colour in ((cards[1], CASES[2][0]), (cards[2], CASES[3][0])):
        data = re.search(r'src="data:image/jpeg;base64,([^"]+)"', card).group(1)
        thumb = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert max(thumb.shape[:2]) <= 320, "downscaled"
        assert np.abs(thumb[-20:, -20:].reshape(-1, 3).mean(axis=0) - colour).max() < 12, "the right image"
    assert re.search(r"<tr class=\"bad\"><td>车牌颜色</td><td>蓝色</td><td>黄色</td>", cards[1])
    assert re.search(r"<tr class=\"ok\"><td>车牌层数</td><td>单层车牌</td><td>单层车牌</td>", cards[1])
    assert "The 3 worst of 4 answers" in page

    assert "95% intervals: 200 bootstrap replicates" in page
    assert re.search(r"exact match</td><td class=num>33\.3% <span class=\"ci\">\[\d", page)
    assert "<h2>Confusion matrices</h2>" in page and "车牌颜色" in page
    assert "Confidence and abstention" not in page, "no logprobs, no risk–coverage section"

    assert main(["eval", str(results), "--html", str(out), "--bootstrap", "0"]) == 0
    page = out.read_text(encoding="utf-8")
    assert "No intervals in this report" in page and len(_cards(page)) == 4


def test_html_opens_in_headless_chromium_without_errors(results, tmp_path):
    """Real Chromium, offline (every host name unresolvable): the page loads without console errors and the
    gallery shows real, decoded images. The screenshot is written for a human to look at."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install -y chromium); CI installs it")
    out = tmp_path / "report.html"
    assert main(["eval", str(results), "--html", str(out), "--gallery", "5", "--bootstrap", "100"]) == 0
    probe = tmp_path / "probe.html"
    checker = """<script>
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || (e.target && e.target.outerHTML
  || 'error')).slice(0, 200)), true);
const original = console.error;
console.error = (...args) => { window.__errors.push(args.join(' ')); original(...args); };
window.addEventListener('load', () => {
  const images = [...document.querySelectorAll('img')];
  const result = {images: images.length, decoded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    gallery: document.querySelectorAll('.gallery .card img').length, cards: document.querySelectorAll('.card').length,
    errors: window.__errors, title: document.title};
  const pre = document.createElement('pre');
  pre.id = 'plates-check';
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});
</script>"""
    page = out.read_text(encoding="utf-8")
    probe.write_text(page.replace("<head>", "<head>" + checker, 1), encoding="utf-8")
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
            "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=10000"]
    env = {**os.environ, "HOME": str(tmp_path)}

    dumped = subprocess.run([*base, f"--user-data-dir={tmp_path / 'profile-1'}", "--dump-dom", probe.as_uri()],
                            capture_output=True, text=True, timeout=120, env=env)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    match = re.search(r'<pre id="plates-check">(.*?)</pre>', dumped.stdout, re.S)
    assert match, dumped.stdout[-2000:] + dumped.stderr[-2000:]
    import html

    check = json.loads(html.unescape(match.group(1)))
    assert check["errors"] == []
    assert check["cards"] == 4 and check["gallery"] == 3, "3 of the 4 wrong answers have an image"
    assert check["images"] == check["decoded"] == 3, "every image decodes (non-zero naturalWidth)"
    assert check["title"].startswith("plates eval")
    assert not re.search(r"CONSOLE[:(]", dumped.stderr), dumped.stderr[-2000:]

    shot = tmp_path / "report.png"
    shown = subprocess.run([*base, f"--user-data-dir={tmp_path / 'profile-2'}", "--hide-scrollbars",
                            "--window-size=1400,2600", f"--screenshot={shot}", out.as_uri()],
                           capture_output=True, text=True, timeout=120, env=env)
    assert shown.returncode == 0 and shot.is_file(), shown.stderr[-2000:]
    assert not re.search(r"CONSOLE[:(]", shown.stderr), shown.stderr[-2000:]
    import cv2

    picture = cv2.imread(str(shot))
    assert picture is not None and picture.shape[:2] == (2600, 1400)
    assert picture.std() > 10, "the page rendered something"
    keep = os.environ.get("PLATES_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_gallery_finds_images_relative_to_the_records_root(tmp_path, monkeypatch):
    """Predictions joined to `plates parse` records by the record's relative image path: the gallery looks the
    images up under the records' root."""
    from plates.synth import make_dump

    dump = tmp_path / "dump 图片"
    make_dump(dump, 3, seed=2)
    records = tmp_path / "records.jsonl"
    assert main(["parse", str(dump), "-o", str(records)]) == 0
    rows = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()]
    predictions = tmp_path / "elsewhere" / "predictions.jsonl"
    predictions.parent.mkdir()
    predictions.write_text("".join(json.dumps({"image": r["image"], "response": "{}"}, ensure_ascii=False) + "\n"
                                   for r in rows), encoding="utf-8")
    monkeypatch.chdir(tmp_path / "elsewhere")
    out = tmp_path / "r.html"
    assert main(["eval", str(predictions), "--records", str(records), "--html", str(out), "--bootstrap", "0"]) == 0
    page = out.read_text(encoding="utf-8")
    assert len(_cards(page)) == len(rows) >= 3
    assert page.count('src="data:image/jpeg;base64,') == len(rows) and "image not found" not in page
