"""The first pass of `plates build`: read the records once, keep a few numbers per record, decide the split.

`plates build` streams: this pass checks each record (excluded by a warning code, image missing), keys its
image path (a 128-bit hash of the absolute path) and its answer (64 bits), and its vehicle (:func:`vehicle_key`)
in flat arrays; duplicates and the train/val split are then decided on those arrays. The second pass
(`plates.build`) reads the records again and writes each sample as it goes. Memory is a few tens of bytes per
record instead of the records themselves, so the dataset size does not decide whether a build fits.
"""

from __future__ import annotations

import hashlib
import json
import os
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from plates.errors import UserError
from plates.io import progress
from plates.labels import FIELDS, answer_from_labels
from plates.records import resolve_image
from plates.split import StratumCodes, assign_val, check_stratify_field, stratum_of, vehicle_key

# status of each input record, by position
EXCLUDED, MISSING, CANDIDATE = 0, 1, 2
PROBLEM_EXAMPLES = 20

RecordSource = Callable[[], Iterable[dict[str, Any]]]


def absolute_image(record: dict[str, Any], records_file: str | Path | None) -> str:
    return os.path.normpath(os.path.abspath(resolve_image(record, records_file)))


def path_key(absolute: str) -> bytes:
    return hashlib.blake2b(absolute.encode("utf-8", "surrogateescape"), digest_size=16).digest()


def answer_key(labels: dict[str, Any]) -> int:
    text = json.dumps(answer_from_labels(labels), ensure_ascii=False)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


@dataclass
class Problems:
    """Counts per problem and the first few examples of each, in the order problems were first met."""
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    first_seen: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, example: str, position: int, count: bool = True) -> None:
        if count:
            self.counts[key] += 1
        self.first_seen.setdefault(key, position)
        shown = self.examples.setdefault(key, [])
        if len(shown) < PROBLEM_EXAMPLES:
            shown.append(example)

    def ordered_examples(self) -> dict[str, list[str]]:
        return {k: self.examples[k] for k in sorted(self.examples, key=self.first_seen.__getitem__)}


@dataclass
class BuildPlan:
    """What the second pass needs, per input position: ``status`` (EXCLUDED / MISSING / CANDIDATE) and, per
    candidate (in input order), its path key, whether it is the first with that path (kept) and its side."""
    read: int
    status: Any
    keys: Any
    first: Any
    is_val: Any
    conflicting: Any
    problems: Problems
    vehicles: dict[str, int]
    description_hits: dict[str, list[tuple[int, str]]]
    absolute_hits: dict[str, list[tuple[int, str]]]

    @property
    def used(self) -> int:
        return int(self.first.sum())


def scan_records(records: RecordSource, *, seed: int, val_ratio: float, stratify: str | None = None,
                 exclude_warnings: Iterable[str] = (), records_file: str | Path | None = None,
                 description_images: Iterable[str] = (), source: str | None = None) -> BuildPlan:
    """Pass one over ``records()``. ``description_images`` are the ``image`` values of teacher lines: the
    candidates they name are remembered (that memory follows the descriptions, not the records)."""
    import numpy as np

    excluded = set(exclude_warnings)
    wanted = set(description_images)
    wanted_absolute = {os.path.normpath(i) for i in wanted if os.path.isabs(i)}
    problems = Problems()
    status = array("B")
    keys = bytearray()
    answers, vehicles, strata = array("Q"), array("Q"), array("I")
    has_field = array("B")
    codes = StratumCodes()
    field_is_label = stratify in FIELDS or stratify == "plates"
    hits: dict[str, list[tuple[int, str]]] = defaultdict(list)
    absolute_hits: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for position, record in enumerate(progress(records(), desc="scan records", unit="rec")):
        codes_here = {str(w).split(":", 1)[0].strip() for w in record.get("warnings") or []}
        if excluded & codes_here:
            status.append(EXCLUDED)
            problems.add("excluded_by_warning", record["image"], position)
            continue
        absolute = absolute_image(record, records_file)
        if not os.path.isfile(absolute):
            status.append(MISSING)
            problems.add("missing_image", absolute, position)
            continue
        candidate = len(answers)
        status.append(CANDIDATE)
        keys += path_key(absolute)
        answers.append(answer_key(record["labels"]))
        vehicles.append(vehicle_key(record, seed))
        if stratify:
            strata.append(codes.code(stratum_of(record, stratify)))
            if not field_is_label:
                has_field.append(stratify in record)
        if wanted and record["image"] in wanted:
            hits[record["image"]].append((candidate, record["image"]))
        if wanted_absolute and absolute in wanted_absolute:
            absolute_hits[absolute].append((candidate, record["image"]))
    read = len(status)
    if read == 0:
        raise UserError(f"{source + ': ' if source else ''}no records")
    # views on the arrays filled above (no copies)
    status_array = np.frombuffer(status, dtype=np.uint8)
    key_array = np.frombuffer(keys, dtype="S16") if keys else np.zeros(0, dtype="S16")
    answer_array = np.frombuffer(answers, dtype=np.uint64) if answers else np.zeros(0, dtype=np.uint64)
    first, conflicting = first_occurrences(key_array, answer_array)
    del answer_array, answers
    counts = problems.counts
    counts["read"] = read
    counts["used"] = int(first.sum())
    duplicates = len(first) - counts["used"]
    if duplicates:
        counts["duplicate_image"] = duplicates
        if conflicting.any():
            counts["conflicting_duplicate"] = int(conflicting.sum())
    if not counts["used"]:
        detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()) if k not in ("read", "used") and v)
        raise UserError(f"no usable records ({read} read{'; ' + detail if detail else ''})")
    kept_vehicles = np.frombuffer(vehicles, dtype=np.uint64)[first]
    kept_strata = None
    if stratify:
        check_stratify_field(stratify, field_is_label or bool(np.frombuffer(has_field, dtype=np.uint8)[first].all()))
        kept_strata = codes.ranks(np.frombuffer(strata, dtype=np.uint32)[first])
    kept_is_val = assign_val(kept_vehicles, val_ratio, kept_strata)
    if kept_is_val.all():
        raise UserError("every record landed in validation; lower --val-ratio")
    is_val = np.zeros(len(first), dtype=bool)
    is_val[first] = kept_is_val
    side_vehicles = {"val": len(np.unique(kept_vehicles[kept_is_val])),
                     "train": len(np.unique(kept_vehicles[~kept_is_val]))}
    kept_hits = {image: [(c, img) for c, img in found if first[c]] for image, found in hits.items()}
    kept_absolute = {path: [(c, img) for c, img in found if first[c]] for path, found in absolute_hits.items()}
    return BuildPlan(read=read, status=status_array, keys=key_array, first=first, is_val=is_val,
                     conflicting=conflicting, problems=problems, vehicles=side_vehicles,
                     description_hits={k: v for k, v in kept_hits.items() if v},
                     absolute_hits={k: v for k, v in kept_absolute.items() if v})


def first_occurrences(keys: Any, answers: Any) -> tuple[Any, Any]:
    """(first, conflicting) per candidate: whether it is the first with its path key, and, for a later one,
    whether its answer differs from the first's. A stable sort of the keys and one comparison of neighbours:
    about 25 bytes per candidate at the peak (``np.unique`` with an inverse took twice that)."""
    import numpy as np

    n = len(keys)
    first = np.ones(n, dtype=bool)
    conflicting = np.zeros(n, dtype=bool)
    if n < 2:
        return first, conflicting
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    repeat = np.zeros(n, dtype=bool)
    repeat[1:] = ordered[1:] == ordered[:-1]
    del ordered
    if repeat.any():
        run_start = np.maximum.accumulate(np.where(repeat, 0, np.arange(n)))
        later, earliest = order[repeat], order[run_start[repeat]]
        first[later] = False
        conflicting[later] = answers[later] != answers[earliest]
    return first, conflicting


def walk_plan(plan: BuildPlan, records: RecordSource,
              records_file: str | Path | None) -> Iterator[tuple[int, dict[str, Any], bool]]:
    """Pass two: ``(candidate, record, is_val)`` for every kept record, in input order. Duplicates are noted
    as problems on the way; a records file that changed since pass one is an error, not a wrong dataset."""
    candidate = -1
    position = -1
    changed = False
    for position, record in enumerate(progress(records(), total=plan.read, desc="write samples", unit="rec")):
        if position >= plan.read:
            changed = True
            break
        if plan.status[position] != CANDIDATE:
            continue
        candidate += 1
        absolute = absolute_image(record, records_file)
        if candidate >= len(plan.keys) or path_key(absolute) != plan.keys[candidate:candidate + 1].tobytes():
            changed = True
            break
        if not plan.first[candidate]:
            plan.problems.add("duplicate_image", absolute, position, count=False)
            if plan.conflicting[candidate]:
                plan.problems.add("conflicting_duplicate", absolute, position, count=False)
            continue
        yield candidate, record, bool(plan.is_val[candidate])
    if changed or position + 1 != plan.read or candidate + 1 != len(plan.keys):
        raise UserError("the records changed while `plates build` read them (a second pass found other lines); "
                        "run it again on a file that is not being written")
