"""The train/validation split of `plates build`: whole vehicles on one side, deterministic, optionally stratified.

Frames of one vehicle (the seed's ``carNNNN`` track id) are near-duplicates: if they landed on both sides the
validation score would measure memory, not reading. The split therefore assigns whole vehicle groups, from a
seeded shuffle of their sorted ids so that input order never changes it.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any

from plates.errors import UserError
from plates.labels import FIELDS, PLATE_FIELDS, PLATE_GROUP, UNKNOWN, VEHICLE_FIELDS, VEHICLE_GROUP
from plates.records import vehicle_id

NO_PLATE = "无车牌"


def stratum_of(record: dict[str, Any], field_name: str) -> str:
    """A record's value for ``--stratify``: a label field (plate fields use the first plate, ``无车牌`` when
    there is none), ``plates`` (number of plates) or a top-level record key such as ``format``."""
    labels = record.get("labels") or {}
    if field_name in VEHICLE_FIELDS:
        return str((labels.get(VEHICLE_GROUP) or {}).get(field_name, UNKNOWN))
    if field_name in PLATE_FIELDS:
        plates = labels.get(PLATE_GROUP) or []
        return str(plates[0].get(field_name, UNKNOWN)) if plates else NO_PLATE
    if field_name == "plates":
        return str(len(labels.get(PLATE_GROUP) or []))
    return str(record.get(field_name, UNKNOWN))


def check_stratify_field(field_name: str, records: list[dict[str, Any]]) -> None:
    if field_name in FIELDS or field_name == "plates":
        return
    if records and all(field_name in r for r in records) and field_name not in ("labels", "ids", "warnings"):
        return
    raise UserError(f"--stratify {field_name!r}: not a label field or record key; "
                    f"use one of {', '.join(FIELDS)}, plates, format")


def split_by_vehicle(records: list[dict[str, Any]], val_ratio: float, seed: int,
                     stratify: str | None = None) -> list[bool]:
    """``is_val`` per record. Whole vehicle groups are assigned, so no vehicle id is on both sides.

    Groups are shuffled by ``seed`` (from their sorted ids, so input order does not matter) and, within each
    stratum (a group's majority value of ``stratify``), taken into validation while that moves the stratum's
    validation count closer to ``val_ratio`` of its records. When ``val_ratio > 0`` and there are at least two
    vehicles, both sides get at least one."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        groups[vehicle_id(record)].append(index)
    strata: dict[str, list[str]] = defaultdict(list)
    for gid in sorted(groups):
        if stratify:
            values = Counter(stratum_of(records[i], stratify) for i in groups[gid])
            key = min(values, key=lambda v: (-values[v], v))
        else:
            key = ""
        strata[key].append(gid)
    rng = random.Random(seed)
    val_groups: set[str] = set()
    for key in sorted(strata):
        gids = strata[key]
        rng.shuffle(gids)
        target = val_ratio * sum(len(groups[g]) for g in gids)
        taken = 0
        for gid in gids:
            size = len(groups[gid])
            if abs(taken + size - target) < abs(taken - target):
                val_groups.add(gid)
                taken += size
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    if val_ratio > 0 and len(groups) >= 2:
        if not val_groups:
            val_groups.add(min(order, key=lambda g: len(groups[g])))
        if len(val_groups) == len(groups):
            val_groups.discard(max(order, key=lambda g: len(groups[g])))
    is_val = [False] * len(records)
    for gid in val_groups:
        for index in groups[gid]:
            is_val[index] = True
    return is_val
