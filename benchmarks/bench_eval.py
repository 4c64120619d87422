"""How fast `plates eval` scores answers (target: >= 50,000 valid-JSON answers/s on one core).

Scores N synthetic answers (default 200,000) drawn from the vocabularies in labels/: random values, random
mainland plate numbers, 0-2 plates per image, about one field in ten replaced by another value (answers stay
schema-valid). Prints, from one run:

* fast path      - scoring: parse, structural check (jsonschema only for answers it rejects), normalise,
                   align, compare, tally - what `plates eval` does per answer; the target applies here
* jsonschema     - the same scoring with the compiled jsonschema validator run on every answer (baseline)
* end to end     - the same plus reading a `swift infer --result_path` style JSONL file from disk and
                   decoding and normalising every reference
* Python dicts   - the seed's single-quoted outputs (lenient parse path), for scale
* intervals      - what `plates eval --bootstrap 1000` adds on N answers: per-answer records for every registered
                   metric, then 1,000 bootstrap replicates resampling vehicles (three frames per vehicle here)

Each figure is the best of --repeat runs (default 3), in CPU time of this process pinned to one core (on a shared
machine wall time mostly measures the neighbours; on an idle one the two agree). Usage:
python benchmarks/bench_eval.py [--n 200000];
exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

TARGET = 50_000


def synthetic_pairs(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(JSON response, Python-dict response, JSON reference) triples."""
    from plates.labels import (
        PLATE_FIELDS, PLATE_GROUP, PLATE_NUMBER, UNKNOWN, VEHICLE_FIELDS, VEHICLE_GROUP, load_plate_rules,
        load_vocabularies,
    )

    rng = random.Random(seed)
    vocab = load_vocabularies()
    rules = load_plate_rules()
    abbreviations = list(rules["abbreviations"].items())
    letters = rules["letters"]
    serial = letters + "0123456789"

    def value(f: str) -> str:
        return rng.choice(vocab[f].canonical) if rng.random() > 0.05 else UNKNOWN

    def plate() -> dict[str, str]:
        province, abbreviation = rng.choice(abbreviations)
        p = {f: value(f) for f in PLATE_FIELDS if f != PLATE_NUMBER}
        p["车牌国家"], p["车牌省份"] = "中国", province
        p[PLATE_NUMBER] = abbreviation + rng.choice(letters) + "".join(rng.choice(serial) for _ in range(5))
        return {f: p[f] for f in PLATE_FIELDS}

    def mutate(answer: dict) -> dict:
        answer = json.loads(json.dumps(answer))
        groups = [answer[VEHICLE_GROUP]] + ([answer[PLATE_GROUP]] if isinstance(answer[PLATE_GROUP], dict)
                                            else answer[PLATE_GROUP])
        for group in groups:
            for f in group:
                if rng.random() < 0.1:
                    if f == PLATE_NUMBER:
                        group[f] = group[f][:2] + rng.choice(serial) + group[f][3:]
                    else:
                        group[f] = rng.choice(vocab[f].canonical)
        return answer

    out = []
    for _ in range(n):
        count = rng.choices((0, 1, 2), (10, 85, 5))[0]
        plates = [plate() for _ in range(count)]
        reference = {VEHICLE_GROUP: {f: value(f) for f in VEHICLE_FIELDS},
                     PLATE_GROUP: plates[0] if count == 1 else plates}
        answer = mutate(reference)
        out.append((json.dumps(answer, ensure_ascii=False), repr(answer), json.dumps(reference, ensure_ascii=False)))
    return out


def timed(label: str, n: int, run, repeat: int) -> tuple[str, float, dict]:
    """Best of ``repeat`` runs: the machine may be shared, the best run is the least disturbed one."""
    best = 0.0
    for _ in range(repeat):
        start = time.process_time()
        report = run()
        seconds = time.process_time() - start
        assert report["n"] == n, (label, report["n"], n)
        best = max(best, n / seconds)
    return label, best, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best counts")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    from plates.evaluation.items import Item
    from plates.evaluation.report import add_intervals, evaluate, evaluate_file
    from plates.evaluation.scorer import Scorer
    from plates.evaluation.samples import SampleLog

    print(f"generating {args.n:,} synthetic answers …", flush=True)
    triples = synthetic_pairs(args.n, args.seed)
    scorer = Scorer()
    items = [Item(i, "", response, scorer.reference(json.loads(reference)))
             for i, (response, _, reference) in enumerate(triples, 1)]
    python_items = [Item(i, "", response, item.reference)
                    for item, (i, (_, response, _)) in zip(items, enumerate(triples, 1))]
    baseline_n = min(args.n, 20_000)
    gc.collect()
    gc.freeze()  # the 200,000 prepared items are input, not work: keep the collector from rescanning them

    results = [
        timed("fast path", args.n, lambda: evaluate(items, Scorer()), args.repeat),
        timed("jsonschema on every answer", baseline_n, lambda: evaluate(items[:baseline_n], Scorer(fast_check=False)),
              args.repeat),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for response, _, reference in triples:
                handle.write(json.dumps({"response": response, "labels": reference}, ensure_ascii=False) + "\n")
        results.append(timed("end to end (JSONL file)", args.n, lambda: evaluate_file(path, scorer=Scorer()),
                             args.repeat))
    results.append(timed("Python-dict responses", baseline_n, lambda: evaluate(python_items[:baseline_n], Scorer()),
                         args.repeat))

    scorer = Scorer()
    scored = [(Item(item.line, "", item.response, item.reference, f"car{item.line // 3}"),
               scorer.score(item.response, item.reference)) for item in items]
    log = SampleLog()
    start = time.process_time()
    for item, outcome in scored:
        log.add(item, outcome)
    records_s = time.process_time() - start
    del scored
    start = time.process_time()
    add_intervals(results[0][2], log, 1000, 0)
    bootstrap_s = time.process_time() - start

    fast = results[0][1]
    print(f"\n{'path':<30}{'answers/s':>12}{'vs fast path':>14}")
    for label, rate, _ in results:
        print(f"{label:<30}{rate:>12,.0f}{rate / fast:>13.2f}x")
    report = results[0][2]
    print(f"\n(sanity: exact match {report['exact_match']:.3f}, schema-valid {report['schema_valid_rate']:.3f}, "
          f"parsed {report['parsed_rate']:.3f})")
    print(f"--bootstrap 1000 on {args.n:,} answers ({len(set(log.vehicles)):,} vehicles): per-answer records "
          f"{records_s:.2f} s + bootstrap {bootstrap_s:.2f} s = {records_s + bootstrap_s:.2f} s extra "
          f"(scoring with intervals off: {args.n / fast:.2f} s)")
    end_to_end = results[2][1]
    met = fast >= TARGET
    print(f"target {TARGET:,} valid-JSON answers/s on one core: scoring {fast / TARGET:.2f}x -> "
          f"{'met' if met else 'MISSED'} (end to end incl. reading the file and its references: "
          f"{end_to_end / TARGET:.2f}x)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
