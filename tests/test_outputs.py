"""plates.outputs on its own: the kind recognisers, check_kind, and the argparse markers.

Covered elsewhere: that each stage's real output is recognised as its kind and that every declared output of
every subcommand is guarded (tests/test_output_guard.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from plates.errors import UserError
from plates.outputs import KINDS, check_kind, guard_command, input_path, output_dir, output_file, path_options, \
    read_head, recognise

# The first line of each JSONL kind as its stage writes it (fields beyond the recognised ones included).
FIRST_LINES = {
    "records": {"image": "a.jpg", "root": "/d", "format": "seed", "labels": {}, "ids": [], "warnings": []},
    "parse-rejects": {"image": "b.png", "root": "/d", "reason": "bad name", "code": "name_grammar"},
    "teach": {"key": "k", "image": "a.jpg", "mode": "caption", "text": "t", "verdict": "ok", "reasons": []},
    "results": {"response": "{}", "labels": "{}"},
    "eval-details": {"line": 1, "parse": "json", "schema_valid": True, "scores": {}},
    "predict": {"key": "k", "image": "/x/a.jpg", "sha256": "0", "settings": "s", "response": "{}"},
    "predict-rejects": {"image": "/x/b.gif", "reason": "not an image file", "code": "not_image"},
    "review": {"image": "a.jpg", "field": "颜色", "label": "蓝", "prediction": "绿", "value": "蓝"},
}


@pytest.mark.parametrize("kind", sorted(FIRST_LINES))
def test_each_first_line_is_exactly_one_kind(tmp_path, kind):
    """Look-alike lines (a teacher line and a predict answer both have a key; results and predict answers both
    have a response) are told apart: each stage's line is its own kind and no other."""
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps(FIRST_LINES[kind], ensure_ascii=False) + "\n{}\n", encoding="utf-8")
    head = read_head(path)
    assert [name for name, k in KINDS.items() if k.test(head)] == [kind]


def test_documents_are_recognised_by_their_top_level_keys_only(tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"n": 3, "json_valid_rate": 1.0}, indent=2), encoding="utf-8")
    assert recognise(report) == "eval-json"
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"inner": {"n": 3, "json_valid_rate": 1.0}}, indent=2), encoding="utf-8")
    assert recognise(nested) is None
    compact = tmp_path / "compact.json"
    compact.write_text(json.dumps({"n": 3, "json_valid_rate": 1.0}), encoding="utf-8")
    assert recognise(compact) is None, "plates writes its reports indented; a one-line document is someone else's"


def test_bom_crlf_unreadable_and_huge_first_lines(tmp_path):
    crlf = tmp_path / "records.jsonl"
    crlf.write_bytes(b"\xef\xbb\xbf" + json.dumps(FIRST_LINES["records"]).encode() + b"\r\n")
    assert recognise(crlf) == "records"
    md = tmp_path / "report.md"
    md.write_bytes("\ufeff# plates eval\r\n".encode())
    assert recognise(md) == "eval-markdown"
    huge = tmp_path / "huge.jsonl"
    huge.write_text(json.dumps({**FIRST_LINES["records"], "pad": "x" * (1 << 17)}) + "\n", encoding="utf-8")
    assert read_head(huge).record is None and recognise(huge) is None, "only the first 64 KiB is read"
    assert recognise(tmp_path / "missing.jsonl") is None
    assert recognise(tmp_path) is None


def test_check_kind_refuses_what_is_not_its_kind(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"")
    check_kind(path, "records", "-o")  # empty: nothing to lose
    path.write_text(json.dumps(FIRST_LINES["teach"]) + "\n", encoding="utf-8")
    check_kind(path, "teach", "-o")
    with pytest.raises(UserError) as raised:
        check_kind(path, "records", "-o")
    assert str(raised.value).startswith(f"-o {path}: holds `plates teach` output, not `plates parse` records;")
    path.write_text("my notes\n", encoding="utf-8")
    with pytest.raises(UserError, match="holds data plates did not write"):
        check_kind(path, "predict", "-o")


def test_an_append_kind_accepts_its_own_unfinished_first_line(tmp_path):
    """A crash of `plates teach` or `plates predict` can leave a first line without its end; the rerun may
    append (its recovery cuts the line), but no other kind's output is replaced on that excuse."""
    path = tmp_path / "out.jsonl"
    path.write_text('{"key": "k", "mode": "capt', encoding="utf-8")
    check_kind(path, "teach", "-o")
    check_kind(path, "predict", "-o")
    assert not KINDS["records"].append
    with pytest.raises(UserError):
        check_kind(path, "records", "-o")


def test_markers_declare_path_options_and_guard_command_checks_them(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("records", metavar="RECORDS", type=input_path(convert=Path))
    parser.add_argument("--json", type=output_file("eval-json"))
    parser.add_argument("--details", type=output_file("eval-details",
                                                      derive=lambda a: str(a.records) + ".details.jsonl"))
    parser.add_argument("--out-dir", type=output_dir())
    parser.add_argument("--name")
    options = path_options(parser)
    assert [(dest, flag, marker.role, marker.kind) for dest, flag, marker in options] == [
        ("records", "RECORDS", "input", None), ("json", "--json", "output", "eval-json"),
        ("details", "--details", "output", "eval-details"), ("out_dir", "--out-dir", "folder", None)]
    records = tmp_path / "r.jsonl"
    records.write_text(json.dumps(FIRST_LINES["records"]) + "\n", encoding="utf-8")
    args = parser.parse_args([str(records), "--json", str(tmp_path / "report.json")])
    assert isinstance(args.records, Path)
    guard_command(args, options)
    args = parser.parse_args([str(records), "--json", str(records)])
    with pytest.raises(UserError, match=r"^--json .*: is the input RECORDS"):
        guard_command(args, options)
    (tmp_path / "r.jsonl.details.jsonl").write_text("someone's file\n", encoding="utf-8")
    args = parser.parse_args([str(records)])
    with pytest.raises(UserError, match=r"^--details \(default\) .*holds data plates did not write"):
        guard_command(args, options)
    with pytest.raises(ValueError, match="unknown output kind"):
        output_file("no-such-kind")
