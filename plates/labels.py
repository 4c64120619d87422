"""Label vocabularies and normalisation shared by every stage.

The vocabularies live as data in the repository's ``labels/`` folder (or ``$PLATES_LABELS_DIR``); this module
only loads them and applies them, so parse, teach, build and eval agree on what '单层' or '车头' means.
Unknown values are kept verbatim and reported, never dropped.

``labels/fields.yaml`` is also the field table (:data:`FIELD_TABLE`): each field's order, group, slug and kind,
its role (what code finds it by: :func:`field_for_role`, :data:`PLATE_COLOUR`, …), its slot in the seed's file-name
grammar and an open string's bounds in the answer schema. :data:`VEHICLE_FIELDS`, :data:`PLATE_FIELDS` and
:data:`FIELDS` are read from it once, at import, and every stage iterates them or names a field by its role, so a
new field is an edit in ``labels/`` (see CONTRIBUTING.md and labels/README.md).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from plates.errors import UserError
from plates.resources import labels_dir as shipped

VEHICLE_GROUP = "车辆属性"
PLATE_GROUP = "车牌属性"
GROUPS = (VEHICLE_GROUP, PLATE_GROUP)
UNKNOWN = "未知"
NO_PLATE = "无车牌"  # a vehicle with no plate, where a plate value is shown (split strata, report slices)
KINDS = ("closed", "open", "free_text", "box")
# What code finds a field by (``role:`` in fields.yaml), with the group and kinds each role allows. Every role but
# the optional plate box is required: plate checks, the file-name grammars, synth and the scorers key on them.
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "vehicle_brand": (VEHICLE_GROUP, ("closed", "open", "free_text")),
    "vehicle_type": (VEHICLE_GROUP, ("closed", "open")),
    "vehicle_colour": (VEHICLE_GROUP, ("closed", "open")),
    "vehicle_orientation": (VEHICLE_GROUP, ("closed", "open")),
    "plate_country": (PLATE_GROUP, ("closed", "open")),
    "plate_province": (PLATE_GROUP, ("closed", "open")),
    "plate_number": (PLATE_GROUP, ("free_text",)),
    "plate_colour": (PLATE_GROUP, ("closed", "open")),
    "plate_layers": (PLATE_GROUP, ("closed", "open")),
    "plate_usage": (PLATE_GROUP, ("closed", "open")),
    "plate_box": (PLATE_GROUP, ("box",)),
}
OPTIONAL_ROLES = frozenset({"plate_box"})
BOUND_KEYS = ("chars", "longest_word", "words")
# Keys of a field's row that describe the table's structure rather than its vocabulary (plates.tiny_model leaves
# their lines out of its tokenizer corpus).
STRUCTURE_KEYS = ("role", "slot", "slot_rest", "bounds")
ROW_KEYS = frozenset({"group", "slug", "kind", "values", "optional", "open", "free_text", *STRUCTURE_KEYS})

_SEPARATORS = re.compile(r"[\s\-_.·•・]+")
_CJK = re.compile(r"[\u4e00-\u9fff]")


def labels_dir() -> Path:
    """Where the vocabularies live: ``$PLATES_LABELS_DIR`` or the shipped ``labels/`` (see plates.resources)."""
    return shipped()


@dataclass(frozen=True)
class StringBounds:
    """An open string field's bounds for the answer schema: words of 1..``longest_word`` characters of the regex
    class ``chars`` (which may name ``{cjk}``, ``{scripts}`` and ``{plate_chars}``, filled in by plates.schema),
    at most ``words`` of them, joined by single spaces."""

    chars: str
    longest_word: int
    words: int


@dataclass(frozen=True)
class FieldSpec:
    """One row of the field table: ``name`` (the answer key), ``group``, ``slug`` (ASCII, for code, templates and
    file names), ``kind`` (closed, open, free_text or box) and ``order`` (position in answers, from the file order).

    ``optional`` fields (the plate box ``车牌位置``, kind ``box``: ``[x1, y1, x2, y2]`` integers, original-image
    pixels) may be left out of an answer; they are not in :data:`FIELDS`, so per-field scoring, prompts and
    label tallies stay as they were, and an answer carries them only when asked (``answer_from_labels(boxes=…)``).

    ``role``: what code finds the field by (one of :data:`ROLES`, or None); ``slot``: its position in its group's
    part of a seed file name (``车辆属性:品牌-朝向-类型-颜色``), None when names do not carry it; ``slot_rest``: the
    slot that takes the '-'-separated pieces beyond the grammar's count (brands and numbers may contain '-');
    ``bounds``: an open string's :class:`StringBounds` in the answer schema, or None."""

    name: str
    group: str
    slug: str
    kind: str
    order: int
    optional: bool = False
    role: str | None = None
    slot: int | None = None
    slot_rest: bool = False
    bounds: StringBounds | None = None


class FieldTableError(UserError, ValueError):
    """``fields.yaml`` breaks a rule of the field table (the message names the file, the field and the rule): a
    user's edit of ``labels/``, reported in one line like any other user error."""


def _field_kind(spec: dict[str, Any], where: str = "fields.yaml") -> str:
    """``kind``, or the older ``open`` / ``free_text`` flags of a labels folder written before ``kind``."""
    kind = spec.get("kind") or ("free_text" if spec.get("free_text") else "open" if spec.get("open") else "closed")
    if kind not in KINDS:
        raise FieldTableError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    return kind


def _string_bounds(where: str, name: str, raw: Any) -> StringBounds | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) != set(BOUND_KEYS) or not isinstance(raw["chars"], str) or not all(
            isinstance(raw[key], int) and not isinstance(raw[key], bool) and raw[key] > 0
            for key in ("longest_word", "words")):
        raise FieldTableError(f"{where}: field {name} has bounds {raw!r}; expected {{chars: REGEX CLASS, "
                              f"longest_word: N, words: N}} with positive whole numbers")
    return StringBounds(raw["chars"], raw["longest_word"], raw["words"])


def read_field_table(directory: str | Path | None = None) -> tuple[FieldSpec, ...]:
    """The field table of ``fields.yaml``, in file order (which is answer order), checked: known groups, kinds
    and roles, each role once and every required role present, each group's slots 0, 1, … without gaps, at most
    one ``slot_rest`` per group, bounds only on open strings."""
    path = Path(directory or labels_dir()) / "fields.yaml"
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    table = []
    for order, (name, spec) in enumerate((data.get("fields") or {}).items()):
        unknown = sorted(set(spec) - ROW_KEYS)
        if unknown:
            raise FieldTableError(f"{path}: field {name} has unknown keys {', '.join(unknown)}; a field's keys are "
                                  f"{', '.join(sorted(ROW_KEYS))}")
        if spec.get("group") not in GROUPS:
            raise FieldTableError(
                f"{path}: field {name} has group {spec.get('group')!r}, not one of {', '.join(GROUPS)}")
        kind, optional = _field_kind(spec, str(path)), bool(spec.get("optional", False))
        if kind == "box" and (not optional or spec["group"] != PLATE_GROUP):
            raise FieldTableError(f"{path}: box field {name} must be an optional {PLATE_GROUP} field")
        role, slot = spec.get("role"), spec.get("slot")
        if role is not None and role not in ROLES:
            raise FieldTableError(f"{path}: field {name} has role {role!r}, not one of {', '.join(ROLES)}")
        if role is not None and (ROLES[role][0] != spec["group"] or kind not in ROLES[role][1]):
            raise FieldTableError(f"{path}: field {name} has role {role}, which needs a {ROLES[role][0]} field "
                                  f"of kind {' or '.join(ROLES[role][1])}")
        if slot is not None and (isinstance(slot, bool) or not isinstance(slot, int) or slot < 0 or optional):
            raise FieldTableError(f"{path}: field {name} has slot {slot!r}; a slot is a whole number from 0, "
                                  "and optional fields have none")
        if spec.get("slot_rest") and slot is None:
            raise FieldTableError(f"{path}: field {name} has slot_rest but no slot")
        bounds = _string_bounds(str(path), name, spec.get("bounds"))
        if bounds is not None and kind not in ("open", "free_text"):
            raise FieldTableError(f"{path}: field {name} has bounds, but only open and free_text fields take them")
        table.append(FieldSpec(name=name, group=spec["group"], slug=str(spec.get("slug") or name), kind=kind,
                               order=order, optional=optional, role=role, slot=slot,
                               slot_rest=bool(spec.get("slot_rest", False)), bounds=bounds))
    _check_roles(path, table)
    for group in GROUPS:
        _check_slots(path, group, table)
    return tuple(table)


def _check_roles(path: Path, table: list[FieldSpec]) -> None:
    seen: dict[str, str] = {}
    for spec in table:
        if spec.role is not None:
            if spec.role in seen:
                raise FieldTableError(f"{path}: role {spec.role} is given to both {seen[spec.role]} and {spec.name}")
            seen[spec.role] = spec.name
    missing = [role for role in ROLES if role not in seen and role not in OPTIONAL_ROLES]
    if missing:
        raise FieldTableError(f"{path}: no field has role {', '.join(missing)} (code finds these fields by role: "
                              "give the field that means it `role: NAME`)")


def _check_slots(path: Path, group: str, table: list[FieldSpec]) -> None:
    slotted = sorted((spec.slot, spec.name) for spec in table if spec.group == group and spec.slot is not None)
    slots = [slot for slot, _ in slotted]
    if slots != list(range(len(slots))):
        taken = ", ".join(f"{name}={slot}" for slot, name in slotted)
        raise FieldTableError(f"{path}: the {group} slots must be 0, 1, … once each without gaps; they are {taken}")
    rest = [spec.name for spec in table if spec.group == group and spec.slot_rest]
    if len(rest) > 1:
        raise FieldTableError(f"{path}: only one {group} field may have slot_rest; {', '.join(rest)} do")


FIELD_TABLE = read_field_table()
VEHICLE_FIELDS = tuple(f.name for f in FIELD_TABLE if f.group == VEHICLE_GROUP and not f.optional)
PLATE_FIELDS = tuple(f.name for f in FIELD_TABLE if f.group == PLATE_GROUP and not f.optional)
OPTIONAL_PLATE_FIELDS = tuple(f.name for f in FIELD_TABLE if f.group == PLATE_GROUP and f.optional)
FIELDS = VEHICLE_FIELDS + PLATE_FIELDS
SLUGS = {f.name: f.slug for f in FIELD_TABLE}
FIELD_ROLES = {f.role: f.name for f in FIELD_TABLE if f.role is not None}  # role -> field name


def field_for_role(role: str) -> str:
    """The name of the field with ``role`` (``field_for_role("plate_colour")`` -> '车牌颜色')."""
    if role not in ROLES:
        raise KeyError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role not in FIELD_ROLES:
        raise KeyError(f"no field of {labels_dir() / 'fields.yaml'} has role {role}")
    return FIELD_ROLES[role]


def field_spec(name: str) -> FieldSpec:
    """The field table's row of the field ``name``."""
    return _SPECS[name]


def slot_fields(group: str) -> tuple[str, ...]:
    """The fields a seed file name carries for ``group``, in slot order (the grammar: their values joined by '-')."""
    return tuple(f.name for f in sorted((f for f in FIELD_TABLE if f.group == group and f.slot is not None),
                                        key=lambda f: f.slot))


def slot_rest(group: str) -> int | None:
    """The slot of ``group`` that takes a name's '-'-separated pieces beyond the grammar's count, or None."""
    return next((f.slot for f in FIELD_TABLE if f.group == group and f.slot_rest), None)


_SPECS = {f.name: f for f in FIELD_TABLE}
VEHICLE_BRAND = field_for_role("vehicle_brand")
VEHICLE_TYPE = field_for_role("vehicle_type")
VEHICLE_COLOUR = field_for_role("vehicle_colour")
VEHICLE_ORIENTATION = field_for_role("vehicle_orientation")
PLATE_COUNTRY = field_for_role("plate_country")
PLATE_PROVINCE = field_for_role("plate_province")
PLATE_NUMBER = field_for_role("plate_number")
PLATE_COLOUR = field_for_role("plate_colour")
PLATE_LAYERS = field_for_role("plate_layers")
PLATE_USAGE = field_for_role("plate_usage")
PLATE_BOX = FIELD_ROLES.get("plate_box")  # 车牌位置, None in a table without one


def fold(text: str) -> str:
    """Matching key: NFKC (full-width to half-width), lower case, no surrounding space."""
    return unicodedata.normalize("NFKC", str(text)).strip().lower()


@dataclass(frozen=True)
class Vocabulary:
    """One field's canonical values and the synonym lookup built from them."""

    field: str
    group: str
    open: bool
    free_text: bool
    canonical: tuple[str, ...]
    lookup: dict[str, str]


@dataclass(frozen=True)
class Normalised:
    value: str
    known: bool


@functools.lru_cache(maxsize=None)
def load_vocabularies(directory: str | None = None) -> dict[str, Vocabulary]:
    """Load ``fields.yaml`` into per-field vocabularies (cached: hot paths call this per value)."""
    path = Path(directory) if directory else labels_dir()
    data = yaml.safe_load((path / "fields.yaml").read_text(encoding="utf-8"))
    unknown_synonyms = [fold(s) for s in data.get("unknown_synonyms", [])]
    vocabularies: dict[str, Vocabulary] = {}
    for field, spec in data["fields"].items():
        lookup = {s: UNKNOWN for s in unknown_synonyms}
        canonical = []
        for value, synonyms in (spec.get("values") or {}).items():
            canonical.append(value)
            for name in [value, *(synonyms or [])]:
                lookup.setdefault(fold(name), value)
        vocabularies[field] = Vocabulary(
            field=field,
            group=spec["group"],
            open=_field_kind(spec) != "closed",
            free_text=_field_kind(spec) == "free_text",
            canonical=tuple(canonical),
            lookup=lookup,
        )
    missing = set(FIELDS) - set(vocabularies)
    if missing:
        raise ValueError(f"{path / 'fields.yaml'} lacks fields: {', '.join(sorted(missing))}")
    return vocabularies


@functools.lru_cache(maxsize=None)
def load_plate_rules(directory: str | None = None) -> dict[str, Any]:
    path = Path(directory) if directory else labels_dir()
    return yaml.safe_load((path / "plates.yaml").read_text(encoding="utf-8"))


def canonical_values(field: str) -> tuple[str, ...]:
    """The closed list of answers for an enumerated field (without '未知')."""
    return load_vocabularies()[field].canonical


def normalise(field: str, raw: Any) -> Normalised:
    """Map a raw value to its canonical form. Unknown values come back verbatim with ``known=False``."""
    if raw is None:
        return Normalised(UNKNOWN, True)
    return _normalise_text(field, raw if isinstance(raw, str) else str(raw))


@functools.lru_cache(maxsize=65536)
def _normalise_text(field: str, raw: str) -> Normalised:
    vocab = load_vocabularies()[field]
    text = unicodedata.normalize("NFKC", raw).strip()
    if vocab.free_text:
        if fold(text) in vocab.lookup:
            return Normalised(UNKNOWN, True)
        return Normalised(normalise_plate_number(text), True)
    hit = vocab.lookup.get(text.lower())
    if hit is not None:
        return Normalised(hit, True)
    squeezed = _SEPARATORS.sub("", text.lower())
    hit = vocab.lookup.get(squeezed)
    if hit is not None:
        return Normalised(hit, True)
    return Normalised(text, False)


def clear_caches() -> None:
    """Forget memoised normalisations and plate checks (the vocabularies and rules stay loaded)."""
    _normalise_text.cache_clear()
    plate_checks.cache_clear()


def normalise_plate_number(raw: str) -> str:
    """Canonical plate number: half-width, upper case; mainland numbers lose their separators
    ('云K CM158' -> '云KCM158'), foreign numbers keep single spaces ('14 11586')."""
    text = unicodedata.normalize("NFKC", str(raw)).strip().upper()
    if text and _CJK.match(text):
        return _SEPARATORS.sub("", text)
    return re.sub(r"\s+", " ", text)


def plate_key(raw: str) -> str:
    """Comparison key for plate numbers: no spaces, hyphens, dots or width differences."""
    if not raw.isascii() or not unicodedata.is_normalized("NFKC", raw):
        raw = unicodedata.normalize("NFKC", str(raw))
    return _SEPARATORS.sub("", raw.upper())


def province_for_abbreviation(abbreviation: str) -> str | None:
    for province, abbr in load_plate_rules()["abbreviations"].items():
        if abbr == abbreviation:
            return province
    return None


def abbreviation_for_province(province: str) -> str | None:
    return load_plate_rules()["abbreviations"].get(province)


@dataclass(frozen=True)
class _PlateRules:
    ordinary: re.Pattern
    new_energy: re.Pattern
    plain: re.Pattern  # see PlateChecks.plain_number
    new_energy_length: int
    abbreviations: frozenset
    province_abbr: dict
    suffixes: frozenset
    suffix_lengths: tuple[int, ...]  # longest first: the longest suffix a number ends with counts
    suffix_ends: frozenset  # last characters of the suffixes
    suffix_usage: dict
    usage_colours: dict


@functools.lru_cache(maxsize=1)
def _plate_rules() -> _PlateRules:
    """plates.yaml compiled once: plate_warnings runs for every parsed name (hot path)."""
    rules = load_plate_rules()
    abbrs = "".join(rules["abbreviations"].values())
    letters = rules["letters"]
    serial = f"[{letters}0-9]"
    suffixes = "|".join(sorted(rules["special_suffixes"], key=len, reverse=True))
    n = rules["serial_length"]["ordinary"]
    m = rules["serial_length"]["new_energy"]
    suffix_ends = frozenset(s[-1] for s in rules["special_suffixes"])
    plain_serial = "[" + "".join(c for c in letters + "0123456789" if c not in suffix_ends) + "]"
    return _PlateRules(
        ordinary=re.compile(f"[{abbrs}][{letters}](?:{serial}{{{n}}}|{serial}{{{n - 1}}}(?:{suffixes})"
                            f"|{serial}{{{n - 2}}}(?:{suffixes}))"),
        new_energy=re.compile(f"[{abbrs}][{letters}]{serial}{{{m}}}"),
        plain=re.compile(f"[{abbrs}][{letters}] ?(?:{plain_serial}{{{n}}}|{plain_serial}{{{m}}})"),
        new_energy_length=m + 2,
        abbreviations=frozenset(abbrs),
        province_abbr=dict(rules["abbreviations"]),
        suffixes=frozenset(rules["special_suffixes"]),
        suffix_lengths=tuple(sorted({len(s) for s in rules["special_suffixes"]}, reverse=True)),
        suffix_ends=suffix_ends,
        suffix_usage={k: v for k, v in rules["special_suffixes"].items() if v},
        usage_colours={k: frozenset(v) for k, v in rules["usage_colours"].items()},
    )


_HK_MACAU = frozenset(("香港特别行政区", "澳门特别行政区"))
_NEV_OK_USAGES = frozenset((UNKNOWN, "新能源车牌", "货车车牌", "出租车车牌"))


def plate_warnings(plate: dict[str, str]) -> list[str]:
    """Consistency checks of one canonical plate: number pattern, abbreviation vs province,
    colour vs usage. Each warning is 'code: detail'; foreign and unknown plates only get the checks that apply."""
    get = plate.get
    number = get(PLATE_NUMBER, UNKNOWN)
    checks = plate_checks(get(PLATE_COUNTRY, UNKNOWN), get(PLATE_PROVINCE, UNKNOWN), get(PLATE_COLOUR, UNKNOWN),
                          get(PLATE_USAGE, UNKNOWN))
    return checks.warnings(number, plate_key(number) if number != UNKNOWN else "")


@functools.lru_cache(maxsize=4096)
def plate_checks(country: str, province: str, colour: str, usage: str) -> PlateChecks:
    """The :class:`PlateChecks` of plates with these canonical fields (few combinations, so memoised)."""
    return PlateChecks(country, province, colour, usage)


class PlateChecks:
    """:func:`plate_warnings` for plates sharing country, province, colour and usage: what does not depend on
    the number is worked out once, so checking a number (``warnings``) costs a regex match and a few lookups."""

    __slots__ = ("rules", "mainland", "maybe_mainland", "check_numbers", "check_plain_numbers", "usage", "province",
                 "abbreviation", "new_energy_usage", "new_energy_usage_ok", "conflicting_suffixes", "colour_warning")

    def __init__(self, country: str, province: str, colour: str, usage: str):
        rules = self.rules = _plate_rules()
        self.mainland = country == "中国"
        self.maybe_mainland = country == UNKNOWN  # mainland if the number starts with a province abbreviation
        self.check_numbers = province not in _HK_MACAU
        self.check_plain_numbers = self.check_numbers and (self.mainland or self.maybe_mainland)
        self.usage = usage
        self.province = province
        self.abbreviation = rules.province_abbr.get(province) if province != UNKNOWN else None
        self.new_energy_usage = usage == "新能源车牌"
        self.new_energy_usage_ok = usage in _NEV_OK_USAGES
        self.conflicting_suffixes = frozenset(
            suffix for suffix, implied in rules.suffix_usage.items() if usage not in (UNKNOWN, implied))
        allowed = rules.usage_colours.get(usage)
        self.colour_warning = (f"colour_usage: {colour} plate with usage {usage}"
                               if allowed and colour != UNKNOWN and colour not in allowed
                               and (self.mainland or self.maybe_mainland) else None)

    def warnings(self, number: str, key: str) -> list[str]:
        """'code: detail' warnings of a number; ``key`` is ``plate_key(number)``, '' for an unknown number."""
        rules = self.rules
        warnings: list[str] = []
        if key and self.check_numbers and (self.mainland or (self.maybe_mainland and key[0] in rules.abbreviations)):
            new_energy = len(key) == rules.new_energy_length and rules.new_energy.fullmatch(key) is not None
            if not new_energy and not rules.ordinary.fullmatch(key):
                warnings.append(f"plate_pattern: {number} is not a mainland plate number")
            else:
                self._length_warning(number, new_energy, warnings)
            if key[0] in rules.abbreviations:
                self._province_warning(number, key[0], warnings)
            if key[-1] in rules.suffix_ends:
                for length in rules.suffix_lengths:  # the longest special suffix the number ends with
                    suffix = key[-length:]
                    if suffix in rules.suffixes:
                        if suffix in self.conflicting_suffixes:
                            warnings.append(f"suffix_usage: {number} ends with {suffix} but usage is {self.usage}")
                        break
        if self.colour_warning:
            warnings.append(self.colour_warning)
        return warnings

    def plain_number(self, raw: str) -> tuple[str, list[str]] | None:
        """(canonical number, :meth:`warnings`) of a raw number in the plain mainland form, else None: a province
        abbreviation, a letter, an optional space and the ordinary or new-energy count of serial characters, none
        a special suffix ('云K CM158', '辽B DH4203'). The form settles most checks, so this costs one regex match."""
        if not self.rules.plain.fullmatch(raw):
            return None
        number = raw.replace(" ", "")  # canonical, and its own plate_key
        warnings: list[str] = []
        if self.check_plain_numbers:
            self._length_warning(number, len(number) == self.rules.new_energy_length, warnings)
            self._province_warning(number, number[0], warnings)
        if self.colour_warning:
            warnings.append(self.colour_warning)
        return number, warnings

    def _length_warning(self, number: str, new_energy: bool, warnings: list[str]) -> None:
        """A valid mainland number's length (8: new-energy) against the usage."""
        if new_energy:
            if not self.new_energy_usage_ok:
                warnings.append(f"plate_length: {number} has 8 characters (new-energy) but usage is {self.usage}")
        elif self.new_energy_usage:
            warnings.append(f"plate_length: new-energy plate {number} should have 8 characters")

    def _province_warning(self, number: str, first: str, warnings: list[str]) -> None:
        """The number's province abbreviation ``first`` against the labelled province."""
        if self.abbreviation and first != self.abbreviation:
            warnings.append(f"province_mismatch: {number} starts with {first} but province is {self.province}")


def unknown_value_warnings(labels: dict[str, Any]) -> list[str]:
    """'unknown_value: field=value' for every value outside its vocabulary."""
    out = []
    for field, value in iter_field_values(labels):
        if field == PLATE_NUMBER or value == UNKNOWN:
            continue
        if value not in load_vocabularies()[field].canonical:
            out.append(f"unknown_value: {field}={value}")
    return out


def iter_field_values(labels: dict[str, Any]) -> Iterable[tuple[str, str]]:
    vehicle = labels.get(VEHICLE_GROUP) or {}
    for field in VEHICLE_FIELDS:
        yield field, vehicle.get(field, UNKNOWN)
    for plate in labels.get(PLATE_GROUP) or []:
        for field in PLATE_FIELDS:
            yield field, plate.get(field, UNKNOWN)


def normalise_vehicle(raw: dict[str, Any]) -> dict[str, str]:
    return {f: normalise(f, raw.get(f)).value for f in VEHICLE_FIELDS}


def normalise_plate(raw: dict[str, Any]) -> dict[str, str]:
    return {f: normalise(f, raw.get(f)).value for f in PLATE_FIELDS}


def answer_from_labels(labels: dict[str, Any], boxes: list[Any] | None = None) -> dict[str, Any]:
    """The JSON answer the model is taught for a record's labels (schema: ``eval/answer.schema.json``).

    One plate gives the seed's shape, ``"车牌属性": {...}``; no plate gives ``[]`` and several plates a list of
    objects, so single-plate answers stay exactly as in the seed while every image still has one valid answer.
    ``boxes`` (grounding only; ``plates.records.plate_boxes``): one entry per plate, a box or None; a plate with a
    box gets :data:`PLATE_BOX` (any value, e.g. ms-swift's ``<bbox>`` tag) at its place in the field table.
    Without ``boxes`` no answer carries a box.
    """
    vehicle = normalise_vehicle(labels.get(VEHICLE_GROUP) or {})
    plates = [normalise_plate(p) for p in labels.get(PLATE_GROUP) or []]
    if boxes is not None and PLATE_BOX is not None:
        plates = [_with_box(plate, box) for plate, box in zip(plates, [*boxes, *[None] * len(plates)])]
    return {VEHICLE_GROUP: vehicle, PLATE_GROUP: plates[0] if len(plates) == 1 else plates}


def _with_box(plate: dict[str, Any], box: Any) -> dict[str, Any]:
    """``plate`` with ``PLATE_BOX: box`` inserted at the box field's place in the table (None: unchanged)."""
    if box is None:
        return plate
    order = [f.name for f in FIELD_TABLE if f.group == PLATE_GROUP and (f.name in plate or f.name == PLATE_BOX)]
    return {name: box if name == PLATE_BOX else plate[name] for name in order}


def plates_of_answer(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The list of plates in an answer, whichever of the three shapes it uses."""
    value = answer.get(PLATE_GROUP)
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [p for p in value if isinstance(p, dict)]
    return []
