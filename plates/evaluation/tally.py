"""Tallies: running totals over outcomes, turned into the report's figures by :meth:`Tally.summary`."""

from __future__ import annotations

import json
from collections import Counter, _count_elements
from typing import Any

from plates.evaluation.common import EXAMPLES_KEPT, INCONSISTENCY_CODES, clip_value
from plates.evaluation.extract import JSON, PARSE_METHODS, UNPARSEABLE
from plates.evaluation.items import Item
from plates.evaluation.metrics import METRICS
from plates.evaluation.plate_metrics import plate_summary
from plates.evaluation.schema_check import VIOLATION_CLASSES
from plates.evaluation.scorer import Outcome
from plates.labels import FIELDS, PLATE_NUMBER


def _rate(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _clip(text: Any, limit: int = 240) -> str:
    text = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


class Tally:
    """Running totals over outcomes; :meth:`summary` turns them into the report."""

    def __init__(self) -> None:
        self.n = 0
        self.methods: Counter[str] = Counter()
        self.schema_valid = 0
        self.exact = 0
        self.violation_counts: Counter[str] = Counter()
        self.violation_answers: Counter[str] = Counter()
        self.violation_fields: Counter[tuple[str, str]] = Counter()
        self.inconsistency_counts: Counter[str] = Counter()
        self.inconsistent_answers = 0
        self.pairs: Counter[tuple[str, str, str]] = Counter()
        self.number_support = 0
        self.number_correct = 0
        self.char_total = 0.0
        self.char_substitutions: Counter[tuple[str, str]] = Counter()
        # plate numbers per plate type: read right, counted by length; read wrong, by (type, reference, prediction)
        self.right_numbers: Counter[tuple[str, int]] = Counter()
        self.wrong_numbers: dict[tuple[str, str, str], int] = {}
        self.plates = {"reference": 0, "predicted": 0, "missing": 0, "extra": 0, "count_correct": 0}
        self.examples: dict[str, list[dict[str, Any]]] = {"unparseable": [], "schema_invalid": [],
                                                          "inconsistent": []}
        # metrics registered beyond the built-in ones are summed from their per-answer contributions
        self.extra = [m for m in METRICS.values() if not m.builtin]
        self.extra_sums = [[0.0, 0.0] for _ in self.extra]

    def add(self, outcome: Outcome, item: Item | None = None) -> None:
        self.n += 1
        if self.extra:
            for metric, sums in zip(self.extra, self.extra_sums):
                num, den = metric.per_answer(outcome)
                sums[0] += num
                sums[1] += den
        self.methods[outcome.method] += 1
        if outcome.schema_valid:
            self.schema_valid += 1
        elif outcome.violations:
            for v in outcome.violations:
                self.violation_counts[v.kind] += 1
                self.violation_fields[v.kind, v.field] += 1
            self.violation_answers.update({v.kind for v in outcome.violations})
            self._example("schema_invalid", item, "; ".join(f"{v.kind} {v.path}" for v in outcome.violations[:5]))
        elif outcome.method == UNPARSEABLE:
            self._example("unparseable", item, "no JSON object found")
        if outcome.exact:
            self.exact += 1
        _count_elements(self.pairs, outcome.pairs)
        numbers = outcome.numbers
        if numbers:
            self.number_support += len(numbers)
            self.char_total += sum(outcome.char_scores)
            right, wrong = self.right_numbers, self.wrong_numbers
            for kind, (ref, pred) in zip(outcome.number_types, numbers):
                if ref == pred:
                    self.number_correct += 1
                    right[kind, len(ref)] += 1
                else:
                    key = (kind, ref, pred)
                    wrong[key] = wrong.get(key, 0) + 1
            if outcome.char_substitutions:
                _count_elements(self.char_substitutions, outcome.char_substitutions)
        plates = self.plates
        n_reference, n_predicted = outcome.n_reference_plates, outcome.n_predicted_plates
        if n_reference or n_predicted:
            plates["reference"] += n_reference
            plates["predicted"] += n_predicted
            if outcome.missing_plates:
                plates["missing"] += outcome.missing_plates
            if outcome.extra_plates:
                plates["extra"] += outcome.extra_plates
        if n_reference == n_predicted:
            plates["count_correct"] += 1
        inconsistencies = outcome.inconsistencies
        if inconsistencies:
            self.inconsistent_answers += 1
            _count_elements(self.inconsistency_counts, inconsistencies)
            if item is not None and len(self.examples["inconsistent"]) < EXAMPLES_KEPT:
                self._example("inconsistent", item, ", ".join(inconsistencies))

    def _example(self, kind: str, item: Item | None, detail: str) -> None:
        kept = self.examples[kind]
        if item is not None and len(kept) < EXAMPLES_KEPT:
            kept.append({"line": item.line, "image": item.image, "detail": clip_value(detail, 1000),
                         "response": _clip(item.response)})

    def confusions(self) -> dict[str, Counter]:
        """Per enumerated field: Counter of (reference, prediction), long values clipped (:func:`clip_value`)."""
        out: dict[str, Counter] = {f: Counter() for f in FIELDS if f != PLATE_NUMBER}
        for (f, r, p), c in self.pairs.items():
            out[f][clip_value(r), clip_value(p)] += c
        return out

    def field_stats(self, field: str, top: int = 10, confusion: Counter | None = None) -> dict[str, Any]:
        if field == PLATE_NUMBER:
            support, correct = self.number_support, self.number_correct
            return {"support": support, "correct": correct, "accuracy": _rate(correct, support),
                    "macro_f1": None, "char_accuracy": _rate(self.char_total, support),
                    "confusions": [[r, p, c] for (r, p), c in self.char_substitutions.most_common(top)]}
        confusion = confusion if confusion is not None else self.confusions()[field]
        support = sum(confusion.values())
        correct = sum(c for (r, p), c in confusion.items() if r == p)
        wrong = Counter({pair: c for pair, c in confusion.items() if pair[0] != pair[1]})
        return {"support": support, "correct": correct, "accuracy": _rate(correct, support),
                "macro_f1": macro_f1(confusion),
                "confusions": [[r, p, c] for (r, p), c in wrong.most_common(top)],
                "confusion": [[r, p, c] for (r, p), c in sorted(confusion.items(), key=lambda x: (-x[1], x[0]))]}

    def summary(self, top: int = 10) -> dict[str, Any]:
        report = self._summary(top)
        for metric, (num, den) in zip(self.extra, self.extra_sums):
            node = report
            for key in metric.path[:-1]:
                node = node.setdefault(key, {})
            node[metric.path[-1]] = _rate(num, den)
        return report

    def _summary(self, top: int) -> dict[str, Any]:
        n = self.n
        parsed = n - self.methods[UNPARSEABLE]
        confusions = self.confusions()
        return {
            "n": n,
            "json_valid_rate": _rate(self.methods[JSON], n),
            "parsed_rate": _rate(parsed, n),
            "schema_valid_rate": _rate(self.schema_valid, n),
            "exact_match": _rate(self.exact, n),
            "plate_char_accuracy": _rate(self.char_total, self.number_support),
            "inconsistent_rate": _rate(self.inconsistent_answers, n),
            "parse_methods": {m: self.methods[m] for m in PARSE_METHODS if self.methods[m]},
            "violations": {k: {"count": self.violation_counts[k], "answers": self.violation_answers[k]}
                           for k in VIOLATION_CLASSES if self.violation_counts[k]},
            "violation_fields": {k: {f: c for (kind, f), c in self.violation_fields.most_common() if kind == k}
                                 for k in VIOLATION_CLASSES if self.violation_counts[k]},
            "inconsistent_answers": self.inconsistent_answers,
            "inconsistencies": {c: self.inconsistency_counts[c] for c in INCONSISTENCY_CODES},
            "plates": {"reference": self.plates["reference"], "predicted": self.plates["predicted"],
                       "missing": self.plates["missing"], "extra": self.plates["extra"],
                       "count_accuracy": _rate(self.plates["count_correct"], n)},
            "fields": {f: self.field_stats(f, top, confusions.get(f)) for f in FIELDS},
            "plate": plate_summary(self.right_numbers, self.wrong_numbers),
            "examples": self.examples,
        }


def macro_f1(confusion: Counter) -> float | None:
    """Mean F1 over the classes that occur in the references (predicted-only values count as false positives
    of the classes they were confused with, not as classes of their own)."""
    classes = {r for r, _ in confusion}
    if not classes:
        return None
    support: Counter = Counter()
    predicted: Counter = Counter()
    for (r, p), c in confusion.items():
        support[r] += c
        predicted[p] += c
    scores = []
    for cls in sorted(classes):  # a fixed order: the mean's last digit must not depend on the hash seed
        tp = confusion.get((cls, cls), 0)
        denominator = support[cls] + predicted[cls]
        scores.append(2 * tp / denominator if denominator else 0.0)
    return sum(scores) / len(scores)
