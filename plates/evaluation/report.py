"""The report: score a stream of items into one JSON-ready dict (:func:`evaluate`, :func:`evaluate_file`) and read
one back (:func:`load_report`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from plates.errors import UserError
from plates.evaluation.common import strict_json, write_report_json
from plates.evaluation.items import Item, Source, iter_items
from plates.evaluation.metrics import summary_metrics
from plates.evaluation.rewards import answer_scores
from plates.evaluation.samples import SampleColumns, SampleLog
from plates.evaluation.scorer import Reference, Scorer
from plates.evaluation.stats import DEFAULT_SEED, LEVEL, cluster_intervals
from plates.evaluation.tally import Tally
from plates.io import atomic_write
from plates.labels import NO_PLATE, VEHICLE_FIELDS, labels_dir


def slice_value(reference: Reference, field: str) -> str:
    """The slice an answer falls in for ``--by FIELD``: the reference's value; for plate fields the values of
    all its plates joined by '+', '无车牌' when it has none."""
    if field in VEHICLE_FIELDS:
        return reference.vehicle[field]
    values = list(dict.fromkeys(plate[field] for plate in reference.plates))
    return "+".join(values) if values else NO_PLATE


def evaluate(items: Iterable[Item], scorer: Scorer | None = None, by: Iterable[str] = (), top: int = 10,
             details: list[dict[str, Any]] | None = None, bootstrap: int = 0, seed: int = DEFAULT_SEED,
             samples: bool = False, observers: Iterable[Any] = ()) -> dict[str, Any]:
    """Score items and summarise. ``by`` adds per-slice summaries; ``details`` (when a list) receives one
    entry per answer; ``bootstrap`` replicates (0: none) add 95% intervals resampling whole vehicles;
    ``samples`` records each answer's identity and per-metric contribution (what a paired compare needs);
    ``observers`` see every ``(item, outcome)`` (``add``) and then add their own keys (``finish(report)``):
    path slices, CCPD tables, confidences, the HTML gallery."""
    scorer = scorer or Scorer()
    by = list(by)
    observers = tuple(observers)
    observing = tuple(observer.add for observer in observers)
    tally = Tally()
    log = SampleLog() if samples or bootstrap > 0 else None
    slices: dict[str, dict[str, Tally]] = {f: {} for f in by}
    score = scorer.score
    add = tally.add
    for item in items:
        outcome = score(item.response, item.reference)
        add(outcome, item)
        for f in by:
            key = slice_value(item.reference, f)
            sliced = slices[f].get(key)
            if sliced is None:
                sliced = slices[f][key] = Tally()
            sliced.add(outcome)
        if details is not None:
            details.append({"line": item.line, "image": item.image, **outcome.to_json(),
                            "scores": answer_scores(outcome)})
        if log is not None:
            log.add(item, outcome)
        for observe in observing:
            observe(item, outcome)
    report = tally.summary(top)
    if log is not None and bootstrap > 0 and len(log):
        add_intervals(report, log, bootstrap, seed)
    if log is not None and samples:
        report["samples"] = log.to_json()
    elif log is not None:
        log.close()
    if by:
        report["by"] = {f: {key: _slice_summary(t) for key, t in sorted(groups.items(), key=lambda kv: -kv[1].n)}
                        for f, groups in slices.items()}
    for observer in observers:
        observer.finish(report)
    return report


def _slice_summary(tally: Tally) -> dict[str, Any]:
    full = tally.summary(top=0)
    return {"n": full["n"], **{m.name: m.value(full) for m in summary_metrics()},
            "fields": {f: {k: s[k] for k in ("support", "correct", "accuracy")} for f, s in full["fields"].items()}}


def add_intervals(report: dict[str, Any], log: SampleLog, replicates: int, seed: int) -> None:
    """Add 95% bootstrap intervals: a top-level ``ci95`` {metric: [low, high]} and, for field accuracies, a
    ``ci95`` beside each field's ``accuracy``."""
    num_c, den_c = log.cluster_sums()
    intervals = cluster_intervals(num_c, den_c, replicates, seed)
    report["ci95"] = {m.name: ci for m, ci in zip(log.metrics, intervals)}
    for metric, ci in zip(log.metrics, intervals):
        if metric.field is not None and metric.field in report["fields"]:
            report["fields"][metric.field]["ci95"] = ci
    report["bootstrap"] = {"replicates": replicates, "seed": seed, "level": LEVEL,
                           "resampled": "vehicles", "clusters": len(num_c)}


def evaluate_file(results: str | Path, records: str | Path | None = None, by: Iterable[str] = (), top: int = 10,
                  scorer: Scorer | None = None, details: list | None = None, bootstrap: int = 0,
                  seed: int = DEFAULT_SEED, samples: bool = False, observers: Iterable[Any] = ()) -> dict[str, Any]:
    """Read and score a results file; the report also lists skipped lines, unmatched records and the decoding
    mode the results declare."""
    scorer = scorer or Scorer()
    source = Source()
    report = evaluate(iter_items(results, scorer, records, source), scorer, by, top, details, bootstrap, seed,
                      samples, observers)
    report["decoding"] = source.decoding()
    report["skipped_lines"] = len(source.skipped)
    report["skipped"] = source.skipped
    report["duplicates"] = source.duplicates
    if source.duplicates:
        report["duplicate_examples"] = source.duplicate_examples
    report["source"] = str(results)
    if records is not None:
        report["records"] = str(records)
        report["records_without_prediction"] = len(source.records_without_prediction)
        report["records_without_prediction_examples"] = source.records_without_prediction[:20]
    report["labels_version"] = _labels_version()
    return report


def _labels_version() -> Any:
    import yaml

    try:
        return yaml.safe_load((labels_dir() / "fields.yaml").read_text(encoding="utf-8")).get("version")
    except OSError:
        return None


def write_report(path: str | Path, report: dict[str, Any]) -> None:
    """``plates.io.write_json`` for a report whose ``samples`` stream from their temporary files: the same
    JSON text, without building a million-answer list of ids and numbers in memory."""
    samples = report.get("samples")
    if not isinstance(samples, SampleColumns):
        write_report_json(path, report)
        return
    marker = "\0plates-samples\0"
    text = json.dumps(strict_json({k: (marker if k == "samples" else v) for k, v in report.items()}),
                      ensure_ascii=False, indent=2, allow_nan=False)
    head, tail = text.split(json.dumps(marker), 1)
    with atomic_write(path) as handle:
        handle.write(head)
        samples.write_json(handle, indent=2, level=1)
        handle.write(tail + "\n")


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a `plates eval --json` report. Only ``n`` and ``fields`` are required: reports written before a
    metric existed load fine and show that metric as missing."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a JSON report ({exc})") from None
    if not isinstance(report, dict) or not isinstance(report.get("n"), int) \
            or not isinstance(report.get("fields"), dict):
        raise UserError(f"{path}: not a `plates eval --json` report (needs n and fields)")
    return report

