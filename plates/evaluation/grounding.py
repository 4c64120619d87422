"""Plate location (grounding) scored by IoU, as CCPD's protocol does: detection counts when IoU > 0.7, and an
image is read end to end only when its box is found (IoU > 0.7) and every plate character is right.

The reference boxes come from the records (``plate_geometry``, see :mod:`plates.records`) or from a ``labels``
answer whose plates carry ``车牌位置``; the predicted box is the answer plate's optional ``车牌位置``
(``[x1, y1, x2, y2]``, original-image pixels). A missing or unparseable predicted box scores IoU 0.

:class:`GroundingObserver` watches the scoring loop like the path and CCPD slices do, and adds
``report["grounding"]`` only when some reference carries a box, so reports of box-less labels stay as they were
(the registered metrics of :mod:`plates.evaluation.metrics` appear in every report and every ``ci95``, which is
why these figures are not registered there). With several plates, predicted plates are matched to reference
plates by box (the assignment of greatest total IoU, scipy's ``linear_sum_assignment``).

When the report records ``samples``, the observer adds each answer's contribution to every figure there too
(``samples.metrics.mean_iou`` …, (0, 0) for answers without a reference box) so `plates compare` pairs them like
the registered metrics (:func:`grounding_metrics`); reports without a box have no such columns.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from plates.evaluation.common import BOX_FIELD, MISSING
from plates.labels import PLATE_GROUP, PLATE_NUMBER, UNKNOWN

# report key -> (display name, column of the per-answer sums)
FIGURES = {"mean_iou": ("mean IoU", 0), "iou50_rate": ("IoU ≥ 0.5", 1), "iou70_rate": ("IoU > 0.7", 2),
           "end_to_end_rate": ("end to end (IoU > 0.7, all characters right)", 3)}


def parse_box(value: Any) -> tuple[float, float, float, float] | None:
    """``[x1, y1, x2, y2]`` as four finite numbers with x1 < x2 and y1 < y2, else None (unparseable)."""
    if type(value) not in (list, tuple) or len(value) != 4:
        return None
    for v in value:
        if type(v) not in (int, float) or not math.isfinite(v):
            return None
    x1, y1, x2, y2 = value
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2


def iou(a: tuple[float, ...] | None, b: tuple[float, ...] | None) -> float:
    """Intersection over union of two boxes (continuous coordinates: [0,0,10,10] has area 100); 0 when either
    is None."""
    if a is None or b is None:
        return 0.0
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def reference_boxes(plates: Any) -> tuple | None:
    """The ``车牌位置`` of each plate of a ``labels`` answer (None where absent), or None when no plate has one."""
    if type(plates) is dict:
        plates = [plates]
    if type(plates) is not list or not any(type(p) is dict and BOX_FIELD in p for p in plates):
        return None
    return tuple(p.get(BOX_FIELD) if type(p) is dict else None for p in plates)


def predicted_plates(answer: Any) -> list[tuple[Any, Any]]:
    """(raw plate number, box or None) of each plate object of a decoded answer, in order."""
    plates = answer.get(PLATE_GROUP) if type(answer) is dict else None
    if type(plates) is dict:
        plates = [plates]
    if type(plates) is not list:
        return []
    return [(p.get(PLATE_NUMBER), parse_box(p.get(BOX_FIELD))) for p in plates if type(p) is dict]


def match_plates(references: list[tuple[float, ...] | None], predictions: list[tuple[float, ...] | None]
                 ) -> dict[int, int]:
    """reference index -> predicted index, one to one, maximising total IoU; pairs of IoU 0 are left out (they
    score as a missed box either way)."""
    if not references or not predictions:
        return {}
    if len(references) == 1 and len(predictions) == 1:
        return {0: 0}
    from scipy.optimize import linear_sum_assignment

    matrix = np.array([[iou(r, p) for p in predictions] for r in references])
    rows, cols = linear_sum_assignment(matrix, maximize=True)
    return {int(i): int(j) for i, j in zip(rows, cols) if matrix[i, j] > 0}


def answer_figures(boxes: tuple, reference_numbers: list[str], answer: Any, number: Any
                   ) -> tuple[list[float], list[float]]:
    """(numerators, denominators) of one answer for :data:`FIGURES`: summed IoU, plates at IoU ≥ 0.5, at IoU >
    0.7 (each over the reference plates with a usable box), plates found and read right (over those whose number
    is known too). ``number`` normalises a predicted number to the reference's plate key."""
    references = [parse_box(box) for box in boxes]
    predicted = predicted_plates(answer)
    pairs = match_plates(references, [box for _, box in predicted])
    total = at50 = at70 = right = located = known = 0.0
    for i, box in enumerate(references):
        if box is None:
            continue
        located += 1
        j = pairs.get(i)
        value = iou(box, predicted[j][1]) if j is not None else 0.0
        total += value
        at50 += value >= 0.5
        at70 += value > 0.7
        ref_number = reference_numbers[i] if i < len(reference_numbers) else UNKNOWN
        if ref_number not in (UNKNOWN, MISSING):
            known += 1
            right += value > 0.7 and number(predicted[j][0]) == ref_number
    return [total, at50, at70, right], [located, located, located, known]


class GroundingObserver:
    """Observer of the scoring loop (``add(item, outcome)``, ``finish(report)``): per-answer IoU figures of the
    answers whose reference has boxes, summed per vehicle for the bootstrap."""

    def __init__(self, bootstrap: int = 0, seed: int = 0):
        self.bootstrap, self.seed = bootstrap, seed
        self.num = np.zeros(len(FIGURES))
        self.den = np.zeros(len(FIGURES))
        self.answers = 0
        self.seen = 0
        self.predicted_boxes = 0
        self._clusters: dict[str, int] = {}
        self._rows: list[tuple[int, list[float], list[float]]] = []
        self._answer_index: list[int] = []
        self._number: Any = None

    def add(self, item: Any, outcome: Any) -> None:
        self.seen += 1
        boxes = getattr(item.reference, "boxes", None)
        if not boxes:
            return
        if self._number is None:
            from plates.evaluation.scorer import Scorer

            self._number = Scorer().number
        from plates.evaluation.samples import vehicle_of

        numbers = [plate[PLATE_NUMBER] for plate in item.reference.plates]
        num, den = answer_figures(boxes, numbers, outcome.value, self._number)
        if not den[0]:
            return
        self.answers += 1
        self.predicted_boxes += sum(box is not None for _, box in predicted_plates(outcome.value))
        self.num += num
        self.den += den
        cluster = self._clusters.setdefault(vehicle_of(item), len(self._clusters))
        self._rows.append((cluster, num, den))
        self._answer_index.append(self.seen - 1)

    def finish(self, report: dict[str, Any]) -> None:
        block = self.block()
        if block is None:
            return
        report["grounding"] = block
        add_column = getattr(report.get("samples"), "add_column", None)
        if add_column is not None:
            num, den = np.zeros((self.seen, len(FIGURES))), np.zeros((self.seen, len(FIGURES)))
            index = np.asarray(self._answer_index, dtype=np.int64)
            num[index] = [row[1] for row in self._rows]
            den[index] = [row[2] for row in self._rows]
            for name, (_, k) in FIGURES.items():
                add_column(name, num[:, k], den[:, k])

    def block(self) -> dict[str, Any] | None:
        """The figures (with ``ci95`` when bootstrapping), None when no reference had a box."""
        if not self.answers:
            return None
        block: dict[str, Any] = {"answers": self.answers, "plates": int(self.den[0]),
                                 "end_to_end_plates": int(self.den[3]), "predicted_boxes": self.predicted_boxes}
        for name, (_, k) in FIGURES.items():
            block[name] = float(self.num[k] / self.den[k]) if self.den[k] else None
        if self.bootstrap > 0:
            from plates.evaluation.stats import cluster_intervals

            num_c = np.zeros((len(self._clusters), len(FIGURES)))
            den_c = np.zeros_like(num_c)
            for cluster, num, den in self._rows:
                num_c[cluster] += num
                den_c[cluster] += den
            intervals = cluster_intervals(num_c, den_c, self.bootstrap, self.seed)
            block["ci95"] = dict(zip(FIGURES, intervals))
        return block


def _observed(outcome: Any) -> tuple[float, float]:
    raise TypeError("plate-location figures need the reference boxes: GroundingObserver computes them")


def grounding_metrics() -> dict[str, Any]:
    """The figures as :class:`plates.evaluation.metrics.Metric` objects that are not registered (so they stay out
    of reports without boxes): value at ``report["grounding"][name]``, per-answer column ``samples.metrics[name]``.
    `plates compare` lists and pairs them beside the registered metrics."""
    from plates.evaluation.metrics import RATIO, Metric

    return {name: Metric(name, display, ("grounding", name), _observed, aggregation=RATIO,
                         percent=name != "mean_iou")
            for name, (display, _) in FIGURES.items()}


def grounding_rows(report: dict[str, Any]) -> list[list[str]]:
    """(figure, value, 95% interval) rows of ``report["grounding"]``; none when absent."""
    block = report.get("grounding")
    if not isinstance(block, dict):
        return []
    from plates.evaluation.render import pct

    rows = [["plate location", "value", "95% interval"]]
    for name, (display, _) in FIGURES.items():
        value = block.get(name)
        ci = (block.get("ci95") or {}).get(name)
        shown = "—" if value is None else (f"{value:.3f}" if name == "mean_iou" else pct(value))
        interval = "—" if not ci else (f"{ci[0]:.3f}–{ci[1]:.3f}" if name == "mean_iou"
                                       else f"{pct(ci[0])}–{pct(ci[1])}")
        rows.append([display, shown, interval])
    return rows


def slice_rows(groups: dict[str, Any]) -> list[list[str]]:
    """Plate-location rows of one ``report["by"]`` slicing (slices whose references had boxes); none if none."""
    from plates.evaluation.render import pct

    rows = [["slice", "plates", "mean IoU", "IoU > 0.7", "end to end"]]
    for key, summary in groups.items():
        block = summary.get("grounding") if isinstance(summary, dict) else None
        if isinstance(block, dict):
            mean = block.get("mean_iou")
            rows.append([key, str(block.get("plates")), "—" if mean is None else f"{mean:.3f}",
                         pct(block.get("iou70_rate")), pct(block.get("end_to_end_rate"))])
    return rows if len(rows) > 1 else []


def _markdown_table(rows: list[list[str]]) -> str:
    from plates.evaluation.render import md_escape

    lines = ["| " + " | ".join(md_escape(cell) for cell in row) + " |" for row in rows]
    lines.insert(1, "|---|" + "---:|" * (len(rows[0]) - 1))
    return "\n".join(lines)


def format_grounding(report: dict[str, Any], markdown: bool = False) -> str:
    """The plate-location table, and one per ``--by`` slicing whose slices carry it (terminal or Markdown);
    '' when no reference had a box."""
    rows = grounding_rows(report)
    if not rows:
        return ""
    from plates.evaluation.render import table

    block = report["grounding"]
    note = (f"{block['plates']} plates with a box in {block['answers']} answers, {block['predicted_boxes']} "
            f"predicted boxes; a missing or unparseable box ({BOX_FIELD}) counts as IoU 0")
    sliced = [(name, slice_rows(groups)) for name, groups in (report.get("by") or {}).items()
              if isinstance(groups, dict)]
    if markdown:
        out = "## Plate location (IoU)\n\n" + _markdown_table(rows) + f"\n\n{note}\n"
        return out + "".join(f"\n### Plate location by {name}\n\n{_markdown_table(r)}\n" for name, r in sliced if r)
    out = f"Plate location ({note}):\n" + table(rows, right=(1, 2))
    return out + "".join(f"\n\nplate location by {name}:\n" + table(r, right=range(1, 5)) for name, r in sliced if r)
