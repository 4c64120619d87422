"""Grounding: `plates build --grounding` targets, the box conventions (Qwen2.5-VL pixels of the resized image,
Qwen2-VL 0-1000) and the map back to original pixels, checked against ms-swift's and qwen_vl_utils' own code and,
in the slow tests, against what a real `swift sft` trains on and a real `plates infer` writes."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from plates.cli import main
from plates import grounding
from plates.grounding import BoxMapper, fill_bbox_tags, model_image_size, to_model, to_original
from plates.io import write_jsonl
from plates.records import iter_records

# CCPD's name grammar (box in the third field); CCPD images are 720 wide, 1160 high: not square, and larger
# than MAX_PIXELS below, so the model sees a resized image
CCPD_NAME = "0359-{i}_{i}-{x1}&{y1}_{x2}&{y2}-200&150_100&150_100&100_200&100-0_0_4_33_32_25_12-{b}-4.jpg"
WIDTH, HEIGHT = 720, 1160
MAX_PIXELS = 200704  # 256 × 28²
BOXES = [(154, 383, 463, 498), (90, 700, 400, 820), (300, 200, 650, 330), (10, 1000, 300, 1100), (5, 5, 715, 90),
         (200, 900, 520, 1000)]


def _ccpd_records(tmp_path: Path) -> Path:
    """`plates parse` records of drawn CCPD-named JPEGs, each with its plate box (plate_geometry)."""
    root = tmp_path / "ccpd"
    root.mkdir()
    for i, (x1, y1, x2, y2) in enumerate(BOXES):
        image = np.full((HEIGHT, WIDTH, 3), 60 + 20 * i, np.uint8)
        cv2.rectangle(image, (x1, y1), (x2, y2), (200, 80, 20), -1)
        cv2.imwrite(str(root / CCPD_NAME.format(i=i, x1=x1, y1=y1, x2=x2, y2=y2, b=100 + i)), image)
    records = tmp_path / "records.jsonl"
    assert main(["parse", str(root), "-o", str(records), "-j", "1"]) == 0
    return records


def _plates(answer: dict) -> list[dict]:
    plates = answer.get("车牌属性")
    return [plates] if isinstance(plates, dict) else [p for p in plates or [] if isinstance(p, dict)]


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---- conventions --------------------------------------------------------------------------------------------------

def test_conventions_come_from_ms_swift_templates():
    assert grounding.template_convention("qwen2_5_vl") == "none"
    assert grounding.template_convention("qwen2_vl") == "norm1000"
    assert grounding.template_convention("qwen3_vl") == "norm1000"
    assert grounding.resolve_template(model="/no/such/folder") is None
    assert grounding.resolve_template(template="qwen2_vl", model="anything") == "qwen2_vl"


def test_model_image_size_is_what_ms_swift_and_qwen_vl_utils_make(tmp_path):
    """The size is computed the way ms-swift loads an image: its rescale_image (max_pixels), then qwen_vl_utils'
    fetch_image (MAX_PIXELS). Checked by running those two on real images of several shapes."""
    from PIL import Image
    from qwen_vl_utils.vision_process import fetch_image
    from swift.template.vision_utils import rescale_image

    for width, height, max_pixels in ((720, 1160, MAX_PIXELS), (1000, 600, MAX_PIXELS), (1920, 1080, 1003520),
                                      (333, 777, 50000), (300, 200, MAX_PIXELS)):
        image = Image.new("RGB", (width, height))
        seen = fetch_image({"image": rescale_image(image, max_pixels), "max_pixels": max_pixels // 784 * 784},
                           image_patch_size=14)
        assert model_image_size(width, height, max_pixels) == seen.size, (width, height, max_pixels)
    assert model_image_size(720, 1160, MAX_PIXELS) == (336, 560)
    assert model_image_size(300, 200, MAX_PIXELS) == (308, 196), "small images are only rounded to 28"


@pytest.mark.parametrize("convention", ["none", "norm1000"])
def test_round_trip_within_one_model_unit(convention):
    """original -> model -> original lands within one model unit (original pixels per model unit, plus rounding);
    model -> original -> model is exact."""
    rng = random.Random(3)
    for width, height in ((720, 1160), (1920, 1080), (4000, 3000), (300, 200)):
        scale_w, scale_h = (1000, 1000) if convention == "norm1000" else model_image_size(width, height, MAX_PIXELS)
        unit_w, unit_h = width / scale_w, height / scale_h
        for _ in range(200):
            x1, x2 = sorted(rng.sample(range(width + 1), 2))
            y1, y2 = sorted(rng.sample(range(height + 1), 2))
            model = to_model([x1, y1, x2, y2], width, height, convention, MAX_PIXELS)
            back = to_original(model, width, height, convention, MAX_PIXELS)
            for a, b, unit in zip(back, (x1, y1, x2, y2), (unit_w, unit_h, unit_w, unit_h)):
                assert abs(a - b) <= unit / 2 + 1, (width, height, (x1, y1, x2, y2), model, back)
            assert to_model(back, width, height, convention, MAX_PIXELS) == model
        if width <= scale_w * 1.01 and height <= scale_h * 1.01:  # model resolution at least the file's: 1 px
            assert to_original(to_model([10, 20, 30, 40], width, height, convention, MAX_PIXELS), width, height,
                               convention, MAX_PIXELS) == [10, 20, 30, 40]


def test_by_hand():
    # 720 x 1160 under 200704 pixels is seen as 336 x 560: x * 336 / 720, y * 560 / 1160
    assert to_model([90, 700, 400, 820], WIDTH, HEIGHT, "none", MAX_PIXELS) == [42, 338, 187, 396]
    assert to_original([42, 338, 187, 396], WIDTH, HEIGHT, "none", MAX_PIXELS) == [90, 700, 401, 820]
    assert to_model([90, 700, 400, 820], WIDTH, HEIGHT, "norm1000") == [125, 603, 556, 707]
    assert to_original([125, 603, 556, 707], WIDTH, HEIGHT, "norm1000") == [90, 699, 400, 820]
    assert to_original([0, 0, 9999, 9999], WIDTH, HEIGHT, "none", MAX_PIXELS) == [0, 0, WIDTH, HEIGHT], "clipped"
    with pytest.raises(ValueError):
        to_model([0, 0, 1, 1], WIDTH, HEIGHT, "norm1")


def test_fill_bbox_tags():
    assert fill_bbox_tags('{"a": <bbox>, "b": [<bbox>]}', [[1, 2, 3, 4], [5.0, 6, 7, 8]]) == \
        '{"a": [1, 2, 3, 4], "b": [[5, 6, 7, 8]]}'
    assert fill_bbox_tags('{"a": <bbox>}', []) == '{"a": <bbox>}', "counts differ: left as it is"


# ---- build --------------------------------------------------------------------------------------------------------

def test_build_grounding_targets_and_stats(tmp_path, capsys):
    records = _ccpd_records(tmp_path)
    assert main(["build", str(records), "-o", str(tmp_path / "plain")]) == 0
    said = capsys.readouterr().out
    assert f"note: {len(BOXES)} records carry plate boxes (plate_geometry) that this build does not train" in said
    assert main(["build", str(records), "-o", str(tmp_path / "grounded"), "--grounding"]) == 0
    assert "does not train" not in capsys.readouterr().out
    plain, grounded = _read(tmp_path / "plain" / "train.jsonl"), _read(tmp_path / "grounded" / "train.jsonl")
    assert len(plain) == len(grounded) > 0
    by_image = {r["image"]: r for r in iter_records(records)}
    for a, b in zip(plain, grounded):
        assert "objects" not in a and "车牌位置" not in json.dumps(a, ensure_ascii=False)
        answer = b["messages"][1]["content"]
        assert answer.count('"车牌位置": <bbox>}') == 1
        record = by_image[os.path.basename(b["images"][0])]
        assert b["objects"] == {"ref": [], "bbox": [record["plate_geometry"][0]["box"]], "bbox_type": "real"}
        filled = json.loads(fill_bbox_tags(answer, b["objects"]["bbox"]))
        assert json.loads(a["messages"][1]["content"]) == {**filled, "车牌属性": {
            k: v for k, v in filled["车牌属性"].items() if k != "车牌位置"}}
        assert "车牌位置" in b["messages"][0]["content"] and "车牌位置" not in a["messages"][0]["content"]
    plain_stats = json.loads((tmp_path / "plain" / "stats.json").read_text(encoding="utf-8"))
    stats = json.loads((tmp_path / "grounded" / "stats.json").read_text(encoding="utf-8"))
    assert "grounding" not in plain_stats and "boxes_not_trained" not in stats
    assert plain_stats["boxes_not_trained"] == {"records": len(BOXES), "how": "plates build --grounding"}
    g = stats["grounding"]
    assert g["on"] is True and g["env"] == {"QWENVL_BBOX_FORMAT": "new"} and "norm1000" in g["convention"]
    assert g["plates_with_box"]["train"] == len(grounded)
    assert main(["build", str(records), "-o", str(tmp_path / "x"), "--grounding", "--grpo"]) == 2
    assert main(["build", str(records), "-o", str(tmp_path / "y"), "--grounding", "--format", "sharegpt"]) == 2


def test_build_grounding_on_seed_records_changes_only_the_prompt(synth_dump, tmp_path):
    """Records without boxes (the seed grammar): --grounding asks for boxes but gives none; no objects."""
    records = tmp_path / "records.jsonl"
    main(["parse", str(synth_dump), "-o", str(records)])
    main(["build", str(records), "-o", str(tmp_path / "plain")])
    main(["build", str(records), "-o", str(tmp_path / "grounded"), "--grounding"])
    plain, grounded = _read(tmp_path / "plain" / "train.jsonl"), _read(tmp_path / "grounded" / "train.jsonl")
    assert [s["messages"][1] for s in plain] == [s["messages"][1] for s in grounded]
    assert not any("objects" in s for s in grounded)
    assert "boxes_not_trained" not in json.loads((tmp_path / "plain" / "stats.json").read_text(encoding="utf-8"))


def test_train_sets_the_bbox_format_for_grounding_datasets(tmp_path, tiny_model_dir, capsys, monkeypatch):
    records = _ccpd_records(tmp_path)
    assert main(["build", str(records), "-o", str(tmp_path / "data"), "--grounding"]) == 0
    assert main(["train", "--preset", "tiny_cpu", "--model", str(tiny_model_dir), "--dataset",
                 str(tmp_path / "data"), "--output-dir", str(tmp_path / "out"), "--dry-run"]) == 0
    assert "QWENVL_BBOX_FORMAT=new" in capsys.readouterr().out
    monkeypatch.setenv("QWENVL_BBOX_FORMAT", "legacy")
    assert main(["train", "--preset", "tiny_cpu", "--model", str(tiny_model_dir), "--dataset",
                 str(tmp_path / "data"), "--output-dir", str(tmp_path / "out"), "--dry-run"]) == 2
    assert "QWENVL_BBOX_FORMAT" in capsys.readouterr().err


# ---- map back -----------------------------------------------------------------------------------------------------

def test_box_mapper_maps_responses_and_fills_labels(tmp_path):
    image = tmp_path / "car 1.jpg"
    cv2.imwrite(str(image), np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    answer = {"车辆属性": {}, "车牌属性": [{"车牌号码": "皖A1", "车牌位置": [42, 338, 187, 396]},
                                    {"车牌号码": "皖A2", "车牌位置": "nowhere"}, {"车牌号码": "皖A3"}]}
    row = {"response": json.dumps(answer, ensure_ascii=False), "labels": '{"车牌位置": <bbox>}',
           "images": [{"path": str(image), "bytes": None}]}
    sample = {"objects": {"ref": [], "bbox": [[90, 700, 400, 820]], "bbox_type": "real"}}
    mapper = BoxMapper("none", MAX_PIXELS)
    out = mapper.row(dict(row), sample)
    mapped = json.loads(out["response"])
    assert mapped["车牌属性"][0]["车牌位置"] == [90, 700, 401, 820]
    assert mapped["车牌属性"][1]["车牌位置"] == "nowhere" and "车牌位置" not in mapped["车牌属性"][2]
    assert out["raw_response"] == row["response"] and out["labels"] == '{"车牌位置": [90, 700, 400, 820]}'
    assert (mapper.mapped, mapper.answers) == (1, 1)
    unknown = BoxMapper(None).row(dict(row), sample)
    assert unknown["response"] == row["response"] and "raw_response" not in unknown
    plain = {"response": '{"车辆属性": {}, "车牌属性": []}', "labels": "{}", "images": [str(image)]}
    assert mapper.row(dict(plain)) == plain


# ---- real ms-swift ------------------------------------------------------------------------------------------------

TINY_MAX_PIXELS = 50176  # swift_args/tiny_cpu.yaml: MAX_PIXELS and max_pixels


def _encoded_targets(data: Path, tiny_model_dir: Path, monkeypatch) -> list[tuple[dict, str, tuple[int, int]]]:
    """(sample, decoded training labels, (width, height) of the image the model saw from image_grid_thw) for each
    train sample, encoded by ms-swift's own loader and Qwen2.5-VL template as `swift sft` runs it."""
    from swift.dataset import load_dataset
    from swift.model import get_processor
    from swift.template import get_template

    monkeypatch.setenv("QWENVL_BBOX_FORMAT", "new")
    monkeypatch.setenv("MAX_PIXELS", str(TINY_MAX_PIXELS))
    template = get_template(get_processor(str(tiny_model_dir), model_type="qwen2_5_vl"), template_type="qwen2_5_vl",
                            max_pixels=TINY_MAX_PIXELS)
    template.set_mode("train")
    dataset, _ = load_dataset([str(data / "train.jsonl")], strict=True, load_from_cache_file=False)
    out = []
    for row, sample in zip(dataset, _read(data / "train.jsonl")):
        encoded = template.encode(row)
        text = template.tokenizer.decode([t for t in encoded["labels"] if t != -100])
        _, grid_h, grid_w = encoded["image_grid_thw"][0].tolist()
        out.append((sample, text, (grid_w * 14, grid_h * 14)))
    return out


@pytest.mark.slow
def test_grounding_train_and_infer_map_boxes_back_to_original_pixels(tmp_path, tiny_model_dir, monkeypatch):
    """CCPD images (720 x 1160: not square, over the tiny preset's 50,176 pixels) built with --grounding:
    1. ms-swift trains on the box in the resized image's pixels: the encoded labels hold exactly to_model(box), and
       the size the model saw (image_grid_thw) is model_image_size's;
    2. a real `swift sft` (2 steps) and a real `plates infer` run; infer's labels carry the original boxes;
    3. the model's answer in training form (the decoded target above) goes through infer's own finishing code
       (box_transform + record_decoding, with the real command line) and comes back in original pixels."""
    from plates.decoding import record_decoding
    from plates.inference import InferenceSettings
    from plates.infer import box_transform
    from plates.swift_infer import build_infer_command

    records = _ccpd_records(tmp_path)
    data = tmp_path / "data"
    assert main(["build", str(records), "-o", str(data), "--grounding", "--val-ratio", "0.3"]) == 0
    targets = _encoded_targets(data, tiny_model_dir, monkeypatch)
    assert len(targets) >= 3
    seen = model_image_size(WIDTH, HEIGHT, TINY_MAX_PIXELS)
    assert seen[0] * seen[1] <= TINY_MAX_PIXELS and seen[0] < WIDTH and seen[1] < HEIGHT
    for sample, text, grid_size in targets:
        assert grid_size == seen
        box = sample["objects"]["bbox"][0]
        expected = to_model(box, WIDTH, HEIGHT, "none", TINY_MAX_PIXELS)
        assert f'"车牌位置": {json.dumps(expected)}' in text, (text, expected)
        assert expected != box, "the model is trained on the resized image's pixels, not the file's"
    monkeypatch.delenv("QWENVL_BBOX_FORMAT")
    monkeypatch.delenv("MAX_PIXELS")

    runs = tmp_path / "runs"
    assert main(["train", "--preset", "tiny_cpu", "--model", str(tiny_model_dir), "--dataset", str(data),
                 "--output-dir", str(runs), "--set", "max_steps=2"]) == 0
    run_dir = next(runs.glob("v*"))
    assert "QWENVL_BBOX_FORMAT" in json.dumps(json.loads((run_dir / "plates_manifest.json").read_text()))
    results = tmp_path / "results.jsonl"
    assert main(["infer", "--adapters", str(run_dir), "--dataset", str(data), "-o", str(results),
                 "--max-new-tokens", "48"]) == 0  # schema decoding: a grounding val set is JSON extraction
    rows = _read(results)
    val = _read(data / "val.jsonl")
    assert len(rows) == len(val) >= 1
    for row, sample in zip(rows, val):
        assert json.loads(row["labels"])["车牌属性"]["车牌位置"] == sample["objects"]["bbox"][0]
        if "raw_response" in row:  # the untrained model wrote a box under schema decoding: it was mapped
            raw, answer = json.loads(row["raw_response"]), json.loads(row["response"])
            for before, after in zip(_plates(raw), _plates(answer)):
                if isinstance(before.get("车牌位置"), list):
                    assert after["车牌位置"] == to_original(before["车牌位置"], WIDTH, HEIGHT, "none", TINY_MAX_PIXELS)

    # the trained answers, in the model's numbers, through infer's finishing step with infer's real command line
    settings = InferenceSettings(adapters=str(run_dir))
    argv, env = build_infer_command(settings, dataset=str(data), result_path=tmp_path / "unused.jsonl")
    assert env["MAX_PIXELS"] == str(TINY_MAX_PIXELS)
    answers = tmp_path / "model_answers.jsonl"
    known = [(sample, text.removesuffix("<|im_end|>")) for sample, text, _ in targets]
    write_jsonl(answers, [{**rows[0], "response": text, "images": sample["images"], "labels": sample["messages"][1][
        "content"]} for sample, text in known])
    mapped = tmp_path / "mapped.jsonl"
    transform = box_transform(answers, None, argv, env, settings, len(known))
    record_decoding(answers, mapped, "free", transform=transform)
    for (sample, text), row in zip(known, _read(mapped)):
        box = sample["objects"]["bbox"][0]
        got = json.loads(row["response"])["车牌属性"]["车牌位置"]
        unit = WIDTH / seen[0], HEIGHT / seen[1]
        assert all(abs(a - b) <= unit[k % 2] / 2 + 1 for k, (a, b) in enumerate(zip(got, box))), (got, box)
        assert row["raw_response"] == text and row["box_mapping"]["box_convention"] == "none"
        assert row["box_mapping"]["max_pixels"] == TINY_MAX_PIXELS

    # plates predict on the same images: grounding is on by itself for this adapter (auto), boxes mapped the same way
    from plates.grounding import trained_with_grounding

    assert trained_with_grounding(str(run_dir)) and not trained_with_grounding(str(tiny_model_dir))
    predictions = tmp_path / "predictions.jsonl"
    assert main(["predict", str(tmp_path / "ccpd"), "-o", str(predictions), "--adapters", str(run_dir),
                 "--max-new-tokens", "48"]) == 0
    lines = _read(predictions)
    assert len(lines) == len(BOXES)
    for line in lines:
        if "raw_response" in line:
            raw = json.loads(line["raw_response"])
            for before, after in zip(_plates(raw), _plates(json.loads(line["response"]))):
                if isinstance(before.get("车牌位置"), list):
                    assert after["车牌位置"] == to_original(before["车牌位置"], WIDTH, HEIGHT, "none", TINY_MAX_PIXELS)
