"""Plate boxes between original-image pixels and the numbers a Qwen VL model reads and writes (grounding).

Answers and records keep boxes in original-image pixels (``车牌位置``: ``[x1, y1, x2, y2]``). A Qwen VL model was
pretrained on another convention, which ms-swift names ``norm_bbox`` on each template class:

* ``none`` (Qwen2.5-VL): absolute pixels of the image the model saw. ms-swift first shrinks an image larger than
  ``max_pixels`` (``swift.template.vision_utils.rescale_image``), then ``qwen_vl_utils.fetch_image`` resizes it to
  ``smart_resize``'s size (sides multiples of patch size × merge size, 28, at most ``MAX_PIXELS // 28² × 28²``
  pixels), so that image is neither the file's size nor ``max_pixels``' (ms-swift issues #3729, #4027).
* ``norm1000`` (Qwen2-VL, Qwen3-VL): 0–1000 of the image's width and height.

Training (`plates build --grounding`) writes ms-swift's ``<bbox>`` tag where the box goes in the JSON answer and
the box itself, in original pixels, in the sample's ``objects`` (``bbox_type: real``); ms-swift's template then
writes it in the model's convention (``Template.normalize_bbox``) and, with ``QWENVL_BBOX_FORMAT=new``, as a
plain JSON list. Inference (`plates infer`, `plates predict`) maps the model's numbers back with
:func:`to_original`; :func:`model_image_size` computes the image the model saw with ms-swift's and qwen_vl_utils'
own code (``rescale_image`` on a blank image of the file's size, then ``smart_resize``), assuming what plates
always passes: ms-swift's ``max_pixels`` option and the ``MAX_PIXELS`` variable set to the same number.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, Iterable

from plates.contracts import dataset_grounding_env
from plates.labels import PLATE_BOX, plates_of_answer

BBOX_TAG = "<bbox>"
CONVENTIONS = ("none", "norm1000")  # ms-swift's norm_bbox values
BBOX_FORMAT_ENV = {"QWENVL_BBOX_FORMAT": "new"}  # boxes as JSON lists '[x1, y1, x2, y2]', not <|box_start|>…
DEFAULT_FACTOR = 28  # Qwen2.5-VL: patch 14 × merge 2


# ---- which convention ---------------------------------------------------------------------------------------------

def template_convention(template: str) -> str:
    """ms-swift's ``norm_bbox`` of a template type (``qwen2_5_vl`` -> ``none``, ``qwen2_vl`` -> ``norm1000``)."""
    from swift.template import TEMPLATE_MAPPING

    meta = TEMPLATE_MAPPING.get(template)
    if meta is None:
        raise KeyError(template)
    return meta.template_cls.norm_bbox


def _model_type_template(model_type: str | None) -> str | None:
    from swift.model import MODEL_MAPPING

    meta = MODEL_MAPPING.get(model_type or "")
    if meta is None:
        return None
    return meta.template or (meta.candidate_templates or [None])[0]


def _json_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_template(template: str | None = None, adapters: Iterable[str] | str | None = None,
                     model: str | None = None) -> str | None:
    """The ms-swift template that answers: ``template`` when given, else the one a checkpoint's ``args.json``
    names, else the model folder's (``config.json``'s ``model_type`` through ms-swift's model registry), else what
    ms-swift matches to a hub id; None when none of these says."""
    if template:
        return template
    folders = [adapters] if isinstance(adapters, str) else list(adapters or [])
    for folder in folders:
        for candidate in (Path(folder), Path(folder).parent):
            args = _json_file(candidate / "args.json")
            if args.get("template"):
                return str(args["template"])
            if args.get("model_type"):
                return _model_type_template(args["model_type"])
            if args.get("model") and not model:
                model = str(args["model"])
    if model:
        folder = Path(model).expanduser()
        if folder.is_dir():
            return _model_type_template(_json_file(folder / "config.json").get("model_type"))
        from swift.model import get_matched_model_meta

        meta = get_matched_model_meta(model)
        if meta is not None:
            return meta.template or (meta.candidate_templates or [None])[0]
    return None


def image_factor(model: str | None) -> int:
    """Patch size × merge size of a local model's image processor (28 for Qwen2.5-VL; the default when unknown)."""
    if model and Path(model).expanduser().is_dir():
        for name in ("preprocessor_config.json", "processor_config.json"):
            data = _json_file(Path(model).expanduser() / name)
            data = data.get("image_processor", data)
            if data.get("patch_size") and data.get("merge_size"):
                return int(data["patch_size"]) * int(data["merge_size"])
    return DEFAULT_FACTOR


# ---- the image the model saw ---------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1024)
def _swift_rescaled(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) after ms-swift's ``rescale_image`` (the template's ``max_pixels``), run on a blank image."""
    from PIL import Image
    from swift.template.vision_utils import rescale_image

    if width * height <= max_pixels:
        return width, height
    return rescale_image(Image.new("L", (width, height)), max_pixels).size


def model_image_size(width: int, height: int, max_pixels: int | None = None,
                     factor: int = DEFAULT_FACTOR) -> tuple[int, int]:
    """(width, height) of the image a Qwen2.5-VL model sees for a ``width`` × ``height`` file, when ms-swift runs
    with ``max_pixels`` and ``MAX_PIXELS`` both set to ``max_pixels`` (None: neither, qwen_vl_utils' default)."""
    from qwen_vl_utils.vision_process import smart_resize

    cap = None
    if max_pixels:
        width, height = _swift_rescaled(int(width), int(height), int(max_pixels))
        cap = max(int(max_pixels) // factor ** 2, 1) * factor ** 2  # MAX_PIXELS -> IMAGE_MAX_TOKEN_NUM (ms-swift)
    resized_height, resized_width = smart_resize(int(height), int(width), factor=factor, max_pixels=cap)
    return resized_width, resized_height


def _scale(convention: str, width: int, height: int, max_pixels: int | None, factor: int) -> tuple[int, int]:
    if convention == "norm1000":
        return 1000, 1000
    if convention == "none":
        return model_image_size(width, height, max_pixels, factor)
    raise ValueError(f"unknown box convention {convention!r}; one of {', '.join(CONVENTIONS)}")


def to_model(box: Iterable[float], width: int, height: int, convention: str, max_pixels: int | None = None,
             factor: int = DEFAULT_FACTOR) -> list[int]:
    """An original-pixel box in the model's numbers, with ms-swift's own arithmetic (``normalize_bbox``)."""
    scale_w, scale_h = _scale(convention, width, height, max_pixels, factor)
    x1, y1, x2, y2 = box
    return [int(round(x1 / width * scale_w)), int(round(y1 / height * scale_h)),
            int(round(x2 / width * scale_w)), int(round(y2 / height * scale_h))]


def to_original(box: Iterable[float], width: int, height: int, convention: str, max_pixels: int | None = None,
                factor: int = DEFAULT_FACTOR) -> list[int]:
    """A box in the model's numbers back in original-image pixels (rounded, clipped to the image)."""
    scale_w, scale_h = _scale(convention, width, height, max_pixels, factor)
    x1, y1, x2, y2 = box

    def clip(value: float, limit: int) -> int:
        return min(max(int(round(value)), 0), limit)

    return [clip(x1 * width / scale_w, width), clip(y1 * height / scale_h, height),
            clip(x2 * width / scale_w, width), clip(y2 * height / scale_h, height)]


def is_box(value: Any) -> bool:
    """Whether ``value`` is four finite numbers (a box to map or keep; schema validity is checked elsewhere)."""
    return (type(value) is list and len(value) == 4
            and all(type(v) in (int, float) and v == v and abs(v) != float("inf") for v in value))


def answer_to_original(answer: Any, width: int, height: int, convention: str, max_pixels: int | None = None,
                       factor: int = DEFAULT_FACTOR) -> tuple[Any, int]:
    """(answer with every plate's well-formed ``车牌位置`` in original pixels, how many were mapped). Plates and
    boxes that are not well-formed are left as they are (``plates eval`` scores them as missed)."""
    mapped = 0
    if not isinstance(answer, dict) or PLATE_BOX is None:
        return answer, 0
    for plate in plates_of_answer(answer):
        if is_box(plate.get(PLATE_BOX)):
            plate[PLATE_BOX] = to_original(plate[PLATE_BOX], width, height, convention, max_pixels, factor)
            mapped += 1
    return answer, mapped


# ---- results files --------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4096)
def image_size(path: str) -> tuple[int, int] | None:
    """(width, height) of an image file as ms-swift loads it (PIL, no EXIF rotation); None if unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError):
        return None


def _image_path(row: dict[str, Any], root: str | None) -> str | None:
    images = row.get("images") or row.get("image")
    first = images[0] if isinstance(images, list) and images else images
    if isinstance(first, dict):
        first = first.get("path")
    if not isinstance(first, str) or not first:
        return None
    if not os.path.isabs(first) and root:
        first = os.path.join(root, first)
    return first


def fill_bbox_tags(text: str, boxes: list[Any]) -> str:
    """A training target with its ``<bbox>`` tags replaced, in order, by ``boxes`` as JSON lists (the reference
    answer in original pixels)."""
    parts = text.split(BBOX_TAG)
    if len(parts) - 1 != len(boxes):
        return text
    out = parts[0]
    for box, part in zip(boxes, parts[1:]):
        out += json.dumps([int(round(v)) for v in box]) + part
    return out


class BoxMapper:
    """Maps the boxes of one run's answers back to original pixels: ``convention`` (``none`` / ``norm1000``, None
    when unknown: boxes are left as answered), the ``max_pixels`` the answering ran with and the image ``factor``.
    :meth:`row` rewrites one results row: ``response`` with the mapped boxes (the model's text, when it changed, is
    kept in ``raw_response``), ``labels`` with ``<bbox>`` tags filled from the dataset sample's ``objects``."""

    def __init__(self, convention: str | None, max_pixels: int | None = None, factor: int = DEFAULT_FACTOR,
                 image_root: str | None = None):
        self.convention, self.max_pixels, self.factor, self.image_root = convention, max_pixels, factor, image_root
        self.mapped = self.answers = self.no_image = 0

    def settings(self) -> dict[str, Any]:
        """What `plates infer` / `predict` record about the mapping."""
        return {"box_convention": self.convention, "max_pixels": self.max_pixels, "image_factor": self.factor,
                "boxes": "original-image pixels" if self.convention else "as the model answered (unknown convention)"}

    def response(self, text: Any, image: str | None) -> tuple[Any, bool]:
        """(response with mapped boxes, whether it changed), for an answer about the image file ``image``."""
        if not self.may_map(text):
            return text, False
        return self.response_for_size(text, image_size(image) if image else None)

    def may_map(self, text: Any) -> bool:
        """Whether ``text`` could hold a box to map (cheap: no parsing, no image read)."""
        return isinstance(text, str) and PLATE_BOX is not None and PLATE_BOX in text and self.convention is not None

    def response_for_size(self, text: Any, size: tuple[int, int] | None) -> tuple[Any, bool]:
        """(response with mapped boxes, whether it changed), for an answer about an image of ``size`` (width,
        height) in original pixels; None: the image is unknown and the boxes stay as answered."""
        if not self.may_map(text):
            return text, False
        from plates.evaluation.extract import parse_response  # the scoring package: loaded only for boxes

        parsed = parse_response(text)
        if not isinstance(parsed.value, dict):
            return text, False
        if size is None:
            self.no_image += 1
            return text, False
        answer, mapped = answer_to_original(parsed.value, size[0], size[1], self.convention, self.max_pixels,
                                            self.factor)
        if not mapped:
            return text, False
        self.mapped += mapped
        self.answers += 1
        return json.dumps(answer, ensure_ascii=False), True

    def prediction(self, text: Any, image: str) -> dict[str, Any]:
        """`plates predict`'s extra keys for one answer: {} when nothing was mapped, else the mapped
        ``response`` to read the answer from, ``raw_response`` (the model's text) and ``box_mapping``."""
        response, changed = self.response(text, image)
        return {"response": response, "raw_response": text, "box_mapping": self.settings()} if changed else {}

    def row(self, row: dict[str, Any], sample: dict[str, Any] | None = None) -> dict[str, Any]:
        labels = row.get("labels")
        objects = (sample or {}).get("objects")  # the dataset's, in original pixels (ms-swift rescales its copy)
        if isinstance(labels, str) and BBOX_TAG in labels and isinstance(objects, dict):
            row["labels"] = fill_bbox_tags(labels, list(objects.get("bbox") or []))
        response, changed = self.response(row.get("response"), _image_path(row, self.image_root))
        if changed:
            row["raw_response"] = row["response"]
            row["response"] = response
            row["box_mapping"] = self.settings()
        return row


def _argv_value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg == flag:
            return argv[i + 1]
    return None


def mapper_for_command(argv: list[str], env: dict[str, str], adapters: Iterable[str] | str | None = None,
                       model: str | None = None) -> BoxMapper:
    """The :class:`BoxMapper` for answers of a `swift infer` command line that
    `plates.swift_infer.build_infer_command` built (``--template``, ``--model``, ``--adapters``, and ``MAX_PIXELS``,
    which plates sets with ``--max_pixels``): the one place infer and predict decide how boxes come back to original
    pixels."""
    template = _argv_value(argv, "--template")
    model = model or _argv_value(argv, "--model")
    adapters = adapters or _argv_value(argv, "--adapters")
    try:
        convention = template_convention(resolve_template(template, adapters, model) or "")
    except KeyError:
        convention = None
    max_pixels = env.get("MAX_PIXELS") or os.environ.get("MAX_PIXELS")
    return BoxMapper(convention, int(max_pixels) if max_pixels else None, image_factor(model),
                     image_root=env.get("ROOT_IMAGE_DIR") or os.environ.get("ROOT_IMAGE_DIR"))


def trained_with_grounding(adapters: str | None) -> bool:
    """Whether a checkpoint's run trained on a `plates build --grounding` dataset (its ``args.json`` names the
    dataset files; the folder's stats.json says)."""
    if not adapters:
        return False
    for folder in (Path(adapters), Path(adapters).parent):
        names = _json_file(folder / "args.json").get("dataset") or []
        for name in names if isinstance(names, list) else [names]:
            if isinstance(name, str) and Path(name).is_file() and dataset_grounding_env(Path(name).parent):
                return True
    return False
