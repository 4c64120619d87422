"""Answer extraction, the first filter step of an evaluation: turn a model's raw text into a value, strictly first
and then leniently, and name the way it got there (``json``, ``fence``, ``python``, ``extract``, ``repair``;
``none`` when nothing worked)."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

from plates.labels import PLATE_GROUP, VEHICLE_GROUP

JSON, FENCE, PYTHON, EXTRACT, REPAIR, UNPARSEABLE = "json", "fence", "python", "extract", "repair", "none"
PARSE_METHODS = (JSON, FENCE, PYTHON, EXTRACT, REPAIR, UNPARSEABLE)


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


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# NaN, Infinity and -Infinity are Python's extension, not JSON (RFC 8259): a response using them is not strict JSON
_scan_json = json.JSONDecoder(parse_constant=_no_constant).scan_once


def json_loads(text: str) -> Any:
    """``json.loads`` for a str without its Python-level wrappers (the scorer's hot path)."""
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        return json.loads(text, parse_constant=_no_constant)
    if end != len(text) and text[end:].strip(" \t\n\r"):
        return json.loads(text, parse_constant=_no_constant)
    return value


def _decode(text: str) -> tuple[bool, Any]:
    """JSON, else a Python literal (the seed's single-quoted dicts). Never raises."""
    try:
        return True, json_loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return True, ast.literal_eval(text.strip())
    except Exception:  # noqa: BLE001 - literal_eval raises many types (SyntaxError, MemoryError, ...)
        return False, None


def object_bounds(text: str) -> list[tuple[int, int]]:
    """(start, end) of every top-level balanced ``{...}`` span, skipping braces inside quoted strings."""
    spans: list[tuple[int, int]] = []
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
                spans.append((start, index + 1))
        elif depth and char in "\"'":
            quote = char
    return spans


def _object_spans(text: str) -> list[str]:
    """Top-level balanced ``{...}`` spans as text."""
    return [text[start:end] for start, end in object_bounds(text)]


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
        return Parsed(json_loads(text), JSON)
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
