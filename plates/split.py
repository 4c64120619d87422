"""The train/validation split of `plates build`: whole vehicles on one side, deterministic, optionally stratified.

Frames of one vehicle (the seed's ``carNNNN`` track id) are near-duplicates: if they landed on both sides the
validation score would measure memory, not reading. The split therefore assigns whole vehicle groups, walked in
the order of a seeded stable hash of their ids, so that input order never changes it and every machine gets the
same split. It works on compact arrays (one key and one stratum number per record), so `plates build` can
stream its records instead of holding them.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from plates.errors import UserError
from plates.labels import FIELDS, NO_PLATE, PLATE_FIELDS, PLATE_GROUP, UNKNOWN, VEHICLE_FIELDS, VEHICLE_GROUP
from plates.records import vehicle_id



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


def check_stratify_field(field_name: str, every_record_has_it: bool) -> None:
    """``--stratify`` takes a label field, ``plates``, or a top-level key that every (kept) record has."""
    if field_name in FIELDS or field_name == "plates":
        return
    if every_record_has_it and field_name not in ("labels", "ids", "warnings"):
        return
    raise UserError(f"--stratify {field_name!r}: not a label field or record key; "
                    f"use one of {', '.join(FIELDS)}, plates, format")


def vehicle_key(record: dict[str, Any], seed: int) -> int:
    """A 64-bit stable hash of ``seed`` and the record's vehicle id (blake2b, so the same on every machine and
    Python version). It names the vehicle's group and places it in the seeded order the split walks."""
    data = f"{seed}\0{vehicle_id(record)}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def split_by_vehicle(records: list[dict[str, Any]], val_ratio: float, seed: int,
                     stratify: str | None = None) -> list[bool]:
    """``is_val`` per record (see :func:`assign_val`); the list form of what `plates build` does in two passes."""
    import numpy as np

    keys = np.fromiter((vehicle_key(r, seed) for r in records), dtype=np.uint64, count=len(records))
    strata = None
    if stratify:
        codes = StratumCodes()
        strata = codes.ranks(np.array([codes.code(stratum_of(r, stratify)) for r in records], dtype=np.uint32))
    return assign_val(keys, val_ratio, strata).tolist()


class StratumCodes:
    """Small integer codes for stratum values, handed out as values are met; ``ranks`` turns codes into the
    values' sorted order so ties between strata break on the value, as they always have."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}

    def code(self, value: str) -> int:
        return self.values.setdefault(value, len(self.values))

    def ranks(self, codes: np.ndarray) -> np.ndarray:
        import numpy as np

        order = sorted(self.values, key=self.values.__getitem__)
        rank = np.empty(len(order), dtype=np.uint32)
        for r, value in enumerate(sorted(order)):
            rank[self.values[value]] = r
        return rank[codes] if len(codes) else codes


def assign_val(vehicle_keys: np.ndarray, val_ratio: float, strata: np.ndarray | None = None) -> np.ndarray:
    """``is_val`` per record from compact arrays: its vehicle key (:func:`vehicle_key`) and, optionally, its
    stratum rank. Whole vehicle groups are assigned, so no vehicle is on both sides.

    Groups are walked in the order of their seeded hash (input order never matters) and, within each stratum
    (a group's majority value, ties to the smaller value), taken into validation while that moves the
    stratum's validation count closer to ``val_ratio`` of its records. When ``val_ratio > 0`` and there are
    at least two vehicles, both sides get at least one. Memory: a few arrays of one number per record."""
    import numpy as np

    groups, inverse = np.unique(vehicle_keys, return_inverse=True)
    inverse = inverse.reshape(-1)
    sizes = np.bincount(inverse, minlength=len(groups))
    if strata is not None and len(groups):
        width = int(strata.max()) + 1
        pairs, counts = np.unique(inverse.astype(np.int64) * width + strata, return_counts=True)
        pair_group, pair_stratum = pairs // width, pairs % width
        order = np.lexsort((pair_stratum, -counts, pair_group))
        first = np.ones(len(order), dtype=bool)
        first[1:] = pair_group[order][1:] != pair_group[order][:-1]
        group_stratum = np.empty(len(groups), dtype=np.int64)
        group_stratum[pair_group[order][first]] = pair_stratum[order][first]
    else:
        group_stratum = np.zeros(len(groups), dtype=np.int64)
    val_group = np.zeros(len(groups), dtype=bool)
    for stratum in np.unique(group_stratum):
        members = np.flatnonzero(group_stratum == stratum)
        member_sizes = sizes[members]
        target = val_ratio * int(member_sizes.sum())
        taken = 0
        for group, size in zip(members.tolist(), member_sizes.tolist()):
            if taken >= target:
                break
            if abs(taken + size - target) < abs(taken - target):
                val_group[group] = True
                taken += size
    if val_ratio > 0 and len(groups) >= 2:
        if not val_group.any():
            val_group[int(np.argmin(sizes))] = True
        if val_group.all():
            val_group[int(np.argmax(sizes))] = False
    return val_group[inverse]
