"""Per-answer records: who each answer is (a sample id and the vehicle it shows) and how it contributed to every
registered metric. Bootstrap intervals resample them by vehicle; `plates compare` pairs two reports through them.

In a report they sit under ``"samples"`` as columns: ``{"id": [...], "vehicle": [...], "metrics": {name:
{"num": [...], "den": [...]}}}`` (``den`` is left out when it is 1 for every answer).
"""

from __future__ import annotations

import json
import os
import re
import weakref
from array import array
from collections.abc import Mapping
from typing import Any, Iterable, Iterator, TextIO

import numpy as np

from plates.evaluation.compact import IntMap, Rows, Spool
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
    """Collects one row per answer while :func:`plates.evaluation.report.evaluate` scores them. Ids, vehicles
    and the per-metric numbers go to temporary files (:mod:`plates.evaluation.compact`); memory keeps a 64-bit
    key per answer (its vehicle) and one per distinct id, so a million answers fit."""

    def __init__(self, metrics: list[Metric] | None = None):
        self.metrics = list(metrics if metrics is not None else METRICS.values())
        # field accuracies read one per-answer count of the pairs instead of each scanning them
        self._plan = [(m.field if m.field is not None and m.field != PLATE_NUMBER else None, m.per_answer)
                      for m in self.metrics]
        self.ids = Spool()
        self.vehicle_names = Spool()
        self._vehicle_keys = array("q")
        self._seen = IntMap()
        self._repeats: dict[int, int] = {}
        self._rows = Rows(2 * len(self.metrics))
        self.close = weakref.finalize(self, _close_all, (self.ids.file, self.vehicle_names.file, self._rows.file))

    def add(self, item: Item, outcome: Outcome) -> None:
        base = os.path.normpath(item.image) if item.image else f"line {item.line}"
        key = hash(base)
        if self._seen.setdefault(key, 1) is None:
            self.ids.append(base)
        else:
            count = self._repeats.get(key, 1) + 1
            self._repeats[key] = count
            self.ids.append(f"{base}#{count}")
        vehicle = vehicle_of(item)
        self.vehicle_names.append(vehicle)
        self._vehicle_keys.append(hash(vehicle))
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

    @property
    def vehicles(self) -> list[str]:
        return list(self.vehicle_names)

    def clusters(self) -> np.ndarray:
        """Each answer's vehicle as a cluster number, numbered in first-seen order."""
        if not len(self._vehicle_keys):
            return np.zeros(0, dtype=np.int64)
        keys = np.frombuffer(self._vehicle_keys, dtype=np.int64)
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first)] = np.arange(len(first))
        return rank[inverse.ravel()]

    def cluster_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """(numerators, denominators) summed per vehicle (vehicles x metrics, first-seen order), read from the
        spooled rows a chunk at a time: what the bootstrap needs, without an answers x metrics table."""
        cluster = self.clusters()
        out = np.zeros((int(cluster.max()) + 1 if len(cluster) else 0, self._rows.width))
        start = 0
        for chunk in self._rows.chunks():
            np.add.at(out, cluster[start:start + len(chunk)], chunk)
            start += len(chunk)
        return out[:, 0::2], out[:, 1::2]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(numerators, denominators), each answers x metrics (the whole table in memory: small logs only)."""
        chunks = list(self._rows.chunks())
        table = np.concatenate(chunks) if chunks else np.zeros((0, self._rows.width))
        return table[:, 0::2], table[:, 1::2]

    def to_json(self) -> SampleColumns:
        return SampleColumns(self)


class SampleColumns(Mapping):
    """A report's ``samples`` (``{"id", "vehicle", "metrics"}``) backed by a :class:`SampleLog`: read as a mapping
    it materialises the lists; :meth:`write_json` streams them into a report file without doing so."""

    def __init__(self, log: SampleLog):
        self.log = log
        self.extra: dict[str, dict[str, np.ndarray]] = {}

    def add_column(self, name: str, num: np.ndarray, den: np.ndarray) -> None:
        """One more per-answer column, written after the registered metrics': figures an observer computes
        outside the registry (the plate-location IoU of :mod:`plates.evaluation.grounding`), so that
        `plates compare` can pair them too. ``num`` and ``den`` hold one value per answer, in scoring order."""
        num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
        if num.shape != (len(self.log),) or den.shape != num.shape:
            raise ValueError(f"column {name!r}: {num.shape} values for {len(self.log)} answers")
        if name in self.extra or any(m.name == name for m in self.log.metrics):
            raise ValueError(f"column {name!r} is already recorded")
        self.extra[name] = {"num": num} if np.all(den == 1) else {"num": num, "den": den}

    def __getitem__(self, key: str) -> Any:
        if key == "id":
            return list(self.log.ids)
        if key == "vehicle":
            return list(self.log.vehicle_names)
        if key == "metrics":
            return {name: {part: _compact(values) for part, values in column.items()}
                    for name, column in self._columns()}
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("id", "vehicle", "metrics"))

    def __len__(self) -> int:
        return 3

    def _columns(self) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
        for k, metric in enumerate(self.log.metrics):
            num = self.log._rows.column(2 * k)
            column = {"num": num}
            den = self.log._rows.column(2 * k + 1)
            if not np.all(den == 1):
                column["den"] = den
            yield metric.name, column
        yield from self.extra.items()

    def write_json(self, handle: TextIO, indent: int = 2, level: int = 1) -> None:
        """Write the mapping as ``json.dump(dict(self), indent=indent)`` would at nesting ``level``."""
        pad = " " * indent

        def array(items: Iterable[str], depth: int) -> None:
            inner, first = pad * (depth + 1), True
            for text in items:
                handle.write(("[\n" if first else ",\n") + inner + text)
                first = False
            handle.write("[]" if first else "\n" + pad * depth + "]")

        handle.write("{\n" + pad * (level + 1) + '"id": ')
        array(self.log.ids.json_items(), level + 1)
        handle.write(",\n" + pad * (level + 1) + '"vehicle": ')
        array(self.log.vehicle_names.json_items(), level + 1)
        handle.write(",\n" + pad * (level + 1) + '"metrics": ')
        first_metric = True
        for name, column in self._columns():
            handle.write(("{\n" if first_metric else ",\n") + pad * (level + 2) + json.dumps(name, ensure_ascii=False)
                         + ": {")
            first_metric = False
            for j, (part, values) in enumerate(column.items()):
                handle.write(("\n" if j == 0 else ",\n") + pad * (level + 3) + f'"{part}": ')
                array(map(json.dumps, _compact(values)), level + 3)
            handle.write("\n" + pad * (level + 2) + "}")
        handle.write("{}" if first_metric else "\n" + pad * (level + 1) + "}")
        handle.write("\n" + pad * level + "}")


def _close_all(files: tuple[Any, ...]) -> None:
    for handle in files:
        handle.close()


def _compact(values: np.ndarray) -> list:
    if np.all(values == np.round(values)):
        return values.astype(np.int64).tolist()
    return np.round(values, 6).tolist()


Columns = dict[str, tuple[np.ndarray, np.ndarray]]


def read_samples(report: dict[str, Any]) -> tuple[list[str], list[str], Columns] | None:
    """(ids, vehicles, {metric: (num, den)}) from a report's ``samples``; None when it has none (older reports) or
    they are malformed."""
    samples = report.get("samples")
    if not isinstance(samples, Mapping):
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
