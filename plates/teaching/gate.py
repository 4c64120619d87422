"""Consistency gate: does a teacher's description agree with the record's labels?

Teachers invent things. In the seed the free descriptions wrote '浙F-92639' for the 云F 92639 plate and
'EK CM158' for 云K CM158, and nothing noticed. Every description `plates teach` writes goes through
:func:`check`, and `plates build` trains only on those whose verdict is ``ok``.

The checks are deliberately conservative (a false alarm costs one description, a miss teaches a wrong plate):

* ``plate_missing`` / ``plate_misread`` — each labelled plate number must appear in the text, ignoring width,
  case and separators ('云K CM158', '云K·CM158', '云KCM158' all count). When it does not, rapidfuzz tells a
  near miss (a misread: 'EK CM158') from an absent number.
* ``plate_contradiction`` — no other plate-like string ('浙F-92639') may appear; partial mentions of the
  labelled number ('CM158') are fine.
* ``plate_unlabelled`` — a plate number written for an image labelled with no plate.
* ``brand_mismatch``, ``type_mismatch``, ``province_mismatch`` — a vocabulary word (``labels/fields.yaml``,
  via :mod:`plates.labels`) naming a different value than the label; unknown labels contradict nothing.
* ``colour_mismatch`` / ``plate_colour_mismatch`` — a colour attached to the vehicle ('蓝色的东风货车', '车身为白色')
  or to the plate ('黄色车牌', '蓝底', '车牌颜色为蓝色') that differs from the label.
* ``layers_mismatch`` — '双层车牌' for a single-layer plate and vice versa.
* ``empty`` — no text at all.

Each reason is ``"code: detail"``; :func:`reason_code` gives the code for summaries.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from plates.labels import (
    PLATE_COLOUR, PLATE_GROUP, PLATE_LAYERS, PLATE_NUMBER, PLATE_PROVINCE, UNKNOWN, VEHICLE_BRAND, VEHICLE_COLOUR,
    VEHICLE_GROUP, VEHICLE_TYPE, fold, load_plate_rules, load_vocabularies, normalise, plate_key,
)

OK = "ok"
FLAGGED = "flagged"

# A near miss at or above this rapidfuzz score is reported as a misread rather than a missing number.
MISREAD_SCORE = 70.0

# Brand names that are also ordinary words (奔驰 'to gallop', 现代 'modern', 理想 'ideal' …): they count as
# a brand only next to a brand or vehicle word.
COMMON_WORD_BRANDS = frozenset({
    "奔驰", "现代", "理想", "长城", "红旗", "大众", "长安", "解放", "金龙", "海格", "中通", "吉利", "江淮", "金杯",
    "日产", "大通", "北汽", "时风",
})
_BRAND_CONTEXT_AFTER = re.compile(r"^(?:牌|品牌|汽车|集团|车标|标志|旗下|的标志|的车标|的logo|logo|轿车|越野|suv|mpv|"
                                  r"客车|货车|卡车|重卡|轻卡|面包车|皮卡|商务车|大巴|新能源)", re.IGNORECASE)
_BRAND_CONTEXT_BEFORE = re.compile(r"(?:品牌|品牌为|品牌是|品牌:|品牌:|一辆|这辆|那辆|辆)$")
# Sub-brands and their makers: naming either is consistent with the other.
RELATED_BRANDS = {"欧曼": "福田", "乘龙": "东风", "哈弗": "长城", "宝骏": "五菱", "海格": "金龙"}
# Vehicle types a description may use for one another without contradicting the label.
RELATED_TYPES = ({"挂车", "重型货车"}, {"客车", "中型客车"}, {"面包车", "MPV"}, {"SUV", "小轿车"})
RELATED_COLOURS = ({"银色", "灰色"}, {"黄色", "金色"})
RELATED_PLATE_COLOURS = ({"黄绿色", "绿色"}, {"黄绿色", "黄色"})

_SEPARATOR_CLASS = r"[\s\-_.·•・]"
# What may sit between a colour and the vehicle noun it describes: '的', a (masked) brand, '牌', a size word.
_COLOUR_GAP = r"(?:的)?\u3000*(?:牌)?(?:的)?[轻微中重大小型新能源电动家用豪华商务越野]{0,4}"
_VEHICLE_NOUNS = ("车身", "车辆", "汽车", "轿车", "货车", "卡车", "客车", "面包车", "皮卡", "挂车", "重卡", "轻卡",
                  "大巴", "巴士", "商务车", "越野车", "SUV", "MPV", "车子")
_PLATE_NOUNS = r"(?:车牌|牌照|号牌)"


@dataclass
class GateResult:
    verdict: str
    reasons: list[str] = field(default_factory=list)


def reason_code(reason: str) -> str:
    return reason.split(":", 1)[0].strip()


def _text_form(text: str) -> str:
    return unicodedata.normalize("NFKC", text).upper()


@dataclass(frozen=True)
class _Lexicon:
    """A field's vocabulary as one longest-first regex, mapping each surface form back to its canonical value."""

    pattern: re.Pattern | None
    lookup: dict[str, str]

    def find(self, text: str) -> list[tuple[int, int, str, str]]:
        if self.pattern is None:
            return []
        return [(m.start(), m.end(), m.group(0), self.lookup[fold(m.group(0))]) for m in self.pattern.finditer(text)]


@functools.lru_cache(maxsize=None)
def _lexicon(field_name: str, min_cjk: int = 2) -> _Lexicon:
    vocab = load_vocabularies()[field_name]
    lookup: dict[str, str] = {}
    for surface, value in vocab.lookup.items():
        if value == UNKNOWN or not surface:
            continue
        cjk = any("\u4e00" <= c <= "\u9fff" for c in surface)
        if (cjk and len(surface) < min_cjk) or (not cjk and len(surface) < 3):
            continue
        lookup[surface] = value
    if not lookup:
        return _Lexicon(None, {})
    parts = []
    for surface in sorted(lookup, key=len, reverse=True):
        escaped = re.escape(surface)
        if surface.isascii():
            escaped = rf"(?<![a-z0-9]){escaped}(?![a-z0-9])"
        parts.append(escaped)
    return _Lexicon(re.compile("|".join(parts), re.IGNORECASE), lookup)


@functools.lru_cache(maxsize=1)
def _plate_shape() -> re.Pattern:
    rules = load_plate_rules()
    abbreviations = "".join(rules["abbreviations"].values())
    suffixes = "|".join(sorted((re.escape(s) for s in rules["special_suffixes"]), key=len, reverse=True))
    return re.compile(
        rf"(?<![A-Z0-9])(?:[{abbreviations}]{_SEPARATOR_CLASS}?)?[A-Z0-9](?:{_SEPARATOR_CLASS}?[A-Z0-9]){{4,7}}"
        rf"(?:{suffixes})?(?![A-Z0-9])"
    )


def _colour_words(field_name: str, min_len: int = 1) -> str:
    words = {s for s, v in load_vocabularies()[field_name].lookup.items()
             if v != UNKNOWN and len(s) >= min_len and not s.isascii()}
    return "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))


@functools.lru_cache(maxsize=1)
def _colour_patterns() -> tuple[list[re.Pattern], list[re.Pattern]]:
    body = _colour_words(VEHICLE_COLOUR)
    plate = _colour_words(PLATE_COLOUR)
    nouns = "|".join(_VEHICLE_NOUNS)
    vehicle = [
        re.compile(rf"(?P<c>{_colour_words(VEHICLE_COLOUR, 2)}){_COLOUR_GAP}(?:{nouns})"),
        re.compile(rf"车身(?:的)?(?:颜色)?(?:为|是|呈|呈现|呈现出|采用)(?:了)?(?P<c>{body})"),
    ]
    plate_patterns = [
        re.compile(rf"(?P<c>{plate})(?:色)?(?:的)?{_PLATE_NOUNS}"),
        re.compile(rf"{_PLATE_NOUNS}(?:的)?(?:颜色|底色)(?:为|是|呈)?(?P<c>{plate})"),
        re.compile(rf"{_PLATE_NOUNS}(?:为|是|呈)(?P<c>{plate})"),
        re.compile(r"(?P<c>黄绿|蓝|黄|绿|白|黑)(?:色)?(?:底|牌)(?!照)"),
    ]
    return vehicle, plate_patterns


def _related(a: str, b: str, groups) -> bool:
    return a == b or any(a in g and b in g for g in groups)


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    chars = list(text)
    for start, end in spans:
        for i in range(start, end):
            chars[i] = "\u3000"
    return "".join(chars)


def _check_plates(text: str, plates: list[dict[str, Any]], reasons: list[str]) -> None:
    from rapidfuzz import fuzz

    squeezed = plate_key(text)
    keys = [plate_key(p.get(PLATE_NUMBER, UNKNOWN)) for p in plates if p.get(PLATE_NUMBER, UNKNOWN) != UNKNOWN]
    for plate in plates:
        number = plate.get(PLATE_NUMBER, UNKNOWN)
        if number == UNKNOWN:
            continue
        key = plate_key(number)
        if key in squeezed:
            continue
        best = fuzz.partial_ratio_alignment(key, squeezed) if squeezed else None
        if best is not None and best.score >= MISREAD_SCORE:
            near = squeezed[best.dest_start:best.dest_end]
            reasons.append(f"plate_misread: labelled {number}, text has {near}")
        else:
            reasons.append(f"plate_missing: labelled {number} not in the text")
    foreign_digits = any(k.isdigit() for k in keys)
    seen = set()
    for match in _plate_shape().finditer(text):
        candidate = plate_key(match.group(0))
        digits = sum(c.isdigit() for c in candidate)
        letters = sum("A" <= c <= "Z" for c in candidate)
        has_province = not candidate[0].isascii()
        if digits < 2 or not (letters or has_province or foreign_digits):
            continue
        if any(candidate in k for k in keys) or candidate in seen:
            continue
        seen.add(candidate)
        written = match.group(0).strip()
        if keys:
            reasons.append(f"plate_contradiction: text has {written}, labelled {'/'.join(keys)}")
        elif plates:
            continue
        else:
            reasons.append(f"plate_unlabelled: text has {written}, the image is labelled with no plate")


def _is_brand_mention(text: str, start: int, end: int, surface: str) -> bool:
    if surface not in COMMON_WORD_BRANDS:
        return True
    before = text[max(0, start - 4):start]
    return bool(_BRAND_CONTEXT_AFTER.match(text[end:end + 6]) or _BRAND_CONTEXT_BEFORE.search(before))


def check(text: str | None, labels: dict[str, Any]) -> GateResult:
    """The verdict for one description against one record's canonical labels."""
    if not text or not text.strip():
        return GateResult(FLAGGED, ["empty: no text"])
    form = _text_form(text)
    vehicle = labels.get(VEHICLE_GROUP) or {}
    plates = [p for p in labels.get(PLATE_GROUP) or [] if isinstance(p, dict)]
    reasons: list[str] = []
    _check_plates(form, plates, reasons)

    brand = vehicle.get(VEHICLE_BRAND, UNKNOWN)
    brand_spans = []
    for start, end, surface, value in _lexicon(VEHICLE_BRAND).find(form):
        if not _is_brand_mention(form, start, end, surface):
            continue
        brand_spans.append((start, end))
        if brand != UNKNOWN and value != brand and RELATED_BRANDS.get(brand) != value \
                and RELATED_BRANDS.get(value) != brand:
            reasons.append(f"brand_mismatch: text says {surface}, labelled {brand}")
    rest = _mask(form, brand_spans)

    vehicle_type = vehicle.get(VEHICLE_TYPE, UNKNOWN)
    if vehicle_type != UNKNOWN:
        for _, end, surface, value in _lexicon(VEHICLE_TYPE).find(rest):
            if rest.startswith(("车牌", "牌", "号牌", "专用"), end):  # '挂车车牌' names a plate usage, not the vehicle
                continue
            if not _related(value, vehicle_type, RELATED_TYPES):
                reasons.append(f"type_mismatch: text says {surface}, labelled {vehicle_type}")

    provinces = {p.get(PLATE_PROVINCE, UNKNOWN) for p in plates} - {UNKNOWN}
    if provinces:
        for _, _, surface, value in _lexicon(PLATE_PROVINCE).find(rest):
            if value not in provinces:
                reasons.append(f"province_mismatch: text says {surface}, labelled {'/'.join(sorted(provinces))}")

    vehicle_patterns, plate_patterns = _colour_patterns()
    colour = vehicle.get(VEHICLE_COLOUR, UNKNOWN)
    if colour != UNKNOWN:
        for pattern in vehicle_patterns:
            for match in pattern.finditer(rest):
                said = normalise(VEHICLE_COLOUR, match.group("c")).value
                if said != UNKNOWN and not _related(said, colour, RELATED_COLOURS):
                    reasons.append(f"colour_mismatch: text says {form[match.start():match.end()]}, labelled {colour}")
    plate_colours = {p.get(PLATE_COLOUR, UNKNOWN) for p in plates} - {UNKNOWN}
    if plate_colours:
        for pattern in plate_patterns:
            for match in pattern.finditer(rest):
                said = normalise(PLATE_COLOUR, match.group("c")).value
                if said != UNKNOWN and not any(_related(said, c, RELATED_PLATE_COLOURS) for c in plate_colours):
                    reasons.append(f"plate_colour_mismatch: text says {match.group(0)}, "
                                   f"labelled {'/'.join(sorted(plate_colours))}")

    layers = {p.get(PLATE_LAYERS, UNKNOWN) for p in plates} - {UNKNOWN}
    if layers:
        for match in re.finditer(rf"(单层|双层)(?:的)?(?:{_PLATE_NOUNS}|牌|设计)|{_PLATE_NOUNS}(?:的)?层数(?:为|是)(单层|双层)", rest):
            said = normalise(PLATE_LAYERS, match.group(1) or match.group(2)).value
            if said not in layers:
                reasons.append(f"layers_mismatch: text says {match.group(0)}, labelled {'/'.join(sorted(layers))}")

    reasons = list(dict.fromkeys(reasons))
    return GateResult(FLAGGED if reasons else OK, reasons)
