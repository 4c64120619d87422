"""Reading what a model answered: one :class:`Item` per scorable line of a results file, joined to its reference
(the ``labels`` column, or `plates parse` records matched by image path)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, Iterator

from plates.errors import UserError
from plates.evaluation.extract import _json_loads, parse_response
from plates.evaluation.scorer import Reference, Scorer
from plates.io import progress


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
    scored lines declared each decoding mode (``None``: lines from before `plates infer` recorded it)."""

    items: list[Item] = dataclass_field(default_factory=list)
    skipped: list[str] = dataclass_field(default_factory=list)
    records_without_prediction: list[str] = dataclass_field(default_factory=list)
    decodings: Counter = dataclass_field(default_factory=Counter)

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


def _reference_labels(labels: Any) -> Any:
    if isinstance(labels, str):
        try:
            return _json_loads(labels)
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
        source.decodings[row.get("decoding")] += 1
        yield Item(number, image, row["response"], reference, vehicle, row.get("logprobs"))
    if index is not None:
        source.records_without_prediction = sorted({entry[0] for entry in index.values()} - seen)


def _iter_rows(path: str | Path, skipped: list[str]) -> Iterator[tuple[int, Any]]:
    """(line number, decoded line) for every non-blank line; undecodable lines go to ``skipped``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    size = path.stat().st_size
    with path.open("r", encoding="utf-8", errors="replace") as handle, \
            progress(total=size, desc="reading", unit="B", unit_scale=True) as bar:
        for number, line in enumerate(handle, 1):
            if number % 4096 == 0:
                bar.update(handle.buffer.tell() - bar.n)
            try:
                yield number, _json_loads(line)
            except (ValueError, RecursionError) as exc:
                if line.strip():
                    skipped.append(f"line {number}: not JSON ({getattr(exc, 'msg', exc)})")
        bar.update(size - bar.n)


def _records_index(path: str | Path, scorer: Scorer) -> dict[str, tuple[str, Reference, str]]:
    """image path (as in the record, and absolute) -> (record image, reference, vehicle id)."""
    from plates.records import iter_records, resolve_image, vehicle_id

    index: dict[str, tuple[str, Reference, str]] = {}
    for record in iter_records(path):
        try:
            reference = scorer.reference(record["labels"])
        except ValueError as exc:
            raise UserError(f"{path}: record {record['image']!r}: {exc}") from None
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
