"""`plates demo`: its stage list matches the real subcommands, and a small run goes end to end (twice, into the
same workdir) through real ms-swift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plates.cli import build_parser, main
from plates.demo import GROUNDING, LONG, RUN_PLACEHOLDER, STAGE0_PLACEHOLDER, STAGE1_PLACEHOLDER, demo_steps
from plates.demo_scoreboard import binomial_tail, location_test, scoreboard
from plates.io import read_jsonl, write_jsonl
from plates.synth import make_dump

from helpers import demo_answer, demo_sample


def test_every_demo_stage_is_a_valid_plates_command(tmp_path):
    parser = build_parser()
    steps = demo_steps(tmp_path / "w", 24, 0)
    commands = [argv[0] for _, argv in steps]
    assert commands == ["parse", "teach", "teach", "teach", "teach", "build", "tiny-model", "train", "train",
                        "infer", "infer", "infer", "eval", "eval", "eval", "eval", "compare"]
    for _, argv in steps:
        args = parser.parse_args([str(tmp_path / "run") if a in (RUN_PLACEHOLDER, STAGE1_PLACEHOLDER) else a
                                  for a in argv])
        assert callable(args._run)
    stage1, stage2 = [argv for _, argv in steps if argv[0] == "train"]
    assert stage1[stage1.index("--preset") + 1] == "tiny_cpu_full"
    assert stage2[stage2.index("--preset") + 1] == "tiny_cpu_lora"
    assert stage2[stage2.index("--model") + 1] == STAGE1_PLACEHOLDER
    infers = [argv for _, argv in steps if argv[0] == "infer"]
    assert [a.count("free") for a in infers] == [0, 0, 1]
    evals = [argv[argv.index("--json") + 1] for _, argv in steps if argv[0] == "eval"]
    assert [Path(e).name for e in evals] == ["majority.json", "base.json", "tuned.json",
                                             "tuned_free.json"]
    with_epochs = demo_steps(tmp_path / "w", 24, 0, epochs=2, stage2_epochs=0.25)
    trains = [argv for _, argv in with_epochs if argv[0] == "train"]
    assert "num_train_epochs=2" in trains[0] and "num_train_epochs=0.25" in trains[1]
    assert not any("--grounding" in argv for _, argv in steps)
    assert not any(a.startswith("lr_scheduler_type=") or a.startswith("PLATES_FIELD") for _, v in steps for a in v)


def test_the_grounding_demo_trains_the_box_once_over_many_drawings(tmp_path):
    """`demo --grounding`'s stages: build with --grounding and its held-out share, the `long` tiny model, stage 1
    for its epochs at a constant rate with the box's tokens weighted, stage 2 for its epochs with the same
    weights; every one a valid plates command; --epochs and --stage2-epochs still override."""
    parser = build_parser()
    steps = demo_steps(tmp_path / "w", 24, 0, grounding=GROUNDING)
    build = next(argv for _, argv in steps if argv[0] == "build")
    assert "--grounding" in build and parser.parse_args(build).grounding
    assert build[build.index("--val-ratio") + 1] == str(GROUNDING.val_ratio)
    tiny = next(argv for _, argv in steps if argv[0] == "tiny-model")
    assert tiny[tiny.index("--size") + 1] == GROUNDING.model_size == "long"
    stage1, stage2 = [argv for _, argv in steps if argv[0] == "train"]
    assert f"num_train_epochs={GROUNDING.stage1_epochs:g}" in stage1
    assert f"lr_scheduler_type={GROUNDING.stage1_scheduler}" in stage1
    assert stage1[stage1.index("--env") + 1] == f"PLATES_FIELD_LOSS_WEIGHTS={GROUNDING.field_weights}"
    assert "车牌位置=" in GROUNDING.field_weights
    assert f"num_train_epochs={GROUNDING.stage2_epochs:g}" in stage2 and "loss_scale=plates_fields" in stage2
    assert stage2[stage2.index("--env") + 1] == f"PLATES_FIELD_LOSS_WEIGHTS={GROUNDING.field_weights}"
    for _, argv in steps:
        args = parser.parse_args([str(tmp_path / "run") if a in (RUN_PLACEHOLDER, STAGE1_PLACEHOLDER) else a
                                  for a in argv])
        assert callable(args._run)
    given = [argv for _, argv in demo_steps(tmp_path / "w", 24, 0, 0.3, 0.2, grounding=GROUNDING)
             if argv[0] == "train"]
    assert "num_train_epochs=0.3" in given[0] and "num_train_epochs=0.2" in given[1]


def test_the_long_demo_trains_on_the_strips_first(tmp_path):
    """`demo --long`'s stages: the `long` tiny model, stage 0 on the strips from the tiny model (constant rate, the
    vehicle's fields weighted 0 and the number up), stage 1 from stage 0's checkpoint on the frames with the
    number's tokens weighted too, stage 2 on the frames, the held-out share of --long; every one a valid plates
    command."""
    parser = build_parser()
    w = tmp_path / "w"
    steps = demo_steps(w, 24, 0, long=LONG)
    assert [argv[0] for _, argv in steps].count("train") == 3
    tiny = next(argv for _, argv in steps if argv[0] == "tiny-model")
    assert tiny[tiny.index("--size") + 1] == "long"
    build = next(argv for _, argv in steps if argv[0] == "build")
    assert build[build.index("--val-ratio") + 1] == str(LONG.val_ratio)
    stage0, stage1, stage2 = [argv for _, argv in steps if argv[0] == "train"]
    assert stage0[stage0.index("--dataset") + 1] == str(w / "dataset-strips")
    assert stage0[stage0.index("--model") + 1] == str(w / "tiny-qwen2.5-vl")
    assert f"num_train_epochs={LONG.stage0_epochs:g}" in stage0 and "lr_scheduler_type=constant_with_warmup" in stage0
    assert stage0[stage0.index("--env") + 1] == f"PLATES_FIELD_LOSS_WEIGHTS={LONG.stage0_field_weights}"
    assert "车辆颜色=0" in LONG.stage0_field_weights and "车牌号码=" in LONG.field_weights
    assert stage1[stage1.index("--model") + 1] == STAGE0_PLACEHOLDER
    assert stage1[stage1.index("--dataset") + 1] == str(w / "dataset") == stage2[stage2.index("--dataset") + 1]
    assert f"num_train_epochs={LONG.stage1_epochs:g}" in stage1
    assert stage1[stage1.index("--env") + 1] == f"PLATES_FIELD_LOSS_WEIGHTS={LONG.field_weights}"
    assert f"num_train_epochs={LONG.stage2_epochs:g}" in stage2
    placeholders = (RUN_PLACEHOLDER, STAGE0_PLACEHOLDER, STAGE1_PLACEHOLDER)
    for _, argv in steps:
        args = parser.parse_args([str(tmp_path / "run") if a in placeholders else a for a in argv])
        assert callable(args._run)
    given = [argv for _, argv in demo_steps(w, 24, 0, epochs=0.3, stage2_epochs=0.2, long=LONG) if argv[0] == "train"]
    assert "num_train_epochs=0.3" in given[1] and "num_train_epochs=0.2" in given[2]
    assert not any(argv[0] == "train" and STAGE0_PLACEHOLDER in argv for _, argv in demo_steps(w, 24, 0))


def test_the_strip_dataset_asks_the_training_answers_about_the_strips(tmp_path):
    """Stage 0's set: every training JSON answer about a one-plate frame, the same messages about the frame's
    close-up strip, cut exactly as ms-swift decodes the frame (never a held-out frame: those numbers stay
    unseen; descriptions and two-plate answers are left out); the build's val.jsonl and stats.json kept."""
    import random

    import cv2
    import numpy as np
    from PIL import Image

    from plates.demo import write_strip_dataset
    from plates.errors import UserError
    from plates.synth import CLOSEUP_STRIP_BOX, balanced_labels, draw_closeup_frame

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    train = [demo_sample(demo_answer("白色", "云A12345")), demo_sample(demo_answer("红色", "京B54321")),
             demo_sample(demo_answer("黑色", "沪C11111", plates=2)), demo_sample("一辆白色的车。", "<image>请描述")]
    rng = random.Random(0)
    for i, row in enumerate(train):
        row["images"] = [str(tmp_path / f"car{i} 帧.jpg")]
        cv2.imwrite(row["images"][0], draw_closeup_frame(balanced_labels(rng), rng)[0])
    held_out = demo_sample(demo_answer("白色", "粤Z99999"))
    write_jsonl(dataset / "train.jsonl", train)
    write_jsonl(dataset / "val.jsonl", [held_out])
    (dataset / "stats.json").write_text('{"prompt": "x"}', encoding="utf-8")
    strips_dir = tmp_path / "dataset-strips"
    assert write_strip_dataset(dataset, strips_dir) == 2
    rows = read_jsonl(strips_dir / "train.jsonl")
    assert [r["messages"] for r in rows] == [t["messages"] for t in train[:2]]
    for row, frame_row in zip(rows, train):
        (strip,) = row["images"]
        assert Path(strip).parent == strips_dir / "strips"
        with Image.open(strip) as cut, Image.open(frame_row["images"][0]) as frame:
            assert cut.size == (224, 56)
            assert np.array_equal(np.asarray(cut), np.asarray(frame.convert("RGB").crop(CLOSEUP_STRIP_BOX)))
    assert read_jsonl(strips_dir / "val.jsonl") == [held_out]
    assert (strips_dir / "stats.json").read_text(encoding="utf-8") == '{"prompt": "x"}'
    assert "粤Z99999" not in (strips_dir / "train.jsonl").read_text(encoding="utf-8")
    write_jsonl(dataset / "train.jsonl", train[2:])
    with pytest.raises(UserError, match="no training answer about a frame with one plate"):
        write_strip_dataset(dataset, strips_dir)
    assert not any((strips_dir / "strips").iterdir())  # the earlier strips do not linger


def test_long_flags_are_checked_before_any_work(tmp_path, capsys):
    for argv, says in ((["--long", "--grounding"], "separate demos"),
                       (["--stage0-epochs", "1"], "--stage0-epochs is for --long"),
                       (["--long", "--stage0-epochs", "0"], "--stage0-epochs must be a positive")):
        assert main(["demo", "--workdir", str(tmp_path / "w"), *argv]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()


def test_too_few_images_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "--workdir", str(tmp_path), "--images", "3"]) == 2
    assert "--images must be at least" in capsys.readouterr().err
    for bad in ("0", "-1", "nan"):
        assert main(["demo", "--workdir", str(tmp_path), "--stage2-epochs", bad]) == 2
        assert "--stage2-epochs must be a positive number of epochs" in capsys.readouterr().err
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    assert main(["demo", "--workdir", str(not_a_folder), "--images", "8"]) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and "Traceback" not in err


@pytest.mark.slow
def test_demo_runs_end_to_end_and_again_in_the_same_workdir(tmp_path, capsys):
    workdir = tmp_path / "演示 demo:1"
    assert main(["demo", "--workdir", str(workdir), "--images", "8", "--epochs", "1", "--stage2-epochs", "1"]) == 0
    out = capsys.readouterr().out
    records = read_jsonl(workdir / "records.jsonl")
    rejects = read_jsonl(workdir / "records.rejects.jsonl")
    assert len(records) == 8 and len(rejects) == 4  # 3 broken names + 1 corrupt file
    assert "corrupt_image" in out and "unparseable_name" in out
    val = read_jsonl(workdir / "dataset" / "val.jsonl")
    for name in ("majority", "base", "tuned", "tuned_free"):
        report = json.loads((workdir / "reports" / f"{name}.json").read_text(encoding="utf-8"))
        assert report["n"] == len(val) > 0 and report["skipped_lines"] == 0
    assert (workdir / "reports" / "plots" / "accuracy.png").stat().st_size > 0
    assert "strict JSON" in out and "demo finished" in out and "--preset qwen2_5_vl_7b_lora" in out
    for stage in ("stage1", "stage2"):
        runs = [p for p in (workdir / "runs" / stage).iterdir() if (p / "plates_manifest.json").is_file()]
        assert len(runs) == 1
    assert "scoreboard" in out and "majority" in out

    assert "车牌位置" not in out and "grounding" not in json.loads(
        (workdir / "reports" / "tuned.json").read_text(encoding="utf-8"))

    # Re-running reuses the workdir: the teacher outputs are already there, training makes a new run folder.
    teacher_lines = len(read_jsonl(workdir / "teacher.jsonl"))
    assert main(["demo", "--workdir", str(workdir), "--images", "8", "--epochs", "1", "--stage2-epochs", "1"]) == 0
    capsys.readouterr()
    log = (workdir / "demo.log").read_text(encoding="utf-8")  # teach and eval output goes there unless -v
    runs_of_describe = log.split("=== teach (describe)")
    assert len(runs_of_describe) == 3
    assert "skipped    8  (already in the output)" in runs_of_describe[2].split("\n=== ")[0]
    assert len(read_jsonl(workdir / "teacher.jsonl")) == teacher_lines
    runs = [p for p in (workdir / "runs" / "stage2").iterdir() if (p / "plates_manifest.json").is_file()]
    assert len(runs) == 2


@pytest.mark.slow
def test_demo_with_grounding_carries_the_drawn_boxes_to_the_scoreboard(tmp_path, capsys):
    """`plates demo --grounding` end to end on a few images: the drawn boxes reach the records, the targets, the
    mean-box baseline's and the tuned model's reports, and the scoreboard's plate-location line."""
    workdir = tmp_path / "demo"
    assert main(["demo", "--workdir", str(workdir), "--images", "24", "--epochs", "1", "--stage2-epochs", "1",
                 "--grounding"]) == 0
    out = capsys.readouterr().out
    records = read_jsonl(workdir / "records.jsonl")
    assert len(records) == 24 and all(len(r["plate_geometry"]) == 1 for r in records)
    assert json.loads((workdir / "dataset" / "stats.json").read_text(encoding="utf-8"))["grounding"]["on"]
    val = read_jsonl(workdir / "dataset" / "val.jsonl")
    for name in ("majority", "tuned"):
        report = json.loads((workdir / "reports" / f"{name}.json").read_text(encoding="utf-8"))
        assert report["grounding"]["plates"] == len(val) > 0, name
    majority = json.loads(read_jsonl(workdir / "results.majority.jsonl")[0]["response"])
    assert len(majority["车牌属性"]["车牌位置"]) == 4
    assert "plate IoU" in out and "车牌位置: tuned mean IoU" in out and "one-sided sign test" in out
    assert "plate location: the tuned model" in out


@pytest.mark.slow
def test_the_demo_model_learns_to_read_the_drawings(tmp_path, capsys):
    """The demo's claim, as `plates demo` makes it (about 8 minutes on 2 cores): on held-out vehicles the tuned
    model (real swift sft, real swift infer) reads every drawn attribute, at least 80% and 20 points above "always
    the commonest training value" (each also at a margin a majority guesser reaches with probability below
    1e-5), and writes strict JSON by itself at least 90% of the time. Measured (body colour / orientation /
    plate colour): 99.4 / 91.2 / 93.1% (default draw, the one this runs, with the hash split of vehicles; training
    is deterministic on one machine type); with the earlier split 99.4 / 95.6 / 99.4% (default), 95.0 / 98.1 / 100%
    (--seed 1), 99.4 / 95.0 / 88.1% (--seed 2); strict JSON under free decoding 100%, 100%, 96.2%."""
    from plates.demo_scoreboard import VISUAL_FIELDS

    workdir = tmp_path / "demo"
    assert main(["demo", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    reports = workdir / "reports"
    tuned, free, majority, base = (json.loads((reports / f"{n}.json").read_text(encoding="utf-8"))
                                   for n in ("tuned", "tuned_free", "majority", "base"))
    assert tuned["n"] >= 40
    assert free["json_valid_rate"] >= 0.9, scoreboard(reports)
    for f in VISUAL_FIELDS:
        accuracy, baseline = tuned["fields"][f]["accuracy"], majority["fields"][f]["accuracy"]
        assert accuracy >= 0.8 and accuracy >= baseline + 0.2, (f, scoreboard(reports))
        p_value = binomial_tail(tuned["fields"][f]["correct"], tuned["fields"][f]["support"], baseline)
        assert p_value < 1e-5, (f, p_value, scoreboard(reports))
    # The untrained model does not read them: it scores no better than one constant answer could on these images
    # (measured with 1,600 drawings on --seed 2: base 50% orientation, the share of the commonest held-out value,
    # majority 16%).
    from collections import Counter

    from plates.labels import PLATE_GROUP, VEHICLE_GROUP

    held_out = read_jsonl(workdir / "dataset" / "val_records.jsonl")
    for f in VISUAL_FIELDS:
        values = Counter(r["labels"][VEHICLE_GROUP][f] if f in r["labels"][VEHICLE_GROUP]
                         else r["labels"][PLATE_GROUP][0][f] for r in held_out)
        best_constant = max(values.values()) / len(held_out)
        assert base["fields"][f]["accuracy"] <= best_constant + 0.05, scoreboard(reports)
    assert "scoreboard" in out and "p = " in out


def test_a_full_fine_tune_checkpoint_points_to_model(tmp_path):
    """The demo's stage 1 is a full fine-tune: `plates infer --adapters` on it says to pass it as --model."""
    from plates.errors import UserError
    from plates.runs import checkpoint_dir

    run = tmp_path / "v0-20260101-000000"
    full = run / "checkpoint-12"
    full.mkdir(parents=True)
    (full / "config.json").write_text("{}")
    (full / "model.safetensors").write_bytes(b"")
    for path in (full, run):
        with pytest.raises(UserError, match=f"full fine-tune checkpoint.*--model {full}"):
            checkpoint_dir(path)
    lora = run / "checkpoint-20"
    lora.mkdir()
    (lora / "adapter_config.json").write_text("{}")
    assert checkpoint_dir(run) == lora and checkpoint_dir(lora) == lora
    with pytest.raises(UserError, match="not a LoRA checkpoint"):
        checkpoint_dir(tmp_path)


def test_drawn_plates_at_random_places_come_with_their_boxes(tmp_path):
    """`make_dump(random_plates=True, boxes_file=…)`: the boxes are where the plate colour is drawn, they vary in
    place and size, and `plates parse` + the demo's merge give every record its box."""
    import cv2
    import numpy as np

    from plates.demo import add_drawn_boxes
    from plates.synth import PLATE_BGR

    dump, boxes_file = tmp_path / "dump", tmp_path / "dump.boxes.jsonl"
    make_dump(dump, 30, seed=3, width=224, height=168, balanced=True, random_plates=True, boxes_file=boxes_file)
    drawn = read_jsonl(boxes_file)
    assert len(drawn) == 30
    lefts, widths = set(), set()
    for row in drawn:
        (plate,) = row["plate_geometry"]
        x1, y1, x2, y2 = plate["box"]
        lefts.add(x1)
        widths.add(x2 - x1)
        image = cv2.imread(str(dump / row["image"]))
        h, w = image.shape[:2]
        assert 0 <= x1 < x2 < w and 0.4 * h - 1 <= y1 < y2 < h
        assert x2 - x1 >= 0.28 * w - 1
        name = row["image"]
        colour = next(c for c in ("蓝色", "黄色", "绿色") if f"-{c}-" in name.split("车牌属性0")[1])
        corner = image[y1 + 1, x1 + 1].astype(int)  # a plate corner: plate colour (JPEG-blurred), no text there
        assert np.abs(corner - np.array(PLATE_BGR[colour])).max() < 60, (name, corner)
    assert len(lefts) > 10 and len(widths) > 10

    assert main(["parse", str(dump), "-o", str(tmp_path / "records.jsonl")]) == 0
    assert add_drawn_boxes(tmp_path / "records.jsonl", boxes_file) == 30
    by_image = {r["image"]: r["plate_geometry"] for r in drawn}
    assert all(r["plate_geometry"] == by_image[r["image"]] for r in read_jsonl(tmp_path / "records.jsonl"))


@pytest.mark.slow
def test_the_long_demo_reads_the_plate_characters(tmp_path, capsys):
    """`plates demo --long` on a smaller budget than its default (about 13 minutes on 2 cores instead of 16: half
    the frames, so stage 1, stage 2 and the held-out set shrink; stage 0 keeps its 9,600 steps, since reading
    starts only after a plateau of 4,700 to 7,900 steps on the draws measured): on held-out vehicles the tuned
    model (real swift sft three times, real swift infer) reads the plate characters above the majority's (the
    commonest character at each position), at a margin a per-vehicle sign test puts below 1e-3, and still reads
    the drawn attributes. The issue's bar (majority + 30 points) is the full budget's, measured on three draws
    (README); on this one the margin asserted is the one chance cannot give."""
    from plates.demo_scoreboard import reading_test

    workdir = tmp_path / "demo"
    assert main(["demo", "--long", "--workdir", str(workdir), "--images", "4000", "--stage0-epochs", "5"]) == 0
    out = capsys.readouterr().out
    assert_beats_the_baseline(workdir / "reports", reading_test)
    assert "plate chars by position" in out and "reads the plate characters" in out
    assert len(list((workdir / "dataset-strips" / "strips").iterdir())) == len(
        read_jsonl(workdir / "dataset-strips" / "train.jsonl"))


@pytest.mark.slow
def test_the_grounding_demo_locates_the_plate(tmp_path, capsys):
    """`plates demo --grounding` as a user runs it (its full budget, about 12 minutes on 2 cores: below it the
    model does not leave the mean box, 7,840 drawings once gave 0.126 against 0.137): on held-out vehicles the
    tuned model's boxes (real swift sft twice, real swift infer, mapped back to the drawing's pixels) overlap the
    drawn plates more than the training set's mean box does, at a margin the per-vehicle sign test puts below
    1e-3, and it still reads every drawn attribute. Measured on the default draw (the one this runs): mean IoU
    0.320 against 0.143, 67 vehicles better and 18 worse of 86 (p = 4.2e-8); body colour / orientation / plate
    colour 100 / 98.8 / 72.5% (majority 16.2 / 25.6 / 37.5%). Two more draws in README.md."""
    workdir = tmp_path / "demo"
    assert main(["demo", "--grounding", "--workdir", str(workdir)]) == 0
    out = capsys.readouterr().out
    tuned, majority = assert_beats_the_baseline(workdir / "reports", location_test)
    assert tuned["grounding"]["plates"] == majority["grounding"]["plates"] == 160
    assert "locates the plate better than the training set's mean box" in out


def assert_beats_the_baseline(reports: Path, sign_test) -> tuple[dict, dict]:
    """A finished demo's claim: ``sign_test`` (the scoreboard's per-vehicle test of the tuned model against the
    majority column) over at least 40 held-out vehicles puts chance below 1e-3, and the tuned model still reads
    every drawn attribute (binomial p < 1e-3 against the majority). Returns the tuned and majority reports."""
    from plates.demo_scoreboard import VISUAL_FIELDS, load_reports

    test = sign_test(load_reports(reports))
    assert test is not None and test["vehicles"] >= 40, scoreboard(reports)
    assert test["p"] < 1e-3 and test["tuned"] > test["baseline"], (test, scoreboard(reports))
    tuned, majority = (json.loads((reports / f"{n}.json").read_text(encoding="utf-8")) for n in ("tuned", "majority"))
    for f in VISUAL_FIELDS:
        p_value = binomial_tail(tuned["fields"][f]["correct"], tuned["fields"][f]["support"],
                                majority["fields"][f]["accuracy"])
        assert p_value < 1e-3, (f, scoreboard(reports))
    return tuned, majority
