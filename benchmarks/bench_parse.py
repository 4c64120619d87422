"""Benchmark `plates parse` against the obvious approach, reading every image with cv2.imread for its shape.

Builds a synthetic dump of real JPEG files (``plates.synth.make_dump``; by default 20,000 images the size of the
seed's example, 602 x 612) and prints, in one run:

* files/s of `plates parse` (header reads, name parsing, JSONL written) with one process and with the default
  worker count, next to files/s of a walk + ``cv2.imread(path).shape`` loop, and the ratio (target >= 20x);
* names/s of name parsing alone (``parse_filename``, caches cleared first, one process and the default worker
  count) on the dump's names, where vehicles appear in one to three frames, and on names whose vehicles are all
  distinct (target >= 200,000).

Both image passes run on a warm page cache (a walk reads every file once before timing). ``--names-only`` skips
the image part (no files written) and times name parsing alone on the same dump's names, for quick iteration.
usage: python benchmarks/bench_parse.py [--files N] [--width W --height H] [--jobs J] [--dir D] [--names-only]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plates import parse  # noqa: E402
from plates.names import ParsedName, clear_caches, parse_filename  # noqa: E402
from plates.records import iter_records  # noqa: E402
from plates.synth import dump_entries, make_dump, random_labels, seed_filename  # noqa: E402


def imread_shapes(root: str) -> dict[str, tuple[int, ...]]:
    """The baseline: walk the dump and decode every image to learn its shape."""
    import cv2

    shapes = {}
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            path = os.path.join(folder, name)
            image = cv2.imread(path)
            if image is not None:
                shapes[os.path.relpath(path, root).replace(os.sep, "/")] = image.shape
    return shapes


def warm_cache(root: str) -> int:
    total = 0
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as handle:
                total += len(handle.read())
    return total


_INHERITED_NAMES: list[str] = []


def _inherit_names(names: list[str]) -> None:
    """A forked worker's initializer: it keeps the parent's names (not pickled), as `plates parse`'s workers do."""
    global _INHERITED_NAMES
    _INHERITED_NAMES = names


def _count_parsed(names: list[str] | range) -> int:
    """Names parsed; a range selects from the names a forked worker inherited."""
    if names.__class__ is range:
        names = _INHERITED_NAMES[names.start:names.stop]
    return sum(isinstance(parse_filename(name), ParsedName) for name in names)


def names_per_second(names: list[str], jobs: int = 1, repeats: int = 5) -> float:
    """Best of ``repeats`` cold runs (caches cleared) of parse_filename over ``names``, in ``jobs`` processes."""
    import multiprocessing

    best = 0.0
    for _ in range(repeats):
        clear_caches()
        if jobs == 1:
            start = time.perf_counter()
            _count_parsed(names)
        else:
            size = parse.CHUNK_FILES
            chunks = [range(i, min(i + size, len(names))) for i in range(0, len(names), size)]
            with multiprocessing.get_context("fork").Pool(jobs, _inherit_names, (names,)) as pool:
                pool.map(len, [[]] * jobs)  # workers started before the clock
                start = time.perf_counter()
                sum(pool.imap_unordered(_count_parsed, chunks))  # one chunk per task, as plates parse's imap
        best = max(best, len(names) / (time.perf_counter() - start))
    return best


def print_name_rates(dump_names: list[str], jobs: int) -> float:
    """Print names/s of name parsing alone on ``dump_names`` and on as many names of distinct vehicles;
    return the best rate on the dump's names."""
    rng = random.Random(2)
    distinct = [seed_filename(random_labels(rng), [f"{i:08d}", f"car{i}"]) for i in range(len(dump_names))]
    job_counts = sorted({1, jobs})
    rates = {(kind, j): names_per_second(names, j)
             for kind, names in (("dump", dump_names), ("distinct", distinct)) for j in job_counts}
    print()
    print(f"{'name parsing alone':<38}"
          + "".join(f"{f'{j} process' + ('es' if j > 1 else ''):>14}" for j in job_counts))
    for kind, label in (("dump", "names of this dump"), ("distinct", "every vehicle distinct")):
        print(f"{'  ' + label:<38}" + "".join(f"{rates[kind, j]:>14,.0f}" for j in job_counts))
    return max(rate for (kind, _), rate in rates.items() if kind == "dump")


def print_names_target(best_names: float) -> None:
    print(f"target >= 200,000 names/s: {'met' if best_names >= 200_000 else 'NOT met'} "
          f"({best_names:,.0f} names/s on the dump's names)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--width", type=int, default=602)
    parser.add_argument("--height", type=int, default=612)
    parser.add_argument("--jobs", type=int, default=parse.default_jobs())
    parser.add_argument("--dir", help="build the dump here and keep it (default: a temporary folder)")
    parser.add_argument("--names-only", action="store_true",
                        help="time name parsing alone, on the dump's names without writing any image")
    args = parser.parse_args()
    if args.names_only:
        dump_names = [entry.path.rpartition("/")[2] for entry in dump_entries(args.files, seed=1)]
        print(f"{len(dump_names)} names of a synthetic dump (no images written)")
        print_names_target(print_name_rates(dump_names, args.jobs))
        return 0

    with tempfile.TemporaryDirectory(prefix="bench_parse_") as scratch:
        base = Path(args.dir) if args.dir else Path(scratch)
        root = base / "dump: 车辆 images"
        start = time.perf_counter()
        paths = make_dump(root, args.files, seed=1, broken=args.files // 1000, corrupt=args.files // 2000,
                          width=args.width, height=args.height)
        built = time.perf_counter() - start
        size = warm_cache(str(root))
        print(f"dump: {len(paths)} files ({args.files} JPEG ~{args.width}x{args.height}, "
              f"{size / len(paths) / 1024:.1f} KiB average) built in {built:.1f} s; {os.cpu_count()} CPUs")

        start = time.perf_counter()
        shapes = imread_shapes(str(root))
        baseline = time.perf_counter() - start

        timings = {}
        for jobs in sorted({1, args.jobs}):
            out = Path(scratch) / f"records-{jobs}.jsonl"
            clear_caches()
            start = time.perf_counter()
            summary = parse.parse_to_files(root, out, jobs=jobs, show_progress=False)
            timings[jobs] = time.perf_counter() - start
            assert summary.files == len(paths) == summary.parsed + summary.rejected

        mismatched = sum(shapes.get(r["image"], (0, 0))[:2] != (r["height"], r["width"]) for r in iter_records(out))

        files = len(paths)
        print()
        print(f"{'method':<38}{'seconds':>9}{'files/s':>11}{'speed-up':>10}")
        print(f"{'walk + cv2.imread(path).shape':<38}{baseline:>9.2f}{files / baseline:>11,.0f}{1:>9.1f}x")
        for jobs, seconds in timings.items():
            label = f"plates parse --jobs {jobs}"
            print(f"{label:<38}{seconds:>9.2f}{files / seconds:>11,.0f}{baseline / seconds:>9.1f}x")
        print(f"records whose size differs from cv2.imread's: {mismatched}")

        best_names = print_name_rates([p.name for p in paths], args.jobs)

        best = baseline / min(timings.values())
        print()
        print(f"target >= 20x imread: {'met' if best >= 20 else 'NOT met'} ({best:.1f}x)")
        print_names_target(best_names)
        if args.dir:
            print(f"dump kept in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
