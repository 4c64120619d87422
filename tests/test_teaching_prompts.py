"""Teacher prompts as data: loading (a malformed folder is one user error), rendering, the label lines, the
question drawn per image, the digest in the resume key, and the request each mode gets."""

from __future__ import annotations

import shutil

import pytest

from plates.errors import UserError
from plates.teaching.prompts import (
    MODES, build_request, default_prompts_dir, labels_lines, load_prompts, plate_numbers, render,
)

PLATE = {"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云KCM158", "车牌颜色": "蓝色", "车牌层数": "单层车牌",
         "车牌用途": "燃油车车牌"}
LABELS = {"车辆属性": {"车辆品牌": "东风", "车辆类型": "轻微型货车", "车辆颜色": "蓝色", "车辆朝向": "正面"},
          "车牌属性": [PLATE]}


def test_render_fills_known_placeholders_and_keeps_other_braces():
    assert render('{a} and {"x": 1} and {b}', {"a": 7}) == '7 and {"x": 1} and {b}'


def test_label_lines_and_plate_numbers():
    lines = labels_lines(LABELS).splitlines()
    assert lines[0].startswith("车辆属性:车辆品牌=东风,") and "车牌号码=云KCM158" in lines[1]
    assert labels_lines({"车辆属性": {}, "车牌属性": []}).splitlines()[1] == "车牌属性:无(图中没有可见车牌)"
    two = {**LABELS, "车牌属性": [PLATE, {**PLATE, "车牌号码": "未知"}]}
    assert [line.split(":")[0] for line in labels_lines(two).splitlines()[1:]] == ["车牌属性(第1块)", "车牌属性(第2块)"]
    assert plate_numbers(two) == "云KCM158" and plate_numbers({"车牌属性": []}) == "无"


def test_requests_per_mode():
    prompts = load_prompts()
    assert set(prompts.modes) == set(MODES) and prompts.version == "v1"
    describe = build_request(prompts, "describe", "k", LABELS, question="q", image=b"jpeg")
    assert "云KCM158" in describe.prompt and describe.image == b"jpeg" and describe.system == prompts.system
    fuse = build_request(prompts, "fuse", "k", LABELS, question="q", image=b"jpeg",
                         inputs={"describe": "DESCRIBED", "caption": "CAPTIONED"})
    assert fuse.image is None and "DESCRIBED" in fuse.prompt and "CAPTIONED" in fuse.prompt  # text only
    question = prompts.question_for("caption", "sha:image.jpg")
    assert question in prompts.questions and question == prompts.question_for("caption", "sha:image.jpg")
    assert prompts.question_for("reason", "sha:image.jpg") is None


def test_an_edited_prompt_changes_its_digest_and_a_broken_folder_is_refused(tmp_path):
    folder = tmp_path / "prompts"
    shutil.copytree(default_prompts_dir(), folder)
    text = (folder / "prompts.yaml").read_text(encoding="utf-8")
    before = load_prompts(folder)
    (folder / "prompts.yaml").write_text(text.replace("你是", "你是一位", 1), encoding="utf-8")
    after = load_prompts(folder)
    assert before.digest("describe") != after.digest("describe") and before.digest("fuse") != after.digest("fuse")
    (folder / "prompts.yaml").write_text("version: v9\n", encoding="utf-8")
    with pytest.raises(UserError, match="missing or invalid 'describe.prompt'"):
        load_prompts(folder)
    (folder / "template.yaml").unlink()
    with pytest.raises(UserError, match="template.yaml: no such file"):
        load_prompts(folder)
