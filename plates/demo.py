"""``plates demo``: the whole pipeline end to end on a laptop CPU, through the same code as each subcommand.

It draws a labelled dump (balanced body colour, orientation and plate colour; a few broken names and one corrupt
file), then runs parse → teach (offline template teacher) → build → tiny-model → train twice (real ``swift sft``:
stage 1 a full fine-tune standing in for pretraining, stage 2 the product's LoRA + ViT recipe) → infer (real
``swift infer``: base, tuned, tuned with free decoding) → eval, with a majority baseline beside every
score → compare. A real run swaps the preset, the teacher backend and the GPUs. ``--grounding`` adds plate
location: plates at random places and sizes, their drawn boxes merged into the records (seed-grammar names carry
none), ``build --grounding``, training as :class:`GroundingMode` says, and the scoreboard's mean IoU against a
baseline that always answers the training set's mean box.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from plates.cli import main as plates_main
from plates.contracts import DatasetLayout
from plates.demo_scoreboard import (
    REPORTS, load_reports, location_test, read_drawings, reading_test, reference_text, scoreboard,
    write_majority_results,
)
from plates.errors import UserError
from plates.io import iter_jsonl, write_jsonl
from plates.labels import PLATE_COLOUR, PLATE_GROUP, PLATE_NUMBER
from plates.outputs import output_dir
from plates.runs import find_run_dir, last_checkpoint
from plates.synth import CLOSEUP_STRIP_BOX, make_dump

DEFAULT_WORKDIR = "plates-demo"
RUN_PLACEHOLDER = "RUN"  # the LoRA + ViT run folder, known only once stage 2 has trained
STAGE1_PLACEHOLDER = "STAGE1"  # the stage-1 (full fine-tune) checkpoint, known only once stage 1 has trained
STAGE0_PLACEHOLDER = "STAGE0"  # --long: the plate-reading stage's checkpoint, stage 1 starts from it
# A trained model answers in about 80 tokens; the untrained base model rambles until the cap, and under schema
# decoding its bounded strings still need about 200 tokens to close the JSON.
DEMO_MAX_NEW_TOKENS = 256
DEMO_MAX_PIXELS = 50176  # what the tiny_cpu presets train with
DEMO_IMAGES = 3200
DEMO_IMAGE_SIZE = (224, 168)  # plates about 100 x 30 px: a few vision tokens, big enough to read
DEMO_MODEL_WIDTH = 64  # 32 never learns to write the JSON answer within minutes
DEMO_VAL_RATIO = 0.05
# A few description samples show the multi-task dataset without spending the CPU budget on long texts.
DEMO_DESCRIPTION_RATIO = 0.01
STAGE1_PRESET = "tiny_cpu_full"
STAGE2_PRESET = "tiny_cpu_lora"


@dataclass(frozen=True)
class LongMode:
    """`plates demo --long`: the model also reads the plate characters, in about 17 CPU minutes. What it takes
    (issue 26's probes, figures in README.md): frames with a close-up strip of the plate on top
    (:func:`plates.synth.draw_closeup_frame`: characters a merged token wide, on the token grid); a tiny model
    whose rotary split tells image columns apart and whose tokenizer makes every label value one token, so the
    plate number starts at the same place in every answer (``--size long``); and a curriculum: stage 0 trains the
    same answers about the strips cut out of the training frames, where every image token shows the plate and
    the loss sits on the number (the model reads after a plateau of 4,700 to 7,900 steps on the draws measured; on
    whole frames it had not left the plateau after 9,600), then stages 1 and 2 train on the frames as the default
    demo does, stage 1 with the number weighted up so that the reading learnt on the strips carries into the
    frames, where the strip is two token rows of six.
    """

    images: int = 8000
    val_ratio: float = 0.04  # 320 held-out frames, as the default demo holds out
    model_size: str = "long"
    stage0_epochs: float = 2.5
    # A constant rate after warm-up: reading starts after a plateau of thousands of steps (issue 26's probes), which
    # a cosine decay over this short stage would stretch; stage 1's cosine brings the rate down.
    stage0_scheduler: str = "constant_with_warmup"
    # On the strips, what only the vehicle shows counts nothing and the number counts 10x.
    stage0_field_weights: str = "车辆品牌=0,车辆类型=0,车辆颜色=0,车辆朝向=0,车牌号码=10"
    stage1_epochs: float = 1.0
    stage2_epochs: float = 0.1  # LoRA + ViT for as many samples as the default demo's quarter epoch
    # Stage 1's number at 10x, not 3x: on the frames the model must learn to read the strip rows among the vehicle's
    # tokens; at 3x one draw of three (--seed 2) lost the reading stage 0 had learnt (issue 26's probes, README).
    field_weights: str = "车辆颜色=5,车辆朝向=5,车牌颜色=5,车牌号码=10"


LONG = LongMode()


@dataclass(frozen=True)
class GroundingMode:
    """`plates demo --grounding`: the model also says where the plate is (its box), scored by mean IoU against
    the training set's mean box. What it takes (issue 24's probes, figures in README.md): many distinct drawings
    seen once each, not a few seen over and over (3,160 drawings for 1.5 to 6 epochs never beat the mean box: the
    model learns the training frames' boxes, not where a plate is); the tiny model whose rotary split tells image
    columns apart and whose whole-value tokenizer puts the box at the same place after the image in every answer
    (``--size long``); a constant rate, as for `demo --long`'s reading; and the box's tokens weighted as the drawn
    attributes are, so that its few digits are not drowned by the rest of the answer, in stage 2 too (the LoRA
    preset's plain loss undid a third of what stage 1 had learnt: mean IoU 0.269 after stage 1, 0.199 after an
    unweighted stage 2, 0.320 after a weighted one, on the default draw). The plate colour stays at 5x: at 10x it
    is read (98.8%, --seed 1) and the location lost (0.041 against the mean box's 0.137)."""

    images: int = 16000
    val_ratio: float = 0.01  # 160 held-out frames, as the default demo holds out
    model_size: str = "long"
    stage1_epochs: float = 1.0
    stage1_scheduler: str = "constant_with_warmup"
    field_weights: str = "车辆颜色=5,车辆朝向=5,车牌颜色=5,车牌位置=5"
    stage2_epochs: float = 0.05  # LoRA + ViT for as many samples as the default demo's quarter epoch


GROUNDING = GroundingMode()


def _check_requirements() -> None:
    """Fail early, before minutes of work, when something the demo needs is missing."""
    missing = []
    for module in ("cv2", "torch", "torchvision", "swift", "transformers", "peft", "jsonschema", "rapidfuzz"):
        try:
            __import__(module)
        except Exception as exc:  # noqa: BLE001 - any import failure means the environment is broken
            missing.append(f"{module} ({exc.__class__.__name__}: {exc})")
    if missing:
        raise UserError("the demo needs packages that are not importable: " + "; ".join(missing)
                        + ". Run `make setup` (it installs everything into .venv).")
    if not shutil.which("swift", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")):
        raise UserError("the `swift` command (ms-swift) was not found next to this Python; run `make setup`.")


# Stages whose output the scoreboard and the compare table sum up: it goes to WORKDIR/demo.log unless -v (the
# reports themselves are in WORKDIR/reports/).
LOGGED_STAGES = ("parse", "teach", "tiny-model", "eval")


def _stage(title: str, argv: list[str], log: Path | None = None, verbose: bool = False) -> None:
    """Run one plates subcommand in-process. With ``log``, a stage in LOGGED_STAGES writes its output there
    (the terminal gets one line), so the demo's whole terminal output fits on a few screens."""
    import contextlib

    if verbose and argv[0] in ("train", "infer"):
        argv = [*argv, "-v"]
    quiet = log is not None and not verbose and title.startswith(LOGGED_STAGES)
    if not quiet:
        print(f"\n=== {title}\n$ plates " + " ".join(_quote(a) for a in argv), flush=True)
    started = time.monotonic()
    if quiet:
        with open(log, "a", encoding="utf-8") as handle, contextlib.redirect_stdout(handle), \
                contextlib.redirect_stderr(handle):
            print(f"\n=== {title}\n$ plates " + " ".join(_quote(a) for a in argv), flush=True)
            code = plates_main(argv)
    else:
        code = plates_main(argv)
    where = f"its output is in {log}" if quiet else "see its output above"
    if code != 0:
        raise UserError(f"stage '{title}' failed with exit code {code} ({where})")
    suffix = f" (output: {log.name})" if quiet else ""
    print(f"--- {title}: done in {time.monotonic() - started:.1f}s{suffix}", flush=True)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def demo_steps(workdir: Path, images: int, seed: int, epochs: float | None = None,
               stage2_epochs: float | None = None, grounding: GroundingMode | None = None,
               long: LongMode | None = None) -> list[tuple[str, list[str]]]:
    """The ordered stage invocations (title, plates argv) the demo runs; pure, so tests can inspect it.
    ``STAGE0`` / ``STAGE1`` stand for a stage's checkpoint and ``RUN`` for the stage-2 run folder, known only once
    each has trained. ``epochs`` / ``stage2_epochs`` override the epoch counts of stage 1 and 2. ``grounding``:
    the dataset also trains the plate box (``plates build --grounding``) and both stages train as the mode says.
    ``long``: stage 0 trains on the close-up strips (``dataset-strips``, written by :func:`write_strip_dataset`
    after build) and stage 1 starts from its checkpoint."""
    w = workdir
    dump, records, teach, dataset = w / "dump", w / "records.jsonl", w / "teacher.jsonl", w / "dataset"
    model, runs, reports = w / "tiny-qwen2.5-vl", w / "runs", w / "reports"
    steps = [
        ("parse", ["parse", str(dump), "-o", str(records)]),
    ]
    for mode in ("describe", "caption", "fuse", "reason"):
        steps.append((f"teach ({mode})", ["teach", str(records), "-o", str(teach), "--mode", mode,
                                          "--backend", "template"]))
    infer_common = ["--dataset", str(dataset / "val.jsonl"), "--max-new-tokens", str(DEMO_MAX_NEW_TOKENS),
                    "--batch-size", "16"]
    ratios = [a for m in ("describe", "caption", "fuse", "reason")
              for a in (f"--{m}-ratio", str(DEMO_DESCRIPTION_RATIO))]
    mode = long or grounding
    if mode:
        epochs = epochs or mode.stage1_epochs
        stage2_epochs = stage2_epochs or mode.stage2_epochs
    stage1_sets = ["--set", f"num_train_epochs={epochs:g}"] if epochs else []
    stage2_sets = ["--set", f"num_train_epochs={stage2_epochs:g}"] if stage2_epochs else []
    if grounding:
        weights = ["--env", f"PLATES_FIELD_LOSS_WEIGHTS={grounding.field_weights}"]
        stage1_sets += ["--set", f"lr_scheduler_type={grounding.stage1_scheduler}", *weights]
        stage2_sets += ["--set", "loss_scale=plates_fields", *weights]
    val_ratio = mode.val_ratio if mode else DEMO_VAL_RATIO
    steps += [
        ("build", ["build", str(records), "-o", str(dataset), "--descriptions", str(teach), *ratios,
                   "--val-ratio", str(val_ratio), "--seed", str(seed), *(["--grounding"] if grounding else [])]),
        ("tiny-model", ["tiny-model", str(model), "--size", mode.model_size if mode else "demo"]),
    ]
    stage1_model = str(model)
    if long:
        stage1_model = STAGE0_PLACEHOLDER
        steps.append(("train stage 0 (full fine-tune on the plate strips alone, to learn to read)",
                      ["train", "--preset", STAGE1_PRESET, "--dataset", str(w / "dataset-strips"), "--model",
                       str(model), "--output-dir", str(runs / "stage0"), "--set",
                       f"num_train_epochs={long.stage0_epochs:g}", "--set",
                       f"lr_scheduler_type={long.stage0_scheduler}", "--env",
                       f"PLATES_FIELD_LOSS_WEIGHTS={long.stage0_field_weights}"]))
        stage1_sets += ["--env", f"PLATES_FIELD_LOSS_WEIGHTS={long.field_weights}"]
    steps += [
        ("train stage 1 (full fine-tune, stands in for pretraining)",
         ["train", "--preset", STAGE1_PRESET, "--dataset", str(dataset), "--model", stage1_model,
          "--output-dir", str(runs / "stage1"), *stage1_sets]),
        ("train stage 2 (LoRA + unfrozen ViT: the product recipe)",
         ["train", "--preset", STAGE2_PRESET, "--dataset", str(dataset), "--model", STAGE1_PLACEHOLDER,
          "--output-dir", str(runs / "stage2"), *stage2_sets]),
        ("infer (base model)", ["infer", "--model", str(model), "-o", str(w / "results.base.jsonl"),
                                "--max-pixels", str(DEMO_MAX_PIXELS), *infer_common]),
        ("infer (tuned)", ["infer", "--adapters", RUN_PLACEHOLDER, "-o", str(w / "results.tuned.jsonl"),
                           *infer_common]),
        ("infer (tuned, free decoding)", ["infer", "--adapters", RUN_PLACEHOLDER, "--decoding", "free",
                                          "-o", str(w / "results.tuned_free.jsonl"), *infer_common]),
    ]
    for name, label in REPORTS:
        extra = ["--plots", str(reports / "plots"), "--by", PLATE_COLOUR] if name == "tuned" else []
        steps.append((f"eval ({label})", ["eval", str(w / f"results.{name}.jsonl"), "--json",
                                          str(reports / f"{name}.json"), "--markdown", str(reports / f"{name}.md"),
                                          *extra]))
    steps.append(("compare", ["compare", str(reports / "base.json"), str(reports / "tuned.json")]))
    return steps


def write_strip_dataset(dataset: Path, strips_dir: Path,
                        strip_box: tuple[int, int, int, int] = CLOSEUP_STRIP_BOX) -> int:
    """`demo --long`'s stage-0 training set from the `plates build` output ``dataset``: every training sample that
    asks for the JSON answer about a one-plate frame, the same question and answer about the frame's close-up strip
    alone (``strip_box``, cut as ms-swift decodes the frame, saved losslessly under ``strips_dir/strips/``). Only
    training frames: the held-out vehicles' numbers stay unseen. The build's val.jsonl and stats.json (the prompt
    contract) are copied. Returns the number of samples."""
    from PIL import Image

    layout = DatasetLayout.of(dataset)
    strips = strips_dir / "strips"
    if strips.is_dir():
        shutil.rmtree(strips)  # the demo's own folder: strips of an earlier draw would mislead
    strips.mkdir(parents=True)
    rows = []
    for _, row in iter_jsonl(layout.train, []):
        try:
            answer = json.loads(reference_text(row))
        except (KeyError, IndexError, TypeError, ValueError):
            continue  # descriptions: about the vehicle, which the strip does not show
        plates = answer.get(PLATE_GROUP) if isinstance(answer, dict) else None
        if not isinstance(plates, dict) or not plates.get(PLATE_NUMBER) or len(row.get("images") or []) != 1:
            continue
        strip = strips / f"{len(rows):06d}.png"
        with Image.open(row["images"][0]) as image:
            image.convert("RGB").crop(strip_box).save(strip)
        rows.append({**row, "images": [str(strip)]})
    if not rows:
        raise UserError(f"{layout.train}: no training answer about a frame with one plate to cut a strip from")
    target = DatasetLayout.of(strips_dir)
    write_jsonl(target.train, rows)
    for name in ("val", "stats"):
        shutil.copyfile(getattr(layout, name), getattr(target, name))
    print(f"    {len(rows)} training answers asked again about their frames' close-up strips -> {strips_dir.name}/ "
          f"(stage 0)")
    return len(rows)


def latest_run(runs: Path) -> Path | None:
    """The newest ms-swift run folder (``v3-20250101-120000``) under ``runs``."""
    return find_run_dir(runs, before=set(), seen_output_dir=None)


def _checkpoint(workdir: Path, stage: str) -> Path:
    checkpoint = last_checkpoint(latest_run(workdir / "runs" / stage))
    if checkpoint is None:
        raise UserError(f"{stage} left no checkpoint under {workdir / 'runs' / stage}")
    return checkpoint


DEMO_MARKER = ".plates-demo"  # marks a workdir the demo made: only there may it replace dump/, records.jsonl …


def run_demo(workdir: Path, images: int = DEMO_IMAGES, seed: int = 0, epochs: float | None = None,
             stage2_epochs: float | None = None, verbose: bool = False, grounding: GroundingMode | None = None,
             long: LongMode | None = None) -> Path:
    _check_requirements()
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"--workdir {workdir} is a file; give a folder (it is created if missing)")
    marker = workdir / DEMO_MARKER
    if workdir.is_dir() and any(workdir.iterdir()) and not marker.is_file():
        # the demo replaces dump/, records.jsonl, dataset/ … in its workdir: never in a folder it did not make
        raise UserError(f"--workdir {workdir}: holds files the demo did not write; give a new or empty folder")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError as exc:
        raise UserError(f"--workdir {workdir}: cannot create it ({exc.strerror})") from None
    dump = workdir / "dump"
    if dump.exists():
        shutil.rmtree(dump)
    started = time.monotonic()
    print(f"=== draw a synthetic dump of {images} labelled images (+3 broken names, 1 corrupt file) in {dump}\n"
          f"    body colour, orientation and plate colour drawn uniformly (a majority guess cannot score well)")
    width, height = DEMO_IMAGE_SIZE
    boxes = workdir / "dump.boxes.jsonl"
    boxes.unlink(missing_ok=True)  # a stale one from an earlier --grounding run would describe another drawing
    if grounding:
        print("    --grounding: each plate at a random place and size; where it was drawn goes to " + boxes.name)
    if long:
        print("    --long: each frame (224 x 168 px) shows a close-up strip of the plate above the vehicle")
    make_dump(dump, images, seed=seed, broken=3, corrupt=1, width=width, height=height, balanced=True,
              random_plates=grounding is not None, boxes_file=boxes if grounding else None, closeup=long is not None)
    for title, argv in demo_steps(workdir, images, seed, epochs, stage2_epochs, grounding, long):
        for placeholder, stage in ((STAGE0_PLACEHOLDER, "stage0"), (STAGE1_PLACEHOLDER, "stage1")):
            if placeholder in argv:
                argv = [str(_checkpoint(workdir, stage)) if a == placeholder else a for a in argv]
        if RUN_PLACEHOLDER in argv:
            run = latest_run(workdir / "runs" / "stage2")
            if run is None:
                raise UserError(f"training left no run folder under {workdir / 'runs' / 'stage2'}")
            argv = [str(run) if a == RUN_PLACEHOLDER else a for a in argv]
        if title == "eval (majority)":
            write_majority_results(workdir / "dataset", workdir / "results.majority.jsonl")
        _stage(title, argv, log=workdir / "demo.log", verbose=verbose)
        if title == "parse":
            _show_rejects(workdir / "records.rejects.jsonl")
            if grounding:
                add_drawn_boxes(workdir / "records.jsonl", boxes)
        if title == "build" and long:
            write_strip_dataset(workdir / "dataset", workdir / "dataset-strips")
    print(scoreboard(workdir / "reports"))
    stages = ("stage0", "stage1", "stage2") if long else ("stage1", "stage2")
    losses = [_loss_summary(latest_run(workdir / "runs" / stage), stage) for stage in stages]
    location = location_test(load_reports(workdir / "reports")) if grounding else None
    if location:
        verdict = "locates the plate better than" if location["p"] < 1e-3 else "is not shown to beat"
        losses.append(f"plate location: the tuned model {verdict} the training set's mean box (mean IoU "
                      f"{location['tuned']:.3f} vs {location['baseline']:.3f}, p = {location['p']:.1e})")
    print(_closing_notes(workdir, time.monotonic() - started, "\n".join(losses), read_drawings(workdir / "reports"),
                         reading_test(load_reports(workdir / "reports")), long is not None, location))
    return workdir


def add_drawn_boxes(records: Path, boxes: Path) -> int:
    """Give each parsed record the ``plate_geometry`` its drawing has (from :func:`plates.synth.make_dump`'s
    ``boxes_file``, joined by the image path relative to the dump): seed-grammar names carry no box and parse
    must not guess one. Rewrites ``records`` (the demo's own parse output) atomically; returns how many records
    got boxes. A record without a drawn box (none there should be) is a user-visible error, not silently boxless."""
    drawn = {os.path.normpath(row["image"]): row["plate_geometry"] for _, row in iter_jsonl(boxes, [])}
    rows = [row for _, row in iter_jsonl(records, [])]
    missing = [row["image"] for row in rows if os.path.normpath(row["image"]) not in drawn]
    if missing:
        raise UserError(f"{boxes}: no drawn plate box for {len(missing)} records, e.g. {missing[0]}")
    for row in rows:
        row["plate_geometry"] = drawn[os.path.normpath(row["image"])]
    write_jsonl(records, rows)
    print(f"    plate boxes of the drawing added to {len(rows)} records ({boxes.name} -> {records.name})")
    return len(rows)


def _show_rejects(path: Path) -> None:
    """The files parse could not use, and why: in a real dump these are what to fix or drop on purpose."""
    rows = [row for _, row in iter_jsonl(path, [])]
    print(f"    {len(rows)} files rejected ({path.name}; label counts per field in demo.log):")
    for row in rows:
        print(f"  {row.get('code', '?'):16s} {row.get('image')}\n  {'':16s} {row.get('reason')}")


def _loss_summary(run: Path | None, stage: str = "") -> str:
    """First and last training loss of the run: the visible sign that training moved the model."""
    log = run / "logging.jsonl" if run else None
    prefix = f"{stage} " if stage else ""
    if log is None or not log.is_file():
        return f"{prefix}training loss: not logged"
    losses = [float(row["loss"]) for _, row in iter_jsonl(log, []) if isinstance(row, dict) and "loss" in row]
    if not losses:
        return f"{prefix}training loss: not logged"
    return f"{prefix}training loss {losses[0]:.2f} -> {losses[-1]:.2f} over {len(losses)} logged steps ({log})"


def _wrap(text: str, width: int = 115) -> str:
    import textwrap

    return textwrap.fill(" ".join(text.split()), width)


def _closing_notes(w: Path, seconds: float, loss: str = "", read: tuple[list[str], list[str]] = ((), ()),
                   characters: dict | None = None, long: bool = False, location: dict | None = None) -> str:
    learnt, not_learnt = read
    boxes = "; dump.boxes.jsonl (where each plate was drawn)" if (w / "dump.boxes.jsonl").is_file() else ""
    runs = "runs/stage1 (full fine-tune) and runs/stage2 (LoRA + ViT)"
    if long:
        runs = ("dataset-strips/ (the training answers about the plate strips), runs/stage0 (on the strips), "
                "runs/stage1 (full fine-tune) and runs/stage2 (LoRA + ViT)")
    reads_plates = bool(characters and characters["p"] < 1e-3 and characters["tuned"] > characters["baseline"])
    reading = (f"reads {', '.join(learnt)} well above the majority column (p < 1e-3)" if learnt
               else "does not yet read any drawn attribute above the majority column")
    chars = ("the plate characters" if not reads_plates else
             f"reads the plate characters ({100 * characters['tuned']:.1f}% vs {100 * characters['baseline']:.1f}%, "
             f"p = {characters['p']:.1e})")
    if reads_plates:
        reading += f"; it {chars}" + (f"; {', '.join(not_learnt)} needs more training" if not_learnt else "")
    elif not_learnt:
        reading += f"; {', '.join(not_learnt)} and the plate characters need more training than this budget"
    else:
        reading += "; the plate characters need more training than this budget (`plates demo --long` reads them)"
    if location and location["p"] < 1e-3 and location["tuned"] > location["baseline"]:
        reading += (f"; it locates the plate better than the training set's mean box (mean IoU "
                    f"{location['tuned']:.3f} vs {location['baseline']:.3f}, p = {location['p']:.1e})")
    trainings = "three times" if long else "twice"
    proof = f"""What these numbers prove: every stage runs for real (swift sft {trainings}, swift infer three times), and the
scores are honest: the majority column is what answering without looking at the image scores on the same held-out vehicles,
and each p-value says how likely a majority guesser would do as well as the tuned model on a drawn attribute.
In {seconds / 60:.0f} CPU minutes a random {DEMO_MODEL_WIDTH}-wide, 2-layer model learns the answer format (strict JSON
under free decoding) and {reading}. Stage 1 (a full fine-tune) stands in for the
pretraining a real base model already has; stage 2 is the product's recipe (LoRA, vision tower unfrozen). They do
not prove anything about real photographs or a real model. For a real run change:"""
    return f"""
=== demo finished in {seconds / 60:.1f} min. Artefacts in {w}:
  dump/ (drawn images), records.jsonl + records.rejects.jsonl, teacher.jsonl, dataset/ (train.jsonl, val.jsonl,
  stats.json), tiny-qwen2.5-vl/, {runs} with their manifests and
  swift-sft.log, results.{{majority,base,tuned,tuned_free}}.jsonl (+ .swift-infer.log), reports/*.json|.md,
  reports/plots/, demo.log (teach and eval output){boxes}
{loss}
{_wrap(proof)}
  • the dump:     plates parse /data/dump -o records.jsonl
  • the teacher:  plates teach records.jsonl -o teacher.jsonl --mode describe --backend openai \\
                    --base-url https://dashscope.aliyuncs.com/compatible-mode/v1 --model qwen-vl-max \\
                    --api-key-env DASHSCOPE_API_KEY --concurrency 32
  • the preset:   plates train --preset qwen2_5_vl_7b_lora --dataset dataset   (seed recipe, one GPU; no stage 1)
                  plates train --preset qwen2_5_vl_7b_lora_deepspeed --dataset dataset --gpus 0,1,2,3
  • inference:    plates infer --adapters <checkpoint> --dataset dataset/val.jsonl -o results.jsonl
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=output_dir(convert=Path), default=Path(DEFAULT_WORKDIR),
                        help=f"where every artefact goes (default: ./{DEFAULT_WORKDIR}); re-running reuses it")
    parser.add_argument("--images", type=int,
                        help=f"number of drawn images (default: {DEMO_IMAGES}, {DEMO_VAL_RATIO:.0%}% of the vehicles "
                             f"held out; with --long {LONG.images}, {LONG.val_ratio:.0%}% held out; with --grounding "
                             f"{GROUNDING.images}, {GROUNDING.val_ratio:.0%}% held out)")
    parser.add_argument("--epochs", type=float, help=f"stage-1 epochs (default: the {STAGE1_PRESET} preset's)")
    parser.add_argument("--stage2-epochs", type=float, help=f"stage-2 epochs (default: the {STAGE2_PRESET} preset's)")
    parser.add_argument("--stage0-epochs", type=float,
                        help=f"--long only: epochs of stage 0, the answers about the plate strips (default: "
                             f"{LONG.stage0_epochs:g})")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the dump and the split")
    parser.add_argument("--grounding", action="store_true",
                        help="plate location too (about 12 minutes on 2 cores): draw each plate at a random place "
                             f"and size, train its box (plates build --grounding) once over {GROUNDING.images:,} "
                             f"drawings with the `{GROUNDING.model_size}` tiny model, and score the tuned model's "
                             "mean IoU against the training set's mean box (one-sided sign test over held-out "
                             "vehicles); off by default")
    parser.add_argument("--long", action="store_true",
                        help="read the plate characters too (about 17 minutes on 2 cores): frames with a close-up "
                             "strip of the plate on top, a tiny model whose rotary split tells image columns apart, "
                             "and a stage 0 on the strips alone; the scoreboard adds per-position and full-plate "
                             "accuracy and a sign test against the majority's characters")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show every stage's output and stream ms-swift's (by default the teach and eval "
                             "stages write to WORKDIR/demo.log and ms-swift to each run's log)")


def run(args: argparse.Namespace) -> int:
    """Run the whole pipeline end to end on CPU with no network: draw a labelled dump, parse, teach (offline
    template teacher), build, make a tiny Qwen2.5-VL, train it in two stages with real `swift sft` (a full
    fine-tune standing in for pretraining, then LoRA + ViT), infer with real `swift infer`, and evaluate every
    stage beside a majority baseline. Takes about 10 minutes on 2 cores. With --grounding (about 12 minutes) the
    plates are drawn at random places and sizes and the model also learns their boxes, scored by mean IoU against
    the training set's mean box."""
    if args.long and args.grounding:
        raise UserError("--long and --grounding are separate demos (the close-up frames draw the plate in a fixed "
                        "strip); give one")
    grounding = GROUNDING if args.grounding else None
    mode = LONG if args.long else grounding
    images = args.images if args.images is not None else (mode.images if mode else DEMO_IMAGES)
    if images < 8:
        raise UserError("--images must be at least 8 (the split needs a few vehicles on each side)")
    if args.stage0_epochs is not None and not args.long:
        raise UserError("--stage0-epochs is for --long (the default demo has no stage 0)")
    for name in ("epochs", "stage2_epochs", "stage0_epochs"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UserError(f"--{name.replace('_', '-')} must be a positive number of epochs (e.g. 1 or 0.25)")
    run_demo(args.workdir.resolve(), images, args.seed, args.epochs, args.stage2_epochs, args.verbose,
             grounding, _long_mode(args))
    return 0


def _long_mode(args: argparse.Namespace) -> LongMode | None:
    if not args.long:
        return None
    return replace(LONG, stage0_epochs=args.stage0_epochs) if args.stage0_epochs else LONG


COMMANDS = {"demo": (configure, run, "run the whole pipeline end to end on CPU (no GPU, no network)")}
