"""A tiny random-weight Qwen2.5-VL built locally, so tests and the demo run real ms-swift without a download.

The architecture is the real one (``Qwen2_5_VLForConditionalGeneration``) shrunk to 2 decoder layers of width 32
and a 2-block vision tower (``--size test``, the default), so ``swift sft`` / ``swift infer`` / ``swift deploy``
exercise their real code paths on CPU in seconds; ``--size demo`` is 64 wide with 4 attention heads and a rotary
split that tells an image's rows apart (``build_config``), and the demo's full fine-tune teaches it the answer
format and to read the drawings within minutes. What ms-swift hard-codes has to match the real checkpoint exactly:

* the special tokens sit at the real Qwen ids (``<|endoftext|>`` = 151643 … ``<|image_pad|>`` = 151655,
  ``<|video_pad|>`` = 151656) and the embedding has the real 151936 rows, because ms-swift's Qwen template
  refers to those ids directly;
* the processor carries an image *and* a video processor;
* the tokenizer is a byte-level BPE with Qwen's pre-tokenizer, so any text (Chinese labels, JSON) tokenizes.
  Its merges are learnt from the label vocabularies plus a small built-in corpus, so answers stay short;
  the ids between the learnt merges and 151643 are unreachable placeholders, whose (equal) rows training can
  treat as one closed-form term of the loss (``plates.placeholder_loss``, on in the demo's presets).

The weights are random: untrained, the model reads nothing. It exists to prove the plumbing, that training moves
the loss, and (in the demo) that what the drawings show reaches the answers after training.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from plates.contracts import PLACEHOLDER_PREFIX, TINY_MARKER
from plates.errors import UserError
from plates import resources
from plates.io import check_output_dir
from plates.labels import FIELD_TABLE, STRUCTURE_KEYS, canonical_values
from plates.outputs import output_dir

VOCAB_SIZE = 151936
FIRST_SPECIAL_ID = 151643
# The real Qwen2.5-VL added tokens, in id order from 151643.
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)
# Tokens that are not "special" in the real tokenizer (they print in decoded text).
NON_SPECIAL = {"<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
               "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"}
BPE_MERGE_VOCAB = 4000
# Small processor limits: images become at most 256 visual tokens unless MAX_PIXELS says otherwise.
# Scale of the (tied) token embeddings. With the usual 0.02 a width-32 model cannot express a confident next-token
# prediction through the frozen head (max logit < 1), so LoRA could never move the loss; 0.5 lets it.
EMBED_STD = 0.5
# Named sizes for `plates tiny-model --size`. The demo's model is trained from scratch by a full fine-tune, where
# the usual small initial embeddings start it at the loss of a uniform guess instead of far above it.
# ``heads``: the language model's attention heads (half as many key/value heads). ``rope``: "qwen" splits the
# rotary dims as the real checkpoint does, "spatial" gives the image rows the fast ones, "grid" gives rows and
# columns usable frequencies (see build_config). ``long`` is `plates demo --long`'s model, which reads plates.
SIZES = {"test": {"width": 32, "layers": 2, "embed_std": 0.5, "heads": 2, "rope": "qwen"},
         "demo": {"width": 64, "layers": 2, "embed_std": 0.05, "heads": 4, "rope": "spatial"},
         "long": {"width": 64, "layers": 2, "embed_std": 0.05, "heads": 2, "rope": "grid", "whole_values": True}}
ROPES = ("qwen", "spatial", "grid")
# The "grid" split's rotary base: rows get 0.37-1.0 rad per merged image token and columns 0.12-0.32 rad, so a
# plate's eight columns are told apart (with the usual 10,000 the column frequencies are below 0.01 rad).
GRID_ROPE_THETA = 10.0
MIN_PIXELS = 56 * 56
# The tests' size; the demo asks for a wider one (`plates tiny-model DIR --size demo`).
DEFAULT_WIDTH = 32
DEFAULT_LAYERS = 2
MAX_PIXELS = 256 * 28 * 28

# The official Qwen2.5-VL chat template (used by `transformers` users; ms-swift brings its own template).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_BUILTIN_CORPUS = """\
You are a helpful assistant. Describe the image. 请识别图片中的车辆属性和车牌属性,以JSON格式输出。
用简洁的语言描述图片的主要内容。这辆车的品牌、类型、颜色和朝向是什么?车牌的号码、颜色、层数和用途是什么?
{"车辆属性": {"车辆品牌": "丰田", "车辆类型": "小轿车", "车辆颜色": "白色", "车辆朝向": "正面"},
 "车牌属性": {"车牌国家": "中国", "车牌省份": "云南省", "车牌号码": "云A12345", "车牌颜色": "蓝色",
 "车牌层数": "单层车牌", "车牌用途": "燃油车车牌"}}
{"车辆属性": {"车辆品牌": "未知", "车辆类型": "货车", "车辆颜色": "黄色", "车辆朝向": "背面"}, "车牌属性": []}
京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼使领警学挂港澳 0123456789 ABCDEFGHJKLMNPQRSTUVWXYZ
The quick brown fox jumps over the lazy dog. A white sedan with a blue plate drives on the road in the rain.
"""


def _training_corpus(whole_values: bool = False) -> list[str]:
    """Label vocabularies (so field names and values merge into few tokens) plus the built-in sample. The field
    table's structure lines (``role:``, ``slot:``, ``bounds:`` …) are no vocabulary and are left out, so the merges
    are learnt from names and values alone. ``whole_values``: every field name and every canonical value of a closed
    or open field is repeated until it is one token (``侧面``, not ``侧`` ``面``), so every extraction answer puts
    its plate number the same number of tokens after the image: the `long` model reads the plate through rotary
    positions relative to the answer, which a number that moves by a few tokens would blur (issue 26)."""
    lines = _BUILTIN_CORPUS.splitlines()
    labels = resources.asset_dir("labels")  # the shipped vocabularies: the same tokenizer everywhere
    structure = tuple(f"{key}:" for key in STRUCTURE_KEYS)
    if labels.is_dir():
        for path in sorted(labels.glob("*.yaml")):
            lines.extend(line for line in path.read_text(encoding="utf-8").splitlines()
                         if not line.lstrip().startswith(structure))
    lines = [line for line in lines if line.strip()] * 3  # frequent pairs clear min_frequency in a small corpus
    if whole_values:
        words = [f.name for f in FIELD_TABLE] + [v for f in FIELD_TABLE if f.kind in ("closed", "open")
                                                 for v in canonical_values(f.name)]
        lines += [" ".join(f'"{w}"' for w in words)] * 8 + words * 8
    return lines


def build_tokenizer(whole_values: bool = False):
    """A Qwen2Tokenizer whose specials sit at the real Qwen ids (``<|endoftext|>`` = 151643 …); ``whole_values``:
    see :func:`_training_corpus`."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer
    from transformers import AddedToken
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    trainer_tok = Tokenizer(BPE())
    trainer_tok.normalizer = normalizers.NFC()
    trainer_tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer_tok.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(vocab_size=BPE_MERGE_VOCAB, min_frequency=2, show_progress=False,
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    trainer_tok.train_from_iterator(_training_corpus(whole_values), trainer=trainer)
    model = json.loads(trainer_tok.to_str())["model"]
    vocab: dict[str, int] = dict(model["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    # Unreachable placeholders fill the id range up to the first special token.
    for index in range(len(vocab), FIRST_SPECIAL_ID):
        vocab[f"{PLACEHOLDER_PREFIX}{index}|>"] = index
    # Specials are in the BPE vocab too, so registering them as added tokens keeps these exact ids.
    for offset, token in enumerate(SPECIAL_TOKENS):
        vocab[token] = FIRST_SPECIAL_ID + offset

    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token="<|im_end|>",
        pad_token="<|endoftext|>", errors="replace", model_max_length=32768, clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    tokenizer.add_tokens([AddedToken(t, special=t not in NON_SPECIAL, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [t for t in SPECIAL_TOKENS[1:14]]}, replace_extra_special_tokens=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    for offset, token in enumerate(SPECIAL_TOKENS):
        got = tokenizer.convert_tokens_to_ids(token)
        if got != FIRST_SPECIAL_ID + offset:
            raise RuntimeError(f"tiny tokenizer: {token} got id {got}, want {FIRST_SPECIAL_ID + offset}")
    return tokenizer


def build_processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=14,
                                            temporal_patch_size=2, merge_size=2)
    video_processor = Qwen2VLVideoProcessor(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=14,
                                            temporal_patch_size=2, merge_size=2)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               video_processor=video_processor, chat_template=CHAT_TEMPLATE)


def build_config(width: int = DEFAULT_WIDTH, layers: int = DEFAULT_LAYERS, rope: str = "qwen", heads: int = 2):
    """The model's configuration. M-RoPE splits each head's rotary half (head_dim / 2, fastest frequency first)
    into temporal, height and width sections. ``rope="qwen"`` keeps the real checkpoint's split (1/4, 3/8, 3/8,
    theta 1e6); in a 32-dim head that leaves the height and width of an image frequencies of 0.03 at most, and
    every visual token of a still image shares one temporal position, so the language model sees all of an
    image's tokens at (almost) the same place: a pretrained model has learnt its way around that, a random one
    trained for minutes does not. ``rope="spatial"`` (the demo's) gives the fast half to the image rows and the
    slow half to the columns (no temporal section; theta 1e4): rows are told apart, columns barely. ``rope="grid"``
(`demo --long`'s) is the same split with theta 10, so columns get 0.12-0.32 rad per merged token as well: reading a
plate's characters left to right needs them. Text positions are 1-D either way. ``heads`` is the
    language model's (the vision tower keeps 2); each pair of query heads shares one key/value head."""
    from transformers import Qwen2_5_VLConfig

    if width % 16 or width < 32 or layers < 1:
        raise UserError(f"tiny model: width must be a multiple of 16 (at least 32) and layers at least 1, "
                        f"not width {width}, layers {layers}")
    if rope not in ROPES:
        raise UserError(f"tiny model: rope must be one of {', '.join(ROPES)}, not {rope!r}")
    if heads not in (2, 4) or (width // heads) % 8:
        raise UserError(f"tiny model: heads must be 2 or 4 with width / heads a multiple of 8, not {heads}")
    hidden = width
    half = hidden // heads // 2
    if rope == "spatial":
        mrope, theta = [0, half // 2, half - half // 2], 10000.0
    elif rope == "grid":
        mrope, theta = [0, half // 2, half - half // 2], GRID_ROPE_THETA
    else:
        mrope, theta = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8], 1000000.0
    text = dict(
        vocab_size=VOCAB_SIZE, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads // 2, max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        bos_token_id=151643, eos_token_id=151645, pad_token_id=151643, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "mrope_section": mrope, "rope_theta": theta},
        use_sliding_window=False, max_window_layers=layers,
    )
    vision = dict(
        depth=2, hidden_size=hidden, intermediate_size=2 * hidden, num_heads=2, in_channels=3, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2, window_size=112, out_hidden_size=hidden,
        fullatt_block_indexes=[1], tokens_per_second=2,
    )
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=151655,
                              video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
                              tie_word_embeddings=True)
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    return config


def _generation_config():
    from transformers import GenerationConfig

    # Greedy, as the real checkpoint's top_k 1 is, but said directly: its sampling warpers sort all 151,936
    # logits at every step, which dominates a tiny model's generation time on CPU. No repetition penalty: a JSON
    # answer repeats its punctuation tokens by design. A short default budget for a model that babbles.
    return GenerationConfig(bos_token_id=151643, pad_token_id=151643, eos_token_id=[151645, 151643],
                            do_sample=False, max_new_tokens=64)


REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                  "generation_config.json", TINY_MARKER)


def is_complete(model_dir: str | os.PathLike) -> bool:
    """A finished build: every file present, including the processor's (one file in transformers 5, older
    versions write preprocessor_config.json)."""
    model_dir = Path(model_dir)
    return all((model_dir / name).is_file() for name in REQUIRED_FILES) and any(
        (model_dir / name).is_file() for name in ("processor_config.json", "preprocessor_config.json"))


def _built_as(model_dir: Path) -> dict | None:
    try:
        return json.loads((model_dir / TINY_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _same_build(model_dir: Path, seed: int, width: int, layers: int, embed_std: float, heads: int,
                rope: str, whole_values: bool = False) -> bool:
    marker = _built_as(model_dir) or {}
    return is_complete(model_dir) and (
        marker.get("seed"), marker.get("width", DEFAULT_WIDTH), marker.get("layers", DEFAULT_LAYERS),
        marker.get("embed_std", EMBED_STD), marker.get("heads", 2), marker.get("rope", "qwen"),
        marker.get("whole_values", False)
    ) == (seed, width, layers, embed_std, heads, rope, whole_values)


def build_tiny_model(out_dir: str | os.PathLike, *, seed: int = 0, overwrite: bool = False,
                     width: int = DEFAULT_WIDTH, layers: int = DEFAULT_LAYERS, embed_std: float = EMBED_STD,
                     heads: int = 2, rope: str = "qwen", whole_values: bool = False) -> Path:
    """Write the tiny model to ``out_dir`` and return it. Reuses a complete build of the same seed and size
    unless ``overwrite`` (a tiny model of another size is replaced); refuses to write into a non-empty folder
    that is not one.

    The embedding rows of the unreachable placeholder ids are zero: tied to the output, random rows there would
    start the model above the loss of a uniform guess, and a tiny model would spend its first steps pushing
    ~150k logits down one by one; zero rows move together, as one."""
    out_dir = Path(out_dir).expanduser().resolve()
    if _same_build(out_dir, seed, width, layers, embed_std, heads, rope, whole_values) and not overwrite:
        return out_dir
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not is_complete(out_dir):
        raise UserError(f"{out_dir} exists and is not a tiny model; choose an empty or new folder")

    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        torch.manual_seed(seed)
        tokenizer = build_tokenizer(whole_values)
        processor = build_processor(tokenizer)
        config = build_config(width, layers, rope, heads)
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
        reachable = min(i for t, i in tokenizer.get_vocab().items() if t.startswith(PLACEHOLDER_PREFIX))
        with torch.no_grad():
            embedding = model.get_input_embeddings().weight
            embedding.normal_(0.0, embed_std)
            embedding[reachable:FIRST_SPECIAL_ID] = 0.0
        model.generation_config = _generation_config()
        model.save_pretrained(staging, safe_serialization=True)
        processor.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        marker = {"kind": "plates tiny Qwen2.5-VL", "seed": seed, "width": width, "layers": layers,
                  "embed_std": embed_std, "heads": heads, "rope": rope, "whole_values": whole_values,
                  "template": "qwen2_5_vl",
                  "model_type": "qwen2_5_vl", "parameters": sum(p.numel() for p in model.parameters())}
        (staging / TINY_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        staging.chmod(0o755)
        if _same_build(out_dir, seed, width, layers, embed_std, heads, rope, whole_values) and not overwrite:
            return out_dir  # another process finished the same build first
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", help="folder to write the model into (created; reused if complete)",
                        type=output_dir(convert=Path))
    parser.add_argument("--seed", type=int, default=0, help="weight initialisation seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="rebuild even if DIR already holds a tiny model")
    parser.add_argument("--size", choices=sorted(SIZES), default="test",
                        help="test: 32 wide, for the plumbing tests in seconds (default); demo: 64 wide, 4 heads, "
                             "small initial embeddings and rotary positions that tell image rows apart, which a full "
                             "fine-tune teaches the answer format and to read the drawings in minutes; long: the demo "
                             "size with rotary positions for image columns too and label values as whole tokens, "
                             "for `plates demo --long`, which reads plates")


def _run(args: argparse.Namespace) -> int:
    """Build a tiny random-weight Qwen2.5-VL (tokenizer, processor, model) that real ms-swift accepts for
    sft, infer and deploy, without any download. Use it with `--model DIR --template qwen2_5_vl`.
    It reads nothing: it proves the pipeline's plumbing on CPU in seconds."""
    check_output_dir(args.dir, "DIR", contents=False)
    path = build_tiny_model(args.dir, seed=args.seed, overwrite=args.overwrite, **SIZES[args.size])
    print(path)
    return 0


COMMANDS = {"tiny-model": (_configure, _run, "build a tiny random Qwen2.5-VL for tests and the demo (no download)")}
