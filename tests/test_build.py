"""`plates build`: records (+ teacher descriptions) -> ms-swift / LLaMA-Factory datasets."""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from plates.build import CAPTION_QUESTIONS, DESCRIBE_QUESTIONS, BuildOptions, build_dataset, load_descriptions
from plates.split import split_by_vehicle, stratum_of
from plates.student import EXTRACTION_PROMPT, IMAGE_TAG, REASON_PROMPT, cot_target, split_reasoning
from plates.cli import main
from plates.errors import UserError
from plates.io import read_jsonl, write_jsonl
from plates.labels import answer_from_labels
from plates.records import vehicle_id

FOLDERS = ("plain", "with space/子 目录", "colon:ascii", "全角：冒号 车牌")


def _draw_dump(root: Path, n: int, seed: int = 0) -> list[dict]:
    """Real drawn JPEGs under awkward folder names, and their records (1-3 frames per carNNNN vehicle)."""
    import cv2

    from plates.synth import draw_vehicle, random_labels

    rng = random.Random(seed)
    records = []
    car, frames_left, labels = 0, 0, None
    for index in range(n):
        if frames_left == 0:
            labels = random_labels(rng)
            car += 1
            frames_left = rng.choice((1, 2, 3))
        frames_left -= 1
        rel = f"{FOLDERS[index % len(FOLDERS)]}/车辆 {index:03d}：car{car}.jpg"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image = draw_vehicle(labels, 64, 48, rng)
        ok, data = cv2.imencode(".jpg", image)
        assert ok
        path.write_bytes(data.tobytes())
        records.append({"image": rel, "root": str(root), "format": "seed", "width": 64, "height": 48,
                        "channels": 3, "labels": labels, "ids": [f"{index:08d}", f"car{car}"], "warnings": []})
    return records


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    root = tmp_path_factory.mktemp("build") / "数据 集:dump"
    records = _draw_dump(root, 40)
    records_file = root.parent / "records 记录.jsonl"
    write_jsonl(records_file, records)
    return root, records, records_file


def _teacher_lines(records, modes=("describe", "caption", "fuse", "reason")):
    lines = []
    for i, record in enumerate(records):
        for mode in modes:
            lines.append({"key": f"k{i}{mode}", "image": record["image"], "mode": mode,
                          "question": "请把图片中的信息转化为文字描述。" if mode in ("caption", "fuse") else
                          "请根据提示信息描述:" + json.dumps(record["labels"], ensure_ascii=False),
                          "text": f"{mode} 文本 {i}:车身颜色是{record['labels']['车辆属性']['车辆颜色']}。",
                          "verdict": "flagged" if i % 5 == 0 else "ok", "reasons": [],
                          "backend": "test", "model": "none", "prompt_version": 1})
    return lines


def _build(records_file, out, *extra):
    rc = main(["build", str(records_file), "-o", str(out), *map(str, extra)])
    assert rc == 0
    return (read_jsonl(out / "train.jsonl"), read_jsonl(out / "val.jsonl"),
            json.loads((out / "stats.json").read_text(encoding="utf-8")))


def _image_vehicles(samples, records):
    by_path = {os.path.normpath(os.path.join(r["root"], r["image"])): vehicle_id(r) for r in records}
    return {by_path[os.path.normpath(s["images"][0])] for s in samples}


# ------------------------------------------------------------------------------------------- the dataset


def test_extraction_samples_have_the_canonical_answer_and_absolute_paths(dump, tmp_path):
    root, records, records_file = dump
    train, val, stats = _build(records_file, tmp_path / "out", "--val-ratio", 0.25)
    assert len(train) + len(val) == len(records)
    by_path = {os.path.join(r["root"], r["image"]): r for r in records}
    for sample in train + val:
        assert set(sample) == {"messages", "images"}
        user, assistant = sample["messages"]
        assert user == {"role": "user", "content": IMAGE_TAG + EXTRACTION_PROMPT}
        assert user["content"].count(IMAGE_TAG) == 1 and len(sample["images"]) == 1
        path = sample["images"][0]
        assert os.path.isabs(path) and os.path.isfile(path)
        record = by_path[path]
        assert assistant == {"role": "assistant",
                             "content": json.dumps(answer_from_labels(record["labels"]), ensure_ascii=False)}
    # spaces, ASCII and full-width colons and CJK survived verbatim
    paths = "".join(s["images"][0] for s in train + val)
    assert " " in paths and ":" in paths and "：" in paths and "车辆" in paths
    val_records = read_jsonl(tmp_path / "out" / "val_records.jsonl")
    assert [os.path.join(r["root"], r["image"]) for r in val_records] == [s["images"][0] for s in val]
    assert stats["splits"]["train"]["records"] + stats["splits"]["val"]["records"] == len(records)
    assert stats["splits"]["train"]["tasks"] == {"extract": len(train)}
    assert stats["sources"]["records"]["sha256"] and stats["labels"]["fields.yaml"]["version"] == 1
    colours = Counter(r["labels"]["车辆属性"]["车辆颜色"] for r in records)
    merged = Counter(stats["splits"]["train"]["labels"]["车辆颜色"]) + Counter(stats["splits"]["val"]["labels"]["车辆颜色"])
    assert merged == colours


def test_split_never_puts_one_vehicle_on_both_sides(dump, tmp_path):
    _, records, records_file = dump
    for seed in range(5):
        train, val, _ = _build(records_file, tmp_path / f"s{seed}", "--val-ratio", 0.3, "--seed", seed)
        assert val and train
        assert not _image_vehicles(train, records) & _image_vehicles(val, records)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=1, max_size=40), ratio=st.floats(0, 0.9),
       seed=st.integers(0, 10**6), shuffle_seed=st.integers(0, 100))
def test_split_property_grouped_deterministic_order_free(sizes, ratio, seed, shuffle_seed):
    records = [{"image": f"v{g}/{k}.jpg", "ids": [f"car{g}"]} for g, size in enumerate(sizes) for k in range(size)]
    is_val = split_by_vehicle(records, ratio, seed)
    sides: dict[str, set[bool]] = {}
    for record, v in zip(records, is_val):
        sides.setdefault(vehicle_id(record), set()).add(v)
    assert all(len(s) == 1 for s in sides.values())
    if ratio > 0 and len(sizes) >= 2:
        assert any(is_val) and not all(is_val)
    if ratio == 0:
        assert not any(is_val)
    # the same records in another order get the same assignment
    order = list(range(len(records)))
    random.Random(shuffle_seed).shuffle(order)
    shuffled = split_by_vehicle([records[i] for i in order], ratio, seed)
    assert [shuffled[order.index(i)] for i in range(len(records))] == is_val


def test_split_size_tracks_ratio():
    records = [{"image": f"{g}/{k}", "ids": [f"car{g}"]} for g in range(300) for k in range(1 + g % 3)]
    for ratio in (0.1, 0.2, 0.5):
        n_val = sum(split_by_vehicle(records, ratio, seed=1))
        assert abs(n_val - ratio * len(records)) <= 3


def test_build_is_deterministic_for_a_seed(dump, tmp_path):
    _, records, records_file = dump
    _build(records_file, tmp_path / "a", "--val-ratio", 0.3, "--seed", 7)
    _build(records_file, tmp_path / "b", "--val-ratio", 0.3, "--seed", 7)
    _build(records_file, tmp_path / "c", "--val-ratio", 0.3, "--seed", 8)
    for name in ("train.jsonl", "val.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "val.jsonl").read_bytes() != (tmp_path / "c" / "val.jsonl").read_bytes()


def test_stratified_split_keeps_each_stratum_ratio_and_groups():
    records = []
    for g in range(200):
        kind = "挂车" if g % 10 == 0 else "小轿车"  # 10 % rare class
        for k in range(1 + g % 2):
            records.append({"image": f"{g}/{k}.jpg", "ids": [f"car{g}"],
                            "labels": {"车辆属性": {"车辆类型": kind}, "车牌属性": []}})
    is_val = split_by_vehicle(records, 0.2, seed=3, stratify="车辆类型")
    for kind in ("挂车", "小轿车"):
        members = [v for r, v in zip(records, is_val) if r["labels"]["车辆属性"]["车辆类型"] == kind]
        assert abs(sum(members) / len(members) - 0.2) < 0.05, kind
    sides: dict[str, set[bool]] = {}
    for record, v in zip(records, is_val):
        sides.setdefault(vehicle_id(record), set()).add(v)
    assert all(len(s) == 1 for s in sides.values())
    assert stratum_of({"labels": {"车辆属性": {}, "车牌属性": []}}, "车牌颜色") == "无车牌"
    assert stratum_of({"labels": {"车辆属性": {}, "车牌属性": [{}, {}]}}, "plates") == "2"


def test_stratify_via_cli_and_bad_field(dump, tmp_path, capsys):
    _, records, records_file = dump
    train, val, stats = _build(records_file, tmp_path / "ok", "--val-ratio", 0.3, "--stratify", "车辆朝向")
    assert stats["options"]["stratify"] == "车辆朝向" and val
    assert main(["build", str(records_file), "-o", str(tmp_path / "bad"), "--stratify", "颜色"]) == 2
    assert "--stratify" in capsys.readouterr().err


def test_duplicate_and_missing_images_are_counted_not_duplicated(dump, tmp_path):
    root, records, _ = dump
    conflicting = json.loads(json.dumps(records[1]))
    conflicting["labels"]["车辆属性"]["车辆颜色"] = "紫色" if records[1]["labels"]["车辆属性"]["车辆颜色"] != "紫色" else "白色"
    missing = dict(records[2], image="nowhere/不存在.jpg")
    dataset = build_dataset(records + [records[0], conflicting, missing], BuildOptions(val_ratio=0.2))
    paths = [s["images"][0] for s in dataset.train + dataset.val]
    assert len(paths) == len(set(paths)) == len(records)
    counts = dataset.stats["records"]
    assert (counts["duplicate_image"], counts["conflicting_duplicate"], counts["missing_image"]) == (2, 1, 1)
    assert dataset.stats["record_problems"]["missing_image"][0].endswith("不存在.jpg")


def test_exclude_warning_code(dump):
    _, records, _ = dump
    warned = [dict(r, warnings=["plate_pattern: X is not a mainland plate number"]) if i < 3 else r
              for i, r in enumerate(records)]
    dataset = build_dataset(warned, BuildOptions(exclude_warnings=("plate_pattern",)))
    assert dataset.stats["records"]["excluded_by_warning"] == 3
    assert len(dataset.train) + len(dataset.val) == len(records) - 3


def test_builds_from_plates_parse_output(synth_dump, tmp_path):
    records_file = tmp_path / "parsed.jsonl"
    assert main(["parse", str(synth_dump), "-o", str(records_file), "-j", "1"]) == 0
    records = read_jsonl(records_file)
    train, val, stats = _build(records_file, tmp_path / "out", "--val-ratio", 0.3)
    assert len(train) + len(val) == len(records) and val
    assert not _image_vehicles(train, records) & _image_vehicles(val, records)
    assert all(os.path.isfile(s["images"][0]) for s in train + val)


# ------------------------------------------------------------------------------------------- descriptions


def test_descriptions_join_filter_and_task_formats(dump, tmp_path):
    _, records, records_file = dump
    lines = _teacher_lines(records)
    lines.append({"image": "not/a/record.jpg", "mode": "caption", "question": "q", "text": "t", "verdict": "ok"})
    teach = tmp_path / "teach 输出.jsonl"
    write_jsonl(teach, lines)
    out = tmp_path / "out"
    train, val, stats = _build(records_file, out, "--descriptions", teach, "--val-ratio", 0.25)
    text_to_record = {}
    for i, r in enumerate(records):
        for mode in ("describe", "caption", "fuse", "reason"):
            text_to_record[f"{mode} 文本 {i}"] = (i, r)
    tasks = Counter()
    for sample in train:
        user, assistant = sample["messages"]
        prompt = user["content"].removeprefix(IMAGE_TAG)
        assert IMAGE_TAG not in prompt and IMAGE_TAG not in assistant["content"]
        if prompt == EXTRACTION_PROMPT:
            tasks["extract"] += 1
            continue
        if prompt == REASON_PROMPT:
            tasks["reason"] += 1
            reasoning, answer = split_reasoning(assistant["content"])
            i, record = text_to_record[reasoning.split(":")[0]]
            assert reasoning.startswith("reason 文本")
            assert answer == json.dumps(answer_from_labels(record["labels"]), ensure_ascii=False)
            assert json.loads(assistant["content"].split("\n\n")[-1]) == answer_from_labels(record["labels"])
        else:
            mode = assistant["content"].split(" ")[0]
            tasks[mode] += 1
            i, record = text_to_record[assistant["content"].split(":")[0]]
            if mode == "describe":
                assert prompt in DESCRIBE_QUESTIONS  # the teacher's label-carrying prompt never leaks
            else:
                assert prompt == "请把图片中的信息转化为文字描述。"
        assert i % 5 != 0, "flagged line used"
        assert sample["images"][0] == os.path.join(record["root"], record["image"])
    n_train = len([s for s in train if s["messages"][0]["content"] == IMAGE_TAG + EXTRACTION_PROMPT])
    train_paths = {s["images"][0] for s in train}
    ok_train = sum(1 for i, r in enumerate(records)
                   if i % 5 != 0 and os.path.join(r["root"], r["image"]) in train_paths)
    assert tasks == Counter(extract=n_train, describe=ok_train, caption=ok_train, fuse=ok_train, reason=ok_train)
    assert stats["splits"]["train"]["tasks"] == dict(tasks)
    assert all(s["messages"][0]["content"] == IMAGE_TAG + EXTRACTION_PROMPT for s in val)
    d = stats["descriptions"]
    assert d["read"] == len(lines) and d["skipped_no_record"] == 1
    assert d["skipped_flagged"] == 4 * len([i for i in range(len(records)) if i % 5 == 0])


def test_allow_flagged_ratios_and_val_all_tasks(dump, tmp_path):
    _, records, records_file = dump
    teach = tmp_path / "teach.jsonl"
    write_jsonl(teach, _teacher_lines(records, modes=("caption", "reason")))
    train, val, stats = _build(records_file, tmp_path / "a", "--descriptions", teach, "--allow-flagged",
                               "--caption-ratio", 0.5, "--reason-ratio", 0, "--val-all-tasks")
    train_tasks, val_tasks = stats["splits"]["train"]["tasks"], stats["splits"]["val"]["tasks"]
    assert "reason" not in train_tasks and "reason" not in val_tasks
    assert train_tasks["caption"] == round(0.5 * train_tasks["extract"])
    assert val_tasks["caption"] == round(0.5 * val_tasks["extract"])
    assert len(read_jsonl(tmp_path / "a" / "val_records.jsonl")) == len(val)
    again = _build(records_file, tmp_path / "b", "--descriptions", teach, "--allow-flagged",
                   "--caption-ratio", 0.5, "--reason-ratio", 0, "--val-all-tasks")
    assert again[0] == train


def test_plates_eval_reads_the_answer_after_the_reasoning(dump):
    from plates.evaluation.extract import parse_response

    _, records, _ = dump
    for record in records[:10]:
        answer = json.dumps(answer_from_labels(record["labels"]), ensure_ascii=False)
        target = cot_target("车身是{深色}的,车头朝前。\n\n车牌为蓝底白字。", answer)
        assert parse_response(target).value == answer_from_labels(record["labels"])


def test_describe_question_is_deterministic_per_image(dump, tmp_path):
    _, records, _ = dump
    teach = tmp_path / "t.jsonl"
    write_jsonl(teach, _teacher_lines(records, modes=("describe",)))
    picks = []
    for _ in range(2):
        ds = build_dataset(records, BuildOptions(val_ratio=0), descriptions=load_descriptions([teach]))
        picks.append([s["messages"][0]["content"] for s in ds.train if "describe 文本" in s["messages"][1]["content"]])
    assert picks[0] == picks[1] and len(set(picks[0])) > 1
    assert {p.removeprefix(IMAGE_TAG) for p in picks[0]} <= set(DESCRIBE_QUESTIONS)


def test_caption_without_question_gets_one_from_the_pool(dump, tmp_path):
    _, records, _ = dump
    teach = tmp_path / "t.jsonl"
    write_jsonl(teach, [{"image": r["image"], "mode": "caption", "text": f"图 {i}", "verdict": "ok"}
                        for i, r in enumerate(records)])
    ds = build_dataset(records, BuildOptions(val_ratio=0), descriptions=load_descriptions([teach]))
    questions = [s["messages"][0]["content"].removeprefix(IMAGE_TAG) for s in ds.train
                 if s["messages"][1]["content"].startswith("图 ")]
    assert len(questions) == len(records) and set(questions) <= set(CAPTION_QUESTIONS)


def test_bad_teacher_file_is_a_user_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"records": 1}\n', encoding="utf-8")
    with pytest.raises(UserError, match="plates teach"):
        load_descriptions([bad])


# ------------------------------------------------------------------------------------------- formats, paths


def test_sharegpt_files_and_dataset_info(dump, tmp_path):
    _, records, records_file = dump
    out = tmp_path / "sg"
    train, val, stats = _build(records_file, out, "--format", "sharegpt", "--dataset-name", "车牌")
    info = json.loads((out / "dataset_info.json").read_text(encoding="utf-8"))
    assert set(info) == {"车牌_train", "车牌_val"}
    for split, rows in (("train", train), ("val", val)):
        entry = info[f"车牌_{split}"]
        assert entry["formatting"] == "sharegpt"
        assert entry["columns"] == {"messages": "conversations", "images": "images"}
        assert entry["tags"] == {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                                 "assistant_tag": "gpt"}
        data = json.loads((out / entry["file_name"]).read_text(encoding="utf-8"))
        assert len(data) == len(rows)
        for sg, sw in zip(data, rows):
            assert [c["from"] for c in sg["conversations"]] == ["human", "gpt"]
            assert [c["value"] for c in sg["conversations"]] == [m["content"] for m in sw["messages"]]
            assert sg["images"] == sw["images"]
    # a rebuild without sharegpt leaves no stale LLaMA-Factory files behind
    _build(records_file, out)
    assert not (out / "dataset_info.json").exists() and not (out / "train_sharegpt.json").exists()


def test_relative_paths_resolve_against_root(dump, tmp_path):
    root, records, records_file = dump
    train, val, stats = _build(records_file, tmp_path / "rel", "--relative-to", root.parent)
    for sample in train + val:
        path = sample["images"][0]
        assert not os.path.isabs(path) and path.startswith(root.name)
        assert (root.parent / path).is_file()
    assert stats["image_paths"]["resolve_with"] == f"ROOT_IMAGE_DIR={root.parent}"


def test_records_found_via_records_file_when_root_moved(dump, tmp_path):
    root, records, _ = dump
    moved = [dict(r, root="/nonexistent/old root") for r in records]
    records_file = root / "moved.jsonl"
    ds = build_dataset(moved, BuildOptions(val_ratio=0), records_file=records_file)
    assert all(os.path.isfile(s["images"][0]) for s in ds.train) and len(ds.train) == len(records)


@pytest.mark.parametrize("args, message", [
    (["missing.jsonl"], "no such file"),
    (["RECORDS", "--val-ratio", "1"], "--val-ratio"),
    (["RECORDS", "--val-ratio", "-0.1"], "--val-ratio"),
    (["RECORDS", "--caption-ratio", "1.5"], "--caption-ratio"),
    (["RECORDS", "--descriptions", "nope.jsonl"], "--descriptions"),
    (["NOTRECORDS"], "plates parse"),
    (["EMPTY"], "no records"),
    (["MISSINGIMAGES"], "no usable records"),
    (["RECORDS", "--relative-to", "/no/such/dir"], "--relative-to"),
])
def test_user_errors(dump, tmp_path, capsys, args, message):
    _, records, records_file = dump
    (tmp_path / "not.jsonl").write_text('{"hello": "world"}\n', encoding="utf-8")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    write_jsonl(tmp_path / "gone.jsonl", [dict(records[0], root="/gone", image="x.jpg")])
    names = {"RECORDS": records_file, "NOTRECORDS": tmp_path / "not.jsonl", "EMPTY": tmp_path / "empty.jsonl",
             "MISSINGIMAGES": tmp_path / "gone.jsonl", "missing.jsonl": tmp_path / "missing.jsonl"}
    argv = [str(names.get(a, a)) for a in args]
    assert main(["build", *argv, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_single_vehicle_goes_to_train_with_a_warning(dump, tmp_path, capsys):
    _, records, _ = dump
    one = [r for r in records if vehicle_id(r) == vehicle_id(records[0])]
    write_jsonl(tmp_path / "one.jsonl", one)
    train, val, stats = _build(tmp_path / "one.jsonl", tmp_path / "out")
    assert len(train) == len(one) and val == []
    assert "validation split is empty" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- real ms-swift


@pytest.mark.slow
def test_ms_swift_loads_and_encodes_the_dataset(dump, tmp_path, tiny_model_dir, monkeypatch):
    """ms-swift's own loader and Qwen2.5-VL template read every sample: catches format drift, a wrong
    <image> count and paths ms-swift cannot open (absolute, relative with ROOT_IMAGE_DIR, sharegpt)."""
    from swift.dataset import load_dataset
    from swift.model import get_processor
    from swift.template import get_template

    root, records, records_file = dump
    teach = tmp_path / "teach.jsonl"
    write_jsonl(teach, _teacher_lines(records[:8]))
    _build(records_file, tmp_path / "abs", "--descriptions", teach, "--format", "sharegpt")
    _build(records_file, tmp_path / "rel", "--relative-to", root.parent)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    template = get_template(get_processor(str(tiny_model_dir), model_type="qwen2_5_vl"),
                            template_type="qwen2_5_vl")
    template.set_mode("train")
    vision_start = template.tokenizer.convert_tokens_to_ids("<|vision_start|>")

    def encode_all(path: Path, expected_rows: int):
        train_ds, _ = load_dataset([str(path)], strict=True, load_from_cache_file=False)
        assert len(train_ds) == expected_rows
        for row in train_ds:
            encoded = template.encode(row)
            assert encoded["image_grid_thw"].shape[0] == 1
            assert list(encoded["input_ids"]).count(vision_start) == 1
            assert IMAGE_TAG not in template.tokenizer.decode(encoded["input_ids"])  # no tag left unmatched
            assert sum(1 for t in encoded["labels"] if t != -100) > 0

    n_abs = len(read_jsonl(tmp_path / "abs" / "train.jsonl"))
    assert n_abs > len(records) * 0.8  # description tasks are in
    encode_all(tmp_path / "abs" / "train.jsonl", n_abs)
    encode_all(tmp_path / "abs" / "train_sharegpt.json", n_abs)
    encode_all(tmp_path / "abs" / "val.jsonl", len(read_jsonl(tmp_path / "abs" / "val.jsonl")))
    monkeypatch.setenv("ROOT_IMAGE_DIR", str(root.parent))
    encode_all(tmp_path / "rel" / "train.jsonl", len(read_jsonl(tmp_path / "rel" / "train.jsonl")))


# ------------------------------------------------------------------------------------------- streaming, scale


def test_split_is_the_same_in_every_process_and_order(dump, tmp_path):
    """The split hashes vehicle ids with blake2b, never Python's per-process hash: builds in processes with
    different hash seeds, and from the records in another order, put every vehicle on the same side."""
    import subprocess
    import sys

    _, records, records_file = dump
    shuffled = tmp_path / "shuffled.jsonl"
    write_jsonl(shuffled, list(reversed(records)))
    sides = []
    for seed, source in (("1", records_file), ("2", records_file), ("3", shuffled)):
        out = tmp_path / f"o{seed}"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run([sys.executable, "-m", "plates.cli", "build", str(source), "-o", str(out), "--val-ratio",
                        "0.3", "--seed", "5"], check=True, env=env, capture_output=True, cwd=tmp_path)
        val = read_jsonl(out / "val.jsonl")
        sides.append({s["images"][0] for s in val})
    assert sides[0] == sides[1] == sides[2] and sides[0]
    assert (tmp_path / "o1" / "train.jsonl").read_bytes() == (tmp_path / "o2" / "train.jsonl").read_bytes()


def test_records_changed_between_the_two_passes_is_an_error(dump, tmp_path):
    from plates.build import plan_build, write_samples
    from plates.build_output import ListSink

    _, records, _ = dump
    plan = plan_build(lambda: records, BuildOptions(val_ratio=0.2))
    for changed in (records[:-1], records + [records[0]], [records[1], records[0], *records[2:]]):
        with pytest.raises(UserError, match="changed while"):
            write_samples(plan, lambda: changed, BuildOptions(val_ratio=0.2), ListSink())


def test_sharegpt_arrays_are_written_as_json_dump_would(dump, tmp_path):
    _, records, records_file = dump
    out = tmp_path / "sg"
    train, val, _ = _build(records_file, out, "--format", "sharegpt")
    from plates.build_output import to_sharegpt

    for name, rows in (("train_sharegpt.json", train), ("val_sharegpt.json", val)):
        expected = json.dumps([to_sharegpt(r) for r in rows], ensure_ascii=False, indent=1) + "\n"
        assert (out / name).read_text(encoding="utf-8") == expected


def test_duplicates_keep_the_first_and_report_conflicts_in_input_order(dump):
    _, records, _ = dump
    changed = json.loads(json.dumps(records[3]))
    changed["labels"]["车辆属性"]["车辆颜色"] = "紫色" if records[3]["labels"]["车辆属性"]["车辆颜色"] != "紫色" else "白色"
    rows = [records[3], *records, changed, records[3]]
    dataset = build_dataset(rows, BuildOptions(val_ratio=0))
    assert [s["images"][0] for s in dataset.train][:1] == [os.path.join(records[3]["root"], records[3]["image"])]
    assert dataset.stats["records"]["duplicate_image"] == 3
    assert dataset.stats["records"]["conflicting_duplicate"] == 1
    assert len(dataset.stats["record_problems"]["duplicate_image"]) == 3
    assert len(dataset.stats["record_problems"]["conflicting_duplicate"]) == 1
