"""`plates predict` throughput beside one `swift infer` call on the same images, in one run.

Draws N vehicle images (plates.synth, no labels used), builds the tiny random Qwen2.5-VL (plates.tiny_model, no
download; or --model DIR), then answers the same images

* swift infer   - one `swift infer` over a dataset of the N images (the command `plates infer` builds: same
                  template, plugin, schema-constrained decoding, caps and batch size), results to a file;
* predict -c K  - `plates predict` into a fresh output, for each chunk size K (answers appended and fsynced
                  every K images),

and prints wall seconds (model load included in each: each starts the model once), images/s and the ratio of
each predict's time to the `swift infer` call. The target (issue 23) is a ratio within 1.10 at every chunk size
down to 16. Usage: python benchmarks/bench_predict.py [--images 64] [--chunks 16,256] [--repeat 2]

Other benchmarks call :func:`compare` and get the figures as a dict.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def draw_images(folder: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` drawn vehicle JPEGs under ``folder`` (their labelled names do not matter to predict)."""
    from plates.dump import iter_files
    from plates.synth import make_dump

    make_dump(folder, n, seed=seed)
    return [str(folder / rel) for rel in iter_files(folder)][:n]


def time_swift_infer(images: list[str], model: str, workdir: Path, *, batch_size: int | None,
                     max_new_tokens: int, max_pixels: int | None) -> float:
    """Wall seconds of one `swift infer` over ``images`` (the samples `plates predict` sends)."""
    from plates import swift_cli
    from plates.engine_answers import sample
    from plates.image_inputs import Candidate
    from plates.inference import InferenceSettings
    from plates.io import write_jsonl
    from plates.student import StudentContract
    from plates.swift_infer import build_infer_command

    dataset, result = workdir / "dataset.jsonl", workdir / "results.jsonl"
    result.unlink(missing_ok=True)
    messages = StudentContract().messages()  # what predict asks a model plates did not train
    write_jsonl(dataset, (sample(Candidate(path, ""), messages) for path in images))
    settings = InferenceSettings(model=model, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                 max_pixels=max_pixels)
    argv, env = build_infer_command(settings, dataset=str(dataset), result_path=result)
    started = time.monotonic()
    run = swift_cli.run_swift(argv, env, log_path=workdir / "swift-infer.log", who="bench")
    seconds = time.monotonic() - started
    if run.code != 0 or sum(1 for _ in open(result, encoding="utf-8")) != len(images):
        raise SystemExit(f"swift infer failed (exit {run.code}); see {workdir / 'swift-infer.log'}")
    return seconds


def time_predict(images: list[str], model: str, output: Path, *, chunk_size: int, batch_size: int | None,
                 max_new_tokens: int, max_pixels: int | None) -> float:
    from plates.inference import InferenceSettings
    from plates.predict import run_predict

    settings = InferenceSettings(model=model, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                 max_pixels=max_pixels)
    started = time.monotonic()
    summary = run_predict(images, output, settings, chunk_size=chunk_size)
    seconds = time.monotonic() - started
    if summary.answered != len(images):
        raise SystemExit(f"predict answered {summary.answered} of {len(images)} images")
    return seconds


def compare(n: int = 64, chunk_sizes: tuple[int, ...] = (16, 256), *, model: str | None = None,
            batch_size: int | None = None, max_new_tokens: int = 128, max_pixels: int | None = 112 * 112,
            seed: int = 0, repeat: int = 1) -> dict[str, Any]:
    """Answer the same ``n`` drawn images with one `swift infer` and with `plates predict` at each chunk size,
    ``repeat`` rounds interleaved (each figure the best round: a shared machine's load only ever slows a run);
    returns ``{"images", "swift_infer_s", "predict": {K: {"seconds", "ratio"}}}``."""
    work = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    try:
        if model is None:
            from plates.tiny_model import build_tiny_model

            model = str(build_tiny_model(work / "tiny"))
        images = draw_images(work / "images", n, seed=seed)
        caps = dict(batch_size=batch_size, max_new_tokens=max_new_tokens, max_pixels=max_pixels)
        times: dict[Any, list[float]] = {"swift infer": [], **{k: [] for k in chunk_sizes}}
        for round_ in range(repeat):
            times["swift infer"].append(time_swift_infer(images, model, work, **caps))
            for k in chunk_sizes:
                out = work / f"predict-{k}-{round_}" / "preds.jsonl"
                times[k].append(time_predict(images, model, out, chunk_size=k, **caps))
        baseline = min(times["swift infer"])
        return {"images": len(images), "swift_infer_s": baseline, "rounds": repeat,
                "predict": {k: {"seconds": min(times[k]), "ratio": min(times[k]) / baseline} for k in chunk_sizes}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def format_table(figures: dict[str, Any]) -> str:
    n = figures["images"]
    rows = [("swift infer (one call)", figures["swift_infer_s"], 1.0)]
    rows += [(f"plates predict --chunk-size {k}", f["seconds"], f["ratio"]) for k, f in figures["predict"].items()]
    lines = [f"{n} images, best of {figures.get('rounds', 1)} interleaved round(s)", f"{'run':<32} {'seconds':>8} {'images/s':>9} {'x swift infer':>14}"]
    lines += [f"{name:<32} {sec:>8.1f} {n / sec:>9.2f} {ratio:>14.2f}" for name, sec, ratio in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--chunks", default="16,256", help="comma-separated chunk sizes (default 16,256)")
    parser.add_argument("--model", help="model folder (default: the tiny random model, built in a temp folder)")
    parser.add_argument("--batch-size", type=int, help="max_batch_size for both (default: ms-swift's, 1)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds; each figure is the best")
    args = parser.parse_args(argv)
    chunks = tuple(int(c) for c in args.chunks.split(",") if c.strip())
    figures = compare(args.images, chunks, model=args.model, batch_size=args.batch_size,
                      max_new_tokens=args.max_new_tokens, repeat=args.repeat)
    print(format_table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
