"""plates.io on its own: atomic writes, the input/output checks, tolerant JSONL reading, the file hash.

Covered elsewhere: the umask of atomic_write and replace_file_set's old-or-new set (tests/test_safety.py), every
subcommand walked through the guards (tests/test_safety.py, tests/test_output_guard.py).
"""

from __future__ import annotations

import hashlib
import os

import pytest

from plates.errors import UserError
from plates.io import (
    atomic_write, check_input_file, check_output_dir, check_output_file, guard_outputs, iter_jsonl, sha256_file,
    write_jsonl,
)


def test_atomic_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as handle:
            handle.write("half a new file")
            raise RuntimeError("crash while writing")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(tmp_path / "new.jsonl") as handle:
            handle.write("x")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["out.jsonl"], "a file that never existed is not created by a failed write"


def test_atomic_write_replaces_a_symlink_and_never_writes_through_it(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("input", encoding="utf-8")
    link = tmp_path / "out" / "link.txt"
    link.parent.mkdir()
    link.symlink_to(precious)
    with atomic_write(link) as handle:
        handle.write("output")
    assert precious.read_text(encoding="utf-8") == "input"
    assert not link.is_symlink() and link.read_text(encoding="utf-8") == "output"
    assert write_jsonl(tmp_path / "deep" / "er" / "rows.jsonl", ({"n": n} for n in range(3))) == 3, \
        "missing parent folders are created"


def test_iter_jsonl_reads_bom_crlf_and_names_bad_lines_by_number(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\xef\xbb\xbf{\"a\": 1}\r\n\r\n{\"b\": \"\xe8\xbd\xa6\"}\r\n\xb3\xb5\xc5\xc6\n{not json}\n[3]")
    errors: list[str] = []
    assert list(iter_jsonl(path, errors)) == [(1, {"a": 1}), (3, {"b": "车"}), (6, [3])]
    assert len(errors) == 2
    assert errors[0].startswith("line 4: not UTF-8 (byte 0xb3 at column 1")
    assert errors[1].startswith("line 5: not JSON")
    with pytest.raises(UserError, match=r"line 4: not UTF-8") as raised:
        list(iter_jsonl(path))
    assert "\n" not in str(raised.value)


@pytest.mark.timeout(60)
def test_inputs_that_are_not_regular_files_are_refused_without_opening(tmp_path):
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)  # opening it for reading would block for ever
    with pytest.raises(UserError, match="not a regular file"):
        list(iter_jsonl(fifo))
    with pytest.raises(UserError, match="is a folder, expected a file"):
        check_input_file(tmp_path, "--records")
    (tmp_path / "plain").write_text("x", encoding="utf-8")
    with pytest.raises(UserError, match=r"^--records .*plain/x\.jsonl: no such file \(.*plain is a file\)$"):
        check_input_file(tmp_path / "plain" / "x.jsonl", "--records")
    with pytest.raises(UserError, match=r"^--records .*missing\.jsonl: no such file$"):
        check_input_file(tmp_path / "missing.jsonl", "--records")


def test_output_file_checks_name_the_flag(tmp_path):
    (tmp_path / "file").write_text("x", encoding="utf-8")
    cases = {f"{tmp_path}/new/": "is a folder", str(tmp_path): "is a folder",
             str(tmp_path / "file" / "below.json"): "is a file, not a folder",
             "/dev/null": "not a regular file"}
    for path, says in cases.items():
        with pytest.raises(UserError, match=says) as raised:
            check_output_file(path, "--json")
        assert str(raised.value).startswith(f"--json {path}: ")
    assert check_output_file(tmp_path / "new" / "report.json", "--json") == tmp_path / "new" / "report.json"


def test_output_dir_accepts_only_its_own_files_and_kept_inputs(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "train.jsonl").write_text("", encoding="utf-8")
    (out / ".plates-staging-abc").mkdir()
    (out / "records.jsonl").write_text("", encoding="utf-8")
    assert check_output_dir(out, owned=["train.jsonl"], keep=[out / "records.jsonl"]) == out
    for name in ("a.txt", "b.txt", "c.txt", "d.txt"):
        (out / name).write_text("", encoding="utf-8")
    (out / "sub").mkdir()
    with pytest.raises(UserError) as raised:
        check_output_dir(out, "-o", owned=["train.jsonl"], keep=[out / "records.jsonl"])
    assert str(raised.value) == (f"-o {out}: holds files plates did not write (a.txt, b.txt, c.txt and 2 more); "
                                 "give a new or empty folder")
    assert check_output_dir(out, contents=False) == out
    with pytest.raises(UserError, match="is a file, expected a folder"):
        check_output_dir(out / "a.txt")


def test_guard_outputs_refuses_outputs_that_collide(tmp_path):
    dump = tmp_path / "dump"
    dump.mkdir()
    image = dump / "car 1.jpg"
    image.write_bytes(b"\xff\xd8 not really")
    records = tmp_path / "records.jsonl"
    write_jsonl(records, [{"image": "car 1.jpg", "root": str(dump), "labels": {}}])
    with pytest.raises(UserError, match="same file as -o"):
        guard_outputs([records], {"-o": tmp_path / "a.json", "--json": tmp_path / "x" / ".." / "a.json"})
    with pytest.raises(UserError, match="inside the input folder"):
        guard_outputs({"DUMP": dump}, {"-o": image})
    elsewhere = tmp_path / "elsewhere.jpg"
    os.link(image, elsewhere)  # the image under another name, outside any input folder
    with pytest.raises(UserError, match="is an image named by the input"):
        guard_outputs({"RECORDS": records}, {"-o": elsewhere})
    guard_outputs({"RECORDS": records, "DUMP": dump}, {"-o": tmp_path / "new.jsonl"})


def test_sha256_file_across_block_boundaries(tmp_path):
    data = os.urandom((1 << 20) + 17)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(b"")
    assert sha256_file(path) == hashlib.sha256(b"").hexdigest()
