"""Plate alignment: which predicted plate answers which reference plate when an image has several."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz

from plates.evaluation.common import MISSING, OTHER_PLATE_FIELDS as _OTHER_PLATE_FIELDS
from plates.labels import PLATE_NUMBER, UNKNOWN


@dataclass(frozen=True)
class Alignment:
    """Which reference plate each predicted plate answers: ``pairs`` of (reference index, predicted index),
    reference plates left ``missing`` and predicted plates left ``extra``."""

    pairs: tuple[tuple[int, int], ...]
    missing: tuple[int, ...]
    extra: tuple[int, ...]


def _known(value: Any) -> bool:
    return isinstance(value, str) and value not in (UNKNOWN, MISSING, "")


def plate_similarity(reference: dict[str, Any], predicted: dict[str, Any]) -> tuple[float, int]:
    """How alike two normalised plates are: (plate-number similarity 0-100 by rapidfuzz ratio of the plate
    keys, 0 when either number is unknown; how many of the other five fields agree). Compared as a pair, so
    the number decides and the other fields only break ties."""
    ref_number, pred_number = reference.get(PLATE_NUMBER), predicted.get(PLATE_NUMBER)
    number = fuzz.ratio(ref_number, pred_number) if _known(ref_number) and _known(pred_number) else 0.0
    agree = sum(1 for f in _OTHER_PLATE_FIELDS if _known(reference.get(f)) and reference.get(f) == predicted.get(f))
    return number, agree


def align_plates(references: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> Alignment:
    """Match predicted plates to reference plates one-to-one: greedily take the most similar remaining pair
    (:func:`plate_similarity`; ties go to the earlier reference, then the earlier prediction) until one side
    runs out. Every plate is paired when the counts agree, so two misread plates are still scored field by
    field; the surplus becomes missing (reference) or extra (predicted) plates."""
    n_ref, n_pred = len(references), len(predictions)
    if n_ref == 1 and n_pred == 1:
        return Alignment(((0, 0),), (), ())
    if not n_ref or not n_pred:
        return Alignment((), tuple(range(n_ref)), tuple(range(n_pred)))
    candidates = []
    for i, reference in enumerate(references):
        for j, predicted in enumerate(predictions):
            number, agree = plate_similarity(reference, predicted)
            candidates.append((-number, -agree, i, j))
    candidates.sort()
    used_ref: set[int] = set()
    used_pred: set[int] = set()
    pairs = []
    for _, _, i, j in candidates:
        if i not in used_ref and j not in used_pred:
            used_ref.add(i)
            used_pred.add(j)
            pairs.append((i, j))
    return Alignment(
        tuple(sorted(pairs)),
        tuple(i for i in range(n_ref) if i not in used_ref),
        tuple(j for j in range(n_pred) if j not in used_pred),
    )
