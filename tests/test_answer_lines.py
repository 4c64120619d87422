"""The lines of a `plates predict` output (:mod:`plates.answer_lines`): a raw response parsed, schema-checked and
normalised (:func:`describe_answer`), the fingerprint of the settings that decide the answers (equal settings,
equal fingerprint; any change, another one), the refusal to mix settings in one output, and the run's summary."""

from __future__ import annotations

import json

import pytest

from plates.answer_lines import (
    PredictSummary, check_settings, contract_fingerprint, describe_answer, resume_output, settings_fingerprint,
)
from plates.errors import UserError
from plates.student import EXTRACTION_PROMPT, GROUNDING_PROMPT, StudentContract

GOOD = json.dumps({"车辆属性": {"车辆品牌": "丰田", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"},
                   "车牌属性": []}, ensure_ascii=False)
VEHICLE = {"车辆品牌": "丰田", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"}
PLATE = {"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云A12345", "车牌颜色": "蓝色", "车牌层数": "单层车牌",
         "车牌用途": "燃油车车牌"}
# What `plates predict` fingerprints (plates.engine_answers.prepare_engine), one value each.
SETTINGS = {"grounding": True, "prompt": "请识别", "system": "你是交警", "adapters": "/runs/v0/checkpoint-10",
            "model": None, "decoding": "schema", "max_new_tokens": 512, "max_pixels": 50176, "template": None,
            "overrides": ["temperature=0"]}
OTHER_VALUES = {"grounding": False, "prompt": "请描述", "system": None, "adapters": "/runs/v0/checkpoint-20",
                "model": "Qwen/Qwen2.5-VL-3B-Instruct", "decoding": "free", "max_new_tokens": 511,
                "max_pixels": 50177, "template": "qwen2_5_vl", "overrides": ["temperature=0.1"]}


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def test_answers_are_parsed_checked_and_normalised():
    good = describe_answer(GOOD)
    assert good["schema_valid"] and good["violations"] == [] and good["parse_method"] == "json"
    assert good["answer"]["车辆属性"]["车辆品牌"] == "丰田" and good["answer"]["车牌属性"] == []
    synonym = describe_answer(GOOD.replace("正面", "车头"))
    assert synonym["answer"]["车辆属性"]["车辆朝向"] == "正面", "normalised to the canonical value"
    assert not synonym["schema_valid"] and any("车辆朝向" in v for v in synonym["violations"])
    missing = describe_answer('{"车辆属性": {"车辆品牌": "丰田"}}')
    assert not missing["schema_valid"] and missing["answer"]["车牌属性"] == []
    noise = describe_answer("\n\n\n")
    assert noise == {"answer": None, "parse_method": "none", "schema_valid": False,
                     "violations": ["not a JSON object"]}


@pytest.mark.parametrize("response, method, valid, answer", [
    ("好的:\n```json\n" + _dumps({"车辆属性": VEHICLE, "车牌属性": PLATE}) + "\n```", "fence", True,
     {"车辆属性": VEHICLE, "车牌属性": PLATE}),
    (_dumps({"车辆属性": VEHICLE, "车牌属性": {**PLATE, "车牌位置": [1, 2, 30, 40]}}), "json", True,
     {"车辆属性": VEHICLE, "车牌属性": {**PLATE, "车牌位置": [1, 2, 30, 40]}}),
    (_dumps({"车辆属性": VEHICLE, "车牌属性": {**PLATE, "车牌位置": [1, 2, 3]}}), "json", False,
     {"车辆属性": VEHICLE, "车牌属性": PLATE}),
    (_dumps([VEHICLE]), "json", False, None),
    (None, "none", False, None),
])
def test_each_response_is_described_by_how_it_parsed_and_what_it_says(response, method, valid, answer):
    """A fenced answer is read; a well-formed box is kept and a malformed one dropped from the answer (and
    named among the violations); a JSON value that is not an object has no answer; no response parses as none."""
    described = describe_answer(response)
    assert set(described) == {"answer", "parse_method", "schema_valid", "violations"}
    assert (described["parse_method"], described["schema_valid"], described["answer"]) == (method, valid, answer)
    assert (described["violations"] == []) == valid
    if response and "[1, 2, 3]" in response:
        assert described["violations"] == ["车牌属性/车牌位置: [1, 2, 3] is too short"]


def test_the_fingerprint_changes_with_every_setting_and_with_nothing_else():
    key = settings_fingerprint(SETTINGS)
    assert len(key) == 16 and int(key, 16) >= 0
    assert settings_fingerprint(dict(reversed(list(SETTINGS.items())))) == key, "the order of the keys is no setting"
    assert settings_fingerprint(json.loads(json.dumps(SETTINGS))) == key
    changed = {name: settings_fingerprint({**SETTINGS, name: value}) for name, value in OTHER_VALUES.items()}
    assert key not in changed.values() and len(set(changed.values())) == len(OTHER_VALUES), changed
    assert settings_fingerprint({k: v for k, v in SETTINGS.items() if k != "grounding"}) != key


def test_the_question_adds_to_the_fingerprint_only_when_it_is_not_the_default():
    """Outputs written before runs recorded their question resume as before: the default question adds nothing."""
    assert contract_fingerprint(StudentContract(), grounding=False) == {}
    assert contract_fingerprint(StudentContract(prompt=GROUNDING_PROMPT, grounding=True), grounding=True) == {}
    assert contract_fingerprint(StudentContract(), grounding=True) == {}, "the other task's default question"
    assert contract_fingerprint(StudentContract(prompt="请识别车牌", system="你是交警"), grounding=False) == {
        "prompt": "请识别车牌", "system": "你是交警"}
    assert contract_fingerprint(StudentContract(prompt="请识别车牌", grounding=False), grounding=True) == {}
    assert EXTRACTION_PROMPT != GROUNDING_PROMPT


def test_an_output_answered_with_other_settings_is_refused(tmp_path):
    output = tmp_path / "预测 out.jsonl"
    output.write_text("", encoding="utf-8")
    check_settings(output, "aaaa")  # an empty output takes any settings
    output.write_text(_dumps({"key": "a", "settings": "aaaa"}) + "\n" + _dumps({"key": "b", "settings": "bbbb"})
                      + "\n", encoding="utf-8")
    check_settings(output, "aaaa")
    with pytest.raises(UserError) as refused:
        check_settings(output, "cccc")
    assert str(refused.value).startswith(f"{output}: line 1 was answered with other settings")
    output.write_text(_dumps({"key": "a"}) + "\n", encoding="utf-8")
    check_settings(output, "cccc")  # a line written before lines recorded their settings


def test_resume_cuts_a_torn_line_refuses_other_settings_and_keeps_the_old_rejects(tmp_path):
    """Both predict runs start here: the images already answered are skipped, a line torn by a crash is cut, and
    a run refused for other settings leaves the previous rejects as they were."""
    from plates.image_inputs import Candidate
    from plates.journal import Journal

    output, rejects = tmp_path / "预测 out.jsonl", tmp_path / "预测 out.rejects.jsonl"
    answered, new = Candidate("/imgs/a.jpg", "a" * 64), Candidate("/imgs/b.jpg", "b" * 64)
    output.write_bytes((_dumps({"key": answered.key, "settings": "s1"}) + "\n").encode() + b'{"key":"')
    rejects.write_text(_dumps({"image": "/imgs/old.txt", "code": "not_image"}) + "\n", encoding="utf-8")
    old_rejects = rejects.read_bytes()
    refused_run = PredictSummary(out=str(output))
    log = Journal(output, "predict")
    try:
        with pytest.raises(UserError, match="other settings"):
            resume_output(log, output, "s2", rejects, [{"image": "/imgs/c.txt"}], [answered, new], refused_run)
    finally:
        log.close()
    assert rejects.read_bytes() == old_rejects and refused_run.torn_bytes == len(b'{"key":"')
    summary = PredictSummary(out=str(output))
    log = Journal(output, "predict")
    try:
        pending = resume_output(log, output, "s1", rejects, [{"image": "/imgs/c.txt"}], [answered, new], summary)
    finally:
        log.close()
    assert pending == [new] and summary.skipped == 1 and summary.torn_bytes == 0
    assert json.loads(rejects.read_text(encoding="utf-8")) == {"image": "/imgs/c.txt"}
    assert output.read_bytes().endswith(b"\n") and len(output.read_bytes().splitlines()) == 1


def test_the_summary_counts_and_says_what_happened():
    summary = PredictSummary(out="preds.jsonl", files=5, images=4, rejected=1, answered=3, skipped=1,
                             schema_valid=2, parsed=3, chunks=2, torn_bytes=37, seconds=1.23456)
    summary.reject_codes.update(["corrupt_image"])
    assert summary.to_dict() == {"out": "preds.jsonl", "files": 5, "images": 4, "rejected": 1, "answered": 3,
                                 "skipped": 1, "schema_valid": 2, "parsed": 3, "chunks": 2, "torn_bytes": 37,
                                 "seconds": 1.235, "reject_codes": {"corrupt_image": 1}}
    text = summary.format()
    assert text.splitlines()[0] == "plates predict: 5 files = 4 images + 1 rejected -> preds.jsonl"
    assert "answered      3  in 2 chunk(s), 2.43 images/s" in text and "schema-valid  2/3" in text
    assert "rejects: corrupt_image 1" in text and "cut a torn last line (37 bytes)" in text
    quiet = PredictSummary(out="p.jsonl").format()
    assert "rejects" not in quiet and "recovered" not in quiet and "0.00 images/s" in quiet
