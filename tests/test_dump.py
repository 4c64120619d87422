"""The shared dump walker (`plates.dump`): what `plates parse` and `plates predict` both see in a folder.

A symbolic link loop (``loop -> loop``, or ``a -> b -> a``) made ``DirEntry.is_file()`` raise ELOOP, and both
commands died with an ``OSError: [Errno 40]`` traceback; now each loop is a reject with its reason, as a
dangling link is."""

from __future__ import annotations

import os
from pathlib import Path


from plates.cli import main
from plates.dump import file_kind, iter_files
from plates.io import read_jsonl
from plates.image_inputs import collect_inputs


def _folder_with_loops(folder: Path, images: int = 2) -> None:
    from plates.synth import make_dump

    make_dump(folder, images, seed=3)
    os.symlink("loop", folder / "loop")
    os.symlink("b.jpg", folder / "a.jpg")
    os.symlink("a.jpg", folder / "b.jpg")
    os.symlink("missing.jpg", folder / "dangling.jpg")


def test_walker_lists_loops_with_their_kind(tmp_path):
    _folder_with_loops(tmp_path / "d", images=1)
    special: dict[str, str] = {}
    files = iter_files(tmp_path / "d", special=special)
    assert {"loop", "a.jpg", "b.jpg", "dangling.jpg"} <= set(files)
    assert special["loop"] == special["a.jpg"] == special["b.jpg"] == "symbolic link loop"
    assert special["dangling.jpg"] == "dangling symbolic link"
    assert file_kind(str(tmp_path / "d" / "loop")) == "symbolic link loop"


def test_parse_rejects_symlink_loops(tmp_path, capsys):
    dump = tmp_path / "dump"
    _folder_with_loops(dump)
    out = tmp_path / "records.jsonl"
    assert main(["parse", str(dump), "-o", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert len(read_jsonl(out)) == 2
    rejects = {r["image"]: r for r in read_jsonl(tmp_path / "records.rejects.jsonl")}
    for name in ("loop", "a.jpg", "b.jpg"):
        assert rejects[name]["code"] == "not_regular_file"
        assert "symbolic link loop" in rejects[name]["reason"]
    assert "dangling symbolic link" in rejects["dangling.jpg"]["reason"]


def test_predict_rejects_symlink_loops(tmp_path, tiny_model_dir, capsys):
    folder = tmp_path / "new images"
    _folder_with_loops(folder)
    candidates, rejects = collect_inputs([str(folder)])
    assert len(candidates) == 2
    reasons = {Path(r["image"]).name: r["reason"] for r in rejects}
    assert all("symbolic link loop" in reasons[name] for name in ("loop", "a.jpg", "b.jpg"))

    only_links = tmp_path / "links"
    only_links.mkdir()
    for name in ("loop", "a.jpg", "b.jpg"):
        os.symlink(os.readlink(folder / name), only_links / name)
    out = tmp_path / "answers.jsonl"
    # Nothing to answer: the run ends before ms-swift is started, with every link a reject.
    assert main(["predict", str(only_links), "-o", str(out), "--model", str(tiny_model_dir)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    rejected = read_jsonl(tmp_path / "answers.rejects.jsonl")
    assert sorted(Path(r["image"]).name for r in rejected) == ["a.jpg", "b.jpg", "loop"]
    assert all(r["code"] == "not_regular_file" for r in rejected)

    assert main(["predict", str(folder / "loop"), "-o", str(tmp_path / "x.jsonl"),
                 "--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err
    assert [line for line in err.strip().splitlines() if ": note: " not in line] == [
        f"plates predict: error: INPUT {folder / 'loop'}: a symbolic link loop, "
        "not a file or folder"]
