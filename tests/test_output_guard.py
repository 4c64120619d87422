"""Issue 21: one output guard for every path option of every subcommand.

The property test walks every subcommand's parser (``plates.cli.build_parser``): each path-looking option must be
declared with a ``plates.outputs`` marker, and each declared output is pointed at an input file, at an image
inside an input folder, at a file plates did not write and at another stage's output - each must be refused with
exit 2 and one line, the file byte-identical afterwards. An option added later is covered with no change here.
The data-loss cases of the issue follow, each as it was reported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from plates.cli import build_parser, main
from plates.errors import UserError
from plates.io import guard_outputs
from plates.outputs import KINDS, PathOption, guard_command, path_options, recognise

# Options whose names look like paths but are not (the reason is the declaration).
NOT_PATHS = {("teach", "model"): "the served model's name, or 'auto'"}
_PATH_METAVAR = re.compile(r"PATH|FILE|DIR|OUT\b|ROOT|RECORDS|REVIEW|PREDS|INPUT|DATASET|CHECKPOINT|\.JSON", re.I)
_PATH_DEST = {"output", "out", "path", "dir", "file", "json", "markdown", "html", "plots", "details", "sheet",
              "summary", "rejects", "records", "dataset", "adapters", "corrections", "prompts", "inputs", "workdir",
              "results", "model", "descriptions", "calibration", "before", "after", "root", "relative"}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _looks_like_path(action: argparse.Action) -> bool:
    if action.nargs == 0 or action.choices or action.dest.startswith("_") or action.dest == "help":
        return False
    if isinstance(action.type, type) and issubclass(action.type, os.PathLike):
        return True
    metavars = action.metavar if isinstance(action.metavar, tuple) else (action.metavar or "",)
    if any(_PATH_METAVAR.search(m) for m in metavars):
        return True
    words = set(action.dest.split("_"))
    return bool(words & _PATH_DEST) and "name" not in words


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(path: Path) -> dict[str, str]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p): _sha(p) for p in files}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A dump, its records, a teacher output and a foreign file, made through the real CLI."""
    from plates.synth import make_dump

    root = tmp_path_factory.mktemp("guard")
    dump = root / "dump"
    make_dump(dump, 4, seed=5)
    records = root / "records.jsonl"
    assert main(["parse", str(dump), "-o", str(records), "-j", "1"]) == 0
    teacher = root / "teacher.jsonl"
    assert main(["teach", str(records), "-o", str(teacher), "--mode", "describe"]) == 0
    notes = root / "notes.txt"
    notes.write_text("my own notes\n", encoding="utf-8")
    return {"root": root, "dump": dump, "records": records, "teacher": teacher, "notes": notes,
            "image": sorted(dump.rglob("*.jpg"))[0]}


def test_every_path_looking_option_is_declared():
    undeclared, declared = [], 0
    for name, parser in _subparsers().items():
        for action in parser._actions:
            if isinstance(action.type, PathOption):
                declared += 1
            elif _looks_like_path(action) and (name, action.dest) not in NOT_PATHS:
                undeclared.append(f"plates {name} {'/'.join(action.option_strings) or action.dest}")
    assert not undeclared, ("path options without a plates.outputs marker (type=input_path()/output_file(KIND)/"
                            f"output_dir()): {undeclared}")
    assert declared >= 40


def _argv(name: str, parser: argparse.ArgumentParser, tested: str, target: Path, input_value: Path,
          scratch: Path) -> list[str]:
    """A command line with the required options filled (inputs -> ``input_value``, outputs -> fresh paths)
    and ``tested`` set to ``target``."""
    positional: list[str] = []
    options: list[str] = []
    chosen_groups = set()
    groups = {id(a): g for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions}
    for action in parser._actions:
        if action.dest in ("help",) or action.dest.startswith("_") or action.nargs == 0 and action.dest != tested:
            continue
        group = groups.get(id(action))
        needed = action.dest == tested or (not action.option_strings) or action.required or (
            group is not None and id(group) not in chosen_groups)
        if not needed:
            continue
        if group is not None:
            chosen_groups.add(id(group))
        marker = action.type if isinstance(action.type, PathOption) else None
        if action.dest == tested:
            value = str(target)
        elif marker is not None and marker.role == "input":
            value = str(input_value)
        elif marker is not None:
            value = str(scratch / f"fresh-{action.dest}")
        elif action.choices:
            value = str(next(iter(action.choices)))
        else:
            value = "1"
        if action.option_strings:
            options += [action.option_strings[0], value]
        else:
            positional.append(value)
    return [name, *positional, *options]


def _outputs():
    for name, parser in _subparsers().items():
        for dest, flag, marker in path_options(parser):
            if marker.role != "input":
                yield pytest.param(name, dest, flag, marker, id=f"{name}-{flag}")


@pytest.mark.parametrize("name,dest,flag,marker", list(_outputs()))
def test_every_output_option_is_guarded(files, tmp_path, capsys, name, dest, flag, marker):
    parser = _subparsers()[name]
    inputs = tmp_path / "inputs.jsonl"
    shutil.copy(files["records"], inputs)
    dump = tmp_path / "dump"
    shutil.copytree(files["dump"], dump)
    notes = tmp_path / "notes.txt"
    shutil.copy(files["notes"], notes)
    other = tmp_path / "other-stage.jsonl"
    shutil.copy(files["records"] if marker.kind == "teach" else files["teacher"], other)
    photo = dump / files["image"].relative_to(files["dump"])
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    fresh = _argv(name, parser, dest, scratch / "new-output", inputs, scratch)
    guard_command(build_parser().parse_args(fresh))  # control: a new path passes the guard

    for target, input_value, protected in ((inputs, inputs, inputs), (photo, dump, dump), (notes, inputs, notes),
                                           (other, inputs, other)):
        argv = _argv(name, parser, dest, target, input_value, scratch)
        before = _tree(protected)
        capsys.readouterr()
        code = main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith(f"plates {name}: error: "), err
        assert flag in lines[0], lines[0]
        assert _tree(protected) == before, f"{argv}: {protected} changed"
    assert not any(scratch.iterdir()), "something was written before the refusal"


def test_every_kind_recognises_what_its_stage_writes(files, tmp_path):
    assert recognise(files["records"]) == "records"
    assert recognise(files["records"].with_name("records.rejects.jsonl")) in (None, "parse-rejects")
    assert recognise(files["teacher"]) == "teach"
    assert recognise(files["notes"]) is None and recognise(files["image"]) is None
    summary = tmp_path / "summary.json"
    assert main(["parse", str(files["dump"]), "-o", str(tmp_path / "r.jsonl"), "-j", "1", "--summary",
                 str(summary)]) == 0
    assert recognise(summary) == "parse-summary"
    assert main(["schema", "-o", str(tmp_path / "schema.json")]) == 0
    assert recognise(tmp_path / "schema.json") == "schema"
    assert set(KINDS) >= {"records", "teach", "predict", "review", "eval-json", "eval-html", "eval-markdown"}


# ---------------------------------------------------------------------------------------------- the reported cases


def _refused(capsys, argv: list, *protected: Path, says: str | None = None) -> str:
    before = {p: _tree(p) for p in protected}
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert len([line for line in err.strip().splitlines() if ": note: " not in line]) == 1, err
    assert {p: _tree(p) for p in protected} == before
    if says:
        assert says in err, err
    return err


def test_predict_summary_and_rejects_never_replace_inputs_or_answers(files, tmp_path, capsys):
    inputs = tmp_path / "in.jsonl"
    shutil.copy(files["records"], inputs)
    out = tmp_path / "preds.jsonl"
    out.write_text(json.dumps({"key": "k", "image": "/x.jpg", "sha256": "0", "settings": "s"}) + "\n")
    base = ["predict", inputs, "-o", out, "--model", "Qwen/none"]
    _refused(capsys, [*base, "--summary", inputs], inputs, says="--summary")
    _refused(capsys, [*base, "--summary", out], out, says="same file as -o")
    dump = tmp_path / "dump"
    shutil.copytree(files["dump"], dump)
    photo = dump / files["image"].relative_to(files["dump"])
    _refused(capsys, ["predict", dump, "-o", out, "--model", "Qwen/none", "--rejects", photo], dump,
             says="inside the input folder")
    named = tmp_path / "named.jsonl"  # a records input naming an image outside any input folder
    named.write_text(json.dumps({"image": photo.name, "root": str(photo.parent)}) + "\n", encoding="utf-8")
    _refused(capsys, ["predict", named, "-o", out, "--model", "Qwen/none", "--summary", photo], dump,
             says="--summary")
    with pytest.raises(UserError, match="is an image named by the input INPUT"):
        guard_outputs([("INPUT", named)], {"--summary": photo})


def test_parse_corrections_are_an_input(files, tmp_path, capsys):
    review = tmp_path / "review.jsonl"
    review.write_text(json.dumps({"image": "a.jpg", "path": "/a.jpg", "field": "车辆颜色", "plate": None,
                                  "label": "白色", "prediction": "黑色", "confidence": 0.9, "value": "黑色"},
                                 ensure_ascii=False) + "\n", encoding="utf-8")
    _refused(capsys, ["parse", files["dump"], "-o", review, "--corrections", review], review, says="input")


def test_predict_never_appends_to_another_stages_output(files, tmp_path, capsys):
    teacher = tmp_path / "teacher.jsonl"
    shutil.copy(files["teacher"], teacher)
    _refused(capsys, ["predict", files["dump"], "-o", teacher, "--model", "Qwen/none"], teacher,
             says="holds `plates teach` output")
    records = tmp_path / "records.jsonl"
    shutil.copy(files["records"], records)
    rejects = tmp_path / "records.rejects.jsonl"
    rejects.write_text('{"image":"x","root":"/r","reason":"r","code":"c"}\n', encoding="utf-8")
    _refused(capsys, ["predict", files["dump"], "-o", records, "--model", "Qwen/none"], records, rejects)
    # a predict output of its own whose default rejects file is parse's: refused before it is emptied
    preds = tmp_path / "records2.jsonl"
    shutil.copy(rejects, tmp_path / "records2.rejects.jsonl")
    _refused(capsys, ["predict", files["dump"], "-o", preds, "--model", "Qwen/none"],
             tmp_path / "records2.rejects.jsonl", says="--rejects (default)")
    assert not preds.exists()


def test_refused_predict_rerun_keeps_the_previous_rejects(tmp_path, tiny_model_dir, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "readme.txt").write_text("not an image\n", encoding="utf-8")
    out = tmp_path / "preds.jsonl"
    out.write_text(json.dumps({"key": "k", "image": "/x.jpg", "sha256": "0", "settings": "other"}) + "\n")
    rejects = tmp_path / "preds.rejects.jsonl"
    rejects.write_text(json.dumps({"image": "/earlier.bmp", "reason": "earlier", "code": "corrupt_image"}) + "\n")
    _refused(capsys, ["predict", folder, "-o", out, "--model", tiny_model_dir], out, rejects, says="other settings")


def test_two_predicts_on_one_output_name_predict(tmp_path, tiny_model_dir, capsys):
    from plates.journal import Journal

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "readme.txt").write_text("not an image\n", encoding="utf-8")
    out = tmp_path / "preds.jsonl"
    holder = Journal(out, "predict")  # the first run, still writing
    try:
        _refused(capsys, ["predict", folder, "-o", out, "--model", tiny_model_dir], out,
                 says="another `plates predict` is writing this file")
    finally:
        holder.close()
