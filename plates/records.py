"""The record: what `plates parse` writes and every later stage reads.

One JSON object per image::

    {"image": "sub/车辆属性:…jpg",            # path relative to root
     "root": "/abs/path/to/dump",              # absolute ROOT given to `plates parse`
     "format": "seed" | "ccpd",
     "width": 602, "height": 612, "channels": 3,
     "labels": {"车辆属性": {4 fields}, "车牌属性": [{6 fields}, …]},   # canonical values, 未知 = unknown
     "ids": ["00032804", "car10062", "00336842"],
     "plate_geometry": [{"box": [x1, y1, x2, y2], "vertices": [[x, y] ×4]} | null, …],   # CCPD only
     "ccpd": {"area": 25, "tilt_horizontal": 95, "tilt_vertical": 113, "brightness": 146, "blur": 21},
     "warnings": ["code: detail", …]}

``plate_geometry`` and ``ccpd`` appear only where the file name carries them (CCPD names; seed records have
neither). ``plate_geometry[i]`` belongs to ``labels.车牌属性[i]`` (null: that plate has none); points are
original-image pixels exactly as the name writes them (CCPD's vertex order: bottom-right, bottom-left, top-left,
top-right). An empty box, other than 4 vertices, or points outside the image are ``plate_geometry`` warnings, the
values kept as written. ``ccpd`` holds the name's other figures as written: area (CCPD's plate-area ratio field),
horizontal and vertical tilt in degrees, brightness, blur.

Later stages find the image from the record alone (``resolve_image``), so no stage needs a root flag.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

from plates.errors import UserError
from plates.io import iter_jsonl
from plates.labels import PLATE_GROUP, VEHICLE_GROUP
from plates.names import GEOMETRY_KEY

# every warning code a record can carry ('code: detail'); `plates build --exclude-warning` checks against it
WARNING_CODES = ("colour_usage", "image_truncated", "missing_field", "missing_vehicle", "name_encoding",
                 "plate_geometry", "plate_index", "plate_length", "plate_pattern", "province_mismatch",
                 "suffix_usage", "unknown_value")
_TRACK_ID = re.compile(r"^car\d+$", re.IGNORECASE)


def resolve_image(record: dict[str, Any], records_file: str | Path | None = None) -> Path:
    """Absolute path of a record's image: ``root/image``; if that root has moved, relative to the records
    file's folder (dumps copied together with their records keep working)."""
    image = Path(record["image"])
    if image.is_absolute():
        return image
    root = record.get("root")
    if root:
        candidate = Path(root) / image
        if candidate.exists() or records_file is None:
            return candidate
    if records_file is not None:
        return (Path(records_file).resolve().parent / image).resolve()
    return image.resolve()


def vehicle_id(record: dict[str, Any]) -> str:
    """The id that ties images of one vehicle together (the seed's ``carNNNN``); falls back to the image path,
    so records without a track id are their own group."""
    for value in record.get("ids") or []:
        if _TRACK_ID.match(str(value)):
            return str(value).lower()
    return str(record.get("image"))


def plate_boxes(record: dict[str, Any]) -> list[list[int] | None] | None:
    """Each labelled plate's box ``[x1, y1, x2, y2]`` (None for a plate without one), or None when the record
    has no geometry at all."""
    geometry = record.get(GEOMETRY_KEY)
    if not isinstance(geometry, list):
        return None
    boxes = []
    for i in range(len(record["labels"][PLATE_GROUP])):
        entry = geometry[i] if i < len(geometry) else None
        boxes.append(entry.get("box") if isinstance(entry, dict) else None)
    return boxes


def validate_record(record: Any) -> str | None:
    """Why a line is not a usable record, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if not isinstance(record.get("image"), str):
        return "no 'image' path"
    labels = record.get("labels")
    if not isinstance(labels, dict) or not isinstance(labels.get(VEHICLE_GROUP), dict):
        return f"no 'labels.{VEHICLE_GROUP}' object"
    if not isinstance(labels.get(PLATE_GROUP), list):
        return f"'labels.{PLATE_GROUP}' is not a list"
    return None


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records from a `plates parse` output; a malformed line is a user error naming its line number."""
    for number, record in iter_jsonl(path):
        problem = validate_record(record)
        if problem:
            raise UserError(f"{path}: line {number}: {problem} (is this a `plates parse` output?)")
        yield record


def load_records(path: str | Path) -> list[dict[str, Any]]:
    return list(iter_records(path))
