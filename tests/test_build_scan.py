"""plates.build_scan: `plates build`'s first pass on a few numbers per record, and the second pass's walk.

Covered elsewhere (tests/test_build.py, through `plates build` and ``build_dataset``): duplicates keep the first
and count conflicts, records changed between the passes are refused, missing images and excluded warnings are
counted. Here: the arrays themselves against a plain reference, the plan's statuses and hits, and its refusals.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from plates.build_scan import CANDIDATE, EXCLUDED, MISSING, PROBLEM_EXAMPLES, Problems, first_occurrences, \
    scan_records, walk_plan
from plates.errors import UserError
from plates.synth import random_labels


@settings(max_examples=80, deadline=None)
@given(pairs=st.lists(st.tuples(st.sampled_from(b"abcd"), st.integers(0, 2)), max_size=30))
def test_first_occurrences_match_a_plain_reference(pairs):
    """The first record with a path is kept; a later one conflicts when its answer differs from the first's."""
    keys = np.array([bytes([k]) * 16 for k, _ in pairs], dtype="S16")
    answers = np.array([a for _, a in pairs], dtype=np.uint64)
    first, conflicting = first_occurrences(keys, answers)
    seen: dict[bytes, int] = {}
    expected_first, expected_conflicting = [], []
    for key, answer in pairs:
        expected_first.append(key not in seen)
        expected_conflicting.append(key in seen and seen[key] != answer)
        seen.setdefault(key, answer)
    assert first.tolist() == expected_first and conflicting.tolist() == expected_conflicting


def _dump(tmp_path, n: int) -> list[dict]:
    rng = random.Random(4)
    root = tmp_path / "dump 车"
    root.mkdir(parents=True)
    records = []
    for i in range(n):
        name = f"car{i // 2}: frame {i}.png"
        Image.new("RGB", (16, 12), (i * 20 % 256, 40, 90)).save(root / name)
        records.append({"image": name, "root": str(root), "ids": [f"car{i // 2}"],
                        "labels": random_labels(rng, plates=1), "warnings": []})
    return records


def test_a_plan_marks_each_record_and_walks_the_kept_ones_in_order(tmp_path):
    records = _dump(tmp_path, 8)
    records[1]["warnings"] = ["plate_rule: odd plate"]
    records[2] = {**records[2], "image": "gone.png"}
    duplicate = {**records[0], "image": "./" + records[0]["image"]}
    conflicting = {**records[3], "labels": random_labels(random.Random(99), plates=0)}
    rows = [*records, duplicate, conflicting]
    plan = scan_records(lambda: rows, seed=1, val_ratio=0.3, exclude_warnings=["plate_rule"],
                        description_images=[records[4]["image"], str(tmp_path / "dump 车" / records[5]["image"])])
    assert plan.status.tolist() == [CANDIDATE, EXCLUDED, MISSING, *[CANDIDATE] * 5, CANDIDATE, CANDIDATE]
    assert plan.first.tolist() == [True] * 6 + [False, False] and plan.conflicting.tolist()[-2:] == [False, True]
    assert plan.read == 10 and plan.used == 6
    assert list(plan.problems.ordered_examples()) == ["excluded_by_warning", "missing_image"]
    assert plan.problems.counts["duplicate_image"] == 2 and plan.problems.counts["conflicting_duplicate"] == 1
    assert list(plan.description_hits) == [records[4]["image"]] and len(plan.absolute_hits) == 1
    walked = list(walk_plan(plan, lambda: rows, None))
    assert [record["image"] for _, record, _ in walked] == [records[i]["image"] for i in (0, 3, 4, 5, 6, 7)]
    sides = {record["ids"][0]: set() for _, record, _ in walked}
    for _, record, is_val in walked:
        sides[record["ids"][0]].add(is_val)
    assert all(len(s) == 1 for s in sides.values()), "frames of one vehicle stay together"
    assert {True, False} == {v for s in sides.values() for v in s}
    assert list(plan.problems.ordered_examples()) == ["excluded_by_warning", "missing_image", "duplicate_image",
                                                      "conflicting_duplicate"], "the walk notes the duplicates"


def test_a_second_pass_over_other_records_is_refused(tmp_path):
    records = _dump(tmp_path, 4)
    plan = scan_records(lambda: records, seed=0, val_ratio=0.5)
    swapped = [records[0], records[2], records[1], records[3]]
    with pytest.raises(UserError, match="the records changed while `plates build` read them"):
        list(walk_plan(plan, lambda: swapped, None))


def test_nothing_usable_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match=r"^records\.jsonl: no records$"):
        scan_records(lambda: [], seed=0, val_ratio=0.1, source="records.jsonl")
    gone = [{"image": f"gone {i}.png", "root": str(tmp_path), "labels": random_labels(random.Random(i))}
            for i in range(3)]
    with pytest.raises(UserError) as raised:
        scan_records(lambda: gone, seed=0, val_ratio=0.1)
    assert str(raised.value) == "no usable records (3 read; missing_image: 3)"
    one_vehicle = _dump(tmp_path / "one", 2)
    with pytest.raises(UserError, match="every record landed in validation; lower --val-ratio"):
        scan_records(lambda: one_vehicle, seed=0, val_ratio=1.0)


def test_problems_keep_a_few_examples_in_the_order_met():
    problems = Problems()
    for i in range(PROBLEM_EXAMPLES + 5):
        problems.add("missing_image", f"m{i}", position=10 + i)
    problems.add("excluded_by_warning", "e0", position=3)
    problems.add("duplicate_image", "d0", position=50, count=False)
    assert problems.counts == {"missing_image": PROBLEM_EXAMPLES + 5, "excluded_by_warning": 1}
    ordered = problems.ordered_examples()
    assert list(ordered) == ["excluded_by_warning", "missing_image", "duplicate_image"]
    assert ordered["missing_image"] == [f"m{i}" for i in range(PROBLEM_EXAMPLES)]
