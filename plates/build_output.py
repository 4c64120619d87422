"""The files `plates build` writes, written as samples arrive: JSONL per split, LLaMA-Factory's sharegpt arrays,
the label tallies of stats.json, and the small helpers around them (dataset_info.json, label versions, sources).

Samples are never gathered in memory on the way to disk: :class:`FileSink` appends each one to its split's
files, :class:`ListSink` keeps them for callers that want a :class:`Dataset` in memory (tests, small tools).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TextIO

from plates.errors import UserError
from plates.io import dump_json_line, sha256_file
from plates.labels import (
    FIELDS, PLATE_FIELDS, PLATE_GROUP, PLATE_NUMBER, VEHICLE_FIELDS, VEHICLE_GROUP, answer_from_labels, labels_dir,
)
from plates.records import WARNING_CODES

def to_sharegpt(sample: dict[str, Any]) -> dict[str, Any]:
    """The same sample in LLaMA-Factory's sharegpt layout (``conversations`` with from/value)."""
    roles = {"user": "human", "assistant": "gpt", "system": "system"}
    return {"conversations": [{"from": roles[m["role"]], "value": m["content"]} for m in sample["messages"]],
            "images": list(sample["images"])}


def sharegpt_dataset_info(name: str, files: dict[str, str]) -> dict[str, Any]:
    """``dataset_info.json`` entries for LLaMA-Factory, one per split file (``{name}_train``, ``{name}_val``)."""
    return {f"{name}_{split}": {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "images": "images"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
    } for split, file_name in files.items()}



def labels_version() -> dict[str, Any]:
    """Vocabulary versions and file hashes, so a dataset can be tied to the labels it was built with."""
    import yaml

    out: dict[str, Any] = {}
    for name in ("fields.yaml", "plates.yaml"):
        path = labels_dir() / name
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out[name] = {"version": data.get("version"), "sha256": sha256_file(path)}
    return out


file_sha256 = sha256_file  # the name build used before plates.io had the one helper


def earlier_sources(out: Path) -> list[Path]:
    """The inputs an earlier build into ``out`` recorded in its stats.json: files that may stay in the folder
    (a re-run without --descriptions must not call the teacher file it once read someone else's)."""
    try:
        sources = json.loads((out / "stats.json").read_text(encoding="utf-8")).get("sources") or {}
        paths = [sources.get("records", {}).get("path")] + [d.get("path") for d in sources.get("descriptions", [])]
    except (OSError, ValueError, AttributeError, TypeError):
        return []
    return [Path(p) for p in paths if isinstance(p, str)]


def check_warning_codes(codes: Iterable[str], records: Iterable[dict[str, Any]]) -> None:
    """``--exclude-warning CODE`` with a code that no record can carry would silently exclude nothing: an
    error naming the known codes (those `plates parse` writes, plus any found in these records)."""
    codes = set(codes)
    if not codes - set(WARNING_CODES):
        return
    known = set(WARNING_CODES)
    for record in records:
        known.update(str(w).split(":", 1)[0].strip() for w in record.get("warnings") or [])
    unknown = sorted(codes - known)
    if unknown:
        raise UserError(f"--exclude-warning {', '.join(unknown)}: no such warning code; "
                        f"known codes: {', '.join(sorted(known))}")


def merged_dataset_info(existing: Path, ours: dict[str, Any]) -> dict[str, Any] | None:
    """LLaMA-Factory's ``dataset_info.json`` is shared by every dataset in its folder: keep each entry that is
    not ours (ours point at our sharegpt files), then add ``ours``. None when nothing is left to write.
    A file that is not a JSON object is someone else's and is refused rather than replaced."""
    entries: dict[str, Any] = {}
    if existing.is_file():
        try:
            entries = json.loads(existing.read_text(encoding="utf-8-sig"))
        except (ValueError, UnicodeDecodeError):
            raise UserError(f"{existing}: not a JSON file; LLaMA-Factory's dataset_info.json is merged, "
                            "not replaced: fix or move it") from None
        if not isinstance(entries, dict):
            raise UserError(f"{existing}: not a JSON object (is this LLaMA-Factory's dataset_info.json?)")
    mine = {"train_sharegpt.json", "val_sharegpt.json"}
    kept = {k: v for k, v in entries.items() if not (isinstance(v, dict) and v.get("file_name") in mine)}
    kept.update(ours)
    return kept or None






class LabelTally:
    """The label distribution of one split (stats.json ``labels``), counted one record at a time."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter] = {f: Counter() for f in FIELDS}
        self.plates_per_image: Counter = Counter()

    def add(self, record: dict[str, Any]) -> None:
        answer = answer_from_labels(record["labels"])
        for f in VEHICLE_FIELDS:
            self.counts[f][answer[VEHICLE_GROUP][f]] += 1
        self.plates_per_image[str(len(record["labels"].get(PLATE_GROUP) or []))] += 1
        plates = answer[PLATE_GROUP]
        for plate in (plates if isinstance(plates, list) else [plates]):
            for f in PLATE_FIELDS:
                if f != PLATE_NUMBER:
                    self.counts[f][plate[f]] += 1

    def result(self) -> dict[str, dict[str, int]]:
        out = {f: dict(c.most_common()) for f, c in self.counts.items() if f != PLATE_NUMBER}
        out["plates_per_image"] = dict(sorted(self.plates_per_image.items()))
        return out


@dataclass
class Dataset:
    train: list[dict[str, Any]]
    val: list[dict[str, Any]]
    val_records: list[dict[str, Any]]
    stats: dict[str, Any]


@dataclass
class ListSink:
    """Keeps the samples in lists (``plates.build.build_dataset``)."""
    train: list[dict[str, Any]] = field(default_factory=list)
    val: list[dict[str, Any]] = field(default_factory=list)
    val_records: list[dict[str, Any]] = field(default_factory=list)

    def add(self, side: str, samples: list[dict[str, Any]], record: dict[str, Any]) -> None:
        if side == "val":
            self.val.extend(samples)
            self.val_records.extend([record] * len(samples))
        else:
            self.train.extend(samples)


class JsonArrayWriter:
    """Writes a JSON array element by element, byte for byte as ``json.dump(rows, indent=1)`` plus a newline."""

    def __init__(self, handle: TextIO) -> None:
        self.handle = handle
        self.count = 0

    def add(self, row: Any) -> None:
        text = json.dumps(row, ensure_ascii=False, indent=1)
        self.handle.write(("[\n" if self.count == 0 else ",\n") + "\n".join(" " + line for line in text.split("\n")))
        self.count += 1

    def close(self) -> None:
        self.handle.write("\n]\n" if self.count else "[]\n")


class FileSink:
    """Appends each sample to train.jsonl / val.jsonl (and val_records.jsonl, the sharegpt arrays) in
    ``folder`` (a `plates.io.replace_file_set` staging folder) as it comes; use as a context manager."""

    def __init__(self, folder: Path, sharegpt_names: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.sharegpt_names = sharegpt_names or {}
        self.handles: list[TextIO] = []

    def _open(self, name: str) -> TextIO:
        handle = (self.folder / name).open("w", encoding="utf-8")
        self.handles.append(handle)
        return handle

    def __enter__(self) -> FileSink:
        self.jsonl = {"train": self._open("train.jsonl"), "val": self._open("val.jsonl")}
        self.val_records = self._open("val_records.jsonl")
        self.arrays = {side: JsonArrayWriter(self._open(name)) for side, name in self.sharegpt_names.items()}
        return self

    def add(self, side: str, samples: list[dict[str, Any]], record: dict[str, Any]) -> None:
        handle = self.jsonl[side]
        for sample in samples:
            handle.write(dump_json_line(sample))
            if side == "val":
                self.val_records.write(dump_json_line(record))
            if side in self.arrays:
                self.arrays[side].add(to_sharegpt(sample))

    def __exit__(self, kind: Any, *_: Any) -> None:
        try:
            if kind is None:
                for writer in self.arrays.values():
                    writer.close()
        finally:
            for handle in self.handles:
                handle.close()
