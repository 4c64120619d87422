"""`plates tiny-model`: a random-weight Qwen2.5-VL that real ms-swift and transformers accept, built offline."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from plates.cli import main
from plates.errors import UserError
from plates.tiny_model import FIRST_SPECIAL_ID, SPECIAL_TOKENS, VOCAB_SIZE, build_tiny_model, is_complete

# The ids ms-swift's Qwen templates hard-code, and the rest of the real Qwen2.5-VL added tokens.
REAL_IDS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|vision_start|>": 151652,
            "<|vision_end|>": 151653, "<|vision_pad|>": 151654, "<|image_pad|>": 151655, "<|video_pad|>": 151656,
            "<|file_sep|>": 151664}


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def test_special_tokens_sit_at_the_real_qwen_ids(processor):
    tokenizer = processor.tokenizer
    for token, expected in REAL_IDS.items():
        assert tokenizer.convert_tokens_to_ids(token) == expected, token
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(
        range(FIRST_SPECIAL_ID, FIRST_SPECIAL_ID + len(SPECIAL_TOKENS)))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id == 151643
    # Special tokens are matched whole inside text, as ms-swift's template expects.
    ids = tokenizer("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>")["input_ids"]
    assert ids[0] == 151644 and ids[-1] == 151645 and ids[-5:-2] == [151652, 151655, 151653]


@pytest.mark.parametrize("text", [
    '{"车辆属性": {"车辆品牌": "丰田", "车辆类型": "小轿车"}, "车牌属性": [{"车牌号码": "云A·12345"}]}',
    "用简洁的语言描述图片的主要内容。鑫 🚗 ＡＢＣ：全角",
    '[]\n{"a": 1.5e-3, "b": null}\t',
])
def test_tokenizer_round_trips_chinese_and_json(processor, text):
    tokenizer = processor.tokenizer
    ids = tokenizer(text)["input_ids"]
    assert max(ids) < FIRST_SPECIAL_ID
    assert tokenizer.decode(ids) == text


def test_label_vocabulary_tokenizes_compactly(processor):
    """The merges are learnt from the label vocabularies: a canonical answer is far fewer tokens than bytes."""
    from plates.labels import answer_from_labels

    labels = {"车辆属性": {"车辆品牌": "丰田", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"},
              "车牌属性": [{"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云A12345", "车牌颜色": "蓝色",
                            "车牌层数": "单层车牌", "车牌用途": "燃油车车牌"}]}
    text = json.dumps(answer_from_labels(labels), ensure_ascii=False)
    assert len(processor.tokenizer(text)["input_ids"]) < len(text.encode("utf-8")) / 3


def test_processor_has_image_and_video_processors(processor):
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert processor.video_processor is not None
    assert processor.image_processor.patch_size == 14 and processor.image_processor.merge_size == 2


def test_config_matches_the_real_layout(tiny_model_dir):
    config = json.loads((Path(tiny_model_dir) / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    text, vision = config["text_config"], config["vision_config"]
    assert text["vocab_size"] == VOCAB_SIZE and text["num_hidden_layers"] == 2 and text["hidden_size"] == 32
    assert vision["depth"] == 2 and vision["out_hidden_size"] == text["hidden_size"]
    assert config["image_token_id"] == 151655 and config["video_token_id"] == 151656
    assert is_complete(tiny_model_dir)


def test_model_runs_forward_on_an_image(tiny_model_dir, processor):
    """transformers loads it and computes a finite loss on an image + text turn."""
    import numpy as np
    import torch
    from PIL import Image
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model_dir)
    image = Image.fromarray((np.random.default_rng(0).random((84, 112, 3)) * 255).astype("uint8"))
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "车牌号码是什么?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[prompt + "云A12345"], images=[image], return_tensors="pt")
    assert (inputs["input_ids"] == 151655).sum() == inputs["image_grid_thw"].prod() // 4
    with torch.no_grad():
        out = model(**inputs, labels=inputs["input_ids"])
    assert out.logits.shape[-1] == VOCAB_SIZE
    assert math.isfinite(out.loss.item())


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_build_is_idempotent_and_refuses_foreign_folders(tiny_model_dir, tmp_path, capsys):
    before = (Path(tiny_model_dir) / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(tiny_model_dir) == Path(tiny_model_dir)
    assert (Path(tiny_model_dir) / "model.safetensors").stat().st_mtime_ns == before

    assert main(["tiny-model", str(tiny_model_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(tiny_model_dir)

    foreign = tmp_path / "not a model"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a tiny model"):
        build_tiny_model(foreign)
    with pytest.raises(UserError, match="not a tiny model"):
        build_tiny_model(foreign, overwrite=True)
    assert main(["tiny-model", str(foreign)]) == 2
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_build_is_deterministic_per_seed(tiny_model_dir, tmp_path):
    again = build_tiny_model(tmp_path / "same seed 同:一")
    assert _digest(again) == _digest(Path(tiny_model_dir))
    assert (again / "tokenizer.json").read_bytes() == (Path(tiny_model_dir) / "tokenizer.json").read_bytes()
    other = build_tiny_model(tmp_path / "other", seed=1)
    assert _digest(other) != _digest(again)


def test_unreachable_embedding_rows_are_zero(tiny_model_dir):
    """Placeholder ids can never be produced by the tokenizer: their (tied) rows start at zero, so the untrained
    model's loss starts near a uniform guess over the vocabulary, not far above it."""
    from safetensors import safe_open
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    first_placeholder = min(i for t, i in tokenizer.get_vocab().items() if t.startswith("<|placeholder_"))
    with safe_open(str(Path(tiny_model_dir) / "model.safetensors"), "pt") as handle:
        name = next(k for k in handle.keys() if k.endswith("embed_tokens.weight"))
        weight = handle.get_tensor(name)
    assert weight.shape[0] == VOCAB_SIZE
    assert (weight[first_placeholder:FIRST_SPECIAL_ID] == 0).all()
    assert (weight[:first_placeholder].abs().sum(dim=1) > 0).all()
    assert (weight[FIRST_SPECIAL_ID:FIRST_SPECIAL_ID + len(SPECIAL_TOKENS)].abs().sum(dim=1) > 0).all()


def test_sizes_keep_the_rotary_sections_consistent():
    from plates.tiny_model import SIZES, build_config

    for size in SIZES.values():
        config = build_config(size["width"], size["layers"], size["rope"], size["heads"])
        text = config.text_config
        head_dim = text.hidden_size // text.num_attention_heads
        assert sum(text.rope_parameters["mrope_section"]) == head_dim // 2
        assert config.vision_config.out_hidden_size == text.hidden_size
    with pytest.raises(UserError, match="width"):
        build_config(40, 2)
    with pytest.raises(UserError, match="rope must be one of qwen, spatial, grid"):
        build_config(64, 2, "1d")
    with pytest.raises(UserError, match="heads must be 2 or 4"):
        build_config(32, 2, "qwen", 3)


def _rotation_between_image_rows(rope: str, size: str = "demo", axis: int = 1, step: int = 3) -> float:
    """How far (radians, summed over a head's rotary dims) the rotary embedding turns a visual token ``step``
    rows below another in the same column (``axis`` 2: columns to the right in the same row), with the position
    ids the model itself gives a still image."""
    import torch
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLRotaryEmbedding

    from plates.tiny_model import SIZES, build_config

    shape = SIZES[size]
    config = build_config(shape["width"], shape["layers"], rope, shape["heads"]).text_config
    rotary = Qwen2_5_VLRotaryEmbedding(config)
    start = 40
    positions = torch.tensor([[[start], [start]]] * 3)  # (t, h, w) of two tokens
    positions[axis, 1, 0] += step
    cos, sin = rotary(torch.zeros(1), positions.reshape(3, 1, 2))
    angles = torch.atan2(sin[0], cos[0])
    return float((angles[1] - angles[0]).abs().sum() / 2)


def test_the_demo_model_can_tell_image_rows_apart():
    """The real checkpoint's rotary split leaves a still image's rows almost the same position for a 32-dim head
    (the temporal section, the fast one, is constant over the image); the demo's split turns them apart."""
    qwen, spatial = _rotation_between_image_rows("qwen"), _rotation_between_image_rows("spatial")
    assert qwen < 0.25 < 3 < spatial, (qwen, spatial)


def test_the_long_demo_model_can_tell_image_columns_apart():
    """Reading a plate left to right needs neighbouring columns apart: the "spatial" split (theta 10,000) turns a
    token one column to the right by a few hundredths of a radian in all, `--size long`'s "grid" split (theta 10)
    by radians in each column dim, and it keeps the rows apart as well."""
    from plates.tiny_model import SIZES

    assert SIZES["long"]["rope"] == "grid"
    spatial = _rotation_between_image_rows("spatial", "long", axis=2, step=1)
    grid = _rotation_between_image_rows("grid", "long", axis=2, step=1)
    assert spatial < 0.05 and grid > 1.5, (spatial, grid)
    assert _rotation_between_image_rows("grid", "long", axis=1, step=1) > 4


def test_whole_values_put_the_plate_number_at_a_fixed_place_in_every_answer():
    """`--size long`'s tokenizer makes every field name and canonical value one token, so the plate number of
    every one-plate answer starts the same number of tokens into the answer (the default tokenizer splits some
    values, e.g. 侧面, moving the number by a few tokens)."""
    import random

    from plates.labels import answer_from_labels
    from plates.synth import balanced_labels
    from plates.tiny_model import SIZES, build_tokenizer

    assert SIZES["long"]["whole_values"] and not SIZES["demo"].get("whole_values")
    rng = random.Random(3)
    answers = [json.dumps(answer_from_labels(balanced_labels(rng)), ensure_ascii=False) for _ in range(300)]
    offsets = {}
    for whole in (False, True):
        tokenizer = build_tokenizer(whole)
        offsets[whole] = {len(tokenizer(a.split('"车牌号码": "')[0] + '"车牌号码": "')["input_ids"]) for a in answers}
    assert len(offsets[True]) == 1 and len(offsets[False]) > 3, offsets


def test_a_model_of_another_shape_is_not_reused(tiny_model_dir):
    from plates.tiny_model import SIZES, _same_build

    test = SIZES["test"]
    shape = (0, test["width"], test["layers"], test["embed_std"])
    assert _same_build(Path(tiny_model_dir), *shape, 2, "qwen")
    assert not _same_build(Path(tiny_model_dir), *shape, 2, "spatial")
    assert not _same_build(Path(tiny_model_dir), *shape, 4, "qwen")
