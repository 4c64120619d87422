"""Teacher prompts as versioned data, and the request one (record, mode) becomes.

:class:`Prompts` is ``prompts/v1/prompts.yaml`` (the describe / caption / fuse / reason prompts and the caption
question pool, in Chinese like the seed) and ``template.yaml`` (phrase pools of the offline template writer).
A folder given with ``--prompts`` overrides them. Each mode's prompt text is hashed into the resume key, so an
edited prompt is never mistaken for finished work.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from plates import resources
from plates.errors import UserError
from plates.labels import (
    PLATE_FIELDS, PLATE_GROUP, PLATE_NUMBER, UNKNOWN, VEHICLE_FIELDS, VEHICLE_GROUP, answer_from_labels,
)

MODES = ("describe", "caption", "fuse", "reason")
IMAGE_MODES = ("describe", "caption", "reason")


def default_prompts_dir() -> Path:
    return resources.prompts_dir("v1")


def digest(obj: Any, length: int = 16) -> str:
    data = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:length]


@dataclass(frozen=True)
class Prompts:
    """The prompt set of one version, loaded from a prompts folder."""

    version: str
    system: str
    modes: dict[str, dict[str, Any]]
    questions: tuple[str, ...]
    max_chars: dict[str, int]
    template: dict[str, Any]
    source: Path

    def digest(self, mode: str) -> str:
        """Fingerprint of everything that shapes a ``mode`` request (part of the resume key)."""
        uses_pool = mode in ("describe", "caption")
        return digest([self.version, self.system, self.modes[mode], self.max_chars.get(mode),
                       list(self.questions) if uses_pool else None])

    def question_for(self, mode: str, seed: str) -> str | None:
        """The question a ``mode`` output answers in training: drawn from the pool, fixed per image."""
        if mode == "reason":
            return None
        pool = self.questions
        return pool[int(hashlib.sha256(f"{mode}:{seed}".encode()).hexdigest(), 16) % len(pool)]


def load_prompts(directory: str | Path | None = None) -> Prompts:
    """Read ``prompts.yaml`` and ``template.yaml`` from a prompts folder; a malformed one is a user error."""
    folder = Path(directory) if directory else default_prompts_dir()
    prompts_file = folder / "prompts.yaml"
    template_file = folder / "template.yaml"
    for path in (prompts_file, template_file):
        if not path.is_file():
            raise UserError(f"{path}: no such file (a prompts folder holds prompts.yaml and template.yaml)")
    try:
        data = yaml.safe_load(prompts_file.read_text(encoding="utf-8")) or {}
        template = yaml.safe_load(template_file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{folder}: not valid YAML ({exc})") from None
    problems = [f"'{m}.prompt'" for m in MODES if not isinstance((data.get(m) or {}).get("prompt"), str)]
    questions = (data.get("caption") or {}).get("questions") or []
    if not questions or not all(isinstance(q, str) and q.strip() for q in questions):
        problems.append("'caption.questions' (a list of questions)")
    if not data.get("version"):
        problems.append("'version'")
    if not isinstance(template.get("model"), str):
        problems.append(f"{template_file.name}: 'model'")
    if problems:
        raise UserError(f"{prompts_file}: missing or invalid {', '.join(problems)}")
    return Prompts(
        version=str(data["version"]),
        system=str(data.get("system") or ""),
        modes={m: dict(data[m]) for m in MODES},
        questions=tuple(q.strip() for q in questions),
        max_chars={str(k): int(v) for k, v in (data.get("max_chars") or {}).items()},
        template=template,
        source=folder,
    )


def render(template: str, values: dict[str, Any]) -> str:
    """Fill ``{name}`` placeholders that ``values`` knows; other braces (JSON examples) stay as they are."""
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template)


def labels_lines(labels: dict[str, Any]) -> str:
    """The labels as short lines for a prompt: '车辆属性:车辆品牌=东风,…' and one line per plate."""
    vehicle = labels.get(VEHICLE_GROUP) or {}
    lines = [f"{VEHICLE_GROUP}:" + ",".join(f"{f}={vehicle.get(f, UNKNOWN)}" for f in VEHICLE_FIELDS)]
    plates = labels.get(PLATE_GROUP) or []
    if not plates:
        lines.append(f"{PLATE_GROUP}:无(图中没有可见车牌)")
    for index, plate in enumerate(plates, 1):
        name = PLATE_GROUP if len(plates) == 1 else f"{PLATE_GROUP}(第{index}块)"
        lines.append(f"{name}:" + ",".join(f"{f}={plate.get(f, UNKNOWN)}" for f in PLATE_FIELDS))
    return "\n".join(lines)


def plate_numbers(labels: dict[str, Any]) -> str:
    numbers = [p.get(PLATE_NUMBER, UNKNOWN) for p in labels.get(PLATE_GROUP) or []]
    numbers = [n for n in numbers if n and n != UNKNOWN]
    return "、".join(numbers) if numbers else "无"


@dataclass
class Request:
    """One teacher call: the rendered prompt plus what a label-only writer needs."""

    key: str
    mode: str
    labels: dict[str, Any]
    question: str | None
    system: str
    prompt: str
    image: bytes | None = None
    inputs: dict[str, str] = field(default_factory=dict)


def build_request(prompts: Prompts, mode: str, key: str, labels: dict[str, Any], *, question: str | None,
                  image: bytes | None = None, inputs: dict[str, str] | None = None) -> Request:
    inputs = inputs or {}
    values = {
        "labels": labels_lines(labels),
        "answer": json.dumps(answer_from_labels(labels), ensure_ascii=False),
        "plate_numbers": plate_numbers(labels),
        "question": question or "",
        "max_chars": prompts.max_chars.get(mode, 300),
        "describe": inputs.get("describe", ""),
        "caption": inputs.get("caption", ""),
    }
    return Request(key=key, mode=mode, labels=labels, question=question, system=prompts.system,
                   prompt=render(prompts.modes[mode]["prompt"], values), image=image if mode in IMAGE_MODES else None,
                   inputs=inputs)
