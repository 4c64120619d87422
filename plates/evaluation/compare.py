"""`plates compare`: two reports side by side, with the uncertainty of each difference.

When both reports recorded the same answers (``samples``, written by `plates eval`), the comparison is paired:
every bootstrap replicate draws the same vehicles for both models, and the p-value is the exact McNemar test on
the answers one model got right and the other wrong. Otherwise each report is resampled on its own (unpaired),
and the table says so. Reports from before a metric existed show it as '—'. The plate-location figures
(``grounding``: mean IoU, IoU ≥ 0.5, IoU > 0.7, end to end) are compared, and paired through their ``samples``
columns, when a report has them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from plates.evaluation.grounding import grounding_metrics
from plates.evaluation.metrics import METRICS, Metric
from plates.evaluation.render import fmt, md_table, table
from plates.evaluation.samples import read_samples
from plates.evaluation.stats import (
    DEFAULT_REPLICATES, DEFAULT_SEED, paired_delta, sign_test, significant, unpaired_delta,
)


def all_metrics() -> dict[str, Metric]:
    """The registered metrics, then the plate-location ones (:func:`plates.evaluation.grounding.grounding_metrics`)."""
    return {**METRICS, **{name: m for name, m in grounding_metrics().items() if name not in METRICS}}


def compare_rows(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, float | None, float | None]]:
    """(metric display name, before, after) for every metric of :func:`all_metrics` either report has."""
    rows = []
    for metric in all_metrics().values():
        b, a = metric.value(before), metric.value(after)
        if b is not None or a is not None:
            rows.append((metric.display, b, a))
    return rows


def compare_reports(before: dict[str, Any], after: dict[str, Any], replicates: int = DEFAULT_REPLICATES,
                    seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """The comparison as JSON: ``{"paired", "note", "decoding", "metrics": {name: {"a", "b", "delta", "ci95",
    "p_value", "significant"}}}``; ``ci95`` and ``p_value`` are None where they cannot be computed."""
    metrics = [m for m in all_metrics().values() if m.value(before) is not None or m.value(after) is not None]
    out: dict[str, Any] = {"paired": False, "note": "", "replicates": replicates, "seed": seed,
                           "decoding": {"a": before.get("decoding", "unknown"), "b": after.get("decoding", "unknown")},
                           "metrics": {}}
    for m in metrics:
        a, b = m.value(before), m.value(after)
        out["metrics"][m.name] = {"display": m.display, "higher_is_better": m.higher_is_better, "a": a, "b": b,
                                  "delta": None if a is None or b is None else b - a, "ci95": None,
                                  "p_value": None, "significant": False}
    sa, sb = read_samples(before), read_samples(after)
    if sa is None or sb is None:
        missing = " and ".join(n for n, s in (("A", sa), ("B", sb)) if s is None)
        verb = "have" if sa is None and sb is None else "has"
        out["note"] = (f"unpaired: {missing} {verb} no per-answer samples (a report from an older plates eval); "
                       "differences are not tested")
        return out
    ids_a, vehicles_a, columns_a = sa
    ids_b, _, columns_b = sb
    tested = [m for m in metrics if m.name in columns_a and m.name in columns_b]
    if not tested:
        out["note"] = "unpaired: the reports share no per-answer metric; differences are not tested"
        return out
    if len(set(ids_a)) == len(ids_a) and set(ids_a) == set(ids_b) and len(ids_a) == len(ids_b):
        position = {sample: k for k, sample in enumerate(ids_b)}
        order = np.fromiter((position[sample] for sample in ids_a), dtype=np.int64, count=len(ids_a))
        num_a, den_a = (np.column_stack([columns_a[m.name][k] for m in tested]) for k in (0, 1))
        num_b, den_b = (np.column_stack([columns_b[m.name][k][order] for m in tested]) for k in (0, 1))
        intervals = (paired_delta(num_a, den_a, num_b, den_b, vehicles_a, replicates, seed) if replicates
                     else [None] * len(tested))
        p_values = [sign_test(num_a[:, k], den_a[:, k], num_b[:, k], den_b[:, k]) for k in range(len(tested))]
        out["paired"] = True
        out["note"] = (f"paired: the same {len(ids_a)} answers ({len(set(vehicles_a))} vehicles); "
                       f"{replicates} paired bootstrap replicates, exact McNemar p-values")
    else:
        shared = len(set(ids_a) & set(ids_b))
        if replicates:
            a_side = tuple(np.column_stack([columns_a[m.name][k] for m in tested]) for k in (0, 1))
            b_side = tuple(np.column_stack([columns_b[m.name][k] for m in tested]) for k in (0, 1))
            intervals, p_values = unpaired_delta((*a_side, vehicles_a), (*b_side, sb[1]), replicates, seed)
        else:
            intervals, p_values = [None] * len(tested), [None] * len(tested)
        out["note"] = (f"unpaired: the reports scored different answers ({len(ids_a)} and {len(ids_b)}, {shared} "
                       "shared); each is resampled on its own, so the intervals are wider than a paired test's")
    for m, ci, p in zip(tested, intervals, p_values):
        entry = out["metrics"][m.name]
        entry["ci95"], entry["p_value"] = ci, p
        entry["significant"] = entry["delta"] is not None and significant(p, ci)
    return out


def delta(before: float | None, after: float | None, metric: Metric | None = None) -> str:
    if before is None or after is None:
        return "—"
    if metric is not None and not metric.percent:
        return f"{after - before:+.3f}"
    points = 100 * (after - before)
    return f"{points:+.1f} pp" if not math.isclose(points, 0.0, abs_tol=0.05) else "±0.0 pp"


def _ci_text(metric: Metric, ci: list[float] | None) -> str:
    if not ci:
        return "—"
    if not metric.percent:
        return f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"
    return f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _p_text(p: float | None) -> str:
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _verdict(metric: Metric, entry: dict[str, Any]) -> str:
    if not entry["significant"]:
        return ""
    return "* better" if (entry["delta"] > 0) == metric.higher_is_better else "* worse"


def decoding_warning(comparison: dict[str, Any]) -> str | None:
    """A warning when the two reports used different decoding modes (schema-constrained vs free), whose scores
    are not comparable as a model difference."""
    a, b = comparison["decoding"]["a"], comparison["decoding"]["b"]
    if a == b:
        return None
    return (f"A was decoded {a!s}, B {b!s}: part of any difference comes from the decoding mode, not the model "
            "(`plates infer --decoding`)")


def format_compare(before: dict[str, Any], after: dict[str, Any], names: tuple[str, str], markdown: bool = False,
                   comparison: dict[str, Any] | None = None) -> str:
    """The compare table; with ``comparison`` (:func:`compare_reports`) it adds the delta's 95% interval, the
    p-value and a '*' on significant rows."""
    if comparison is None:
        rows = [["metric", names[0], names[1], "Δ"]]
        rows += [[metric, fmt_value(metric, b), fmt_value(metric, a), _plain_delta(metric, b, a)]
                 for metric, b, a in compare_rows(before, after)]
        if markdown:
            return md_table(rows) + "\n"
        return table(rows, right=(1, 2, 3))
    rows = [["metric", names[0], names[1], "Δ", "95% CI of Δ", "p", ""]]
    known = all_metrics()
    for name, entry in comparison["metrics"].items():
        metric = known[name]
        rows.append([metric.display, fmt(metric, entry["a"]), fmt(metric, entry["b"]),
                     delta(entry["a"], entry["b"], metric), _ci_text(metric, entry["ci95"]),
                     _p_text(entry["p_value"]), _verdict(metric, entry)])
    legend = comparison["note"] + ("; * = significant (p < 0.05 and the interval excludes 0), better or worse "
                                   "for B by the metric's direction"
                                   if any(e["significant"] for e in comparison["metrics"].values()) else "")
    if markdown:
        return md_table(rows) + "\n\n" + legend + "\n"
    return table(rows, right=(1, 2, 3, 4, 5)) + "\n" + legend


def fmt_value(display: str, value: float | None) -> str:
    metric = next((m for m in all_metrics().values() if m.display == display), None)
    return fmt(metric, value) if metric is not None else ("—" if value is None else f"{100 * value:.1f}%")


def _plain_delta(display: str, before: float | None, after: float | None) -> str:
    return delta(before, after, next((m for m in all_metrics().values() if m.display == display), None))
