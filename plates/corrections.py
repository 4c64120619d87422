"""Label corrections by image path: the file `plates parse --corrections FILE` applies on the next parse and that
`plates audit`'s review file already is (its lines whose ``value`` is filled in).

Corrections file, JSONL, one line per fix::

    {"image": "sub/车辆属性:….jpg", "field": "车牌省份", "plate": 0, "value": "黑龙江省"}

``image`` is the path as the records give it (relative to the parse ROOT) or the absolute path; ``plate`` is
needed for plate fields only (default 0); ``value`` is the corrected value (normalised like a label). Lines whose
``value`` is null are skipped, so the review file itself is a corrections file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from plates.errors import UserError
from plates.io import check_input_file, dump_json_line, iter_jsonl
from plates.labels import FIELDS, PLATE_FIELDS, PLATE_GROUP, VEHICLE_FIELDS, VEHICLE_GROUP, normalise


@dataclass
class Corrections:
    """Label fixes by image path, applied by `plates parse --corrections`."""

    source: str
    by_image: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: int = 0
    applied: int = 0
    used: set = field(default_factory=set)
    unapplied: list = field(default_factory=list)
    unknown: list = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.by_image)

    def for_record(self, rel: str, root: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for key in (os.path.normpath(rel), os.path.normpath(os.path.join(root, rel))):
            if key in self.by_image:
                self.used.add(key)
                out.extend(fix for fix in self.by_image[key] if not any(fix is seen for seen in out))
        return out

    def notes(self) -> list[str]:
        """Why corrections did not land as clean labels: a plate index the record lacks, a value outside the
        vocabulary (applied, with an ``unknown_value`` warning on the record like a typed label)."""
        out = []
        if self.unapplied:
            out.append(f"{len(self.unapplied)} not applied, e.g. {self.unapplied[0]}")
        if self.unknown:
            out.append(f"{len(self.unknown)} outside the vocabularies (unknown_value warning on the record), "
                       f"e.g. {self.unknown[0]}")
        return out

    def unmatched(self) -> list[str]:
        """Corrections whose image no parsed record has (counted once even when named by two paths)."""
        used = {id(fix) for key in self.used for fix in self.by_image[key]}
        first_key: dict[int, str] = {}  # a review line's fix sits under its 'image' first, then its 'path'
        for key, fixes in self.by_image.items():
            for fix in fixes:
                if id(fix) not in used:
                    first_key.setdefault(id(fix), key)
        return sorted(set(first_key.values()))

    def apply(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with its corrections applied (in place), each noted in ``warnings`` as ``corrected: …``."""
        for fix in self.for_record(record["image"], record.get("root") or ""):
            labels = record["labels"]
            name, value = fix["field"], fix["value"]
            if name in VEHICLE_FIELDS:
                target = labels[VEHICLE_GROUP]
            else:
                plates = labels[PLATE_GROUP]
                index = fix.get("plate") or 0
                if index >= len(plates):
                    why = f"{name} plate {index}: the record has {len(plates)} plate(s)"
                    record.setdefault("warnings", []).append(f"correction_unapplied: {why}")
                    self.unapplied.append(f"{why} ({record['image']})")
                    continue
                target = plates[index]
            old = target.get(name)
            target[name] = value
            record.setdefault("warnings", []).append(f"corrected: {name} {old} -> {value} ({self.source})")
            if not fix.get("known", True):
                record["warnings"].append(f"unknown_value: {name}={value}")
                self.unknown.append(f"{name}={value}")
            self.applied += 1
        return record

    def apply_lines(self, lines: Iterable[str]) -> list[str]:
        """Record JSON lines (as `plates parse` writes them) with corrections applied where any match."""
        out = []
        for line in lines:
            record = json.loads(line)
            if self.for_record(record["image"], record.get("root") or ""):
                line = dump_json_line(self.apply(record))
            out.append(line)
        return out


def load_corrections(path: str | os.PathLike) -> Corrections:
    """Read a corrections JSONL (see the module docstring); a malformed line is a user error naming it."""
    check_input_file(path, "--corrections")
    corrections = Corrections(str(path))
    for number, line in iter_jsonl(path):
        where = f"{path}: line {number}"
        if not isinstance(line, dict) or not isinstance(line.get("image"), str):
            raise UserError(f"{where}: needs an 'image' path")
        if line.get("value") is None:
            corrections.skipped += 1
            continue
        name = line.get("field")
        if name not in FIELDS:
            raise UserError(f"{where}: 'field' must be one of {', '.join(FIELDS)}, not {name!r}")
        plate = line.get("plate")
        if name in PLATE_FIELDS and plate is not None and (not isinstance(plate, int) or plate < 0):
            raise UserError(f"{where}: 'plate' must be a plate index (0, 1, …)")
        if not isinstance(line["value"], str):
            raise UserError(f"{where}: 'value' must be the corrected label as text, not {line['value']!r}")
        normalised = normalise(name, line["value"])
        image = line["image"]
        fix = {"field": name, "plate": plate if name in PLATE_FIELDS else None, "value": normalised.value,
               "known": normalised.known}
        corrections.by_image.setdefault(os.path.normpath(image), []).append(fix)
        if isinstance(line.get("path"), str):  # review lines carry the absolute path too
            corrections.by_image.setdefault(os.path.normpath(line["path"]), []).append(fix)
    return corrections
