"""Per-field loss weights (plates.field_weights): the split of an answer into weighted segments, the tokens ms-swift
builds from it, the checks before launch, and a real `swift sft` whose loss the weights change."""

from __future__ import annotations

import json
import random

import pytest

from plates.student import answer_text
from plates.errors import UserError
from plates.field_weights import (FIELD_WEIGHTS_ENV, parse_field_weights, uses_field_weights,
                                  weighted_segments)
from plates.labels import FIELDS, PLATE_GROUP, SLUGS, VEHICLE_GROUP
from plates.synth import dump_entries, random_labels


def _answers(n: int = 300) -> list[str]:
    rng = random.Random(4)
    answers = [answer_text(e.labels) for e in dump_entries(n // 2, seed=11, balanced=True)]
    answers += [answer_text(random_labels(rng)) for _ in range(n - len(answers))]
    return answers


def test_weights_parse_from_names_and_slugs():
    weights = parse_field_weights(f"车辆颜色=5, {SLUGS['车牌颜色']}=2.5 车辆朝向=0")
    assert weights == {"车辆颜色": 5.0, "车牌颜色": 2.5, "车辆朝向": 0.0}


@pytest.mark.parametrize("text, words", [
    ("", "is empty"), ("车辆颜色", "is not FIELD=WEIGHT"), ("颜色=5", "unknown field '颜色'"),
    ("车辆颜色=-1", "from 0 to 100"), ("车辆颜色=lots", "from 0 to 100"), ("车辆颜色=nan", "from 0 to 100"),
    ("车辆颜色=1e9", "from 0 to 100"), ("车辆颜色=2,车辆颜色=3", "given twice")])
def test_bad_weights_are_one_line_errors(text, words):
    with pytest.raises(UserError) as info:
        parse_field_weights(text)
    assert words in str(info.value) and "\n" not in str(info.value) and FIELD_WEIGHTS_ENV in str(info.value)


def test_segments_rebuild_the_answer_and_weight_exactly_the_values():
    weights = {"车辆颜色": 5.0, "车牌颜色": 3.0, "车牌号码": 0.5}
    for text in _answers():
        segments, scales = weighted_segments(text, weights)
        assert "".join(segments) == text and len(segments) == len(scales)
        answer = json.loads(text)
        plates = answer[PLATE_GROUP] if isinstance(answer[PLATE_GROUP], list) else [answer[PLATE_GROUP]]
        expected = sorted([(answer[VEHICLE_GROUP]["车辆颜色"], 5.0)]
                          + [(p["车牌颜色"], 3.0) for p in plates] + [(p["车牌号码"], 0.5) for p in plates])
        assert sorted((s, w) for s, w in zip(segments, scales) if w != 1.0) == expected


def test_text_around_the_json_and_unweighted_fields_keep_weight_one():
    text = "图中是一辆蓝色的车。\n\n" + _answers(2)[0]
    segments, scales = weighted_segments(text, {"车辆品牌": 1.0, "车辆颜色": 4.0})
    assert segments[0].startswith("图中是一辆蓝色的车") and scales[0] == 1.0
    assert scales.count(4.0) == 1
    assert weighted_segments(text, {"车辆颜色": 1.0}) == ([text], [1.0])
    assert weighted_segments('{"车辆颜色": ""}', {"车辆颜色": 4.0}) == (['{"车辆颜色": ""}'], [1.0])


def test_segments_tokenize_exactly_like_the_whole_answer(tiny_model_dir):
    """ms-swift tokenizes each segment on its own: the split points must be where the Qwen pre-tokenizer splits
    anyway, or the model would train on token sequences it never produces."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    weights = {field: 3.0 for field in FIELDS}
    checked = 0
    for text in _answers():
        segments, _ = weighted_segments(text, weights)
        assert len(segments) >= 9
        whole = tokenizer(text, add_special_tokens=False)["input_ids"]
        pieces = [t for s in segments for t in tokenizer(s, add_special_tokens=False)["input_ids"]]
        assert pieces == whole, (text, segments)
        checked += 1
    assert checked == 300


def test_only_the_plates_strategy_is_recognised():
    assert uses_field_weights("plates_fields") and uses_field_weights("last_round+plates_fields")
    assert not uses_field_weights("default") and not uses_field_weights(None)
    assert not uses_field_weights("plates_fields_v2")


def test_train_plan_adds_the_plugin_and_checks_the_weights_before_launch(tiny_model_dir, tmp_path):
    from plates.decoding import plugin_path
    from plates.train import build_plan

    data = tmp_path / "d.jsonl"
    data.write_text("{}\n", encoding="utf-8")
    common = dict(model=str(tiny_model_dir), output_dir=tmp_path / "out", environ={})
    plan = build_plan("tiny_cpu", data, overrides=["loss_scale=plates_fields"],
                      env_overrides=[f"{FIELD_WEIGHTS_ENV}=车辆颜色=5"], **common)
    assert plan.options["external_plugins"] == [str(plugin_path())]
    assert plan.argv[plan.argv.index("--loss_scale") + 1] == "plates_fields"
    assert any("车辆颜色 x5" in note for note in plan.notes)
    with pytest.raises(UserError, match=f"needs {FIELD_WEIGHTS_ENV}"):
        build_plan("tiny_cpu", data, overrides=["loss_scale=plates_fields"], **common)
    with pytest.raises(UserError, match="unknown field"):
        build_plan("tiny_cpu", data, overrides=["loss_scale=plates_fields"],
                   env_overrides=[f"{FIELD_WEIGHTS_ENV}=colour=5"], **common)
    assert "external_plugins" not in build_plan("tiny_cpu", data, **common).options
    unused = build_plan("tiny_cpu", data, env_overrides=[f"{FIELD_WEIGHTS_ENV}=车辆颜色=5"], **common)
    assert "external_plugins" not in unused.options
    assert any(f"{FIELD_WEIGHTS_ENV} is set but loss_scale is not plates_fields" in n for n in unused.notes)
    with_mine = build_plan("tiny_cpu", data, overrides=["loss_scale=plates_fields", "external_plugins=/x/mine.py"],
                           env_overrides=[f"{FIELD_WEIGHTS_ENV}=车辆颜色=5"], **common)
    assert with_mine.options["external_plugins"] == ["/x/mine.py", str(plugin_path())]


@pytest.mark.slow
def test_real_swift_sft_trains_with_the_weights(tiny_model_dir, synth_dump, tmp_path):
    """Two one-step `swift sft` runs from the same seed: weighting every answer value 20x multiplies the first
    loss by several times (unweighted, the value tokens are about a third of the answer)."""
    from plates.cli import main
    from plates.io import read_jsonl

    records = tmp_path / "records.jsonl"
    assert main(["parse", str(synth_dump), "-o", str(records)]) == 0
    data = tmp_path / "data"
    assert main(["build", str(records), "-o", str(data), "--val-ratio", "0"]) == 0
    losses = {}
    for name, extra in (("plain", []), ("weighted", ["--set", "loss_scale=plates_fields", "--env",
                                                     f"{FIELD_WEIGHTS_ENV}=" + ",".join(f"{f}=20" for f in FIELDS)])):
        out = tmp_path / name
        code = main(["train", "--preset", "tiny_cpu", "--model", str(tiny_model_dir), "--dataset", str(data),
                     "--output-dir", str(out), "--set", "max_steps=1", "--set", "logging_steps=1",
                     "--set", "seed=7", "--set", "data_seed=7", *extra])
        assert code == 0
        run = next(p for p in out.iterdir() if p.is_dir() and p.name.startswith("v"))
        losses[name] = [float(r["loss"]) for r in read_jsonl(run / "logging.jsonl") if "loss" in r][0]
    assert losses["weighted"] > 3 * losses["plain"], losses


def test_the_plate_box_is_weighted_as_numbers_or_as_the_bbox_tag(tiny_model_dir):
    """The box (车牌位置) is not a string: its numbers, or the ``<bbox>`` tag a grounding target writes in their
    place, are its segment; split where Qwen's pre-tokenizer splits, so the tokens stay the whole answer's."""
    from transformers import AutoTokenizer

    text = '{"车牌属性": {"车牌号码": "云A12345", "车牌位置": [93, 148, 189, 176]}}'
    segments, scales = weighted_segments(text, {"车牌位置": 5.0, "车牌号码": 2.0})
    assert "".join(segments) == text
    assert [(s, w) for s, w in zip(segments, scales) if w != 1.0] == [("云A12345", 2.0), ("93, 148, 189, 176", 5.0)]
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    assert [t for s in segments for t in tokenizer(s, add_special_tokens=False)["input_ids"]] == tokenizer(
        text, add_special_tokens=False)["input_ids"]
    tagged = '{"车牌属性": [{"车牌位置": <bbox>}, {"车牌位置": <bbox>}]}'
    segments, scales = weighted_segments(tagged, {"车牌位置": 5.0})
    assert "".join(segments) == tagged and [s for s, w in zip(segments, scales) if w == 5.0] == ["<bbox>", "<bbox>"]


def test_ms_swift_weights_the_box_tokens_of_a_grounding_target(tiny_model_dir, tmp_path, monkeypatch):
    """Through ms-swift's own Qwen2.5-VL template with ``loss_scale=plates_fields``: the tokens ms-swift writes for
    the ``<bbox>`` tag (the box in the resized image's pixels) carry the box's weight, the number's tokens the
    number's, every other answer token 1."""
    from PIL import Image
    from swift.model import get_processor
    from swift.template import get_template

    from plates.field_weights import register_loss_scale

    image = tmp_path / "frame.png"
    Image.new("RGB", (224, 168), (40, 90, 160)).save(image)
    monkeypatch.setenv(FIELD_WEIGHTS_ENV, "车牌位置=5,车牌号码=2")
    monkeypatch.setenv("QWENVL_BBOX_FORMAT", "new")
    register_loss_scale()
    template = get_template(get_processor(str(tiny_model_dir), model_type="qwen2_5_vl"), template_type="qwen2_5_vl",
                            loss_scale="plates_fields", max_pixels=50176)
    template.set_mode("train")
    answer = '{"车辆属性": {"车辆颜色": "蓝色"}, "车牌属性": {"车牌号码": "云A12345", "车牌位置": <bbox>}}'
    encoded = template.encode({"messages": [{"role": "user", "content": "<image>车牌在哪里?"},
                                            {"role": "assistant", "content": answer}],
                               "images": [str(image)],
                               "objects": {"ref": [], "bbox": [[10, 20, 100, 60]], "bbox_type": "real"}})
    tokenizer = template.tokenizer
    by_weight: dict[float, str] = {}
    for token, label, weight in zip(encoded["input_ids"], encoded["labels"], encoded["loss_scale"]):
        if label != -100:
            by_weight[float(weight)] = by_weight.get(float(weight), "") + tokenizer.decode([token])
    assert by_weight[2.0] == "云A12345"
    assert "10" in by_weight[5.0] and "100" in by_weight[5.0] and "60" in by_weight[5.0], by_weight
    assert "车牌号码" in by_weight[1.0] and "蓝色" in by_weight[1.0] and set(by_weight) == {1.0, 2.0, 5.0}
