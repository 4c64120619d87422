"""Typed contracts between stages: the files one stage writes and later stages read, each read through here
rather than through the writer's private helpers or bare JSON keys.

* :class:`DatasetLayout` / :class:`DatasetStats` — the folder `plates build` writes (``train.jsonl``,
  ``val.jsonl``, ``val_records.jsonl``, ``stats.json``); read by train, infer and the demo.
* :class:`TeacherLine` — one line of `plates teach` output; read by build (descriptions) and fuse.
* :data:`TINY_MARKER` / :data:`PLACEHOLDER_PREFIX` — what `plates tiny-model` leaves in the model it builds; read
  by infer, serve and export (the template) and by the placeholder loss (the unreachable ids).
* The run folder `plates train` writes is :mod:`plates.runs` (:class:`plates.runs.RunManifest`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from plates.errors import UserError

# Every file a `plates build` folder may hold: build owns (replaces, removes) exactly these.
DATASET_FILES = ("train.jsonl", "val.jsonl", "val_records.jsonl", "stats.json",
                 "train_sharegpt.json", "val_sharegpt.json", "dataset_info.json")
TINY_MARKER = ".plates-tiny-model.json"
PLACEHOLDER_PREFIX = "<|placeholder_"  # the tiny model's unreachable ids' tokens: <|placeholder_N|>


@dataclass(frozen=True)
class DatasetStats:
    """What later stages read from ``stats.json`` (the whole object is kept in ``data``)."""

    image_root: str | None  # relative image paths resolve against it (ms-swift: ROOT_IMAGE_DIR); None: absolute
    label_version: Any = None
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DatasetStats:
        paths = data.get("image_paths")
        root = paths.get("relative_to") if isinstance(paths, dict) else None
        vocabularies = data.get("labels") or {}
        version = vocabularies.get("fields.yaml", {}).get("version") if isinstance(vocabularies, dict) else None
        return cls(image_root=root if isinstance(root, str) else None, label_version=version, data=data)


@dataclass(frozen=True)
class DatasetLayout:
    """The files of a `plates build` output folder."""

    folder: Path
    train: Path
    val: Path
    val_records: Path
    stats: Path

    @classmethod
    def of(cls, folder: str | os.PathLike) -> DatasetLayout:
        folder = Path(folder)
        return cls(folder=folder, train=folder / "train.jsonl", val=folder / "val.jsonl",
                   val_records=folder / "val_records.jsonl", stats=folder / "stats.json")

    def files(self) -> dict[str, Path]:
        """Name -> path of every file the layout names (build writes them as one set)."""
        return {"train": self.train, "val": self.val, "val_records": self.val_records, "stats": self.stats}

    def read_stats(self) -> DatasetStats | None:
        """``stats.json``, or None when it is missing or unreadable (a hand-made dataset has none)."""
        try:
            data = json.loads(self.stats.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return DatasetStats.from_json(data) if isinstance(data, dict) else None


def dataset_image_root(folder: str | os.PathLike) -> str | None:
    """The root a `plates build` dataset's relative image paths resolve against (its stats.json says), or None
    for absolute paths. ms-swift resolves relative paths against ROOT_IMAGE_DIR or the working directory."""
    stats = DatasetLayout.of(folder).read_stats()
    return stats.image_root if stats else None


def dataset_file(dataset: str | os.PathLike) -> Path:
    path = Path(dataset).expanduser().resolve()
    if path.is_dir():
        path = path / "val.jsonl"
    if not path.is_file():
        raise UserError(f"{path}: no such dataset file (pass a JSONL or a `plates build` folder with val.jsonl)")
    return path


def dataset_grounding_env(folder: str | os.PathLike) -> dict[str, str]:
    """The environment a `plates build --grounding` dataset needs in ms-swift (its stats.json's ``grounding.env``:
    ``QWENVL_BBOX_FORMAT=new``, boxes as JSON lists); {} for other datasets."""
    stats = DatasetLayout.of(folder).read_stats()
    block = stats.data.get("grounding") if stats else None
    env = block.get("env") if isinstance(block, dict) else None
    return {str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {}


@dataclass
class TeacherLine:
    """One `plates teach` output line (one record and mode). ``key`` is the resume key; ``verdict`` is ``ok`` or
    ``flagged`` (with ``reasons``); ``inputs`` (fuse only) names the describe and caption lines merged."""

    key: str
    image: str
    mode: str
    question: str | None
    text: str
    verdict: str
    reasons: list[str]
    backend: str
    model: str
    prompt_version: str
    usage: dict[str, int] | None = None
    image_sha256: str | None = None
    inputs: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to the output file (``inputs`` only for fuse lines)."""
        data = asdict(self)
        if data["inputs"] is None:
            del data["inputs"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TeacherLine:
        """A line read back; a line missing a required key raises KeyError (callers count it as malformed)."""
        return cls(key=data["key"], image=data["image"], mode=data["mode"], question=data.get("question"),
                   text=data["text"], verdict=data.get("verdict", "ok"), reasons=list(data.get("reasons") or []),
                   backend=data.get("backend", ""), model=data.get("model", ""),
                   prompt_version=str(data.get("prompt_version", "")), usage=data.get("usage"),
                   image_sha256=data.get("image_sha256"), inputs=data.get("inputs"))
