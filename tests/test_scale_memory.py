"""Memory of `plates build` and `plates eval` stays flat in the dataset size (issue 23).

Measured with tracemalloc's peak (every Python and numpy allocation, byte-exact and the same on every run, so
the test cannot flake on machine load): the growth of the peak from N to 4N records, per added record, must stay
far below what holding the records costs (the old build held ~7 KB per record; the old eval held its per-answer lists, ~620 bytes per answer of Python objects here).
benchmarks/bench_scale.py gives the resident-memory figures at 50k-1M.
"""

from __future__ import annotations

import json
import os
import random
import tracemalloc
from pathlib import Path

import pytest

from plates.cli import main
from plates.labels import answer_from_labels
from plates.synth import draw_vehicle, random_labels, seed_filename

SMALL, LARGE = 5_000, 20_000
BYTES_PER_RECORD = 600  # build; the previous build grew by ~7,000 per record
BYTES_PER_ANSWER = 300  # eval; the previous eval grew by ~620 per answer here (~4,000 in resident memory)


def _records(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` records whose images are hard links to one drawn JPEG, 1-3 frames per vehicle."""
    import cv2

    rng = random.Random(seed)
    root.mkdir(parents=True)
    source = root / "source.jpg"
    source.write_bytes(cv2.imencode(".jpg", draw_vehicle(random_labels(rng), 64, 48, rng))[1].tobytes())
    out = root / "records.jsonl"
    car, left, labels = 0, 0, None
    with out.open("w", encoding="utf-8") as handle:
        for i in range(n):
            if left == 0:
                car, left, labels = car + 1, rng.choice((1, 2, 3)), random_labels(rng)
            left -= 1
            ids = [f"{i:08d}", f"car{car}", f"{rng.randint(0, 99999999):08d}"]
            name = f"图 片/{seed_filename(labels, ids)}"
            (root / name).parent.mkdir(exist_ok=True)
            os.link(source, root / name)
            handle.write(json.dumps({"image": name, "root": str(root), "format": "seed", "width": 64, "height": 48,
                                     "channels": 3, "labels": labels, "ids": ids, "warnings": []},
                                    ensure_ascii=False) + "\n")
    return out


def _results(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` answers = labels showing 1,000 vehicles and 50 label sets, whatever ``n``: the bootstrap's draws
    (a fixed number of cells per chunk, 40 sums per vehicle) and the scorer's bounded caches of distinct values
    are then the same at both sizes, and what grows is what is kept per answer."""
    rng = random.Random(seed)
    pool = [random_labels(rng) for _ in range(50)]
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            labels = pool[i % len(pool)]
            answer = json.dumps(answer_from_labels(labels), ensure_ascii=False)
            image = f"/data/图 片/{seed_filename(labels, [f'{i:08d}', f'car{i % 1000}'])}"
            handle.write(json.dumps({"response": answer, "labels": answer, "images": [{"path": image}]},
                                    ensure_ascii=False) + "\n")
    return path


def _traced_peak(argv: list[str]) -> int:
    tracemalloc.start()
    try:
        assert main(argv) == 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_build_memory_is_flat_in_the_number_of_records(tmp_path):
    peaks = {}
    for n in (SMALL, LARGE):
        records = _records(tmp_path / f"n{n}", n)
        peaks[n] = _traced_peak(["build", str(records), "-o", str(tmp_path / f"out{n}")])
        assert sum(1 for _ in (tmp_path / f"out{n}" / "train.jsonl").open()) > 0.8 * n
    per_record = (peaks[LARGE] - peaks[SMALL]) / (LARGE - SMALL)
    assert per_record < BYTES_PER_RECORD, (peaks, per_record)


@pytest.mark.slow
def test_eval_memory_is_flat_in_the_number_of_answers(tmp_path):
    peaks = {}
    for n in (SMALL, LARGE):
        results = _results(tmp_path / f"r{n}.jsonl", n)
        report = tmp_path / f"report{n}.json"
        peaks[n] = _traced_peak(["eval", str(results), "--json", str(report), "--markdown",
                                 str(tmp_path / f"report{n}.md")])
        written = json.loads(report.read_text(encoding="utf-8"))
        assert written["n"] == n and len(written["samples"]["id"]) == n and written["ci95"]
    per_answer = (peaks[LARGE] - peaks[SMALL]) / (LARGE - SMALL)
    assert per_answer < BYTES_PER_ANSWER, (peaks, per_answer)


@pytest.mark.slow
def test_the_scale_benchmark_runs_every_stage_and_the_old_build(tmp_path):
    """bench_scale.py on two small sizes, with this checkout as its own --old-tree: every stage runs in its own
    process, leaves its outputs and reports a time and a peak."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_scale.py"), "--sizes", "300", "600",
                           "--old-tree", str(root), "--dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, PYTHONPATH=str(root)))
    assert done.returncode == 0, done.stderr[-2000:] + done.stdout[-2000:]
    table = {line.split()[0]: line.split() for line in done.stdout.splitlines()[-4:]}
    assert set(table) == {"parse", "build", "build@old", "eval"}
    for row in table.values():
        assert float(row[1]) > 0 and float(row[3]) > 10  # seconds, MB
    report = json.loads((tmp_path / "n600" / "report.json").read_text(encoding="utf-8"))
    assert report["n"] == 600 and report["exact_match"] == 1.0
    assert sum(1 for _ in (tmp_path / "n600" / "dataset" / "train.jsonl").open(encoding="utf-8")) > 400
