"""The label grammars of image file names: the seed's and CCPD's, parsed into canonical labels.

`plates parse` applies these to every file of a dump, and they are pure functions of the name (cached per
repeated fragment, since a dump repeats vehicles and plates across frames), so they live apart from the walk:

* the seed's: ``车辆属性:品牌-朝向-类型-颜色_车牌属性0:国家-省份-号码-颜色-层数-用途[_车牌属性1:…]_id_id….jpg``
  (ASCII or full-width colons, plate numbers with spaces or hyphens, brands containing '-', any number of ids);
* CCPD's (Chinese City Parking Dataset): ``area-tilt-box-vertices-plateindices-brightness-blur.jpg``, whose
  plate characters are indices into CCPD's province / alphabet / ads tables.
"""

from __future__ import annotations

import functools
import operator
import os
import re
import unicodedata
from typing import Any, NamedTuple

from plates.dump import Rejected
from plates.labels import (
    PLATE_COLOUR, PLATE_COUNTRY, PLATE_FIELDS, PLATE_GROUP, PLATE_LAYERS, PLATE_NUMBER, PLATE_PROVINCE, PLATE_USAGE,
    UNKNOWN, VEHICLE_FIELDS, VEHICLE_GROUP, canonical_values, normalise, PlateChecks,
    clear_caches as clear_label_caches, plate_checks, plate_key, plate_warnings, province_for_abbreviation,
    slot_fields, slot_rest,
)

FORMATS = ("auto", "seed", "ccpd")

# CCPD's own tables (github.com/detectRecog/CCPD); 'O' marks "no character".
CCPD_PROVINCES = ("皖", "沪", "津", "渝", "冀", "晋", "蒙", "辽", "吉", "黑", "苏", "浙", "京", "闽", "赣", "鲁", "豫",
                  "鄂", "湘", "粤", "桂", "琼", "川", "贵", "云", "藏", "陕", "甘", "青", "宁", "新", "警", "学", "O")
CCPD_ALPHABETS = tuple("ABCDEFGHJKLMNPQRSTUVWXYZO")
CCPD_ADS = tuple("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789O")

_MARKER = re.compile(r"(车辆属性|车牌属性)[ \t]*(\d*)[ \t]*[:：]?")
# area-tilt(horizontal_vertical)-box(x1&y1_x2&y2)-vertices-indices-brightness-blur; any number of vertices is
# read (not exactly 4 is a warning on the record, not a reject)
_CCPD = re.compile(r"^(\d+)-(\d+)_(\d+)-(\d+)&(\d+)_(\d+)&(\d+)-(\d+&\d+(?:_\d+&\d+)*)-(\d+(?:_\d+){6,7})-(\d+)-(\d+)$")
GEOMETRY_KEY = "plate_geometry"
CCPD_KEY = "ccpd"
_NO_PLATE = frozenset({"", "无", "无车牌", "none", "无牌"})
_NO_PLATE_LENGTH = max(map(len, _NO_PLATE))
# The seed grammar's slots, from the field table (``slot:`` in labels/fields.yaml): each group's fields in the
# order a name writes them, and the slot that takes the pieces beyond that count (a brand or number with '-').
VEHICLE_SLOTS = slot_fields(VEHICLE_GROUP)
PLATE_SLOTS = slot_fields(PLATE_GROUP)
_VEHICLE_REST = slot_rest(VEHICLE_GROUP)
_PLATE_REST = slot_rest(PLATE_GROUP)


def _grammar_hint(group: str, slots: tuple[str, ...]) -> str:
    """'品牌-朝向-类型-颜色': the slots' field names without their group's prefix (车辆品牌 -> 品牌)."""
    prefix = group.removesuffix("属性")
    return "-".join(name.removeprefix(prefix) for name in slots)


def _slot_getter(slots: tuple[int, ...]):
    """parts -> the tuple of ``parts`` at ``slots`` (itemgetter, which returns a bare item for one slot)."""
    if len(slots) == 1:
        return lambda parts: (parts[slots[0]],)
    return operator.itemgetter(*slots) if slots else lambda parts: ()


_VEHICLE_HINT = _grammar_hint(VEHICLE_GROUP, VEHICLE_SLOTS)
_PLATE_HINT = _grammar_hint(PLATE_GROUP, PLATE_SLOTS)
_NUMBER_SLOT = PLATE_SLOTS.index(PLATE_NUMBER) if PLATE_NUMBER in PLATE_SLOTS else None
_PROVINCE_SLOT = PLATE_SLOTS.index(PLATE_PROVINCE) if PLATE_PROVINCE in PLATE_SLOTS else None
_PLATE_VALUE_FIELDS = tuple(name for name in PLATE_SLOTS if name != PLATE_NUMBER)  # _plate_fields' arguments
_plate_values = _slot_getter(tuple(i for i, name in enumerate(PLATE_SLOTS) if name != PLATE_NUMBER))


class ParsedName(NamedTuple):
    """Canonical labels, the name's id fields and 'code: detail' warnings; ``extra``: further record keys the
    name carries (CCPD's plate geometry and capture figures, see :func:`parse_ccpd_filename`), None for none."""

    labels: dict[str, Any]
    ids: list[str]
    warnings: list[str]
    extra: dict[str, Any] | None = None


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
    return _tuple_new(ParsedName, ({VEHICLE_GROUP: vehicle.copy(), PLATE_GROUP: plate_list}, ids, [*warnings], None))


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
PLATE_STAT_FIELDS = tuple(f for f in PLATE_FIELDS if f != PLATE_NUMBER)  # counted per value in the summary
_UNKNOWN_VEHICLE = dict.fromkeys(VEHICLE_FIELDS, UNKNOWN)


@functools.lru_cache(maxsize=4096)
def _vehicle_segment(text: str) -> tuple[dict[str, str], tuple[str, ...]] | Rejected:
    """Canonical vehicle (a template: never mutate it) and unknown-value warnings of one 车辆属性 text."""
    parts = [part.strip() for part in text.split("-")]
    if len(parts) != len(VEHICLE_SLOTS) and (len(parts) < len(VEHICLE_SLOTS) or _VEHICLE_REST is None):
        return Rejected(f"车辆属性 {text!r} has {len(parts)} fields, expected {len(VEHICLE_SLOTS)} ({_VEHICLE_HINT})")
    _join_rest(parts, len(VEHICLE_SLOTS), _VEHICLE_REST)
    raw = dict(zip(VEHICLE_SLOTS, parts))
    vehicle, warnings = {}, []
    for name in VEHICLE_FIELDS:  # a field the name grammar has no slot for is 未知
        result = normalise(name, raw.get(name))
        vehicle[name] = result.value
        if not result.known:
            warnings.append(f"unknown_value: {name}={result.value}")
    return vehicle, tuple(warnings)


def _join_rest(parts: list[str], count: int, rest: int | None) -> None:
    """Join the pieces of ``parts`` beyond ``count`` into its ``rest`` slot, in place ('a-b-c' brands, numbers)."""
    if len(parts) > count:
        end = len(parts) - (count - 1 - rest)
        parts[rest:end] = ["-".join(parts[rest:end])]


@functools.lru_cache(maxsize=4096)
def _plate_fields(*raw: str) -> tuple[dict, tuple, PlateChecks]:
    """A plate's non-number slot values, raw, in slot order (few distinct combinations, so cached) -> the canonical
    plate with an empty number (a template: never mutate it), its unknown-value warnings and its
    :class:`PlateChecks`."""
    plate, warnings = {}, []
    given = dict(zip(_PLATE_VALUE_FIELDS, raw))
    for name in PLATE_FIELDS:  # a field the name grammar has no slot for is 未知
        if name == PLATE_NUMBER:
            plate[name] = ""
            continue
        result = normalise(name, given[name].strip() if name in given else None)
        plate[name] = result.value
        if not result.known:
            warnings.append(f"unknown_value: {name}={result.value}")
    checks = plate_checks(plate[PLATE_COUNTRY], plate[PLATE_PROVINCE], plate[PLATE_COLOUR], plate[PLATE_USAGE])
    return plate, tuple(warnings), checks


@functools.lru_cache(maxsize=1)
def _province_names() -> frozenset[str]:
    return frozenset(canonical_values(PLATE_PROVINCE))


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
    count = len(PLATE_SLOTS)
    if len(parts) != count:
        if (len(parts) == count - 1 and _PROVINCE_SLOT is not None
                and normalise(PLATE_PROVINCE, parts[_PROVINCE_SLOT]).value not in _province_names()):
            # Foreign plates are often written without a province: 阿布扎比-14 11586-白色-单层-私家车
            parts.insert(_PROVINCE_SLOT, UNKNOWN)
            notes.append(f"missing_field: 车牌属性{index} has no {PLATE_PROVINCE}")
        if len(parts) < count or (len(parts) > count and _PLATE_REST is None):
            return Rejected(f"车牌属性{index} {text!r} has {len(parts)} fields, expected {count} ({_PLATE_HINT})")
        _join_rest(parts, count, _PLATE_REST)
    template, unknown, checks = _plate_fields(*_plate_values(parts))
    if _NUMBER_SLOT is None:  # a grammar without the number: an unknown number, checked as such
        raw_number = UNKNOWN
    else:
        raw_number = parts[_NUMBER_SLOT].strip()
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
    Vehicle fields are unknown. The plate's box and vertices (original-image pixels, exactly as in the name)
    go to ``extra[GEOMETRY_KEY]`` (one entry per plate), area, tilt, brightness and blur to ``extra[CCPD_KEY]``
    (see :mod:`plates.records`); a box with x2 <= x1 or y2 <= y1, or not 4 vertices, is a ``plate_geometry``
    warning."""
    stem = strip_extension(os.path.basename(name))
    match = _CCPD.match(stem)
    if not match:
        return Rejected("not a CCPD name (area-tilt-box-vertices-indices-brightness-blur)")
    indices = [int(i) for i in match.group(9).split("_")]
    tables = [CCPD_PROVINCES, CCPD_ALPHABETS] + [CCPD_ADS] * (len(indices) - 2)
    chars = []
    for position, (value, table) in enumerate(zip(indices, tables)):
        if value >= len(table):
            return Rejected(f"CCPD character {position} has index {value}, beyond its table of {len(table)}")
        chars.append(table[value])
    number = "".join(chars)
    province = province_for_abbreviation(chars[0]) or UNKNOWN
    green = len(indices) == 8
    given = {PLATE_COUNTRY: "中国", PLATE_PROVINCE: province, PLATE_NUMBER: number,
             PLATE_COLOUR: "绿色" if green else "蓝色", PLATE_LAYERS: "单层车牌",
             PLATE_USAGE: "新能源车牌" if green else "燃油车车牌"}
    plate = {name: given.get(name, UNKNOWN) for name in PLATE_FIELDS}
    vehicle = dict.fromkeys(VEHICLE_FIELDS, UNKNOWN)
    area, tilt_h, tilt_v, x1, y1, x2, y2 = (int(match.group(i)) for i in range(1, 8))
    box = [x1, y1, x2, y2]
    vertices = [[int(v) for v in point.split("&")] for point in match.group(8).split("_")]
    warnings = plate_warnings(plate)
    if x2 <= x1 or y2 <= y1:
        warnings.append(f"plate_geometry: box {box} is empty (needs x1 < x2 and y1 < y2)")
    if len(vertices) != 4:
        warnings.append(f"plate_geometry: {len(vertices)} vertices, expected 4")
    extra = {GEOMETRY_KEY: [{"box": box, "vertices": vertices}],
             CCPD_KEY: {"area": area, "tilt_horizontal": tilt_h, "tilt_vertical": tilt_v,
                        "brightness": int(match.group(10)), "blur": int(match.group(11))}}
    return ParsedName({VEHICLE_GROUP: vehicle, PLATE_GROUP: [plate]}, [], warnings, extra)


def geometry_warnings(geometry: Any, width: int, height: int) -> list[str]:
    """``plate_geometry`` warnings for boxes or vertices outside a ``width`` x ``height`` image (CCPD points
    are pixel positions, so at most width - 1 and height - 1; the box's far corner may equal the size)."""
    out = []
    for index, entry in enumerate(geometry or ()):
        if not entry:
            continue
        x1, y1, x2, y2 = entry["box"]
        if min(x1, y1) < 0 or x2 > width or y2 > height:
            out.append(f"plate_geometry: plate {index} box {entry['box']} lies outside the {width}x{height} image")
        if any(not (0 <= x < width and 0 <= y < height) for x, y in entry.get("vertices", ())):
            out.append(f"plate_geometry: plate {index} vertices lie outside the {width}x{height} image")
    return out


def clear_caches() -> None:
    """Forget memoised name fragments and normalised values (benchmarks time cold runs)."""
    for cached in (_labels_text, _vehicle_segment, _plate_fields):
        cached.cache_clear()
    clear_label_caches()
