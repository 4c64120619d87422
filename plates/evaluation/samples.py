"""Per-answer records: who each answer is (a sample id and the vehicle it shows) and how it contributed to every
registered metric. Bootstrap intervals resample them by vehicle; `plates compare` pairs two reports through them.

In a report they sit under ``"samples"`` as columns: ``{"id": [...], "vehicle": [...], "metrics": {name:
{"num": [...], "den": [...]}}}`` (``den`` is left out when it is 1 for every answer).
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from plates.evaluation.items import Item
from plates.evaluation.metrics import METRICS, Metric
from plates.evaluation.scorer import Outcome
from plates.labels import PLATE_NUMBER

_TRACK_ID = re.compile(r"(?<![A-Za-z0-9])car\d+(?![0-9])", re.IGNORECASE)


def vehicle_of(item: Item) -> str:
    """The vehicle an answer shows, for resampling whole vehicles: the record's ``carNNNN`` track id, else one
    found in the image's name (or its folder's: ``car0012/3.jpg``), else the image itself, else the results line."""
    if item.vehicle:
        return item.vehicle
    if item.image:
        found = (_TRACK_ID.findall(os.path.basename(item.image))
                 or _TRACK_ID.findall(os.path.basename(os.path.dirname(item.image))))
        return found[0].lower() if found else item.image
    return f"line {item.line}"


class SampleLog:
    """Collects one row per answer while :func:`plates.evaluation.report.evaluate` scores them."""

    def __init__(self, metrics: list[Metric] | None = None):
        self.metrics = list(metrics if metrics is not None else METRICS.values())
        # field accuracies read one per-answer count of the pairs instead of each scanning them
        self._plan = [(m.field if m.field is not None and m.field != PLATE_NUMBER else None, m.per_answer)
                      for m in self.metrics]
        self.ids: list[str] = []
        self.vehicles: list[str] = []
        self._seen: dict[str, int] = {}
        self._rows: list[tuple[float, ...]] = []

    def add(self, item: Item, outcome: Outcome) -> None:
        base = os.path.normpath(item.image) if item.image else f"line {item.line}"
        count = self._seen.get(base, 0)
        self._seen[base] = count + 1
        self.ids.append(base if not count else f"{base}#{count + 1}")
        self.vehicles.append(vehicle_of(item))
        support: dict[str, int] = {}
        correct: dict[str, int] = {}
        for f, r, p in outcome.pairs:
            support[f] = support.get(f, 0) + 1
            if r == p:
                correct[f] = correct.get(f, 0) + 1
        row: list[float] = []
        for field, per_answer in self._plan:
            if field is None:
                row.extend(per_answer(outcome))
            else:
                row.append(correct.get(field, 0))
                row.append(support.get(field, 0))
        self._rows.append(tuple(row))

    def __len__(self) -> int:
        return len(self.ids)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(numerators, denominators), each answers x metrics."""
        table = np.asarray(self._rows, dtype=np.float64).reshape(len(self._rows), 2 * len(self.metrics))
        return table[:, 0::2], table[:, 1::2]

    def to_json(self) -> dict[str, Any]:
        num, den = self.arrays()
        columns = {}
        for k, metric in enumerate(self.metrics):
            column = {"num": _compact(num[:, k])}
            if not np.all(den[:, k] == 1):
                column["den"] = _compact(den[:, k])
            columns[metric.name] = column
        return {"id": self.ids, "vehicle": self.vehicles, "metrics": columns}


def _compact(values: np.ndarray) -> list:
    if np.all(values == np.round(values)):
        return values.astype(np.int64).tolist()
    return np.round(values, 6).tolist()


Columns = dict[str, tuple[np.ndarray, np.ndarray]]


def read_samples(report: dict[str, Any]) -> tuple[list[str], list[str], Columns] | None:
    """(ids, vehicles, {metric: (num, den)}) from a report's ``samples``; None when it has none (older reports) or
    they are malformed."""
    samples = report.get("samples")
    if not isinstance(samples, dict):
        return None
    ids, vehicles, metrics = samples.get("id"), samples.get("vehicle"), samples.get("metrics")
    if not isinstance(ids, list) or not isinstance(vehicles, list) or not isinstance(metrics, dict) \
            or len(ids) != len(vehicles):
        return None
    out = {}
    for name, column in metrics.items():
        try:
            num = np.asarray(column["num"], dtype=np.float64)
            den = np.asarray(column["den"], dtype=np.float64) if "den" in column else np.ones_like(num)
        except (KeyError, TypeError, ValueError):
            continue
        if num.shape == den.shape == (len(ids),):
            out[name] = (num, den)
    return [str(i) for i in ids], [str(v) for v in vehicles], out
