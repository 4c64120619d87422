"""plates.image_inputs: the images predict answers, on real image files.

Covered elsewhere: every file answered or rejected once, records inputs, corrupt files (tests/test_predict.py),
FIFOs, sockets and dangling links in folders (tests/test_eval_input_quirks.py), symlink loops (tests/test_dump.py).
Here: what keys an answer, image formats and extensions, excluded outputs, relative and awkward paths.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from plates.errors import UserError
from plates.image_inputs import Candidate, check_image, collect_inputs


def _image(path, colour=(30, 90, 200), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((24, 32, 3), dtype=np.uint8)
    pixels[:, :16] = colour
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def test_the_key_follows_the_path_and_the_content():
    a = Candidate("/data/a.jpg", "0" * 64)
    assert a.key == Candidate("/data/a.jpg", "0" * 64).key and len(a.key) == 32
    assert set(a.key) <= set("0123456789abcdef")
    assert a.key != Candidate("/data/b.jpg", "0" * 64).key, "the same picture under another name"
    assert a.key != Candidate("/data/a.jpg", "1" * 64).key, "a file replaced under the same name"


@pytest.mark.parametrize("name, fmt", [("car.jpg", "JPEG"), ("car.JPEG", "JPEG"), ("car.png", "PNG"),
                                       ("car.webp", "WEBP"), ("car.bmp", "BMP"), ("car.tiff", "TIFF"),
                                       ("car.gif", "GIF")])
def test_every_image_format_predict_takes_is_accepted(tmp_path, name, fmt):
    assert check_image(str(_image(tmp_path / name, fmt=fmt))) is None


def test_files_that_cannot_be_answered_say_why(tmp_path):
    good = _image(tmp_path / "car.png").read_bytes()
    (tmp_path / "README").write_bytes(good)
    (tmp_path / ".png").write_bytes(good)
    (tmp_path / "car.heic").write_bytes(good)
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])
    assert check_image(str(tmp_path / "README")) == ("not an image file (extension 'none')", "not_image")
    assert check_image(str(tmp_path / ".png"))[1] == "not_image", "a dot file has no extension"
    assert check_image(str(tmp_path / "car.heic")) == ("not an image file (extension '.heic')", "not_image")
    reason, code = check_image(str(tmp_path / "cut.png"))
    assert code == "corrupt_image" and reason


def test_outputs_inside_an_input_folder_are_neither_answered_nor_rejected(tmp_path):
    folder = tmp_path / "in"
    _image(folder / "car 1.jpg")
    answers = folder / "answers.jsonl"
    answers.write_text("{}\n", encoding="utf-8")
    rejects = folder / "answers.rejects.jsonl"
    rejects.write_text("", encoding="utf-8")
    candidates, refused = collect_inputs([str(folder)], exclude=[answers, rejects])
    assert [c.path for c in candidates] == [str(folder / "car 1.jpg")] and refused == []
    candidates, refused = collect_inputs([str(folder)])
    assert {r["image"] for r in refused} == {str(answers), str(rejects)}


def test_relative_home_and_awkward_paths_become_absolute(tmp_path, monkeypatch):
    names = ["车辆属性:蓝色 1.jpg", "a b:c.png", "sub/d.png"]
    for i, name in enumerate(names):
        _image(tmp_path / "home" / "imgs" / name, colour=(i * 40, 10, 10))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "home")
    records = tmp_path / "home" / "records.jsonl"
    records.write_text(json.dumps({"image": "imgs/a b:c.png", "root": str(tmp_path / "moved")}) + "\n",
                       encoding="utf-8")
    candidates, refused = collect_inputs(["imgs", "~/imgs/车辆属性:蓝色 1.jpg", "records.jsonl"])
    assert refused == []
    paths = sorted(c.path for c in candidates)
    assert paths == sorted(str(tmp_path / "home" / "imgs" / n) for n in names), "each image once, absolute"
    assert len({c.key for c in candidates}) == len(names)


def test_a_name_that_is_not_utf8_is_rejected_as_parse_rejects_it(tmp_path):
    """A name in GBK bytes (Chinese Windows shares) cannot be written to a UTF-8 answer line: rejected with parse's
    reason and code, the rejects line naming it with \\xNN escapes, so the rejects file can be written."""
    from plates.io import write_jsonl

    _image(tmp_path / os.fsdecode("车牌.png".encode("gbk")))
    _image(tmp_path / "ok.png")
    candidates, refused = collect_inputs([str(tmp_path)])
    assert [os.path.basename(c.path) for c in candidates] == ["ok.png"]
    (reject,) = refused
    assert reject["code"] == "name_encoding" and "GB18030" in reject["reason"] and "\\x" in reject["image"]
    write_jsonl(tmp_path / "rejects.jsonl", refused)


def test_an_input_that_is_nothing_is_a_user_error(tmp_path):
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    with pytest.raises(UserError, match=r"^INPUT .*gone\.jpg: a dangling symbolic link.*, not a file or folder$"):
        collect_inputs([str(tmp_path / "gone.jpg")])
    with pytest.raises(UserError, match=r"^INPUT .*nope: no such file or folder$"):
        collect_inputs([str(tmp_path / "nope")])
