"""The answer's JSON Schema (draft 2020-12), generated from the vocabularies in ``labels/``.

``eval/answer.schema.json`` is an output of :func:`build_schema`, committed so that users and tools outside this
package (guided decoding, other evaluators) can read it; a test asserts that the committed file equals the
generated one, so the vocabularies are kept by hand in exactly one place. Run ``plates schema`` after editing
``labels/fields.yaml``.

Shape (see ``eval/README.md``)::

    {"车辆属性": {4 fields}, "车牌属性": {6 fields}}        one plate (the seed's shape)
    {"车辆属性": {4 fields}, "车牌属性": []}                no plate
    {"车辆属性": {4 fields}, "车牌属性": [{6 fields}, …]}   several plates

Closed fields take ``enum`` = canonical values + '未知'. Open fields (brand, country) and the plate number are
free strings: the vocabulary lists the common values as ``examples`` but a new brand is still a valid answer.
Synonyms ('单层', '车头') are *not* schema-valid: the schema describes the canonical answer the model is taught,
while ``plates eval`` still scores synonyms as correct after normalisation.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from pathlib import Path
from typing import Any

from plates.errors import UserError
from plates import resources
from plates.io import atomic_write, check_output_file
from plates.labels import (
    FIELD_TABLE, OPTIONAL_PLATE_FIELDS, PLATE_FIELDS, PLATE_GROUP, UNKNOWN, VEHICLE_FIELDS, VEHICLE_GROUP,
    FieldTableError, StringBounds, field_spec, labels_dir, load_plate_rules, load_vocabularies,
)
from plates.outputs import output_file

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "urn:plates:answer"
VEHICLE_DEF = "vehicle"
PLATE_DEF = "plate"


def schema_path() -> Path:
    """Where the committed schema lives: ``eval/answer.schema.json`` (shipped with the package too)."""
    return resources.schema_path()


# The named character classes an open field's ``bounds.chars`` (labels/fields.yaml) may use: ``{cjk}`` Chinese
# characters, ``{scripts}`` Cyrillic, Arabic, Thai, Lao and Myanmar (plates of the vocabulary's other countries),
# ``{plate_chars}`` the Chinese characters a plate number may hold (see _plate_chars).
CHAR_CLASSES = {"cjk": r"\u3400-\u4dbf\u4e00-\u9fff",
                "scripts": r"\u0400-\u04ff\u0600-\u06ff\u0e00-\u0eff\u1000-\u109f"}
_OLD_MILITARY = "北沈兰济南广成海空军"
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
BOX_MAX = 99_999  # largest box coordinate (five digits): guided decoding cannot write digits forever
MAX_PLATES = 4  # per answer; bounds the array so a guided weak model cannot list plates until the token limit


def _plate_chars() -> str:
    """Every Chinese character a plate number may hold: province abbreviations, special suffixes (挂 学 警 港 澳 领
    使 试 超 应急) from labels/plates.yaml, and the old military region prefixes."""
    rules = load_plate_rules()
    chars = {c for a in rules.get("abbreviations", {}).values() for c in str(a)}
    chars |= {c for suffix in rules.get("special_suffixes", {}) for c in str(suffix)}
    return "".join(sorted(chars | set(_OLD_MILITARY)))


def string_bounds(field: str, bounds: StringBounds | None = None) -> dict[str, Any]:
    """``pattern`` and ``maxLength`` of an open string field, so that a weak model under guided decoding cannot
    ramble inside a string until the token limit; {} for a field without bounds.

    The bounds are the field's ``bounds`` in labels/fields.yaml: words of 1..``longest_word`` characters of the
    class ``chars``, at most ``words`` of them, joined by single spaces, so the pattern alone bounds the length
    (guided-decoding engines honour either ``pattern`` or ``maxLength`` of a string, not both; ``maxLength``
    repeats the pattern's bound for readers). The shipped bounds fit every value ``plates parse`` and
    ``answer_from_labels`` produce: mainland numbers have no spaces and only the Chinese characters of
    labels/plates.yaml ('云KCM158', '粤Z1234港'), foreign and Hong Kong numbers keep single spaces ('12 34567'),
    Vietnamese ones dots and hyphens ('51G-123.45'). ``bounds`` replaces the table's."""
    bounds = bounds or field_spec(field).bounds
    if bounds is None:
        return {}
    chars, longest, words = bounds.chars, bounds.longest_word, bounds.words
    classes = {**CHAR_CLASSES, "plate_chars": None}
    for name in _PLACEHOLDER.findall(chars):
        if name[1:-1] not in classes:
            raise FieldTableError(f"{labels_dir() / 'fields.yaml'}: field {field} bounds name the character class "
                                  f"{name}; known: {', '.join('{' + c + '}' for c in classes)}")
        chars = chars.replace(name, classes[name[1:-1]] or _plate_chars())
    word = f"[{chars}]{{1,{longest}}}"
    body = f"{word}( {word}){{0,{words - 1}}}" if words > 1 else word
    if re.fullmatch(body, UNKNOWN) is None:
        body = f"{UNKNOWN}|{body}"
    return {"pattern": f"^({body})$" if "|" in body else f"^{body}$",
            "maxLength": longest * words + words - 1}


def box_schema(field: str) -> dict[str, Any]:
    """An optional box field: four integers ``[x1, y1, x2, y2]`` in 0..BOX_MAX (original-image pixels)."""
    return {"type": "array", "description": f"{field}: [x1, y1, x2, y2], original-image pixels (optional)",
            "items": {"type": "integer", "minimum": 0, "maximum": BOX_MAX}, "minItems": 4, "maxItems": 4}


def _field_schema(field: str) -> dict[str, Any]:
    if any(f.name == field and f.kind == "box" for f in FIELD_TABLE):
        return box_schema(field)
    vocab = load_vocabularies()[field]
    if vocab.free_text:
        return {"type": "string", "description": f"{field}: as written on the plate, or '{UNKNOWN}'",
                **string_bounds(field)}
    values = [*vocab.canonical, UNKNOWN]
    if vocab.open:
        return {"type": "string", "description": f"{field}: open vocabulary, '{UNKNOWN}' when unknown",
                **string_bounds(field), "examples": values}
    return {"type": "string", "description": f"{field}: one of the canonical values or '{UNKNOWN}'", "enum": values}


def _group_schema(fields: tuple[str, ...], description: str, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """A group's object: ``fields`` required, ``optional`` allowed; properties in field-table order (the order
    answers write them, which guided decoding follows)."""
    order = {f.name: f.order for f in FIELD_TABLE}
    names = sorted((*fields, *optional), key=lambda name: order.get(name, len(order)))
    return {
        "type": "object",
        "description": description,
        "properties": {field: _field_schema(field) for field in names},
        "required": list(fields),
        "additionalProperties": False,
    }


def build_schema() -> dict[str, Any]:
    """The answer schema for the current vocabularies.

    ``车牌属性`` uses ``if``/``then``/``else`` rather than ``oneOf`` so that a validator reports the errors of the
    branch that applies (an object is checked as one plate, anything else as a list of plates) instead of a
    nested 'matches none of' error: ``plates eval`` classifies those errors per field.
    """
    data = _vocabulary_version()
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID,
        "title": "plates answer",
        "description": (
            "What the model answers for one image: vehicle attributes and plate attributes. "
            f"'{PLATE_GROUP}' is an object for one plate, [] for no plate, a list of objects for several. "
            f"Generated by `plates schema` from labels/fields.yaml (version {data}); do not edit by hand."
        ),
        "type": "object",
        "properties": {
            VEHICLE_GROUP: {"$ref": f"#/$defs/{VEHICLE_DEF}"},
            PLATE_GROUP: {
                "if": {"type": "object"},
                "then": {"$ref": f"#/$defs/{PLATE_DEF}"},
                "else": {"type": "array", "items": {"$ref": f"#/$defs/{PLATE_DEF}"}, "maxItems": MAX_PLATES},
            },
        },
        "required": [VEHICLE_GROUP, PLATE_GROUP],
        "additionalProperties": False,
        "$defs": {
            VEHICLE_DEF: _group_schema(VEHICLE_FIELDS, f"The vehicle's {_count(VEHICLE_FIELDS)} attributes."),
            PLATE_DEF: _group_schema(PLATE_FIELDS, f"One licence plate's {_count(PLATE_FIELDS)} attributes"
                                     + (f" and, optionally, {', '.join(OPTIONAL_PLATE_FIELDS)}."
                                        if OPTIONAL_PLATE_FIELDS else "."), OPTIONAL_PLATE_FIELDS),
        },
    }


_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve")


def _count(fields: tuple[str, ...]) -> str:
    return _NUMBER_WORDS[len(fields)] if len(fields) < len(_NUMBER_WORDS) else str(len(fields))


def _vocabulary_version() -> Any:
    import yaml

    return yaml.safe_load((labels_dir() / "fields.yaml").read_text(encoding="utf-8")).get("version")


def render_schema(schema: dict[str, Any]) -> str:
    """The committed text form: stable key order, UTF-8, two-space indent, trailing newline."""
    return json.dumps(schema, ensure_ascii=False, indent=2) + "\n"


def write_schema(path: str | Path | None = None) -> Path:
    path = Path(path) if path else schema_path()
    with atomic_write(path) as handle:
        handle.write(render_schema(build_schema()))
    return path


@functools.lru_cache(maxsize=None)
def _load_schema_cached(path: str) -> dict[str, Any]:
    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read the answer schema ({exc})") from None
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise UserError(f"{path}: not a valid JSON Schema ({exc.message})") from None
    return schema


def load_schema(path: str | Path | None = None) -> dict[str, Any]:
    """The answer schema: from ``path``, else the committed ``eval/answer.schema.json``, else generated
    (an installed package without the checkout's ``eval/`` folder still works). A labels folder of one's own
    (``$PLATES_LABELS_DIR``) gets the schema generated from its table, not the committed one of the shipped
    table. Do not mutate the result."""
    if path is not None:
        return _load_schema_cached(str(Path(path).resolve()))
    committed = schema_path()
    if committed.is_file() and labels_dir() == resources.asset_dir("labels"):
        return _load_schema_cached(str(committed))
    return _generated_schema()


@functools.lru_cache(maxsize=1)
def _generated_schema() -> dict[str, Any]:
    return build_schema()


def answer_validator(schema: dict[str, Any] | None = None):
    """A compiled draft 2020-12 validator for the answer schema."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema if schema is not None else load_schema())


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", metavar="PATH", type=output_file("schema"),
                        help="where to write the schema (default: eval/answer.schema.json in a checkout; "
                             "standard output for an installed package, whose copy is read-only data)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the schema file differs from what labels/ generates")


def _run(args: argparse.Namespace) -> int:
    """Generate the answer JSON Schema (draft 2020-12) from the vocabularies in labels/.

    The schema describes the answer the model is taught: '车牌属性' is an object for one plate, [] for no plate
    and a list of objects for several. Closed fields list their canonical values plus '未知'.
    Run this after editing labels/fields.yaml; `--check` is for CI."""
    path = check_output_file(args.output, "-o") if args.output and not args.check else (
        Path(args.output) if args.output else schema_path())
    expected = render_schema(build_schema())
    if not args.output and not args.check and not resources.from_checkout("eval"):
        sys.stdout.write(expected)
        return 0
    if args.check:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != expected:
            print(f"{path} is out of date with {labels_dir()}: run `plates schema`")
            return 1
        print(f"{path} is up to date")
        return 0
    write_schema(path)
    print(f"wrote {path}")
    return 0


COMMANDS = {"schema": (_configure, _run, "generate eval/answer.schema.json from labels/")}
