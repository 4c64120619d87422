"""Reading what a model answered: one :class:`Item` per scorable line of a results file, joined to its reference
(the ``labels`` column, or `plates parse` records matched by image path)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, Iterator

from plates.errors import UserError
from plates.evaluation.compact import IntMap
from plates.evaluation.extract import json_loads, parse_response
from plates.evaluation.scorer import Reference, Scorer
from plates.io import check_input_file, progress
from plates.records import iter_records, plate_boxes, resolve_image, vehicle_id


@dataclass(slots=True)
class Item:
    """One scorable line (the per-sample type of an evaluation): where it came from, the raw response, the
    normalised reference and, when the records know it, the vehicle (``carNNNN``) it shows."""

    line: int
    image: str
    response: Any
    reference: Reference
    vehicle: str = ""
    logprobs: Any = None



@dataclass
class Source:
    """What was read: scorable items plus every skipped line ('line N: why'), unmatched records and how many
    scored lines declared each decoding mode (``None``: lines from before `plates infer` recorded it).
    ``duplicates`` counts lines that repeat an earlier sample (same image(s), prompt and reference: `swift infer
    --result_path` appends, so a second run into one file repeats every sample); each sample is scored once, on
    its first line, and ``duplicate_examples`` names the first few repeats ('line N repeats line M')."""

    items: list[Item] = dataclass_field(default_factory=list)
    skipped: list[str] = dataclass_field(default_factory=list)
    records_without_prediction: list[str] = dataclass_field(default_factory=list)
    decodings: Counter = dataclass_field(default_factory=Counter)
    duplicates: int = 0
    duplicate_examples: list[str] = dataclass_field(default_factory=list)

    def decoding(self) -> str:
        """The results' decoding mode: the one every line declares (``schema``/``free``), ``mixed`` when lines
        disagree, ``unknown`` when none declares it."""
        modes = {mode for mode in self.decodings if mode is not None}
        if not modes:
            return "unknown"
        if len(modes) > 1 or None in self.decodings:
            return "mixed"
        return str(next(iter(modes)))


def _image_of(row: dict[str, Any]) -> str:
    image = row.get("image")
    if image is None:
        images = row.get("images")
        if isinstance(images, list) and images:
            image = images[0]
    if isinstance(image, dict):
        image = image.get("path")
    return image if isinstance(image, str) else ""


def _frozen(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(map(_frozen, value))
    if isinstance(value, dict):
        return tuple((key, _frozen(item)) for key, item in value.items())
    return value


def _piece(value: Any) -> Any:
    """A message or image entry as its text (``{"role", "content"}`` -> content, ``{"bytes": None, "path"}`` ->
    path): the common shapes skip :func:`_frozen`, which costs three times as much per line."""
    if type(value) is dict and len(value) == 2:
        text = value.get("content", value.get("path"))
        if type(text) is str:
            return text
    return _frozen(value)


def _sample_key(row: dict[str, Any], image: Any, labels: Any) -> int | None:
    """A hash of what identifies a sample (image(s), prompt, reference), or None when it cannot be formed: a line
    naming no image is never a duplicate (many images share one reference). The prompt leaves out the trailing
    assistant message: ms-swift appends the model's answer to ``messages``. Only the hash is kept, so memory stays
    small on large files (a false match needs a 64-bit collision)."""
    if not image:
        return None
    prompt = row.get("messages")
    try:
        if type(prompt) is list:
            if prompt and type(prompt[-1]) is dict and prompt[-1].get("role") == "assistant":
                prompt = prompt[:-1]
            prompt = tuple(map(_piece, prompt))
        else:
            prompt = _frozen(row.get("query"))
        return hash((tuple(map(_piece, image)) if type(image) is list else _frozen(image), prompt,
                     labels if type(labels) is str else _frozen(labels)))
    except (TypeError, RecursionError):
        return None


def _reference_labels(labels: Any) -> Any:
    if isinstance(labels, str):
        try:
            return json_loads(labels)
        except (ValueError, RecursionError):
            pass
        parsed = parse_response(labels)
        if not parsed.ok:
            raise ValueError("'labels' is not a JSON answer")
        return parsed.value
    return labels


def read_results(path: str | Path, scorer: Scorer, records: str | Path | None = None) -> Source:
    """Read ``swift infer --result_path`` JSONL (``response`` + ``labels``), or, with ``records``, predictions
    (``image`` + ``response``) joined to `plates parse` records by image path. Malformed lines are skipped and
    listed with their line numbers, never fatal."""
    source = Source()
    source.items.extend(iter_items(path, scorer, records, source))
    return source


def iter_items(path: str | Path, scorer: Scorer, records: str | Path | None, source: Source) -> Iterator[Item]:
    """:func:`read_results` as a stream (scoring while reading keeps memory flat on large files); skipped lines
    and, at the end, records without prediction are recorded in ``source``."""
    index = _records_index(records, scorer) if records is not None else None
    seen: set[str] = set()
    first_line = IntMap()  # sample key -> first line, ~16 bytes per answer
    for number, row in _iter_rows(path, source.skipped):
        if type(row) is not dict:
            source.skipped.append(f"line {number}: not a JSON object")
            continue
        if "response" not in row:
            source.skipped.append(f"line {number}: no 'response'")
            continue
        image = _image_of(row)
        if index is not None:
            key = _lookup_image(index, image)
            if not image:
                source.skipped.append(f"line {number}: no 'image' to join with the records")
                continue
            if key is None:
                source.skipped.append(f"line {number}: image {image!r} is not in the records")
                continue
            sample = _sample_key(row, index[key][0], None)
            if sample is not None and _repeated(source, first_line, sample, number):
                continue
            seen.add(index[key][0])
            reference, vehicle = index[key][1], index[key][2]
        else:
            vehicle = ""
            if row.get("labels") is None:
                source.skipped.append(f"line {number}: no 'labels' (reference answer)")
                continue
            try:
                reference = scorer.reference(_reference_labels(row["labels"]))
            except ValueError as exc:
                source.skipped.append(f"line {number}: {exc}")
                continue
            sample = _sample_key(row, row["images"] if "images" in row else row.get("image"), row["labels"])
            if sample is not None and _repeated(source, first_line, sample, number):
                continue
        source.decodings[row.get("decoding")] += 1
        yield Item(number, image, row["response"], reference, vehicle, row.get("logprobs"))
    if index is not None:
        source.records_without_prediction = sorted({entry[0] for entry in index.values()} - seen)


def _repeated(source: Source, first_line: IntMap, sample: int, number: int) -> bool:
    """Whether ``sample`` was seen on an earlier line (then counted in ``source.duplicates``); else remember it."""
    earlier = first_line.setdefault(sample, number)
    if earlier is None:
        return False
    source.duplicates += 1
    if len(source.duplicate_examples) < 20:
        source.duplicate_examples.append(f"line {number} repeats line {earlier}")
    return True


def _iter_rows(path: str | Path, skipped: list[str]) -> Iterator[tuple[int, Any]]:
    """(line number, decoded line) for every non-blank line, read as editors and other tools write JSONL (a UTF-8
    byte-order mark on line 1, CRLF line ends). A line that is not UTF-8 (a GBK or UTF-16 file) or not JSON goes
    to ``skipped`` as 'line N: why', never mangled into a wrong answer. The same rules and messages as
    :func:`plates.io.iter_jsonl`, plus a progress bar and the scorer's faster JSON decoding (the hot path)."""
    path = check_input_file(path, "RESULTS")
    try:
        handle = path.open("rb")
        size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle, progress(total=size, desc="reading", unit="B", unit_scale=True) as bar:
        for number, raw in enumerate(handle, 1):
            if number % 4096 == 0:
                bar.update(handle.tell() - bar.n)
            try:
                line = raw.decode()
            except UnicodeDecodeError as exc:
                skipped.append(f"line {number}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}; "
                               "save the file as UTF-8)")
                continue
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            try:
                yield number, json_loads(line)
            except (ValueError, RecursionError) as exc:
                if line.strip():
                    skipped.append(f"line {number}: not JSON ({getattr(exc, 'msg', exc)})")
        bar.update(size - bar.n)


def _records_index(path: str | Path, scorer: Scorer) -> dict[str, tuple[str, Reference, str]]:
    """image path (as in the record, and absolute) -> (record image, reference, vehicle id)."""
    index: dict[str, tuple[str, Reference, str]] = {}
    for record in iter_records(path):
        try:
            reference = scorer.reference(record["labels"])
        except ValueError as exc:
            raise UserError(f"{path}: record {record['image']!r}: {exc}") from None
        boxes = plate_boxes(record)
        if boxes and any(box is not None for box in boxes):
            reference.boxes = tuple(boxes)
        entry = (record["image"], reference, vehicle_id(record))
        index[os.path.normpath(record["image"])] = entry
        if record.get("root"):
            index[os.path.normpath(os.path.join(record["root"], record["image"]))] = entry
        index[os.path.normpath(str(resolve_image(record, path)))] = entry
    return index


def _lookup_image(index: dict[str, Any], image: str) -> str | None:
    if not image:
        return None
    candidates = [os.path.normpath(image)]
    if image.startswith("file://"):
        candidates.append(os.path.normpath(image[len("file://"):]))
    if not os.path.isabs(image):
        candidates.append(os.path.normpath(os.path.abspath(image)))
    for candidate in candidates:
        if candidate in index:
            return candidate
    return None
