import json
import random
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plates import parse as parse_module
from plates.cli import main
from plates.dump import default_rejects_path, iter_files, read_image_info
from plates.parse import parse_to_files
from plates.records import iter_records, resolve_image
from plates.synth import dump_entries, random_labels, seed_filename
from helpers import NAME_ALPHABET

CCPD_SAMPLE = Path(__file__).resolve().parent / "data" / "ccpd_names_sample.txt"


# --------------------------------------------------------------------------------------------- properties


@pytest.fixture(scope="module")
def jpeg_bytes() -> bytes:
    image = np.full((48, 64, 3), 128, np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


_FILE_NAME = st.text(alphabet=NAME_ALPHABET, min_size=1, max_size=60).filter(lambda n: n not in (".", ".."))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(_FILE_NAME, min_size=1, max_size=12, unique=True), data=st.data())
def test_every_file_is_parsed_or_rejected(tmp_path_factory, jpeg_bytes, names, data):
    root = tmp_path_factory.mktemp("prop")
    valid = [seed_filename(random_labels(random.Random(i)), [str(i)]) for i in range(data.draw(st.integers(0, 3)))]
    for name in names + valid:
        body = data.draw(st.sampled_from([jpeg_bytes, b"", b"garbage", jpeg_bytes[:200]]))
        (root / name).write_bytes(body if name not in valid else jpeg_bytes)
    out = root.parent / (root.name + ".jsonl")
    summary = parse_to_files(root, out, show_progress=False)
    records = [json.loads(line)["image"] for line in out.read_text(encoding="utf-8").splitlines()]
    rejects = [json.loads(line)["image"] for line in default_rejects_path(out).read_text(encoding="utf-8").splitlines()]
    seen = sorted(set(names + valid))
    assert summary.files == len(seen) == summary.parsed + summary.rejected
    assert sorted(records + rejects) == seen
    assert len(records) == summary.parsed >= len(valid)


# --------------------------------------------------------------------------------------------- image headers


def _write(path: Path, image, ext=".jpg", params=()):
    path.write_bytes(cv2.imencode(ext, image, list(params))[1].tobytes())
    return path


def test_image_info_from_headers(tmp_path):
    colour = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    grey = colour[:, :, 0]
    rgba = np.dstack([colour, grey])
    cases = [(_write(tmp_path / "c.jpg", colour), (53, 37, 3)),
             (_write(tmp_path / "g.jpg", grey), (53, 37, 1)),
             (_write(tmp_path / "p.jpg", colour, params=(cv2.IMWRITE_JPEG_PROGRESSIVE, 1)), (53, 37, 3)),
             (_write(tmp_path / "a.png", rgba, ".png"), (53, 37, 4)),
             (_write(tmp_path / "g.png", grey, ".png"), (53, 37, 1)),
             (_write(tmp_path / "b.bmp", colour, ".bmp"), (53, 37, 3)),
             (_write(tmp_path / "w.webp", colour, ".webp"), (53, 37, 3))]  # no header reader: decoded
    for path, expected in cases:
        info = read_image_info(str(path))
        assert (info.width, info.height, info.channels) == expected, path
        assert info.warnings == ()


def test_jpeg_with_large_exif_segment(tmp_path):
    data = cv2.imencode(".jpg", np.zeros((21, 34, 3), np.uint8))[1].tobytes()
    app1 = b"\xff\xe1" + (30002).to_bytes(2, "big") + b"Exif\0\0" + bytes(29994)
    path = tmp_path / "exif.jpg"
    path.write_bytes(data[:2] + app1 + data[2:])
    info = read_image_info(str(path))
    assert (info.width, info.height, info.channels) == (34, 21, 3)


def test_truncated_corrupt_and_empty_files(tmp_path):
    data = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8))[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "bad.jpg").write_bytes(b"\0garbage" * 40)
    (tmp_path / "empty.jpg").write_bytes(b"")
    cut = read_image_info(str(tmp_path / "cut.jpg"))
    assert (cut.width, cut.height) == (64, 64) and cut.warnings[0].startswith("image_truncated")
    assert read_image_info(str(tmp_path / "bad.jpg")).code == "corrupt_image"
    assert read_image_info(str(tmp_path / "empty.jpg")).code == "empty_file"
    assert read_image_info(str(tmp_path / "missing.jpg")).code == "unreadable"


# --------------------------------------------------------------------------------------------- dumps


def test_parse_synthetic_dump(synth_dump, tmp_path):
    out = tmp_path / "records.jsonl"
    summary = parse_to_files(synth_dump, out, show_progress=False)
    files = iter_files(synth_dump)
    assert summary.files == len(files) == 27 and summary.parsed == 24 and summary.rejected == 3
    assert summary.reject_codes == {"unparseable_name": 2, "corrupt_image": 1}
    records = list(iter_records(out))
    expected = {e.path: e for e in dump_entries(24, seed=0)}
    assert [r["image"] for r in records] == sorted(expected)
    for record in records:
        entry = expected[record["image"]]
        assert record["labels"] == entry.labels and record["ids"] == entry.ids
        assert record["format"] == "seed" and record["root"] == str(synth_dump)
        image = cv2.imdecode(np.fromfile(resolve_image(record), np.uint8), cv2.IMREAD_UNCHANGED)
        assert image.shape == (record["height"], record["width"], record["channels"])
    rejects = [json.loads(line) for line in default_rejects_path(out).read_text(encoding="utf-8").splitlines()]
    assert sorted(r["code"] for r in rejects) == ["corrupt_image", "unparseable_name", "unparseable_name"]
    assert all(r["reason"] and (synth_dump / r["image"]).exists() for r in rejects)
    text = "\n".join(summary.lines())
    assert "files seen 27 = parsed 24 + rejected 3" in text and "车辆颜色" in text
    again = tmp_path / "again.jsonl"
    parse_to_files(synth_dump, again, show_progress=False)
    assert again.read_bytes() == out.read_bytes()


def test_worker_processes_give_the_same_output(synth_dump, tmp_path, monkeypatch):
    monkeypatch.setattr(parse_module, "CHUNK_FILES", 4)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    parse_to_files(synth_dump, one, show_progress=False, jobs=1)
    summary = parse_to_files(synth_dump, two, show_progress=False, jobs=2)
    assert one.read_bytes() == two.read_bytes()
    assert default_rejects_path(one).read_bytes() == default_rejects_path(two).read_bytes()
    assert summary.files == 27


def test_forced_format(synth_dump, tmp_path):
    summary = parse_to_files(synth_dump, tmp_path / "c.jsonl", fmt="ccpd", show_progress=False)
    assert summary.parsed == 0 and summary.rejected == summary.files == 27


def test_ccpd_dump_and_outputs_inside_root(tmp_path, jpeg_bytes):
    names = CCPD_SAMPLE.read_text(encoding="utf-8").split()[:20]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(jpeg_bytes)
    out = tmp_path / "records.jsonl"
    parse_to_files(tmp_path, out, show_progress=False)
    summary = parse_to_files(tmp_path, out, show_progress=False)  # its own outputs are not inputs
    assert summary.files == summary.parsed == 20
    assert {r["format"] for r in iter_records(out)} == {"ccpd"}


def test_output_is_atomic(synth_dump, tmp_path, monkeypatch):
    out = tmp_path / "records.jsonl"
    out.write_text("previous\n", encoding="utf-8")
    calls = []

    def interrupted(path):
        calls.append(path)
        if len(calls) == 10:
            raise KeyboardInterrupt
        return original(path)

    original = parse_module.read_image_info
    monkeypatch.setattr(parse_module, "read_image_info", interrupted)
    with pytest.raises(KeyboardInterrupt):
        parse_to_files(synth_dump, out, show_progress=False)
    assert out.read_text(encoding="utf-8") == "previous\n"
    assert not default_rejects_path(out).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["records.jsonl"]


# --------------------------------------------------------------------------------------------- CLI


def test_cli_errors(tmp_path, capsys):
    assert main(["parse", str(tmp_path / "nope"), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "file.jpg").write_bytes(b"x")
    assert main(["parse", str(tmp_path / "file.jpg"), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "is a file, expected a folder" in capsys.readouterr().err
    assert main(["parse", str(tmp_path), "-o", str(tmp_path)]) == 2
    assert "is a folder, expected a file" in capsys.readouterr().err
    assert main(["parse", str(tmp_path), "-o", str(tmp_path / "o.jsonl"), "--jobs", "0"]) == 2
    with pytest.raises(SystemExit):
        main(["parse", str(tmp_path), "-o", "x.jsonl", "--format", "xml"])
    assert not (tmp_path / "o.jsonl").exists()


def test_cli_end_to_end(synth_dump, tmp_path):
    out = tmp_path / "out: 记录 1.jsonl"
    summary_path = tmp_path / "summary.json"
    done = subprocess.run([sys.executable, "-m", "plates.cli", "parse", str(synth_dump), "-o", str(out),
                           "--summary", str(summary_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "files seen 27 = parsed 24 + rejected 3" in done.stdout
    assert len(out.read_text(encoding="utf-8").splitlines()) == 24
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["files"] == 27 and sum(summary["field_values"]["车辆朝向"].values()) == 24
    help_text = subprocess.run([sys.executable, "-m", "plates.cli", "parse", "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    assert "--format" in help_text and "rejects" in help_text


def test_the_name_parsing_benchmark_runs_in_one_and_two_processes():
    """bench_parse.py --names-only: its worker processes read their names from the list they inherit (as `plates
    parse`'s do), and both rates come out."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_parse.py"
    done = subprocess.run([sys.executable, str(script), "--names-only", "--files", "3000", "--jobs", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {line.split("  ")[1].strip(): line.split()[-2:] for line in done.stdout.splitlines()
            if line.startswith("  ")}
    for label in ("names of this dump", "every vehicle distinct"):
        one, two = (float(rate.replace(",", "")) for rate in rows[label])
        assert one > 0 and two > 0
    assert "target >= 200,000 names/s:" in done.stdout
