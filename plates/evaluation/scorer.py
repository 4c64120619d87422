"""The scorer: parse, validate, normalise and compare one answer with its reference.

This is the hot loop of `plates eval` and it lives here only: :meth:`Scorer.canonical` validates and normalises
a schema-valid answer in one pass, :meth:`Scorer.score` compares it with the reference and fills an
:class:`Outcome`, and :meth:`Scorer._identical` is its shortcut for an answer equal to the reference. Keep them
in step (tests compare both paths) and measure with ``benchmarks/bench_eval.py`` after any change.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Any

from rapidfuzz.distance import Levenshtein

from plates.evaluation.align import align_plates
from plates.evaluation.common import (
    INCONSISTENCY_CODES, MISSING, OTHER_PLATE_FIELDS as _OTHER_PLATE_FIELDS, TOP_KEYS as _TOP_KEYS,
)
from plates.evaluation.extract import JSON, UNPARSEABLE, json_loads, parse_response
from plates.evaluation.grounding import reference_boxes
from plates.evaluation.plate_metrics import plate_type
from plates.evaluation.schema_check import Violation, schema_violations, structural_checks
from plates.labels import (
    FIELDS, PLATE_COLOUR, PLATE_COUNTRY, PLATE_FIELDS, PLATE_GROUP, PLATE_NUMBER, PLATE_PROVINCE, PLATE_USAGE, UNKNOWN,
    VEHICLE_FIELDS, VEHICLE_GROUP, load_vocabularies, normalise, plate_key, plate_warnings,
)
from plates.schema import answer_validator, load_schema

_ABSENT = object()
_ONE_PAIR = ((0, 0),)
# the inconsistency codes in report order, and the codes of each (province mismatch, colour vs usage) verdict
_PROVINCE_MISMATCH, _COLOUR_USAGE = INCONSISTENCY_CODES
_CODES = {(p, c): tuple(code for code, on in ((_PROVINCE_MISMATCH, p), (_COLOUR_USAGE, c)) if on)
          for p in (False, True) for c in (False, True)}


@dataclass(slots=True)
class Reference:
    """A reference answer normalised for scoring: canonical values, '未知' for unknown, plate numbers as keys.
    ``raw`` keeps the decoded reference when it is itself a schema-valid answer: a prediction equal to it is
    scored without normalising or aligning anything (the common case for a well-trained model). ``types`` holds
    each plate's type (:func:`plates.evaluation.plate_metrics.plate_type`) for the per-type plate metrics.
    ``boxes`` holds each plate's box as given (None for a plate without one), None when no plate has one (see
    :mod:`plates.evaluation.grounding`)."""

    vehicle: dict[str, str]
    plates: list[dict[str, str]]
    raw: dict[str, Any] | None = None
    types: tuple[str, ...] = ()
    boxes: tuple | None = None

    def __post_init__(self) -> None:
        if len(self.types) != len(self.plates):
            self.types = tuple(plate_type(p) for p in self.plates)


class Outcome:
    """How one answer scored. ``pairs`` holds (field, reference, prediction) for every enumerated field whose
    reference is known, ``numbers`` (reference, prediction) plate keys for every known reference plate number,
    ``number_types`` and ``char_scores`` their plate types and character accuracies."""

    __slots__ = ("method", "value", "schema_valid", "violations", "pairs", "numbers", "number_types", "char_scores",
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
        self.schema = schema if schema is not None else load_schema()
        self.validator = answer_validator(self.schema)
        self._checks = structural_checks(self.schema) if fast_check else None
        self._value_cache: dict[str, dict[str, str]] = {f: {} for f in FIELDS}
        self._free_cache: dict[str, dict[str, str]] = {f: {} for f in FIELDS}
        self._unknown_words = frozenset(load_vocabularies()[PLATE_NUMBER].lookup)
        self._consistency_cache: dict[tuple, tuple[str, ...]] = {}
        self._province_verdicts: dict[tuple[str, str, str], bool] = {}
        self._colour_verdicts: dict[tuple[str, str, str], bool] = {}
        self._fast = self._fast_plan() if self._checks is not None and self._canonical_is_fixpoint() else None


    def _fast_plan(self) -> tuple | None:
        """Per group: exact key set, (field, enum) pairs to check, (field, string test) of the free-text fields to
        check and normalise; then the most plates allowed. Enum values are canonical (see
        :meth:`_canonical_is_fixpoint`), so they are kept as they are."""
        plan: list[Any] = []
        for keys, checks in self._checks[:2]:
            for f, allowed, test in checks:
                if allowed is not None and (test is not None or not all(type(x) is str for x in allowed)):
                    return None
            plan += [keys, tuple((f, a) for f, a, _ in checks if a is not None),
                     tuple((f, test) for f, a, test in checks if a is None)]
        return (*plan, self._checks[2])

    def _canonical_is_fixpoint(self) -> bool:
        """Whether every enum value of the schema normalises to itself; then a schema-valid answer only needs
        its free-text fields normalised."""
        return all(allowed is None or all(self.value(f, v) == v for v in allowed)
                   for _, checks in self._checks[:2] for f, allowed, _ in checks)

    def _free_value(self, field: str, value: str, test: Any) -> str | None:
        """Canonical value of a free-text field that passes the schema's bounds, else None; verdicts are cached
        per distinct text (brands and countries repeat)."""
        cache = self._free_cache[field]
        hit = cache.get(value)
        if hit is not None:
            return hit
        if test is not None and not test(value):
            return None
        if len(cache) > 200_000:
            cache.clear()
        hit = cache[value] = self.value(field, value)
        return hit

    def canonical(self, answer: Any) -> tuple[dict[str, str], list[dict[str, str]]] | None:
        """(vehicle, plates) with canonical values when a structural check built from the schema accepts the
        answer, else None (then ask jsonschema). Validates and normalises in one pass: the hot path."""
        if self._fast is None or type(answer) is not dict or answer.keys() != _TOP_KEYS:
            return None
        vehicle_keys, vehicle_enums, vehicle_free, plate_keys, plate_enums, plate_free, most_plates = self._fast
        free_value, free_cache = self._free_value, self._free_cache
        try:
            raw = answer[VEHICLE_GROUP]
            if type(raw) is not dict or raw.keys() != vehicle_keys:
                return None
            for f, allowed in vehicle_enums:
                if raw[f] not in allowed:
                    return None
            vehicle = dict(raw)
            for f, test in vehicle_free:
                value = raw[f]
                if type(value) is not str:
                    return None
                hit = free_cache[f].get(value)
                if hit is None:
                    hit = free_value(f, value, test)
                    if hit is None:
                        return None
                vehicle[f] = hit
            raw_plates = answer[PLATE_GROUP]
            if type(raw_plates) is dict:
                raw_plates = (raw_plates,)
            elif type(raw_plates) is not list or (most_plates is not None and len(raw_plates) > most_plates):
                return None
            plates = []
            for raw in raw_plates:
                if type(raw) is not dict or raw.keys() != plate_keys:
                    return None
                for f, allowed in plate_enums:
                    if raw[f] not in allowed:
                        return None
                plate = dict(raw)
                for f, test in plate_free:
                    value = raw[f]
                    if type(value) is not str:
                        return None
                    if f == PLATE_NUMBER:
                        if test is not None and not test(value):
                            return None
                        plate[f] = self.number(value)
                    else:
                        hit = free_cache[f].get(value)
                        if hit is None:
                            hit = free_value(f, value, test)
                            if hit is None:
                                return None
                        plate[f] = hit
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
        return schema_violations(self.validator, answer)

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
        boxes = reference_boxes(plates_raw)
        if not isinstance(vehicle_raw, dict):
            raise ValueError(f"reference '{VEHICLE_GROUP}' is not an object")
        if isinstance(plates_raw, dict):
            plates_raw = [plates_raw]
        elif plates_raw is None:
            plates_raw = []
        elif not isinstance(plates_raw, list) or not all(isinstance(p, dict) for p in plates_raw):
            raise ValueError(f"reference '{PLATE_GROUP}' is not an object or a list of objects")
        return Reference(self.group(vehicle_raw, VEHICLE_FIELDS, UNKNOWN),
                         [self.group(p, PLATE_FIELDS, UNKNOWN) for p in plates_raw], boxes=boxes)

    def inconsistencies(self, plate: dict[str, str]) -> tuple[str, ...]:
        """Codes from :func:`plates.labels.plate_warnings` that say the answer contradicts itself: plate
        abbreviation vs province, plate colour vs usage. Both depend only on country, province, colour, usage
        and the number's first character, so verdicts are cached on those; and each on fewer of them (province
        vs abbreviation on country, province and first character; colour vs usage on country, colour and usage),
        so a new combination of the five usually costs two look-ups, not a :func:`plate_warnings` call."""
        number = plate[PLATE_NUMBER]
        country, province = plate[PLATE_COUNTRY], plate[PLATE_PROVINCE]
        colour, usage = plate[PLATE_COLOUR], plate[PLATE_USAGE]
        first = "" if number == UNKNOWN or number == MISSING else number[:1]
        key = (country, province, colour, usage, first)
        codes = self._consistency_cache.get(key)
        if codes is None:
            province_key, colour_key = (country, province, first), (country, colour, usage)
            province_mismatch = self._province_verdicts.get(province_key)
            colour_usage = self._colour_verdicts.get(colour_key)
            if province_mismatch is None or colour_usage is None:
                canonical = {f: (UNKNOWN if v == MISSING else v) for f, v in plate.items()}
                found = {w.split(":", 1)[0] for w in plate_warnings(canonical)}
                province_mismatch = self._province_verdicts[province_key] = _PROVINCE_MISMATCH in found
                colour_usage = self._colour_verdicts[colour_key] = _COLOUR_USAGE in found
            codes = self._consistency_cache[key] = _CODES[province_mismatch, colour_usage]
        return codes

    # -- one answer -----------------------------------------------------------------------------------------

    def score(self, response: Any, reference: Reference) -> Outcome:
        """Parse, validate and compare one response with its reference. Never raises on model output."""
        outcome = Outcome()
        if type(response) is str:
            try:
                value, method = json_loads(response), JSON
            except (ValueError, RecursionError):
                parsed = parse_response(response)
                value, method = parsed.value, parsed.method
        else:
            parsed = parse_response(response)
            value, method = parsed.value, parsed.method
        outcome.method = method
        outcome.value = value
        if type(value) is dict and value == reference.raw:  # raw is None when the reference is not schema-valid
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
        pairs = [(f, ref, predicted_vehicle[f]) for f, ref in reference.vehicle.items() if ref != UNKNOWN]
        if exact:
            for _, ref, pred in pairs:
                if pred != ref:
                    exact = False
                    break

        references = reference.plates
        n_reference, n_predicted = len(references), len(predicted)
        # align_plates' trivial cases without building an Alignment: one plate each, or none on one side
        if n_reference == 1 and n_predicted == 1:
            aligned, missing, extra = _ONE_PAIR, (), ()
        elif not n_reference or not n_predicted:
            aligned, missing, extra = (), tuple(range(n_reference)), tuple(range(n_predicted))
        else:
            alignment = align_plates(references, predicted)
            aligned, missing, extra = alignment.pairs, alignment.missing, alignment.extra
        numbers: list[tuple[str, str]] = []
        number_types: list[str] = []
        types = reference.types
        char_scores: list[float] = []
        substitutions: list[tuple[str, str]] = []
        append = pairs.append
        for i, j in aligned:
            ref_plate, pred_plate = references[i], predicted[j]
            for f in _OTHER_PLATE_FIELDS:
                ref = ref_plate[f]
                if ref != UNKNOWN:
                    pred = pred_plate[f]
                    if pred != ref:
                        exact = False
                    append((f, ref, pred))
            ref = ref_plate[PLATE_NUMBER]
            if ref != UNKNOWN:
                pred = pred_plate[PLATE_NUMBER]
                numbers.append((ref, pred))
                number_types.append(types[i])
                if pred == ref:
                    char_scores.append(1.0)
                else:
                    exact = False
                    char_scores.append(_char_accuracy(ref, pred, substitutions))
        for i in missing:
            exact = False
            ref_plate = references[i]
            for f in _OTHER_PLATE_FIELDS:
                ref = ref_plate[f]
                if ref != UNKNOWN:
                    append((f, ref, MISSING))
            ref = ref_plate[PLATE_NUMBER]
            if ref != UNKNOWN:
                numbers.append((ref, MISSING))
                number_types.append(types[i])
                char_scores.append(0.0)
        if extra:
            exact = False
        outcome.pairs = pairs
        outcome.numbers = numbers
        outcome.number_types = number_types
        outcome.char_scores = char_scores
        outcome.char_substitutions = substitutions
        outcome.exact = exact
        outcome.n_reference_plates = n_reference
        outcome.n_predicted_plates = n_predicted
        outcome.missing_plates = len(missing)
        outcome.extra_plates = len(extra)
        if n_predicted == 1:
            outcome.inconsistencies = self.inconsistencies(predicted[0])
        else:
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
        number_types = []
        codes: list[str] = []
        for plate, kind in zip(reference.plates, reference.types):
            pairs += [(f, plate[f], plate[f]) for f in _OTHER_PLATE_FIELDS if plate[f] != UNKNOWN]
            number = plate[PLATE_NUMBER]
            if number != UNKNOWN:
                numbers.append((number, number))
                number_types.append(kind)
            codes.extend(self.inconsistencies(plate))
        outcome.pairs, outcome.numbers, outcome.number_types = pairs, numbers, number_types
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
