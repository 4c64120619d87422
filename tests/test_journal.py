"""The resumable JSONL journal (:class:`plates.journal.Journal`) that `plates teach` and `plates predict` write
through: one writer at a time, keys read back on a re-run, and only what a crash of ours leaves is repaired
(anything else is a one-line user error with the file untouched)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from plates.errors import UserError
from plates.journal import Journal


def _line(key: str, **more) -> bytes:
    return (json.dumps({"key": key, **more}, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _recover(path: Path, command: str = "predict", on_line=None):
    journal = Journal(path, command)
    try:
        return journal.recover(on_line)
    finally:
        journal.close()


def test_second_writer_is_refused(tmp_path):
    from plates.journal import Journal

    out = tmp_path / "teacher.jsonl"
    first = Journal(out)
    try:
        with pytest.raises(UserError, match="another `plates teach`"):
            Journal(out)
    finally:
        first.close()
    Journal(out).close()


def test_a_writer_in_another_process_is_refused_until_it_exits(tmp_path):
    """The lock is the file's, not the process's: a second `plates predict` elsewhere is refused while the
    first holds it, and gets it once the first has gone (even without closing, as after a kill)."""
    out = tmp_path / "预测 out" / "preds.jsonl"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from plates.journal import Journal; Journal(sys.argv[1], 'predict'); "
         "print('locked', flush=True); sys.stdin.read()", str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(UserError) as refused:
            Journal(out, "predict")
        assert str(refused.value) == f"{out}: another `plates predict` is writing this file"
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=120) == 0
    Journal(out, "predict").close()


def test_appended_lines_come_back_with_keys_duplicates_and_each_line(tmp_path):
    out = tmp_path / "sub" / "preds.jsonl"
    journal = Journal(out, "predict")
    assert journal.recover().lines == 0, "a new file (and its folder) is created empty"
    for key in ("a.jpg#1", "车 b.jpg#2", "a.jpg#1"):
        journal.append({"key": key, "answer": {"车辆颜色": "白色"}})
    journal.close()
    seen = []
    recovered = _recover(out, on_line=seen.append)
    assert recovered.keys == {"a.jpg#1", "车 b.jpg#2"}
    assert (recovered.lines, recovered.duplicates, recovered.torn_bytes) == (3, 1, 0)
    assert [line["key"] for line in seen] == ["a.jpg#1", "车 b.jpg#2", "a.jpg#1"]
    assert seen[1] == {"key": "车 b.jpg#2", "answer": {"车辆颜色": "白色"}}
    assert out.read_bytes().count(b"\n") == 3 and "车 b" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize("tail", [b'{"key":"c.jpg","ans', b'{"ke', b"\0" * 37])
def test_a_torn_last_line_is_cut_and_the_next_append_follows_whole_lines(tmp_path, tail):
    """What a kill mid-append leaves (the start of one of our lines, or the zeros a power cut leaves) is cut."""
    out = tmp_path / "preds.jsonl"
    whole = _line("a.jpg") + _line("b.jpg")
    out.write_bytes(whole + tail)
    journal = Journal(out, "predict")
    recovered = journal.recover()
    assert (recovered.keys, recovered.torn_bytes) == ({"a.jpg", "b.jpg"}, len(tail))
    assert out.read_bytes() == whole
    journal.append({"key": "c.jpg"})
    journal.close()
    assert out.read_bytes() == whole + _line("c.jpg")


def test_a_complete_last_line_without_its_newline_is_kept(tmp_path):
    out = tmp_path / "preds.jsonl"
    out.write_bytes(_line("a.jpg") + _line("b.jpg").rstrip(b"\n"))
    journal = Journal(out, "predict")
    recovered = journal.recover()
    assert (recovered.keys, recovered.torn_bytes) == ({"a.jpg", "b.jpg"}, 0)
    journal.append({"key": "c.jpg"})
    journal.close()
    assert out.read_bytes() == _line("a.jpg") + _line("b.jpg") + _line("c.jpg")


@pytest.mark.parametrize("content, says", [
    (_line("a.jpg") + b"{damaged\n" + _line("b.jpg"),
     "line 2 is damaged (not JSON) and is not a line cut off by a crash"),
    (_line("a.jpg") + b"\0" * 8 + b"\n" + _line("b.jpg"), "line 2 is damaged (not JSON) but is not the last line"),
    (b"image,label\nx.jpg,1\n", "is not a `plates predict` output (line 1 is not one of its lines); choose another -o"),
    (_line("a.jpg") + b'{"image": "b.jpg"}\n', "line 2 has no 'key'"),
    (_line("a.jpg") + b'["a.jpg"]\n', "line 2 has no 'key'"),
])
def test_what_a_crash_cannot_leave_is_a_one_line_error_and_the_file_is_untouched(tmp_path, content, says):
    out = tmp_path / "preds.jsonl"
    out.write_bytes(content)
    with pytest.raises(UserError) as refused:
        _recover(out)
    message = str(refused.value)
    assert message.startswith(f"{out}: ") and says in message and "\n" not in message
    assert out.read_bytes() == content


def test_blank_lines_are_skipped_and_kept(tmp_path):
    out = tmp_path / "preds.jsonl"
    content = _line("a.jpg") + b"\n  \n" + _line("b.jpg")
    out.write_bytes(content)
    recovered = _recover(out)
    assert (recovered.keys, recovered.lines) == ({"a.jpg", "b.jpg"}, 2)
    assert out.read_bytes() == content
