"""The demo's scoreboard: the majority baseline (every field's commonest training value, the mean box), each
report side by side with it, and the tests that say whether the tuned model reads what the drawings show (a
binomial tail per drawn attribute, sign tests over held-out vehicles for the characters and the plate box).
`plates demo` writes the reports; this module only reads them."""

from __future__ import annotations

import json
import math
from pathlib import Path

from plates.errors import UserError
from plates.evaluation.common import BOX_FIELD
from plates.evaluation.samples import read_samples
from plates.grounding import BBOX_TAG, fill_bbox_tags, is_box
from plates.io import iter_jsonl, write_jsonl
from plates.labels import (
    PLATE_BOX, PLATE_COLOUR, PLATE_FIELDS, PLATE_GROUP, PLATE_NUMBER, VEHICLE_COLOUR, VEHICLE_FIELDS, VEHICLE_GROUP,
    VEHICLE_ORIENTATION,
)

# The attributes the drawings make visible and balanced (see plates.synth.balanced_labels).
VISUAL_FIELDS = (VEHICLE_COLOUR, VEHICLE_ORIENTATION, PLATE_COLOUR)
REPORTS = (("majority", "majority"), ("base", "base"), ("tuned", "tuned"),
           ("tuned_free", "tuned (free)"))


def reference_text(row: dict) -> str:
    """A dataset row's reference answer as `plates eval` reads it: a grounding target's ``<bbox>`` tags filled,
    in order, with the sample's ``objects`` boxes (original pixels), as `plates infer` writes its labels."""
    text = row["messages"][-1]["content"]
    if BBOX_TAG in text:
        text = fill_bbox_tags(text, (row.get("objects") or {}).get("bbox") or [])
    return text


def mean_box(boxes: list[list[float]]) -> list[int] | None:
    """Each coordinate's mean over ``boxes``, rounded to whole pixels: the mean-box baseline's one answer."""
    if not boxes:
        return None
    return [int(round(sum(b[k] for b in boxes) / len(boxes))) for k in range(4)]


def majority_answer(train_file: Path) -> dict:
    """The answer that ignores the image: every field's commonest training value, the commonest plate count, a
    plate number made of the commonest character at each position of the commonest length, and (when the
    training answers give plate boxes) the training set's mean box as every plate's ``车牌位置``."""
    from collections import Counter

    vehicle = {f: Counter() for f in VEHICLE_FIELDS}
    plate = {f: Counter() for f in PLATE_FIELDS}
    counts: Counter = Counter()
    numbers: list[str] = []
    boxes: list[list[float]] = []
    for _, row in iter_jsonl(train_file, []):
        try:
            answer = json.loads(reference_text(row))
        except (KeyError, IndexError, TypeError, ValueError):
            continue  # description and reasoning samples are not JSON answers
        if not isinstance(answer, dict) or VEHICLE_GROUP not in answer:
            continue
        for f in VEHICLE_FIELDS:
            vehicle[f][answer[VEHICLE_GROUP].get(f)] += 1
        plates = answer.get(PLATE_GROUP) or []
        plates = [plates] if isinstance(plates, dict) else plates
        counts[len(plates)] += 1
        for p in plates:
            for f in PLATE_FIELDS:
                plate[f][p.get(f)] += 1
            numbers.append(str(p.get(PLATE_NUMBER, "")))
            if is_box(p.get(BOX_FIELD)):
                boxes.append(p[BOX_FIELD])
    if not counts:
        raise UserError(f"{train_file}: no extraction answers to take a majority baseline from")
    common = {f: c.most_common(1)[0][0] for f, c in plate.items() if c}
    if numbers:
        length = Counter(len(n) for n in numbers).most_common(1)[0][0]
        same = [n for n in numbers if len(n) == length]
        common[PLATE_NUMBER] = "".join(Counter(n[i] for n in same).most_common(1)[0][0] for i in range(length))
    if boxes:
        common[BOX_FIELD] = mean_box(boxes)
    n_plates = counts.most_common(1)[0][0]
    group = [dict(common) for _ in range(n_plates)]
    return {VEHICLE_GROUP: {f: c.most_common(1)[0][0] for f, c in vehicle.items()},
            PLATE_GROUP: group[0] if n_plates == 1 else group}


def write_majority_results(dataset: Path, output: Path) -> Path:
    """A results file in `swift infer`'s shape that answers every validation sample with :func:`majority_answer`,
    so `plates eval` scores the baseline exactly as it scores the models."""
    answer = json.dumps(majority_answer(dataset / "train.jsonl"), ensure_ascii=False)
    rows = [{"response": answer, "labels": reference_text(row), "images": row.get("images", []),
             "decoding": "majority"} for _, row in iter_jsonl(dataset / "val.jsonl", [])]
    write_jsonl(output, rows)
    print(f"\n=== majority baseline: every answer is {answer}")
    return output


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): how likely a guesser right with probability ``p`` gets ``k`` of ``n``."""
    p = min(max(p, 0.0), 1.0)
    if k <= 0:
        return 1.0
    return min(1.0, sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(max(k, 0), n + 1)))


def sign_test_greater(tuned: list[float], baseline: list[float]) -> tuple[int, int, float]:
    """(wins, losses, p) of a one-sided exact sign test that ``tuned`` beats ``baseline`` pair by pair: ties are
    dropped and p = P(X >= wins) for X ~ Binomial(wins + losses, 1/2), 1.0 when every pair ties."""
    wins = sum(t > b + 1e-12 for t, b in zip(tuned, baseline))
    losses = sum(b > t + 1e-12 for t, b in zip(tuned, baseline))
    return wins, losses, binomial_tail(wins, wins + losses, 0.5) if wins + losses else 1.0


def vehicle_means(report: dict | None, metric: str = "mean_iou") -> dict[str, float]:
    """Each held-out vehicle's mean of a per-answer metric in a report (from its ``samples``; answers the metric
    does not apply to, e.g. no reference box for ``mean_iou``, are left out)."""
    read = read_samples(report) if report else None
    if read is None or metric not in read[2]:
        return {}
    _, vehicles, columns = read
    num, den = columns[metric]
    sums: dict[str, list[float]] = {}
    for vehicle, n, d in zip(vehicles, num, den):
        if d > 0:
            total = sums.setdefault(vehicle, [0.0, 0.0])
            total[0] += float(n)
            total[1] += float(d)
    return {vehicle: n / d for vehicle, (n, d) in sums.items()}


def reading_test(loaded: dict[str, dict | None]) -> dict | None:
    """The tuned model's plate characters against the majority baseline's (the commonest character at each
    position): both accuracies, full-plate accuracies, per-position accuracies and a one-sided sign test over
    held-out vehicles, each scored by its mean character accuracy (per vehicle for the reason
    :func:`location_test` gives; a binomial test over characters would treat the characters of one plate, and
    the frames of one vehicle, as independent). None without plate numbers in both reports."""
    tuned, baseline = (vehicle_means(loaded.get(n), "plate_char_accuracy") for n in ("tuned", "majority"))
    shared = sorted(set(tuned) & set(baseline))
    plates = [(loaded.get(n) or {}).get("plate") or {} for n in ("tuned", "majority")]
    if not shared or not all("char_accuracy" in p for p in plates):
        return None
    wins, losses, p = sign_test_greater([tuned[v] for v in shared], [baseline[v] for v in shared])
    return {"tuned": plates[0]["char_accuracy"], "baseline": plates[1]["char_accuracy"],
            "full_tuned": plates[0].get("full_plate_accuracy"), "full_baseline": plates[1].get("full_plate_accuracy"),
            "by_position": plates[0].get("by_position") or [],
            "baseline_by_position": plates[1].get("by_position") or [],
            "vehicles": len(shared), "wins": wins, "losses": losses, "ties": len(shared) - wins - losses, "p": p}


def location_test(loaded: dict[str, dict | None]) -> dict | None:
    """The tuned model's plate location against the mean-box baseline (the majority report, whose every plate is
    the training set's mean box): both mean IoUs and a one-sided sign test over held-out vehicles, each scored
    by its mean plate IoU. A sign test, not a t-test or a bootstrap: IoU piles up at 0 and 1 (no normal
    approximation), it is exact at the demo's few dozen vehicles, and it reads like the colours' binomial test.
    Per vehicle, not per image: the frames of one vehicle are not independent draws. None without boxes."""
    tuned, baseline = vehicle_means(loaded.get("tuned")), vehicle_means(loaded.get("majority"))
    shared = sorted(set(tuned) & set(baseline))
    if not shared:
        return None
    wins, losses, p = sign_test_greater([tuned[v] for v in shared], [baseline[v] for v in shared])
    means = [((loaded.get(n) or {}).get("grounding") or {}).get("mean_iou") for n in ("tuned", "majority")]
    if None in means:
        return None
    return {"tuned": means[0], "baseline": means[1], "vehicles": len(shared), "wins": wins, "losses": losses,
            "ties": len(shared) - wins - losses, "p": p}


def _field(report: dict | None, name: str, key: str = "accuracy") -> float | None:
    if report is None:
        return None
    return ((report.get("fields") or {}).get(name) or {}).get(key)


def load_reports(reports: Path) -> dict[str, dict | None]:
    """The demo's reports by name (None where one is missing)."""
    loaded = {}
    for name, _ in REPORTS:
        path = reports / f"{name}.json"
        loaded[name] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    return loaded


def _drawn_attribute_tests(loaded: dict[str, dict | None]) -> list[tuple[str, int, int, float, float]]:
    """(field, correct, support, majority accuracy, p) for each drawn attribute the reports score: p is the chance
    that a majority guesser does as well as the tuned model (one-sided binomial test)."""
    tuned, majority = loaded.get("tuned"), loaded.get("majority")
    tests = []
    for f in VISUAL_FIELDS:
        support, correct, base = _field(tuned, f, "support"), _field(tuned, f, "correct"), _field(majority, f)
        if support and correct is not None and base is not None:
            tests.append((f, correct, support, base, binomial_tail(correct, support, base)))
    return tests


def read_drawings(reports: Path, alpha: float = 1e-3) -> tuple[list[str], list[str]]:
    """The drawn attributes the tuned model reads (it beats the majority baseline with p < ``alpha``) and those it
    does not, from the reports of a finished demo."""
    read = [f for f, *_, p in _drawn_attribute_tests(load_reports(reports)) if p < alpha]
    return read, [f for f in VISUAL_FIELDS if f not in read]


def scoreboard(reports: Path) -> str:
    """Every report side by side with the majority baseline, and for each visual field the chance that a
    majority guesser scores the tuned model's result (one-sided binomial test)."""
    loaded = load_reports(reports)
    rows = [("strict JSON", lambda r: r and r.get("json_valid_rate")),
            ("schema-valid", lambda r: r and r.get("schema_valid_rate"))]
    rows += [(f, lambda r, f=f: _field(r, f)) for f in (*VEHICLE_FIELDS, *PLATE_FIELDS) if f != PLATE_NUMBER]
    rows += [("plate chars", lambda r: r and r.get("plate_char_accuracy")),
             ("full plates", lambda r: r and (r.get("plate") or {}).get("full_plate_accuracy"))]
    widths = [14] + [13] * len(REPORTS)
    cell = lambda v: "—" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    lines = ["", "=== scoreboard (held-out images; majority = always the commonest training value)",
             "".join(h.ljust(w) for h, w in zip(["", *(label for _, label in REPORTS)], widths))]
    for title, get in rows:
        lines.append(_pad(title, widths[0]) + "".join(cell(get(loaded[n])).ljust(w)
                                                       for (n, _), w in zip(REPORTS, widths[1:])))
    if any(r and r.get("grounding") for r in loaded.values()):
        iou = lambda r: (r or {}).get("grounding", {}).get("mean_iou")  # noqa: E731
        lines.append(_pad("plate IoU", widths[0]) + "".join(
            ("—" if iou(loaded[n]) is None else f"{iou(loaded[n]):.3f}").ljust(w)
            for (n, _), w in zip(REPORTS, widths[1:])))
    for f, correct, support, base, p in _drawn_attribute_tests(loaded):
        lines.append(f"{f}: tuned {correct}/{support} vs majority {100 * base:.1f}%: "
                     f"p = {p:.1e} that a majority guesser does as well")
    reading = reading_test(loaded)
    if reading:
        positions = " / ".join(f"{100 * t:.0f}|{100 * b:.0f}" for t, b in
                               zip(reading["by_position"], reading["baseline_by_position"]))
        lines.append(f"plate chars by position, tuned|majority (%): {positions}")
        lines.append(f"plate chars: tuned {100 * reading['tuned']:.1f}% vs majority {100 * reading['baseline']:.1f}%; "
                     f"per held-out vehicle tuned better {reading['wins']}, worse {reading['losses']}, tied "
                     f"{reading['ties']} of {reading['vehicles']}: p = {reading['p']:.1e} that the majority "
                     f"does as well (one-sided sign test)")
    test = location_test(loaded)
    if test:
        lines.append(f"{PLATE_BOX}: tuned mean IoU {test['tuned']:.3f} vs {test['baseline']:.3f} for the training "
                     f"set's mean box (the majority column); per held-out vehicle tuned better {test['wins']}, worse "
                     f"{test['losses']}, tied {test['ties']} of {test['vehicles']}: p = {test['p']:.1e} that the "
                     f"mean box does as well (one-sided sign test)")
    return "\n".join(lines)


def _pad(text: str, width: int) -> str:
    import unicodedata

    shown = sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
    return text + " " * max(1, width - shown)
