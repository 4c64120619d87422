"""`plates parse`: a labelled image dump -> one clean, validated record per image (see ``plates.records``).

Labels live in the file names. Two grammars are understood:

* the seed's: ``车辆属性:品牌-朝向-类型-颜色_车牌属性0:国家-省份-号码-颜色-层数-用途[_车牌属性1:…]_id_id….jpg``
  (ASCII or full-width colons, plate numbers with spaces or hyphens, brands containing '-', any number of ids);
* CCPD's (Chinese City Parking Dataset): ``area-tilt-box-vertices-plateindices-brightness-blur.jpg``, whose
  plate characters are indices into CCPD's province / alphabet / ads tables.

Every file under ROOT ends up either as a record or as a reject with a reason, so a dump is fully accounted for.
Image sizes come from the file header (no decode); only files whose header cannot be read are decoded.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from plates.errors import UserError
from plates.dump import (  # noqa: F401 - ImageInfo, file_kind: also imported from here by older callers
    ImageInfo, Rejected, display_name, file_kind, iter_files, name_problem, read_image_info,
)
from plates.io import atomic_write, guard_outputs, progress, write_json
from plates.labels import (
    PLATE_FIELDS, PLATE_GROUP, PLATE_NUMBER, UNKNOWN, VEHICLE_FIELDS, VEHICLE_GROUP, canonical_values, normalise,
    PlateChecks, clear_caches as clear_label_caches, plate_checks, plate_key, plate_warnings,
    province_for_abbreviation,
)

FORMATS = ("auto", "seed", "ccpd")
# every warning code a record can carry ('code: detail'); `plates build --exclude-warning` checks against it
WARNING_CODES = ("colour_usage", "image_truncated", "missing_field", "missing_vehicle", "name_encoding",
                 "plate_index", "plate_length", "plate_pattern", "province_mismatch", "suffix_usage",
                 "unknown_value")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
CHUNK_FILES = 1000

# CCPD's own tables (github.com/detectRecog/CCPD); 'O' marks "no character".
CCPD_PROVINCES = ("皖", "沪", "津", "渝", "冀", "晋", "蒙", "辽", "吉", "黑", "苏", "浙", "京", "闽", "赣", "鲁", "豫",
                  "鄂", "湘", "粤", "桂", "琼", "川", "贵", "云", "藏", "陕", "甘", "青", "宁", "新", "警", "学", "O")
CCPD_ALPHABETS = tuple("ABCDEFGHJKLMNPQRSTUVWXYZO")
CCPD_ADS = tuple("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789O")

_MARKER = re.compile(r"(车辆属性|车牌属性)[ \t]*(\d*)[ \t]*[:：]?")
_CCPD = re.compile(r"^\d+-\d+_\d+-\d+&\d+_\d+&\d+-\d+&\d+(?:_\d+&\d+){3}-(\d+(?:_\d+){6,7})-\d+-\d+$")
_NO_PLATE = frozenset({"", "无", "无车牌", "none", "无牌"})
_NO_PLATE_LENGTH = max(map(len, _NO_PLATE))
_VEHICLE_HINT = "品牌-朝向-类型-颜色"
_PLATE_HINT = "国家-省份-号码-颜色-层数-用途"


class ParsedName(NamedTuple):
    """Canonical labels, the name's id fields and 'code: detail' warnings."""

    labels: dict[str, Any]
    ids: list[str]
    warnings: list[str]


# ---------------------------------------------------------------------------------------------- file names


def strip_extension(name: str) -> str:
    """'a.b.JPG' -> 'a.b'; only a short alphanumeric suffix counts (plate numbers like '29A-123.45' contain dots)."""
    dot = name.rfind(".")
    if dot > 0 and len(name) - dot <= 6:
        extension = name[dot + 1:]
        if extension.isascii() and extension.isalnum():
            return name[:dot]
    return name


def name_format(name: str) -> str | None:
    """'seed', 'ccpd' or None: which grammar a file name is written in."""
    if "车辆属性" in name or "车牌属性" in name:
        return "seed"
    if _CCPD.match(strip_extension(name.rpartition("/")[2])):
        return "ccpd"
    return None


def parse_filename(name: str, fmt: str = "auto") -> ParsedName | Rejected:
    """Parse one file name (a path's last component is used) in the given format; never raises on bad names."""
    base = name.rpartition("/")[2]
    if fmt == "auto":
        if "车辆属性" in base or "车牌属性" in base:  # name_format's first test, inlined for the usual case
            return _parse_seed_base(base)
        fmt = name_format(base) or "none"
        if fmt == "none":
            return Rejected("name matches neither the seed grammar (车辆属性:…_车牌属性0:…) nor CCPD's")
    if fmt == "seed":
        return _parse_seed_base(base)
    if fmt == "ccpd":
        return parse_ccpd_filename(base)
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def parse_seed_filename(name: str) -> ParsedName | Rejected:
    """Parse a name in the seed's grammar into canonical labels (see the module docstring)."""
    return _parse_seed_base(name.rpartition("/")[2])


def _parse_seed_base(base: str) -> ParsedName | Rejected:
    """:func:`parse_seed_filename` of a name without folders."""
    # The usual name: label text, '_', ASCII ids and extension. The text's labels are memoised; only the ids
    # are read per name. (An extension holds no '_' or 属性, so the text ends where it would in the stem, and
    # strip_extension's dot is one after the '_' or none.)
    parsed = None
    last = base.rfind("属性")
    if last >= 0:
        cut = base.find("_", last)
        if cut >= 0:
            dot = base.rfind(".", cut)
            if dot >= 0 and len(base) - dot <= 6 and (extension := base[dot + 1:]).isascii() and extension.isalnum():
                ids_text = base[cut + 1:dot]
            else:
                ids_text = base[cut + 1:]
            if ids_text.isascii():
                parsed = _labels_text(base[:cut])
    if parsed is None:
        parsed, ids_text = _labels_and_ids(strip_extension(base))
    if parsed.__class__ is Rejected:
        return parsed
    if ids_text:
        ids = ids_text.split("_")
        # blank ids are dropped; text without ' ' and printable (all other whitespace is not) has none
        if "" in ids or " " in ids_text or not ids_text.isprintable():
            ids = [token for token in ids if token.strip()]
    else:
        ids = []
    leading_ids, vehicle, plates, warnings = parsed
    if leading_ids:
        ids[:0] = leading_ids
    # the cache holds templates: callers get their own dicts and lists
    if len(plates) == 1:
        plate_list = [plates[0].copy()]
    else:
        plate_list = [plate.copy() for plate in plates]
    # ParsedName(labels, ids, warnings) without the Python-level __new__ a NamedTuple call goes through
    return _tuple_new(ParsedName, ({VEHICLE_GROUP: vehicle.copy(), PLATE_GROUP: plate_list}, ids, [*warnings]))


def _labels_and_ids(stem: str) -> tuple[tuple | Rejected, str]:
    """(:func:`_labels_text`, ids text 'a_b_c') of a name without extension, in the general case."""
    last = stem.rfind("属性")
    cut = stem.find("_", last) if last >= 0 else -1
    # As a rule the ids are ASCII, so only the label text needs normalising, which _labels_text does once per
    # distinct text.
    if cut >= 0:
        ids_text = stem[cut + 1:]
        parsed = _labels_text(stem[:cut]) if ids_text.isascii() else None
    else:
        ids_text = ""
        parsed = _labels_text(stem) if last >= 0 else None
    if parsed is None:
        stem = stem.replace("：", ":")  # NFKC's own mapping, and the usual case: far cheaper than normalize
        if not unicodedata.is_normalized("NFKC", stem):
            stem = unicodedata.normalize("NFKC", stem)
        last = stem.rfind("属性")
        if last < 0:
            return Rejected("no 车辆属性 or 车牌属性 field in the name"), ""
        cut = stem.find("_", last)
        ids_text = stem[cut + 1:] if cut >= 0 else ""
        parsed = _labels_text(stem[:cut] if cut >= 0 else stem)
    return parsed, ids_text


_tuple_new = tuple.__new__


@functools.lru_cache(maxsize=65536)
def _labels_text(text: str) -> tuple[tuple[str, ...], dict, tuple[dict, ...], tuple[str, ...]] | Rejected | None:
    """(leading ids, vehicle, plates, warnings) of a name without its trailing ids; never mutate the dicts.
    Memoised: a dump holds several frames of each vehicle, whose names differ only in their ids.
    The name is read in NFKC form (full-width colons, letters, digits), which for ASCII ids ('_' and after)
    is this text's NFKC form followed by the ids; None where that form has a '_' after its last 属性 (so its
    ids start earlier: the caller normalises the whole name)."""
    if not unicodedata.is_normalized("NFKC", text):
        normalised = text.replace("：", ":")  # NFKC's own mapping, and the usual case: far cheaper than normalize
        if not unicodedata.is_normalized("NFKC", normalised):
            normalised = unicodedata.normalize("NFKC", normalised)
        last = normalised.rfind("属性")
        if last < 0:
            return Rejected("no 车辆属性 or 车牌属性 field in the name")
        return None if normalised.find("_", last) >= 0 else _labels_text(normalised)
    if text.startswith("车辆属性:"):
        markers = text.count("属性")
        if markers == 1:  # a vehicle without plate
            return _usual_labels(text[5:], None)
        if markers == 2:
            vehicle_text, separator, plate_text = text[5:].partition("_车牌属性0:")
            if separator:  # one vehicle and one plate
                return _usual_labels(vehicle_text, plate_text)
    return _marked_labels(text)


def _usual_labels(vehicle_text: str, plate_text: str | None) -> tuple | Rejected:
    """:func:`_labels_text` of '车辆属性:VEHICLE[_车牌属性0:PLATE]' (``plate_text`` None: no plate), the usual
    layout: what :func:`_marked_labels` gives for it, without the regex and the general bookkeeping."""
    plates: tuple[dict[str, str], ...] = ()
    plate_notes: list[str] | tuple[()] = ()
    if plate_text is not None:
        plate_text = plate_text.strip(" _")
        if len(plate_text) > _NO_PLATE_LENGTH or plate_text.lower() not in _NO_PLATE:
            plate = _plate_segment("0", plate_text)
            if plate.__class__ is Rejected:
                return plate
            plates, plate_notes = (plate[0],), plate[1]
    vehicle = _vehicle_segment(vehicle_text.strip(" _"))
    if vehicle.__class__ is Rejected:
        return vehicle
    return (), vehicle[0], plates, (*vehicle[1], *plate_notes)


def _marked_labels(text: str) -> tuple | Rejected:
    """:func:`_labels_text` of any text: split at its 车辆属性 / 车牌属性 markers."""
    pieces = _MARKER.split(text)  # [prefix, group, index, text, group, index, text, …]
    if len(pieces) == 1:
        return Rejected("no 车辆属性 or 车牌属性 field in the name")
    ids = tuple(token for token in pieces[0].replace("-", "_").split("_") if token.strip()) if pieces[0] else ()
    vehicle_text: str | None = None
    plate_warnings: list[str] = []
    plates: list[dict[str, str]] = []
    indices: list[str] = []
    for group, index, segment in zip(pieces[1::3], pieces[2::3], pieces[3::3]):
        segment = segment.strip(" _")
        if group == VEHICLE_GROUP:
            if index:
                return Rejected(f"车辆属性 carries an index ({group}{index})")
            if vehicle_text is not None:
                return Rejected("车辆属性 appears twice in the name")
            vehicle_text = segment
        elif len(segment) > _NO_PLATE_LENGTH or segment.lower() not in _NO_PLATE:  # (lower() never shortens)
            parsed = _plate_segment(index, segment)
            if parsed.__class__ is Rejected:
                return parsed
            plates.append(parsed[0])
            plate_warnings += parsed[1]
            indices.append(index)
    if vehicle_text is None:
        vehicle = _UNKNOWN_VEHICLE
        warnings = ["missing_vehicle: no 车辆属性 in the name", *plate_warnings]
    else:
        parsed_vehicle = _vehicle_segment(vehicle_text)
        if parsed_vehicle.__class__ is Rejected:
            return parsed_vehicle
        vehicle = parsed_vehicle[0]
        warnings = [*parsed_vehicle[1], *plate_warnings]
    if indices and indices != _SEQUENTIAL[: len(indices)] and any(indices):
        warnings.append(f"plate_index: 车牌属性 indices are {', '.join(i or '(none)' for i in indices)}")
    return ids, vehicle, tuple(plates), tuple(warnings)


_SEQUENTIAL = [str(i) for i in range(100)]
_PLATE_STAT_FIELDS = tuple(f for f in PLATE_FIELDS if f != PLATE_NUMBER)  # counted per value in the summary
_UNKNOWN_VEHICLE = dict.fromkeys(VEHICLE_FIELDS, UNKNOWN)


@functools.lru_cache(maxsize=4096)
def _vehicle_segment(text: str) -> tuple[dict[str, str], tuple[str, ...]] | Rejected:
    """Canonical vehicle (a template: never mutate it) and unknown-value warnings of one 车辆属性 text."""
    parts = [part.strip() for part in text.split("-")]
    if len(parts) < 4:
        return Rejected(f"车辆属性 {text!r} has {len(parts)} fields, expected 4 ({_VEHICLE_HINT})")
    raw = {"车辆品牌": "-".join(parts[:-3]), "车辆朝向": parts[-3], "车辆类型": parts[-2], "车辆颜色": parts[-1]}
    vehicle, warnings = {}, []
    for name in VEHICLE_FIELDS:  # a field the name grammar has no slot for is 未知
        result = normalise(name, raw.get(name))
        vehicle[name] = result.value
        if not result.known:
            warnings.append(f"unknown_value: {name}={result.value}")
    return vehicle, tuple(warnings)


@functools.lru_cache(maxsize=4096)
def _plate_fields(country: str, province: str, colour: str, layers: str, usage: str) -> tuple[dict, tuple, PlateChecks]:
    """A plate's non-number fields, raw (few distinct combinations, so cached) -> the canonical plate with
    an empty number (a template: never mutate it), its unknown-value warnings and its :class:`PlateChecks`."""
    plate, warnings = {}, []
    given = {"车牌国家": country, "车牌省份": province, "车牌颜色": colour, "车牌层数": layers, "车牌用途": usage}
    for name in PLATE_FIELDS:  # a field the name grammar has no slot for is 未知
        if name == PLATE_NUMBER:
            plate[name] = ""
            continue
        result = normalise(name, given[name].strip() if name in given else None)
        plate[name] = result.value
        if not result.known:
            warnings.append(f"unknown_value: {name}={result.value}")
    checks = plate_checks(plate["车牌国家"], plate["车牌省份"], plate["车牌颜色"], plate["车牌用途"])
    return plate, tuple(warnings), checks


@functools.lru_cache(maxsize=1)
def _province_names() -> frozenset[str]:
    return frozenset(canonical_values("车牌省份"))


# Mainland numbers as file names write them ('云K CM158'); for these the canonical number is the text without
# spaces, exactly what plates.labels.normalise_plate_number returns (tests check the two agree), and it is
# its own plate_key.
_SIMPLE_MAINLAND = re.compile(r"[\u4e00-\u9fff][A-Z0-9][A-Z0-9 ]*[\u4e00-\u9fff]{0,2}")


def plate_number(raw: str) -> str:
    """Canonical plate number of a file name's raw number (fast path for the common mainland form)."""
    if _SIMPLE_MAINLAND.fullmatch(raw):
        return raw.replace(" ", "")
    return normalise(PLATE_NUMBER, raw).value


def _plate_segment(index: str, text: str) -> tuple[dict[str, str], list[str]] | Rejected:
    """Canonical plate values and warnings of one 车牌属性 text."""
    parts = text.split("-")
    notes: list[str] = []
    if len(parts) == 6:
        raw_number = parts[2]
    else:
        if len(parts) == 5 and normalise("车牌省份", parts[1]).value not in _province_names():
            # Foreign plates are often written without a province: 阿布扎比-14 11586-白色-单层-私家车
            parts.insert(1, UNKNOWN)
            notes.append(f"missing_field: 车牌属性{index} has no 车牌省份")
        if len(parts) < 6:
            return Rejected(f"车牌属性{index} {text!r} has {len(parts)} fields, expected 6 ({_PLATE_HINT})")
        raw_number = "-".join(parts[2:-3])
    raw_number = raw_number.strip()
    template, unknown, checks = _plate_fields(parts[0], parts[1], parts[-3], parts[-2], parts[-1])
    plain = checks.plain_number(raw_number)
    if plain is not None:
        number, warnings = plain
    else:  # special suffixes, foreign and malformed numbers: the general path
        number = plate_number(raw_number)
        warnings = checks.warnings(number, plate_key(number) if number != UNKNOWN else "")
    plate = template.copy()
    plate[PLATE_NUMBER] = number
    if notes or unknown:
        return plate, [*notes, *unknown, *warnings]
    return plate, warnings


def parse_ccpd_filename(name: str) -> ParsedName | Rejected:
    """Parse a CCPD name: the fifth '-' field holds 7 (blue) or 8 (green new-energy) character indices.
    Vehicle fields are unknown; the area/tilt/box/brightness/blur fields are not labels and are dropped."""
    stem = strip_extension(os.path.basename(name))
    match = _CCPD.match(stem)
    if not match:
        return Rejected("not a CCPD name (area-tilt-box-vertices-indices-brightness-blur)")
    indices = [int(i) for i in match.group(1).split("_")]
    tables = [CCPD_PROVINCES, CCPD_ALPHABETS] + [CCPD_ADS] * (len(indices) - 2)
    chars = []
    for position, (value, table) in enumerate(zip(indices, tables)):
        if value >= len(table):
            return Rejected(f"CCPD character {position} has index {value}, beyond its table of {len(table)}")
        chars.append(table[value])
    number = "".join(chars)
    province = province_for_abbreviation(chars[0]) or UNKNOWN
    green = len(indices) == 8
    given = {"车牌国家": "中国", "车牌省份": province, PLATE_NUMBER: number, "车牌颜色": "绿色" if green else "蓝色",
             "车牌层数": "单层车牌", "车牌用途": "新能源车牌" if green else "燃油车车牌"}
    plate = {name: given.get(name, UNKNOWN) for name in PLATE_FIELDS}
    vehicle = dict.fromkeys(VEHICLE_FIELDS, UNKNOWN)
    return ParsedName({VEHICLE_GROUP: vehicle, PLATE_GROUP: [plate]}, [], plate_warnings(plate))


def clear_caches() -> None:
    """Forget memoised name fragments and normalised values (benchmarks time cold runs)."""
    for cached in (_labels_text, _vehicle_segment, _plate_fields):
        cached.cache_clear()
    clear_label_caches()


def parse_file(root: str, rel: str, fmt: str = "auto") -> dict[str, Any] | Rejected:
    """The record for one file (``rel`` relative to the absolute ``root``), or why it has none."""
    if not rel.isascii():
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            return name_problem(rel)
    name = rel.rpartition("/")[2]
    dot = name.rfind(".")
    extension = name[dot:].lower() if dot > 0 else ""
    if extension not in IMAGE_EXTENSIONS:
        return Rejected(f"not an image file (extension {extension or 'none'!r})", "not_image")
    chosen = name_format(name) if fmt == "auto" else fmt
    if chosen is None:
        return Rejected("name matches neither the seed grammar (车辆属性:…_车牌属性0:…) nor CCPD's")
    parsed = parse_seed_filename(name) if chosen == "seed" else parse_ccpd_filename(name)
    if isinstance(parsed, Rejected):
        return parsed
    info = read_image_info(root + "/" + rel)
    if isinstance(info, Rejected):
        return info
    return {"image": rel, "root": root, "format": chosen, "width": info.width, "height": info.height,
            "channels": info.channels, "labels": parsed.labels, "ids": parsed.ids,
            "warnings": parsed.warnings + list(info.warnings)}


@dataclass
class ParseSummary:
    """What a parse saw: counts that always add up (parsed + rejected = files), value and warning counts."""

    files: int = 0
    parsed: int = 0
    rejected: int = 0
    formats: Counter = field(default_factory=Counter)
    reject_codes: Counter = field(default_factory=Counter)
    warning_codes: Counter = field(default_factory=Counter)
    records_with_warnings: int = 0
    plates_per_image: Counter = field(default_factory=Counter)
    vehicles: Counter = field(default_factory=Counter)
    plates: Counter = field(default_factory=Counter)

    def add_record(self, record: dict[str, Any]) -> None:
        self.files += 1
        self.parsed += 1
        self.formats[record["format"]] += 1
        labels = record["labels"]
        self.vehicles[tuple(labels[VEHICLE_GROUP].values())] += 1
        plates = labels[PLATE_GROUP]
        self.plates_per_image[len(plates)] += 1
        for plate in plates:
            self.plates[tuple(plate[name] for name in _PLATE_STAT_FIELDS)] += 1
        if record["warnings"]:
            self.records_with_warnings += 1
            for warning in record["warnings"]:
                self.warning_codes[warning.partition(":")[0]] += 1

    def add_reject(self, rejected: Rejected) -> None:
        self.files += 1
        self.rejected += 1
        self.reject_codes[rejected.code] += 1

    def merge(self, other: ParseSummary) -> None:
        self.files += other.files
        self.parsed += other.parsed
        self.rejected += other.rejected
        self.records_with_warnings += other.records_with_warnings
        for name in ("formats", "reject_codes", "warning_codes", "plates_per_image", "vehicles", "plates"):
            getattr(self, name).update(getattr(other, name))

    def field_counts(self) -> dict[str, Counter]:
        counts = {name: Counter() for name in VEHICLE_FIELDS + _PLATE_STAT_FIELDS}
        for values, n in self.vehicles.items():
            for name, value in zip(VEHICLE_FIELDS, values):
                counts[name][value] += n
        for values, n in self.plates.items():
            for name, value in zip(_PLATE_STAT_FIELDS, values):
                counts[name][value] += n
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files, "parsed": self.parsed, "rejected": self.rejected,
            "formats": dict(self.formats), "reject_codes": dict(self.reject_codes),
            "records_with_warnings": self.records_with_warnings, "warning_codes": dict(self.warning_codes),
            "plates_per_image": {str(k): v for k, v in sorted(self.plates_per_image.items())},
            "field_values": {name: dict(c.most_common()) for name, c in self.field_counts().items()},
        }

    def lines(self, top: int = 8) -> list[str]:
        out = [f"files seen {self.files} = parsed {self.parsed} + rejected {self.rejected}"]
        if self.formats:
            out.append("formats: " + ", ".join(f"{k} {v}" for k, v in self.formats.most_common()))
        if self.reject_codes:
            out.append("rejects: " + ", ".join(f"{k} {v}" for k, v in self.reject_codes.most_common()))
        plates = ", ".join(f"{k} plate{'s' if k != 1 else ''}: {v}" for k, v in sorted(self.plates_per_image.items()))
        if plates:
            out.append("images with " + plates)
        out.append(f"records with warnings: {self.records_with_warnings}"
                   + ("" if not self.warning_codes else " (" + ", ".join(
                       f"{k} {v}" for k, v in self.warning_codes.most_common()) + ")"))
        for name, counts in self.field_counts().items():
            if not counts:
                continue
            shown = ", ".join(f"{value} {n}" for value, n in counts.most_common(top))
            more = len(counts) - top
            out.append(f"  {name}: {shown}" + (f", … {more} more values" if more > 0 else ""))
        return out


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _parse_chunk(task: tuple) -> tuple[list[str], list[str], ParseSummary]:
    """Parse a slice of the file list into ready-to-write JSON lines (so workers do the serialising).
    ``task`` is (root, rels, fmt[, special]): ``special`` maps non-regular files to their kind."""
    root, rels, fmt = task[:3]
    special = task[3] if len(task) > 3 else None
    records, rejects, summary = [], [], ParseSummary()
    for rel in rels:
        try:
            if special and rel in special:
                result = Rejected(f"not a regular file: a {special[rel]} (not opened)", "not_regular_file")
            else:
                result = parse_file(root, rel, fmt)
        except Exception as exc:  # noqa: BLE001 - one odd file must not lose the whole dump; it is reported
            result = Rejected(f"internal error while parsing: {type(exc).__name__}: {exc}", "internal_error")
        if isinstance(result, Rejected):
            summary.add_reject(result)
            rejects.append(_encode({"image": display_name(rel), "root": root, "reason": result.reason,
                                    "code": result.code}) + "\n")
        else:
            summary.add_record(result)
            records.append(_encode(result) + "\n")
    return records, rejects, summary


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent, which stops the pool (a worker dying mid-task would hang it)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def parse_dump(root: str | Path, fmt: str = "auto", jobs: int = 1, files: list[str] | None = None,
               show_progress: bool = True, special: dict[str, str] | None = None,
               ) -> Iterator[tuple[list[str], list[str], ParseSummary]]:
    """Parse ``files`` (default: every file under ``root``, see :func:`iter_files`) in order, yielding
    ``(record lines, reject lines, summary)`` per chunk; with ``jobs`` > 1 chunks are parsed in worker
    processes (order is kept)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    root = os.path.abspath(root)
    if files is None:
        special = {}
        files = iter_files(root, special=special)
    tasks = [(root, files[i: i + CHUNK_FILES], fmt, special) for i in range(0, len(files), CHUNK_FILES)]
    bar = progress(total=len(files), unit="file", desc="parse", **({} if show_progress else {"disable": True}))
    try:
        if jobs > 1 and len(tasks) > 1:
            import multiprocessing

            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            with context.Pool(min(jobs, len(tasks)), initializer=_ignore_interrupts) as pool:
                for result in pool.imap(_parse_chunk, tasks):
                    bar.update(result[2].files)
                    yield result
        else:
            for task in tasks:
                result = _parse_chunk(task)
                bar.update(result[2].files)
                yield result
    finally:
        bar.close()


def default_rejects_path(output: Path) -> Path:
    """``out.jsonl`` -> ``out.rejects.jsonl``."""
    stem = output.name[: -len(".jsonl")] if output.name.endswith(".jsonl") else output.name
    return output.with_name(stem + ".rejects.jsonl")


def parse_to_files(root: str | Path, output: str | Path, rejects: str | Path | None = None, fmt: str = "auto",
                   jobs: int = 1, show_progress: bool = True, corrections: Any = None) -> ParseSummary:
    """Write the records and rejects files atomically (both appear only when the whole dump is done).
    ``corrections`` (:func:`plates.audit.load_corrections`) fixes labels by image path as records are written."""
    output = Path(output)
    rejects = Path(rejects) if rejects else default_rejects_path(output)
    check_parse_outputs(root, {"-o": output, "--rejects": rejects})
    special: dict[str, str] = {}
    files = iter_files(root, exclude=(output, rejects), special=special)  # before our temporary outputs appear
    summary = ParseSummary()
    with atomic_write(output) as records_out, atomic_write(rejects) as rejects_out:
        for records, rejected, chunk_summary in parse_dump(root, fmt, jobs, files, show_progress, special):
            records_out.writelines(corrections.apply_lines(records) if corrections else records)
            rejects_out.writelines(rejected)
            summary.merge(chunk_summary)
    return summary


def check_parse_outputs(root: str | Path, outputs: dict[str, str | Path | None]) -> None:
    """Before any work: ROOT is a folder, each output can be a file and names its own path, and an output
    inside the dump never replaces one of the dump's files (an image, or anything that is not an earlier
    plates JSON/JSONL output) - new files there are fine, the walk skips them."""
    root_path = Path(root)
    if not root_path.exists():
        raise UserError(f"ROOT {root}: no such folder")
    if not root_path.is_dir():
        raise UserError(f"ROOT {root}: is a file, expected a folder (give the folder that holds the images)")
    guard_outputs([], outputs, command="parse")
    real_root = os.path.realpath(root)
    for flag, path in outputs.items():
        if path is None or not os.path.lexists(path):
            continue
        real = os.path.realpath(path)
        if os.path.commonpath([real, real_root]) == real_root:
            if not str(path).lower().endswith((".jsonl", ".json")) or Path(path).suffix.lower() in IMAGE_EXTENSIONS:
                raise UserError(f"{flag} {path}: would replace a file of the dump ROOT {root}; "
                                "choose a new path (outputs are .jsonl/.json files)")


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", metavar="ROOT", help="folder of labelled images (searched recursively)")
    parser.add_argument("-o", "--output", metavar="OUT", required=True, help="records file to write (JSONL)")
    parser.add_argument("--rejects", metavar="PATH",
                        help="where files that cannot become records go, with a reason (default: OUT with .rejects.jsonl)")
    parser.add_argument("--format", choices=FORMATS, default="auto", dest="fmt",
                        help="file-name grammar: seed (车辆属性:…), ccpd, or auto (decide per file; default)")
    parser.add_argument("-j", "--jobs", type=int, default=default_jobs(),
                        help="worker processes (default: CPU count, at most 8; 1 = no workers)")
    parser.add_argument("--summary", metavar="PATH", help="also write the summary as JSON")
    parser.add_argument("--corrections", metavar="FILE",
                        help="label fixes by image path (JSONL; `plates audit`'s review file with 'value' filled in)")


def run(args: argparse.Namespace) -> int:
    """Parse a labelled image dump into clean records, one JSON line per image.

    Labels come from the file names (the seed's 车辆属性:…_车牌属性0:… grammar, or CCPD names); values are
    normalised to the canonical vocabulary in labels/, rule violations become warnings on the record.
    Every file ends up parsed or rejected (with a reason, in the rejects file); the summary shows the counts.
    Image sizes are read from file headers without decoding.

    example: plates parse /data/dump -o records.jsonl
    """
    if args.jobs < 1:
        raise UserError("--jobs must be at least 1")
    output = Path(args.output)
    rejects = Path(args.rejects) if args.rejects else default_rejects_path(output)
    check_parse_outputs(args.root, {"-o": output, "--rejects": rejects, "--summary": args.summary})
    corrections = None
    if getattr(args, "corrections", None):
        from plates.audit import load_corrections

        corrections = load_corrections(args.corrections)
    summary = parse_to_files(args.root, output, rejects, args.fmt, args.jobs, corrections=corrections)
    if corrections is not None:
        unmatched = corrections.unmatched()
        print(f"plates parse: {corrections.applied} label corrections applied from {args.corrections}"
              + (f"; {len(unmatched)} name no parsed image, e.g. {unmatched[0]}" if unmatched else ""))
    if args.summary:
        write_json(args.summary, summary.to_dict())
    print(f"plates parse: {args.root} -> {output} ({summary.parsed} records), {rejects} ({summary.rejected} rejects)")
    for line in summary.lines():
        print(line)
    if summary.files == 0:
        print(f"plates parse: note: no files under {args.root}")
    return 0


COMMANDS = {"parse": (configure, run, "labelled image dump -> JSONL records (one per image, every file accounted for)")}
