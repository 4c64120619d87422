"""The metric registry: every figure a report, its Markdown, its plots and `plates compare` show is declared here
once, with its name, display name, direction, aggregation and how one answer contributes to it.

A metric's value is ``sum(numerator) / sum(denominator)`` over answers, where :attr:`Metric.per_answer` gives one
answer's (numerator, denominator): ``mean`` metrics count 1 per answer (exact match), ``ratio`` metrics count
the units an answer holds (reference plates, known reference fields). That one definition drives the bootstrap
intervals and the paired tests of `plates compare`; :class:`plates.evaluation.tally.Tally` computes the same
values from its counters (tests check they agree).

Adding a metric is one :func:`register` call (at import time of a module the CLI loads, e.g. here) with its
per-answer contribution: :class:`~plates.evaluation.tally.Tally` sums it into the report at ``path`` (a new
top-level key for most), and the terminal/Markdown reports, ``--json`` intervals and ``plates compare`` pick it
up; older reports that lack it show '—' instead of failing. (The built-in metrics are computed by ``Tally``'s
own counters, faster, and are marked ``builtin``.)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from plates.evaluation.common import FIELD_SLUGS
from plates.evaluation.extract import JSON, UNPARSEABLE
from plates.evaluation.plate_metrics import number_stats
from plates.evaluation.scorer import Outcome
from plates.labels import FIELDS, PLATE_NUMBER

MEAN, RATIO = "mean", "ratio"


@dataclass(frozen=True)
class Metric:
    """One reported figure. ``path`` locates it in a report (``("fields", "车辆颜色", "accuracy")``); ``summary``
    metrics are the headline rates of the totals line; ``percent`` metrics print as percentages."""

    name: str
    display: str
    path: tuple[str, ...]
    per_answer: Callable[[Outcome], tuple[float, float]]
    higher_is_better: bool = True
    aggregation: str = MEAN
    summary: bool = False
    percent: bool = True
    builtin: bool = False

    def value(self, report: dict[str, Any]) -> float | None:
        """The metric's value in a report, or None when the report (an older one, or a field with no support)
        does not have it."""
        node: Any = report
        for key in self.path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        if not isinstance(node, (int, float)) or isinstance(node, bool):
            return None
        return node if node - node == 0 else None  # NaN/Infinity (a hand-edited or foreign report): undefined

    def ci(self, report: dict[str, Any]) -> list[float] | None:
        """The metric's 95% interval recorded in a report, or None."""
        interval = (report.get("ci95") or {}).get(self.name)
        return interval if isinstance(interval, list) and len(interval) == 2 else None

    @property
    def field(self) -> str | None:
        return self.path[1] if self.path[0] == "fields" else None


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add a metric to the registry (its name must be new)."""
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} is already registered")
    METRICS[metric.name] = metric
    return metric


def unregister(name: str) -> None:
    """Remove a metric (tests that register one clean up with it)."""
    METRICS.pop(name, None)


def summary_metrics() -> list[Metric]:
    return [m for m in METRICS.values() if m.summary]


# -- per-answer contributions ---------------------------------------------------------------------------------


def _json_valid(o: Outcome) -> tuple[float, float]:
    return float(o.method == JSON), 1.0


def _parsed(o: Outcome) -> tuple[float, float]:
    return float(o.method != UNPARSEABLE), 1.0


def _schema_valid(o: Outcome) -> tuple[float, float]:
    return float(bool(o.schema_valid)), 1.0


def _exact(o: Outcome) -> tuple[float, float]:
    return float(bool(o.exact)), 1.0


def _inconsistent(o: Outcome) -> tuple[float, float]:
    return float(bool(o.inconsistencies)), 1.0


def _count_right(o: Outcome) -> tuple[float, float]:
    return float(o.n_reference_plates == o.n_predicted_plates), 1.0


def _char(o: Outcome) -> tuple[float, float]:
    return float(sum(o.char_scores)), float(len(o.numbers))


def _number_stat(index: int) -> Callable[[Outcome], tuple[float, float]]:
    def contribution(o: Outcome) -> tuple[float, float]:
        return float(sum(number_stats(r, p)[index] for r, p in o.numbers)), float(len(o.numbers))
    return contribution


def _field(field: str) -> Callable[[Outcome], tuple[float, float]]:
    if field == PLATE_NUMBER:
        def number(o: Outcome) -> tuple[float, float]:
            return float(sum(1 for r, p in o.numbers if r == p)), float(len(o.numbers))
        return number

    def contribution(o: Outcome) -> tuple[float, float]:
        support = correct = 0
        for f, r, p in o.pairs:
            if f == field:
                support += 1
                correct += r == p
        return float(correct), float(support)
    return contribution


for _metric in (
    Metric("json_valid_rate", "strict JSON", ("json_valid_rate",), _json_valid, summary=True),
    Metric("parsed_rate", "parsed", ("parsed_rate",), _parsed, summary=True),
    Metric("schema_valid_rate", "schema-valid", ("schema_valid_rate",), _schema_valid, summary=True),
    Metric("exact_match", "exact match", ("exact_match",), _exact, summary=True),
    Metric("plate_char_accuracy", "plate chars", ("plate_char_accuracy",), _char, aggregation=RATIO, summary=True),
    Metric("inconsistent_rate", "inconsistent answers", ("inconsistent_rate",), _inconsistent,
           higher_is_better=False),
    Metric("plate_count_accuracy", "plate count right", ("plates", "count_accuracy"), _count_right),
    Metric("full_plate_accuracy", "full plate", ("plate", "full_plate_accuracy"), _number_stat(0),
           aggregation=RATIO),
    Metric("plate_length_accuracy", "plate length", ("plate", "length_accuracy"), _number_stat(2),
           aggregation=RATIO),
    Metric("plate_edit_distance", "plate edit distance", ("plate", "mean_edit_distance"), _number_stat(3),
           higher_is_better=False, aggregation=RATIO, percent=False),
):
    register(replace(_metric, builtin=True))
for _f in FIELDS:
    register(Metric(f"{FIELD_SLUGS[_f]}_accuracy", f"{_f} accuracy", ("fields", _f, "accuracy"), _field(_f),
                    aggregation=RATIO, builtin=True))
del _metric, _f

SUMMARY_KEYS = tuple(m.name for m in summary_metrics())
SUMMARY_NAMES = {m.name: m.display for m in summary_metrics()}
