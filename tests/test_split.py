"""plates.split: the vehicle split on compact arrays.

Covered elsewhere (tests/test_build.py): the split keeps vehicles whole, ignores record order (a hypothesis
property), tracks the ratio, keeps stratum ratios and is the same for `plates build` runs with other hash seeds.
Here, on the module alone: a stratified split in another interpreter, the array form against the list form, the
strata codes and the edge ratios.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from plates.errors import UserError
from plates.labels import PLATE_GROUP, VEHICLE_GROUP
from plates.split import StratumCodes, assign_val, check_stratify_field, split_by_vehicle, stratum_of, vehicle_key


def _records(n_vehicles: int) -> list[dict]:
    kinds = ["小轿车", "SUV", "挂车"]
    return [{"image": f"v{g}/{k}.jpg", "ids": [f"{g:08d}", f"car{g}"],
             "labels": {VEHICLE_GROUP: {"车辆类型": kinds[g % 3]}, PLATE_GROUP: []}}
            for g in range(n_vehicles) for k in range(1 + g % 4)]


SPLIT_IN_A_CHILD = """
import json, random, sys
from plates.split import split_by_vehicle
records = json.load(sys.stdin)
order = list(range(len(records)))
random.Random(99).shuffle(order)
shuffled = split_by_vehicle([records[i] for i in order], 0.25, 11, stratify="车辆类型")
print(json.dumps({records[i]["image"]: v for i, v in zip(order, shuffled)}))
"""


def test_the_split_is_the_same_in_another_process_and_any_order():
    """Another interpreter (another str hash seed) reading the records in another order splits them the same."""
    records = _records(60)
    here = dict(zip((r["image"] for r in records), split_by_vehicle(records, 0.25, 11, stratify="车辆类型")))
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    child = subprocess.run([sys.executable, "-c", SPLIT_IN_A_CHILD], input=json.dumps(records), env=env,
                           capture_output=True, text=True, check=True)
    assert json.loads(child.stdout) == here
    assert 0 < sum(here.values()) < len(here)
    by_vehicle: dict[str, set[bool]] = {}
    for record in records:
        by_vehicle.setdefault(record["ids"][1], set()).add(here[record["image"]])
    assert all(len(sides) == 1 for sides in by_vehicle.values()), "every frame of a vehicle on one side"


def test_assign_val_on_arrays_is_the_list_split():
    """`plates build` streams: it keeps one key and one stratum code per record and calls assign_val; that must
    give what split_by_vehicle gives for the records themselves."""
    records = _records(40)
    random.Random(3).shuffle(records)
    keys = np.array([vehicle_key(r, 5) for r in records], dtype=np.uint64)
    codes = StratumCodes()
    strata = codes.ranks(np.array([codes.code(stratum_of(r, "车辆类型")) for r in records], dtype=np.uint32))
    assert assign_val(keys, 0.3).tolist() == split_by_vehicle(records, 0.3, 5)
    assert assign_val(keys, 0.3, strata).tolist() == split_by_vehicle(records, 0.3, 5, stratify="车辆类型")
    assert split_by_vehicle(records, 0.3, 5) != split_by_vehicle(records, 0.3, 6), "the seed moves the split"


def test_vehicle_keys_for_names_that_are_not_utf8():
    """Records of files whose names are not UTF-8 (kept by os.fsdecode as surrogates) are their own vehicles."""
    a = {"image": os.fsdecode(b"\xb3\xb5.jpg")}
    b = {"image": os.fsdecode(b"\xc5\xc6.jpg")}
    assert vehicle_key(a, 0) != vehicle_key(b, 0)
    assert vehicle_key(a, 0) == vehicle_key(dict(a), 0) and vehicle_key(a, 0) != vehicle_key(a, 1)
    assert 0 <= vehicle_key(a, 0) < 1 << 64


def test_both_sides_get_a_vehicle_at_extreme_ratios():
    keys = np.array([1, 1, 1, 2, 3, 3], dtype=np.uint64)
    tiny = assign_val(keys, 0.001)
    assert tiny.tolist() == [False, False, False, True, False, False], "the smallest vehicle goes to validation"
    every = assign_val(keys, 1.0)
    assert every.tolist() == [False, False, False, True, True, True], "the largest vehicle stays in training"
    assert not assign_val(keys, 0.0).any()
    assert assign_val(np.array([7, 7], dtype=np.uint64), 0.5).tolist() == [False, False], "one vehicle: no split"
    assert assign_val(np.zeros(0, dtype=np.uint64), 0.5).tolist() == []


def test_stratum_codes_rank_values_in_sorted_order():
    codes = StratumCodes()
    met = [codes.code(v) for v in ["b", "a", "c", "a"]]
    assert met == [0, 1, 2, 1]
    assert codes.ranks(np.array(met, dtype=np.uint32)).tolist() == [1, 0, 2, 0]
    assert codes.ranks(np.zeros(0, dtype=np.uint32)).tolist() == []


def test_stratify_takes_label_fields_plates_and_keys_every_record_has():
    check_stratify_field("车辆类型", every_record_has_it=False)
    check_stratify_field("plates", every_record_has_it=False)
    check_stratify_field("format", every_record_has_it=True)
    for name, everywhere in (("format", False), ("labels", True), ("warnings", True)):
        with pytest.raises(UserError, match=rf"^--stratify '{name}': not a label field or record key;") as raised:
            check_stratify_field(name, everywhere)
        assert "\n" not in str(raised.value)
    assert stratum_of({"format": "ccpd", "labels": {}}, "format") == "ccpd"
    assert stratum_of({"labels": {PLATE_GROUP: [{"车牌颜色": "蓝色"}, {"车牌颜色": "绿色"}]}}, "车牌颜色") == "蓝色"
