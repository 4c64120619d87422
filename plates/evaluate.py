"""`plates eval` and `plates compare`: parse, schema-check and score the model's JSON answers field by field.

Pipeline for one answer (pure functions, the CLI only reads files and prints):

1. :func:`parse_response` turns the raw text into a value, strictly first and then leniently, and names the way
   it got there (``json``, ``fence``, ``python``, ``extract``, ``repair``; ``none`` when nothing worked).
2. :class:`Scorer` checks it against ``eval/answer.schema.json``: a structural check built from the schema's own
   enums accepts valid answers quickly; only answers it rejects go through the compiled jsonschema validator,
   whose errors are classified as ``missing_field``, ``unknown_value``, ``wrong_type`` or ``extra_field``.
3. Values are normalised through ``labels/`` and compared with the reference; plates are aligned first
   (:func:`align_plates`) when an image has several. Reference fields equal to '未知' are left out.
4. :class:`Tally` adds up outcomes into the report (:func:`evaluate`), which the CLI prints, writes as JSON or
   Markdown and plots.

Accuracy counts every scored answer: an unparseable answer, a missing field or a missing plate is a wrong
prediction for each reference field it should have covered, so a model cannot gain accuracy by answering less.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import re
import sys
import unicodedata
from collections import Counter, _count_elements
from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, Iterable, Iterator

from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from plates.errors import UserError
from plates.io import atomic_write, progress, write_json
from plates.labels import (
    FIELDS, PLATE_FIELDS, PLATE_GROUP, PLATE_NUMBER, UNKNOWN, VEHICLE_FIELDS, VEHICLE_GROUP, load_vocabularies,
    normalise, plate_key, plate_warnings,
)

MISSING = "(missing)"
NO_PLATE = "无车牌"

JSON, FENCE, PYTHON, EXTRACT, REPAIR, UNPARSEABLE = "json", "fence", "python", "extract", "repair", "none"
PARSE_METHODS = (JSON, FENCE, PYTHON, EXTRACT, REPAIR, UNPARSEABLE)

MISSING_FIELD, UNKNOWN_VALUE, WRONG_TYPE, EXTRA_FIELD, OTHER = (
    "missing_field", "unknown_value", "wrong_type", "extra_field", "other")
VIOLATION_CLASSES = (MISSING_FIELD, UNKNOWN_VALUE, WRONG_TYPE, EXTRA_FIELD, OTHER)
_VIOLATION_OF_KEYWORD = {"required": MISSING_FIELD, "enum": UNKNOWN_VALUE, "type": WRONG_TYPE,
                         "additionalProperties": EXTRA_FIELD}

INCONSISTENCY_CODES = ("province_mismatch", "colour_usage")

FIELD_SLUGS = {
    "车辆品牌": "vehicle_brand", "车辆类型": "vehicle_type", "车辆颜色": "vehicle_colour",
    "车辆朝向": "vehicle_orientation", "车牌国家": "plate_country", "车牌省份": "plate_province",
    "车牌号码": "plate_number", "车牌颜色": "plate_colour", "车牌层数": "plate_layers", "车牌用途": "plate_usage",
}
SUMMARY_KEYS = ("json_valid_rate", "parsed_rate", "schema_valid_rate", "exact_match", "plate_char_accuracy")
SUMMARY_NAMES = {"json_valid_rate": "strict JSON", "parsed_rate": "parsed", "schema_valid_rate": "schema-valid",
                 "exact_match": "exact match", "plate_char_accuracy": "plate chars"}
EXAMPLES_KEPT = 5

_ABSENT = object()
_TOP_KEYS = frozenset((VEHICLE_GROUP, PLATE_GROUP))
_NUMBER_INDEX = PLATE_FIELDS.index(PLATE_NUMBER)
_OTHER_PLATE_FIELDS = tuple(f for f in PLATE_FIELDS if f != PLATE_NUMBER)


# ---------------------------------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Parsed:
    """A response's decoded value and how it was obtained; ``method == 'none'`` means unparseable."""

    value: Any
    method: str

    @property
    def ok(self) -> bool:
        return self.method != UNPARSEABLE


_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\r?\n?(.*?)```", re.S)
_OPEN_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\r?\n?")
_scan_json = json.JSONDecoder().scan_once


def _json_loads(text: str) -> Any:
    """``json.loads`` for a str without its Python-level wrappers (the scorer's hot path)."""
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        return json.loads(text)
    if end != len(text) and text[end:].strip(" \t\n\r"):
        return json.loads(text)
    return value


def _decode(text: str) -> tuple[bool, Any]:
    """JSON, else a Python literal (the seed's single-quoted dicts). Never raises."""
    try:
        return True, _json_loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return True, ast.literal_eval(text.strip())
    except Exception:  # noqa: BLE001 - literal_eval raises many types (SyntaxError, MemoryError, ...)
        return False, None


def _object_spans(text: str) -> list[str]:
    """Top-level balanced ``{...}`` spans, skipping braces inside quoted strings."""
    spans: list[str] = []
    depth = 0
    start = 0
    quote = ""
    escaped = False
    for index, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                spans.append(text[start:index + 1])
        elif depth and char in "\"'":
            quote = char
    return spans


def _mentions_answer(text: str) -> bool:
    return VEHICLE_GROUP in text or PLATE_GROUP in text


def parse_response(text: Any) -> Parsed:
    """Decode a model response. Order: strict JSON (``json``); a fenced code block (``fence``, last block
    first); the whole text as a Python literal (``python``); a ``{...}`` object inside surrounding text, e.g. after
    a reasoning paragraph (``extract``, objects naming an answer group first, last first); json-repair for
    truncated or broken JSON (``repair``). Recovered values must be objects; only strict JSON may decode to
    anything else (it is then a schema violation). Never raises."""
    if not isinstance(text, str):
        if text is None:
            return Parsed(None, UNPARSEABLE)
        return Parsed(text, JSON)
    try:
        return Parsed(_json_loads(text), JSON)
    except (ValueError, RecursionError):
        pass
    if "```" in text:
        for block in reversed(_FENCE.findall(text)):
            ok, value = _decode(block)
            if ok and isinstance(value, dict):
                return Parsed(value, FENCE)
    stripped = text.strip()
    if stripped[:1] == "{":
        ok, value = _decode(stripped)
        if ok and isinstance(value, dict):
            return Parsed(value, PYTHON)
    if "{" not in text:
        return Parsed(None, UNPARSEABLE)
    spans = _object_spans(text)
    for span in sorted(reversed(spans), key=lambda s: not _mentions_answer(s)):
        ok, value = _decode(span)
        if ok and isinstance(value, dict):
            return Parsed(value, EXTRACT)
    return _repair(text)


def _repair(text: str) -> Parsed:
    body = text
    opening = list(_OPEN_FENCE.finditer(body))
    if opening and body.count("```") % 2 == 1:
        body = body[opening[-1].end():]
    anchor = min((i for i in (body.find(VEHICLE_GROUP), body.find(PLATE_GROUP)) if i >= 0), default=-1)
    start = body.rfind("{", 0, anchor) if anchor >= 0 else body.find("{")
    if start < 0:
        start = body.find("{")
    if start < 0:
        return Parsed(None, UNPARSEABLE)
    try:
        import json_repair

        value = json_repair.repair_json(body[start:], return_objects=True)
    except Exception:  # noqa: BLE001 - never crash on model output
        return Parsed(None, UNPARSEABLE)
    if isinstance(value, dict) and value:
        return Parsed(value, REPAIR)
    return Parsed(None, UNPARSEABLE)


# ---------------------------------------------------------------------------------------------------- schema


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
        if isinstance(part, str) and (part in FIELDS or part in _TOP_KEYS):
            return part
    return "(answer)"


# ---------------------------------------------------------------------------------------------------- alignment


@dataclass(frozen=True)
class Alignment:
    """Which reference plate each predicted plate answers: ``pairs`` of (reference index, predicted index),
    reference plates left ``missing`` and predicted plates left ``extra``."""

    pairs: tuple[tuple[int, int], ...]
    missing: tuple[int, ...]
    extra: tuple[int, ...]


def _known(value: Any) -> bool:
    return isinstance(value, str) and value not in (UNKNOWN, MISSING, "")


def plate_similarity(reference: dict[str, Any], predicted: dict[str, Any]) -> tuple[float, int]:
    """How alike two normalised plates are: (plate-number similarity 0-100 by rapidfuzz ratio of the plate
    keys, 0 when either number is unknown; how many of the other five fields agree). Compared as a pair, so
    the number decides and the other fields only break ties."""
    ref_number, pred_number = reference.get(PLATE_NUMBER), predicted.get(PLATE_NUMBER)
    number = fuzz.ratio(ref_number, pred_number) if _known(ref_number) and _known(pred_number) else 0.0
    agree = sum(1 for f in _OTHER_PLATE_FIELDS if _known(reference.get(f)) and reference.get(f) == predicted.get(f))
    return number, agree


def align_plates(references: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> Alignment:
    """Match predicted plates to reference plates one-to-one: greedily take the most similar remaining pair
    (:func:`plate_similarity`; ties go to the earlier reference, then the earlier prediction) until one side
    runs out. Every plate is paired when the counts agree, so two misread plates are still scored field by
    field; the surplus becomes missing (reference) or extra (predicted) plates."""
    n_ref, n_pred = len(references), len(predictions)
    if n_ref == 1 and n_pred == 1:
        return Alignment(((0, 0),), (), ())
    if not n_ref or not n_pred:
        return Alignment((), tuple(range(n_ref)), tuple(range(n_pred)))
    candidates = []
    for i, reference in enumerate(references):
        for j, predicted in enumerate(predictions):
            number, agree = plate_similarity(reference, predicted)
            candidates.append((-number, -agree, i, j))
    candidates.sort()
    used_ref: set[int] = set()
    used_pred: set[int] = set()
    pairs = []
    for _, _, i, j in candidates:
        if i not in used_ref and j not in used_pred:
            used_ref.add(i)
            used_pred.add(j)
            pairs.append((i, j))
    return Alignment(
        tuple(sorted(pairs)),
        tuple(i for i in range(n_ref) if i not in used_ref),
        tuple(j for j in range(n_pred) if j not in used_pred),
    )


# ---------------------------------------------------------------------------------------------------- scoring


@dataclass(slots=True)
class Reference:
    """A reference answer normalised for scoring: canonical values, '未知' for unknown, plate numbers as keys.
    ``raw`` keeps the decoded reference when it is itself a schema-valid answer: a prediction equal to it is
    scored without normalising or aligning anything (the common case for a well-trained model)."""

    vehicle: dict[str, str]
    plates: list[dict[str, str]]
    raw: dict[str, Any] | None = None


class Outcome:
    """How one answer scored. ``pairs`` holds (field, reference, prediction) for every enumerated field whose
    reference is known, ``numbers`` (reference, prediction) plate keys for every known reference plate number,
    ``char_scores`` their character accuracies."""

    __slots__ = ("method", "value", "schema_valid", "violations", "pairs", "numbers", "char_scores",
                 "char_substitutions",
                 "exact", "n_reference_plates", "n_predicted_plates", "missing_plates", "extra_plates",
                 "inconsistencies")

    def wrong(self) -> list[tuple[str, str, str]]:
        """(field, reference, prediction) of every wrong field."""
        return ([pair for pair in self.pairs if pair[1] != pair[2]]
                + [(PLATE_NUMBER, r, p) for r, p in self.numbers if r != p])

    def to_json(self) -> dict[str, Any]:
        return {
            "parse": self.method,
            "schema_valid": self.schema_valid,
            "violations": [[v.kind, v.path] for v in self.violations],
            "exact_match": self.exact,
            "wrong": [list(pair) for pair in self.wrong()],
            "plates": {"reference": self.n_reference_plates, "predicted": self.n_predicted_plates,
                       "missing": self.missing_plates, "extra": self.extra_plates},
            "inconsistencies": list(self.inconsistencies),
        }


class Scorer:
    """Scores answers against references. Holds the compiled schema validator and small caches (normalised
    vocabulary values, consistency verdicts), so it is built once per evaluation.

    ``fast_check=False`` sends every answer through jsonschema (the benchmark's baseline; tests use it to show
    that the fast structural check agrees with jsonschema)."""

    def __init__(self, schema: dict[str, Any] | None = None, fast_check: bool = True):
        from plates.schema import answer_validator, load_schema

        self.schema = schema if schema is not None else load_schema()
        self.validator = answer_validator(self.schema)
        self._checks = self._structural_checks(self.schema) if fast_check else None
        self._value_cache: dict[str, dict[str, str]] = {f: {} for f in FIELDS}
        self._unknown_words = frozenset(load_vocabularies()[PLATE_NUMBER].lookup)
        self._consistency_cache: dict[tuple, tuple[str, ...]] = {}
        self._fast = self._fast_plan() if self._checks is not None and self._canonical_is_fixpoint() else None

    # -- schema ---------------------------------------------------------------------------------------------

    @staticmethod
    def _structural_checks(schema: dict[str, Any]):
        """(vehicle checks, plate checks) as ((field, allowed values or None), ...) read from the schema itself;
        None when the schema does not have the generated layout (then jsonschema checks every answer)."""
        try:
            defs = schema["$defs"]
            groups = []
            for name, fields in (("vehicle", VEHICLE_FIELDS), ("plate", PLATE_FIELDS)):
                spec = defs[name]
                if set(spec["properties"]) != set(fields) or spec.get("additionalProperties") is not False:
                    return None
                checks = []
                for f in fields:
                    prop = spec["properties"][f]
                    if prop.get("type") != "string" or set(prop) - {"type", "enum", "description", "examples"}:
                        return None
                    checks.append((f, frozenset(prop["enum"]) if "enum" in prop else None))
                groups.append((frozenset(fields), tuple(checks)))
            return tuple(groups)
        except (KeyError, TypeError, AttributeError):
            return None

    def _fast_plan(self) -> tuple | None:
        """Per group: exact key set, (field, enum) pairs to check, free-text fields to normalise. Enum values
        are canonical (see :meth:`_canonical_is_fixpoint`), so they are kept as they are."""
        plan: list[Any] = []
        for keys, checks in self._checks:
            for v in (allowed for _, allowed in checks if allowed is not None):
                if not all(type(x) is str for x in v):
                    return None
            plan += [keys, tuple((f, a) for f, a in checks if a is not None),
                     tuple(f for f, a in checks if a is None)]
        return tuple(plan)

    def _canonical_is_fixpoint(self) -> bool:
        """Whether every enum value of the schema normalises to itself; then a schema-valid answer only needs
        its free-text fields normalised."""
        return all(allowed is None or all(self.value(f, v) == v for v in allowed)
                   for _, checks in self._checks for f, allowed in checks)

    def canonical(self, answer: Any) -> tuple[dict[str, str], list[dict[str, str]]] | None:
        """(vehicle, plates) with canonical values when a structural check built from the schema accepts the
        answer, else None (then ask jsonschema). Validates and normalises in one pass: the hot path."""
        if self._fast is None or type(answer) is not dict or answer.keys() != _TOP_KEYS:
            return None
        vehicle_keys, vehicle_enums, vehicle_free, plate_keys, plate_enums, plate_free = self._fast
        caches = self._value_cache
        try:
            raw = answer[VEHICLE_GROUP]
            if type(raw) is not dict or raw.keys() != vehicle_keys:
                return None
            for f, allowed in vehicle_enums:
                if raw[f] not in allowed:
                    return None
            vehicle = dict(raw)
            for f in vehicle_free:
                value = raw[f]
                if type(value) is not str:
                    return None
                hit = caches[f].get(value)
                vehicle[f] = hit if hit is not None else self._cache_value(f, value)
            raw_plates = answer[PLATE_GROUP]
            if type(raw_plates) is dict:
                raw_plates = (raw_plates,)
            elif type(raw_plates) is not list:
                return None
            plates = []
            for raw in raw_plates:
                if type(raw) is not dict or raw.keys() != plate_keys:
                    return None
                for f, allowed in plate_enums:
                    if raw[f] not in allowed:
                        return None
                plate = dict(raw)
                for f in plate_free:
                    value = raw[f]
                    if type(value) is not str:
                        return None
                    if f == PLATE_NUMBER:
                        plate[f] = self.number(value)
                    else:
                        hit = caches[f].get(value)
                        plate[f] = hit if hit is not None else self._cache_value(f, value)
                plates.append(plate)
        except TypeError:  # unhashable value tested against an enum
            return None
        return vehicle, plates

    def fast_valid(self, answer: Any) -> bool:
        """True only for answers the schema accepts (checked without jsonschema); False means 'ask jsonschema'."""
        return self.canonical(answer) is not None

    def violations(self, answer: Any) -> tuple[Violation, ...]:
        """Every schema violation of an answer, classified; empty when valid."""
        if self.fast_valid(answer):
            return ()
        return self._schema_violations(answer)

    def _schema_violations(self, answer: Any) -> tuple[Violation, ...]:
        found: dict[tuple[str, str], Violation] = {}
        try:
            errors = list(self.validator.iter_errors(answer))
        except Exception as exc:  # noqa: BLE001 - exotic Python-literal values (sets, bytes keys)
            return (Violation(WRONG_TYPE, "(answer)", f"(answer): {type(exc).__name__}"),)
        for error in errors:
            parts = list(error.absolute_path)
            kind = _VIOLATION_OF_KEYWORD.get(error.validator, OTHER)
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

    # -- normalisation --------------------------------------------------------------------------------------

    def value(self, field: str, raw: Any) -> str:
        """Canonical value of one answer field (cached per distinct text)."""
        if field == PLATE_NUMBER:
            return self.number(raw)
        if type(raw) is str:
            hit = self._value_cache[field].get(raw)
            return hit if hit is not None else self._cache_value(field, raw)
        if isinstance(raw, (dict, list)):
            return json.dumps(raw, ensure_ascii=False, default=str)
        return normalise(field, raw).value

    def _cache_value(self, field: str, raw: str) -> str:
        cache = self._value_cache[field]
        if len(cache) > 200_000:
            cache.clear()
        value = cache[raw] = normalise(field, raw).value
        return value

    def number(self, raw: Any) -> str:
        """Plate key of a plate number, or '未知' (no spaces, hyphens, dots or width differences)."""
        if type(raw) is str and raw.isalnum() and unicodedata.is_normalized("NFKC", raw):
            return UNKNOWN if raw.lower() in self._unknown_words else raw.upper()
        if raw is None:
            return UNKNOWN
        if type(raw) is not str:
            if isinstance(raw, (dict, list)):
                return json.dumps(raw, ensure_ascii=False, default=str)
            raw = str(raw)
        text = unicodedata.normalize("NFKC", raw)
        if text.strip().lower() in self._unknown_words:
            return UNKNOWN
        return plate_key(text) or UNKNOWN

    def group(self, raw: dict[str, Any], fields: tuple[str, ...], absent: str) -> dict[str, str]:
        """Normalise one group (vehicle or plate); fields not in ``raw`` get ``absent``."""
        caches = self._value_cache
        out = {}
        for f in fields:
            value = raw.get(f, _ABSENT)
            if value is _ABSENT:
                out[f] = absent
            elif f == PLATE_NUMBER:
                out[f] = self.number(value)
            elif type(value) is str:
                hit = caches[f].get(value)
                out[f] = hit if hit is not None else self._cache_value(f, value)
            else:
                out[f] = self.value(f, value)
        return out

    def normalised_answer(self, answer: Any) -> tuple[dict[str, str], list[dict[str, str]]]:
        """(vehicle, plates) of any decoded answer with canonical values; absent fields become '(missing)',
        non-object plates are ignored (they are schema violations)."""
        canonical = self.canonical(answer)
        if canonical is not None:
            return canonical
        vehicle_raw = answer.get(VEHICLE_GROUP) if type(answer) is dict else None
        vehicle = self.group(vehicle_raw if type(vehicle_raw) is dict else {}, VEHICLE_FIELDS, MISSING)
        plates_raw = answer.get(PLATE_GROUP) if type(answer) is dict else None
        if type(plates_raw) is dict:
            plates = [self.group(plates_raw, PLATE_FIELDS, MISSING)]
        elif type(plates_raw) is list:
            plates = [self.group(p, PLATE_FIELDS, MISSING) for p in plates_raw if type(p) is dict]
        else:
            plates = []
        return vehicle, plates

    def reference(self, labels: Any) -> Reference:
        """Normalise a reference (an answer, or a record's labels). Raises ValueError when it is not one."""
        if not isinstance(labels, dict) or not (VEHICLE_GROUP in labels or PLATE_GROUP in labels):
            raise ValueError(f"reference is not an answer (needs '{VEHICLE_GROUP}' / '{PLATE_GROUP}')")
        canonical = self.canonical(labels)
        if canonical is not None:
            return Reference(*canonical, raw=labels)
        vehicle_raw = labels.get(VEHICLE_GROUP) or {}
        plates_raw = labels.get(PLATE_GROUP)
        if not isinstance(vehicle_raw, dict):
            raise ValueError(f"reference '{VEHICLE_GROUP}' is not an object")
        if isinstance(plates_raw, dict):
            plates_raw = [plates_raw]
        elif plates_raw is None:
            plates_raw = []
        elif not isinstance(plates_raw, list) or not all(isinstance(p, dict) for p in plates_raw):
            raise ValueError(f"reference '{PLATE_GROUP}' is not an object or a list of objects")
        return Reference(self.group(vehicle_raw, VEHICLE_FIELDS, UNKNOWN),
                         [self.group(p, PLATE_FIELDS, UNKNOWN) for p in plates_raw])

    def inconsistencies(self, plate: dict[str, str]) -> tuple[str, ...]:
        """Codes from :func:`plates.labels.plate_warnings` that say the answer contradicts itself: plate
        abbreviation vs province, plate colour vs usage. Both depend only on country, province, colour, usage
        and the number's first character, so verdicts are cached on those."""
        number = plate[PLATE_NUMBER]
        key = (plate["车牌国家"], plate["车牌省份"], plate["车牌颜色"], plate["车牌用途"],
               "" if number in (UNKNOWN, MISSING) else number[:1])
        codes = self._consistency_cache.get(key)
        if codes is None:
            canonical = {f: (UNKNOWN if v == MISSING else v) for f, v in plate.items()}
            found = {w.split(":", 1)[0] for w in plate_warnings(canonical)}
            codes = self._consistency_cache[key] = tuple(c for c in INCONSISTENCY_CODES if c in found)
        return codes

    # -- one answer -----------------------------------------------------------------------------------------

    def score(self, response: Any, reference: Reference) -> Outcome:
        """Parse, validate and compare one response with its reference. Never raises on model output."""
        outcome = Outcome()
        if type(response) is str:
            try:
                value, method = _json_loads(response), JSON
            except (ValueError, RecursionError):
                parsed = parse_response(response)
                value, method = parsed.value, parsed.method
        else:
            parsed = parse_response(response)
            value, method = parsed.value, parsed.method
        outcome.method = method
        outcome.value = value
        if reference.raw is not None and type(value) is dict and value == reference.raw:
            return self._identical(outcome, reference)
        canonical = self.canonical(value) if method != UNPARSEABLE else None
        if canonical is not None:
            valid, outcome.violations = True, ()
            predicted_vehicle, predicted = canonical
        else:
            outcome.violations = self._schema_violations(value) if method != UNPARSEABLE else ()
            valid = method != UNPARSEABLE and not outcome.violations
            predicted_vehicle, predicted = self.normalised_answer(value)
        outcome.schema_valid = valid

        exact = method != UNPARSEABLE and type(value) is dict
        pairs: list[tuple[str, str, str]] = []
        for f, ref in reference.vehicle.items():
            if ref == UNKNOWN:
                continue
            pred = predicted_vehicle[f]
            if pred != ref:
                exact = False
            pairs.append((f, ref, pred))

        references = reference.plates
        alignment = align_plates(references, predicted)
        numbers: list[tuple[str, str]] = []
        char_scores: list[float] = []
        substitutions: list[tuple[str, str]] = []
        for i, j in alignment.pairs:
            ref_plate, pred_plate = references[i], predicted[j]
            for f in _OTHER_PLATE_FIELDS:
                ref = ref_plate[f]
                if ref == UNKNOWN:
                    continue
                pred = pred_plate[f]
                if pred != ref:
                    exact = False
                pairs.append((f, ref, pred))
            ref = ref_plate[PLATE_NUMBER]
            if ref != UNKNOWN:
                pred = pred_plate[PLATE_NUMBER]
                numbers.append((ref, pred))
                if pred == ref:
                    char_scores.append(1.0)
                else:
                    exact = False
                    char_scores.append(_char_accuracy(ref, pred, substitutions))
        for i in alignment.missing:
            exact = False
            for f in _OTHER_PLATE_FIELDS:
                ref = references[i][f]
                if ref != UNKNOWN:
                    pairs.append((f, ref, MISSING))
            ref = references[i][PLATE_NUMBER]
            if ref != UNKNOWN:
                numbers.append((ref, MISSING))
                char_scores.append(0.0)
        if alignment.extra:
            exact = False
        outcome.pairs = pairs
        outcome.numbers = numbers
        outcome.char_scores = char_scores
        outcome.char_substitutions = substitutions
        outcome.exact = exact
        outcome.n_reference_plates = len(references)
        outcome.n_predicted_plates = len(predicted)
        outcome.missing_plates = len(alignment.missing)
        outcome.extra_plates = len(alignment.extra)
        codes: list[str] = []
        for plate in predicted:
            codes.extend(self.inconsistencies(plate))
        outcome.inconsistencies = tuple(codes)
        return outcome


    def _identical(self, outcome: Outcome, reference: Reference) -> Outcome:
        """Fill ``outcome`` for a prediction equal to its (schema-valid) reference: what :meth:`score` would
        compute, in the same order, without the work."""
        outcome.schema_valid, outcome.violations, outcome.exact = True, (), True
        pairs = [(f, ref, ref) for f, ref in reference.vehicle.items() if ref != UNKNOWN]
        numbers = []
        codes: list[str] = []
        for plate in reference.plates:
            pairs += [(f, plate[f], plate[f]) for f in _OTHER_PLATE_FIELDS if plate[f] != UNKNOWN]
            if plate[PLATE_NUMBER] != UNKNOWN:
                numbers.append((plate[PLATE_NUMBER], plate[PLATE_NUMBER]))
            codes.extend(self.inconsistencies(plate))
        outcome.pairs, outcome.numbers = pairs, numbers
        outcome.char_scores = [1.0] * len(numbers)
        outcome.char_substitutions = []
        n_plates = len(reference.plates)
        outcome.n_reference_plates = outcome.n_predicted_plates = n_plates
        outcome.missing_plates = outcome.extra_plates = 0
        outcome.inconsistencies = tuple(codes)
        return outcome


def _char_accuracy(ref: str, pred: str, substitutions: list[tuple[str, str]]) -> float:
    """1 - normalised Levenshtein distance between plate keys; records substituted characters (黑→鲁)."""
    if pred == ref:
        return 1.0
    if pred in (UNKNOWN, MISSING):
        return 0.0
    for op in Levenshtein.editops(ref, pred):
        if op.tag == "replace":
            substitutions.append((ref[op.src_pos], pred[op.dest_pos]))
    return 1.0 - Levenshtein.normalized_distance(ref, pred)


# ---------------------------------------------------------------------------------------------------- tally


@dataclass(slots=True)
class Item:
    """One scorable line: where it came from, the raw response and the normalised reference."""

    line: int
    image: str
    response: Any
    reference: Reference


def _rate(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _clip(text: Any, limit: int = 240) -> str:
    text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


class Tally:
    """Running totals over outcomes; :meth:`summary` turns them into the report."""

    def __init__(self) -> None:
        self.n = 0
        self.methods: Counter[str] = Counter()
        self.schema_valid = 0
        self.exact = 0
        self.violation_counts: Counter[str] = Counter()
        self.violation_answers: Counter[str] = Counter()
        self.violation_fields: Counter[tuple[str, str]] = Counter()
        self.inconsistency_counts: Counter[str] = Counter()
        self.inconsistent_answers = 0
        self.pairs: Counter[tuple[str, str, str]] = Counter()
        self.number_support = 0
        self.number_correct = 0
        self.char_total = 0.0
        self.char_substitutions: Counter[tuple[str, str]] = Counter()
        self.plates = {"reference": 0, "predicted": 0, "missing": 0, "extra": 0, "count_correct": 0}
        self.examples: dict[str, list[dict[str, Any]]] = {"unparseable": [], "schema_invalid": [],
                                                          "inconsistent": []}

    def add(self, outcome: Outcome, item: Item | None = None) -> None:
        self.n += 1
        self.methods[outcome.method] += 1
        if outcome.schema_valid:
            self.schema_valid += 1
        elif outcome.violations:
            for v in outcome.violations:
                self.violation_counts[v.kind] += 1
                self.violation_fields[v.kind, v.field] += 1
            self.violation_answers.update({v.kind for v in outcome.violations})
            self._example("schema_invalid", item, "; ".join(f"{v.kind} {v.path}" for v in outcome.violations[:5]))
        elif outcome.method == UNPARSEABLE:
            self._example("unparseable", item, "no JSON object found")
        if outcome.exact:
            self.exact += 1
        _count_elements(self.pairs, outcome.pairs)
        numbers = outcome.numbers
        if numbers:
            self.number_support += len(numbers)
            self.number_correct += sum(1 for r, p in numbers if r == p)
            self.char_total += sum(outcome.char_scores)
            if outcome.char_substitutions:
                self.char_substitutions.update(outcome.char_substitutions)
        plates = self.plates
        n_reference, n_predicted = outcome.n_reference_plates, outcome.n_predicted_plates
        if n_reference or n_predicted:
            plates["reference"] += n_reference
            plates["predicted"] += n_predicted
            plates["missing"] += outcome.missing_plates
            plates["extra"] += outcome.extra_plates
        if n_reference == n_predicted:
            plates["count_correct"] += 1
        if outcome.inconsistencies:
            self.inconsistent_answers += 1
            self.inconsistency_counts.update(outcome.inconsistencies)
            self._example("inconsistent", item, ", ".join(outcome.inconsistencies))

    def _example(self, kind: str, item: Item | None, detail: str) -> None:
        kept = self.examples[kind]
        if item is not None and len(kept) < EXAMPLES_KEPT:
            kept.append({"line": item.line, "image": item.image, "detail": detail, "response": _clip(item.response)})

    def confusions(self) -> dict[str, Counter]:
        """Per enumerated field: Counter of (reference, prediction)."""
        out: dict[str, Counter] = {f: Counter() for f in FIELDS if f != PLATE_NUMBER}
        for (f, r, p), c in self.pairs.items():
            out[f][r, p] += c
        return out

    def field_stats(self, field: str, top: int = 10, confusion: Counter | None = None) -> dict[str, Any]:
        if field == PLATE_NUMBER:
            support, correct = self.number_support, self.number_correct
            return {"support": support, "correct": correct, "accuracy": _rate(correct, support),
                    "macro_f1": None, "char_accuracy": _rate(self.char_total, support),
                    "confusions": [[r, p, c] for (r, p), c in self.char_substitutions.most_common(top)]}
        confusion = confusion if confusion is not None else self.confusions()[field]
        support = sum(confusion.values())
        correct = sum(c for (r, p), c in confusion.items() if r == p)
        wrong = Counter({pair: c for pair, c in confusion.items() if pair[0] != pair[1]})
        return {"support": support, "correct": correct, "accuracy": _rate(correct, support),
                "macro_f1": macro_f1(confusion),
                "confusions": [[r, p, c] for (r, p), c in wrong.most_common(top)],
                "confusion": [[r, p, c] for (r, p), c in sorted(confusion.items(), key=lambda x: (-x[1], x[0]))]}

    def summary(self, top: int = 10) -> dict[str, Any]:
        n = self.n
        parsed = n - self.methods[UNPARSEABLE]
        confusions = self.confusions()
        return {
            "n": n,
            "json_valid_rate": _rate(self.methods[JSON], n),
            "parsed_rate": _rate(parsed, n),
            "schema_valid_rate": _rate(self.schema_valid, n),
            "exact_match": _rate(self.exact, n),
            "plate_char_accuracy": _rate(self.char_total, self.number_support),
            "inconsistent_rate": _rate(self.inconsistent_answers, n),
            "parse_methods": {m: self.methods[m] for m in PARSE_METHODS if self.methods[m]},
            "violations": {k: {"count": self.violation_counts[k], "answers": self.violation_answers[k]}
                           for k in VIOLATION_CLASSES if self.violation_counts[k]},
            "violation_fields": {k: {f: c for (kind, f), c in self.violation_fields.most_common() if kind == k}
                                 for k in VIOLATION_CLASSES if self.violation_counts[k]},
            "inconsistent_answers": self.inconsistent_answers,
            "inconsistencies": {c: self.inconsistency_counts[c] for c in INCONSISTENCY_CODES},
            "plates": {"reference": self.plates["reference"], "predicted": self.plates["predicted"],
                       "missing": self.plates["missing"], "extra": self.plates["extra"],
                       "count_accuracy": _rate(self.plates["count_correct"], n)},
            "fields": {f: self.field_stats(f, top, confusions.get(f)) for f in FIELDS},
            "examples": self.examples,
        }


def macro_f1(confusion: Counter) -> float | None:
    """Mean F1 over the classes that occur in the references (predicted-only values count as false positives
    of the classes they were confused with, not as classes of their own)."""
    classes = {r for r, _ in confusion}
    if not classes:
        return None
    support: Counter = Counter()
    predicted: Counter = Counter()
    for (r, p), c in confusion.items():
        support[r] += c
        predicted[p] += c
    scores = []
    for cls in classes:
        tp = confusion.get((cls, cls), 0)
        denominator = support[cls] + predicted[cls]
        scores.append(2 * tp / denominator if denominator else 0.0)
    return sum(scores) / len(scores)


# ---------------------------------------------------------------------------------------------------- reading


@dataclass
class Source:
    """What was read: scorable items plus every skipped line ('line N: why') and unmatched records."""

    items: list[Item] = dataclass_field(default_factory=list)
    skipped: list[str] = dataclass_field(default_factory=list)
    records_without_prediction: list[str] = dataclass_field(default_factory=list)


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
            reference = index[key][1]
        else:
            if row.get("labels") is None:
                source.skipped.append(f"line {number}: no 'labels' (reference answer)")
                continue
            try:
                reference = scorer.reference(_reference_labels(row["labels"]))
            except ValueError as exc:
                source.skipped.append(f"line {number}: {exc}")
                continue
        yield Item(number, image, row["response"], reference)
    if index is not None:
        source.records_without_prediction = sorted({image for image, _ in index.values()} - seen)


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


def _records_index(path: str | Path, scorer: Scorer) -> dict[str, tuple[str, Reference]]:
    """image path (as in the record, and absolute) -> (record image, reference)."""
    from plates.records import iter_records, resolve_image

    index: dict[str, tuple[str, Reference]] = {}
    for record in iter_records(path):
        try:
            reference = scorer.reference(record["labels"])
        except ValueError as exc:
            raise UserError(f"{path}: record {record['image']!r}: {exc}") from None
        entry = (record["image"], reference)
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


# ---------------------------------------------------------------------------------------------------- evaluate


def slice_value(reference: Reference, field: str) -> str:
    """The slice an answer falls in for ``--by FIELD``: the reference's value; for plate fields the values of
    all its plates joined by '+', '无车牌' when it has none."""
    if field in VEHICLE_FIELDS:
        return reference.vehicle[field]
    values = list(dict.fromkeys(plate[field] for plate in reference.plates))
    return "+".join(values) if values else NO_PLATE


def evaluate(items: Iterable[Item], scorer: Scorer | None = None, by: Iterable[str] = (), top: int = 10,
             details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Score items and summarise. ``by`` adds per-slice summaries; ``details`` (when a list) receives one
    entry per answer."""
    scorer = scorer or Scorer()
    by = list(by)
    tally = Tally()
    slices: dict[str, dict[str, Tally]] = {f: {} for f in by}
    score = scorer.score
    add = tally.add
    for item in items:
        outcome = score(item.response, item.reference)
        add(outcome, item)
        for f in by:
            key = slice_value(item.reference, f)
            sliced = slices[f].get(key)
            if sliced is None:
                sliced = slices[f][key] = Tally()
            sliced.add(outcome)
        if details is not None:
            details.append({"line": item.line, "image": item.image, **outcome.to_json()})
    report = tally.summary(top)
    if by:
        report["by"] = {f: {key: _slice_summary(t) for key, t in sorted(groups.items(), key=lambda kv: -kv[1].n)}
                        for f, groups in slices.items()}
    return report


def _slice_summary(tally: Tally) -> dict[str, Any]:
    full = tally.summary(top=0)
    return {"n": full["n"], **{k: full[k] for k in SUMMARY_KEYS},
            "fields": {f: {k: s[k] for k in ("support", "correct", "accuracy")} for f, s in full["fields"].items()}}


def evaluate_file(results: str | Path, records: str | Path | None = None, by: Iterable[str] = (), top: int = 10,
                  scorer: Scorer | None = None, details: list | None = None) -> dict[str, Any]:
    """Read and score a results file; the report also lists skipped lines and unmatched records."""
    scorer = scorer or Scorer()
    source = Source()
    report = evaluate(iter_items(results, scorer, records, source), scorer, by, top, details)
    report["skipped_lines"] = len(source.skipped)
    report["skipped"] = source.skipped
    report["source"] = str(results)
    if records is not None:
        report["records"] = str(records)
        report["records_without_prediction"] = len(source.records_without_prediction)
        report["records_without_prediction_examples"] = source.records_without_prediction[:20]
    report["labels_version"] = _labels_version()
    return report


def _labels_version() -> Any:
    import yaml

    from plates.labels import labels_dir

    try:
        return yaml.safe_load((labels_dir() / "fields.yaml").read_text(encoding="utf-8")).get("version")
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------------- formatting


def display_width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int, right: bool = False) -> str:
    gap = " " * max(0, width - display_width(text))
    return gap + text if right else text + gap


def table(rows: list[list[str]], right: Iterable[int] = ()) -> str:
    """Align rows of cells (first row = header) by display width."""
    right = set(right)
    widths = [max(display_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [_pad(cell, widths[i], i in right) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def _confusion_text(stats: dict[str, Any], limit: int) -> str:
    return ", ".join(f"{r}→{p} ×{c}" for r, p, c in stats["confusions"][:limit])


def _totals_lines(report: dict[str, Any]) -> list[str]:
    lines = [" · ".join(f"{SUMMARY_NAMES[k]} {pct(report[k])}" for k in SUMMARY_KEYS)]
    methods = report["parse_methods"]
    lines.append("parsed by: " + (" · ".join(f"{m} {c}" for m, c in methods.items()) or "—"))
    violations = report["violations"]
    if violations:
        lines.append("schema violations: " + " · ".join(
            f"{k} {v['count']} in {v['answers']} answers" for k, v in violations.items()))
    codes = report["inconsistencies"]
    lines.append(f"inconsistent answers: {report['inconsistent_answers']} ("
                 + " · ".join(f"{c} {n}" for c, n in codes.items()) + ")")
    plates = report["plates"]
    lines.append(f"plates: reference {plates['reference']} · predicted {plates['predicted']} · "
                 f"missing {plates['missing']} · extra {plates['extra']} · count right {pct(plates['count_accuracy'])}")
    return lines


def _field_rows(report: dict[str, Any], confusions: int) -> list[list[str]]:
    rows = [["field", "support", "correct", "accuracy", "macro-F1", "most frequent confusions"]]
    for f, s in report["fields"].items():
        note = _confusion_text(s, confusions)
        if f == PLATE_NUMBER:
            note = f"chars {pct(s['char_accuracy'])}" + (f"; {note}" if note else "")
        rows.append([f, str(s["support"]), str(s["correct"]), pct(s["accuracy"]), pct(s["macro_f1"]), note])
    return rows


def format_report(report: dict[str, Any], confusions: int = 3) -> str:
    """The terminal view: totals, then one row per field."""
    head = f"{report['n']} answers"
    if report.get("skipped_lines"):
        head += f" ({report['skipped_lines']} malformed lines skipped)"
    if report.get("records_without_prediction"):
        head += f"; {report['records_without_prediction']} records had no prediction"
    out = [head, *_totals_lines(report), "", table(_field_rows(report, confusions), right=(1, 2, 3, 4))]
    for f, groups in report.get("by", {}).items():
        out += ["", f"by {f}:", table(_slice_rows(groups), right=range(1, 3 + len(FIELDS)))]
    return "\n".join(out)


def _slice_rows(groups: dict[str, Any]) -> list[list[str]]:
    rows = [["slice", "n", "exact", *FIELDS]]
    for key, s in groups.items():
        rows.append([key, str(s["n"]), pct(s["exact_match"]), *(pct(s["fields"][f]["accuracy"]) for f in FIELDS)])
    return rows


def _md_table(rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(c) for c in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def format_markdown(report: dict[str, Any]) -> str:
    """A self-contained Markdown report."""
    out = [f"# plates eval: {report.get('source', '')}", ""]
    out.append(f"{report['n']} answers scored; {report.get('skipped_lines', 0)} malformed lines skipped."
               + (f" {report['records_without_prediction']} records had no prediction."
                  if report.get("records_without_prediction") else ""))
    out += ["", _md_table([["metric", "value"], *([SUMMARY_NAMES[k], pct(report[k])] for k in SUMMARY_KEYS),
                           ["inconsistent answers", pct(report["inconsistent_rate"])],
                           ["plate count right", pct(report["plates"]["count_accuracy"])]])]
    out += ["", "## Fields", "", _md_table(_field_rows(report, 5))]
    out += ["", "## Parsing", "", _md_table([["method", "answers"],
                                             *([m, str(c)] for m, c in report["parse_methods"].items())])]
    if report["violations"]:
        rows = [["violation", "count", "answers", "fields"]]
        for k, v in report["violations"].items():
            fields = ", ".join(f"{f} {c}" for f, c in report["violation_fields"][k].items())
            rows.append([k, str(v["count"]), str(v["answers"]), fields])
        out += ["", "## Schema violations", "", _md_table(rows)]
    out += ["", "## Inconsistent answers", "",
            _md_table([["check", "plates"], *([c, str(n)] for c, n in report["inconsistencies"].items())])]
    plates = report["plates"]
    out += ["", "## Plates", "", _md_table([["reference", "predicted", "missing", "extra", "count right"],
                                            [str(plates["reference"]), str(plates["predicted"]),
                                             str(plates["missing"]), str(plates["extra"]),
                                             pct(plates["count_accuracy"])]])]
    for f, groups in report.get("by", {}).items():
        out += ["", f"## By {f}", "", _md_table(_slice_rows(groups))]
    for kind, examples in report.get("examples", {}).items():
        if examples:
            rows = [["line", "image", "detail", "response"]]
            rows += [[str(e["line"]), e["image"], e["detail"], "`" + e["response"].replace("`", "'") + "`"]
                     for e in examples]
            out += ["", f"## Examples: {kind.replace('_', ' ')}", "", _md_table(rows)]
    if report.get("skipped"):
        out += ["", "## Skipped lines", ""] + [f"- {s}" for s in report["skipped"]]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------------- plots


def _cjk_font() -> str | None:
    """Name of an installed font that can draw Chinese, or None."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    hints = ("cjk", "hei", "han sans", "wenquanyi", "yahei", "song", "ming", "kai", "fallback", "droid", "pingfang",
             "hiragino", "arial unicode")
    for entry in font_manager.fontManager.ttflist:
        if not any(h in entry.name.lower() for h in hints):
            continue
        try:
            if FT2Font(entry.fname).get_char_index(ord("车")):
                return entry.name
        except Exception:  # noqa: BLE001 - unreadable font files are skipped
            continue
    return None


def _ascii_names(field: str) -> dict[str, str]:
    """Fallback labels without a CJK font: an ASCII synonym from labels/ when there is one, else '#n'."""
    vocab = load_vocabularies()[field]
    names = {UNKNOWN: "unknown", MISSING: "missing"}
    for value in vocab.canonical:
        if value.isascii():
            names[value] = value
            continue
        synonyms = [s for s, v in vocab.lookup.items() if v == value and s.isascii() and s]
        names[value] = synonyms[0] if synonyms else None
    return names


def write_plots(report: dict[str, Any], directory: str | Path, max_classes: int = 15) -> list[Path]:
    """PNG charts: per-field accuracy and one confusion matrix per enumerated field (the ``max_classes`` most
    frequent reference values, the rest pooled). Without a CJK font, labels fall back to ASCII (field slugs,
    English synonyms from labels/, else '#n') and ``legend.txt`` maps them back, instead of empty boxes."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    font = _cjk_font()
    style = {"font.sans-serif": [font, "DejaVu Sans"], "font.family": "sans-serif"} if font else {}
    legend: list[str] = []

    def field_label(f: str) -> str:
        return f if font else FIELD_SLUGS[f]

    written = []
    with plt.rc_context(style):
        fields = [f for f in FIELDS if report["fields"][f]["accuracy"] is not None]
        fig, ax = plt.subplots(figsize=(8, 4.5))
        values = [100 * report["fields"][f]["accuracy"] for f in fields]
        bars = ax.barh([field_label(f) for f in fields][::-1], values[::-1], color="#4C72B0")
        ax.bar_label(bars, fmt="%.1f%%", padding=3, fontsize=8)
        ax.set_xlim(0, 110)
        ax.set_xlabel("accuracy (%)")
        ax.set_title(f"per-field accuracy (n={report['n']}, exact match {pct(report['exact_match'])})")
        fig.tight_layout()
        written.append(_save(fig, directory / "accuracy.png"))
        plt.close(fig)
        for f in FIELDS:
            if f == PLATE_NUMBER or not report["fields"][f].get("confusion"):
                continue
            path = directory / f"confusion_{FIELD_SLUGS[f]}.png"
            labels = _confusion_plot(plt, report["fields"][f]["confusion"], f, field_label(f), font, path,
                                     max_classes)
            written.append(path)
            if not font:
                legend.append(f"{path.name} ({f})")
                legend += [f"  {short} = {value}" for value, short in labels.items() if short != value]
    if legend:
        with atomic_write(directory / "legend.txt") as handle:
            handle.write("No CJK font was found, so the charts use ASCII labels (install e.g. fonts-noto-cjk for "
                         "Chinese labels).\n" + "\n".join(legend) + "\n")
    return written


def _save(fig: Any, path: Path) -> Path:
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    return path


def _confusion_plot(plt: Any, confusion: list[list[Any]], field: str, title: str, font: str | None, path: Path,
                    max_classes: int) -> dict[str, str]:
    """Draw one row-normalised confusion matrix; returns value -> tick label."""
    import numpy as np

    support: Counter = Counter()
    for r, _, c in confusion:
        support[r] += c
    classes = [cls for cls, _ in support.most_common(max_classes)]
    other = "其他" if font else "(other)"
    predicted: Counter = Counter()
    for _, p, c in confusion:
        predicted[p] += c
    extra = [p for p, _ in predicted.most_common() if p not in classes and p != MISSING]
    cols = classes + extra[:max(3, max_classes - len(classes))]
    if MISSING in predicted:
        cols.append(MISSING)
    rows = classes + ([other] if len(support) > len(classes) else [])
    pooled_cols = cols + [other]
    matrix = np.zeros((len(rows), len(pooled_cols)))
    for r, p, c in confusion:
        i = rows.index(r) if r in classes else len(rows) - 1
        j = cols.index(p) if p in cols else len(pooled_cols) - 1
        matrix[i, j] += c
    if matrix[:, -1].any():
        cols = pooled_cols
    else:
        matrix = matrix[:, :-1]
    names = _ascii_names(field) if not font else {}
    labels = {}
    for k, value in enumerate(dict.fromkeys([*cols, *rows])):
        if font or value == other:
            labels[value] = value
        else:
            labels[value] = names.get(value) or (value if value.isascii() else f"#{k}")

    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 + 0.45 * len(cols)), max(3.5, 1.4 + 0.4 * len(rows))))
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), [labels[c] for c in cols], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), [labels[r] for r in rows], fontsize=7)
    for i in range(len(rows)):
        for j in range(len(cols)):
            if matrix[i, j]:
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=6,
                        color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(f"{title} (row-normalised)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return labels


# ---------------------------------------------------------------------------------------------------- compare


def load_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a JSON report ({exc})") from None
    if not isinstance(report, dict) or not all(k in report for k in ("n", *SUMMARY_KEYS, "fields")):
        raise UserError(f"{path}: not a `plates eval --json` report (needs n, {', '.join(SUMMARY_KEYS)}, fields)")
    return report


def compare_rows(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """(metric, before, after) for the totals and every field's accuracy."""
    rows: list[tuple[str, float | None, float | None]] = [
        (SUMMARY_NAMES[k], before.get(k), after.get(k)) for k in SUMMARY_KEYS]
    fields = list(dict.fromkeys([*before["fields"], *after["fields"]]))
    for f in fields:
        rows.append((f"{f} accuracy", (before["fields"].get(f) or {}).get("accuracy"),
                     (after["fields"].get(f) or {}).get("accuracy")))
    return rows


def delta(before: float | None, after: float | None) -> str:
    if before is None or after is None:
        return "—"
    points = 100 * (after - before)
    return f"{points:+.1f} pp" if not math.isclose(points, 0.0, abs_tol=0.05) else "±0.0 pp"


def format_compare(before: dict[str, Any], after: dict[str, Any], names: tuple[str, str], markdown: bool = False) -> str:
    rows = [["metric", names[0], names[1], "Δ"]]
    rows += [[metric, pct(b), pct(a), delta(b, a)] for metric, b, a in compare_rows(before, after)]
    if markdown:
        return _md_table(rows) + "\n"
    return table(rows, right=(1, 2, 3))


# ---------------------------------------------------------------------------------------------------- CLI


def _field_choice(name: str) -> str:
    slugs = {slug: f for f, slug in FIELD_SLUGS.items()}
    field = slugs.get(name, name)
    if field not in FIELDS:
        raise UserError(f"--by {name}: unknown field (choose from {', '.join(FIELDS)} or {', '.join(slugs)})")
    if field == PLATE_NUMBER:
        raise UserError("--by 车牌号码: plate numbers are free text; slice by an enumerated field")
    return field


def _configure_eval(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", metavar="RESULTS.jsonl",
                        help="`swift infer --result_path` output (response + labels per line), or predictions "
                             "(image + response per line) with --records")
    parser.add_argument("--records", metavar="RECORDS.jsonl",
                        help="`plates parse` records: take the references from them, joined by image path")
    parser.add_argument("--json", metavar="PATH", dest="json_path", help="write the report as JSON")
    parser.add_argument("--markdown", metavar="PATH", help="write the report as Markdown")
    parser.add_argument("--plots", metavar="DIR", help="write PNG charts (per-field accuracy, confusion matrices)")
    parser.add_argument("--by", metavar="FIELD", action="append", default=[],
                        help="add per-slice accuracy by the reference value of FIELD (e.g. 车牌颜色 or "
                             "plate_colour); repeatable")
    parser.add_argument("--details", metavar="PATH", help="write one JSON line per answer (parse method, "
                                                           "violations, wrong fields) for error analysis")
    parser.add_argument("--top", type=int, default=10, metavar="K", help="confusions kept per field (default 10)")


def _run_eval(args: argparse.Namespace) -> int:
    """Score a model's JSON answers field by field.

    Every response is parsed (strict JSON, then code fences, Python-dict text, JSON inside surrounding text,
    json-repair for truncated output), checked against eval/answer.schema.json, normalised through labels/ and
    compared with its reference. Fields whose reference is '未知' are left out of that field's support; answers
    that cannot be parsed count as wrong for every field. Malformed lines are skipped and listed.

    examples:
      plates eval runs/tuned/infer.jsonl --json tuned.json --markdown tuned.md --plots tuned-plots --by 车牌颜色
      plates eval predictions.jsonl --records records.jsonl
      plates compare base.json tuned.json"""
    by = [_field_choice(name) for name in args.by]
    if args.top < 0:
        raise UserError("--top must be >= 0")
    details: list | None = [] if args.details else None
    report = evaluate_file(args.results, args.records, by=by, top=args.top, details=details)
    for line in report["skipped"][:10]:
        print(f"plates eval: {args.results}: skipped {line}", file=sys.stderr)
    if report["skipped_lines"] > 10:
        print(f"plates eval: … and {report['skipped_lines'] - 10} more skipped lines (listed in --json/--markdown)",
              file=sys.stderr)
    if report["n"] == 0:
        raise UserError(f"{args.results}: no scorable answers ({report['skipped_lines']} malformed lines skipped)")
    print(format_report(report))
    if args.json_path:
        write_json(args.json_path, report)
    if args.markdown:
        with atomic_write(args.markdown) as handle:
            handle.write(format_markdown(report))
    if args.details:
        from plates.io import write_jsonl

        write_jsonl(args.details, details)
    if args.plots:
        paths = write_plots(report, args.plots)
        print(f"wrote {len(paths)} charts to {args.plots}")
    return 0


def _configure_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("before", metavar="A.json", help="`plates eval --json` report of the base model")
    parser.add_argument("after", metavar="B.json", help="report of the fine-tuned model")
    parser.add_argument("--names", nargs=2, metavar=("A", "B"), help="column names (default: file names)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")


def _run_compare(args: argparse.Namespace) -> int:
    """Before/after table of two `plates eval --json` reports with deltas in percentage points.

    example: plates compare base.json tuned.json --names 原始模型 微调后模型"""
    before, after = load_report(args.before), load_report(args.after)
    names = tuple(args.names) if args.names else (Path(args.before).stem, Path(args.after).stem)
    if before["n"] != after["n"]:
        print(f"plates compare: note: A scored {before['n']} answers, B {after['n']}", file=sys.stderr)
    print(format_compare(before, after, names))
    if args.markdown:
        with atomic_write(args.markdown) as handle:
            handle.write(format_compare(before, after, names, markdown=True))
    return 0


COMMANDS = {
    "eval": (_configure_eval, _run_eval, "score JSON answers per field (schema check, accuracy, confusions)"),
    "compare": (_configure_compare, _run_compare, "before/after table of two `plates eval --json` reports"),
}
