"""How time and memory of `plates parse` → `plates build` → `plates eval` grow with the number of images.

For each N (default 50,000 and 200,000; ``--sizes 50000 200000 1000000``) it makes an N-image dump of hard links
to a few drawn JPEGs (``plates.synth``: the file names follow the seed's grammar, with every image's ids and
labels drawn by ``synth.dump_entries``, so every name differs and vehicles span one to three frames; 1M links
take a minute and almost no disk), then runs each stage as its own process and prints its wall time and peak
resident memory (GNU time's %M: the stage's own ``ru_maxrss``), in total and per record:

* parse  `plates parse DUMP -o records.jsonl`
* build  `plates build records.jsonl -o dataset/` (``--old-tree DIR`` runs the same build with another checkout,
         e.g. a worktree of the base commit, side by side: before/after figures of one run)
* eval   `plates eval results.jsonl --json --markdown` on one answer per record, answers = labels (the report
         with its 1,000-replicate bootstrap intervals and per-answer samples)

A stage's peak memory at the largest N over its peak at the smallest is the figure the targets speak of (build
and eval: ≤ 1.5x from 51k to 205k records, ≤ 500 MB at 205k). ``--predict`` adds predict's throughput beside one `swift infer`
call (``benchmarks/bench_predict.py``'s ``compare``).

usage: python benchmarks/bench_scale.py [--sizes N ...] [--dir D] [--old-tree DIR] [--stages parse,build,eval]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plates.synth import dump_entries, draw_vehicle, random_labels  # noqa: E402


def make_link_dump(root: Path, n: int, distinct: int = 8, seed: int = 0) -> int:
    """``n`` hard links named like a real dump, to ``distinct`` drawn JPEGs kept beside the dump (more when
    needed: ext4 allows 65,000 links to one file)."""
    import cv2

    distinct = max(distinct, -(-n // 60_000))

    sources = root.parent / f"{root.name}-sources"
    sources.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    originals = []
    for k in range(distinct):
        ok, data = cv2.imencode(".jpg", draw_vehicle(random_labels(rng), 160, 120, rng))
        path = sources / f"{k}.jpg"
        path.write_bytes(data.tobytes())
        originals.append(str(path))
    made = set()
    for k, entry in enumerate(dump_entries(n, seed=seed)):
        path = root / entry.path
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        os.link(originals[k % distinct], path)
    return n


def write_results(records: Path, results: Path) -> int:
    """One `swift infer`-style result line per record, whose response is its reference (answers = labels)."""
    from plates.labels import answer_from_labels

    n = 0
    with records.open(encoding="utf-8") as src, results.open("w", encoding="utf-8") as out:
        for line in src:
            record = json.loads(line)
            answer = json.dumps(answer_from_labels(record["labels"]), ensure_ascii=False)
            image = os.path.join(record["root"], record["image"])
            out.write(json.dumps({"response": answer, "labels": answer, "images": [{"path": image}]},
                                 ensure_ascii=False) + "\n")
            n += 1
    return n


def run_stage(argv: list[str], tree: Path, log: Path) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, exit code) of one stage run as its own process with ``tree`` on PYTHONPATH.
    The peak comes from GNU time's %M (the stage's own ru_maxrss; the child of a forked parent that has drawn
    images would otherwise count the parent's pages until exec), else from ``os.wait4``."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    timer = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    peak_file = log.with_suffix(".peak")
    if timer:
        argv = [timer, "-f", "%M", "-o", str(peak_file), *argv]
    start = time.perf_counter()
    with log.open("wb") as handle:
        # cwd outside any checkout: `python -m` puts the cwd first on sys.path, before PYTHONPATH
        process = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=log.parent)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    peak_kb = usage.ru_maxrss
    if timer:
        peak_kb = int(peak_file.read_text(encoding="utf-8").strip().splitlines()[-1])
    return seconds, peak_kb / 1024, os.waitstatus_to_exitcode(status)


def plates_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "plates.cli", *args]


def bench_size(n: int, work: Path, stages: list[str], old_tree: Path | None,
               old_max: int) -> list[tuple[str, int, float, float]]:
    rows = []
    dump = work / "dump"
    t0 = time.perf_counter()
    make_link_dump(dump, n)
    print(f"  N={n}: dump of {n} hard links made in {time.perf_counter() - t0:.0f} s", flush=True)
    records = work / "records.jsonl"

    def stage(name: str, argv: list[str], tree: Path = ROOT) -> None:
        seconds, mb, rc = run_stage(argv, tree, work / f"{name}.log")
        if rc != 0:
            raise SystemExit(f"{name} failed (exit {rc}); see {work / (name + '.log')}:\n"
                             + (work / f"{name}.log").read_text(encoding="utf-8", errors="replace")[-2000:])
        rows.append((name, n, seconds, mb))
        print(f"  N={n}: {name:<10} {seconds:8.1f} s {mb:8.0f} MB  ({1e6 * seconds / n:6.1f} µs, "
              f"{mb * 1e6 / n / 1024:6.2f} KB per record)", flush=True)

    stage("parse", plates_argv("parse", str(dump), "-o", str(records)))
    if "build" in stages:
        stage("build", plates_argv("build", str(records), "-o", str(work / "dataset")))
        if old_tree is not None and n <= old_max:
            stage("build@old", plates_argv("build", str(records), "-o", str(work / "dataset-old")), old_tree)
    if "eval" in stages:
        results = work / "results.jsonl"
        write_results(records, results)
        stage("eval", plates_argv("eval", str(results), "--json", str(work / "report.json"),
                                  "--markdown", str(work / "report.md")))
    return rows


def predict_hook(images: int = 32, rounds: int = 3) -> None:
    """Predict throughput beside one `swift infer` call, from benchmarks/bench_predict.py (tiny model, drawn
    images, the model load included in each; ``rounds`` interleaved rounds, each figure the best, as one round
    on a shared machine can be slowed by anything else running)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_predict import compare, format_table  # type: ignore[import-not-found]

    print(format_table(compare(images, (16, 256), max_new_tokens=32, repeat=rounds)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--dir", help="work folder, kept (default: a temporary folder, removed)")
    parser.add_argument("--old-tree", type=Path, help="another checkout whose build runs beside this one's")
    parser.add_argument("--old-max", type=int, default=250_000,
                        help="run the --old-tree build only up to this N (it holds every record; default 250000)")
    parser.add_argument("--stages", default="parse,build,eval", help="comma list of stages (parse always runs)")
    parser.add_argument("--predict", action="store_true", help="add predict throughput (bench_predict.py)")
    args = parser.parse_args()
    stages = args.stages.split(",")
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-scale-"))
    rows = []
    try:
        for n in args.sizes:
            work = base / f"n{n}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            rows += bench_size(n, work, stages, args.old_tree, args.old_max)
            if args.predict and n == args.sizes[0]:
                predict_hook()
            if not args.dir:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print(f"{'stage':<10} " + " ".join(f"{'N=' + str(n):>22}" for n in args.sizes) + "   peak ratio last/first")
    for name in dict.fromkeys(r[0] for r in rows):
        cells = {n: (s, mb) for stage, n, s, mb in rows if stage == name}
        line = f"{name:<10} " + " ".join(f"{cells[n][0]:8.1f} s {cells[n][1]:7.0f} MB" if n in cells
                                         else f"{'—':>22}" for n in args.sizes)
        done = [n for n in args.sizes if n in cells]
        print(line + f"   {cells[done[-1]][1] / cells[done[0]][1]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
