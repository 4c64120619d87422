"""What plates writes, declared once: the kinds of output file, and the argparse marker of every path option.

Every path-valued option of every subcommand is declared with a ``type=`` from here: :func:`input_path` (a file
or folder the command reads), :func:`output_file` (a file it writes, with the *kind* of file it writes) or
:func:`output_dir` (a folder it writes into). ``plates.cli`` collects the declarations from the parser and calls
:func:`guard_command` before a command runs, so an option added with one of these types is guarded with no
further code, and tests/test_safety.py fails for a path-looking option declared with none of them.

Each output kind has a recogniser that reads only the start of a file (its first JSON line, its top-level JSON
keys, or its first line of text). An existing output is replaced (or appended to) only when it is empty or is
recognisably the same kind of plates output: a file plates did not write, or that another stage wrote, is refused
before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from plates.errors import UserError
from plates.io import check_output_dir, guard_outputs

_HEAD = 1 << 16
_TOP_KEY = re.compile(r'^  "((?:[^"\\]|\\.)*)":', re.MULTILINE)


@dataclass(frozen=True)
class Head:
    """The start of a file, read once: the first line, the first line parsed as JSON (None if it is not a JSON
    object), the top-level keys of an indented JSON document, and the first 64 KiB as text."""

    line: str
    record: dict[str, Any] | None
    top_keys: frozenset[str]
    text: str
    complete: bool


@dataclass(frozen=True)
class OutputKind:
    name: str
    what: str
    test: Callable[[Head], bool]
    append: bool = False


def _line_has(*keys: str, without: tuple[str, ...] = ()) -> Callable[[Head], bool]:
    return lambda head: head.record is not None and all(k in head.record for k in keys) and not any(
        k in head.record for k in without)


def _doc_has(*keys: str) -> Callable[[Head], bool]:
    return lambda head: head.line.strip() == "{" and all(k in head.top_keys for k in keys)


def _starts(prefix: str) -> Callable[[Head], bool]:
    return lambda head: head.line.lstrip("\ufeff").startswith(prefix)


def _html_titled(title: str) -> Callable[[Head], bool]:
    return lambda head: head.line.lower().startswith("<!doctype html") and f"<title>{title}" in head.text


KINDS: dict[str, OutputKind] = {kind.name: kind for kind in (
    OutputKind("records", "`plates parse` records", _line_has("image", "labels")),
    OutputKind("parse-rejects", "`plates parse` rejects", _line_has("image", "root", "reason", "code")),
    OutputKind("parse-summary", "`plates parse` summary", _doc_has("files", "parsed", "rejected", "formats")),
    OutputKind("teach", "`plates teach` output", _line_has("key", "mode", "verdict"), append=True),
    OutputKind("teach-summary", "`plates teach` summary", _doc_has("mode", "backend", "done", "failed_reasons")),
    OutputKind("results", "`plates infer` results", _line_has("response", without=("key", "mode"))),
    OutputKind("eval-json", "`plates eval` report", _doc_has("n", "json_valid_rate")),
    OutputKind("eval-markdown", "`plates eval` Markdown report", _starts("# plates eval")),
    OutputKind("eval-html", "`plates eval` HTML report", _html_titled("plates eval")),
    OutputKind("eval-details", "`plates eval` details", _line_has("line", "parse", "schema_valid")),
    OutputKind("compare-json", "`plates compare` table", _doc_has("paired", "replicates", "metrics")),
    OutputKind("compare-markdown", "`plates compare` Markdown table", _starts("| metric |")),
    OutputKind("schema", "`plates schema` answer schema", lambda head: '"$id": "urn:plates:answer"' in head.text),
    OutputKind("predict", "`plates predict` answers", _line_has("key", "settings", without=("mode",)),
               append=True),
    OutputKind("predict-rejects", "`plates predict` rejects", _line_has("image", "reason", "code", without=("root",))),
    OutputKind("predict-summary", "`plates predict` summary", _doc_has("out", "answered", "chunks")),
    OutputKind("review", "`plates audit` review file", _line_has("field", "label", "prediction", "value")),
    OutputKind("audit-sheet", "`plates audit` review sheet",
               lambda head: _starts("# plates audit")(head) or _html_titled("plates audit")(head)),
    OutputKind("audit-stats", "`plates audit` statistics", _doc_has("records", "predicted", "without_prediction")),
)}


def read_head(path: str | os.PathLike) -> Head:
    with open(path, "rb") as handle:
        raw = handle.read(_HEAD)
    text = raw.decode("utf-8", errors="replace")
    line, newline, _ = text.partition("\n")
    line = line.lstrip("\ufeff").rstrip("\r")
    try:
        record = json.loads(line) if line.startswith("{") and (newline or len(raw) < _HEAD) else None
    except (ValueError, RecursionError):
        record = None
    return Head(line, record if isinstance(record, dict) else None, frozenset(_TOP_KEY.findall(text)), text,
                bool(newline))


def recognise(path: str | os.PathLike) -> str | None:
    """The name of the plates output kind ``path`` holds, or None (not something plates writes, or unreadable)."""
    try:
        head = read_head(path)
    except OSError:
        return None
    return next((kind.name for kind in KINDS.values() if kind.test(head)), None)


def check_kind(path: str | os.PathLike, kind: str, flag: str) -> None:
    """Refuse to replace (or append to) an existing ``path`` that is not empty and is not a ``kind`` output.
    An append-only kind also accepts a file whose only line is still being written (a crash of ours; the
    command's own recovery cuts it)."""
    expected = KINDS[kind]
    try:
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            return
        head = read_head(path)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot read it to check what it holds ({exc.strerror or exc})") from None
    if expected.test(head) or (expected.append and not head.complete):
        return
    found = next((k for k in KINDS.values() if k.test(head)), None)
    holds = f"holds {found.what}" if found else "holds data plates did not write"
    raise UserError(f"{flag} {path}: {holds}, not {expected.what}; refusing to replace it "
                    "(choose another path, or move that file away)")


# ---------------------------------------------------------------------------------------------- argparse markers


class PathOption:
    """An argparse ``type=`` that marks a path-valued option: ``role`` 'input', 'output' or 'folder'; outputs
    carry their ``kind`` (a key of :data:`KINDS`) and optionally ``derive(args)``, the path used when the
    option is not given (e.g. OUT.rejects.jsonl). Calling it converts the text with ``convert`` (str or Path)."""

    def __init__(self, role: str, kind: str | None = None, *, convert: Callable[[str], Any] = str,
                 derive: Callable[[argparse.Namespace], Any] | None = None):
        if kind is not None and kind not in KINDS:
            raise ValueError(f"unknown output kind {kind!r}")
        self.role, self.kind, self.convert, self.derive = role, kind, convert, derive
        self.__name__ = "path"  # argparse names the type in its 'invalid path value' message

    def __call__(self, text: str) -> Any:
        return self.convert(text)

    def __repr__(self) -> str:
        return f"PathOption({self.role!r}, {self.kind!r})"


def input_path(*, convert: Callable[[str], Any] = str) -> PathOption:
    """A file or folder the command reads (records, a dump, corrections, a checkpoint …): never an output."""
    return PathOption("input", convert=convert)


def output_file(kind: str, *, convert: Callable[[str], Any] = str,
                derive: Callable[[argparse.Namespace], Any] | None = None) -> PathOption:
    """A file the command writes, of kind ``kind``."""
    return PathOption("output", kind, convert=convert, derive=derive)


def output_dir(*, convert: Callable[[str], Any] = str) -> PathOption:
    """A folder the command writes into (the command checks what may already be inside)."""
    return PathOption("folder", convert=convert)


def path_options(parser: argparse.ArgumentParser) -> list[tuple[str, str, PathOption]]:
    """``(dest, flag, marker)`` of every declared path option of ``parser`` (flag: the shortest option string,
    ``-o`` rather than ``--output``, as refusals name it; or the metavar of a positional)."""
    found = []
    for action in parser._actions:
        if isinstance(action.type, PathOption):
            if action.option_strings:
                flag = min(action.option_strings, key=len)
            else:
                flag = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
            found.append((action.dest, flag, action.type))
    return found


def guard_command(args: argparse.Namespace, options: list[tuple[str, str, PathOption]] | None = None) -> None:
    """The one output check every subcommand gets before it runs (``plates.cli`` calls it): each declared
    output is checked with :func:`plates.io.guard_outputs` against every declared input - files, files inside
    input folders, images a JSONL input names - against the other outputs, and for its kind. Raises UserError
    (one line) and writes nothing."""
    options = getattr(args, "_path_options", None) if options is None else options
    inputs: list[tuple[str, Any]] = []
    outputs: dict[str, tuple[Any, str]] = {}
    for dest, flag, marker in options or []:
        value = getattr(args, dest, None)
        if marker.role == "input":
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if item is not None and str(item) != "":
                    inputs.append((flag, item))
        elif marker.role == "folder":
            if value is not None:
                check_output_dir(value, flag, contents=False)
        else:
            if value is None and marker.derive is not None:
                value = marker.derive(args)
                flag = f"{flag} (default)"
            if value is not None:
                outputs[flag] = (value, marker.kind)
    guard_outputs(inputs, outputs, command=getattr(args, "command", None))
