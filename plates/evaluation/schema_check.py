"""Schema checks: classify jsonschema errors of an answer (missing field, unknown value, wrong type, extra field)
and read the structural checks the scorer's fast path uses straight from the schema."""

from __future__ import annotations

from dataclasses import dataclass
import re
from typing import Any, Callable, Iterable

from plates.evaluation.common import TOP_KEYS
from plates.labels import FIELDS, OPTIONAL_PLATE_FIELDS, PLATE_FIELDS, PLATE_GROUP, VEHICLE_FIELDS

MISSING_FIELD, UNKNOWN_VALUE, WRONG_TYPE, EXTRA_FIELD, BAD_FORMAT, TOO_MANY_PLATES, OTHER = (
    "missing_field", "unknown_value", "wrong_type", "extra_field", "bad_format", "too_many_plates", "other")
VIOLATION_CLASSES = (MISSING_FIELD, UNKNOWN_VALUE, WRONG_TYPE, EXTRA_FIELD, BAD_FORMAT, TOO_MANY_PLATES, OTHER)
_VIOLATION_OF_KEYWORD = {"required": MISSING_FIELD, "enum": UNKNOWN_VALUE, "type": WRONG_TYPE,
                         "additionalProperties": EXTRA_FIELD, "pattern": BAD_FORMAT, "maxLength": BAD_FORMAT,
                         "minLength": BAD_FORMAT, "maxItems": TOO_MANY_PLATES}


@dataclass(frozen=True)
class Violation:
    """One schema violation: its class, where (``车牌属性[1].车牌颜色``) and the field it concerns."""

    kind: str
    path: str
    field: str


def _format_path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(answer)"


def _field_of(parts: list[Any]) -> str:
    for part in reversed(parts):
        if isinstance(part, str) and (part in FIELDS or part in TOP_KEYS or part in OPTIONAL_PLATE_FIELDS):
            return part
    return "(answer)"


_STRING_KEYWORDS = frozenset(("type", "enum", "description", "examples", "pattern", "maxLength", "minLength"))


def _string_test(prop: dict[str, Any]) -> Callable[[str], bool] | None:
    """A predicate for a string's ``pattern``/``minLength``/``maxLength`` (the bounds on open fields), or None
    when it has none. Same semantics as jsonschema: ``re.search``, lengths in code points."""
    pattern, low, high = prop.get("pattern"), prop.get("minLength", 0), prop.get("maxLength")
    if pattern is None and high is None and not low:
        return None
    search = re.compile(pattern).search if pattern is not None else None
    high = high if high is not None else float("inf")

    def test(value: str) -> bool:
        return low <= len(value) <= high and (search is None or search(value) is not None)
    return test


def structural_checks(schema: dict[str, Any]):
    """((vehicle keys, vehicle checks), (plate keys, plate checks), most plates or None), the checks as
    ((field, allowed values or None, string test or None), ...) read from the schema itself; None when the
    schema does not have the generated layout (then jsonschema checks every answer). The plate's optional fields
    (the box) are not in the checks: an answer carrying one goes to jsonschema."""
    try:
        defs = schema["$defs"]
        groups: list[Any] = []
        for name, fields, optional in (("vehicle", VEHICLE_FIELDS, ()), ("plate", PLATE_FIELDS, OPTIONAL_PLATE_FIELDS)):
            spec = defs[name]
            if set(spec["properties"]) - set(optional) != set(fields) or set(spec.get("required", ())) != set(fields) \
                    or spec.get("additionalProperties") is not False:
                return None
            checks = []
            for f in fields:
                prop = spec["properties"][f]
                if prop.get("type") != "string" or set(prop) - _STRING_KEYWORDS:
                    return None
                checks.append((f, frozenset(prop["enum"]) if "enum" in prop else None, _string_test(prop)))
            groups.append((frozenset(fields), tuple(checks)))
        plates = schema["properties"][PLATE_GROUP]
        array = plates.get("else", plates) if isinstance(plates, dict) else {}
        most = array.get("maxItems")
        if set(array) - {"type", "items", "maxItems", "$ref", "if", "then", "else", "description"} \
                or array.get("minItems"):
            return None
        groups.append(most if isinstance(most, int) else None)
        return tuple(groups)
    except (KeyError, TypeError, AttributeError, re.error):
        return None


def schema_violations(validator: Any, answer: Any) -> tuple[Violation, ...]:
    """Every jsonschema error of an answer, classified and reported once per (class, path)."""
    found: dict[tuple[str, str], Violation] = {}
    try:
        errors = list(validator.iter_errors(answer))
    except Exception as exc:  # noqa: BLE001 - exotic Python-literal values (sets, bytes keys)
        return (Violation(WRONG_TYPE, "(answer)", f"(answer): {type(exc).__name__}"),)
    for error in errors:
        parts = list(error.absolute_path)
        kind = _VIOLATION_OF_KEYWORD.get(error.validator, OTHER)
        if kind == TOO_MANY_PLATES and any(p in OPTIONAL_PLATE_FIELDS for p in parts if isinstance(p, str)):
            kind = BAD_FORMAT  # a box of five numbers, not a fifth plate
        instance = error.instance
        if kind == MISSING_FIELD and isinstance(instance, dict):
            names = [n for n in error.validator_value if n not in instance]
        elif kind == EXTRA_FIELD and isinstance(instance, dict):
            allowed = error.schema.get("properties", {})
            names = [n for n in instance if n not in allowed]
        else:
            names = [None]
        for name in names:
            where = parts if name is None else [*parts, name]
            path = _format_path(where)
            field = _field_of(where) if kind != EXTRA_FIELD else (_field_of(parts) if parts else "(answer)")
            found.setdefault((kind, path), Violation(kind, path, field))
    # a value of the wrong type also fails its enum; report the cause once
    return tuple(v for (kind, path), v in found.items()
                 if not (kind == UNKNOWN_VALUE and (WRONG_TYPE, path) in found))
