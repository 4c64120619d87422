"""``plates demo``: the whole pipeline end to end on a laptop CPU, through the same code as each subcommand.

It draws a small labelled dump (with a few broken names and one corrupt file), then runs parse → teach
(offline template teacher) → build → tiny-model → train (``tiny_cpu`` preset, real ``swift sft``) → infer
(real ``swift infer``, base model and fine-tuned) → eval → compare. The tiny model has random weights, so the
numbers only show that every stage works; a real run swaps the preset, the teacher backend and the GPUs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from plates.errors import UserError

DEFAULT_WORKDIR = "plates-demo"
RUN_PLACEHOLDER = "RUN"
# The tiny model answers in about 100 tokens once trained; a cap keeps the random base model from rambling.
DEMO_MAX_NEW_TOKENS = 256
DEMO_MAX_PIXELS = 50176  # what the tiny_cpu preset trains with


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


def _stage(title: str, argv: list[str]) -> None:
    from plates.cli import main as plates_main

    print(f"\n=== {title}\n$ plates " + " ".join(_quote(a) for a in argv), flush=True)
    started = time.monotonic()
    code = plates_main(argv)
    if code != 0:
        raise UserError(f"stage '{title}' failed with exit code {code} (see its output above)")
    print(f"--- {title}: done in {time.monotonic() - started:.1f}s", flush=True)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def demo_steps(workdir: Path, images: int, seed: int, epochs: int = 2) -> list[tuple[str, list[str]]]:
    """The ordered stage invocations (title, plates argv) the demo runs; pure, so tests can inspect it.
    ``RUN`` stands for the training run folder, known only once training has finished."""
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
                    "--batch-size", "8"]
    steps += [
        ("build", ["build", str(records), "-o", str(dataset), "--descriptions", str(teach),
                   "--val-ratio", "0.25", "--seed", str(seed)]),
        ("tiny-model", ["tiny-model", str(model)]),
        ("train", ["train", "--preset", "tiny_cpu", "--dataset", str(dataset), "--model", str(model),
                   "--output-dir", str(runs), "--set", f"num_train_epochs={epochs}"]),
        ("infer (base model)", ["infer", "--model", str(model), "-o", str(w / "results.base.jsonl"),
                                "--max-pixels", str(DEMO_MAX_PIXELS), *infer_common]),
        ("infer (fine-tuned)", ["infer", "--adapters", RUN_PLACEHOLDER, "-o", str(w / "results.tuned.jsonl"),
                                *infer_common]),
        ("eval (base model)", ["eval", str(w / "results.base.jsonl"), "--json", str(reports / "base.json"),
                               "--markdown", str(reports / "base.md")]),
        ("eval (fine-tuned)", ["eval", str(w / "results.tuned.jsonl"), "--json", str(reports / "tuned.json"),
                               "--markdown", str(reports / "tuned.md"), "--plots", str(reports / "plots"),
                               "--by", "车牌颜色"]),
        ("compare", ["compare", str(reports / "base.json"), str(reports / "tuned.json")]),
    ]
    return steps


def latest_run(runs: Path) -> Path | None:
    """The newest ms-swift run folder (``v3-20250101-120000``) under ``runs``."""
    from plates.train import find_run_dir

    return find_run_dir(runs, before=set(), seen_output_dir=None)


def run_demo(workdir: Path, images: int, seed: int = 0, epochs: int = 2) -> Path:
    from plates.synth import make_dump

    _check_requirements()
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"--workdir {workdir} is a file; give a folder (it is created if missing)")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--workdir {workdir}: cannot create it ({exc.strerror})") from None
    dump = workdir / "dump"
    if dump.exists():
        shutil.rmtree(dump)
    print(f"=== draw a synthetic dump of {images} labelled images (+3 broken names, 1 corrupt file) in {dump}")
    make_dump(dump, images, seed=seed, broken=3, corrupt=1)
    started = time.monotonic()
    for title, argv in demo_steps(workdir, images, seed, epochs):
        if RUN_PLACEHOLDER in argv:
            run = latest_run(workdir / "runs")
            if run is None:
                raise UserError(f"training left no run folder under {workdir / 'runs'}")
            argv = [str(run) if a == RUN_PLACEHOLDER else a for a in argv]
        _stage(title, argv)
        if title == "parse":
            _show_rejects(workdir / "records.rejects.jsonl")
    print(_closing_notes(workdir, time.monotonic() - started, _loss_summary(latest_run(workdir / "runs"))))
    return workdir


def _show_rejects(path: Path) -> None:
    """The files parse could not use, and why: in a real dump these are what to fix or drop on purpose."""
    from plates.io import iter_jsonl

    print(f"rejects ({path.name}):")
    for _, row in iter_jsonl(path, []):
        print(f"  {row.get('code', '?'):16s} {row.get('image')}\n  {'':16s} {row.get('reason')}")


def _loss_summary(run: Path | None) -> str:
    """First and last training loss of the run: the visible sign that training moved the model."""
    from plates.io import iter_jsonl

    log = run / "logging.jsonl" if run else None
    if log is None or not log.is_file():
        return "training loss: not logged"
    losses = [float(row["loss"]) for _, row in iter_jsonl(log, []) if isinstance(row, dict) and "loss" in row]
    if not losses:
        return "training loss: not logged"
    return f"training loss {losses[0]:.2f} -> {losses[-1]:.2f} over {len(losses)} steps ({log})"


def _closing_notes(w: Path, seconds: float, loss: str = "") -> str:
    return f"""
=== demo finished in {seconds / 60:.1f} min. Artefacts:
  dump (drawn images)      {w / 'dump'}
  records / rejects        {w / 'records.jsonl'}  {w / 'records.rejects.jsonl'}
  teacher descriptions     {w / 'teacher.jsonl'}
  ms-swift dataset         {w / 'dataset'}/train.jsonl, val.jsonl, stats.json
  tiny model               {w / 'tiny-qwen2.5-vl'}
  training run + manifest  {w / 'runs'}
  predictions              {w / 'results.base.jsonl'}  {w / 'results.tuned.jsonl'}
  reports                  {w / "reports"}/tuned.md, tuned.json, base.md, base.json, plots/

{loss}
The tiny model has random weights and a 32-wide, 2-layer network: training lowers its loss, but it is far too
small to learn to write the JSON answer, so its scores stay near zero. The numbers prove the plumbing, not the
model. For a real run change:
  • the dump:     plates parse /data/dump -o records.jsonl
  • the teacher:  plates teach records.jsonl -o teacher.jsonl --mode describe --backend openai \\
                    --base-url https://dashscope.aliyuncs.com/compatible-mode/v1 --model qwen-vl-max \\
                    --api-key-env DASHSCOPE_API_KEY --concurrency 32
  • the preset:   plates train --preset qwen2_5_vl_7b_lora --dataset dataset   (seed recipe, one GPU)
                  plates train --preset qwen2_5_vl_7b_lora_deepspeed --dataset dataset --gpus 0,1,2,3
  • inference:    plates infer --adapters <checkpoint> --dataset dataset/val.jsonl -o results.jsonl
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workdir", type=Path, default=Path(DEFAULT_WORKDIR),
                        help=f"where every artefact goes (default: ./{DEFAULT_WORKDIR}); re-running reuses it")
    parser.add_argument("--images", type=int, default=24, help="number of drawn images (default: 24)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default: 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the dump and the split")


def run(args: argparse.Namespace) -> int:
    """Run the whole pipeline end to end on CPU with no network: draw a labelled dump, parse, teach (offline
    template teacher), build, make a tiny Qwen2.5-VL, train it with real `swift sft`, infer with real
    `swift infer`, evaluate, and compare with the base model. Takes a few minutes on 2 cores."""
    if args.images < 8:
        raise UserError("--images must be at least 8 (the split needs a few vehicles on each side)")
    if args.epochs < 1:
        raise UserError("--epochs must be at least 1")
    run_demo(args.workdir.resolve(), args.images, args.seed, args.epochs)
    return 0


COMMANDS = {"demo": (configure, run, "run the whole pipeline end to end on CPU (no GPU, no network)")}
