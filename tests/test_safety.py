"""Issue 10: ordinary user mistakes never lose data and never show a traceback.

Every subcommand is walked through the classes of mistakes with real files: an output naming an input (plain,
through a symlink, through a hard link), a folder where a file is expected and the reverse, a path below a file,
files plates did not write, odd names and odd file types in a dump, wrongly encoded inputs, and conflicting or
ineffective options. Each refusal must be exit code 2 with one `plates CMD: error: …` line on stderr, no
traceback, and every input byte-identical afterwards. Commands that would start ms-swift run with --dry-run:
the guards fire before any work. A last test interrupts real `plates build` processes at random moments.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from plates.cli import main
from plates.errors import UserError
from plates.io import (
    atomic_write, check_output_dir, guard_outputs, iter_jsonl, read_jsonl, recover_file_set, replace_file_set,
    same_file,
)

ANSWER = {"车辆属性": {"车辆品牌": "大众", "车辆朝向": "正向", "车辆类型": "轿车", "车辆颜色": "白色"},
          "车牌属性": []}


# ---------------------------------------------------------------------------------------------- helpers


def snapshot(*paths: Path) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or folders), by path: what 'inputs unchanged' compares."""
    out: dict[str, str] = {}
    for path in paths:
        files = [path] if not path.is_dir() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            out[str(file)] = hashlib.sha256(file.read_bytes()).hexdigest() if file.exists() else "missing"
    return out


def refused(capsys, argv: list[str], *inputs: Path, says: str | None = None) -> str:
    """Run ``plates ARGV`` in-process; assert a clean refusal that leaves ``inputs`` byte-identical."""
    capsys.readouterr()
    before = snapshot(*inputs)
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert lines and lines[-1].startswith(f"plates {argv[0]}: error: "), err
    assert sum("error:" in line for line in lines) == 1, err
    assert snapshot(*inputs) == before, "an input changed"
    if says is not None:
        assert says in lines[-1], lines[-1]
    return lines[-1]


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """A dump, its records, teacher output and a built dataset, made once through the real CLI."""
    from plates.synth import make_dump

    root = tmp_path_factory.mktemp("safety")
    dump = root / "dump"
    make_dump(dump, 12, seed=3, broken=1)
    records = root / "records.jsonl"
    assert main(["parse", str(dump), "-o", str(records), "-j", "1"]) == 0
    teacher = root / "teacher.jsonl"
    assert main(["teach", str(records), "-o", str(teacher), "--mode", "describe"]) == 0
    dataset = root / "dataset"
    assert main(["build", str(records), "-o", str(dataset), "--val-ratio", "0.3"]) == 0
    results = root / "results.jsonl"
    answer = json.dumps(ANSWER, ensure_ascii=False)
    results.write_text("".join(json.dumps({"response": answer, "labels": answer}, ensure_ascii=False) + "\n"
                               for _ in range(3)), encoding="utf-8")
    checkpoint = root / "run" / "checkpoint-1"
    checkpoint.mkdir(parents=True)
    (checkpoint / "adapter_config.json").write_text("{}", encoding="utf-8")
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    return {"root": root, "dump": dump, "records": records, "teacher": teacher, "dataset": dataset,
            "results": results, "checkpoint": checkpoint, "model": model}


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


# ---------------------------------------------------------------------------------------------- 1. outputs vs inputs


def _aliases(tmp_path: Path, target: Path) -> list[Path]:
    """Other names of ``target``: a symlink, a hard link, a path with '..' in it."""
    link = tmp_path / "alias-symlink"
    link.symlink_to(target)
    hard = tmp_path / "alias-hardlink"
    os.link(target, hard)
    return [target, link, hard, target.parent / ".." / target.parent.name / target.name]


@pytest.mark.parametrize("flag", ["--json", "--markdown", "--details", "--html"])
def test_eval_output_that_is_the_results_is_refused(space, tmp_path, capsys, flag):
    results = tmp_path / "results.jsonl"
    shutil.copy(space["results"], results)
    for alias in _aliases(tmp_path, results):
        refused(capsys, ["eval", results, flag, alias], results, says="input")
    (tmp_path / "alias-symlink").unlink()
    (tmp_path / "alias-hardlink").unlink()


def test_eval_and_compare_folders_and_duplicates(space, tmp_path, capsys):
    results = space["results"]
    refused(capsys, ["eval", results, "--json", "."], results, says="is a folder")
    refused(capsys, ["eval", results, "--json", tmp_path / "r.json", "--markdown", tmp_path / "r.json"], results)
    refused(capsys, ["eval", results, "--markdown", results / "x.md"], results, says="is a file")
    refused(capsys, ["eval", space["dataset"]], space["dataset"], says="folder")
    report = tmp_path / "a.json"
    report.write_text(json.dumps({"n": 1, "fields": {}}), encoding="utf-8")
    refused(capsys, ["compare", report, report, "--json", report], report, says="input")
    refused(capsys, ["compare", report, report, "--json", tmp_path], report, says="is a folder")


def test_parse_never_replaces_a_file_of_the_dump(space, tmp_path, capsys):
    dump = space["dump"]
    image = next(p for p in sorted(dump.rglob("*.jpg")))
    refused(capsys, ["parse", dump, "-o", image], dump, says="dump")
    refused(capsys, ["parse", dump, "-o", tmp_path / "r.jsonl", "--rejects", image], dump, says="dump")
    refused(capsys, ["parse", dump, "-o", tmp_path / "r.jsonl", "--summary", image], dump)
    refused(capsys, ["parse", dump, "-o", tmp_path / "r.jsonl", "--rejects", tmp_path / "r.jsonl"], dump)
    refused(capsys, ["parse", dump, "-o", tmp_path], dump, says="is a folder")
    refused(capsys, ["parse", dump, "-o", tmp_path / "r.jsonl", "--summary", tmp_path], dump, says="is a folder")
    refused(capsys, ["parse", dump, "-o", image / "r.jsonl"], dump, says="is a file")
    refused(capsys, ["parse", image, "-o", tmp_path / "r.jsonl"], dump, says="expected a folder")
    assert not (tmp_path / "r.jsonl").exists()


def test_teach_refuses_inputs_and_files_that_are_not_teacher_output(space, tmp_path, capsys):
    records = tmp_path / "records.jsonl"
    shutil.copy(space["records"], records)
    for alias in _aliases(tmp_path, records):
        refused(capsys, ["teach", records, "-o", alias, "--mode", "caption"], records)
    refused(capsys, ["teach", records, "-o", tmp_path / "t.jsonl", "--mode", "caption", "--summary", records],
            records, says="input")
    refused(capsys, ["teach", records, "-o", tmp_path, "--mode", "caption"], records, says="is a folder")
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my notes, one line and no newline")
    refused(capsys, ["teach", records, "-o", notes, "--mode", "caption"], records, notes,
            says="not a `plates teach` output")
    other = tmp_path / "other.jsonl"
    other.write_text('{"messages": []}\n{"messages": []}', encoding="utf-8")
    refused(capsys, ["teach", records, "-o", other, "--mode", "caption"], records, other)
    refused(capsys, ["teach", tmp_path, "-o", tmp_path / "t.jsonl", "--mode", "caption"], records,
            says="is a folder")


def test_teach_keeps_a_complete_last_line_without_newline(space, tmp_path, capsys):
    out = tmp_path / "teacher.jsonl"
    data = space["teacher"].read_bytes()
    out.write_bytes(data.rstrip(b"\n"))  # an editor saved it without the final newline
    assert main(["teach", str(space["records"]), "-o", str(out), "--mode", "describe"]) == 0
    assert "torn" not in capsys.readouterr().err
    assert out.read_bytes() == data, "the complete last line was kept (and its newline restored)"


def test_infer_and_export_never_replace_their_inputs(space, tmp_path, capsys):
    dataset, model = space["dataset"], space["model"]
    base = ["infer", "--model", model, "--dataset", dataset, "--dry-run"]
    refused(capsys, [*base, "-o", dataset / "val.jsonl"], dataset, says="input")
    refused(capsys, [*base, "-o", dataset / "train.jsonl"], dataset, says="input")
    from plates.infer import infer_inputs

    guard_outputs(infer_inputs(model=str(model), dataset=str(dataset)), {"-o": dataset / "results.jsonl"})
    refused(capsys, ["infer", "--model", model, "--dataset", dataset / "val.jsonl", "-o", dataset / "val.jsonl",
                     "--dry-run"], dataset)
    refused(capsys, [*base, "-o", dataset], dataset, says="is a folder")
    refused(capsys, [*base, "-o", model / "config.json"], model, says="input folder")
    file = tmp_path / "merged"
    file.write_text("not a folder", encoding="utf-8")
    refused(capsys, ["export", "--adapters", space["checkpoint"], "-o", file, "--dry-run"], file,
            says="expected a folder")


def test_schema_tiny_model_and_demo_kinds(space, tmp_path, capsys, monkeypatch):
    import plates.synth

    def started(*args, **kwargs):
        raise AssertionError("the demo started in a folder it did not make")

    monkeypatch.setattr(plates.synth, "make_dump", started)
    refused(capsys, ["schema", "-o", tmp_path], says="is a folder")
    afile = tmp_path / "afile"
    afile.write_text("x", encoding="utf-8")
    refused(capsys, ["schema", "-o", afile / "s.json"], afile, says="is a file")
    refused(capsys, ["tiny-model", afile / "m"], afile, says="is a file")
    refused(capsys, ["tiny-model", afile], afile)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "dump").mkdir()
    (mine / "dump" / "photo.jpg").write_bytes(b"precious")
    refused(capsys, ["demo", "--workdir", mine, "--images", "8"], mine, says="did not write")


# ---------------------------------------------------------------------------------------------- 2./3. build's folder


def test_build_refuses_a_folder_it_did_not_write_and_keeps_its_inputs(space, tmp_path, capsys):
    records = space["records"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.docx").write_bytes(b"weeks of work")
    refused(capsys, ["build", records, "-o", out], out, records, says="did not write")
    refused(capsys, ["build", records, "-o", records], records, says="expected a folder")
    refused(capsys, ["build", records, "-o", records / "ds"], records, says="is a file")
    refused(capsys, ["build", out, "-o", tmp_path / "ds"], out, says="is a folder")
    # its own inputs may live in the folder: they survive, and may not be one of its output names
    inside = tmp_path / "inside"
    inside.mkdir()
    shutil.copy(records, inside / "records.jsonl")
    shutil.copy(space["teacher"], inside / "teacher.jsonl")
    kept = snapshot(inside)
    assert main(["build", str(inside / "records.jsonl"), "-o", str(inside), "--descriptions",
                 str(inside / "teacher.jsonl")]) == 0
    assert all(snapshot(inside)[k] == v for k, v in kept.items())
    assert main(["build", str(inside / "records.jsonl"), "-o", str(inside)]) == 0, "a re-run into the same folder"
    named_like_output = tmp_path / "clash"
    named_like_output.mkdir()
    shutil.copy(records, named_like_output / "val_records.jsonl")
    refused(capsys, ["build", named_like_output / "val_records.jsonl", "-o", named_like_output],
            named_like_output, says="input")


def test_build_merges_llama_factory_dataset_info(space, tmp_path, capsys):
    out = tmp_path / "lf"
    assert main(["build", str(space["records"]), "-o", str(out), "--format", "sharegpt"]) == 0
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    info["my_other_set"] = {"file_name": "elsewhere/mine.json", "formatting": "alpaca"}
    (out / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    assert main(["build", str(space["records"]), "-o", str(out), "--format", "sharegpt",
                 "--dataset-name", "v2"]) == 0
    merged = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert merged["my_other_set"] == info["my_other_set"]
    assert {"v2_train", "v2_val"} <= set(merged) and "plates_train" not in merged
    assert main(["build", str(space["records"]), "-o", str(out)]) == 0  # swift format: our entries go
    merged = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert merged == {"my_other_set": info["my_other_set"]}
    assert not (out / "train_sharegpt.json").exists()
    (out / "dataset_info.json").write_text("not json", encoding="utf-8")
    refused(capsys, ["build", space["records"], "-o", out, "--format", "sharegpt"], out, says="dataset_info.json")


def test_build_exclude_warning_must_name_a_known_code(space, capsys):
    refused(capsys, ["build", space["records"], "-o", space["root"] / "x", "--exclude-warning", "plate_patern"],
            space["records"], says="plate_patern")
    assert not (space["root"] / "x").exists()


# ---------------------------------------------------------------------------------------------- 4. odd names, odd files


@pytest.mark.timeout(120)
def test_parse_accounts_for_non_utf8_names_and_special_files(tmp_path):
    from plates.synth import make_dump

    dump = tmp_path / "dump"
    make_dump(dump, 4, seed=1)
    image = next(dump.rglob("*.jpg"))
    gbk = os.fsencode(dump) + b"/" + "车辆属性:大众-正向-轿车-白色_car1.jpg".encode("gb18030")
    shutil.copy(image, gbk)
    garbage = os.fsencode(dump) + b"/\xff\xfe-not-text.jpg"
    shutil.copy(image, garbage)
    os.mkfifo(dump / "pipe.jpg")
    out = tmp_path / "records.jsonl"
    assert main(["parse", str(dump), "-o", str(out), "-j", "1"]) == 0
    records, rejects = read_jsonl(out), read_jsonl(tmp_path / "records.rejects.jsonl")
    assert len(records) + len(rejects) == 4 + 3
    by_code = {r["code"]: r for r in rejects}
    assert by_code["not_regular_file"]["image"] == "pipe.jpg" and "FIFO" in by_code["not_regular_file"]["reason"]
    encoding = [r for r in rejects if r["code"] == "name_encoding"]
    assert len(encoding) == 2 and any("车辆属性" in r["reason"] for r in encoding)


def test_inputs_with_bom_crlf_and_wrong_encodings(space, tmp_path, capsys):
    lines = space["records"].read_text(encoding="utf-8").splitlines()
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    assert [obj for _, obj in iter_jsonl(bom)] == [json.loads(line) for line in lines]
    assert main(["build", str(bom), "-o", str(tmp_path / "ds")]) == 0
    gbk = tmp_path / "gbk.jsonl"
    gbk.write_bytes("\n".join(lines).encode("gb18030"))
    refused(capsys, ["build", gbk, "-o", tmp_path / "ds2"], gbk, says="not UTF-8")
    refused(capsys, ["teach", gbk, "-o", tmp_path / "t.jsonl", "--mode", "caption"], gbk, says="not UTF-8")
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes("\n".join(lines).encode("utf-16"))
    refused(capsys, ["build", utf16, "-o", tmp_path / "ds3"], utf16, says="not UTF-8")
    with pytest.raises(UserError, match="is a folder"):
        list(iter_jsonl(tmp_path))


# ---------------------------------------------------------------------------------------------- 9. options


def test_conflicting_and_ineffective_train_options(space, tmp_path, capsys, monkeypatch):
    base = ["train", "--preset", "tiny_cpu", "--dataset", space["dataset"], "--dry-run"]
    refused(capsys, [*base, "--model", space["model"], "--set", "model=other"], says="twice")
    refused(capsys, [*base, "--model", space["model"], "--output-dir", tmp_path / "a", "--set",
                     f"output_dir={tmp_path / 'b'}"], says="twice")
    refused(capsys, [*base, "--model", space["model"], "--gpus", "0", "--env", "CUDA_VISIBLE_DEVICES=1"],
            says="--gpus")
    refused(capsys, [*base, "--model", space["model"], "--output-dir", space["records"]], space["records"],
            says="expected a folder")
    monkeypatch.chdir(space["root"])
    assert main([str(a) for a in [*base, "--model", "model", "--model-parallel"]]) == 0
    captured = capsys.readouterr()
    assert "--model-parallel has no effect" in captured.err
    assert f"--model {space['model']}" in captured.out.replace("'", ""), "a local model path is made absolute"


def test_conflicting_and_ineffective_infer_options(space, capsys):
    base = ["infer", "--model", space["model"], "--dataset", space["dataset"], "-o", space["root"] / "r.jsonl",
            "--dry-run"]
    refused(capsys, [*base, "--batch-size", "0"], says="--batch-size")
    refused(capsys, [*base, "--max-pixels", "-1"], says="--max-pixels")
    refused(capsys, [*base, "--set", "result_path=x.jsonl"], says="result_path")
    refused(capsys, [*base, "--set", "val_dataset=x.jsonl"], says="twice")


# ---------------------------------------------------------------------------------------------- the shared helpers


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hops=st.lists(st.sampled_from(["symlink", "hardlink", "dotdot", "dot"]), min_size=1, max_size=4),
       other=st.booleans())
def test_guard_outputs_sees_through_any_spelling(tmp_path, hops, other):
    """However an input is re-spelt (chains of symlinks, hard links, '..' and '.'), guard_outputs refuses it
    as an output; a different file is never refused."""
    base = tmp_path / f"case-{len(list(tmp_path.iterdir()))}"
    base.mkdir()
    source = base / "input.jsonl"
    source.write_text("{}\n", encoding="utf-8")
    path = source
    for i, hop in enumerate(hops):
        if hop == "symlink":
            link = base / f"s{i}"
            link.symlink_to(path)
            path = link
        elif hop == "hardlink":
            link = base / f"h{i}"
            os.link(path, link)
            path = link
        elif hop == "dotdot":
            path = path.parent / ".." / path.parent.name / path.name
        else:
            path = path.parent / "." / path.name
    if other:
        (base / "other.jsonl").write_text("{}\n", encoding="utf-8")
        guard_outputs({"IN": source}, {"-o": base / "other.jsonl"})
        assert not same_file(source, base / "other.jsonl")
    else:
        with pytest.raises(UserError, match="same file"):
            guard_outputs({"IN": source}, {"-o": path})


def test_atomic_write_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        import plates.io as pio

        pio._UMASK = None
        with atomic_write(tmp_path / "a.txt") as handle:
            handle.write("x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
        pio._UMASK = None
    with atomic_write(tmp_path / "b.txt") as handle:
        handle.write("x")
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o666 & ~old


def test_replace_file_set_old_or_new(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    for name in ("a", "b", "stale"):
        (folder / name).write_text("old", encoding="utf-8")
    (folder / "user").write_text("theirs", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with replace_file_set(folder, remove=["stale"]) as staging:
            (staging / "a").write_text("new", encoding="utf-8")
            raise RuntimeError("crash while writing")
    assert {p.name: p.read_text() for p in folder.iterdir()} == {"a": "old", "b": "old", "stale": "old",
                                                                  "user": "theirs"}
    with replace_file_set(folder, remove=["stale"]) as staging:
        (staging / "a").write_text("new", encoding="utf-8")
        (staging / "b").write_text("new", encoding="utf-8")
    assert {p.name: p.read_text() for p in folder.iterdir()} == {"a": "new", "b": "new", "user": "theirs"}
    # a crash after the journal was written is rolled forward by the next writer (or recover_file_set)
    staging = folder / ".plates-staging-x"
    staging.mkdir()
    (staging / "a").write_text("newer", encoding="utf-8")
    (folder / ".plates-commit.json").write_text(json.dumps({"staging": staging.name, "move": ["a"],
                                                            "remove": ["b"]}), encoding="utf-8")
    recover_file_set(folder)
    assert {p.name: p.read_text() for p in folder.iterdir()} == {"a": "newer", "user": "theirs"}
    with pytest.raises(UserError, match="did not write"):
        check_output_dir(folder, owned=["a", "b"])


# ---------------------------------------------------------------------------------------------- Ctrl-C


def _owned(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.name.startswith(".plates-")}


def test_ctrl_c_during_build_leaves_the_old_or_the_new_set(tmp_path):
    """SIGINT a real `plates build` at random moments of its write phase: the folder holds exactly the old set
    or the new one (seen before the fix: new train/val beside old stats)."""
    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for i in range(4000):
        (images / f"{i}.jpg").write_bytes(b"")
        lines.append(json.dumps({"image": f"{i}.jpg", "root": str(images), "labels": ANSWER,
                                 "ids": [f"car{i // 2}"], "warnings": []}, ensure_ascii=False))
    records = tmp_path / "records.jsonl"
    records.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "ds"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}

    def build(seed: int, sharegpt: bool) -> subprocess.Popen:
        argv = [sys.executable, "-m", "plates.cli", "build", str(records), "-o", str(out), "--seed", str(seed)]
        return subprocess.Popen(argv + (["--format", "sharegpt"] if sharegpt else []), env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    assert build(1, True).wait() == 0
    old = _owned(out)

    def write_phase_starts(process: subprocess.Popen, names: set[str]) -> float:
        """Wait until a temporary name appears in the folder (the write phase begins); returns the time."""
        while set(os.listdir(out)) == names and process.poll() is None:
            time.sleep(0.0005)
        return time.monotonic()

    process = build(2, False)
    started = write_phase_starts(process, set(os.listdir(out)))
    assert process.wait() == 0
    duration = time.monotonic() - started  # the write phase and exit: where a mix could happen
    new = _owned(out)
    assert old != new and "train_sharegpt.json" in old and "train_sharegpt.json" not in new
    rng = random.Random(0)
    outcomes = []
    for _ in range(8):
        shutil.rmtree(out)
        out.mkdir()
        for name, data in old.items():
            (out / name).write_bytes(data)
        process = build(2, False)
        write_phase_starts(process, set(os.listdir(out)))
        time.sleep(rng.uniform(0, duration))
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
        assert b"Traceback" not in err, err.decode()
        got = _owned(out)
        assert got in (old, new), f"a mix: {sorted(got)}"
        assert not [p for p in out.iterdir() if p.name.startswith(".plates-")], "staging left behind"
        outcomes.append("new" if got == new else "old")
    print("ctrl-c outcomes:", outcomes, f"(write phase {duration:.2f} s)")
