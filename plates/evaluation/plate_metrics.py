"""Plate metrics as plate-recognition papers report them: full-plate accuracy, character accuracy, length
accuracy, mean normalised edit distance and accuracy per character position, overall and per plate type.

They are computed from the (reference key, predicted key) pairs the scorer records for every known reference
plate number, so they cost nothing in the scoring loop beyond counting pairs.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Any

from rapidfuzz.distance import Levenshtein

from plates.evaluation.common import MISSING
from plates.labels import PLATE_COLOUR, PLATE_COUNTRY, PLATE_LAYERS, PLATE_NUMBER, PLATE_USAGE, UNKNOWN

PLATE_TYPES = ("blue", "green_new_energy", "yellow_single", "yellow_double", "trailer", "police", "embassy",
               "hk_macao", "foreign", "other")


def plate_type(plate: dict[str, str]) -> str:
    """The literature's plate type of a normalised reference plate, from its labels (usage, colour, layers,
    country) and the shape of its number: trailer (挂), police (警), embassy/consulate (使/领), Hong Kong/Macao
    (港/澳), foreign (country other than 中国), green 8-character new-energy, yellow single/double layer, blue
    7-character; anything else is ``other``."""
    number = plate.get(PLATE_NUMBER, UNKNOWN)
    number = "" if number in (UNKNOWN, MISSING) else number
    country, colour = plate.get(PLATE_COUNTRY), plate.get(PLATE_COLOUR)
    usage, layers = plate.get(PLATE_USAGE), plate.get(PLATE_LAYERS)
    if country not in (None, "中国", UNKNOWN, MISSING):
        return "foreign"
    last = number[-1:]
    if usage == "挂车车牌" or last == "挂":
        return "trailer"
    if usage == "警用车牌" or last == "警":
        return "police"
    if usage == "使领馆车牌" or number[:1] == "使" or last in ("使", "领"):
        return "embassy"
    if usage == "港澳车牌" or last in ("港", "澳"):
        return "hk_macao"
    if usage == "新能源车牌" or colour in ("绿色", "黄绿色") or len(number) == 8:
        return "green_new_energy"
    if colour == "黄色":
        return "yellow_double" if layers == "双层车牌" else "yellow_single"
    if colour == "蓝色":
        return "blue"
    return "other"


@lru_cache(maxsize=65536)
def number_stats(ref: str, pred: str) -> tuple[float, float, float, float, tuple[bool, ...]]:
    """(full plate right, character accuracy, length right, edit distance / reference length, per-position
    correctness) of one plate number. Character accuracy is 1 - rapidfuzz's normalised Levenshtein distance
    (the report's ``plate_char_accuracy``); a missing or unknown prediction is all wrong, at full distance."""
    if pred == ref:
        return 1.0, 1.0, 1.0, 0.0, (True,) * len(ref)
    if pred in (UNKNOWN, MISSING, ""):
        return 0.0, 0.0, 0.0, 1.0, (False,) * len(ref)
    positions = tuple(i < len(pred) and pred[i] == c for i, c in enumerate(ref))
    return (0.0, 1.0 - Levenshtein.normalized_distance(ref, pred), float(len(pred) == len(ref)),
            Levenshtein.distance(ref, pred) / max(1, len(ref)), positions)


def _summary(right: Counter, wrong: list[tuple[str, str, int]]) -> dict[str, Any]:
    """Figures of one group of plate numbers: ``right`` counts the numbers read right by length, ``wrong`` holds
    (reference, prediction, count) of the others."""
    n = sum(right.values()) + sum(count for _, _, count in wrong)
    totals = [0.0, 0.0, 0.0, 0.0]
    position_correct: list[int] = []
    position_support: list[int] = []
    for length, count in right.items():
        for k in range(3):
            totals[k] += count
        while len(position_support) < length:
            position_support.append(0)
            position_correct.append(0)
        for i in range(length):
            position_support[i] += count
            position_correct[i] += count
    for ref, pred, count in wrong:
        stats = number_stats(ref, pred)
        for k in range(4):
            totals[k] += stats[k] * count
        for i, ok in enumerate(stats[4]):
            if i == len(position_support):
                position_support.append(0)
                position_correct.append(0)
            position_support[i] += count
            position_correct[i] += ok * count
    rate = (lambda x: x / n) if n else (lambda x: None)
    return {"n": n, "full_plate_accuracy": rate(totals[0]), "char_accuracy": rate(totals[1]),
            "length_accuracy": rate(totals[2]), "mean_edit_distance": rate(totals[3]),
            "by_position": [c / s for c, s in zip(position_correct, position_support)],
            "position_support": position_support}


def plate_summary(right: Counter, wrong: dict[tuple[str, str, str], int]) -> dict[str, Any]:
    """The report's ``plate`` section from the plate numbers read right, counted by (plate type, length) (only
    their length matters), and those read wrong, counted by (plate type, reference key, predicted key)."""
    right_by_type: dict[str, Counter] = {}
    for (kind, length), count in right.items():
        lengths = right_by_type.get(kind)
        if lengths is None:
            lengths = right_by_type[kind] = Counter()
        lengths[length] += count
    wrong_by_type: dict[str, list[tuple[str, str, int]]] = {}
    for (kind, ref, pred), count in wrong.items():
        wrong_by_type.setdefault(kind, []).append((ref, pred, count))
    all_right: Counter = Counter()
    for lengths in right_by_type.values():
        all_right.update(lengths)
    out = _summary(all_right, [entry for entries in wrong_by_type.values() for entry in entries])
    out["by_type"] = {kind: _summary(right_by_type.get(kind, Counter()), wrong_by_type.get(kind, []))
                      for kind in PLATE_TYPES if kind in right_by_type or kind in wrong_by_type}
    return out
