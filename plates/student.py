"""The student contract: what the tuned model is asked and how its answer is written, in one place.

Why one module: the question a model was trained with is the question it must be asked. `plates build` writes
samples with it, `plates train` records it in the run manifest, and `plates infer`, `predict`, `serve` and
`export` ask with the run's own question (:func:`for_run`), so a model trained with an older or a user's own
prompt (`plates build --prompt/--system`) is never silently asked with the constant in code.

* :data:`IMAGE_TAG`, :data:`EXTRACTION_PROMPT`, :data:`GROUNDING_PROMPT`, :data:`REASON_PROMPT`: the defaults.
* :func:`answer_text` (the JSON answer line), :func:`cot_target` / :func:`split_reasoning` (reasoning, a blank
  line, then the JSON answer), :func:`make_sample` (one ms-swift sample).
* :class:`StudentContract`: the prompt and system text one dataset or run uses; stats.json's ``prompts`` /
  ``system`` and the manifest's ``student`` block are its two written forms.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from plates.contracts import DatasetLayout
from plates.errors import UserError
from plates.labels import (
    PLATE_BOX, PLATE_FIELDS, PLATE_GROUP, UNKNOWN, VEHICLE_FIELDS, VEHICLE_GROUP, answer_from_labels,
)
from plates.runs import read_manifest

IMAGE_TAG = "<image>"


def answer_skeleton(grounding: bool = False) -> str:
    """The answer's shape as the prompts spell it out (fields from the field table)."""
    vehicle = ", ".join(f'"{f}": "…"' for f in VEHICLE_FIELDS)
    plate = ", ".join(f'"{f}": "…"' for f in PLATE_FIELDS)
    if grounding:
        plate += f', "{PLATE_BOX}": [x1, y1, x2, y2]'
    return f'{{"{VEHICLE_GROUP}": {{{vehicle}}}, "{PLATE_GROUP}": {{{plate}}}}}'


RULES = (f"无法确定的属性填“{UNKNOWN}”;图中没有车牌时{PLATE_GROUP}为[],"
         f"有多块车牌时{PLATE_GROUP}为由这些对象组成的列表。")

EXTRACTION_PROMPT = (f"请识别图片中车辆和车牌的属性,只输出一个JSON对象,格式为:{answer_skeleton()}。" + RULES)
GROUNDING_PROMPT = (f"请识别图片中车辆和车牌的属性,并给出每块车牌在图中的位置,只输出一个JSON对象,格式为:"
                    f"{answer_skeleton(grounding=True)}。" + RULES + f"{PLATE_BOX}为车牌的左上角和右下角坐标。")
REASON_PROMPT = (f"请识别图片中车辆和车牌的属性。先用一段话说明判断依据,然后空一行,"
                 f"在最后一行输出一个JSON对象,格式为:{answer_skeleton()}。" + RULES)


def answer_text(labels: dict[str, Any]) -> str:
    """The assistant text of the extraction task: the canonical answer as one line of JSON."""
    return json.dumps(answer_from_labels(labels), ensure_ascii=False)


def cot_target(reasoning: str, answer: str) -> str:
    """Chain-of-thought target: the reasoning paragraph(s), one blank line, then the JSON answer line."""
    reasoning = reasoning.strip()
    return f"{reasoning}\n\n{answer}" if reasoning else answer


def split_reasoning(text: str) -> tuple[str, str]:
    """Inverse of ``cot_target``: ``(reasoning, answer_text)``; text without a blank line is all answer."""
    head, sep, tail = text.strip().rpartition("\n\n")
    return (head.strip(), tail.strip()) if sep else ("", text.strip())


def user_messages(prompt: str, system: str | None = None) -> list[dict[str, Any]]:
    """The turns before the answer: the system text (when there is one), then the image and the question."""
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": IMAGE_TAG + prompt}]


def make_sample(prompt: str, response: str, image: str, system: str | None = None) -> dict[str, Any]:
    """One ms-swift custom-format sample with a single image placed before the prompt."""
    return {"messages": [*user_messages(prompt, system), {"role": "assistant", "content": response}],
            "images": [image]}


def check_text(text: str, flag: str) -> str:
    """A user's prompt or system text: stripped, not empty, without the image tag (plates places the image)."""
    stripped = text.strip()
    if not stripped:
        raise UserError(f"{flag}: empty text")
    if IMAGE_TAG in stripped:
        raise UserError(f"{flag}: leave out {IMAGE_TAG}; plates puts the image before the question")
    return stripped


@dataclass(frozen=True)
class StudentContract:
    """The extraction question one dataset or run uses (``prompt``; the grounding question when ``grounding``),
    its system text (None: the chat template's default) and the chain-of-thought question when it had one.
    ``source`` says where it was read (a manifest or stats.json path, or ``default``)."""

    prompt: str = EXTRACTION_PROMPT
    system: str | None = None
    grounding: bool = False
    reason_prompt: str | None = None
    source: str = "default"

    @property
    def recorded(self) -> bool:
        """Whether it was read from a run or dataset (not the defaults in code)."""
        return self.source != "default"

    def question(self, grounding: bool | None = None) -> str:
        """The question to ask: the trained one for the trained task; asked for the other task (predict
        ``--grounding on|off`` against the run), that task's default question."""
        grounding = self.grounding if grounding is None else grounding
        if grounding == self.grounding:
            return self.prompt
        return GROUNDING_PROMPT if grounding else EXTRACTION_PROMPT

    def messages(self, grounding: bool | None = None) -> list[dict[str, Any]]:
        return user_messages(self.question(grounding), self.system)

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``student`` block."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str) -> StudentContract | None:
        if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
            return None
        system, reason = data.get("system"), data.get("reason_prompt")
        return cls(prompt=data["prompt"], system=system if isinstance(system, str) and system else None,
                   grounding=bool(data.get("grounding")), reason_prompt=reason if isinstance(reason, str) else None,
                   source=source)

    @classmethod
    def from_stats(cls, data: Any, source: str) -> StudentContract | None:
        """From a `plates build` stats.json: ``prompts.extract`` (in a grounding build, older files kept the
        question in ``grounding.prompt``), ``prompts.reason``, ``system``; None for a file without prompts."""
        prompts = data.get("prompts") if isinstance(data, dict) else None
        if not isinstance(prompts, dict):
            return None
        block = data.get("grounding")
        grounding = isinstance(block, dict) and bool(block.get("on"))
        prompt = block.get("prompt") if grounding else prompts.get("extract")
        if not isinstance(prompt, str):
            return None
        return cls.from_json({"prompt": prompt, "system": data.get("system"), "grounding": grounding,
                              "reason_prompt": prompts.get("reason")}, source)


def for_dataset(folder: str | os.PathLike) -> StudentContract | None:
    """The contract a `plates build` folder was written with (its stats.json), None without one."""
    stats = DatasetLayout.of(folder).stats
    try:
        data = json.loads(stats.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return StudentContract.from_stats(data, str(stats))


def for_run(source: str | os.PathLike | None, notes: list[str] | None = None) -> StudentContract:
    """The contract a checkpoint, run folder or merged model (its copied manifest) was trained with: the
    manifest's ``student`` block, or for a run trained before plates recorded it, its dataset's stats.json.
    Without either (a hub id, a model plates did not train), the defaults, and a note saying so."""
    manifest = read_manifest(source) if source else None
    if manifest is not None:
        found = StudentContract.from_json(manifest.data.get("student"), str(manifest.path))
        for entry in manifest.data.get("dataset_files") or [] if found is None else []:
            path = entry.get("path") if isinstance(entry, dict) else None
            if found is None and isinstance(path, str):
                found = for_dataset(Path(path).parent)
        if found is not None:
            return found
    if notes is not None:
        notes.append(f"{source or 'the model'} has no plates run manifest naming the prompt it was trained with; "
                     "using plates' default prompt")
    return StudentContract()
